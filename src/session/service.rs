//! The session service: the store, on a Tokio runtime of its own, plus the
//! node's in-memory revoked-session set and the background work that keeps
//! it current (revocation notifications, polling, cleanup), and the
//! [breaker](super::breaker) that makes session requests fail fast while the
//! store is down, with the probe that closes it again.
//!
//! Why a runtime of its own: pingora runs each service (proxy, admin,
//! background) on separate runtimes, while database connections are bound to
//! the runtime that opened them. Every store call is therefore spawned onto
//! this runtime and awaited from wherever the handler runs; a store call
//! costs a database round trip anyway, the hop is noise next to it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;
use uuid::Uuid;

use super::breaker::{BreakerState, StoreBreaker};
use super::store::{
    self, RevocationEvent, RevokeReason, SessionStore, StoreError, Timestamp, TokenRevocation,
};
use super::SessionSettings;
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::revoked::RevokedSet;

/// The `sessions` settings in force (they change on reload), or `None`
/// while the live configuration has no `sessions` section.
pub(crate) type CurrentSettings = Arc<dyn Fn() -> Option<Arc<SessionSettings>> + Send + Sync>;

/// How long the revocation listener waits before trying to listen again.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// The longest a probe of an open breaker waits for the store (shorter when
/// `sessions.pool.acquire_timeout` is): a store that cannot answer `SELECT 1`
/// within a second is not ready for session traffic.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One per process; shared by the proxy, the admin listener and the CLI.
pub struct SessionService {
    store: Arc<dyn SessionStore>,
    runtime: Runtime,
    /// Sessions revoked within the last access-token lifetime.
    pub revoked: Arc<RevokedSet>,
    metrics: Arc<Metrics>,
    /// The one notion of "store available": closed while calls reach it.
    breaker: StoreBreaker,
    /// How long a probe of the open breaker waits for the store.
    probe_timeout: Duration,
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
        let breaker = StoreBreaker::new(
            settings.store_probe_interval,
            metrics.session_store.breaker_state.clone(),
        );
        let service = Arc::new(SessionService {
            store,
            runtime,
            revoked: Arc::new(RevokedSet::new()),
            metrics,
            breaker,
            probe_timeout: settings.pool.acquire_timeout.min(PROBE_TIMEOUT),
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
        let now = Timestamp::now();
        let tokens = service
            .runtime
            .block_on(service.store.token_revocations(Timestamp::MIN, now))?;
        for revocation in &tokens {
            service.revoked.tokens.insert(revocation);
        }
        service.set_token_revocation_gauge();
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

    /// False from the moment a call finds the database unreachable until
    /// the background probe reaches it again, i.e. while the breaker is not
    /// closed (`/readyz` reports it).
    pub fn is_available(&self) -> bool {
        self.breaker.is_closed()
    }

    /// Runs one store operation on the session runtime. While the breaker is
    /// open it fails at once with [`StoreError::BreakerOpen`], without
    /// touching the pool; a call that finds the database unavailable opens it.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<dyn SessionStore>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        self.fail_fast()?;
        let result = match self.runtime.spawn(op(self.store.clone())).await {
            Ok(result) => result,
            Err(e) => Err(StoreError::Unavailable(format!(
                "the session task failed: {e}"
            ))),
        };
        if let Err(e) = &result {
            if e.is_unavailable() {
                self.store_down(e);
            }
        }
        result
    }

    /// Refuses a session request at once (503 with `Retry-After`) while the
    /// breaker is open: for work that must not start when its session cannot
    /// be stored, such as sending a login to the backend.
    pub(crate) fn admit(&self) -> Result<(), GatewayError> {
        self.fail_fast().map_err(|e| self.refusal(&e))
    }

    /// The answer to a failed store call; logs what the operator needs (the
    /// client only learns whether and when to try again).
    pub(crate) fn refusal(&self, error: &StoreError) -> GatewayError {
        match error {
            // Logged once, when the breaker opened.
            StoreError::BreakerOpen { .. } => {}
            // The breaker's log line names the cause that opened it; later
            // failures of calls already in flight add nothing new.
            e if e.is_unavailable() => tracing::debug!(%error, "session store unavailable"),
            _ => {
                tracing::error!(%error, "session store error");
                return GatewayError::StoreFailed;
            }
        }
        GatewayError::StoreUnavailable {
            retry_after_secs: Some(super::ratelimit::retry_after_secs(
                self.breaker.probe_interval(),
            )),
        }
    }

    /// `Err` while the breaker is open, counted as a fast failure.
    fn fail_fast(&self) -> Result<(), StoreError> {
        if self.breaker.is_closed() {
            return Ok(());
        }
        self.metrics.session_store.fast_failures.inc();
        Err(StoreError::BreakerOpen {
            retry_after: self.breaker.probe_interval(),
        })
    }

    /// Opens the breaker after `cause`, logging the outage once.
    fn store_down(&self, cause: &StoreError) {
        if self.breaker.trip() {
            tracing::error!(
                engine = self.engine(),
                store = %store::redact_url(&self.store_url),
                cause = %cause,
                probe_interval = ?self.breaker.probe_interval(),
                "session store unavailable: session requests answer 503 at once until a probe reaches it again; proxying continues on the last known revocations"
            );
        }
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

    /// Records a token revocation this node stored: into the set at once,
    /// and into the metrics (`source`: `admin` or `backchannel_logout`).
    pub fn tokens_revoked_here(&self, revocation: &TokenRevocation, source: &str) {
        self.revoked.tokens.insert(revocation);
        self.metrics
            .token_revocations
            .with_label_values(&[revocation.kind.as_str(), source])
            .inc();
        self.set_token_revocation_gauge();
    }

    fn set_token_revocation_gauge(&self) {
        self.metrics
            .token_revocations_active
            .set(self.revoked.tokens.len() as i64);
    }

    /// A token revocation learnt from another node (or polled): into the
    /// set; the propagation delay is observed only when it was news.
    fn learned_tokens(&self, revocation: &TokenRevocation) {
        if self.revoked.tokens.insert(revocation) {
            let at = Timestamp::from_unix_millis(revocation.revoked_at_ms);
            self.metrics
                .revocation_propagation
                .observe(Timestamp::now().saturating_duration_since(at).as_secs_f64());
            self.set_token_revocation_gauge();
        }
    }

    /// Starts the background work on the session runtime: the revocation
    /// listener (Postgres), the revocation poll, the cleanup job and the
    /// store probe that watches for outages and closes the breaker after
    /// one. They read their intervals from the live `sessions` settings,
    /// which `current` returns (the reloaded ones).
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
        self.runtime
            .spawn(async move { service.probe(state).await });
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
                RevocationEvent::Tokens(revocation) => self.learned_tokens(&revocation),
                RevocationEvent::Resync => {
                    self.load_recent(&settings, None).await;
                    self.load_token_revocations(Timestamp::MIN).await;
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
                    self.store_down(&e);
                }
                tracing::debug!(error = %e, "revocation poll failed; keeping the last known set");
                false
            }
        }
    }

    /// Loads the token revocations made since `since` that are still kept.
    async fn load_token_revocations(&self, since: Timestamp) -> bool {
        match self.store.token_revocations(since, Timestamp::now()).await {
            Ok(rows) => {
                for revocation in &rows {
                    self.learned_tokens(revocation);
                }
                true
            }
            Err(e) => {
                if e.is_unavailable() {
                    self.store_down(&e);
                }
                tracing::debug!(error = %e, "token revocation poll failed; keeping the last known set");
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
            if !self.breaker.is_closed() {
                // Nothing to learn from a store known to be down; `last`
                // stays, so the first poll after the outage covers it.
                continue;
            }
            let started = Timestamp::now();
            // Overlap: revoked_at comes from the revoking node's clock and the
            // row may commit after it was stamped.
            let since = last.saturating_sub(interval + Duration::from_secs(5));
            let sessions = self.load_recent(&settings, Some(since)).await;
            if self.load_token_revocations(since).await && sessions {
                last = started;
            }
            let now_secs = Timestamp::now().unix_seconds().max(0) as u64;
            self.revoked.prune(now_secs);
            if self.revoked.tokens.prune(now_secs) > 0 {
                self.set_token_revocation_gauge();
            }
        }
    }

    async fn cleanup(self: Arc<Self>, state: CurrentSettings) {
        loop {
            let Some(settings) = state() else {
                tokio::time::sleep(Duration::from_secs(60)).await;
                continue;
            };
            if !self.breaker.is_closed() {
                tokio::time::sleep(settings.cleanup_interval).await;
                continue;
            }
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

    /// Pings the store every `sessions.store_probe_interval`. While the
    /// breaker is closed, a ping that finds the store unavailable opens it
    /// (so an outage shows on `/readyz` and fails fast even before a session
    /// request meets it); while open, one short probe at a time decides
    /// whether it closes. Being the only task that probes, it never runs two
    /// probes at once.
    async fn probe(self: Arc<Self>, state: CurrentSettings) {
        loop {
            if let Some(settings) = state() {
                self.breaker
                    .set_probe_interval(settings.store_probe_interval);
            }
            tokio::time::sleep(self.breaker.probe_interval()).await;
            match self.breaker.state() {
                BreakerState::Closed => {
                    if let Err(e) = self.store.ping().await {
                        if e.is_unavailable() {
                            self.store_down(&e);
                        }
                    }
                }
                BreakerState::Open => self.probe_once().await,
                // Cannot happen (only this task probes); the next round sees.
                BreakerState::Probing => {}
            }
        }
    }

    /// One half-open probe: `SELECT 1` within [`PROBE_TIMEOUT`]; closes the
    /// breaker when the store answers.
    async fn probe_once(&self) {
        if !self.breaker.begin_probe() {
            return;
        }
        let reached = match tokio::time::timeout(self.probe_timeout, self.store.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "session store probe failed; still failing fast");
                false
            }
            Err(_) => {
                tracing::debug!(
                    timeout = ?self.probe_timeout,
                    "session store probe timed out; still failing fast"
                );
                false
            }
        };
        if let Some(outage) = self.breaker.end_probe(reached) {
            tracing::info!(
                engine = self.engine(),
                store = %store::redact_url(&self.store_url),
                outage = ?outage,
                "session store reachable again: session requests go to the store again"
            );
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
