//! The `upstreams` section: target pools, timeouts, health checks.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde_saphyr::Spanned;

use super::Checker;
use crate::config::defaults;
use crate::config::raw::RawUpstream;
use crate::upstream::{HealthCheck, Target, Upstream};

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
    let health_check = u.health_check.as_ref().map(|h| HealthCheck {
        interval: h.interval.map(|d| d.0).unwrap_or(defaults::HEALTH_INTERVAL),
        timeout: h.timeout.map(|d| d.0).unwrap_or(defaults::HEALTH_TIMEOUT),
        path: h.path.as_ref().map(|p| p.value.clone()),
        unhealthy_after: h
            .unhealthy_after
            .unwrap_or(defaults::UNHEALTHY_AFTER)
            .max(1),
        healthy_after: h.healthy_after.unwrap_or(defaults::HEALTHY_AFTER).max(1),
    });
    if let Some(hc) = &u.health_check {
        if let Some(p) = &hc.path {
            if !p.value.starts_with('/') || p.value.contains(['\r', '\n', ' ']) {
                ck.at(
                    p,
                    format!(
                        "health check path `{}` must start with `/` and contain no spaces",
                        p.value
                    ),
                );
            }
        }
    }
    if targets.len() != u.targets.value.len() {
        return None;
    }
    let d = |v: Option<crate::config::units::HumanDuration>, default: Duration| {
        v.map(|d| d.0).unwrap_or(default)
    };
    Some(Upstream::new(
        name.into(),
        targets,
        d(u.connect_timeout, defaults::CONNECT_TIMEOUT),
        d(u.read_timeout, defaults::READ_TIMEOUT),
        d(u.write_timeout, defaults::WRITE_TIMEOUT),
        health_check,
    ))
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
