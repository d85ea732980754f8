//! The handshake's hooks and outcomes: the certificate chosen by SNI from
//! the live material, and `portcullis_tls_handshakes_total{result,version}`.

use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus::IntCounter;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::AlertDescription;

use super::TlsMaterial;
use crate::metrics::{Metrics, TLS_HANDSHAKE_FAILURES, TLS_VERSIONS};

/// `result` of a handshake that did not finish within the deadline.
pub(super) const TIMEOUT: &str = "timeout";

/// The `version` label of failed handshakes (the version is not known).
const UNKNOWN_VERSION: &str = "unknown";

/// Picks the certificate for each ClientHello from the live material.
#[derive(Debug)]
pub(super) struct LiveCertificates {
    material: Arc<ArcSwap<TlsMaterial>>,
}

impl LiveCertificates {
    /// Reads `material` at every handshake.
    pub(super) fn new(material: Arc<ArcSwap<TlsMaterial>>) -> LiveCertificates {
        LiveCertificates { material }
    }
}

impl ResolvesServerCert for LiveCertificates {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let material = self.material.load();
        Some(
            material
                .certificates
                .select(client_hello.server_name())
                .key
                .clone(),
        )
    }
}

/// The handshake counters, one per label pair, resolved once.
pub(super) struct HandshakeCounters {
    ok_tls12: IntCounter,
    ok_tls13: IntCounter,
    ok_other: IntCounter,
    failures: Vec<(&'static str, IntCounter)>,
}

impl HandshakeCounters {
    /// The counters of `tls_handshakes_total` in `metrics`.
    pub(super) fn new(metrics: &Metrics) -> HandshakeCounters {
        let counter = |result: &str, version: &str| {
            metrics.tls_handshakes.with_label_values(&[result, version])
        };
        HandshakeCounters {
            ok_tls12: counter("ok", TLS_VERSIONS[0]),
            ok_tls13: counter("ok", TLS_VERSIONS[1]),
            ok_other: counter("ok", UNKNOWN_VERSION),
            failures: TLS_HANDSHAKE_FAILURES
                .iter()
                .map(|result| (*result, counter(result, UNKNOWN_VERSION)))
                .collect(),
        }
    }

    /// A completed handshake; `version` as rustls names it (`TLSv1_3`).
    pub(super) fn ok(&self, version: &str) {
        match version {
            "TLSv1_2" => &self.ok_tls12,
            "TLSv1_3" => &self.ok_tls13,
            _ => &self.ok_other,
        }
        .inc();
    }

    /// A failed handshake, by one of [`TLS_HANDSHAKE_FAILURES`].
    pub(super) fn failed(&self, result: &str) {
        if let Some((_, counter)) = self.failures.iter().find(|(r, _)| *r == result) {
            counter.inc();
        }
    }
}

/// Why a handshake failed, as a `result` label: the client's certificate
/// (missing though required, or not vouched for by the CA), the client
/// refusing ours, nothing in common (version, cipher suite, ALPN), or
/// anything else (not TLS, a client that went away).
///
/// pingora 0.9 keeps only the text of the rustls error (`explain_err`), so
/// the error is recognised by the texts rustls itself writes for each kind,
/// or by its type when a cause is kept.
pub(super) fn failure_result(e: &pingora::Error) -> &'static str {
    if let Some(tls) = rustls_error(e) {
        return result_of(tls);
    }
    let text = e.to_string();
    KINDS
        .iter()
        .find(|(_, error)| text.contains(&*kind_text(error)))
        .map(|(result, _)| *result)
        .unwrap_or("error")
}

/// The result label of a rustls error.
fn result_of(tls: &rustls::Error) -> &'static str {
    KINDS
        .iter()
        .find(|(_, kind)| same_kind(kind, tls))
        .map(|(result, _)| *result)
        .unwrap_or("error")
}

