//! One issuer's signing keys, fetched from its JWK Set and kept fresh off
//! the request path.
//!
//! - **Where from**: `{issuer}/.well-known/openid-configuration` (OIDC
//!   Discovery; its `issuer` must be the configured one, §4.3) names the
//!   `jwks_uri`, or the `jwks_uri` is configured directly.
//! - **How fresh**: a fetched set is kept for the answer's
//!   `Cache-Control: max-age`, held within `[min_refresh, max_refresh]`,
//!   then fetched again in the background, with ±10% jitter so a fleet of
//!   gateways does not fetch in step.
//! - **Unknown `kid`**: a token naming a key the set does not have may mean
//!   the issuer rotated; [`RemoteKeys::refresh_for_unknown_kid`] fetches
//!   once — at most once per `cooldown`, and only one fetch at a time — so
//!   a flood of made-up `kid`s cannot turn into a flood of requests to the
//!   identity provider.
//! - **Stale if error**: when the identity provider cannot be reached the
//!   last good set keeps serving for `max_stale` after it was fetched; after
//!   that the issuer fails closed ([`Unavailable::Stale`]) until a fetch
//!   succeeds again.
//!
//! Keys with `use: enc`, an unknown `kty`, RSA under 2048 bits, symmetric
//! keys, or an `alg` outside the issuer's allow-list are left out with a log
//! line; a key's type always matches its algorithm ([`Key::from_jwk`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;
use pingora::connectors::http::Connector;
use serde_json::Value;

use super::fetch::{fetch_json, FetchError, FetchPolicy};
use crate::jwt::{Key, KeySet};

/// Where an issuer's JWK Set is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    /// Read `jwks_uri` from the issuer's discovery document.
    Discovery,
    /// This JWK Set URL.
    JwksUri(String),
}

/// How one issuer's keys are fetched and kept.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySourceSettings {
    /// The issuer's name (`jwt.issuers[].name`): metric label and logs.
    pub name: String,
    /// The issuer URL, exactly as tokens carry it in `iss`.
    pub issuer: String,
    /// Discovery or a configured `jwks_uri`.
    pub location: KeyLocation,
    /// Algorithms the issuer's keys may be used with.
    pub algorithms: Vec<Algorithm>,
    /// Shortest time a fetched set is kept (also the retry interval while
    /// fetches fail).
    pub min_refresh: Duration,
    /// Longest time a fetched set is kept before it is fetched again.
    pub max_refresh: Duration,
    /// Least time between two fetches caused by unknown `kid`s.
    pub cooldown: Duration,
    /// How long the last good set serves while fetches fail.
    pub max_stale: Duration,
    /// Transport rules.
    pub fetch: FetchPolicy,
    /// `/readyz` waits for the first fetch (`startup: wait`), or not (`lazy`).
    pub wait_at_startup: bool,
}

/// Why an issuer has no keys to check a token with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// No fetch has succeeded yet.
    #[error("the issuer's keys have not been fetched yet")]
    NotLoaded,
    /// The last good set is older than `max_stale` and fetches fail.
    #[error("the issuer's keys are older than max_stale and cannot be fetched")]
    Stale,
}

/// A set in use and when it was fetched.
struct Loaded {
    keys: Arc<KeySet>,
    fetched_at: Instant,
    /// How long it is fresh (max-age within the bounds).
    fresh_for: Duration,
}

/// Outcome counts, for metrics and tests.
#[derive(Debug, Default)]
pub struct FetchCounts {
    /// Fetches that gave a usable key set.
    pub ok: AtomicU64,
    /// Fetches that failed (the last good set, if any, kept serving).
    pub failed: AtomicU64,
}

/// One issuer's fetched keys.
pub struct RemoteKeys {
    settings: KeySourceSettings,
    connector: Connector,
    loaded: ArcSwap<Option<Loaded>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    /// When the last fetch for an unknown `kid` started (the cooldown).
    last_kid_fetch: Mutex<Option<Instant>>,
    /// The last failure, for `/readyz` and logs.
    last_error: Mutex<Option<String>>,
    counts: FetchCounts,
    /// The background refresh task was started.
    started: std::sync::atomic::AtomicBool,
}

