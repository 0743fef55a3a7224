//! The metadata HTTP shell: hyper on a bound TCP listener. Bounded: header size, header read
//! time, connection lifetime, concurrent connections, and the only body ever read (a password
//! POST) to a few bytes more than nova accepts.

#![allow(clippy::disallowed_methods)] // IO shell

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, Method, Request as HttpRequest, Response as HttpResponse, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::password::PasswordStore;
use super::request::{self, Context, Outcome, Request, Response, MAX_PASSWORD, SEED_BYTES};
use super::tree::{Tree, TEXT};
use crate::stats::{add_arrays, Counters, Histogram, Report};
use crate::table::instance::MetadataSettings;

/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Time allowed to send a request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection may live (keep-alive included).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Most connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// Most connections one source address may hold, so one instance cannot take every slot.
pub const MAX_CONNECTIONS_PER_SOURCE: u32 = 32;
/// A failed accept is retried after the first delay, doubled at each failure in a row up to the
/// second.
const ACCEPT_BACKOFF: std::ops::Range<Duration> = Duration::from_millis(1)..Duration::from_secs(1);

crate::counter_enum! {
    /// How a request or connection ended, as counted: by status code (the codes the service
    /// answers with, then the rest of each class), or refused.
    pub enum Answer {
        /// 200.
        Ok => "200",
        /// 400: a bad path or request.
        BadRequest => "400",
        /// 403: not from an instance, or a bad signature.
        Forbidden => "403",
        /// 404.
        NotFound => "404",
        /// 409: the password was set already.
        Conflict => "409",
        /// Another 4xx.
        OtherClientError => "4xx",
        /// 500.
        InternalError => "500",
        /// Another status.
        Other => "other",
        /// A connection closed at once because too many were open.
        Refused => "refused",
    }
}

/// Bounds of the request latency histogram, in seconds.
pub const REQUEST_SECONDS: [f64; 10] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25,
];

impl Answer {
    /// The counter of an HTTP status.
    pub fn of(status: StatusCode) -> Answer {
        match status.as_u16() {
            200 => Answer::Ok,
            400 => Answer::BadRequest,
            403 => Answer::Forbidden,
            404 => Answer::NotFound,
            409 => Answer::Conflict,
            401..=499 => Answer::OtherClientError,
            500 => Answer::InternalError,
            _ => Answer::Other,
        }
    }
}

/// Counters of the metadata service, as read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests answered.
    pub requests: u64,
    /// Answers (and refused connections) by kind.
    pub answers: [u64; Answer::COUNT],
}

impl Counters for Stats {
    fn add(&mut self, o: &Stats) {
        self.requests += o.requests;
        add_arrays(&mut self.answers, &o.answers);
    }

    fn report(&self, bridge: Option<&Arc<str>>, out: &mut Report) {
        out.push("md_requests", None, bridge, self.requests);
        for a in Answer::ALL {
            if *a == Answer::Refused {
                out.push("md_refused", None, bridge, self.answers[*a as usize]);
            } else {
                out.push(
                    "md_answers",
                    Some(a.name()),
                    bridge,
                    self.answers[*a as usize],
                );
            }
        }
    }
}

/// The live counters, shared by every connection.
#[derive(Debug)]
pub struct LiveStats {
    requests: AtomicU64,
    answers: [AtomicU64; Answer::COUNT],
    /// Seconds from a request's head read to its answer.
    pub seconds: Histogram,
}

impl Default for LiveStats {
    fn default() -> Self {
        LiveStats {
            requests: AtomicU64::default(),
            answers: Default::default(),
            seconds: Histogram::new(&REQUEST_SECONDS),
        }
    }
}