/// One representative error per kind; variants with a payload stand for
/// every payload.
const KINDS: &[(&str, rustls::Error)] = &[
    ("client_certificate", rustls::Error::NoCertificatesPresented),
    (
        "client_certificate",
        rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding),
    ),
    (
        "certificate_refused",
        rustls::Error::AlertReceived(AlertDescription::BadCertificate),
    ),
    (
        "certificate_refused",
        rustls::Error::AlertReceived(AlertDescription::UnsupportedCertificate),
    ),
    (
        "certificate_refused",
        rustls::Error::AlertReceived(AlertDescription::CertificateRevoked),
    ),
    (
        "certificate_refused",
        rustls::Error::AlertReceived(AlertDescription::CertificateExpired),
    ),
    (
        "certificate_refused",
        rustls::Error::AlertReceived(AlertDescription::CertificateUnknown),
    ),
    (
        "certificate_refused",
        rustls::Error::AlertReceived(AlertDescription::UnknownCA),
    ),
    (
        "incompatible",
        rustls::Error::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon),
    ),
    ("incompatible", rustls::Error::NoApplicationProtocol),
    (
        "incompatible",
        rustls::Error::AlertReceived(AlertDescription::ProtocolVersion),
    ),
    (
        "incompatible",
        rustls::Error::AlertReceived(AlertDescription::HandshakeFailure),
    ),
    (
        "incompatible",
        rustls::Error::AlertReceived(AlertDescription::InsufficientSecurity),
    ),
];

/// Whether `tls` is of the kind `representative` stands for.
fn same_kind(representative: &rustls::Error, tls: &rustls::Error) -> bool {
    use rustls::Error::*;
    match (representative, tls) {
        (InvalidCertificate(_), InvalidCertificate(_))
        | (PeerIncompatible(_), PeerIncompatible(_)) => true,
        (a, b) => a == b,
    }
}

/// The text that marks a kind in an error message: the whole message, or
/// for a variant with a payload the part before the payload
/// (`invalid peer certificate`, `peer is incompatible`).
fn kind_text(representative: &rustls::Error) -> String {
    let text = representative.to_string();
    match representative {
        rustls::Error::InvalidCertificate(_) | rustls::Error::PeerIncompatible(_) => text
            .split_once(':')
            .map(|(kind, _)| kind.to_owned())
            .unwrap_or(text),
        _ => text,
    }
}

/// The rustls error under a pingora handshake error, where the chain keeps
/// it (tokio-rustls wraps it in an `io::Error`).
fn rustls_error(e: &pingora::Error) -> Option<&rustls::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e.root_cause());
    while let Some(current) = cause {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls);
            }
        }
        cause = current.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::{ErrorType, OrErr};

    fn wrapped(tls: rustls::Error) -> pingora::Error {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        *Err::<(), _>(io)
            .or_err(ErrorType::TLSHandshakeFailure, "TLS accept() failed")
            .unwrap_err()
    }

    #[test]
    fn handshake_failures_are_told_apart_by_their_rustls_error() {
        assert_eq!(
            failure_result(&wrapped(rustls::Error::NoCertificatesPresented)),
            "client_certificate"
        );
        assert_eq!(
            failure_result(&wrapped(rustls::Error::AlertReceived(
                AlertDescription::UnknownCA
            ))),
            "certificate_refused"
        );
        assert_eq!(
            failure_result(&wrapped(rustls::Error::NoApplicationProtocol)),
            "incompatible"
        );
        assert_eq!(
            failure_result(&wrapped(rustls::Error::DecryptError)),
            "error"
        );
        // What pingora 0.9 hands over: the rustls error as text only.
        let explained = |tls: rustls::Error| {
            pingora::Error::explain(
                ErrorType::TLSHandshakeFailure,
                format!("tls connect error: {tls}"),
            )
        };
        assert_eq!(
            failure_result(&explained(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))),
            "client_certificate"
        );
        assert_eq!(
            failure_result(&explained(rustls::Error::NoCertificatesPresented)),
            "client_certificate"
        );
        assert_eq!(
            failure_result(&explained(rustls::Error::AlertReceived(
                AlertDescription::BadCertificate
            ))),
            "certificate_refused"
        );
        assert_eq!(
            failure_result(&explained(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::Tls12NotOffered
            ))),
            "incompatible"
        );
        assert_eq!(
            failure_result(&explained(rustls::Error::DecryptError)),
            "error"
        );
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        let e = Err::<(), _>(eof)
            .or_err(ErrorType::TLSHandshakeFailure, "x")
            .unwrap_err();
        assert_eq!(failure_result(&e), "error");
    }
}
