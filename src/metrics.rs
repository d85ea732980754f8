//! Prometheus metrics. One registry per process; label values are bounded
//! (route and upstream names from the config, fixed reason enums, status
//! codes) and never carry a subject, token or path.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Results of `POST /refresh` (the `result` label of `auth_refresh_total`).
pub(crate) const REFRESH_RESULTS: [&str; 10] = [
    "ok",
    "grace_replay",
    "invalid",
    "expired",
    "revoked",
    "reused",
    "bad_request",
    "rate_limited",
    "unavailable",
    "error",
];

/// Sources of `token_revocations_total`.
const TOKEN_REVOCATION_SOURCES: [&str; 2] = ["admin", "backchannel_logout"];

/// Results of `backchannel_logouts_total`.
const BACKCHANNEL_LOGOUT_RESULTS: [&str; 4] = ["ok", "invalid", "replayed", "unavailable"];

/// Reasons of `sessions_revoked_total` (the store's revoke reasons; a
/// test in `session::store` keeps the two lists equal).
pub(crate) const REVOKE_REASONS: [&str; 6] = [
    "logout",
    "logout_all",
    "session_deleted",
    "reuse_detected",
    "admin",
    "expired",
];

/// Scopes of `auth_logout_total`.
pub(crate) const LOGOUT_SCOPES: [&str; 3] = ["session", "all", "single"];

/// Reasons a client connection is closed by the gateway (`client_closes_total`).
pub(crate) const CLIENT_CLOSE_REASONS: [&str; 4] = [
    "head_timeout",
    "body_timeout",
    "idle_timeout",
    "max_connections",
];

/// Reasons a request is refused with 400/431 before routing (`request_refusals_total`).
pub(crate) const REFUSAL_REASONS: [&str; 15] = [
    "not_origin_form",
    "invalid_escape",
    "control_character",
    "non_ascii",
    "dot_segment",
    "encoded_separator",
    "empty_segment",
    "path_parameter",
    "duplicate_authorization",
    "duplicate_host",
    "content_length_conflict",
    "transfer_encoding_with_content_length",
    "underscore_header",
    "headers_too_large",
    "malformed_request",
];

/// Reasons an upstream answer is cut after its head reached the client
/// (`upstream_aborts_total`): the upstream closed early, went silent past
/// its read timeout, or the read failed otherwise (e.g. a reset).
pub(crate) const UPSTREAM_ABORT_REASONS: [&str; 3] = ["closed", "timeout", "error"];

/// Protocol versions of completed TLS handshakes (`tls_handshakes_total{version}`).
pub(crate) const TLS_VERSIONS: [&str; 2] = ["TLSv1.2", "TLSv1.3"];

/// Results of failed TLS handshakes (`tls_handshakes_total{result}`, with
/// `version="unknown"`): see `tls::handshake`.
pub(crate) const TLS_HANDSHAKE_FAILURES: [&str; 5] = [
    "timeout",
    "client_certificate",
    "certificate_refused",
    "incompatible",
    "error",
];

/// HTTP versions of `requests_by_version_total{version}`.
pub(crate) const HTTP_VERSIONS: [&str; 3] = ["1.0", "1.1", "2"];

