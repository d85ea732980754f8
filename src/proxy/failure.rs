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
    if let Some(reason) = tls_failure_reason(e) {
        record_tls_failure(e, reason, ctx);
    }
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

/// The route's and its upstream's names, for log lines (`-` without a route).
fn route_and_upstream(ctx: &RequestCtx) -> (&str, &str) {
    match ctx.route() {
        Some((gen, r)) => (&*r.name, &*gen.upstreams[r.upstream].name),
        None => ("-", "-"),
    }
}

/// Counts and logs an upstream answer cut after its head was sent.
fn record_abort(e: &Error, ctx: &RequestCtx, metrics: &Metrics) {
    let reason = abort_reason(e);
    metrics.upstream_aborts.with_label_values(&[reason]).inc();
    let (route, upstream) = route_and_upstream(ctx);
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

/// Logs a failed TLS handshake with an upstream, naming why: the 502 the
/// client gets says only `upstream_error`.
fn record_tls_failure(e: &Error, reason: &'static str, ctx: &RequestCtx) {
    let (route, upstream) = route_and_upstream(ctx);
    tracing::warn!(
        request_id = %ctx.request_id,
        route,
        upstream,
        target = ctx.target.as_deref().unwrap_or("-"),
        reason,
        error = %e,
        "TLS handshake with the upstream failed: {}",
        tls_reason_text(reason)
    );
}

/// Why a TLS handshake with an upstream failed, as a bounded label, or
/// `None` when `e` is not a TLS failure. pingora keeps only the text of
/// rustls' error, so the text is read.
pub(super) fn tls_failure_reason(e: &Error) -> Option<&'static str> {
    if !matches!(
        e.etype(),
        ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError
    ) {
        return None;
    }
    let text = e.to_string();
    let reason = if text.contains("UnknownIssuer") {
        "unknown_ca"
    } else if text.contains("not valid for name") || text.contains("NotValidForName") {
        "name_mismatch"
    } else if text.contains("certificate expired") || text.contains("Expired") {
        "expired"
    } else if text.contains("not valid yet") || text.contains("NotValidYet") {
        "not_yet_valid"
    } else if text.contains("invalid peer certificate") {
        "bad_certificate"
    } else if text.contains("received fatal alert") {
        // The upstream refused the handshake: often our client
        // certificate (missing, or not from a CA it trusts).
        "refused_by_upstream"
    } else if text.contains("no application protocol") || text.contains("NoApplicationProtocol") {
        "no_common_protocol"
    } else {
        "handshake_failed"
    };
    Some(reason)
}

/// The operator's reading of a [`tls_failure_reason`].
fn tls_reason_text(reason: &str) -> &'static str {
    match reason {
        "unknown_ca" => "its certificate is not signed by a trusted CA (check `tls.ca_file`)",
        "name_mismatch" => "its certificate is not for the name the gateway asked for (check `tls.sni`)",
        "expired" => "its certificate has expired",
        "not_yet_valid" => "its certificate is not valid yet (check the clocks)",
        "bad_certificate" => "its certificate was refused",
        "refused_by_upstream" => "the upstream refused the handshake (a client certificate it wants? check `tls.client_cert_file`)",
        "no_common_protocol" => "no common application protocol (check `protocol`)",
        _ => "see the error",
    }
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

    #[test]
    fn tls_failures_are_502_with_a_reason_named() {
        let failed =
            |text: &str| Error::explain(ErrorType::TLSHandshakeFailure, text.to_owned()).into_up();
        let unknown = failed("TLS connect() failed: tls connect error cause: invalid peer certificate: UnknownIssuer, SNI: 127.0.0.1");
        assert_eq!(gateway_error_for(&unknown), Some(UpstreamUnreachable));
        assert_eq!(tls_failure_reason(&unknown), Some("unknown_ca"));
        let name = failed("invalid peer certificate: certificate not valid for name \"a\"; certificate is only valid for b");
        assert_eq!(tls_failure_reason(&name), Some("name_mismatch"));
        let expired = failed("invalid peer certificate: certificate expired: verification time 2");
        assert_eq!(tls_failure_reason(&expired), Some("expired"));
        let alert = failed("received fatal alert: CertificateRequired");
        assert_eq!(tls_failure_reason(&alert), Some("refused_by_upstream"));
        assert_eq!(
            tls_failure_reason(&Error::new_up(ErrorType::ConnectRefused)),
            None
        );
    }
}
