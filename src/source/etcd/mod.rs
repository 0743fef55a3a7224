//! etcd as a table source (`[manager] backend = "etcd"`): this node lists its two key ranges
//! (every network, and its own host's ports), then watches both from the list's revision + 1
//! on one stream, and publishes a [`View`] after each batch of events (at most one per
//! [`COALESCE`] under a burst; views that come while the server rebuilds its table fold into
//! one rebuild). The server rebuilds its table from each view as it does for a file change.
//!
//! When the stream breaks (a member restarts, the member loses its leader: the client asks
//! for `require_leader`; a keep-alive goes unanswered), the node reconnects and resumes the
//! watch from the revision its copy is complete to (kept near the store's by a progress
//! request every [`PROGRESS`]). When that revision was compacted (the watch is cancelled with
//! `compact_revision`), it lists again: the list replaces the copy, so keys whose delete it
//! missed go too. Reconnects back off from [`BACKOFF_MIN`] to [`BACKOFF_MAX`] with jitter, one
//! at a time.
//! Meanwhile the node keeps serving its last view (and its leases), and says so in its log,
//! its `status` and its metrics; the view is also saved in the state directory, so a node
//! restarted while etcd is down serves what it served before.
//!
//! Liveness: the node puts `<prefix>/nodes/<host>` with a lease of [`NODE_TTL`] that it keeps
//! alive; `netnode nodes` lists them.

#![allow(clippy::disallowed_methods)] // IO shell: backoff, coalescing and liveness timers

pub mod mirror;
pub mod sim;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, EventType, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::watch;
use tokio::time::Instant;

pub use mirror::{Change, Mirror, View};

use crate::manager::etcd::record::{NodeRecord, Stored};
use crate::manager::etcd::{EtcdError, EtcdSettings};
use crate::stats::Report;

/// Views are published at most this often under a burst of events (the first at once). The
/// server coalesces further: views published while it rebuilds its table fold into one
/// rebuild (a watch channel keeps only the latest), so a burst costs a rebuild per rebuild
/// time, not per event, without delaying a lone write by a fixed window.
pub const COALESCE: Duration = Duration::from_millis(10);
/// The first wait before reconnecting.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// The longest wait between reconnects.
pub const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// The liveness key's lease (seconds); it is kept alive every third of it.
pub const NODE_TTL: i64 = 10;
/// How often a node asks for a progress notification (the store's revision, all events up
/// to it sent).
pub const PROGRESS: Duration = Duration::from_secs(30);
/// The saved view's file name in the state directory.
pub const SAVED_FILE: &str = "etcd-view.json";

/// The feed's counters, shared with the server's report.
#[derive(Debug, Default)]
pub struct FeedStats {
    /// 1 while listed and watching.
    pub connected: AtomicU64,
    /// The revision of the last published view.
    pub revision: AtomicI64,
    /// Lists (the first one and every resync).
    pub lists: AtomicU64,
    /// Lists forced by a compacted revision.
    pub compactions: AtomicU64,
    /// Sessions that ended in an error (unreachable, broken stream, lost leader...).
    pub errors: AtomicU64,
    /// Events that changed this node's copy.
    pub events: AtomicU64,
    /// Events for keys outside this node's ranges (0 unless the layout is broken).
    pub foreign_events: AtomicU64,
    /// Views published.
    pub views: AtomicU64,
    /// The liveness key's lease (0: none yet).
    pub lease: AtomicI64,
}

impl FeedStats {
    /// Adds the counters to a report.
    pub fn report(&self, report: &mut Report) {
        for (name, v) in [
            ("etcd_connected", self.connected.load(Relaxed)),
            ("etcd_revision", self.revision.load(Relaxed).max(0) as u64),
            ("etcd_lists", self.lists.load(Relaxed)),
            ("etcd_compactions", self.compactions.load(Relaxed)),
            ("etcd_errors", self.errors.load(Relaxed)),
            ("etcd_events", self.events.load(Relaxed)),
            ("etcd_foreign_events", self.foreign_events.load(Relaxed)),
            ("etcd_views", self.views.load(Relaxed)),
        ] {
            report.push(name, None, None, v);
        }
    }
}

/// A running feed: the latest view (none until the first list or a saved copy).
pub struct Feed {
    /// The latest view.
    pub views: watch::Receiver<Option<Arc<View>>>,
    /// Its counters.
    pub stats: Arc<FeedStats>,
    task: tokio::task::JoinHandle<()>,
    settings: EtcdSettings,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a session with the cluster ended.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error(transparent)]
    Connect(#[from] EtcdError),
    #[error("{0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("the watch was cancelled: revision {0} is compacted")]
    Compacted(i64),
    #[error("the watch was cancelled: {0}")]
    Cancelled(String),
    #[error("the watch stream ended")]
    Closed,
    #[error("the liveness lease expired")]
    LeaseLost,
    #[error("no answer within {0} s")]
    Timeout(u64),
}

