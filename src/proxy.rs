//! The pingora `ProxyHttp` implementation. Each phase reads like a step of the
//! request path in DESIGN.md and delegates to the module that owns the concern:
//! routing (`route`), tokens (`jwt`), header hygiene (`headers`), pools
//! (`upstream`), answers (`reply`), metrics (`metrics`).
//!
//! Spans (see `logging`): a `request` span lives in [`RequestCtx`] from the
//! moment the request id is known until `logging`; `jwt_verify` and
//! `plugin_chain` wrap the synchronous auth and plugin steps, and `upstream`
//! is kept in the context from `upstream_peer` until the upstream's answer
//! is complete. No guard is ever held across an `.await`. A child span is
//! closed while `request` is the current span: the JSON formatter takes a
//! record's span list from the current span, so the close record then lists
//! `request` (and its `request_id`) above the closing span.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::access::{extract_token, rejection_reply};
use crate::generation::Generation;
use crate::jwt::VerifiedToken;
use crate::logging::SPAN_TARGET;
use crate::metrics::Metrics;
use crate::plugin::{HeaderChange, InvocationResult, Outcome, RequestMeta};
use crate::reply::Reply;
use crate::route::AuthMode;
use crate::session::handlers::AuthApi;
use crate::session::SessionService;

/// The gateway: reads the current generation on every request.
pub struct Gateway {
    pub state: Arc<ArcSwap<Generation>>,
    pub metrics: Arc<Metrics>,
    /// The session store and revoked set; `None` without a `sessions` section.
    pub sessions: Option<Arc<SessionService>>,
    /// Upstream connections of login routes (the gateway sends those itself).
    pub login_connector: Connector,
}

impl Gateway {
    pub fn new(
        state: Arc<ArcSwap<Generation>>,
        metrics: Arc<Metrics>,
        sessions: Option<Arc<SessionService>>,
    ) -> Gateway {
        Gateway {
            state,
            metrics,
            sessions,
            login_connector: Connector::new(None),
        }
    }
}

/// How the auth step ended, for metrics and the access log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthOutcome {
    #[default]
    NotChecked,
    Anonymous,
    Verified,
    Rejected(&'static str),
    Forbidden,
}

impl AuthOutcome {
    fn as_str(&self) -> &'static str {
        match self {
            AuthOutcome::NotChecked => "none",
            AuthOutcome::Anonymous => "anonymous",
            AuthOutcome::Verified => "verified",
            AuthOutcome::Rejected(_) => "rejected",
            AuthOutcome::Forbidden => "forbidden",
        }
    }
}

/// Per-request state shared across phases.
pub struct RequestCtx {
    generation: Option<Arc<Generation>>,
    route: Option<usize>,
    request_id: String,
    started: Instant,
    auth: AuthOutcome,
    identity: Option<Arc<VerifiedToken>>,
    target: Option<String>,
    /// Header changes decided by the route's plugin chain.
    header_changes: Vec<HeaderChange>,
    /// Set when the gateway answered a built-in route (`session_api`, `jwks`).
    builtin: Option<&'static str>,
    /// The `request` span; disabled (free) unless `log.spans` is on.
    span: Span,
    /// The `upstream` span, open while the upstream leg is under way.
    upstream_span: Span,
    /// The path as the client sent it, kept only when the canonical form
    /// (which is matched and forwarded) differs: the access log shows both.
    raw_path: Option<String>,
    /// The canonical path less its `;params` (only when params are kept).
    match_path: Option<String>,
}

impl RequestCtx {
    fn route_name(&self) -> &str {
        if let Some(name) = self.builtin {
            return name;
        }
        match (&self.generation, self.route) {
            (Some(g), Some(i)) => g.router.get(i).map(|r| &*r.name).unwrap_or("none"),
            _ => "none",
        }
    }

    /// Ends the upstream leg: closes the `upstream` span (if open) while
    /// `request` is current, so its close record lists `request` above it.
    fn close_upstream_span(&mut self) {
        let _request = self.span.enter();
        self.upstream_span = Span::none();
    }

