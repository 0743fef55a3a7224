//! The control socket: `<state dir>/netnode.sock`, mode 0600, one JSON request per
//! connection (see [`super::protocol`]), answered from the server's loop.
//!
//! Only root and the daemon's own user get in: the file mode keeps others from connecting,
//! and the peer's credentials (SO_PEERCRED) are checked again, because the socket is briefly
//! reachable under a temporary name before it is chmodded and renamed into place.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::protocol::{self, Answer, Command};
use crate::ask::{Ask, Asker, LeaseRow};
use crate::netif::LinkEvent;
use crate::ratelimit::LogLimiter;
use crate::service::{Context, Reload, Service, StartError};
use crate::stats::Report;
use crate::table::Table;

/// The socket's file name in the state directory.
pub const SOCKET: &str = "netnode.sock";
/// Time a client has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take its answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Clients served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;

/// The socket's path for a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

#[derive(Debug, Default)]
struct Counts {
    ok: AtomicU64,
    errors: AtomicU64,
    refused: AtomicU64,
}

/// The running control socket.
pub struct CtlService {
    path: PathBuf,
    counts: Arc<Counts>,
    task: JoinHandle<()>,
}

/// Binds the control socket in the state directory the daemon holds (none in radvd mode,
/// which holds no state directory).
pub fn start(ctx: &Context) -> Result<Option<Box<dyn Service>>, StartError> {
    if !ctx.owns_state {
        return Ok(None);
    }
    let path = socket_path(&ctx.table.load().state.dir);
    // Not fatal: the data plane serves on without its control socket (a state directory path
    // longer than a socket address holds, say); the error says why `netnode ctl` cannot reach it.
    let listener = match bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(socket = %path.display(), error = %e, "cannot open the control socket; netnode ctl will not reach this daemon");
            return Ok(None);
        }
    };
    let counts = Arc::new(Counts::default());
    let task = tokio::spawn(serve(
        listener,
        ctx.asker.clone(),
        counts.clone(),
        ctx.shutdown.clone(),
    ));
    tracing::info!(socket = %path.display(), "control socket ready (netnode ctl)");
    Ok(Some(Box::new(CtlService { path, counts, task })))
}

/// Binds under a temporary name, makes it 0600, then renames it into place (replacing a
/// socket a crashed daemon left: the state lock says none is running).
fn bind(path: &Path) -> std::io::Result<UnixListener> {
    let tmp = path.with_extension(format!("sock.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = std::os::unix::net::UnixListener::bind(&tmp)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|_| std::fs::rename(&tmp, path))
        .and_then(|_| listener.set_nonblocking(true));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    UnixListener::from_std(listener)
}

impl CtlService {
    fn report_of(counts: &Counts) -> Report {
        let mut r = Report::default();
        r.push(
            "ctl_requests",
            Some("ok"),
            None,
            counts.ok.load(Ordering::Relaxed),
        );
        r.push(
            "ctl_requests",
            Some("error"),
            None,
            counts.errors.load(Ordering::Relaxed),
        );
        r.push(
            "ctl_refused",
            None,
            None,
            counts.refused.load(Ordering::Relaxed),
        );
        r
    }
}

impl Service for CtlService {
    fn name(&self) -> &'static str {
        "ctl"
    }

    fn update(&mut self, _table: &Arc<Table>, _why: Reload) {
        // [state] takes effect at the next start (the server says so).
    }

    fn link(&mut self, _event: &LinkEvent) {}

    fn report(&self) -> Report {
        Self::report_of(&self.counts)
    }

    fn finished(self: Box<Self>) -> Pin<Box<dyn Future<Output = Report> + Send>> {
        Box::pin(async move {
            let _ = self.task.await;
            let _ = std::fs::remove_file(&self.path);
            Self::report_of(&self.counts)
        })
    }
}

async fn serve(listener: UnixListener, asker: Asker, counts: Arc<Counts>, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut limiter = LogLimiter::new(Duration::from_secs(1));
    // The daemon's own user may always ask (a daemon run by hand as a user, in tests).
    let own = nix::unistd::geteuid().as_raw();
    loop {
        let Some((stream, _)) =
            crate::service::next_connection(&stop, "control socket", || listener.accept()).await
        else {
            break;
        };
        let uid = stream.peer_cred().map(|c| c.uid()).ok();
        if !matches!(uid, Some(u) if u == 0 || u == own) {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            #[allow(clippy::disallowed_methods)] // IO shell: a log line's rate limit
            let now = std::time::Instant::now();
            if let Some(held) = limiter.allow("peer", now) {
                tracing::warn!(
                    ?uid,
                    suppressed = held,
                    "control socket: connection from another user refused"
                );
            }
            continue;
        }
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (asker, counts, stop) = (asker.clone(), counts.clone(), stop.clone());
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = connection(stream, &asker, &counts) => {}
            }
        });
    }
}

