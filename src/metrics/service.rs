//! The `/metrics` endpoint: hyper on `[metrics] listen`, asking the server's loop for every
//! service's counters at each scrape. A reload that moves or removes `listen` re-binds.
//!
//! A bind failure is logged, not fatal: the data plane must not stay down because another
//! process holds the metrics port (the next reload tries again).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::render;
use crate::ask::{Ask, Asker};
use crate::netif::LinkEvent;
use crate::service::{Context, Reload, Service, StartError};
use crate::stats::Report;
use crate::table::Table;

/// Scrapers served at once (Prometheus opens one; more is a misconfiguration or an attack).
const MAX_CONNECTIONS: usize = 16;
/// Time allowed to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

struct Listening {
    listen: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The running endpoint (listening or not, as the table says).
pub struct MetricsService {
    asker: Asker,
    shutdown: CancellationToken,
    listening: Option<Listening>,
    scrapes: Arc<AtomicU64>,
}

/// Starts the endpoint; listens now if the table names an address.
pub fn start(ctx: &Context) -> Result<Option<Box<dyn Service>>, StartError> {
    let mut service = MetricsService {
        asker: ctx.asker.clone(),
        shutdown: ctx.shutdown.clone(),
        listening: None,
        scrapes: Arc::default(),
    };
    service.follow(ctx.table.load().metrics);
    Ok(Some(Box::new(service)))
}

impl MetricsService {
    /// Listens on `listen` (closing what listened elsewhere). The new listener binds once the
    /// old one is closed, so moving 127.0.0.1:9167 to 0.0.0.0:9167 does not collide with itself.
    fn follow(&mut self, listen: Option<SocketAddr>) {
        let current = self.listening.as_ref().map(|l| l.listen);
        if current == listen
            && self
                .listening
                .as_ref()
                .is_some_and(|l| !l.task.is_finished())
        {
            return;
        }
        let old = self.listening.take();
        if let Some(old) = &old {
            old.stop.cancel();
        }
        let Some(listen) = listen else { return };
        let stop = self.shutdown.child_token();
        let (asker, scrapes, task_stop) = (self.asker.clone(), self.scrapes.clone(), stop.clone());
        let task = tokio::spawn(async move {
            if let Some(old) = old {
                let _ = old.task.await;
            }
            let bound = std::net::TcpListener::bind(listen)
                .and_then(|l| l.set_nonblocking(true).map(|_| l))
                .and_then(TcpListener::from_std);
            match bound {
                Ok(listener) => {
                    tracing::info!(%listen, "metrics: serving /metrics");
                    serve(listener, asker, scrapes, task_stop).await;
                }
                Err(e) => {
                    tracing::error!(%listen, error = %e, "metrics: cannot listen; no /metrics until a reload binds it ([metrics] listen = \"\" turns it off)")
                }
            }
        });
        self.listening = Some(Listening { listen, stop, task });
    }

    fn report_of(scrapes: &AtomicU64) -> Report {
        let mut r = Report::default();
        r.push(
            "metrics_scrapes",
            None,
            None,
            scrapes.load(Ordering::Relaxed),
        );
        r
    }
}

impl Service for MetricsService {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn update(&mut self, table: &Arc<Table>, _why: Reload) {
        // A failed bind is retried at each reload.
        self.follow(table.metrics);
    }

    fn link(&mut self, _event: &LinkEvent) {}

    fn report(&self) -> Report {
        Self::report_of(&self.scrapes)
    }

    fn finished(self: Box<Self>) -> Pin<Box<dyn Future<Output = Report> + Send>> {
        Box::pin(async move {
            if let Some(l) = self.listening {
                l.stop.cancel();
                let _ = l.task.await;
            }
            Self::report_of(&self.scrapes)
        })
    }
}

async fn serve(
    listener: TcpListener,
    asker: Asker,
    scrapes: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Some((stream, _)) =
            crate::service::next_connection(&stop, "metrics", || listener.accept()).await
        else {
            break;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // dropped: closed at once
        };
        let (asker, scrapes, stop) = (asker.clone(), scrapes.clone(), stop.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let handler = service_fn(move |req| answer(req, asker.clone(), scrapes.clone()));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), handler);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    asker: Asker,
    scrapes: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => match asker.ask(Ask::Report).await {
            Some(report) => {
                scrapes.fetch_add(1, Ordering::Relaxed);
                let mut report = report;
                report.extend(MetricsService::report_of(&scrapes));
                (StatusCode::OK, render::CONTENT_TYPE, render::render(report))
            }
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "netnode is stopping\n".to_string(),
            ),
        },
        (&Method::GET, "/") => (
            StatusCode::OK,
            "text/plain",
            "netnode: Prometheus metrics at /metrics\n".to_string(),
        ),
        (&Method::GET, _) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let mut out = Response::new(Full::new(Bytes::from(body)));
    *out.status_mut() = status;
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    Ok(out)
}
