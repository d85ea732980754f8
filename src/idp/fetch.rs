//! Getting a JSON document from an identity provider: the discovery
//! document or a JWK Set. `https` only, except plain `http` to a loopback
//! address when the operator allowed it explicitly; a response-size cap; a
//! whole-exchange timeout; `Cache-Control: max-age` read from the answer.
//! It uses pingora's own HTTP client and TLS (rustls), so fetching keys adds
//! no second network stack to the gateway.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use serde_json::Value;

/// How documents are fetched from one issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Whole exchange: connect, request, answer.
    pub timeout: Duration,
    /// Largest answer body read.
    pub max_body: usize,
    /// Plain `http` to a loopback address (tests, a local IdP).
    pub allow_loopback_http: bool,
    /// The CAs trusted for the issuer's https (`ca_file`); `None`: the
    /// system's roots.
    pub ca: Option<TrustedCa>,
}

/// CA certificates to verify an identity provider's https with. Two are
/// equal when read from the same file content (so a reload with the same
/// file keeps the live key source).
#[derive(Clone)]
pub struct TrustedCa {
    /// The certificates, as pingora's connector takes them.
    pub certs: std::sync::Arc<pingora::protocols::tls::CaType>,
    /// SHA-256 of the PEM they were read from.
    pub digest: [u8; 32],
}

impl PartialEq for TrustedCa {
    fn eq(&self, other: &TrustedCa) -> bool {
        self.digest == other.digest
    }
}

impl Eq for TrustedCa {}

impl std::fmt::Debug for TrustedCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedCa")
            .field("certificates", &self.certs.len())
            .finish()
    }
}

impl Default for FetchPolicy {
    fn default() -> FetchPolicy {
        FetchPolicy {
            timeout: Duration::from_secs(5),
            max_body: 512 * 1024,
            allow_loopback_http: false,
            ca: None,
        }
    }
}

/// Why a document could not be fetched; the text names the URL's problem
/// or what the server did.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The URL cannot be used (scheme, host, plain http elsewhere than loopback).
    #[error("{0}")]
    Url(String),
    /// The host name resolved to no address.
    #[error("cannot resolve `{0}`")]
    Resolve(String),
    /// Connecting, TLS, or the exchange failed.
    #[error("{0}")]
    Transport(String),
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Not a 200 answer.
    #[error("answered HTTP {0}")]
    Status(u16),
    /// The body is larger than the cap.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    /// The body is not the JSON expected.
    #[error("the answer is not {0}")]
    NotJson(&'static str),
}

/// A fetched JSON document and the freshness its server gave it.
#[derive(Debug)]
pub struct Fetched {
    /// The document.
    pub json: Value,
    /// `Cache-Control: max-age`, when the server sent one.
    pub max_age: Option<Duration>,
}

/// Where to connect for `url`, checked against `policy`.
struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn target(url: &str, policy: &FetchPolicy) -> Result<Target, FetchError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| FetchError::Url(format!("`{url}` is not a URL")))?;
    let host = uri
        .host()
        .ok_or_else(|| FetchError::Url(format!("`{url}` has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") if policy.allow_loopback_http && is_loopback(&host) => false,
        Some("http") => {
            return Err(FetchError::Url(format!(
                "`{url}` is plain http: keys are fetched over https only (plain http only to a loopback address with `allow_http: loopback`)"
            )))
        }
        _ => return Err(FetchError::Url(format!("`{url}` is not an https URL"))),
    };
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    Ok(Target {
        tls,
        host,
        port,
        path,
    })
}

/// Whether `url` may be fetched under `policy` (checked at load, so a
/// plain-http or malformed URL is a config error, not a runtime one).
pub fn check_url(url: &str, policy: &FetchPolicy) -> Result<(), FetchError> {
    target(url, policy).map(|_| ())
}