impl RemoteKeys {
    /// A source with no keys yet; [`run`](Self::run) or
    /// [`refresh`](Self::refresh) fetches them.
    pub fn new(settings: KeySourceSettings) -> Arc<RemoteKeys> {
        Arc::new(RemoteKeys {
            settings,
            connector: Connector::new(None),
            loaded: ArcSwap::from_pointee(None),
            fetching: tokio::sync::Mutex::new(()),
            last_kid_fetch: Mutex::new(None),
            last_error: Mutex::new(None),
            counts: FetchCounts::default(),
            started: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The source for `settings`: the live one of an earlier generation
    /// when its settings are the same — so a reload keeps the fetched keys
    /// and their refresh task — else a new one.
    pub fn shared(settings: KeySourceSettings) -> Arc<RemoteKeys> {
        static LIVE: Mutex<Vec<std::sync::Weak<RemoteKeys>>> = Mutex::new(Vec::new());
        let Ok(mut live) = LIVE.lock() else {
            return RemoteKeys::new(settings);
        };
        live.retain(|w| w.strong_count() > 0);
        if let Some(same) = live
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .find(|k| k.settings == settings)
        {
            return same;
        }
        let keys = RemoteKeys::new(settings);
        live.push(Arc::downgrade(&keys));
        keys
    }

    /// Starts the refresh task once (on the current tokio runtime); it ends
    /// when the last generation using this source is gone.
    pub fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(this) = weak.upgrade() else {
                    return;
                };
                let wait = this.refresh_now_and_next().await;
                drop(this);
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// Whether `/readyz` may count this issuer ready: keys usable, or
    /// `startup: lazy`.
    pub fn is_ready(&self) -> bool {
        !self.settings.wait_at_startup || self.keys().is_ok()
    }

    /// Keys in the set in use (`None` before the first fetch).
    pub fn key_count(&self) -> Option<usize> {
        (**self.loaded.load())
            .as_ref()
            .map(|l| l.keys.iter().count())
    }

    /// The settings this source was built with.
    pub fn settings(&self) -> &KeySourceSettings {
        &self.settings
    }

    /// The keys to check a token with, unless none were fetched yet or the
    /// last good set is older than `max_stale` (fail closed).
    pub fn keys(&self) -> Result<Arc<KeySet>, Unavailable> {
        match &**self.loaded.load() {
            None => Err(Unavailable::NotLoaded),
            Some(l) if l.fetched_at.elapsed() > self.settings.max_stale => Err(Unavailable::Stale),
            Some(l) => Ok(l.keys.clone()),
        }
    }

    /// Age of the set in use; `None` before the first fetch.
    pub fn age(&self) -> Option<Duration> {
        (**self.loaded.load())
            .as_ref()
            .map(|l| l.fetched_at.elapsed())
    }

    /// Fetch outcomes so far.
    pub fn counts(&self) -> &FetchCounts {
        &self.counts
    }

    /// The last fetch failure, if the last fetch failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Fetches the set now; a fetch already under way is waited for and its
    /// outcome shared instead of starting another.
    pub async fn refresh(&self) -> Result<(), FetchError> {
        let asked = Instant::now();
        let _one = self.fetching.lock().await;
        if let Some(l) = &**self.loaded.load() {
            if l.fetched_at >= asked {
                return Ok(()); // fetched while this call waited
            }
        }
        match self.fetch_keys().await {
            Ok((keys, max_age)) => {
                let fresh_for = max_age
                    .unwrap_or(self.settings.max_refresh)
                    .clamp(self.settings.min_refresh, self.settings.max_refresh);
                tracing::info!(
                    issuer = %self.settings.issuer,
                    keys = keys.iter().count(),
                    fresh_for = ?fresh_for,
                    "fetched the issuer's signing keys"
                );
                self.loaded.store(Arc::new(Some(Loaded {
                    keys: Arc::new(keys),
                    fetched_at: Instant::now(),
                    fresh_for,
                })));
                self.counts.ok.fetch_add(1, Ordering::Relaxed);
                super::count_fetch(&self.settings.name, "ok");
                if let Ok(mut e) = self.last_error.lock() {
                    *e = None;
                }
                Ok(())
            }
            Err(e) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                super::count_fetch(&self.settings.name, "error");
                tracing::warn!(
                    issuer = %self.settings.issuer,
                    error = %e,
                    age = ?self.age(),
                    max_stale = ?self.settings.max_stale,
                    "cannot fetch the issuer's signing keys; the last good set keeps serving until max_stale"
                );
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(e.to_string());
                }
                Err(e)
            }
        }
    }

    /// A token named a `kid` the set lacks: fetches once, unless a fetch for
    /// an unknown `kid` started less than `cooldown` ago. True when a fetch
    /// ran and succeeded (the caller looks the `kid` up again).
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        {
            let Ok(mut last) = self.last_kid_fetch.lock() else {
                return false;
            };
            if last.is_some_and(|t| t.elapsed() < self.settings.cooldown) {
                return false;
            }
            *last = Some(Instant::now());
        }
        self.refresh().await.is_ok()
    }

