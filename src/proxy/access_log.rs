//! The end of a request: metrics and one access event. The path is logged
//! without the query string, which may carry secrets.

use pingora::proxy::Session;
use pingora::Error;
use tracing::Span;

use super::{AuthOutcome, RequestCtx};
use crate::metrics::Metrics;

/// Counts the request and writes its access event; closes its spans.
pub(super) fn record(
    metrics: &Metrics,
    session: &Session,
    e: Option<&Error>,
    ctx: &mut RequestCtx,
) {
    // Still open: the request ended before the upstream's answer did.
    if let Some(e) = e {
        ctx.upstream_span.record("error", e.etype().as_str());
    }
    ctx.close_upstream_span();
    let answer = session.response_written();
    let status = answer.map(|r| r.status.as_u16()).unwrap_or(0);
    // Borrowed from the answer: nothing is allocated for the labels.
    let status_text = answer.map(|r| r.status.as_str()).unwrap_or("0");
    // A gRPC refusal is HTTP 200: its status is in the head (the gateway's
    // own, and an upstream's trailers-only error answers).
    let grpc_status = answer
        .and_then(|r| r.headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let route = ctx.route_name();
    let elapsed = ctx.started.elapsed();
    // A matched route's series are resolved once; built-in answers and
    // other statuses look their labels up.
    let series = ctx
        .route()
        .filter(|_| ctx.builtin.is_none())
        .map(|(_, r)| &r.series);
    match series.filter(|_| status == 200) {
        Some(series) => series
            .ok
            .get_or_init(|| metrics.requests.with_label_values(&[route, "200"]))
            .inc(),
        None => metrics
            .requests
            .with_label_values(&[route, status_text])
            .inc(),
    }
    let seconds = elapsed.as_secs_f64();
    match series {
        Some(series) => series
            .duration
            .get_or_init(|| metrics.request_duration.with_label_values(&[route]))
            .observe(seconds),
        None => metrics
            .request_duration
            .with_label_values(&[route])
            .observe(seconds),
    }
    let (version_index, version) = http_version(session.req_header().version);
    metrics.requests_by_version_series[version_index][usize::from(ctx.tls)].inc();
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
                grpc_status = %grpc_status,
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                auth = ctx.auth.as_str(),
                reason,
                upstream_target = ctx.target.as_deref().unwrap_or(""),
                http_version = version,
                tls = ctx.tls,
                client_cert = ctx.client_cert.as_deref().map(|c| c.sha256.as_str()).unwrap_or(""),
                error = e.map(|e| e.etype().as_str()).unwrap_or(""),
                "request"
            );
        });
    }
    // The `request` span closes now, after the access event it parents.
    ctx.span = Span::none();
}

/// The `version` label of `requests_by_version_total`: `1.0`, `1.1` or `2`
/// (pingora serves no other).
/// Also its index in [`crate::metrics::HTTP_VERSIONS`].
fn http_version(version: http::Version) -> (usize, &'static str) {
    match version {
        http::Version::HTTP_2 => (2, "2"),
        http::Version::HTTP_10 | http::Version::HTTP_09 => (0, "1.0"),
        _ => (1, "1.1"),
    }
}

/// A logged request target without its query string, which may carry secrets.
fn strip_query(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}
