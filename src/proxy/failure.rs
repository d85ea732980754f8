//! Proxy failures as answers: 502 unreachable, 503 no healthy target,
//! 504 upstream timeout, 408 a client too slow with its body — and nothing
//! at all once an answer has started (the connection is then cut).

use pingora::proxy::{FailToProxy, Session};
use pingora::{Error, ErrorSource, ErrorType};

use super::RequestCtx;
use crate::error::GatewayError;
use crate::metrics::Metrics;

/// Answers a failed proxy attempt, if nothing has been sent yet. Every
/// such answer closes the connection (and says so). Once the answer has
/// started, nothing more is written: the connection is cut, so the client
/// sees a truncated answer — never a complete-looking one — and an upstream
/// failure is counted and logged.
pub(super) async fn answer(
    session: &mut Session,
    e: &Error,
    ctx: &mut RequestCtx,
    metrics: &Metrics,
) -> FailToProxy {
    let cut = FailToProxy {
        error_code: 0,
        can_reuse_downstream: false,
    };
    if session.response_written().is_some() {
        if is_abort(session, e) {
            record_abort(e, ctx, metrics);
        }
        return cut;
    }
    let Some(error) = gateway_error_for(e) else {
        return cut;
    };
    if ctx.request_id.is_empty() {
        ctx.request_id = crate::headers::request_id(None);
    }
    let status = error.status();
    let _ = error
        .into_reply()
        .closing()
        .send(session, &ctx.request_id)
        .await;
    FailToProxy {
        error_code: status,
        can_reuse_downstream: false,
    }
}

/// An upstream failure after the answer's head went to the client.
pub(super) fn is_abort(session: &Session, e: &Error) -> bool {
    session.response_written().is_some() && *e.esource() == ErrorSource::Upstream
}

/// Counts and logs an upstream answer cut after its head was sent.
fn record_abort(e: &Error, ctx: &RequestCtx, metrics: &Metrics) {
    let reason = abort_reason(e);
    metrics.upstream_aborts.with_label_values(&[reason]).inc();
    let (route, upstream) = match ctx.route() {
        Some((gen, r)) => (&*r.name, &*gen.upstreams[r.upstream].name),
        None => ("-", "-"),
    };
    tracing::warn!(
        request_id = %ctx.request_id,
        route,
        upstream,
        target = ctx.target.as_deref().unwrap_or("-"),
        reason,
        error = %e,
        "upstream answer aborted after its head was sent; the client connection is cut"
    );
}

/// `closed`, `timeout` or `error` (`portcullis_upstream_aborts_total`).
fn abort_reason(e: &Error) -> &'static str {
    match e.etype() {
        ErrorType::ConnectionClosed => "closed",
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => "timeout",
        _ => "error",
    }
}

/// The answer to a failed proxy attempt (`ProxyHttp::fail_to_proxy`),
/// or `None` when the client is gone and nothing should be written.
///
/// A body that did not arrive in time is the client's fault (408), not
/// the upstream's; pingora's `HTTPStatus(503)` is the empty pool.
pub(super) fn gateway_error_for(e: &pingora::Error) -> Option<GatewayError> {
    if crate::conn_guard::read_deadline(e) == Some(crate::conn_guard::CloseReason::BodyTimeout) {
        return Some(GatewayError::BodyTimeout);
    }
    let error = match e.etype() {
        ErrorType::HTTPStatus(503) => GatewayError::UpstreamUnavailable,
        ErrorType::HTTPStatus(code) => GatewayError::HttpStatus(*code),
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            GatewayError::UpstreamTimeout
        }
        _ => match e.esource() {
            ErrorSource::Upstream => GatewayError::UpstreamUnreachable,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                    return None
                }
                _ => GatewayError::UnreadableRequest,
            },
            _ => GatewayError::Internal,
        },
    };
    Some(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use GatewayError::*;

    #[test]
    fn proxy_failures_map_to_the_answers_of_fail_to_proxy() {
        use pingora::{Error, ErrorType};
        let answer = |e: &Error| gateway_error_for(e);
        assert_eq!(
            answer(&Error::explain(ErrorType::HTTPStatus(503), "no target")),
            Some(UpstreamUnavailable)
        );
        assert_eq!(
            answer(&Error::new(ErrorType::HTTPStatus(502))),
            Some(HttpStatus(502))
        );
        assert_eq!(
            answer(&Error::new_up(ErrorType::ReadTimedout)),
            Some(UpstreamTimeout)
        );
        assert_eq!(
            answer(&Error::new_up(ErrorType::ConnectRefused)),
            Some(UpstreamUnreachable)
        );
        assert_eq!(answer(&Error::new_down(ErrorType::ReadError)), None);
        assert_eq!(
            answer(&Error::new_down(ErrorType::InvalidHTTPHeader)),
            Some(UnreadableRequest)
        );
        assert_eq!(
            answer(&Error::new_in(ErrorType::InternalError)),
            Some(Internal)
        );
        let deadline = crate::conn_guard::ReadDeadline {
            reason: crate::conn_guard::CloseReason::BodyTimeout,
        };
        let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, deadline);
        let body = Error::because(ErrorType::ReadError, "when reading body", timed_out).into_down();
        assert_eq!(answer(&body), Some(BodyTimeout));
    }
}
