//! The plugin step: the route's Wasm chain, its header changes or its deny.

use pingora::http::RequestHeader;
use tracing::field::Empty;

use super::{AuthOutcome, Gateway, RequestCtx};
use crate::claims::Claims;
use crate::error::GatewayError;
use crate::generation::Generation;
use crate::logging::SPAN_TARGET;
use crate::plugin::{ClientCertMeta, InvocationResult, Outcome, RequestMeta};

impl Gateway {
    /// Plugin step of `request_filter`: runs the route's chain, keeps its
    /// header changes in `ctx`, or answers the deny / failure.
    pub(super) fn run_plugins(
        &self,
        gen: &Generation,
        route_idx: usize,
        req: &RequestHeader,
        host: Option<&str>,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        let Some(route) = gen.router.get(route_idx) else {
            return Ok(());
        };
        if route.plugins.is_empty() {
            return Ok(());
        }
        let anonymous;
        let claims = match ctx.identity.as_ref() {
            Some(verified) => &verified.claims,
            None => {
                anonymous = Claims::empty();
                &anonymous
            }
        };
        let meta = RequestMeta {
            method: req.method.as_str(),
            path: req.uri.path(),
            query: req.uri.query().unwrap_or(""),
            host: host.unwrap_or(""),
            headers: &req.headers,
            client_cert: ctx.client_cert.as_deref().map(|c| ClientCertMeta {
                sha256: &c.sha256,
                subject: &c.subject,
            }),
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
        // Invocations are in chain order, so the i-th is the i-th plugin's.
        for (inv, series) in result.invocations.iter().zip(&route.series.plugins) {
            if inv.result == InvocationResult::Ok {
                series
                    .ok
                    .get_or_init(|| {
                        self.metrics
                            .plugin_invocations
                            .with_label_values(&[&*inv.plugin, "ok"])
                    })
                    .inc();
            } else {
                self.metrics
                    .plugin_invocations
                    .with_label_values(&[&*inv.plugin, inv.result.as_str()])
                    .inc();
            }
            series
                .duration
                .get_or_init(|| {
                    self.metrics
                        .plugin_duration
                        .with_label_values(&[&*inv.plugin])
                })
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
                Err(GatewayError::DeniedByPolicy { status, message })
            }
            Outcome::Failed { plugin, error, .. } => {
                tracing::warn!(plugin = %plugin, error = %error, "plugin failed; request refused (on_error: deny)");
                if error.invocation_result() == InvocationResult::Timeout {
                    Err(GatewayError::PolicyTimedOut)
                } else {
                    Err(GatewayError::PolicyFailed)
                }
            }
        }
    }
}
