//! Contract checks: what the README promises of every session-route answer.

use super::*;

/// What every answer of a session route carries: JSON, `Cache-Control: no-store`.
#[track_caller]
pub fn assert_session_answer(resp: &Response) {
    let cache = resp.header("cache-control").unwrap_or("");
    assert!(
        cache.to_ascii_lowercase().contains("no-store"),
        "answer {} lacks Cache-Control: no-store (got {cache:?}): {}",
        resp.status,
        resp.body
    );
    assert!(
        resp.header("x-request-id").is_some_and(|v| !v.is_empty()),
        "answer {} lacks X-Request-Id: {}",
        resp.status,
        resp.body
    );
    let content_type = resp.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "answer {} is not JSON (Content-Type {content_type:?}): {}",
        resp.status,
        resp.body
    );
}

/// A success answer of a session route: `status`, `success: true`.
#[track_caller]
pub fn expect_ok(resp: &Response, status: u16) -> Value {
    assert_eq!(
        resp.status, status,
        "expected {status}, got {}: {}",
        resp.status, resp.body
    );
    assert_session_answer(resp);
    let body = resp.json();
    assert_eq!(body["success"], true, "success flag: {body}");
    body
}

/// An error answer of the gateway: `status`, `success: false`, `error: code`
/// and a message.
#[track_caller]
pub fn expect_error(resp: &Response, status: u16, code: &str) -> Value {
    let seen_code = serde_json::from_str::<Value>(&resp.body)
        .ok()
        .and_then(|b| b["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "<none>".to_owned());
    assert_eq!(
        (resp.status, seen_code.as_str()),
        (status, code),
        "expected {status} `{code}`, got {}: {}",
        resp.status,
        resp.body
    );
    assert_session_answer(resp);
    let body = resp.json();
    assert_eq!(body["success"], false, "success flag: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error answer without a message: {body}"
    );
    body
}

/// A protected request with an access token of a revoked session:
/// `401 invalid_token` (reason `revoked`) at once.
#[track_caller]
pub fn expect_access_revoked(resp: &Response) {
    assert_eq!(
        resp.status, 401,
        "access token of a revoked session still accepted: {} {}",
        resp.status, resp.body
    );
    assert_eq!(resp.json()["error"], "invalid_token", "{}", resp.body);
    let challenge = resp.header("www-authenticate").unwrap_or("");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "WWW-Authenticate: {challenge:?}"
    );
}

/// The upstream's echo of a proxied request.
#[track_caller]
pub fn upstream_saw(resp: &Response) -> Value {
    assert_eq!(
        resp.status, 200,
        "expected the upstream's answer, got {}: {}",
        resp.status, resp.body
    );
    resp.json()
}

/// A 200 refresh answer in both seed shapes; returns the new tokens (the
/// refresh token is the rotated one, or the presented one without rotation).
#[track_caller]
pub fn expect_refreshed(resp: &Response, user: &Value) -> Tokens {
    let body = expect_ok(resp, 200);
    // Both seed services answer with this message (README leaves it open).
    assert_eq!(
        body["message"], "Access token refreshed successfully",
        "{body}"
    );
    let data = &body["data"];
    for field in [
        "accessToken",
        "refreshToken",
        "tokenType",
        "expiresIn",
        "user",
    ] {
        assert!(!data[field].is_null(), "data.{field} missing: {body}");
        assert_eq!(
            body[field], data[field],
            "flat `{field}` differs from data.{field}: {body}"
        );
    }
    assert_eq!(data["tokenType"], "Bearer", "{body}");
    assert_eq!(&data["user"], user, "{body}");
    let access = data["accessToken"].as_str().expect("string").to_owned();
    // `expiresIn` is the access token's lifetime in seconds: at most
    // `access_token_ttl`, less when the session ends sooner.
    let claims = claims_of(&access);
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(
        data["expiresIn"], lifetime,
        "expiresIn vs exp - iat: {body}"
    );
    assert!(lifetime <= ACCESS_TTL_SECS, "{body}");
    Tokens {
        access,
        refresh: data["refreshToken"].as_str().expect("string").to_owned(),
    }
}

/// [`expect_refreshed`] for a session far from its end: the access token
/// lives the full default `access_token_ttl`.
#[track_caller]
pub fn expect_refreshed_full_ttl(resp: &Response, user: &Value) -> Tokens {
    let tokens = expect_refreshed(resp, user);
    assert_eq!(
        resp.json()["expiresIn"],
        ACCESS_TTL_SECS,
        "default access_token_ttl is 15m: {}",
        resp.body
    );
    tokens
}

pub fn bob_user() -> Value {
    json!({"id": "u-2", "role": "patient", "email": BOB})
}

pub fn alice_user() -> Value {
    json!({"id": "u-1", "role": "admin", "email": ALICE})
}