    /// Puts the route (or built-in answer) on the `request` span once known.
    fn record_route(&self) {
        if !self.span.is_disabled() {
            self.span.record("route", self.route_name());
        }
    }
}

/// A request refused by [`Gateway::read_one_way`]: 400, connection closed.
struct Refusal {
    reason: &'static str,
    code: &'static str,
    message: &'static str,
}

/// The path the session routes are looked up with: the canonical path,
/// lower-cased unless paths are case-sensitive (`/API/Auth/refresh` is the
/// refresh route to a case-insensitive backend, so it is to the gateway).
fn session_api_path<'a>(path: &'a str, gen: &Generation) -> std::borrow::Cow<'a, str> {
    if !gen.read.case_sensitive && path.bytes().any(|b| b.is_ascii_uppercase()) {
        path.to_ascii_lowercase().into()
    } else {
        path.into()
    }
}

/// Path of the public key set.
const JWKS_PATH: &str = "/.well-known/jwks.json";

impl Gateway {
    /// Reads the request one way (see [`crate::canonical`]): refuses heads
    /// that could be framed or attributed twice, strips identity headers in
    /// every spelling, and replaces the request target with its canonical
    /// path, so that routing, plugins, the access log and the upstream all
    /// see the same path. Allocates only when something is rewritten.
    fn read_one_way(
        &self,
        session: &mut Session,
        gen: &Generation,
        ctx: &mut RequestCtx,
    ) -> std::result::Result<(), Refusal> {
        let downstream = session.as_downstream();
        let raw_head = (!downstream.is_http2()).then(|| downstream.to_h1_raw());
        let header_refusal = |e: crate::canonical::HeaderError| Refusal {
            reason: e.reason(),
            code: "bad_request",
            message: e.message(),
        };
        crate::canonical::headers::check_framing(session.req_header(), raw_head.as_deref())
            .map_err(header_refusal)?;
        let stripped = gen
            .headers
            .strip_identity(session.req_header_mut(), gen.read.underscore_headers)
            .map_err(header_refusal)?;
        if stripped > 0 {
            self.metrics.header_spoof_stripped.inc_by(stripped as u64);
        }

        let req = session.req_header();
        let raw = req.raw_path();
        let origin_form = raw.first() == Some(&b'/');
        // Absolute-form (`GET http://host/p`): the path component is read
        // and the upstream gets origin-form.
        let target = if origin_form {
            raw
        } else {
            req.uri
                .path_and_query()
                .map(|pq| pq.as_str().as_bytes())
                .filter(|pq| pq.first() == Some(&b'/'))
                .unwrap_or(raw)
        };
        let (path, query) = match target.iter().position(|&b| b == b'?') {
            Some(q) => (&target[..q], Some(&target[q..])),
            None => (target, None),
        };
        let canonical =
            crate::canonical::canonicalize(path, gen.read.path).map_err(|e| Refusal {
                reason: e.reason(),
                code: "bad_path",
                message: e.message(),
            })?;
        if canonical.matched() != canonical.forward() {
            ctx.match_path = Some(canonical.matched().to_owned());
        }
        if canonical.is_rewritten() || !origin_form {
            let mut uri = String::with_capacity(canonical.forward().len() + target.len());
            uri.push_str(canonical.forward());
            if let Some(q) = query {
                uri.push_str(&String::from_utf8_lossy(q));
            }
            let raw_text = String::from_utf8_lossy(raw).into_owned();
            let parsed = uri.parse::<http::Uri>().map_err(|_| Refusal {
                reason: "malformed_request",
                code: "bad_request",
                message: "The request target could not be read",
            })?;
            session.req_header_mut().set_uri(parsed);
            ctx.raw_path = Some(raw_text);
        }
        Ok(())
    }

