//! Client certificates (mTLS): the CA that vouches for them, whether one is
//! required, and what a verified one tells routes and plugins — its SHA-256
//! thumbprint (RFC 8705 `x5t#S256`) and subject.

use std::any::Any;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use base64::Engine as _;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::Digest;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::certificate::{crypto_provider, read_chain};
use super::TlsMaterial;

/// `listeners.tls.client_auth.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ClientAuthMode {
    /// A handshake without a certificate the CA vouches for fails.
    #[default]
    Required,
    /// A client may connect without a certificate; one it sends must be
    /// vouched for by the CA. Routes decide (`require_client_cert`).
    Optional,
}

/// The compiled `client_auth` section: who vouches for client certificates.
#[derive(Debug, Clone)]
pub(crate) struct ClientAuth {
    /// Whether a certificate is required at the handshake.
    pub mode: ClientAuthMode,
    /// Chain verification against `ca_file`.
    pub verifier: Arc<dyn ClientCertVerifier>,
}

/// Builds the verifier for client certificates signed by the CAs of the PEM
/// file `ca_pem`. The message of an error completes "`<ca_file>`: …".
pub(crate) fn client_auth(ca_pem: &[u8], mode: ClientAuthMode) -> Result<ClientAuth, String> {
    let cas = read_chain(ca_pem).map_err(|e| e.to_string())?;
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| format!("a certificate in it cannot be a trust anchor: {e}"))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto_provider());
    let builder = match mode {
        ClientAuthMode::Required => builder,
        ClientAuthMode::Optional => builder.allow_unauthenticated(),
    };
    let verifier = builder
        .build()
        .map_err(|e| format!("the client-certificate verifier cannot be built: {e}"))?;
    Ok(ClientAuth { mode, verifier })
}

/// The verified client certificate of a connection, as routes, plugins and
/// logs see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientCertificate {
    /// SHA-256 of the DER certificate, base64url without padding: the
    /// RFC 8705 `x5t#S256` confirmation value.
    pub sha256: String,
    /// The subject distinguished name, e.g. `CN=alice, O=Example`.
    pub subject: String,
}

impl ClientCertificate {
    /// Thumbprint and subject of a DER certificate (the subject is empty
    /// when the certificate cannot be parsed; rustls verified it already).
    pub(crate) fn from_der(der: &[u8]) -> ClientCertificate {
        let sha256 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(der));
        let subject = x509_parser::parse_x509_certificate(der)
            .map(|(_, cert)| cert.subject().to_string())
            .unwrap_or_default();
        ClientCertificate { sha256, subject }
    }

    /// The client certificate of the connection a request came on, if it
    /// sent one (put there by [`ClientCertificateRecorder`]).
    pub(crate) fn of_connection(digest: Option<&Digest>) -> Option<Arc<ClientCertificate>> {
        digest?
            .ssl_digest
            .as_ref()?
            .extension
            .get::<Arc<ClientCertificate>>()
            .cloned()
    }
}

/// Records the verified client certificate on the connection once its
/// handshake is complete, where every request of the connection (HTTP/1
/// or HTTP/2) finds it in its session digest.
pub(crate) struct ClientCertificateRecorder;

#[async_trait]
impl TlsAccept for ClientCertificateRecorder {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let der = tls.peer_certificate_der()?;
        Some(Arc::new(Arc::new(ClientCertificate::from_der(der))))
    }
}

/// The client-certificate verifier the listener is built with: it asks the
/// live [`TlsMaterial`] on every handshake, so a reload can change the CA
/// and the mode (or add or drop `client_auth`) without a restart.
#[derive(Debug)]
pub(crate) struct LiveClientVerifier {
    material: Arc<ArcSwap<TlsMaterial>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl LiveClientVerifier {
    /// Reads `material` at every handshake.
    pub(crate) fn new(material: Arc<ArcSwap<TlsMaterial>>) -> LiveClientVerifier {
        LiveClientVerifier {
            material,
            provider: crypto_provider(),
        }
    }
}

impl ClientCertVerifier for LiveClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.material.load().client_auth.is_some()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.material
            .load()
            .client_auth
            .as_ref()
            .is_some_and(|a| a.mode == ClientAuthMode::Required)
    }

    /// No hints: the CAs change with a reload and this answer borrows from
    /// the verifier. An empty list tells a client to send any certificate
    /// it has (RFC 8446 §4.2.4).
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match &self.material.load().client_auth {
            Some(auth) => auth
                .verifier
                .verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::General(
                "client certificates are no longer configured".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thumbprint_is_the_base64url_sha256_of_the_der() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let cert = params.self_signed(&key).unwrap();
        let seen = ClientCertificate::from_der(cert.der());
        let want = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(cert.der().as_ref()));
        assert_eq!(seen.sha256, want);
        assert_eq!(seen.sha256.len(), 43);
        assert_eq!(seen.subject, "CN=alice");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let err = client_auth(b"nothing here", ClientAuthMode::Required).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
