//! Upstream pools: targets picked round-robin among the healthy ones, the
//! protocol and TLS settings every connection to them uses, and the active
//! health checks that take dead targets out and put them back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::protocols::tls::{CaType, ALPN};
use pingora::utils::tls::CertKey;
use serde::Deserialize;
use tokio::net::TcpStream;

use crate::metrics::Metrics;

/// Concurrent HTTP/2 streams the gateway opens on one upstream connection
/// before it opens another (pingora's default is 1: no multiplexing).
pub(crate) const H2_STREAMS_PER_CONNECTION: usize = 100;

/// How the gateway speaks HTTP to a pool's targets (`upstreams.*.protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (over TLS when `tls` is set).
    #[default]
    Http1,
    /// HTTP/2 over TLS, negotiated by ALPN; implies `tls`.
    H2,
    /// HTTP/2 with prior knowledge over plain TCP (gRPC servers without TLS).
    H2c,
}

impl UpstreamProtocol {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2 => "h2",
            UpstreamProtocol::H2c => "h2c",
        }
    }

    fn is_h2(self) -> bool {
        matches!(self, UpstreamProtocol::H2 | UpstreamProtocol::H2c)
    }
}

/// TLS toward a pool's targets (`upstreams.*.tls`), its files loaded once
/// per config generation.
#[derive(Clone)]
pub struct UpstreamTls {
    /// The server name sent and verified; `None`: each target's host.
    pub sni: Option<String>,
    /// Verify the certificate chain and the server name.
    pub verify: bool,
    /// Trusted CA certificates (`ca_file`); `None`: the system's roots.
    pub ca: Option<Arc<CaType>>,
    /// The client certificate and key presented to the targets.
    pub client_cert: Option<Arc<CertKey>>,
    /// Keeps pooled connections of different TLS settings apart (pingora
    /// does not hash the CA into a connection's reuse key).
    pub group_key: u64,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("sni", &self.sni)
            .field("verify", &self.verify)
            .field("ca_certificates", &self.ca.as_ref().map(|ca| ca.len()))
            .field("client_cert", &self.client_cert.is_some())
            .finish()
    }
}

/// How targets are probed.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// Time between two checks of a target.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// What a check asks.
    pub probe: Probe,
    /// Consecutive failures that take a target out.
    pub unhealthy_after: u32,
    /// Consecutive successes that put it back.
    pub healthy_after: u32,
}

/// What a health check asks a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connect.
    Tcp,
    /// `GET path`, expecting 2xx or 3xx, in the pool's protocol and over
    /// its TLS.
    Http(String),
    /// The gRPC Health Checking Protocol (`grpc.health.v1.Health/Check`)
    /// for this service (empty: the server as a whole), expecting
    /// `SERVING`; over HTTP/2 (the pool is `h2` or `h2c`).
    Grpc(String),
}

/// One backend address and its health state.
#[derive(Debug)]
pub struct Target {
    /// The resolved address.
    pub addr: SocketAddr,
    /// As written in the config, for logs and metric labels.
    pub label: std::sync::Arc<str>,
    /// The host part of `label` (no port, no IPv6 brackets): the TLS server
    /// name when `tls.sni` is not set.
    pub host: String,
    healthy: AtomicBool,
    failures: AtomicU32,
    successes: AtomicU32,
}

impl Target {
    /// A target, healthy until checked otherwise.
    pub fn new(addr: SocketAddr, label: String) -> Target {
        Target {
            addr,
            host: host_of(&label).to_owned(),
            label: label.into(),
            healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            successes: AtomicU32::new(0),
        }
    }

    /// Whether the target is in rotation.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// `host` of `host:port` or `[v6]:port`, as written.
fn host_of(label: &str) -> &str {
    let host = match label.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => label,
    };
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
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
    /// The name in `upstreams`.
    pub name: Arc<str>,
    /// The targets, in config order.
    pub targets: Vec<Target>,
    /// Connecting to a target (TCP and TLS handshake).
    pub connect_timeout: Duration,
    /// Reading from a target.
    pub read_timeout: Duration,
    /// Writing to a target.
    pub write_timeout: Duration,
    /// Active health checks; `None`: targets are always in rotation.
    pub health_check: Option<HealthCheck>,
    /// The `Host` the upstream receives.
    pub host: UpstreamHost,
    /// HTTP/1.1, HTTP/2 over TLS or h2c.
    pub protocol: UpstreamProtocol,
    /// TLS toward the targets; `None`: plain TCP.
    pub tls: Option<UpstreamTls>,
    next: AtomicUsize,
}