    /// Auth step of `request_filter`: `Err(reply)` when the request must stop here.
    fn authenticate(
        &self,
        gen: &Generation,
        route_idx: usize,
        req: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> std::result::Result<(), Reply> {
        let Some(route) = gen.router.get(route_idx) else {
            return Ok(());
        };
        if route.auth == AuthMode::None {
            return Ok(());
        }
        let token = extract_token(&req.headers, gen.token_sources.cookie.as_deref());
        if token.is_none() && route.auth == AuthMode::Optional {
            ctx.auth = AuthOutcome::Anonymous;
            return Ok(());
        }
        let revoked = self.sessions.as_ref().map(|s| &*s.revoked);
        let _request = ctx.span.enter();
        let verdict = {
            // Result fields only: never the token or its claims.
            let span = tracing::debug_span!(
                target: SPAN_TARGET,
                parent: &ctx.span,
                "jwt_verify",
                result = Empty,
                reason = Empty,
                cached = Empty,
            );
            let _entered = span.enter();
            let verdict = crate::access::check(gen, revoked, token);
            match &verdict {
                Ok((_, cached)) => {
                    span.record("result", "ok");
                    span.record("cached", *cached);
                }
                Err(rejection) => {
                    span.record("result", "fail");
                    span.record("reason", rejection.reason());
                }
            }
            verdict
        };
        let labels = |result: &str, reason: &str| {
            self.metrics
                .jwt_validations
                .with_label_values(&[&route.name, result, reason])
                .inc();
        };
        match verdict {
            Ok((verified, cached)) => {
                labels("ok", if cached { "cached" } else { "verified" });
                if let Some(failed) = route
                    .requirements
                    .iter()
                    .find(|r| !r.holds(&verified.claims))
                {
                    ctx.auth = AuthOutcome::Forbidden;
                    return Err(Reply::error(
                        403,
                        "insufficient_claims",
                        format!(
                            "Access denied: claim `{}` does not meet this route's requirement",
                            failed.claim_text
                        ),
                    ));
                }
                ctx.auth = AuthOutcome::Verified;
                ctx.identity = Some(verified);
                Ok(())
            }
            Err(rejection) => {
                labels("fail", rejection.reason());
                ctx.auth = AuthOutcome::Rejected(rejection.reason());
                Err(rejection_reply(&rejection))
            }
        }
    }
}

impl Gateway {
    /// Plugin step of `request_filter`: runs the route's chain, keeps its
    /// header changes in `ctx`, or answers the deny / failure.
    fn run_plugins(
        &self,
        gen: &Generation,
        route_idx: usize,
        req: &RequestHeader,
        host: Option<&str>,
        ctx: &mut RequestCtx,
    ) -> std::result::Result<(), Reply> {
        let Some(route) = gen.router.get(route_idx) else {
            return Ok(());
        };
        if route.plugins.is_empty() {
            return Ok(());
        }
        let claims: &[u8] = ctx
            .identity
            .as_ref()
            .map(|v| v.claims_json.as_slice())
            .unwrap_or(b"{}");
        let meta = RequestMeta {
            method: req.method.as_str(),
            path: req.uri.path(),
            query: req.uri.query().unwrap_or(""),
            host: host.unwrap_or(""),
            headers: &req.headers,
        };
        let _request = ctx.span.enter();
        let span = tracing::debug_span!(
            target: SPAN_TARGET,
            parent: &ctx.span,
            "plugin_chain",
            plugins = route.plugins.plugins().len(),
            outcome = Empty,
        );
        // Entered for the whole (synchronous) step: each plugin's own span
        // and any plugin warning nest under it.
        let _entered = span.enter();
        let result = route.plugins.run(claims, &meta);
        span.record(
            "outcome",
            match result.outcome {
                Outcome::Continue(_) => "continue",
                Outcome::Deny { .. } => "deny",
                Outcome::Failed { .. } => "failed",
            },
        );
        for inv in &result.invocations {
            self.metrics
                .plugin_invocations
                .with_label_values(&[&*inv.plugin, inv.result.as_str()])
                .inc();
            self.metrics
                .plugin_duration
                .with_label_values(&[&*inv.plugin])
                .observe(inv.duration.as_secs_f64());
        }
        match result.outcome {
            Outcome::Continue(changes) => {
                ctx.header_changes = changes;
                Ok(())
            }
            Outcome::Deny {
                status,
                message,
                plugin,
            } => {
                tracing::debug!(plugin = %plugin, status, "request denied by plugin");
                ctx.auth = AuthOutcome::Forbidden;
                Err(Reply::error(status, "denied_by_policy", message))
            }
            Outcome::Failed { plugin, error, .. } => {
                tracing::warn!(plugin = %plugin, error = %error, "plugin failed; request refused (on_error: deny)");
                let status = if error.invocation_result() == InvocationResult::Timeout {
                    503
                } else {
                    500
                };
                Err(Reply::error(
                    status,
                    "policy_error",
                    "The request could not be authorized by policy",
                ))
            }
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            generation: None,
            route: None,
            request_id: String::new(),
            started: Instant::now(),
            auth: AuthOutcome::NotChecked,
            identity: None,
            target: None,
            header_changes: Vec::new(),
            builtin: None,
            span: Span::none(),
            upstream_span: Span::none(),
            raw_path: None,
            match_path: None,
        }
    }

