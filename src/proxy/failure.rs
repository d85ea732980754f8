//! Proxy failures as answers: 502 unreachable, 503 no healthy target,
//! 504 upstream timeout, 408 a client too slow with its body — and nothing
//! at all once an answer has started (the connection is then cut).

use pingora::proxy::{FailToProxy, Session};
use pingora::{Error, ErrorSource, ErrorType};

use super::RequestCtx;
use crate::reply::Reply;

/// Answers a failed proxy attempt, if nothing has been sent yet.
pub(super) async fn answer(session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
    let body_timeout =
        crate::conn_guard::read_deadline(e) == Some(crate::conn_guard::CloseReason::BodyTimeout);
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
            ErrorSource::Upstream => (502, "upstream_error", "The upstream could not be reached"),
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
