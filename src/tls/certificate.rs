//! The certificates the TLS listener serves: PEM loading with a key check,
//! the names each one is chosen for, its expiry, and the choice by SNI.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

/// Why a certificate/key pair cannot be served. The message completes
/// "`<file>`: …"; [`PairError::in_key_file`] says which file it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PairError {
    /// The certificate file has no `CERTIFICATE` PEM block.
    #[error("no PEM certificate (`-----BEGIN CERTIFICATE-----`) in it")]
    NoCertificate,
    /// A `CERTIFICATE` block that is not valid PEM or DER.
    #[error("the certificate cannot be read: {0}")]
    Certificate(String),
    /// The key file has no private key PEM block.
    #[error("no PEM private key (`BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`) in it")]
    NoKey,
    /// A key of a type or size the TLS stack cannot sign with.
    #[error("the private key cannot be used: {0}")]
    Key(String),
    /// The key is not the certificate's.
    #[error("the private key does not belong to the certificate: their public keys differ; pair each certificate with its own key")]
    Mismatch,
}

impl PairError {
    /// The problem is in the key file (else in the certificate file).
    pub(crate) fn in_key_file(&self) -> bool {
        matches!(
            self,
            PairError::NoKey | PairError::Key(_) | PairError::Mismatch
        )
    }
}

/// What the listener needs to know of a leaf certificate besides its DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertificateInfo {
    /// DNS names of the subjectAltName extension, lower-case (`*.x` kept).
    pub dns_names: Vec<String>,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
}

/// A certificate chain with its signing key, ready to serve.
#[derive(Debug, Clone)]
pub(crate) struct ServedCertificate {
    /// The certificate file as written in the config: the `certificate`
    /// label of the expiry gauge and the name in log lines.
    pub label: String,
    /// Chain and key, as rustls serves them.
    pub key: Arc<CertifiedKey>,
    /// The names SNI selects this certificate for (lower-case, `*.x` allowed).
    pub names: Vec<String>,
    /// End of validity of the leaf, seconds since the Unix epoch.
    pub not_after: i64,
}

/// The provider whose key loader and signature algorithms the listener uses.
pub(crate) fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a PEM certificate chain (leaf first) and its PEM private key, and
/// checks that they belong together.
pub(crate) fn load_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Arc<CertifiedKey>, CertificateInfo), PairError> {
    let chain = read_chain(cert_pem)?;
    let info = chain
        .first()
        .map(|leaf| inspect(leaf))
        .ok_or(PairError::NoCertificate)??;
    let key = read_key(key_pem)?;
    let signing = crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| PairError::Key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(PairError::Mismatch)
        }
        Err(e) => return Err(PairError::Certificate(e.to_string())),
    }
    Ok((Arc::new(certified), info))
}

/// Every `CERTIFICATE` block of a PEM file, in order.
pub(crate) fn read_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PairError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PairError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(PairError::NoCertificate);
    }
    Ok(chain)
}

fn read_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, PairError> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(key),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => Err(PairError::NoKey),
        Err(e) => Err(PairError::Key(e.to_string())),
    }
}

/// Names and validity of a DER certificate.
pub(crate) fn inspect(der: &[u8]) -> Result<CertificateInfo, PairError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PairError::Certificate(e.to_string()))?;
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                dns_names.push(dns.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    Ok(CertificateInfo {
        dns_names,
        not_after: cert.validity().not_after.timestamp(),
        not_before: cert.validity().not_before.timestamp(),
    })
}

/// Whether the certificate name `pattern` (`api.example.com`, or
/// `*.example.com` for exactly one more label) covers `name`. Both are
/// compared ASCII case-insensitively; a wildcard name is covered by the
/// same wildcard.
pub(crate) fn name_covers(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.trim_end_matches('.'), name.trim_end_matches('.'));
    if pattern.eq_ignore_ascii_case(name) {
        return true;
    }
    let Some(parent) = pattern.strip_prefix("*.") else {
        return false;
    };
    match name.split_once('.') {
        Some((label, rest)) => {
            !label.is_empty() && label != "*" && rest.eq_ignore_ascii_case(parent)
        }
        None => false,
    }
}

/// The certificates of one listener and the choice by SNI.
#[derive(Debug, Clone)]
pub(crate) struct CertificateSet {
    /// The top-level certificate first, then `certificates` in order.
    certificates: Vec<ServedCertificate>,
    /// Exact names to an index of `certificates`.
    exact: HashMap<String, usize>,
    /// `*.example.com` as `example.com` to an index of `certificates`.
    wildcard: HashMap<String, usize>,
}