    /// Runs first for every request: strips spoofed identity headers, routes,
    /// and authenticates. `Ok(true)` means the gateway already answered.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let has_body = !session.is_body_empty();
        crate::conn_guard::head_read(session, has_body);
        let gen = self.state.load_full();
        ctx.generation = Some(gen.clone());
        ctx.request_id = crate::headers::request_id(
            session
                .req_header()
                .headers
                .get(&gen.headers.request_id)
                .map(|v| v.as_bytes()),
        );
        ctx.span = tracing::debug_span!(
            target: SPAN_TARGET,
            "request",
            request_id = %ctx.request_id,
            method = session.req_header().method.as_str(),
            route = Empty,
        );
        let header_bytes: usize = session
            .req_header()
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if header_bytes > gen.max_header_size {
            let msg = format!("Request headers exceed {} bytes", gen.max_header_size);
            self.metrics
                .request_refusals
                .with_label_values(&["headers_too_large"])
                .inc();
            Reply::error(431, "headers_too_large", msg)
                .send(session, &ctx.request_id)
                .await?;
            return Ok(true);
        }
        if let Err(refusal) = self.read_one_way(session, &gen, ctx) {
            self.metrics
                .request_refusals
                .with_label_values(&[refusal.reason])
                .inc();
            Reply::error(400, refusal.code, refusal.message)
                .closing()
                .send(session, &ctx.request_id)
                .await?;
            return Ok(true);
        }

        let req = session.req_header();
        let path = req.uri.path();
        if path == JWKS_PATH && req.method == http::Method::GET {
            if let Some(jwks) = &gen.jwks {
                ctx.builtin = Some("jwks");
                ctx.record_route();
                Reply::ok(200, jwks.clone())
                    .with_header("cache-control", "public, max-age=300")
                    .send(session, &ctx.request_id)
                    .await?;
                return Ok(true);
            }
        }
        if let Some(settings) = gen.sessions.clone() {
            if let Some(endpoint) = settings.endpoint(&session_api_path(path, &gen)) {
                ctx.builtin = Some("session_api");
                ctx.record_route();
                let api = AuthApi {
                    gen: &gen,
                    settings: &settings,
                    service: self.sessions.as_deref(),
                    metrics: &self.metrics,
                };
                let reply = api
                    .handle(endpoint, session)
                    .instrument(ctx.span.clone())
                    .await;
                reply.send(session, &ctx.request_id).await?;
                return Ok(true);
            }
        }
        let host = request_host(req);
        let matched = ctx.match_path.as_deref().unwrap_or(path);
        let Some((idx, _)) = gen.router.find(host.as_deref(), matched, &req.method) else {
            ctx.record_route();
            let msg = format!("No route for {} {}", req.method, path);
            Reply::error(404, "no_route", msg)
                .send(session, &ctx.request_id)
                .await?;
            return Ok(true);
        };
        ctx.route = Some(idx);
        ctx.record_route();

