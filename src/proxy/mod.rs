//! The pingora `ProxyHttp` implementation: the phases of a request, in the
//! order pingora runs them, each a few lines that hand the work to the
//! module that owns it — reading the request one way ([`reading`], over
//! [`crate::canonical`]), the gateway's own answers and routing
//! ([`admission`]), tokens ([`auth`], over [`crate::access`]), Wasm plugins
//! ([`plugins`]), the upstream leg ([`upstream_request`]), failures
//! ([`failure`]) and the access log ([`access_log`]). Per-request state and
//! spans live in [`context`]. docs/architecture.md walks a request through.

mod access_log;
mod admission;
mod auth;
mod context;
mod failure;
mod plugins;
mod reading;
mod upstream_request;

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, Result};

pub(crate) use context::{AuthOutcome, RequestCtx};

use crate::generation::Generation;
use crate::metrics::Metrics;
use crate::session::SessionService;

/// The gateway: reads the current generation on every request.
pub(crate) struct Gateway {
    pub state: Arc<ArcSwap<Generation>>,
    pub metrics: Arc<Metrics>,
    /// The session store and revoked set; `None` without a `sessions` section.
    pub sessions: Option<Arc<SessionService>>,
    /// Upstream connections of login routes (the gateway sends those itself).
    pub login_connector: Connector,
}

impl Gateway {
    pub(crate) fn new(
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

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    /// Runs first for every request, once its head is read: reads it one
    /// way, answers the gateway's own routes, routes, authenticates and runs
    /// the plugin chain. `Ok(true)` means the gateway already answered.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // The head is in: its read deadline ends, the body's begins.
        let has_body = !session.is_body_empty();
        crate::conn_guard::head_read(session, has_body);
        crate::lifecycle::request_started(session);
        // RFC 9112 §9.3.2: bytes after this request (a pipelined request, a
        // stray CRLF) wait for their turn instead of failing this one.
        // (HTTP/1 only; an HTTP/2 session ignores it.)
        session.downstream_session.set_pipelining_enabled(true);
        let gen = self.state.load_full();
        ctx.begin(gen.clone(), session.req_header());
        ctx.connection(session.digest());
        self.admit(session, &gen, ctx).await
    }

    /// Picks a healthy target of the route's pool (round-robin).
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        upstream_request::pick_peer(ctx)
    }

    /// Rewrites the path, sets identity and forwarding headers.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        upstream_request::prepare_upstream_request(session, upstream, ctx)
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

    /// Echoes the request id to the client; while draining, the answer
    /// closes its connection.
    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        crate::lifecycle::answer_starting(session);
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
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

    /// A client too slow with its body is counted and answered, not an
    /// error of the gateway worth a log line; an upstream answer cut after
    /// its head was sent and a failed TLS handshake with an upstream have
    /// their own lines (`failure`).
    fn suppress_error_log(&self, session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        crate::conn_guard::read_deadline(e).is_some()
            || failure::is_abort(session, e)
            || failure::tls_failure_reason(e).is_some()
    }

    /// Answers a failed proxy attempt (502/503/504/408 JSON) while nothing
    /// has been sent; once an answer has started, the connection is cut.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        failure::answer(session, e, ctx, &self.metrics).await
    }

    /// Metrics and one access event per request; closes the request's spans.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        crate::conn_guard::request_done(session);
        crate::lifecycle::request_finished();
        access_log::record(&self.metrics, session, e, ctx);
    }
}