    /// One turn of the refresh task: fetch, then how long to wait — the
    /// set's freshness, at most half of `max_stale` (±10% jitter), or
    /// `min_refresh` while fetches fail.
    async fn refresh_now_and_next(&self) -> Duration {
        let wait = match self.refresh().await {
            // Fetch again well before the set could go stale, so an outage
            // shorter than half of max_stale is never seen by a token.
            Ok(()) => (**self.loaded.load())
                .as_ref()
                .map(|l| l.fresh_for.min(self.settings.max_stale / 2))
                .unwrap_or(self.settings.min_refresh),
            Err(_) => self.settings.min_refresh,
        };
        jitter(wait)
    }

    async fn fetch_keys(&self) -> Result<(KeySet, Option<Duration>), FetchError> {
        let policy = &self.settings.fetch;
        let jwks_uri = match &self.settings.location {
            KeyLocation::JwksUri(uri) => uri.clone(),
            KeyLocation::Discovery => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.settings.issuer.trim_end_matches('/')
                );
                let doc = fetch_json(&self.connector, &url, policy).await?.json;
                if doc.get("issuer").and_then(Value::as_str) != Some(self.settings.issuer.as_str())
                {
                    return Err(FetchError::NotJson(
                        "a discovery document for this issuer (its `issuer` differs)",
                    ));
                }
                doc.get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or(FetchError::NotJson(
                        "a discovery document with a `jwks_uri`",
                    ))?
                    .to_owned()
            }
        };
        let fetched = fetch_json(&self.connector, &jwks_uri, policy).await?;
        let entries = fetched
            .json
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(FetchError::NotJson("a JWK Set (`{\"keys\": [...]}`)"))?;
        let keys = self.usable_keys(entries);
        Ok((KeySet::new(keys), fetched.max_age))
    }

    fn usable_keys(&self, entries: &[Value]) -> Vec<Key> {
        let mut keys: Vec<Key> = Vec::new();
        for entry in entries {
            let kid = entry.get("kid").and_then(|k| k.as_str()).unwrap_or("-");
            match Key::from_jwk(entry, &self.settings.algorithms) {
                Ok(key) if keys.iter().any(|k| k.kid == key.kid) => tracing::warn!(
                    issuer = %self.settings.issuer,
                    kid = %key.kid,
                    "JWK left out: its kid repeats an earlier key's"
                ),
                Ok(key) => keys.push(key),
                Err(why) => tracing::warn!(
                    issuer = %self.settings.issuer,
                    kid,
                    "JWK left out: {why}"
                ),
            }
        }
        keys
    }
}

impl crate::jwt::KeySource for RemoteKeys {
    fn current(&self) -> Result<Arc<KeySet>, crate::jwt::Rejection> {
        self.keys()
            .map_err(|_| crate::jwt::Rejection::KeysUnavailable)
    }

    fn refetch_for_unknown_kid(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(self.refresh_for_unknown_kid())
    }

    fn start(self: Arc<Self>) {
        RemoteKeys::start(&self);
    }

    fn fetch_now(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<String>, String>> + Send + '_>>
    {
        Box::pin(async move {
            self.refresh().await.map_err(|e| e.to_string())?;
            let keys = self.keys().map_err(|e| e.to_string())?;
            Ok(keys.iter().map(|k| k.kid.clone()).collect())
        })
    }

    fn is_ready(&self) -> bool {
        RemoteKeys::is_ready(self)
    }

    fn key_count(&self) -> Option<usize> {
        RemoteKeys::key_count(self)
    }

    fn age(&self) -> Option<Duration> {
        RemoteKeys::age(self)
    }
}

/// `d` ± up to 10%, from the clock's low bits (no RNG needed for this).
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let spread = d.as_millis() as u64 / 10;
    if spread == 0 {
        return d;
    }
    let offset = u64::from(nanos) % (2 * spread + 1);
    (d + Duration::from_millis(offset)).saturating_sub(Duration::from_millis(spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(100));
            assert!(
                j >= Duration::from_secs(90) && j <= Duration::from_secs(110),
                "{j:?}"
            );
        }
    }
}
