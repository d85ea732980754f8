//! What `request_filter` decides, step by step: read the request one way,
//! answer the gateway's own routes (JWKS, `/api/auth`), route, authenticate,
//! run the plugin chain, and hand login routes to login interception.

use std::sync::Arc;

use pingora::proxy::Session;
use pingora::Result;
use tracing::Instrument;

use super::context::upstream_span;
use super::reading::{check_head_size, session_api_path};
use super::upstream_request::request_host;
use super::{Gateway, RequestCtx};
use crate::error::GatewayError;
use crate::generation::Generation;
use crate::reply::Reply;
use crate::session::handlers::AuthApi;
use crate::session::intercept::{intercept_login, LoginExchange};

/// Path of the public key set.
const JWKS_PATH: &str = "/.well-known/jwks.json";

impl Gateway {
    /// Everything `request_filter` does after the context is set up.
    /// `Ok(true)`: the gateway has answered; `Ok(false)`: proxy upstream.
    pub(super) async fn admit(
        &self,
        session: &mut Session,
        gen: &Arc<Generation>,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let read =
            check_head_size(gen, session).and_then(|()| self.read_one_way(session, gen, ctx));
        if let Err(refusal) = read {
            self.metrics
                .request_refusals
                .with_label_values(&[refusal.reason()])
                .inc();
            refusal.into_reply().send(session, &ctx.request_id).await?;
            return Ok(true);
        }
        if let Some(reply) = self.builtin_answer(session, gen, ctx).await {
            reply.send(session, &ctx.request_id).await?;
            return Ok(true);
        }

        let req = session.req_header();
        let path = req.uri.path();
        let host = request_host(req);
        let matched = ctx.match_path.as_deref().unwrap_or(path);
        let Some((idx, route)) = gen.router.find(host.as_deref(), matched, &req.method) else {
            ctx.record_route();
            let no_route = GatewayError::NoRoute {
                method: req.method.clone(),
                path: path.to_owned(),
            };
            no_route.into_reply().send(session, &ctx.request_id).await?;
            return Ok(true);
        };
        let login = route.login.clone();
        ctx.route = Some(idx);
        ctx.record_route();

        // A fetched issuer's keys may lack a rotated kid: refetch (bounded
        // by the issuer's cooldown) before the synchronous check.
        self.refetch_issuer_keys(gen, idx, session.req_header())
            .await;
        let decided = self
            .check_client_cert(gen, idx, ctx)
            .and_then(|()| self.authenticate(gen, idx, session.req_header(), ctx))
            .and_then(|()| self.run_plugins(gen, idx, session.req_header(), host.as_deref(), ctx));
        if let Err(refusal) = decided {
            refusal.into_reply().send(session, &ctx.request_id).await?;
            return Ok(true);
        }
        if let Some(capture) = login {
            let span = ctx.span.clone();
            if let Err(refusal) = self
                .hand_to_login(session, gen, &capture, ctx)
                .instrument(span)
                .await
            {
                refusal.into_reply().send(session, &ctx.request_id).await?;
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// The answers the gateway gives itself, before routing: the JWKS and
    /// the `/api/auth` session routes.
    async fn builtin_answer(
        &self,
        session: &mut Session,
        gen: &Arc<Generation>,
        ctx: &mut RequestCtx,
    ) -> Option<Reply> {
        let req = session.req_header();
        let path = req.uri.path();
        if path == JWKS_PATH && req.method == http::Method::GET {
            if let Some(jwks) = &gen.jwks {
                ctx.builtin = Some("jwks");
                ctx.record_route();
                return Some(
                    Reply::ok(200, jwks.clone())
                        .with_header("cache-control", "public, max-age=300"),
                );
            }
        }
        let settings = gen.sessions.as_deref()?;
        let endpoint = settings.endpoint(&session_api_path(path, gen))?;
        ctx.builtin = Some("session_api");
        ctx.record_route();
        let reply = self
            .auth_api(gen)?
            .handle(endpoint, session)
            .instrument(ctx.span.clone())
            .await;
        Some(reply)
    }

    /// The session API over this generation, when it has a `sessions` section.
    fn auth_api<'a>(&'a self, gen: &'a Generation) -> Option<AuthApi<'a>> {
        Some(AuthApi {
            verifier: gen.verifier.as_ref(),
            max_body_size: gen.max_body_size,
            settings: gen.sessions.as_deref()?,
            service: self.sessions.as_deref(),
            metrics: &self.metrics,
        })
    }

    /// Prepares a login route's upstream request as any proxied request
    /// (path, identity and forwarding headers), picks the target, and lets
    /// login interception do the exchange and answer.
    async fn hand_to_login(
        &self,
        session: &mut Session,
        gen: &Arc<Generation>,
        capture: &crate::session::LoginCapture,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        let (Some(api), Some((_, route))) = (self.auth_api(gen), ctx.route()) else {
            return Err(GatewayError::Internal);
        };
        let pool = &gen.upstreams[route.upstream];
        let target = pool.pick().ok_or(GatewayError::UpstreamUnavailable)?;
        ctx.target = Some(target.label.clone());
        let span = upstream_span(&ctx.span);
        span.record("target", &*target.label);
        let peer = pool.peer(target);

        let mut request = session.req_header().clone();
        request.remove_header(&http::header::TRANSFER_ENCODING);
        request.remove_header(&http::header::CONNECTION);
        super::upstream_request::prepare_upstream_request(session, &mut request, ctx).map_err(
            |e| {
                tracing::error!(error = %e, "login route: preparing the upstream request");
                GatewayError::Internal
            },
        )?;
        let exchange = LoginExchange {
            connector: &self.login_connector,
            peer: &peer,
            capture,
            api,
            request,
            client_ip: crate::session::request::client_ip(session),
            request_id: &ctx.request_id,
            max_body_size: gen.max_body_size,
            span,
        };
        intercept_login(session, exchange).await
    }
}
