//! Tokens and metrics: reading JWTs, refresh tokens and cookies, and waiting
//! for metrics.

use super::*;

fn b64_json(part: &str) -> Value {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("not base64url ({e}): {part}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {part}"))
}

/// The (unverified) claims of a JWT.
#[track_caller]
pub fn claims_of(jwt: &str) -> Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {jwt}");
    b64_json(parts[1])
}

#[track_caller]
pub fn header_of(jwt: &str) -> Value {
    b64_json(jwt.split('.').next().expect("a header"))
}

#[track_caller]
pub fn sid_of(access: &str) -> String {
    claims_of(access)["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("access token without sid: {}", claims_of(access)))
        .to_owned()
}

/// Verifies an access token the way a third party would: signature, `iss`, `aud`.
#[track_caller]
pub fn verify_access(
    jwt: &str,
    key: &jsonwebtoken::DecodingKey,
    alg: jsonwebtoken::Algorithm,
) -> Value {
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.set_issuer(&["test-issuer"]);
    validation.set_audience(&["test-aud"]);
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(jwt, key, &validation)
        .unwrap_or_else(|e| panic!("access token does not verify ({e}): {}", claims_of(jwt)))
        .claims
}

pub fn metric_now(gw: &Gateway, name: &str, labels: &str) -> f64 {
    metric(&gw.metrics(), name, labels)
}

/// Waits until a sample reaches `want` (metrics may be recorded just after
/// the answer is sent), then asserts it is exactly `want`.
#[track_caller]
pub fn expect_metric(gw: &Gateway, name: &str, labels: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = metric_now(gw, name, labels);
    while seen != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        seen = metric_now(gw, name, labels);
    }
    assert_eq!(seen, want, "metric {name}{{{labels}}}");
}

pub const REFRESH_TOTAL: &str = "portcullis_auth_refresh_total";
pub const LOGOUT_TOTAL: &str = "portcullis_auth_logout_total";
pub const CREATED_TOTAL: &str = "portcullis_sessions_created_total";
pub const REVOKED_TOTAL: &str = "portcullis_sessions_revoked_total";
pub const REUSE_TOTAL: &str = "portcullis_refresh_token_reuse_detected_total";
pub const JWT_TOTAL: &str = "portcullis_jwt_validations_total";
pub const REVOKED_ON_API: &str = r#"reason="revoked",result="fail",route="api""#;

/// Polls `attempt` every `every` until it yields a value or `within` runs
/// out (then panics naming `what`).
#[track_caller]
pub fn poll<T>(
    what: &str,
    within: Duration,
    every: Duration,
    mut attempt: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

/// A refresh token as the README describes it: opaque, base64url (parts
/// may be joined by `.`, e.g. random part and HMAC tag), with at least 256
/// random bits (43 base64url characters) in its first part.
#[track_caller]
pub fn assert_opaque_refresh_token(token: &str) {
    let base64url = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    assert!(
        token.split('.').all(base64url) && token.split('.').next().is_some_and(|p| p.len() >= 43),
        "refresh token is not opaque base64url with 256 random bits: {token}"
    );
}

/// `token` with one character in the middle changed (still base64url).
pub fn tampered(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let mut i = bytes.len() / 2;
    if bytes[i] == b'.' {
        i -= 1;
    }
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ascii")
}

/// The `Set-Cookie` value for `name` (the whole header line), if any.
pub fn set_cookie<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .find(|v| v.trim_start().starts_with(&format!("{name}=")))
}

/// A cookie's value and its attributes (names lower-cased).
pub fn parse_cookie(line: &str) -> (String, Vec<(String, String)>) {
    let mut parts = line.split(';').map(str::trim);
    let value = parts
        .next()
        .and_then(|p| p.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    let attributes = parts
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_owned()),
            None => (p.to_ascii_lowercase(), String::new()),
        })
        .collect();
    (value, attributes)
}

pub fn attribute<'a>(attributes: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
