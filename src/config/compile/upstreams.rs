//! The `upstreams` section: target pools, timeouts, health checks, the
//! protocol and TLS toward the targets ([`tls`]).

pub(super) mod tls;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde_saphyr::Spanned;

use super::Checker;
use crate::config::defaults;
use crate::config::raw::{RawHealthCheck, RawUpstream};
use crate::upstream::{HealthCheck, Probe, Target, Upstream, UpstreamHost, UpstreamProtocol};

pub(super) fn compile_upstream(
    ck: &mut Checker,
    name: &str,
    up: &Spanned<RawUpstream>,
) -> Option<Upstream> {
    let u = &up.value;
    if u.targets.value.is_empty() {
        ck.at(
            &u.targets,
            format!("upstream `{name}` has no targets: list at least one `host:port`"),
        );
        return None;
    }
    let mut targets = Vec::new();
    for t in &u.targets.value {
        match resolve(&t.value) {
            Ok(addr) => targets.push(Target::new(addr, t.value.clone())),
            Err(why) => ck.at(t, format!("upstream `{name}` target `{}` {why}", t.value)),
        }
    }
    let protocol = u.protocol.as_ref().map(|p| p.value).unwrap_or_default();
    // `Some(None)`: the section has a mistake (reported), after which the
    // rest of the upstream is still checked before giving up on it.
    let health_check = u
        .health_check
        .as_ref()
        .map(|h| compile_health_check(ck, name, h, protocol));
    if targets.len() != u.targets.value.len() || matches!(health_check, Some(None)) {
        return None;
    }
    let d = |v: Option<crate::config::units::HumanDuration>, default: Duration| {
        v.map(|d| d.0).unwrap_or(default)
    };
    let host = match &u.host {
        None => UpstreamHost::Preserve,
        Some(h) => match upstream_host(&h.value) {
            Ok(host) => host,
            Err(why) => {
                ck.at(h, format!("upstream `{name}` host `{}` {why}", h.value));
                return None;
            }
        },
    };
    let tls = tls::compile_upstream_tls(ck, name, u, protocol, &targets)?;
    let mut upstream = Upstream::new(
        name.into(),
        targets,
        d(u.connect_timeout, defaults::CONNECT_TIMEOUT),
        d(u.read_timeout, defaults::READ_TIMEOUT),
        d(u.write_timeout, defaults::WRITE_TIMEOUT),
        health_check.flatten(),
    );
    upstream.host = host;
    upstream.protocol = protocol;
    upstream.tls = tls;
    Some(upstream)
}

/// A pool's `health_check` section; `None` after reporting a mistake.
fn compile_health_check(
    ck: &mut Checker,
    name: &str,
    h: &RawHealthCheck,
    protocol: UpstreamProtocol,
) -> Option<HealthCheck> {
    Some(HealthCheck {
        interval: h.interval.map(|d| d.0).unwrap_or(defaults::HEALTH_INTERVAL),
        timeout: h.timeout.map(|d| d.0).unwrap_or(defaults::HEALTH_TIMEOUT),
        probe: health_probe(ck, name, h, protocol)?,
        unhealthy_after: h
            .unhealthy_after
            .unwrap_or(defaults::UNHEALTHY_AFTER)
            .max(1),
        healthy_after: h.healthy_after.unwrap_or(defaults::HEALTHY_AFTER).max(1),
    })
}

/// What a pool's health check asks: a TCP connect, `GET path`, or the
/// gRPC Health Checking Protocol (HTTP/2 pools only).
fn health_probe(
    ck: &mut Checker,
    name: &str,
    h: &RawHealthCheck,
    protocol: UpstreamProtocol,
) -> Option<Probe> {
    if let Some(p) = &h.path {
        if !p.value.starts_with('/') || p.value.contains(['\r', '\n', ' ']) {
            ck.at(
                p,
                format!(
                    "health check path `{}` must start with `/` and contain no spaces",
                    p.value
                ),
            );
            return None;
        }
    }
    let grpc = h.grpc.as_ref().filter(|g| g.value);
    if let (Some(service), None) = (&h.grpc_service, grpc) {
        ck.at(
            service,
            format!("upstream `{name}`: `grpc_service` names the service of a gRPC health check: add `grpc: true` beside it"),
        );
        return None;
    }
    let Some(grpc) = grpc else {
        return Some(match &h.path {
            Some(p) => Probe::Http(p.value.clone()),
            None => Probe::Tcp,
        });
    };
    if h.path.is_some() {
        ck.at(
            grpc,
            format!("upstream `{name}`: a health check is either `path` (HTTP GET) or `grpc: true`, not both"),
        );
        return None;
    }
    if protocol == UpstreamProtocol::Http1 {
        ck.at(
            grpc,
            format!("upstream `{name}`: a gRPC health check needs HTTP/2: set `protocol: h2c` (plain text) or `h2` (TLS)"),
        );
        return None;
    }
    let service = h.grpc_service.as_ref().map(|s| s.value.clone());
    Some(Probe::Grpc(service.unwrap_or_default()))
}

/// `preserve`, or an authority (`host` or `host:port`, no user info).
fn upstream_host(value: &str) -> Result<UpstreamHost, String> {
    if value == "preserve" {
        return Ok(UpstreamHost::Preserve);
    }
    let why = "is not a `host[:port]` authority: write `preserve` (the default) or e.g. `api.internal:8443`";
    let authority = value
        .parse::<http::uri::Authority>()
        .map_err(|_| why.to_owned())?;
    let bad_port = !value.ends_with(']')
        && value
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_err());
    if value.contains('@') || authority.host().is_empty() || bad_port {
        return Err(why.into());
    }
    http::HeaderValue::from_str(value)
        .map(UpstreamHost::Fixed)
        .map_err(|_| why.into())
}

fn resolve(target: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !target.contains(':') {
        return Err("has no port: write it as `host:port`".into());
    }
    match target.to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(|| "resolves to no address".into()),
        Err(e) => Err(format!("cannot be resolved ({e}): check the host name")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_host_is_preserve_or_an_authority() {
        assert_eq!(upstream_host("preserve"), Ok(UpstreamHost::Preserve));
        assert_eq!(
            upstream_host("api.internal:8443"),
            Ok(UpstreamHost::Fixed(http::HeaderValue::from_static(
                "api.internal:8443"
            )))
        );
        assert!(upstream_host("[::1]:8443").is_ok());
        for bad in [
            "",
            "user@host",
            "a b",
            "/path",
            "host:port",
            "host:99999",
            "http://x",
        ] {
            assert!(upstream_host(bad).is_err(), "{bad:?} accepted");
        }
    }
}
