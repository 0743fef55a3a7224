//! The metadata HTTP shell: hyper on a bound TCP listener. Bounded: header size, header read
//! time, connection lifetime, concurrent connections, and the only body ever read (a password
//! POST) to a few bytes more than nova accepts.

#![allow(clippy::disallowed_methods)] // IO shell

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
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
use tokio::sync::{watch, Semaphore};

use super::password::PasswordStore;
use super::request::{self, Context, Outcome, Request, Response, MAX_PASSWORD, SEED_BYTES};
use super::tree::{Tree, TEXT};
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

/// Counters of the metadata service.
#[derive(Debug, Default)]
pub struct MetadataStats {
    /// Requests answered.
    pub requests: AtomicU64,
    /// 2xx answers.
    pub ok: AtomicU64,
    /// 404 answers.
    pub not_found: AtomicU64,
    /// 4xx answers other than 404.
    pub rejected: AtomicU64,
    /// 5xx answers.
    pub errors: AtomicU64,
    /// Connections closed because too many were open.
    pub refused: AtomicU64,
}

impl fmt::Display for MetadataStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        write!(
            f,
            "md_requests={} md_ok={} md_not_found={} md_rejected={} md_errors={} md_refused={}",
            g(&self.requests),
            g(&self.ok),
            g(&self.not_found),
            g(&self.rejected),
            g(&self.errors),
            g(&self.refused)
        )
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
    pub stats: Arc<MetadataStats>,
}

/// Serves until `shutdown` turns true.
pub async fn run(listener: TcpListener, shared: Shared, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_source: Arc<Mutex<HashMap<IpAddr, u32>>> = Arc::default();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metadata accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Some(source_slot) = SourceSlot::take(&per_source, peer.ip()) else {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
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
    count(&shared.stats, response.status);
    let mut out = HttpResponse::new(Full::new(response.body));
    *out.status_mut() = response.status;
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(response.content_type),
    );
    Ok(out)
}

fn count(stats: &MetadataStats, status: StatusCode) {
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let slot = match status.as_u16() {
        200..=299 => &stats.ok,
        404 => &stats.not_found,
        400..=499 => &stats.rejected,
        _ => &stats.errors,
    };
    slot.fetch_add(1, Ordering::Relaxed);
}