/// What a session needs besides the connection.
pub struct Follow {
    /// The cluster and layout.
    pub settings: EtcdSettings,
    /// Put the liveness key (the daemon does; the simulation's hosts do not).
    pub liveness: bool,
    /// Save each view here (at most once a second).
    pub save_to: Option<PathBuf>,
}

impl Feed {
    /// Starts following on the current runtime. A saved view, if any, is published first
    /// (not live) and replaced by the first list.
    pub fn start(follow: Follow) -> Feed {
        let saved = follow
            .save_to
            .as_deref()
            .and_then(|p| read_saved(p, &follow.settings));
        let settings = follow.settings.clone();
        let (views, stats, task) = spawn(follow, None, saved);
        Feed {
            views,
            stats,
            task,
            settings,
        }
    }

    /// The keys it follows.
    pub fn layout(&self) -> &crate::manager::etcd::keys::Layout {
        &self.settings.layout
    }

    /// Stops following and revokes the liveness lease (its key goes with it), giving up after
    /// a second when etcd does not answer (the lease then runs out by itself).
    pub async fn stop(self) {
        self.task.abort();
        let lease = self.stats.lease.load(Relaxed);
        if lease == 0 {
            return;
        }
        let settings = self.settings.clone();
        let revoke = async move {
            let mut c = settings.connect().await.ok()?;
            c.lease_revoke(lease).await.ok()
        };
        if tokio::time::timeout(Duration::from_secs(1), revoke)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            tracing::warn!(
                "etcd: could not revoke the liveness lease; it runs out in {NODE_TTL} s"
            );
        }
    }

    /// Waits up to `wait` for a live view (the first list); returns the latest view either way.
    pub async fn first(&mut self, wait: Duration) -> Option<Arc<View>> {
        let _ = tokio::time::timeout(
            wait,
            self.views.wait_for(|v| v.as_ref().is_some_and(|v| v.live)),
        )
        .await;
        self.views.borrow().clone()
    }
}

/// Follows with a client of its own, or a shared one (the simulation's "few connections").
pub fn spawn_with(follow: Follow, client: Option<Client>) -> Spawned {
    spawn(follow, client, None)
}

/// A feed's views, counters and task.
pub type Spawned = (
    watch::Receiver<Option<Arc<View>>>,
    Arc<FeedStats>,
    tokio::task::JoinHandle<()>,
);

/// Starts a feed whose first view (until the first list) is `saved`.
fn spawn(follow: Follow, client: Option<Client>, saved: Option<View>) -> Spawned {
    let (tx, rx) = watch::channel(saved.map(Arc::new));
    let stats = Arc::new(FeedStats::default());
    let task = tokio::spawn(run(follow, client, tx, stats.clone()));
    (rx, stats, task)
}

