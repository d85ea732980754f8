//! Prometheus metrics. One registry per process; label values are bounded
//! (route and upstream names from the config, fixed reason enums, status
//! codes) and never carry a subject, token or path.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

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
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(jwt_validations.clone()),
            Box::new(header_spoof_stripped.clone()),
            Box::new(config_reloads.clone()),
            Box::new(upstream_health.clone()),
            Box::new(plugin_invocations.clone()),
            Box::new(plugin_duration.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        for result in ["ok", "error"] {
            config_reloads.with_label_values(&[result]);
        }
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
        }
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
