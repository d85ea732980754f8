//! TLS on the client side: the `listeners.tls` listener, its certificates
//! chosen by SNI, client certificates (mTLS), and certificate reload.
//!
//! The listener is built with pingora's rustls support (`TlsSettings`:
//! TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, rustls' default cipher
//! suites on aws-lc-rs), given two hooks that read the live
//! [`TlsMaterial`] at every handshake: a certificate resolver
//! (`ResolvesServerCert`, for SNI) and a client-certificate verifier. A
//! reload swaps the material ([`TlsEdge::install`]): new handshakes use the
//! new certificates and CA, open connections keep theirs.
//!
//! The handshake itself does not run in pingora's listener (which allows
//! 60 s, hides failures in its error log and runs before the app can count
//! the connection) but in the proxy app: the TLS port is a plain TCP
//! listener of the proxy service and [`TlsEdge::accept`] shakes hands once
//! `conn_guard` has given the connection a slot, within
//! `limits.header_read_timeout`, and counts every outcome in
//! `portcullis_tls_handshakes_total{result,version}`.

mod certificate;
mod client_auth;
mod expiry;
mod handshake;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora::listeners::tls::{Acceptor, TlsSettings};
use pingora::listeners::ALPN;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;

pub(crate) use certificate::{load_pair, name_covers, CertificateSet, ServedCertificate};
pub(crate) use client_auth::ClientAuthMode;
pub(crate) use client_auth::{client_auth, ClientAuth, ClientCertificate};

use crate::metrics::Metrics;
use client_auth::{ClientCertificateRecorder, LiveClientVerifier};
use expiry::CertificateExpiry;
use handshake::{HandshakeCounters, LiveCertificates};

/// Makes aws-lc-rs the process's rustls provider, before pingora would
/// install its own (ring) default when it builds a TLS config: handshakes
/// and the keys loaded by `certificate` then use one library. The first
/// install wins; calling this again does nothing.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// What the TLS listener serves, compiled from `listeners.tls` and swapped
/// whole on reload.
#[derive(Debug, Clone)]
pub(crate) struct TlsMaterial {
    /// The certificates, chosen by SNI.
    pub certificates: CertificateSet,
    /// Client certificates: `None` asks for none.
    pub client_auth: Option<ClientAuth>,
}

/// The running TLS listener's side of the proxy app: which connections are
/// TLS, the handshake, and the live material.
pub(crate) struct TlsEdge {
    /// `listeners.tls.listen`: connections to this port are TLS.
    listen: SocketAddr,
    material: Arc<ArcSwap<TlsMaterial>>,
    acceptor: Acceptor,
    handshakes: HandshakeCounters,
}

impl TlsEdge {
    /// The listener's TLS side with its first material; registers the
    /// certificate-expiry gauge with `metrics`.
    pub(crate) fn new(
        listen: SocketAddr,
        first: Arc<TlsMaterial>,
        metrics: &Metrics,
    ) -> Result<TlsEdge, String> {
        install_crypto_provider();
        let material = Arc::new(ArcSwap::new(first));
        let mut settings = TlsSettings::with_callbacks(Box::new(ClientCertificateRecorder))
            .map_err(|e| format!("TLS settings: {e}"))?;
        settings.set_cert_resolver(Arc::new(LiveCertificates::new(material.clone())));
        settings.set_client_cert_verifier(Arc::new(LiveClientVerifier::new(material.clone())));
        settings.set_alpn(ALPN::H2H1);
        let mut acceptor = settings.build();
        // Stateless session resumption: TLS 1.3 tickets and TLS 1.2 session
        // tickets sealed with keys rustls rotates every 6 hours, instead of
        // the default stateful cache of 256 sessions that a busy edge
        // overflows (each evicted client pays a full handshake again).
        let mut config = (**acceptor.acceptor.config()).clone();
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
            .map_err(|e| format!("TLS session tickets: {e}"))?;
        acceptor.acceptor = Arc::new(config).into();
        metrics
            .register(Box::new(CertificateExpiry::new(material.clone())))
            .map_err(|e| format!("cannot register the certificate-expiry gauge: {e}"))?;
        Ok(TlsEdge {
            listen,
            material,
            acceptor,
            handshakes: HandshakeCounters::new(metrics),
        })
    }

    /// The TLS listener's address.
    pub(crate) fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// Whether `stream` was accepted on the TLS listener (by its local port;
    /// the config refuses a TLS port equal to the plain one).
    pub(crate) fn serves(&self, stream: &Stream) -> bool {
        stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).map(|a| a.port()))
            == Some(self.listen.port())
    }

    /// Shakes hands on a freshly accepted TCP connection within `within`;
    /// `None` (the connection is closed) when that fails. Every outcome is
    /// counted; failures are logged at debug level only (scanners and
    /// clients that give up are everyday events at an edge).
    pub(crate) async fn accept(&self, stream: Stream, within: Duration) -> Option<Stream> {
        let l4 = match stream.into_any().downcast::<L4Stream>() {
            Ok(l4) => *l4,
            Err(_) => {
                tracing::error!("a TLS connection is not a TCP stream; closing it");
                return None;
            }
        };
        let peer = peer_of(&l4);
        match tokio::time::timeout(within, self.acceptor.tls_handshake(l4)).await {
            Err(_) => {
                self.handshakes.failed(handshake::TIMEOUT);
                tracing::debug!(
                    peer,
                    "TLS handshake not complete within limits.header_read_timeout"
                );
                None
            }
            Ok(Err(e)) => {
                let result = handshake::failure_result(&e);
                self.handshakes.failed(result);
                tracing::debug!(peer, result, error = %e, "TLS handshake failed");
                None
            }
            Ok(Ok(tls)) => {
                let stream: Stream = Box::new(tls);
                let version = stream.get_ssl_digest().map(|d| d.version.clone());
                self.handshakes.ok(version.as_deref().unwrap_or(""));
                Some(stream)
            }
        }
    }

    /// Serves `next` from the next handshake on (reload); connections that
    /// are open keep what they negotiated.
    pub(crate) fn install(&self, next: Arc<TlsMaterial>) {
        self.material.store(next);
    }
}

/// The client's address, for log lines.
fn peer_of(l4: &L4Stream) -> String {
    use pingora::protocols::GetSocketDigest;
    l4.get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied())
        .map(|a| a.to_string())
        .unwrap_or_default()
}
