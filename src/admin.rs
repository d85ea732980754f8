//! The admin listener (default 127.0.0.1:9090): `/healthz`, `/readyz`,
//! `/metrics`, `/openapi.json`, and the admin session API
//! (`/admin/sessions`). Kept off the proxy port so it is never exposed by
//! accident.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::error::GatewayError;
use crate::generation::Generation;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::reply::Reply;
use crate::session::{admin_api, SessionService};

/// Serves the admin endpoints.
pub(crate) struct AdminApp {
    pub state: Arc<ArcSwap<Generation>>,
    pub metrics: Arc<Metrics>,
    pub sessions: Option<Arc<SessionService>>,
    /// Whether the process drains (`/readyz` 503, connections closed).
    pub lifecycle: Arc<Lifecycle>,
}

/// The API contract (`docs/openapi.json`), built in so the document served is
/// the one this binary was built with.
const OPENAPI_DOCUMENT: &str = include_str!("../docs/openapi.json");

fn from_reply(reply: Reply) -> Response<Vec<u8>> {
    let body = serde_json::to_vec(&reply.body).unwrap_or_default();
    let mut builder = Response::builder()
        .status(reply.status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .header("content-length", body.len());
    for (name, value) in reply.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

fn json(status: u16, value: serde_json::Value) -> Response<Vec<u8>> {
    respond(
        status,
        "application/json",
        serde_json::to_vec(&value).unwrap_or_default(),
    )
}

/// Upstreams with at least one healthy target.
fn healthy_pools(gen: &Generation) -> usize {
    gen.upstreams
        .iter()
        .filter(|u| u.targets.iter().any(|t| t.is_healthy()))
        .count()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if self.lifecycle.is_draining() {
            // Health checkers and scrapers on keep-alive move to the new
            // process of an upgrade, or notice this one is going.
            session.set_keepalive(None);
        }
        let path = session.req_header().uri.path().to_owned();
        if admin_api::serves(&path) {
            let gen = self.state.load_full();
            let reply = admin_api::handle(
                gen.sessions.as_deref(),
                gen.verifier.as_ref(),
                gen.max_body_size,
                self.sessions.as_deref(),
                &self.metrics,
                session,
            )
            .await;
            return from_reply(reply);
        }
        match path.as_str() {
            "/healthz" => json(200, serde_json::json!({"status": "ok"})),
            "/readyz" if self.lifecycle.is_draining() => {
                let gen = self.state.load();
                json(
                    503,
                    serde_json::json!({
                        "status": "draining",
                        "upstreams_with_healthy_targets": healthy_pools(&gen),
                        "upstreams": gen.upstreams.len(),
                    }),
                )
            }
            "/readyz" => {
                let gen = self.state.load();
                let healthy_pools = healthy_pools(&gen);
                let store = match (&gen.sessions, &self.sessions) {
                    (None, _) => None,
                    (Some(_), Some(s)) if s.is_available() => Some("available"),
                    (Some(_), _) => Some("unavailable"),
                };
                // Fetched issuers: ready once their keys are in (`startup: lazy`
                // issuers do not hold readiness back).
                let issuers: serde_json::Map<String, serde_json::Value> = gen
                    .verifier
                    .iter()
                    .flat_map(|v| v.key_sources())
                    .map(|(name, source)| {
                        let state = match (source.key_count(), source.is_ready()) {
                            (Some(_), true) => "keys_loaded",
                            (None, true) => "lazy",
                            (_, false) => "keys_unavailable",
                        };
                        (name.to_owned(), state.into())
                    })
                    .collect();
                let issuers_ready = issuers.values().all(|s| s != "keys_unavailable");
                let ready = healthy_pools == gen.upstreams.len()
                    && store != Some("unavailable")
                    && issuers_ready;
                let mut body = serde_json::json!({
                    "status": if ready { "ready" } else { "not_ready" },
                    "upstreams_with_healthy_targets": healthy_pools,
                    "upstreams": gen.upstreams.len(),
                });
                if let Some(store) = store {
                    body["session_store"] = store.into();
                }
                if !issuers.is_empty() {
                    body["issuers"] = issuers.into();
                }
                json(if ready { 200 } else { 503 }, body)
            }
            "/metrics" => {
                // Fetched issuer keys: what is in use right now.
                if let Some(verifier) = self.state.load().verifier.as_ref() {
                    for (name, source) in verifier.key_sources() {
                        let jwks = &self.metrics.jwks;
                        jwks.keys
                            .with_label_values(&[name])
                            .set(source.key_count().unwrap_or(0) as i64);
                        jwks.age
                            .with_label_values(&[name])
                            .set(source.age().map(|a| a.as_secs_f64()).unwrap_or(0.0));
                    }
                }
                respond(200, "text/plain; version=0.0.4", self.metrics.render())
            }
            "/openapi.json" => respond(200, "application/json", OPENAPI_DOCUMENT.into()),
            _ => from_reply(GatewayError::AdminPathUnknown.into_reply()),
        }
    }
}