        if let Err(reply) = self.authenticate(&gen, idx, session.req_header(), ctx) {
            reply.send(session, &ctx.request_id).await?;
            return Ok(true);
        }
        if let Err(reply) = self.run_plugins(&gen, idx, session.req_header(), host.as_deref(), ctx)
        {
            reply.send(session, &ctx.request_id).await?;
            return Ok(true);
        }
        let login = gen.router.get(idx).and_then(|r| r.login.clone());
        if let Some(capture) = login {
            let span = ctx.span.clone();
            if let Err(reply) = self
                .intercept_login(session, &gen, idx, &capture, ctx)
                .instrument(span)
                .await
            {
                reply.send(session, &ctx.request_id).await?;
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Picks a healthy target of the route's pool (round-robin) and opens
    /// the `upstream` span.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (Some(gen), Some(idx)) = (&ctx.generation, ctx.route) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "upstream_peer without a route",
            ));
        };
        let route = gen
            .router
            .get(idx)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "route index out of range"))?;
        let pool = &gen.upstreams[route.upstream];
        let span = upstream_span(&ctx.span);
        let Some(target) = pool.pick() else {
            // Closes here: there is no upstream leg to time.
            span.record("error", "no_healthy_target");
            ctx.span.in_scope(|| drop(span));
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                "no healthy upstream target",
            ));
        };
        span.record("target", &*target.label);
        ctx.target = Some(target.label.clone());
        let peer = Box::new(pool.peer(target));
        ctx.close_upstream_span(); // a retry: the previous attempt's leg ends
        ctx.upstream_span = span;
        Ok(peer)
    }

    /// Rewrites the path, sets identity and forwarding headers.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let client_ip = client_ip(session);
        let host = session
            .req_header()
            .headers
            .get(http::header::HOST)
            .cloned();
        self.prepare_upstream_request(upstream, client_ip, host, ctx)
    }

    /// Notes the upstream's status on the `upstream` span.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_span
            .record("status", upstream_response.status.as_u16());
        Ok(())
    }

    /// The client's body is complete: its read deadline ends (`conn_guard`).
    async fn request_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        if end_of_stream {
            crate::conn_guard::body_read(session);
        }
        Ok(())
    }

    /// Closes the `upstream` span once the upstream's body is complete.
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if end_of_stream {
            ctx.close_upstream_span();
        }
        Ok(None)
    }

    /// Echoes the request id to the client.
    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        Ok(())
    }

    /// A client too slow with its body is counted and answered, not an
    /// error of the gateway worth a log line.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        crate::conn_guard::read_deadline(e).is_some()
    }

    /// Turns proxy failures into JSON: 502 unreachable, 503 no healthy
    /// target, 504 upstream timeout.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let body_timeout = crate::conn_guard::read_deadline(e)
            == Some(crate::conn_guard::CloseReason::BodyTimeout);
        let (status, code, message) = match e.etype() {
            // The client's body did not arrive in time: its fault, not the
            // upstream's (answered only while nothing has been sent yet).
            _ if body_timeout => (
                408,
                "request_timeout",
                "The request body was not received in time",
            ),
            ErrorType::HTTPStatus(503) => (
                503,
                "upstream_unavailable",
                "No healthy upstream is available",
            ),
            ErrorType::HTTPStatus(code) => (*code, "error", "Request failed"),
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => (
                504,
                "upstream_timeout",
                "The upstream did not answer in time",
            ),
            _ => match e.esource() {
                ErrorSource::Upstream => {
                    (502, "upstream_error", "The upstream could not be reached")
                }
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        (0, "", "")
                    }
                    _ => (400, "bad_request", "The request could not be read"),
                },
                _ => (500, "internal_error", "Internal gateway error"),
            },
        };
        // Once the answer has started, nothing more may be written.
        let status = if session.response_written().is_some() {
            0
        } else {
            status
        };
        if status > 0 {
            if ctx.request_id.is_empty() {
                ctx.request_id = crate::headers::request_id(None);
            }
            let _ = Reply::error(status, code, message)
                .send(session, &ctx.request_id)
                .await;
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    /// Metrics and one access event per request. Logs the path without the
    /// query string, which may carry secrets. Closes the request's spans.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        crate::conn_guard::request_done(session);
        // Still open: the request ended before the upstream's answer did.
        if let Some(e) = e {
            ctx.upstream_span.record("error", e.etype().as_str());
        }
        ctx.close_upstream_span();
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let route = ctx.route_name().to_owned();
        let elapsed = ctx.started.elapsed();
        let status_text = status.to_string();
        self.metrics
            .requests
            .with_label_values(&[&route, &status_text])
            .inc();
        self.metrics
            .request_duration
            .with_label_values(&[&route])
            .observe(elapsed.as_secs_f64());
        let log_access = ctx
            .generation
            .as_ref()
            .map(|g| g.log.access)
            .unwrap_or(true);
        if log_access {
            let req = session.req_header();
            let reason = match ctx.auth {
                AuthOutcome::Rejected(r) => r,
                _ => "",
            };
            ctx.span.in_scope(|| {
                tracing::info!(
                    target: "portcullis::access",
                    request_id = %ctx.request_id,
                    method = %req.method,
                    path = %req.uri.path(),
                    raw_path = ctx.raw_path.as_deref().map(strip_query).unwrap_or(""),
                    route = %route,
                    status,
                    latency_ms = elapsed.as_secs_f64() * 1000.0,
                    auth = ctx.auth.as_str(),
                    reason,
                    upstream_target = ctx.target.as_deref().unwrap_or(""),
                    error = e.map(|e| e.etype().as_str()).unwrap_or(""),
                    "request"
                );
            });
        }
        // The `request` span closes now, after the access event it parents.
        ctx.span = Span::none();
    }
}

