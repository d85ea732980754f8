//! The upstream leg: picking a target, and the request the upstream gets
//! (path rewrite, identity headers from auth and plugins, request id,
//! forwarding headers, `Host`).

use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use super::context::upstream_span;
use super::RequestCtx;
use crate::plugin::HeaderChange;
use crate::upstream::{UpstreamHost, UpstreamProtocol};

/// Picks a healthy target of the route's pool (round-robin) and opens the
/// `upstream` span.
pub(super) fn pick_peer(ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let (Some(gen), Some(idx)) = (&ctx.generation, ctx.route) else {
        return Err(Error::explain(
            ErrorType::InternalError,
            "upstream_peer without a route",
        ));
    };
    let route = gen
        .router
        .get(idx)
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "route index out of range"))?;
    let pool = &gen.upstreams[route.upstream];
    let span = upstream_span(&ctx.span);
    let Some(target) = pool.pick() else {
        // Closes here: there is no upstream leg to time.
        span.record("error", "no_healthy_target");
        ctx.span.in_scope(|| drop(span));
        return Err(Error::explain(
            ErrorType::HTTPStatus(503),
            "no healthy upstream target",
        ));
    };
    span.record("target", &*target.label);
    ctx.target = Some(target.label.clone());
    let peer = Box::new(pool.peer(target));
    ctx.close_upstream_span(); // a retry: the previous attempt's leg ends
    ctx.upstream_span = span;
    Ok(peer)
}

/// Host without port, lower-cased; from the Host header or the URI authority
/// (an HTTP/2 request's `:authority`).
pub(super) fn request_host(req: &RequestHeader) -> Option<String> {
    let raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.host())?;
    let host = match raw.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => raw,
    };
    Some(host.to_ascii_lowercase())
}

fn valid_header_value(v: &str) -> bool {
    !v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

/// What `upstream_request_filter` does to the request sent upstream:
/// path rewrite, identity headers, request id, forwarding headers. Also
/// used by login routes, which the gateway sends itself. The client's
/// address and `Host` come from the downstream `session`.
pub(super) fn prepare_upstream_request(
    session: &Session,
    upstream: &mut RequestHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let (Some(gen), Some(idx)) = (&ctx.generation, ctx.route) else {
        return Ok(());
    };
    let Some(route) = gen.router.get(idx) else {
        return Ok(());
    };
    if route.strip_prefix.is_some() || route.add_prefix.is_some() {
        let path = route.upstream_path(upstream.uri.path()).into_owned();
        let uri = match upstream.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let uri = uri.parse::<http::Uri>().map_err(|e| {
            Error::because(
                ErrorType::InternalError,
                "rewritten path is not a valid URI",
                e,
            )
        })?;
        upstream.set_uri(uri);
    }
    if !route.forward_authorization {
        upstream.remove_header(&http::header::AUTHORIZATION);
    }
    if route.plugins.is_empty() {
        // Routes without a plugin chain still tell the upstream who called.
        if let Some(sub) = ctx
            .identity
            .as_ref()
            .and_then(|i| i.sub.as_deref())
            .filter(|s| valid_header_value(s))
        {
            upstream.insert_header("x-user-id", sub)?;
        }
    }
    for change in ctx.header_changes.drain(..) {
        match change {
            HeaderChange::Set(name, value) => upstream.insert_header(name, value)?,
            HeaderChange::Append(name, value) => {
                upstream.append_header(name, value)?;
            }
            HeaderChange::Remove(name) => {
                upstream.remove_header(&name);
            }
        }
    }
    upstream.insert_header(gen.headers.request_id.clone(), ctx.request_id.as_str())?;
    let client_ip = crate::session::request::client_ip(session).unwrap_or_else(|| "unknown".into());
    upstream.insert_header("x-forwarded-for", client_ip)?;
    upstream.insert_header("x-forwarded-proto", if ctx.tls { "https" } else { "http" })?;
    // HTTP/2 clients name the host in `:authority` (the URI), not `Host`.
    let client_host = session
        .req_header()
        .headers
        .get(http::header::HOST)
        .cloned()
        .or_else(|| {
            let authority = session.req_header().uri.authority()?;
            http::HeaderValue::from_str(authority.as_str()).ok()
        });
    if let Some(host) = &client_host {
        upstream.insert_header("x-forwarded-host", host.clone())?;
    }
    let pool = &gen.upstreams[route.upstream];
    match &pool.host {
        UpstreamHost::Fixed(host) => upstream.insert_header(http::header::HOST, host.clone())?,
        UpstreamHost::Preserve if !upstream.headers.contains_key(http::header::HOST) => {
            // An HTTP/2 client's `:authority`; else (HTTP/1.0 without
            // Host) the target, so the upstream still gets one (RFC 9112 §3.2).
            if upstream.uri.authority().is_none() {
                if let Some(target) = ctx.target.as_deref() {
                    upstream.insert_header(http::header::HOST, target)?;
                }
            }
        }
        UpstreamHost::Preserve => {}
    }
    if pool.protocol != UpstreamProtocol::Http1 && crate::reply::is_grpc_request(upstream) {
        // gRPC servers require it; pingora drops `TE` from an HTTP/1.1
        // client's request as hop-by-hop before this filter runs.
        upstream.insert_header(http::header::TE, "trailers")?;
    }
    Ok(())
}
