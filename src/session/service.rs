//! The session service: the store, on a Tokio runtime of its own, plus the
//! node's in-memory revoked-session set and the background work that keeps
//! it current (revocation notifications, polling, cleanup).
//!
//! Why a runtime of its own: pingora runs each service (proxy, admin,
//! background) on separate runtimes, while database connections are bound to
//! the runtime that opened them. Every store call is therefore spawned onto
//! this runtime and awaited from wherever the handler runs; a store call
//! costs a database round trip anyway, the hop is noise next to it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;
use uuid::Uuid;

use super::store::{self, RevocationEvent, RevokeReason, SessionStore, StoreError, Timestamp};
use super::SessionSettings;
use crate::metrics::Metrics;
use crate::revoked::RevokedSet;

/// The `sessions` settings in force (they change on reload), or `None`
/// while the live configuration has no `sessions` section.
pub(crate) type CurrentSettings = Arc<dyn Fn() -> Option<Arc<SessionSettings>> + Send + Sync>;

/// How often the store is pinged for `/readyz` while it is down.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// One per process; shared by the proxy, the admin listener and the CLI.
pub struct SessionService {
    store: Arc<dyn SessionStore>,
    runtime: Runtime,
    /// Sessions revoked within the last access-token lifetime.
    pub revoked: Arc<RevokedSet>,
    metrics: Arc<Metrics>,
    available: Arc<AtomicBool>,
    /// The store URL the service was started with (a reload cannot move it).
    store_url: String,
}

