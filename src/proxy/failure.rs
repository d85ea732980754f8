//! Proxy failures as answers: 502 unreachable, 503 no healthy target,
//! 504 upstream timeout, 408 a client too slow with its body — and nothing
//! at all once an answer has started (the connection is then cut).

use pingora::proxy::{FailToProxy, Session};
use pingora::Error;

use super::RequestCtx;
use crate::error::GatewayError;

/// Answers a failed proxy attempt, if nothing has been sent yet.
pub(super) async fn answer(session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
    // Once the answer has started, nothing more may be written.
    let answer = gateway_error_for(e).filter(|_| session.response_written().is_none());
    let mut status = 0;
    if let Some(error) = answer {
        status = error.status();
        if ctx.request_id.is_empty() {
            ctx.request_id = crate::headers::request_id(None);
        }
        let _ = error.into_reply().send(session, &ctx.request_id).await;
    }
    FailToProxy {
        error_code: status,
        can_reuse_downstream: false,
    }
}

/// The answer to a failed proxy attempt (`ProxyHttp::fail_to_proxy`),
/// or `None` when the client is gone and nothing should be written.
///
/// A body that did not arrive in time is the client's fault (408), not
/// the upstream's; pingora's `HTTPStatus(503)` is the empty pool.
pub(super) fn gateway_error_for(e: &pingora::Error) -> Option<GatewayError> {
    use pingora::{ErrorSource, ErrorType};
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
