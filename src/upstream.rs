//! Upstream pools: targets picked round-robin among the healthy ones, and the
//! active health checks that take dead targets out and put them back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::metrics::Metrics;

/// How targets are probed.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub interval: Duration,
    pub timeout: Duration,
    /// `Some(path)`: HTTP GET expecting 2xx/3xx; `None`: TCP connect.
    pub path: Option<String>,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
}

/// One backend address and its health state.
#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// As written in the config, for logs and metric labels.
    pub label: String,
    healthy: AtomicBool,
    failures: AtomicU32,
    successes: AtomicU32,
}

impl Target {
    pub fn new(addr: SocketAddr, label: String) -> Target {
        Target {
            addr,
            label,
            healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            successes: AtomicU32::new(0),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// The `Host` an upstream receives (`upstreams.*.host`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UpstreamHost {
    /// The client's `Host`, as it came; a request without one (HTTP/1.0)
    /// gets the picked target's authority as configured.
    #[default]
    Preserve,
    /// Always this authority; the client's stays in `X-Forwarded-Host`.
    Fixed(http::HeaderValue),
}

/// A named pool of targets.
#[derive(Debug)]
pub struct Upstream {
    pub name: Arc<str>,
    pub targets: Vec<Target>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub health_check: Option<HealthCheck>,
    /// The `Host` the upstream receives.
    pub host: UpstreamHost,
    next: AtomicUsize,
}

impl Upstream {
    pub fn new(
        name: Arc<str>,
        targets: Vec<Target>,
        connect_timeout: Duration,
        read_timeout: Duration,
        write_timeout: Duration,
        health_check: Option<HealthCheck>,
    ) -> Upstream {
        Upstream {
            name,
            targets,
            connect_timeout,
            read_timeout,
            write_timeout,
            health_check,
            host: UpstreamHost::Preserve,
            next: AtomicUsize::new(0),
        }
    }

    /// The pingora peer for `target` with this pool's timeouts.
    pub fn peer(&self, target: &Target) -> pingora::prelude::HttpPeer {
        let mut peer = pingora::prelude::HttpPeer::new(target.addr, false, String::new());
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.write_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        peer
    }

    /// Next healthy target, round-robin; `None` when all are down.
    pub fn pick(&self) -> Option<&Target> {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.targets[(start + i) % n])
            .find(|t| t.is_healthy())
    }

    /// Probes every target once and updates health state and metrics.
    pub async fn check_once(&self, metrics: &Metrics) {
        let Some(hc) = &self.health_check else {
            return;
        };
        for target in &self.targets {
            let ok = probe(target.addr, hc).await;
            let was = target.is_healthy();
            if ok {
                target.failures.store(0, Ordering::Relaxed);
                let s = target.successes.fetch_add(1, Ordering::Relaxed) + 1;
                if !was && s >= hc.healthy_after {
                    target.healthy.store(true, Ordering::Relaxed);
                    tracing::info!(upstream = %self.name, target = %target.label, "target is healthy again");
                }
            } else {
                target.successes.store(0, Ordering::Relaxed);
                let f = target.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if was && f >= hc.unhealthy_after {
                    target.healthy.store(false, Ordering::Relaxed);
                    tracing::warn!(upstream = %self.name, target = %target.label, "target failed health checks; taken out of rotation");
                }
            }
            metrics
                .upstream_health
                .with_label_values(&[&*self.name, target.label.as_str()])
                .set(if target.is_healthy() { 1 } else { 0 });
        }
    }
}

async fn probe(addr: SocketAddr, hc: &HealthCheck) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let Some(path) = &hc.path else {
            return Some(true);
        };
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: portcullis-health\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut buf = [0u8; 32];
        let mut read = 0;
        while read < 12 {
            let n = stream.read(&mut buf[read..]).await.ok()?;
            if n == 0 {
                break;
            }
            read += n;
        }
        let head = std::str::from_utf8(&buf[..read]).ok()?;
        let code: u16 = head.get(9..12)?.parse().ok()?;
        Some((200..400).contains(&code))
    };
    matches!(
        tokio::time::timeout(hc.timeout, attempt).await,
        Ok(Some(true))
    )
}

/// Starts one health-check loop per checked pool. The caller aborts the
/// returned handles when the generation that owns the pools is replaced.
pub(crate) fn spawn_health_checks(
    upstreams: &[Arc<Upstream>],
    metrics: &Arc<Metrics>,
) -> Vec<tokio::task::JoinHandle<()>> {
    upstreams
        .iter()
        .filter_map(|u| {
            let interval = u.health_check.as_ref()?.interval;
            let (u, metrics) = (u.clone(), metrics.clone());
            Some(tokio::spawn(async move {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    u.check_once(&metrics).await;
                }
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Upstream {
        let targets = (0..n)
            .map(|i| {
                Target::new(
                    format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                    format!("t{i}"),
                )
            })
            .collect();
        let d = Duration::from_secs(1);
        Upstream::new("p".into(), targets, d, d, d, None)
    }

    #[test]
    fn round_robin_skips_unhealthy_targets() {
        let p = pool(3);
        p.targets[1].healthy.store(false, Ordering::Relaxed);
        let picks: Vec<_> = (0..4).map(|_| p.pick().unwrap().label.clone()).collect();
        assert!(!picks.contains(&"t1".to_string()));
        assert!(picks.contains(&"t0".to_string()) && picks.contains(&"t2".to_string()));
    }

    #[test]
    fn no_healthy_target_gives_none() {
        let p = pool(2);
        for t in &p.targets {
            t.healthy.store(false, Ordering::Relaxed);
        }
        assert!(p.pick().is_none());
    }
}