impl SessionService {
    /// Opens the store (migrating when configured) and loads the recent
    /// revocations. Blocking; call before the server starts.
    pub fn start(
        settings: &SessionSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<SessionService>, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("portcullis-sessions")
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the session runtime: {e}"))
            })?;
        let store = runtime.block_on(open_store(
            &settings.store_url,
            settings.pool,
            settings.migrate,
        ))?;
        let service = Arc::new(SessionService {
            store,
            runtime,
            revoked: Arc::new(RevokedSet::new()),
            metrics,
            available: Arc::new(AtomicBool::new(true)),
            store_url: settings.store_url.clone(),
        });
        let since = Timestamp::now().saturating_sub(settings.revoked_retention());
        let loaded = service
            .runtime
            .block_on(service.store.revoked_since(since))?;
        let keep = settings.revoked_retention();
        for (id, at) in loaded {
            service.revoked.insert(id, keep_until(at, keep));
        }
        Ok(service)
    }

    /// The engine name (`postgres` or `sqlite`).
    pub fn engine(&self) -> &'static str {
        self.store.engine()
    }

    /// Whether `url` is the store this service runs on.
    pub fn serves(&self, url: &str) -> bool {
        self.store_url == url
    }

    /// False while the database is unreachable (`/readyz` reports it).
    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// Runs one store operation on the session runtime and records whether
    /// the database answered.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<dyn SessionStore>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let result = match self.runtime.spawn(op(self.store.clone())).await {
            Ok(result) => result,
            Err(e) => Err(StoreError::Unavailable(format!(
                "the session task failed: {e}"
            ))),
        };
        match &result {
            Err(e) if e.is_unavailable() => self.available.store(false, Ordering::Relaxed),
            Ok(_) => self.available.store(true, Ordering::Relaxed),
            Err(_) => {}
        }
        result
    }

    /// Records revocations made by this node: into the revoked set at once,
    /// and into the metrics.
    pub fn revoked_here(&self, ids: &[Uuid], reason: RevokeReason, settings: &SessionSettings) {
        let until = keep_until(Timestamp::now(), settings.revoked_retention());
        for id in ids {
            self.revoked.insert(*id, until);
        }
        self.metrics
            .sessions_revoked
            .with_label_values(&[reason.as_str()])
            .inc_by(ids.len() as u64);
    }

    /// Starts the background work on the session runtime: the revocation
    /// listener (Postgres), the revocation poll, the cleanup job and the
    /// availability probe. They read their intervals from the live
    /// `sessions` settings, which `current` returns (the reloaded ones).
    pub fn spawn_background(self: &Arc<Self>, current: CurrentSettings) {
        let state = current;
        let service = self.clone();
        let st = state.clone();
        self.runtime.spawn(async move { service.listen(st).await });
        let service = self.clone();
        let st = state.clone();
        self.runtime
            .spawn(async move { service.poll_revocations(st).await });
        let service = self.clone();
        let st = state.clone();
        self.runtime.spawn(async move { service.cleanup(st).await });
        let service = self.clone();
        self.runtime.spawn(async move { service.probe().await });
    }

    /// A revocation learnt from another node (or polled): into the set; the
    /// propagation delay is observed only for ids this node did not know.
    fn learned(&self, id: Uuid, revoked_at: Timestamp, settings: &SessionSettings) {
        let now = Timestamp::now();
        if self
            .revoked
            .insert(id, keep_until(revoked_at, settings.revoked_retention()))
        {
            self.metrics
                .revocation_propagation
                .observe(now.saturating_duration_since(revoked_at).as_secs_f64());
        }
    }

    async fn listen(self: Arc<Self>, state: CurrentSettings) {
        let mut events = loop {
            match self.store.listen_revocations().await {
                Ok(Some(rx)) => break rx,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for revocations yet; polling meanwhile, retrying");
                    tokio::time::sleep(HEALTH_INTERVAL).await;
                }
            }
        };
        while let Some(event) = events.recv().await {
            let Some(settings) = state() else {
                continue;
            };
            match event {
                RevocationEvent::Revoked(id) => {
                    if self.revoked.contains(&id) {
                        continue; // revoked here, or already polled
                    }
                    let learned_at = Timestamp::now();
                    // Insert first: enforcement must not wait for the lookup.
                    self.revoked
                        .insert(id, keep_until(learned_at, settings.revoked_retention()));
                    if let Ok(Some(session)) = self.store.get_session(id).await {
                        if let Some(r) = session.revoked {
                            self.revoked
                                .insert(id, keep_until(r.at, settings.revoked_retention()));
                            self.metrics
                                .revocation_propagation
                                .observe(learned_at.saturating_duration_since(r.at).as_secs_f64());
                        }
                    }
                }
                RevocationEvent::Resync => {
                    self.load_recent(&settings, None).await;
                }
            }
        }
    }

    /// Loads revocations since `since` (default: one access-token lifetime).
    async fn load_recent(&self, settings: &SessionSettings, since: Option<Timestamp>) -> bool {
        let since =
            since.unwrap_or_else(|| Timestamp::now().saturating_sub(settings.revoked_retention()));
        match self.store.revoked_since(since).await {
            Ok(rows) => {
                for (id, at) in rows {
                    self.learned(id, at, settings);
                }
                true
            }
            Err(e) => {
                if e.is_unavailable() {
                    self.available.store(false, Ordering::Relaxed);
                }
                tracing::debug!(error = %e, "revocation poll failed; keeping the last known set");
                false
            }
        }
    }

    async fn poll_revocations(self: Arc<Self>, state: CurrentSettings) {
        let mut last = Timestamp::now();
        loop {
            let interval = state()
                .map(|s| s.revocation_poll_interval)
                .unwrap_or(Duration::from_secs(10));
            tokio::time::sleep(interval).await;
            let Some(settings) = state() else {
                continue;
            };
            let started = Timestamp::now();
            // Overlap: revoked_at comes from the revoking node's clock and the
            // row may commit after it was stamped.
            let since = last.saturating_sub(interval + Duration::from_secs(5));
            if self.load_recent(&settings, Some(since)).await {
                last = started;
            }
            self.revoked
                .prune(Timestamp::now().unix_seconds().max(0) as u64);
        }
    }

    async fn cleanup(self: Arc<Self>, state: CurrentSettings) {
        loop {
            let Some(settings) = state() else {
                tokio::time::sleep(Duration::from_secs(60)).await;
                continue;
            };
            let now = Timestamp::now();
            // Revoked rows stay until no node could still need to load them.
            let revoked_before =
                now.saturating_sub(settings.revoked_retention() + Duration::from_secs(3600));
            match self.store.delete_expired(now, revoked_before).await {
                Ok(n) if n > 0 => tracing::info!(
                    rows = n,
                    "session cleanup deleted expired and old revoked rows"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "session cleanup failed; retrying next interval")
                }
            }
            if let Ok(n) = self.store.count_active(now).await {
                self.metrics.sessions_active.set(n as i64);
            }
            tokio::time::sleep(settings.cleanup_interval).await;
        }
    }

    /// Pings the store so `/readyz` turns green again after an outage even
    /// when no session request arrives.
    async fn probe(self: Arc<Self>) {
        loop {
            tokio::time::sleep(HEALTH_INTERVAL).await;
            let up = self.store.ping().await.is_ok();
            let was = self.available.swap(up, Ordering::Relaxed);
            if was != up {
                if up {
                    tracing::info!(engine = self.engine(), "session store reachable again");
                } else {
                    tracing::error!(engine = self.engine(), "session store unreachable: /api/auth answers 503, proxying continues on the last known revocations");
                }
            }
        }
    }
}

/// Opens the store at `url` (creating an SQLite file's directory) and
/// applies the migrations when `migrate` is set.
pub(crate) async fn open_store(
    url: &str,
    pool: store::PoolSettings,
    migrate: bool,
) -> Result<Arc<dyn SessionStore>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let dir = std::path::Path::new(path).parent();
        if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty() && !path.starts_with(':')) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create the directory {} for the SQLite store: {e}",
                    dir.display()
                ))
            })?;
        }
    }
    let store = store::open_with(url, pool).await?;
    if migrate {
        store.migrate().await?;
    }
    Ok(store)
}

/// Unix seconds until which a session revoked at `at` stays in the set.
fn keep_until(at: Timestamp, retention: Duration) -> u64 {
    at.saturating_add(retention).unix_seconds().max(0) as u64
}
