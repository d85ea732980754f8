//! `upstreams.*.tls`: the server name, the CA and the client certificate,
//! read and checked once per config generation (a reload reads the files
//! again), so a handshake never meets a file it cannot use.
//!
//! pingora's connector trusts its input: it panics on a certificate that
//! does not parse as X.509 and on a key it cannot rebuild from DER. Every
//! such case is refused here, at `file:line:col`, instead.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use pingora::tls::{
    sign, CertificateDer, CryptoProvider, PrivateKeyDer, RootCertStore, ServerName,
};
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};
use rustls_pki_types::pem::PemObject;
use serde_saphyr::Spanned;

use super::super::Checker;
use crate::config::defaults;
use crate::config::raw::{RawUpstream, RawUpstreamTls};
use crate::upstream::{Target, UpstreamProtocol, UpstreamTls};

/// The pool's TLS settings: `Some(None)` for plain TCP, `None` when the
/// section has errors (reported on `ck`).
pub(super) fn compile_upstream_tls(
    ck: &mut Checker,
    name: &str,
    up: &RawUpstream,
    protocol: UpstreamProtocol,
    targets: &[Target],
) -> Option<Option<UpstreamTls>> {
    let implied = RawUpstreamTls::default();
    let raw = match (&up.tls, protocol) {
        (Some(tls), UpstreamProtocol::H2c) => {
            ck.at(
                tls,
                format!("upstream `{name}` has `protocol: h2c` (HTTP/2 in plain text) and a `tls` section: use `protocol: h2` for HTTP/2 over TLS, or remove `tls`"),
            );
            return None;
        }
        (Some(tls), _) => &tls.value,
        // HTTP/2 over TLS: the defaults (system roots, verified, SNI from the target).
        (None, UpstreamProtocol::H2) => &implied,
        (None, _) => return Some(None),
    };
    let mut ok = true;
    let verify = raw
        .verify
        .as_ref()
        .map(|v| v.value)
        .unwrap_or(defaults::UPSTREAM_TLS_VERIFY);

    let sni = match &raw.sni {
        Some(sni) => {
            if sni.value.is_empty() || ServerName::try_from(sni.value.as_str()).is_err() {
                ck.at(
                    sni,
                    format!(
                        "upstream `{name}`: `tls.sni` `{}` is not a DNS name or an IP address",
                        sni.value
                    ),
                );
                ok = false;
            }
            Some(sni.value.clone())
        }
        None => {
            for (target, written) in targets.iter().zip(&up.targets.value) {
                if ServerName::try_from(target.host.as_str()).is_err() {
                    ck.at(
                        written,
                        format!(
                            "upstream `{name}`: target host `{}` is not a valid TLS server name: set `tls.sni` to the name its certificate is for",
                            target.host
                        ),
                    );
                    ok = false;
                }
            }
            None
        }
    };

    let ca = match &raw.ca_file {
        Some(file) => {
            if !verify {
                ck.warn_at(
                    file,
                    format!("upstream `{name}`: `tls.verify: false` checks no certificate, so `ca_file` is not used"),
                );
            }
            let ca = load_ca(ck, &format!("upstream `{name}` CA file"), file);
            ok &= ca.is_some();
            ca
        }
        None => None,
    };

    let client_cert = match (&raw.client_cert_file, &raw.client_key_file) {
        (Some(cert), Some(key)) => {
            let pair = load_client_cert(ck, name, cert, key);
            ok &= pair.is_some();
            pair
        }
        (Some(cert), None) => {
            ck.at(
                cert,
                format!("upstream `{name}`: `tls.client_cert_file` needs `tls.client_key_file` (its private key)"),
            );
            ok = false;
            None
        }
        (None, Some(key)) => {
            ck.at(
                key,
                format!("upstream `{name}`: `tls.client_key_file` needs `tls.client_cert_file` (the certificate it belongs to)"),
            );
            ok = false;
            None
        }
        (None, None) => None,
    };

    if !ok {
        return None;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    verify.hash(&mut hasher);
    if let Some(ca) = &ca {
        for cert in ca.iter() {
            cert.borrow_raw_cert().hash(&mut hasher);
        }
    }
    Some(Some(UpstreamTls {
        sni,
        verify,
        ca,
        client_cert,
        group_key: hasher.finish(),
    }))
}

/// The CA certificates of `ca_file`, each usable as a trust anchor; `what`
/// names the file in messages (e.g. "upstream `api` CA file").
pub(in crate::config) fn load_ca(
    ck: &mut Checker,
    what: &str,
    file: &Spanned<String>,
) -> Option<Arc<pingora::protocols::tls::CaType>> {
    let pem = ck.read_file(file, what)?;
    let certs = match certificates(&pem) {
        Ok(certs) if !certs.is_empty() => certs,
        Ok(_) => {
            ck.at(
                file,
                format!(
                    "{what} `{}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                    file.value
                ),
            );
            return None;
        }
        Err(why) => {
            ck.at(file, format!("{what} `{}` {why}", file.value));
            return None;
        }
    };
    let mut store = RootCertStore::empty();
    for (i, der) in certs.iter().enumerate() {
        if let Err(e) = store.add(CertificateDer::from(der.as_slice())) {
            ck.at(
                file,
                format!(
                    "{what} `{}`: certificate {} cannot be a trust anchor: {e}",
                    file.value,
                    i + 1
                ),
            );
            return None;
        }
        if let Some(expired) = expired_on(der) {
            ck.warn_at(
                file,
                format!(
                    "{what} `{}`: certificate {} expired on {expired}; nothing it signed verifies",
                    file.value,
                    i + 1
                ),
            );
        }
    }
    let wrapped: Vec<WrappedX509> = certs
        .into_iter()
        .map(|der| WrappedX509::new(der, parse_x509))
        .collect();
    Some(Arc::from(wrapped))
}

/// The client certificate chain with its key, checked to belong together.
fn load_client_cert(
    ck: &mut Checker,
    name: &str,
    cert_file: &Spanned<String>,
    key_file: &Spanned<String>,
) -> Option<Arc<CertKey>> {
    let cert_what = format!("upstream `{name}` client certificate");
    let key_what = format!("upstream `{name}` client key");
    let cert_pem = ck.read_file(cert_file, &cert_what);
    let key_pem = ck.read_file(key_file, &key_what);
    let (cert_pem, key_pem) = (cert_pem?, key_pem?);
    let chain = match certificates(&cert_pem) {
        Ok(chain) if !chain.is_empty() => chain,
        Ok(_) => {
            ck.at(
                cert_file,
                format!(
                    "{cert_what} `{}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                    cert_file.value
                ),
            );
            return None;
        }
        Err(why) => {
            ck.at(
                cert_file,
                format!("{cert_what} `{}` {why}", cert_file.value),
            );
            return None;
        }
    };
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(e) => {
            ck.at(
                key_file,
                format!(
                    "{key_what} `{}` holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
                    key_file.value
                ),
            );
            return None;
        }
    };
    // pingora rebuilds the key from these bytes on every handshake.
    if PrivateKeyDer::try_from(key.secret_der().to_vec()).is_err() {
        ck.at(
            key_file,
            format!(
                "{key_what} `{}` is not a key the TLS library can read",
                key_file.value
            ),
        );
        return None;
    }
    pingora::tls::install_default_crypto_provider();
    let Some(provider) = CryptoProvider::get_default() else {
        ck.at(key_file, "no TLS crypto provider is installed (a bug)");
        return None;
    };
    let chain_der: Vec<CertificateDer<'static>> = chain
        .iter()
        .map(|der| CertificateDer::from(der.clone()))
        .collect();
    if let Err(e) = sign::CertifiedKey::from_der(chain_der, key.clone_key(), provider) {
        ck.at(
            key_file,
            format!(
                "{key_what} `{}` does not fit the certificate in `{}`: {e}",
                key_file.value, cert_file.value
            ),
        );
        return None;
    }
    if let Some(expired) = expired_on(&chain[0]) {
        ck.at(
            cert_file,
            format!(
                "{cert_what} `{}` expired on {expired}: the targets would refuse it; renew it",
                cert_file.value
            ),
        );
        return None;
    }
    if let Some(expires) = expires_soon(&chain[0]) {
        ck.warn_at(
            cert_file,
            format!(
                "{cert_what} `{}` expires on {expires}: renew it before then",
                cert_file.value
            ),
        );
    }
    Some(Arc::new(CertKey::new(chain, key.secret_der().to_vec())))
}