/// Reconnects forever, one session at a time, with backoff.
async fn run(
    follow: Follow,
    shared: Option<Client>,
    tx: watch::Sender<Option<Arc<View>>>,
    stats: Arc<FeedStats>,
) {
    let mut mirror = Mirror::new(&follow.settings.layout);
    if let Some(v) = tx.borrow().as_deref() {
        mirror.restore(v);
    }
    let mut backoff = BACKOFF_MIN;
    let mut saver = Saver::new(follow.save_to.clone());
    let mut failures = 0u64;
    // After a session that was watching, the next one resumes the watch where the copy is
    // complete, without a list; a compacted revision makes it list.
    let mut resume = None;
    loop {
        let mut listed = false;
        let ended = session(
            &follow,
            shared.clone(),
            resume,
            (&mut mirror, &tx, &stats, &mut saver),
            &mut listed,
        )
        .await;
        stats.connected.store(0, Relaxed);
        stats.errors.fetch_add(1, Relaxed);
        let compacted = matches!(ended, Ended::Compacted(_));
        if compacted {
            stats.compactions.fetch_add(1, Relaxed);
            resume = None;
        } else if listed {
            resume = Some(mirror.revision());
        }
        if listed {
            backoff = BACKOFF_MIN;
            failures = 0;
        }
        failures += 1;
        // Said once when it starts, then every 10th failure (an outage is not a log flood).
        if failures == 1 || failures.is_multiple_of(10) {
            tracing::warn!(
                host = %follow.settings.layout.host,
                error = %ended,
                failures,
                revision = mirror.revision(),
                "etcd: lost; serving the last view (revision {}) and its leases until it is back",
                mirror.revision()
            );
        }
        if tx.borrow().as_ref().is_some_and(|v| v.live) {
            let _ = tx.send(Some(Arc::new(mirror.view(false))));
        }
        if compacted && failures == 1 {
            // The cluster is up; only the copy is too old: list at once.
            continue;
        }
        let jitter = fastrand::u64(..=backoff.as_millis() as u64 / 2);
        tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Saves views at most once a second, off the runtime's threads.
struct Saver {
    path: Option<PathBuf>,
    last: Option<Instant>,
    dirty: Option<Arc<View>>,
}

impl Saver {
    fn new(path: Option<PathBuf>) -> Saver {
        Saver {
            path,
            last: None,
            dirty: None,
        }
    }

    fn offer(&mut self, view: Arc<View>) {
        if self.path.is_some() {
            self.dirty = Some(view);
        }
        self.flush(false);
    }

    /// When the next save is due, if one is pending.
    fn due(&self) -> Option<Instant> {
        self.dirty.as_ref()?;
        Some(
            self.last
                .map_or_else(Instant::now, |l| l + Duration::from_secs(1)),
        )
    }

    fn flush(&mut self, force: bool) {
        let (Some(path), Some(view)) = (self.path.clone(), self.dirty.clone()) else {
            return;
        };
        if !force
            && self
                .last
                .is_some_and(|l| l.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.dirty = None;
        self.last = Some(Instant::now());
        tokio::task::spawn_blocking(move || {
            let text = serde_json::to_vec(&mirror::Saved::of(&view)).unwrap_or_default();
            if let Err(e) = crate::durable::write_atomically(&path, &text) {
                tracing::warn!(error = %e, "cannot save the etcd view");
            }
        });
    }
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, Ended> {
    let limit = crate::manager::etcd::REQUEST_TIMEOUT;
    match tokio::time::timeout(limit, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(Ended::Timeout(limit.as_secs())),
    }
}

/// Where a session publishes: the copy, the channel, the counters, the saved file.
type Outputs<'a> = (
    &'a mut Mirror,
    &'a watch::Sender<Option<Arc<View>>>,
    &'a FeedStats,
    &'a mut Saver,
);

/// One connection: liveness, list (unless it resumes from a revision), watch; returns why it
/// ended. `listed` says whether it got as far as watching.
async fn session(
    follow: &Follow,
    shared: Option<Client>,
    resume: Option<i64>,
    out: Outputs<'_>,
    listed: &mut bool,
) -> Ended {
    match session_inner(follow, shared, resume, out, listed).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn session_inner(
    follow: &Follow,
    shared: Option<Client>,
    resume: Option<i64>,
    (mirror, tx, stats, saver): Outputs<'_>,
    listed: &mut bool,
) -> Result<std::convert::Infallible, Ended> {
    let s = &follow.settings;
    let mut client = match shared {
        Some(c) => c,
        None => {
            let options = s.options()?.with_require_leader(true);
            tokio::time::timeout(
                crate::manager::etcd::CONNECT_TIMEOUT * 2,
                Client::connect(&s.endpoints, Some(options)),
            )
            .await
            .map_err(|_| Ended::Timeout((crate::manager::etcd::CONNECT_TIMEOUT * 2).as_secs()))??
        }
    };
    // Liveness first: a node that serves is listed.
    let mut keeper = None;
    if follow.liveness {
        let lease = timed(client.lease_grant(NODE_TTL, None)).await?.id();
        stats.lease.store(lease, Relaxed);
        let record = NodeRecord {
            host: s.layout.host.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started: crate::clock::unix_now(),
        };
        timed(client.put(
            s.layout.node(),
            serde_json::to_vec(&record).unwrap_or_default(),
            Some(PutOptions::new().with_lease(lease)),
        ))
        .await?;
        keeper = Some(timed(client.lease_keep_alive(lease)).await?);
    }
    let [networks, ports] = mirror.prefixes().map(str::to_string);
    let revision = match resume {
        Some(r) => r,
        None => {
            // List both ranges at one revision.
            let txn = Txn::new().and_then([
                TxnOp::get(networks.as_str(), Some(GetOptions::new().with_prefix())),
                TxnOp::get(ports.as_str(), Some(GetOptions::new().with_prefix())),
            ]);
            let r = timed(client.txn(txn)).await?;
            let revision = r.header().map_or(0, |h| h.revision());
            let mut kvs = Vec::new();
            for op in r.op_responses() {
                if let TxnOpResponse::Get(mut g) = op {
                    for kv in g.take_kvs() {
                        kvs.push((
                            String::from_utf8_lossy(kv.key()).into_owned(),
                            Stored {
                                value: kv.value().to_vec().into(),
                                create_revision: kv.create_revision(),
                            },
                        ));
                    }
                }
            }
            mirror.replace(revision, kvs);
            stats.lists.fetch_add(1, Relaxed);
            revision
        }
    };
    // Watch both from the next revision on one stream.
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1)
        .with_progress_notify();
    let mut stream = timed(client.watch(networks.as_str(), Some(options.clone()))).await?;
    timed(stream.watch(ports.as_str(), Some(options))).await?;
    *listed = true;
    stats.connected.store(1, Relaxed);
    let mut last_publish = Instant::now();
    publish(mirror, tx, stats, saver);
    tracing::info!(
        host = %s.layout.host,
        revision,
        ports = mirror.port_count(),
        "etcd: {}; watching from revision {}",
        if resume.is_some() { "back" } else { "listed" },
        revision + 1
    );
    let mut pending: Option<Instant> = None;
    let mut keep_alive = tokio::time::interval(Duration::from_secs((NODE_TTL / 3).max(1) as u64));
    keep_alive.tick().await;
    let mut progress = tokio::time::interval(PROGRESS);
    progress.tick().await;
    loop {
        let publish_at = pending;
        let save_at = saver.due();
        tokio::select! {
            msg = stream.message() => {
                let Some(resp) = msg? else { return Err(Ended::Closed) };
                if resp.canceled() {
                    return Err(if resp.compact_revision() > 0 {
                        Ended::Compacted(resp.compact_revision())
                    } else {
                        Ended::Cancelled(resp.cancel_reason().to_string())
                    });
                }
                if resp.created() {
                    // Its header is the store's revision, not how far the events came.
                    continue;
                }
                // How far the copy is complete: the events' own revisions (a catching-up
                // watch's header runs ahead of the events still to come), or a progress
                // notification's header (every event up to it was sent).
                let mut rev = 0;
                let mut changes = Vec::with_capacity(resp.events().len());
                for e in resp.events() {
                    let Some(kv) = e.kv() else { continue };
                    rev = rev.max(kv.mod_revision());
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    changes.push(match e.event_type() {
                        EventType::Put => Change::Put { key, value: kv.value().to_vec().into(), create_revision: kv.create_revision() },
                        EventType::Delete => Change::Delete { key },
                    });
                }
                if changes.is_empty() {
                    rev = resp.header().map_or(0, |h| h.revision());
                }
                let total = changes.len();
                let touched = mirror.apply(rev, changes);
                stats.events.fetch_add(touched as u64, Relaxed);
                stats.foreign_events.fetch_add((total - touched.min(total)) as u64, Relaxed);
                if touched > 0 && pending.is_none() {
                    let due = last_publish + COALESCE;
                    if Instant::now() >= due {
                        publish(mirror, tx, stats, saver);
                        last_publish = Instant::now();
                    } else {
                        pending = Some(due);
                    }
                }
            }
            _ = sleep_until(publish_at) => {
                pending = None;
                publish(mirror, tx, stats, saver);
                last_publish = Instant::now();
            }
            _ = sleep_until(save_at) => saver.flush(true),
            _ = progress.tick() => {
                // Keeps the copy's revision near the store's while other hosts write, so a
                // watch resumed after an outage is rarely behind a compaction.
                timed(stream.request_progress()).await?;
            }
            _ = keep_alive.tick(), if keeper.is_some() => {
                if let Some((k, _)) = keeper.as_mut() {
                    timed(k.keep_alive()).await?;
                }
            }
            answer = next_keep_alive(&mut keeper) => {
                match answer? {
                    Some(a) if a.ttl() > 0 => {}
                    _ => return Err(Ended::LeaseLost),
                }
            }
        }
    }
}

async fn next_keep_alive(
    keeper: &mut Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)>,
) -> Result<Option<etcd_client::LeaseKeepAliveResponse>, Ended> {
    match keeper {
        Some((_, stream)) => Ok(stream.message().await?),
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn publish(
    mirror: &Mirror,
    tx: &watch::Sender<Option<Arc<View>>>,
    stats: &FeedStats,
    saver: &mut Saver,
) {
    let view = Arc::new(mirror.view(true));
    stats.revision.store(view.revision, Relaxed);
    stats.views.fetch_add(1, Relaxed);
    let _ = tx.send(Some(view.clone()));
    saver.offer(view);
}

/// The view a daemon saved in `state_dir`, if any (not live).
pub fn saved_view(state_dir: &std::path::Path, settings: &EtcdSettings) -> Option<View> {
    read_saved(&state_dir.join(SAVED_FILE), settings)
}

/// A saved view; none when there is no file, and none with a warning when it cannot be read.
fn read_saved(path: &std::path::Path, settings: &EtcdSettings) -> Option<View> {
    let text = std::fs::read(path).ok()?;
    match serde_json::from_slice::<mirror::Saved>(&text) {
        Ok(s) => Some(s.into_view(&settings.layout)),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "the saved etcd view cannot be read; ignored");
            None
        }
    }
}