/// Reads one request, answers it, closes.
async fn connection(stream: UnixStream, asker: &Asker, counts: &Counts) {
    let Ok((bytes, mut stream)) = read_request(stream).await else {
        counts.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let answer = match protocol::parse(&bytes) {
        Ok(command) => run(asker, command).await,
        Err(e) => Answer::error(e.to_string()),
    };
    let counter = if answer.result == 0 {
        &counts.ok
    } else {
        &counts.errors
    };
    counter.fetch_add(1, Ordering::Relaxed);
    // A client that does not read its answer is not waited for long.
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&answer.to_line()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Reads up to a newline, the end of the stream, or one byte past the limit (which the parser
/// refuses), within [`READ_TIMEOUT`].
async fn read_request(mut stream: UnixStream) -> std::io::Result<(Vec<u8>, UnixStream)> {
    let mut buf = Vec::with_capacity(256);
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await?;
            let got = chunk.get(..n).unwrap_or_default();
            if let Some(end) = got.iter().position(|b| *b == b'\n') {
                buf.extend_from_slice(got.get(..end).unwrap_or_default());
                break;
            }
            buf.extend_from_slice(got);
            if n == 0 || buf.len() > protocol::MAX_REQUEST {
                break;
            }
        }
        Ok::<(), std::io::Error>(())
    };
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(Ok(())) => Ok((buf, stream)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Runs one command against the daemon.
async fn run(asker: &Asker, command: Command) -> Answer {
    let stopping = || Answer::error("netnode is stopping");
    match command {
        Command::Status => match asker.ask(Ask::Status).await {
            Some(s) => Answer::ok("status", serde_json::to_value(s).ok()),
            None => stopping(),
        },
        Command::Stats => match asker.ask(Ask::Report).await {
            Some(r) => Answer::ok(r.to_string(), Some(counters(&r))),
            None => stopping(),
        },
        Command::Leases { network, mac } => match asker.ask(Ask::Leases).await {
            Some(rows) => {
                let mac = mac.map(|m| m.to_string());
                let rows: Vec<LeaseRow> = rows
                    .into_iter()
                    .filter(|r| network.as_ref().is_none_or(|n| *n == r.network))
                    .filter(|r| mac.as_ref().is_none_or(|m| *m == r.mac))
                    .collect();
                Answer::ok(
                    format!("{} leases", rows.len()),
                    serde_json::to_value(rows).ok(),
                )
            }
            None => stopping(),
        },
        Command::LeaseRelease { ip } => match asker.ask(|tx| Ask::Release(ip, tx)).await {
            Some(Ok(row)) => Answer::ok(
                format!("lease of {} by {} ended", row.ip, row.mac),
                serde_json::to_value(row).ok(),
            ),
            Some(Err(e)) => Answer::error(e),
            None => stopping(),
        },
        Command::Reload => match asker.ask(Ask::Reload).await {
            Some(r) if r.ok => Answer::ok(
                format!(
                    "reloaded in {} ms, {} problems",
                    r.took_ms,
                    r.problems.len()
                ),
                serde_json::to_value(r).ok(),
            ),
            Some(r) => Answer {
                result: 1,
                text: format!(
                    "reload failed: {}; still serving the last good table",
                    r.error.as_deref().unwrap_or("?")
                ),
                arguments: serde_json::to_value(r).ok(),
            },
            None => stopping(),
        },
    }
}

/// Every counter as `{"counter", "bridge", "network", "value"}`.
fn counters(r: &Report) -> serde_json::Value {
    r.samples
        .iter()
        .map(|s| {
            serde_json::json!({
                "counter": s.key(),
                "bridge": s.bridge.as_deref(),
                "network": s.network.as_deref(),
                "value": s.value,
            })
        })
        .collect()
}