impl Upstream {
    /// A plain HTTP/1.1 pool; `host`, `protocol` and `tls` are set after.
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
            protocol: UpstreamProtocol::Http1,
            tls: None,
            next: AtomicUsize::new(0),
        }
    }

    /// The pingora peer for `target` with this pool's timeouts, protocol
    /// and TLS settings.
    pub fn peer(&self, target: &Target) -> HttpPeer {
        let sni = match &self.tls {
            Some(tls) => tls.sni.clone().unwrap_or_else(|| target.host.clone()),
            None => String::new(),
        };
        let mut peer = HttpPeer::new(target.addr, self.tls.is_some(), sni);
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.write_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        if self.protocol.is_h2() {
            // Minimum version 2: h2 by ALPN over TLS, prior knowledge in plain text.
            peer.options.alpn = ALPN::H2;
            peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
        if let Some(tls) = &self.tls {
            peer.options.verify_cert = tls.verify;
            peer.options.verify_hostname = tls.verify;
            peer.options.ca = tls.ca.clone();
            peer.client_cert_key = tls.client_cert.clone();
            peer.group_key = tls.group_key;
        }
        peer
    }

    /// The `Host` (HTTP/1.1) or `:authority` (HTTP/2) a health check sends.
    fn check_authority(&self, target: &Target) -> String {
        match &self.host {
            UpstreamHost::Fixed(host) => host.to_str().unwrap_or(&target.label).to_owned(),
            UpstreamHost::Preserve => target.label.to_string(),
        }
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
    /// HTTP checks go through `connector` with the pool's own peer settings,
    /// so a TLS or HTTP/2 pool is checked the way it is proxied to.
    pub async fn check_once(&self, metrics: &Metrics, connector: &Connector) {
        let Some(hc) = &self.health_check else {
            return;
        };
        for target in &self.targets {
            let ok = match &hc.probe {
                Probe::Tcp => tcp_probe(target.addr, hc.timeout).await,
                probe => {
                    let mut peer = self.peer(target);
                    // A fresh connection per check: a pooled one could hide a dead target.
                    peer.options.max_h2_streams = 1;
                    let authority = self.check_authority(target);
                    let check = http_probe(connector, &peer, probe, &authority);
                    matches!(tokio::time::timeout(hc.timeout, check).await, Ok(Some(())))
                }
            };
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
                .with_label_values(&[&*self.name, &*target.label])
                .set(if target.is_healthy() { 1 } else { 0 });
        }
    }
}

/// A TCP connect within `timeout`.
async fn tcp_probe(addr: SocketAddr, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// The path of the gRPC health check method.
const GRPC_HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// The most of a gRPC health answer read (a `HealthCheckResponse` is 2 bytes).
const GRPC_HEALTH_ANSWER_CAP: usize = 4096;

/// One HTTP check (`GET path` expecting 2xx or 3xx, or a gRPC health
/// check expecting `SERVING`); `Some(())` when the target passed. The
/// connection is dropped afterwards, never pooled.
async fn http_probe(
    connector: &Connector,
    peer: &HttpPeer,
    probe: &Probe,
    authority: &str,
) -> Option<()> {
    let (mut http, _reused) = connector.get_http_session(peer).await.ok()?;
    let (method, path) = match probe {
        Probe::Grpc(_) => ("POST", GRPC_HEALTH_CHECK),
        Probe::Http(path) => ("GET", path.as_str()),
        Probe::Tcp => return None,
    };
    let mut request = RequestHeader::build(method, path.as_bytes(), None).ok()?;
    request.insert_header(http::header::HOST, authority).ok()?;
    request
        .insert_header(http::header::USER_AGENT, "portcullis-health")
        .ok()?;
    if let Probe::Grpc(service) = probe {
        request
            .insert_header(http::header::CONTENT_TYPE, "application/grpc")
            .ok()?;
        request.insert_header(http::header::TE, "trailers").ok()?;
        http.write_request_header(Box::new(request)).await.ok()?;
        let body = grpc_health_request(service);
        http.write_request_body(body.into(), true).await.ok()?;
    } else {
        http.write_request_header(Box::new(request)).await.ok()?;
    }
    http.finish_request_body().await.ok()?;
    http.read_response_header().await.ok()?;
    let status = http.response_header()?.status.as_u16();
    let Probe::Grpc(_) = probe else {
        return (200..400).contains(&status).then_some(());
    };
    if status != 200 {
        return None;
    }
    // A trailers-only answer carries grpc-status in its headers.
    if grpc_status(http.response_header()?.headers.get("grpc-status")).is_some_and(|s| s != 0) {
        return None;
    }
    let mut answer = Vec::new();
    while let Some(chunk) = http.read_response_body().await.ok()? {
        answer.extend_from_slice(&chunk);
        if answer.len() > GRPC_HEALTH_ANSWER_CAP {
            return None;
        }
    }
    let trailers = match &mut http {
        pingora::protocols::http::client::HttpSession::H2(h2) => h2.read_trailers().await.ok()?,
        _ => None,
    };
    let code = grpc_status(trailers.as_ref().and_then(|t| t.get("grpc-status")));
    (code == Some(0) && grpc_health_serving(&answer)).then_some(())
}

/// A `grpc-status` header's code.
fn grpc_status(value: Option<&http::HeaderValue>) -> Option<u32> {
    value?.to_str().ok()?.trim().parse().ok()
}

/// A framed `grpc.health.v1.HealthCheckRequest` for `service`.
fn grpc_health_request(service: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        // Field 1 (`service`), length-delimited.
        message.push(0x0a);
        let mut len = service.len();
        while len >= 0x80 {
            message.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        message.push(len as u8);
        message.extend_from_slice(service.as_bytes());
    }
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0); // not compressed
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    framed
}

/// Whether a framed `HealthCheckResponse` says `SERVING` (status 1): one
/// uncompressed message whose field 1 is the varint 1. Unknown fields are
/// skipped; anything malformed is not serving.
fn grpc_health_serving(framed: &[u8]) -> bool {
    let Some((&[compressed, a, b, c, d], message)) = framed.split_first_chunk::<5>() else {
        return false;
    };
    if compressed != 0 || u32::from_be_bytes([a, b, c, d]) as usize != message.len() {
        return false;
    }
    serving_status(message) == Some(1)
}

/// Field 1 (`status`) of a `HealthCheckResponse`; `None` when absent or
/// the message is malformed.
fn serving_status(message: &[u8]) -> Option<u64> {
    let (mut rest, mut status) = (message, None);
    while !rest.is_empty() {
        let (key, after) = read_varint(rest)?;
        rest = match key & 7 {
            0 => {
                let (value, after) = read_varint(after)?;
                if key >> 3 == 1 {
                    status = Some(value);
                }
                after
            }
            2 => {
                let (len, after) = read_varint(after)?;
                after.get(usize::try_from(len).ok()?..)?
            }
            1 => after.get(8..)?,
            5 => after.get(4..)?,
            _ => return None,
        };
    }
    status
}

/// A protobuf varint at the start of `bytes` and what follows it.
fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
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
                let connector = Connector::new(None);
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    u.check_once(&metrics, &connector).await;
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
        let picks: Vec<String> = (0..4)
            .map(|_| p.pick().unwrap().label.to_string())
            .collect();
        assert!(!picks.contains(&"t1".to_string()));
        assert!(picks.contains(&"t0".to_string()) && picks.contains(&"t2".to_string()));
    }

    #[test]
    fn a_targets_host_is_its_label_without_port_or_brackets() {
        assert_eq!(host_of("api.internal:8443"), "api.internal");
        assert_eq!(host_of("127.0.0.1:80"), "127.0.0.1");
        assert_eq!(host_of("[::1]:443"), "::1");
    }

    #[test]
    fn h2_pools_ask_for_http2_and_multiplex() {
        let mut p = pool(1);
        let plain = p.peer(&p.targets[0]);
        assert_eq!(plain.options.alpn, ALPN::H1);
        assert!(!plain.is_tls());
        p.protocol = UpstreamProtocol::H2c;
        let h2c = p.peer(&p.targets[0]);
        assert_eq!(h2c.options.alpn, ALPN::H2);
        assert!(!h2c.is_tls());
        assert_eq!(h2c.options.max_h2_streams, H2_STREAMS_PER_CONNECTION);
    }

    #[test]
    fn tls_pools_send_the_target_host_unless_an_sni_is_set() {
        let mut p = pool(1);
        p.tls = Some(UpstreamTls {
            sni: None,
            verify: true,
            ca: None,
            client_cert: None,
            group_key: 7,
        });
        let peer = p.peer(&p.targets[0]);
        assert!(peer.is_tls());
        assert_eq!(peer.sni, "t0", "the target's host as written");
        assert!(peer.options.verify_cert && peer.options.verify_hostname);
        assert_eq!(peer.group_key, 7);
        if let Some(tls) = p.tls.as_mut() {
            tls.sni = Some("api.internal".into());
            tls.verify = false;
        }
        let peer = p.peer(&p.targets[0]);
        assert_eq!(peer.sni, "api.internal");
        assert!(!peer.options.verify_cert && !peer.options.verify_hostname);
    }

    #[test]
    fn grpc_health_requests_are_framed_protobuf() {
        assert_eq!(grpc_health_request(""), [0, 0, 0, 0, 0]);
        let framed = grpc_health_request("test.Echo");
        assert_eq!(framed[..7], [0, 0, 0, 0, 11, 0x0a, 9]);
        assert_eq!(&framed[7..], b"test.Echo");
        let long = "s".repeat(200);
        let framed = grpc_health_request(&long);
        // 200 as a varint is two bytes: 0xc8 0x01.
        assert_eq!(framed[..8], [0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01]);
        assert_eq!(framed.len(), 5 + 203);
    }

    #[test]
    fn only_a_well_formed_serving_answer_is_healthy() {
        let frame = |message: &[u8]| {
            let mut framed = vec![0];
            framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
            framed.extend_from_slice(message);
            framed
        };
        assert!(grpc_health_serving(&frame(&[0x08, 0x01])));
        // Unknown fields before and after are skipped (varint, bytes, fixed64, fixed32).
        let padded = [
            0x10, 0x96, 0x01, 0x1a, 0x02, b'h', b'i', 0x08, 0x01, 0x21, 1, 2, 3, 4, 5, 6, 7, 8,
            0x2d, 1, 2, 3, 4,
        ];
        assert!(grpc_health_serving(&frame(&padded)));
        for (why, framed) in [
            ("NOT_SERVING", frame(&[0x08, 0x02])),
            ("UNKNOWN", frame(&[0x08, 0x00])),
            ("SERVICE_UNKNOWN", frame(&[0x08, 0x03])),
            ("no status", frame(&[])),
            ("truncated varint", frame(&[0x08, 0x81])),
            (
                "truncated bytes field",
                frame(&[0x1a, 0x05, b'x', 0x08, 0x01]),
            ),
            ("group wire type", frame(&[0x0b, 0x08, 0x01])),
            ("compressed", {
                let mut f = frame(&[0x08, 0x01]);
                f[0] = 1;
                f
            }),
            ("length beyond the body", {
                let mut f = frame(&[0x08, 0x01]);
                f[4] = 3;
                f
            }),
            (
                "two messages",
                [frame(&[0x08, 0x01]), frame(&[0x08, 0x01])].concat(),
            ),
            ("no frame", vec![0, 0, 0]),
        ] {
            assert!(!grpc_health_serving(&framed), "{why}: {framed:?}");
        }
        // The last value of a repeated field wins, as protobuf reads it.
        assert!(!grpc_health_serving(&frame(&[0x08, 0x01, 0x08, 0x02])));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any bytes an upstream answers: never a panic, and healthy only
        /// for one uncompressed frame whose length is the body's.
        #[test]
        fn any_health_answer_is_read_without_panic(
            framed in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            if grpc_health_serving(&framed) {
                proptest::prop_assert_eq!(framed[0], 0);
                let len = u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]);
                proptest::prop_assert_eq!(len as usize, framed.len() - 5);
            }
        }

        /// Unknown varint and length-delimited fields around the status are
        /// skipped: the answer is healthy exactly when the last status is 1.
        #[test]
        fn the_status_is_found_among_unknown_fields(
            before in proptest::collection::vec((2u64..40, proptest::prelude::any::<u32>()), 0..4),
            blob in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            status in 0u8..5,
        ) {
            let varint = |mut v: u64, out: &mut Vec<u8>| {
                while v >= 0x80 {
                    out.push((v as u8 & 0x7f) | 0x80);
                    v >>= 7;
                }
                out.push(v as u8);
            };
            let mut message = Vec::new();
            for (field, value) in &before {
                varint(field << 3, &mut message);
                varint(u64::from(*value), &mut message);
            }
            varint(1 << 3, &mut message);
            message.push(status);
            varint((41 << 3) | 2, &mut message);
            varint(blob.len() as u64, &mut message);
            message.extend_from_slice(&blob);
            let mut framed = vec![0];
            framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
            framed.extend_from_slice(&message);
            proptest::prop_assert_eq!(grpc_health_serving(&framed), status == 1);
        }
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