/// `localhost` or an address in 127.0.0.0/8 or `::1`.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `GET url`, expecting 200 and a JSON body no larger than the cap.
pub async fn fetch_json(
    connector: &Connector,
    url: &str,
    policy: &FetchPolicy,
) -> Result<Fetched, FetchError> {
    let t = target(url, policy)?;
    match tokio::time::timeout(policy.timeout, exchange(connector, &t, policy)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout(policy.timeout)),
    }
}

async fn exchange(
    connector: &Connector,
    t: &Target,
    policy: &FetchPolicy,
) -> Result<Fetched, FetchError> {
    let addr: SocketAddr = tokio::net::lookup_host((t.host.as_str(), t.port))
        .await
        .map_err(|_| FetchError::Resolve(t.host.clone()))?
        .next()
        .ok_or_else(|| FetchError::Resolve(t.host.clone()))?;
    let mut peer = HttpPeer::new(addr, t.tls, t.host.clone());
    peer.options.connection_timeout = Some(policy.timeout);
    peer.options.read_timeout = Some(policy.timeout);
    if let Some(ca) = &policy.ca {
        peer.options.ca = Some(ca.certs.clone());
    }
    let transport = |e: pingora::BError| FetchError::Transport(e.to_string());
    let (mut http, _) = connector.get_http_session(&peer).await.map_err(transport)?;
    let mut request = RequestHeader::build("GET", t.path.as_bytes(), None).map_err(transport)?;
    let authority = if (t.tls && t.port == 443) || (!t.tls && t.port == 80) {
        t.host.clone()
    } else {
        format!("{}:{}", t.host, t.port)
    };
    request
        .insert_header(http::header::HOST, authority)
        .map_err(transport)?;
    request
        .insert_header(http::header::ACCEPT, "application/json")
        .map_err(transport)?;
    request
        .insert_header(http::header::USER_AGENT, "portcullis")
        .map_err(transport)?;
    http.write_request_header(Box::new(request))
        .await
        .map_err(transport)?;
    http.finish_request_body().await.map_err(transport)?;
    http.read_response_header().await.map_err(transport)?;
    let header = http
        .response_header()
        .cloned()
        .ok_or_else(|| FetchError::Transport("no answer".into()))?;
    if header.status != 200 {
        return Err(FetchError::Status(header.status.as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = http.read_response_body().await.map_err(transport)? {
        if body.len() + chunk.len() > policy.max_body {
            return Err(FetchError::TooLarge(policy.max_body));
        }
        body.extend_from_slice(&chunk);
    }
    // Not pooled: fetches are rare, and come from more than one runtime.
    drop(http);
    let json: Value =
        serde_json::from_slice(&body).map_err(|_| FetchError::NotJson("a JSON document"))?;
    let max_age = header
        .headers
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    Ok(Fetched { json, max_age })
}

/// `max-age=N` of a `Cache-Control` value (`no-store`/`no-cache` read as 0).
fn max_age(value: &str) -> Option<Duration> {
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            age = n
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_explicit_loopback_http_is_fetched() {
        let strict = FetchPolicy::default();
        let loopback = FetchPolicy {
            allow_loopback_http: true,
            ..FetchPolicy::default()
        };
        assert!(target("https://idp.example/jwks", &strict).is_ok());
        assert!(target("http://127.0.0.1:8080/jwks", &strict).is_err());
        assert!(target("http://127.0.0.1:8080/jwks", &loopback).is_ok());
        assert!(target("http://[::1]:8080/jwks", &loopback).is_ok());
        assert!(target("http://idp.example/jwks", &loopback).is_err());
        assert!(target("ftp://idp.example/jwks", &loopback).is_err());
        let t = target("https://idp.example/realms/x/certs?a=1", &strict).expect("ok");
        assert_eq!((t.port, t.path.as_str()), (443, "/realms/x/certs?a=1"));
    }

    #[test]
    fn cache_control_max_age_is_read() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
    }
}