/// All metrics the gateway exports.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub jwt_validations: IntCounterVec,
    pub header_spoof_stripped: IntCounter,
    pub config_reloads: IntCounterVec,
    pub upstream_health: IntGaugeVec,
    pub plugin_invocations: IntCounterVec,
    pub plugin_duration: HistogramVec,
    pub auth_refresh: IntCounterVec,
    pub auth_logout: IntCounterVec,
    pub sessions_created: IntCounter,
    pub sessions_revoked: IntCounterVec,
    /// Revocations of other issuers' tokens stored by this node, by kind
    /// (`jti`, `sub`, `sid`) and source (`admin`, `backchannel_logout`).
    pub token_revocations: IntCounterVec,
    /// Token revocations this node enforces (from every node).
    pub token_revocations_active: IntGauge,
    /// Back-channel logout requests, by result.
    pub backchannel_logouts: IntCounterVec,
    pub sessions_active: IntGauge,
    pub refresh_token_reuse_detected: IntCounter,
    pub revocation_propagation: Histogram,
    pub client_connections: IntGauge,
    pub client_closes: IntCounterVec,
    pub request_refusals: IntCounterVec,
    pub upstream_aborts: IntCounterVec,
    /// Fetched issuer keys (`jwt.issuers`).
    pub jwks: JwksMetrics,
    /// TLS handshakes on the client listener, by result and protocol version.
    pub tls_handshakes: IntCounterVec,
    /// Proxy requests by HTTP version and scheme (`http`, `https`).
    pub requests_by_version: IntCounterVec,
    /// Its series, by [`HTTP_VERSIONS`] index then `http`/`https`.
    pub requests_by_version_series: [[IntCounter; 2]; 3],
    /// The session-store breaker's state and fast failures.
    pub session_store: SessionStoreMetrics,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("portcullis".into()), None)
            .expect("static registry prefix is valid");
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Requests answered, by route and HTTP status",
            ),
            &["route", "status"],
        )
        .expect("static metric definition");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time from request start to the end of the response, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["route"],
        )
        .expect("static metric definition");
        let jwt_validations = IntCounterVec::new(
            Opts::new(
                "jwt_validations_total",
                "Access-token checks by route, result (ok/fail) and reason",
            ),
            &["route", "result", "reason"],
        )
        .expect("static metric definition");
        let header_spoof_stripped = IntCounter::new(
            "header_spoof_stripped_total",
            "Client-supplied identity headers removed before proxying",
        )
        .expect("static metric definition");
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "config_reloads_total",
                "Configuration reloads by result (ok/error)",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let upstream_health = IntGaugeVec::new(
            Opts::new(
                "upstream_health",
                "1 when an upstream target passes health checks, else 0",
            ),
            &["upstream", "target"],
        )
        .expect("static metric definition");
        let plugin_invocations = IntCounterVec::new(
            Opts::new(
                "plugin_invocations_total",
                "Wasm plugin calls by plugin and result (ok, deny, timeout, trap, memory, violation, error)",
            ),
            &["plugin", "result"],
        )
        .expect("static metric definition");
        let plugin_duration = HistogramVec::new(
            HistogramOpts::new(
                "plugin_duration_seconds",
                "Time per Wasm plugin call, by plugin",
            )
            .buckets(vec![
                0.000_001,
                0.000_002_5,
                0.000_005,
                0.000_01,
                0.000_025,
                0.000_05,
                0.000_1,
                0.000_25,
                0.000_5,
                0.001,
                0.005,
                0.01,
                0.05,
            ]),
            &["plugin"],
        )
        .expect("static metric definition");
        let auth_refresh = IntCounterVec::new(
            Opts::new(
                "auth_refresh_total",
                "Refresh-token exchanges by result (ok, grace_replay, invalid, expired, revoked, reused, bad_request, rate_limited, unavailable, error)",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let auth_logout = IntCounterVec::new(
            Opts::new(
                "auth_logout_total",
                "Logouts by scope: session (POST /logout), all (POST /logout-all), single (DELETE /sessions/{id})",
            ),
            &["scope"],
        )
        .expect("static metric definition");
        let sessions_created = IntCounter::new(
            "sessions_created_total",
            "Sessions opened (login interception or admin API)",
        )
        .expect("static metric definition");
        let sessions_revoked = IntCounterVec::new(
            Opts::new(
                "sessions_revoked_total",
                "Sessions revoked by this node, by reason",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let token_revocations = IntCounterVec::new(
            Opts::new(
                "token_revocations_total",
                "Revocations of other issuers' tokens stored by this node, by kind (jti, sub, sid) and source (admin, backchannel_logout)",
            ),
            &["kind", "source"],
        )
        .expect("static metric definition");
        let token_revocations_active = IntGauge::new(
            "token_revocations_active",
            "Token revocations (jti, sub, sid) this node enforces, made by any node and not yet past their keep-until time",
        )
        .expect("static metric definition");
        let backchannel_logouts = IntCounterVec::new(
            Opts::new(
                "backchannel_logouts_total",
                "OpenID Connect back-channel logout requests, by result (ok, invalid, replayed, unavailable)",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let sessions_active = IntGauge::new(
            "sessions_active",
            "Sessions neither revoked nor expired (refreshed by the cleanup job)",
        )
        .expect("static metric definition");
        let refresh_token_reuse_detected = IntCounter::new(
            "refresh_token_reuse_detected_total",
            "Rotated refresh tokens presented after the grace window (the session was revoked)",
        )
        .expect("static metric definition");
        let revocation_propagation = Histogram::with_opts(
            HistogramOpts::new(
                "revocation_propagation_seconds",
                "Time from a revocation on another node to this node rejecting its access tokens",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )
        .expect("static metric definition");
        let client_connections = IntGauge::new(
            "client_connections",
            "Client connections open on the proxy listener",
        )
        .expect("static metric definition");
        let client_closes = IntCounterVec::new(
            Opts::new(
                "client_closes_total",
                "Client connections closed by the gateway, by reason (head_timeout, body_timeout, idle_timeout, max_connections)",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let request_refusals = IntCounterVec::new(
            Opts::new(
                "request_refusals_total",
                "Requests refused before routing because they can be read more than one way, by reason",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let upstream_aborts = IntCounterVec::new(
            Opts::new(
                "upstream_aborts_total",
                "Upstream answers cut after their head was sent to the client (the client connection is closed), by reason (closed, timeout, error)",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let jwks = JwksMetrics::register(&registry);
        let tls_handshakes = IntCounterVec::new(
            Opts::new(
                "tls_handshakes_total",
                "TLS handshakes on the client listener by result (ok, timeout, client_certificate, certificate_refused, incompatible, error) and protocol version (TLSv1.2, TLSv1.3; unknown when it failed)",
            ),
            &["result", "version"],
        )
        .expect("static metric definition");
        let requests_by_version = IntCounterVec::new(
            Opts::new(
                "requests_by_version_total",
                "Proxy requests by HTTP version (1.0, 1.1, 2) and scheme (http, https)",
            ),
            &["version", "scheme"],
        )
        .expect("static metric definition");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(jwt_validations.clone()),
            Box::new(header_spoof_stripped.clone()),
            Box::new(config_reloads.clone()),
            Box::new(upstream_health.clone()),
            Box::new(plugin_invocations.clone()),
            Box::new(plugin_duration.clone()),
            Box::new(auth_refresh.clone()),
            Box::new(auth_logout.clone()),
            Box::new(sessions_created.clone()),
            Box::new(sessions_revoked.clone()),
            Box::new(token_revocations.clone()),
            Box::new(token_revocations_active.clone()),
            Box::new(backchannel_logouts.clone()),
            Box::new(sessions_active.clone()),
            Box::new(refresh_token_reuse_detected.clone()),
            Box::new(revocation_propagation.clone()),
            Box::new(client_connections.clone()),
            Box::new(client_closes.clone()),
            Box::new(request_refusals.clone()),
            Box::new(upstream_aborts.clone()),
            Box::new(tls_handshakes.clone()),
            Box::new(requests_by_version.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        for result in ["ok", "error"] {
            config_reloads.with_label_values(&[result]);
        }
        // Pre-register the fixed label values so dashboards and alerts see 0, not "no data".
        for result in REFRESH_RESULTS {
            auth_refresh.with_label_values(&[result]);
        }
        for scope in LOGOUT_SCOPES {
            auth_logout.with_label_values(&[scope]);
        }
        for reason in CLIENT_CLOSE_REASONS {
            client_closes.with_label_values(&[reason]);
        }
        for reason in REFUSAL_REASONS {
            request_refusals.with_label_values(&[reason]);
        }
        for reason in UPSTREAM_ABORT_REASONS {
            upstream_aborts.with_label_values(&[reason]);
        }
        for reason in REVOKE_REASONS {
            sessions_revoked.with_label_values(&[reason]);
        }
        for kind in crate::revoked::RevocationKind::ALL {
            for source in TOKEN_REVOCATION_SOURCES {
                token_revocations.with_label_values(&[kind.as_str(), source]);
            }
        }
        for result in BACKCHANNEL_LOGOUT_RESULTS {
            backchannel_logouts.with_label_values(&[result]);
        }
        let requests_by_version_series = HTTP_VERSIONS.map(|version| {
            ["http", "https"]
                .map(|scheme| requests_by_version.with_label_values(&[version, scheme]))
        });
        let session_store = SessionStoreMetrics::register(&registry);
        Metrics {
            registry,
            requests,
            request_duration,
            jwt_validations,
            header_spoof_stripped,
            config_reloads,
            upstream_health,
            plugin_invocations,
            plugin_duration,
            auth_refresh,
            auth_logout,
            sessions_created,
            sessions_revoked,
            token_revocations,
            token_revocations_active,
            backchannel_logouts,
            sessions_active,
            refresh_token_reuse_detected,
            revocation_propagation,
            client_connections,
            client_closes,
            request_refusals,
            upstream_aborts,
            jwks,
            tls_handshakes,
            requests_by_version,
            requests_by_version_series,
            session_store,
        }
    }

    /// Adds a collector that computes its values at scrape time (the
    /// certificate-expiry gauge).
    pub(crate) fn register(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> prometheus::Result<()> {
        self.registry.register(collector)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(error = %e, "failed to encode metrics");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The session-store breaker (`session::breaker`): its state, and the
/// session requests it refused without touching the store.
pub struct SessionStoreMetrics {
    /// `session_store_breaker_state`: 0 closed, 1 open, 2 probing (half-open).
    pub breaker_state: IntGauge,
    /// `session_store_fast_failures_total`: requests answered 503 at once
    /// because the breaker was open.
    pub fast_failures: IntCounter,
}

impl SessionStoreMetrics {
    fn register(registry: &Registry) -> SessionStoreMetrics {
        let breaker_state = IntGauge::new(
            "session_store_breaker_state",
            "Session-store breaker: 0 closed (calls reach the store), 1 open (session requests fail fast with 503), 2 probing (half-open)",
        )
        .expect("static metric definition");
        let fast_failures = IntCounter::new(
            "session_store_fast_failures_total",
            "Session requests answered 503 at once, without touching the store, because the breaker was open",
        )
        .expect("static metric definition");
        registry
            .register(Box::new(breaker_state.clone()))
            .expect("metric names are unique");
        registry
            .register(Box::new(fast_failures.clone()))
            .expect("metric names are unique");
        SessionStoreMetrics {
            breaker_state,
            fast_failures,
        }
    }
}

// Process lifecycle (`crate::lifecycle`): drain and in-flight gauges. Kept in
// one block, registered by the server at start, so the other metrics stay
// untouched.

/// The gauges of the process lifecycle: `portcullis_draining` and
/// `portcullis_in_flight_requests`.
#[derive(Clone)]
pub(crate) struct LifecycleGauges {
    /// 1 from SIGTERM (or the SIGQUIT of an upgrade) until exit, else 0.
    pub draining: IntGauge,
    /// Proxy requests between `request_filter` and `logging`.
    pub in_flight_requests: IntGauge,
}

impl Metrics {
    /// Creates the lifecycle gauges in this registry. Once per registry:
    /// a second call fails with prometheus' duplicate-metric error.
    pub(crate) fn lifecycle_gauges(&self) -> prometheus::Result<LifecycleGauges> {
        let draining = IntGauge::new(
            "draining",
            "1 while the process drains before it exits (SIGTERM, or SIGQUIT during an upgrade), else 0",
        )?;
        let in_flight_requests = IntGauge::new(
            "in_flight_requests",
            "Proxy requests being answered right now",
        )?;
        self.registry.register(Box::new(draining.clone()))?;
        self.registry
            .register(Box::new(in_flight_requests.clone()))?;
        Ok(LifecycleGauges {
            draining,
            in_flight_requests,
        })
    }
}

/// Fetched issuer keys: fetches by result, and (updated at scrape time)
/// the keys in use and their age, per issuer.
pub struct JwksMetrics {
    /// `jwks_fetch_total{issuer,result}`: `ok` or `error`.
    pub fetches: IntCounterVec,
    /// `jwks_keys{issuer}`: usable keys in the set in use.
    pub keys: IntGaugeVec,
    /// `jwks_age_seconds{issuer}`: age of the set in use.
    pub age: prometheus::GaugeVec,
}

impl JwksMetrics {
    fn register(registry: &Registry) -> JwksMetrics {
        let fetches = IntCounterVec::new(
            Opts::new(
                "jwks_fetch_total",
                "Fetches of an issuer's discovery document and JWK Set, by issuer and result (ok, error)",
            ),
            &["issuer", "result"],
        )
        .expect("static metric definition");
        let keys = IntGaugeVec::new(
            Opts::new("jwks_keys", "Usable signing keys of a fetched issuer"),
            &["issuer"],
        )
        .expect("static metric definition");
        let age = prometheus::GaugeVec::new(
            Opts::new(
                "jwks_age_seconds",
                "Age of a fetched issuer's key set in use; past max_stale the issuer fails closed",
            ),
            &["issuer"],
        )
        .expect("static metric definition");
        for c in [
            Box::new(fetches.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(keys.clone()),
            Box::new(age.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        JwksMetrics { fetches, keys, age }
    }
}