/// The DER certificates of a PEM file, each checked to parse as X.509.
pub(in crate::config::compile) fn certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut certs = Vec::new();
    for (i, item) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let der = item.map_err(|e| format!("is not valid PEM: {e}"))?;
        if let Err(e) = x509_parser::parse_x509_certificate(&der) {
            return Err(format!(
                "holds a certificate ({}) that is not valid X.509: {e}",
                i + 1
            ));
        }
        certs.push(der.to_vec());
    }
    Ok(certs)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The certificate's `notAfter` when it is already past.
fn expired_on(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let not_after = cert.validity().not_after;
    (not_after.timestamp() < now_unix()).then(|| not_after.to_string())
}

/// The certificate's `notAfter` when it is within
/// [`defaults::CERT_EXPIRY_WARNING`] (and not yet past).
fn expires_soon(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let not_after = cert.validity().not_after;
    let left = not_after.timestamp() - now_unix();
    (left >= 0 && left < defaults::CERT_EXPIRY_WARNING.as_secs() as i64)
        .then(|| not_after.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_file_of_garbage_is_refused_without_a_panic() {
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(certificates(garbage).is_err());
        assert_eq!(certificates(b"not pem at all"), Ok(Vec::new()));
    }

    #[test]
    fn a_generated_certificate_parses_and_is_not_expired() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let certs = certificates(cert.pem().as_bytes()).expect("parses");
        assert_eq!(certs.len(), 1);
        assert_eq!(expired_on(&certs[0]), None);
    }
}