impl CertificateSet {
    /// The listener's certificates: `default` answers clients without SNI
    /// or with a name no certificate lists. A name listed by several
    /// certificates goes to the first of `extra` that lists it, then to
    /// `default`.
    pub(crate) fn new(default: ServedCertificate, extra: Vec<ServedCertificate>) -> CertificateSet {
        let mut certificates = Vec::with_capacity(extra.len() + 1);
        certificates.push(default);
        certificates.extend(extra);
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let order = (1..certificates.len()).chain(std::iter::once(0));
        for index in order {
            for name in &certificates[index].names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_owned()).or_insert(index),
                    None => exact.entry(name.clone()).or_insert(index),
                };
            }
        }
        CertificateSet {
            certificates,
            exact,
            wildcard,
        }
    }

    /// The certificate for a ClientHello's server name: an exact name
    /// first, then a wildcard one label up, else the default.
    pub(crate) fn select(&self, server_name: Option<&str>) -> &ServedCertificate {
        let index = server_name
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
            .and_then(|name| {
                self.exact.get(&name).copied().or_else(|| {
                    name.split_once('.')
                        .and_then(|(_, parent)| self.wildcard.get(parent).copied())
                })
            })
            .unwrap_or(0);
        &self.certificates[index]
    }

    /// Every certificate, the default first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &ServedCertificate> {
        self.certificates.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn served(label: &str, names: &[&str]) -> ServedCertificate {
        let (cert, key) = pair(&["x.invalid"]);
        let (key, info) = load_pair(cert.as_bytes(), key.as_bytes()).unwrap();
        ServedCertificate {
            label: label.into(),
            key,
            names: names.iter().map(|n| n.to_string()).collect(),
            not_after: info.not_after,
        }
    }

    #[test]
    fn a_matching_pair_loads_with_its_names() {
        let (cert, key) = pair(&["api.example.com", "*.apps.example.com"]);
        let (_, info) = load_pair(cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(info.dns_names, ["api.example.com", "*.apps.example.com"]);
        assert!(info.not_after > info.not_before);
    }

    #[test]
    fn a_key_of_another_certificate_is_a_mismatch_in_the_key_file() {
        let (cert, _) = pair(&["a.example.com"]);
        let (_, other_key) = pair(&["a.example.com"]);
        let err = load_pair(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert_eq!(err, PairError::Mismatch);
        assert!(err.in_key_file());
    }

    #[test]
    fn files_without_pem_blocks_say_what_is_missing() {
        let (cert, key) = pair(&["a.example.com"]);
        assert_eq!(
            load_pair(b"hello", key.as_bytes()).unwrap_err(),
            PairError::NoCertificate
        );
        assert_eq!(
            load_pair(cert.as_bytes(), cert.as_bytes()).unwrap_err(),
            PairError::NoKey
        );
    }

    #[test]
    fn wildcards_cover_exactly_one_label() {
        assert!(name_covers("*.example.com", "api.example.com"));
        assert!(name_covers("*.example.com", "API.Example.com."));
        assert!(name_covers("*.example.com", "*.example.com"));
        assert!(!name_covers("*.example.com", "example.com"));
        assert!(!name_covers("*.example.com", "a.b.example.com"));
        assert!(name_covers("api.example.com", "api.example.com"));
        assert!(!name_covers("api.example.com", "www.example.com"));
    }

    #[test]
    fn sni_prefers_exact_names_then_wildcards_then_the_default() {
        let set = CertificateSet::new(
            served("default.pem", &["example.com"]),
            vec![
                served("wild.pem", &["*.example.com"]),
                served("api.pem", &["api.example.com"]),
            ],
        );
        assert_eq!(set.select(Some("api.example.com")).label, "api.pem");
        assert_eq!(set.select(Some("WWW.example.com")).label, "wild.pem");
        assert_eq!(set.select(Some("example.com")).label, "default.pem");
        assert_eq!(set.select(Some("other.org")).label, "default.pem");
        assert_eq!(set.select(None).label, "default.pem");
    }

    #[test]
    fn a_name_listed_twice_goes_to_the_first_extra_certificate() {
        let set = CertificateSet::new(
            served("default.pem", &["api.example.com"]),
            vec![
                served("first.pem", &["api.example.com"]),
                served("second.pem", &["api.example.com"]),
            ],
        );
        assert_eq!(set.select(Some("api.example.com")).label, "first.pem");
    }
}