impl LiveStats {
    fn count(&self, answer: Answer) {
        if answer != Answer::Refused {
            self.requests.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(a) = self.answers.get(answer as usize) {
            a.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters now.
    pub fn read(&self) -> Stats {
        Stats {
            requests: self.requests.load(Ordering::Relaxed),
            answers: std::array::from_fn(|i| {
                self.answers.get(i).map_or(0, |a| a.load(Ordering::Relaxed))
            }),
        }
    }
}

/// What every connection shares.
#[derive(Clone)]
pub struct Shared {
    /// The rendered trees, swapped at reload.
    pub tree: Arc<ArcSwap<Tree>>,
    /// Identity settings, swapped at reload.
    pub settings: Arc<ArcSwap<MetadataSettings>>,
    /// Passwords.
    pub passwords: Arc<PasswordStore>,
    /// Counters.
    pub stats: Arc<LiveStats>,
}

/// Serves until `shutdown` is cancelled (connections in progress finish on their own).
pub async fn run(listener: TcpListener, shared: Shared, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_source: Arc<Mutex<HashMap<IpAddr, u32>>> = Arc::default();
    let mut backoff = ACCEPT_BACKOFF.start;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff = ACCEPT_BACKOFF.start;
                    a
                }
                Err(e) => {
                    // Out of descriptors or memory, typically: wait longer each time it repeats.
                    tracing::warn!(error = %e, retry_in = ?backoff, "metadata accept failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF.end);
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared.stats.count(Answer::Refused);
            continue;
        };
        let Some(source_slot) = SourceSlot::take(&per_source, peer.ip()) else {
            shared.stats.count(Answer::Refused);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, peer, shared.clone()));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            drop((permit, source_slot));
        });
    }
}

/// One of a source address's connection slots, given back on drop.
struct SourceSlot {
    table: Arc<Mutex<HashMap<IpAddr, u32>>>,
    source: IpAddr,
}

impl SourceSlot {
    fn take(table: &Arc<Mutex<HashMap<IpAddr, u32>>>, source: IpAddr) -> Option<SourceSlot> {
        let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
        let count = t.entry(source).or_insert(0);
        if *count >= MAX_CONNECTIONS_PER_SOURCE {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            table: table.clone(),
            source,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = t.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                t.remove(&self.source);
            }
        }
    }
}

async fn handle(
    req: HttpRequest<Incoming>,
    peer: SocketAddr,
    shared: Shared,
) -> Result<HttpResponse<Full<Bytes>>, Infallible> {
    let started = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    // Only a password POST has a body worth reading; bound it just past nova's limit.
    let wants_body = parts.method == Method::POST
        && request::normalise(parts.uri.path()).is_some_and(|p| p.ends_with("/password"));
    let body = if wants_body {
        match Limited::new(body, MAX_PASSWORD + 1).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::from(vec![0u8; MAX_PASSWORD + 1]), // too large (or cut): answered 400
        }
    } else {
        Bytes::new()
    };
    // Decide synchronously (snapshots and closures are not held across an await).
    let outcome = {
        let tree = shared.tree.load();
        let settings = shared.settings.load();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let request = Request {
            method: &parts.method,
            path,
            peer: peer.ip(),
            headers: &parts.headers,
            body: &body,
        };
        let passwords = &shared.passwords;
        let ctx = Context {
            password: &|uuid| passwords.get(uuid),
            // rand's thread-local generator: a CSPRNG seeded and periodically reseeded from the OS,
            // so a fresh seed per request costs no system call.
            random: &|| {
                let mut seed = [0u8; SEED_BYTES];
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
                seed
            },
        };
        request::answer(&tree, &settings, &request, &ctx)
    };
    let passwords = &shared.passwords;
    let response = match outcome {
        Outcome::Respond(r) => r,
        Outcome::SetPassword { uuid, value } => {
            // A file write and fsync: off the runtime's worker threads.
            let store = passwords.clone();
            let stored =
                tokio::task::spawn_blocking(move || store.set_if_unset(&uuid, value)).await;
            let text = |status, body: &'static [u8]| Response {
                status,
                content_type: TEXT,
                body: Bytes::from_static(body),
            };
            match stored {
                Ok(Ok(true)) => text(StatusCode::OK, b""),
                Ok(Ok(false)) => text(StatusCode::CONFLICT, b"Password already set."),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "storing a password failed");
                    text(StatusCode::INTERNAL_SERVER_ERROR, b"Internal error.")
                }
                Err(e) => {
                    tracing::error!(error = %e, "the password task failed");
                    text(StatusCode::INTERNAL_SERVER_ERROR, b"Internal error.")
                }
            }
        }
    };
    shared.stats.count(Answer::of(response.status));
    shared
        .stats
        .seconds
        .observe(started.elapsed().as_secs_f64());
    let mut out = HttpResponse::new(Full::new(response.body));
    *out.status_mut() = response.status;
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(response.content_type),
    );
    Ok(out)
}
