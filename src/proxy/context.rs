//! Per-request state shared by the phases, and the request's spans.
//!
//! A `request` span lives in [`RequestCtx`] from the moment the request id
//! is known until `logging`; `jwt_verify` and `plugin_chain` wrap the
//! synchronous auth and plugin steps, and `upstream` is kept from
//! `upstream_peer` until the upstream's answer is complete. No guard is
//! ever held across an `.await`. A child span is closed while `request` is
//! the current span: the JSON formatter takes a record's span list from the
//! current span, so the close record then lists `request` (and its
//! `request_id`) above the closing span.

use std::sync::Arc;
use std::time::Instant;

use pingora::http::RequestHeader;
use pingora::protocols::Digest;
use tracing::field::Empty;
use tracing::Span;

use crate::generation::Generation;
use crate::jwt::VerifiedToken;
use crate::logging::SPAN_TARGET;
use crate::plugin::HeaderChange;
use crate::route::Route;
use crate::tls::ClientCertificate;

/// How the auth step ended, for metrics and the access log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum AuthOutcome {
    #[default]
    NotChecked,
    Anonymous,
    Verified,
    Rejected(&'static str),
    Forbidden,
}

impl AuthOutcome {
    pub(super) fn as_str(&self) -> &'static str {
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
pub(crate) struct RequestCtx {
    pub(super) generation: Option<Arc<Generation>>,
    pub(super) route: Option<usize>,
    pub(super) request_id: String,
    pub(super) started: Instant,
    pub(super) auth: AuthOutcome,
    pub(super) identity: Option<Arc<VerifiedToken>>,
    pub(super) target: Option<Arc<str>>,
    /// Header changes decided by the route's plugin chain.
    pub(super) header_changes: Vec<HeaderChange>,
    /// Set when the gateway answered a built-in route (`session_api`, `jwks`).
    pub(super) builtin: Option<&'static str>,
    /// The `request` span; disabled (free) unless `log.spans` is on.
    pub(super) span: Span,
    /// The `upstream` span, open while the upstream leg is under way.
    pub(super) upstream_span: Span,
    /// The path as the client sent it, kept only when the canonical form
    /// (which is matched and forwarded) differs: the access log shows both.
    pub(super) raw_path: Option<String>,
    /// The canonical path less its `;params` (only when params are kept).
    pub(super) match_path: Option<String>,
    /// The request came over the TLS listener.
    pub(super) tls: bool,
    /// The connection's verified client certificate (mTLS), if it sent one.
    pub(super) client_cert: Option<Arc<ClientCertificate>>,
}

impl RequestCtx {
    pub(super) fn new() -> RequestCtx {
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
            tls: false,
            client_cert: None,
        }
    }

    /// Notes what the connection tells about the client: TLS, and its
    /// verified certificate.
    pub(super) fn connection(&mut self, digest: Option<&Digest>) {
        self.tls = digest.is_some_and(|d| d.ssl_digest.is_some());
        self.client_cert = ClientCertificate::of_connection(digest);
    }

    /// Takes the generation, the request id (kept when plain, else new) and
    /// opens the `request` span.
    pub(super) fn begin(&mut self, gen: Arc<Generation>, req: &RequestHeader) {
        self.request_id = crate::headers::request_id(
            req.headers
                .get(&gen.headers.request_id)
                .map(|v| v.as_bytes()),
        );
        self.generation = Some(gen);
        self.span = tracing::debug_span!(
            target: SPAN_TARGET,
            "request",
            request_id = %self.request_id,
            method = req.method.as_str(),
            route = Empty,
        );
    }

    /// The route matched in `request_filter`, if any.
    pub(super) fn route(&self) -> Option<(&Generation, &Route)> {
        let gen = self.generation.as_deref()?;
        Some((gen, gen.router.get(self.route?)?))
    }

    pub(super) fn route_name(&self) -> &str {
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
    pub(super) fn close_upstream_span(&mut self) {
        let _request = self.span.enter();
        self.upstream_span = Span::none();
    }

    /// Puts the route (or built-in answer) on the `request` span once known.
    pub(super) fn record_route(&self) {
        if !self.span.is_disabled() {
            self.span.record("route", self.route_name());
        }
    }
}

/// A new `upstream` span under `request`; `target`, `status` and `error`
/// are recorded as they become known.
pub(super) fn upstream_span(request: &Span) -> Span {
    tracing::debug_span!(
        target: SPAN_TARGET,
        parent: request,
        "upstream",
        target = Empty,
        status = Empty,
        error = Empty,
    )
}
