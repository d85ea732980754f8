//! The authentication steps: the route's client-certificate rules (mTLS),
//! then the token, verification, revoked sessions and the route's claim
//! requirements.

use pingora::http::RequestHeader;
use tracing::field::Empty;

use super::{AuthOutcome, Gateway, RequestCtx};
use crate::access::extract_token;
use crate::error::GatewayError;
use crate::generation::Generation;
use crate::logging::SPAN_TARGET;
use crate::route::{AuthMode, CertField};

impl Gateway {
    /// Before [`authenticate`](Self::authenticate), for issuers whose keys
    /// are fetched: a token whose `kid` the keys lack (the issuer rotated),
    /// or an issuer whose keys are not fetched yet, gets one refetch — single
    /// flight, behind the issuer's cooldown — so the check that follows sees
    /// the new keys. A no-op without fetched issuers; cheap for a cached token.
    pub(super) async fn refetch_issuer_keys(
        &self,
        gen: &Generation,
        route_idx: usize,
        req: &RequestHeader,
    ) {
        let Some(verifier) = gen.verifier.as_ref() else {
            return;
        };
        if verifier.key_sources().next().is_none()
            || gen
                .router
                .get(route_idx)
                .is_none_or(|r| r.auth == AuthMode::None)
        {
            return;
        }
        if let Some(token) = extract_token(&req.headers, gen.token_sources.cookie.as_deref()) {
            verifier.refetch_keys_for(token).await;
        }
    }

    /// Client-certificate step of `request_filter`: a route with
    /// `require_client_cert` or `client_cert` requirements refuses (403) a
    /// request whose connection has no verified client certificate, or one
    /// whose fields do not meet the requirements.
    pub(super) fn check_client_cert(
        &self,
        gen: &Generation,
        route_idx: usize,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        let Some(route) = gen.router.get(route_idx) else {
            return Ok(());
        };
        let rules = &route.client_cert;
        if rules.is_empty() {
            return Ok(());
        }
        let cert = ctx.client_cert.as_deref();
        if rules.required && cert.is_none() {
            ctx.auth = AuthOutcome::Forbidden;
            return Err(GatewayError::ClientCertificateRequired);
        }
        let value = |field: CertField| {
            cert.map(|c| match field {
                CertField::Sha256 => c.sha256.as_str(),
                CertField::Subject => c.subject.as_str(),
            })
        };
        if let Some(failed) = rules.requirements.iter().find(|r| !r.holds(value(r.field))) {
            ctx.auth = AuthOutcome::Forbidden;
            if cert.is_none() {
                return Err(GatewayError::ClientCertificateRequired);
            }
            return Err(GatewayError::DeniedByPolicy {
                status: 403,
                message: format!(
                    "Access denied: the client certificate's {} does not meet this route's requirement",
                    failed.field.as_str()
                ),
            });
        }
        Ok(())
    }

    /// Auth step of `request_filter`: `Err(reply)` when the request must stop here.
    pub(super) fn authenticate(
        &self,
        gen: &Generation,
        route_idx: usize,
        req: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
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
            let verdict = crate::access::check(gen.verifier.as_ref(), revoked, token);
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
            Ok((verified, _))
                if route
                    .issuers
                    .as_ref()
                    .is_some_and(|accepted| !accepted.contains(&verified.issuer)) =>
            {
                // A valid token, of an issuer this route does not accept.
                let rejection = crate::jwt::Rejection::UnknownIssuer;
                labels("fail", rejection.reason());
                ctx.auth = AuthOutcome::Rejected(rejection.reason());
                Err(GatewayError::from(rejection))
            }
            Ok((verified, cached)) => {
                if cached {
                    route
                        .series
                        .jwt_cached
                        .get_or_init(|| {
                            self.metrics.jwt_validations.with_label_values(&[
                                &route.name,
                                "ok",
                                "cached",
                            ])
                        })
                        .inc();
                } else {
                    labels("ok", "verified");
                }
                if let Some(failed) = route
                    .requirements
                    .iter()
                    .find(|r| !r.holds(&verified.claims))
                {
                    ctx.auth = AuthOutcome::Forbidden;
                    return Err(GatewayError::InsufficientClaims {
                        claim: failed.claim_text.clone(),
                    });
                }
                ctx.auth = AuthOutcome::Verified;
                ctx.identity = Some(verified);
                Ok(())
            }
            Err(rejection) => {
                labels("fail", rejection.reason());
                ctx.auth = AuthOutcome::Rejected(rejection.reason());
                Err(GatewayError::from(rejection))
            }
        }
    }
}