/// A logged request target without its query string, which may carry secrets.
fn strip_query(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

/// A new `upstream` span under `request`; `target`, `status` and `error`
/// are recorded as they become known.
fn upstream_span(request: &Span) -> Span {
    tracing::debug_span!(
        target: SPAN_TARGET,
        parent: request,
        "upstream",
        target = Empty,
        status = Empty,
        error = Empty,
    )
}

/// Host without port, lower-cased; from the Host header or the URI authority.
fn request_host(req: &RequestHeader) -> Option<String> {
    let raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.host())?;
    let host = match raw.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => raw,
    };
    Some(host.to_ascii_lowercase())
}

fn valid_header_value(v: &str) -> bool {
    !v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

impl Gateway {
    /// What `upstream_request_filter` does to the request sent upstream:
    /// path rewrite, identity headers, request id, forwarding headers. Also
    /// used by login routes, which the gateway sends itself.
    fn prepare_upstream_request(
        &self,
        upstream: &mut RequestHeader,
        client_ip: String,
        host: Option<http::HeaderValue>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (Some(gen), Some(idx)) = (&ctx.generation, ctx.route) else {
            return Ok(());
        };
        let Some(route) = gen.router.get(idx) else {
            return Ok(());
        };
        if route.strip_prefix.is_some() || route.add_prefix.is_some() {
            let path = route.upstream_path(upstream.uri.path()).into_owned();
            let uri = match upstream.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            let uri = uri.parse::<http::Uri>().map_err(|e| {
                Error::because(
                    ErrorType::InternalError,
                    "rewritten path is not a valid URI",
                    e,
                )
            })?;
            upstream.set_uri(uri);
        }
        if !route.forward_authorization {
            upstream.remove_header(&http::header::AUTHORIZATION);
        }
        if route.plugins.is_empty() {
            // Routes without a plugin chain still tell the upstream who called.
            if let Some(sub) = ctx
                .identity
                .as_ref()
                .and_then(|i| i.sub.as_deref())
                .filter(|s| valid_header_value(s))
            {
                upstream.insert_header("x-user-id", sub)?;
            }
        }
        for change in ctx.header_changes.drain(..) {
            match change {
                HeaderChange::Set(name, value) => upstream.insert_header(name, value)?,
                HeaderChange::Append(name, value) => {
                    upstream.append_header(name, value)?;
                }
                HeaderChange::Remove(name) => {
                    upstream.remove_header(&name);
                }
            }
        }
        upstream.insert_header(gen.headers.request_id.clone(), ctx.request_id.as_str())?;
        upstream.insert_header("x-forwarded-for", client_ip)?;
        upstream.insert_header("x-forwarded-proto", "http")?;
        if let Some(host) = host {
            upstream.insert_header("x-forwarded-host", host)?;
        }
        Ok(())
    }

    /// Login interception: forwards the request to the route's upstream,
    /// and on a 2xx JSON answer opens a session and hands out the gateway's
    /// tokens. Writes the answer itself; `Err` is an answer to send instead.
    async fn intercept_login(
        &self,
        session: &mut Session,
        gen: &Arc<Generation>,
        route_idx: usize,
        capture: &crate::session::LoginCapture,
        ctx: &mut RequestCtx,
    ) -> std::result::Result<(), Reply> {
        let internal = |what: &str, e: pingora::BError| {
            tracing::error!(error = %e, "login route: {what}");
            Reply::error(500, "internal_error", "Internal gateway error")
        };
        let (Some(settings), Some(route)) = (gen.sessions.as_deref(), gen.router.get(route_idx))
        else {
            return Err(Reply::error(
                500,
                "internal_error",
                "Internal gateway error",
            ));
        };
        let body = crate::session::request::read_body(session, gen.max_body_size).await?;
        let pool = &gen.upstreams[route.upstream];
        let target = pool.pick().ok_or_else(|| {
            Reply::error(
                503,
                "upstream_unavailable",
                "No healthy upstream is available",
            )
        })?;
        ctx.target = Some(target.label.clone());
        let upstream = upstream_span(&ctx.span);
        upstream.record("target", &*target.label);
        let peer = pool.peer(target);

        let mut request = session.req_header().clone();
        request.remove_header(&http::header::TRANSFER_ENCODING);
        request.remove_header(&http::header::CONNECTION);
        request
            .insert_header(http::header::CONTENT_LENGTH, body.len().to_string())
            .map_err(|e| internal("content-length", e))?;
        let ip = client_ip(session);
        let host = session
            .req_header()
            .headers
            .get(http::header::HOST)
            .cloned();
        self.prepare_upstream_request(&mut request, ip.clone(), host, ctx)
            .map_err(|e| internal("preparing the upstream request", e))?;
        let answer =
            crate::session::login::forward(&self.login_connector, &peer, request, body.clone())
                .instrument(upstream.clone())
                .await;
        match &answer {
            Ok(a) => upstream.record("status", a.header.status.as_u16()),
            Err(reply) => upstream.record("error", reply.body["error"].as_str().unwrap_or("")),
        };
        drop(upstream);
        let answer = answer?;

        let mut header = answer.header;
        let mut out_body = answer.body;
        let is_json = header
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
        if header.status.is_success() && is_json {
            let api = AuthApi {
                gen,
                settings,
                service: self.sessions.as_deref(),
                metrics: &self.metrics,
            };
            let user_agent = crate::session::request::user_agent(&session.req_header().headers);
            let (rewritten, cookie) = api
                .open_session_from_login(capture, &body, &out_body, user_agent, Some(ip))
                .await?;
            out_body = rewritten;
            let set = |h: &mut ResponseHeader, name: &'static str, value: String| {
                h.insert_header(name, value)
                    .map_err(|e| internal("answer header", e))
            };
            set(&mut header, "cache-control", "no-store".to_owned())?;
            if let Some(cookie) = cookie {
                header
                    .append_header("set-cookie", cookie)
                    .map_err(|e| internal("answer header", e))?;
            }
        }
        header.remove_header(&http::header::TRANSFER_ENCODING);
        header.remove_header(&http::header::CONNECTION);
        header
            .insert_header(http::header::CONTENT_LENGTH, out_body.len().to_string())
            .map_err(|e| internal("answer header", e))?;
        header
            .insert_header("x-request-id", ctx.request_id.as_str())
            .map_err(|e| internal("answer header", e))?;
        let write = async {
            session
                .write_response_header(Box::new(header), false)
                .await?;
            session
                .write_response_body(Some(bytes::Bytes::from(out_body)), true)
                .await
        };
        if let Err(e) = write.await {
            tracing::debug!(error = %e, "login route: the client went away");
        }
        Ok(())
    }
}

/// The client's address as forwarded upstream.
fn client_ip(session: &Session) -> String {
    match session.client_addr() {
        Some(PingoraAddr::Inet(a)) => a.ip().to_string(),
        _ => "unknown".to_owned(),
    }
}
