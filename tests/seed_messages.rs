//! The `message` of every session-route answer, word for word as the seed
//! services sent it. Their client apps show `message` to users, so a client
//! pointed at Portcullis must read the same text (DESIGN: "clients written
//! against either of them must keep working unchanged").
//!
//! Route family by route family:
//! - seed 000 (`shared/seeds/000_1c5065efb2daa802.txt`, "Token Management"):
//!   `POST /refresh`, `POST /logout` with a refresh token, `/logout-all`,
//!   `GET /sessions`, `DELETE /sessions/{id}`;
//! - seed 003 (`shared/seeds/003_5ce8c609eab3cd3e.txt`, CareFlow):
//!   `POST /refresh-token` and `POST /logout` with a bearer access token.
//!
//! Where a seed words no message for a case, the gateway keeps its own; those
//! cases are pinned here too, so a change to them is a deliberate one. Each
//! expectation quotes the seed text it comes from.
//!
//! A real `portcullis` process, the demo backend as the login upstream and a
//! SQLite store in a temp dir; every wait polls with a deadline.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const REFRESH_SECRET: &str = "refresh-secret-0123456789-0123456789-abcdef";
const BOB: &str = "bob@example.com";
const ALICE: &str = "alice@example.com";
const PASSWORD: &str = "password123";

// ---------------------------------------------------------------------------
// World
// ---------------------------------------------------------------------------

/// A gateway with sessions on a SQLite file, logins intercepted on the demo
/// backend, everything else under `/api` behind an access token.
struct Env {
    gw: Gateway,
    _backend: Backend,
    _store: tempfile::TempDir,
}

impl Env {
    fn start() -> Env {
        Env::with_sessions("")
    }

    /// `extra`: more lines inside `sessions:` (two-space indented).
    fn with_sessions(extra: &str) -> Env {
        let backend = Backend::start("app");
        let store = tempfile::tempdir().expect("temp dir");
        let template = format!(
            r#"listeners:
  proxy: "{{PROXY}}"
  admin: "{{ADMIN}}"
  threads: 2
  grace_period: 0s
jwt:
  issuer: test-issuer
  audience: [test-aud]
  leeway: 0s
  keys:
    - kid: hs
      algorithms: [HS256]
      secret: "{{SECRET}}"
      sign: true
upstreams:
  main:
    targets: ["{backend}"]
routes:
  - name: login
    match: {{ path: /api/auth/login, methods: [POST] }}
    upstream: main
    auth: none
    login:
      subject: /user/id
      claims: {{ role: /user/role, email: /user/email }}
      device_info: /deviceInfo
  - name: api
    match: {{ path_prefix: /api }}
    upstream: main
    auth: required
sessions:
  store: "sqlite:{db}"
  refresh_secret: "{REFRESH_SECRET}"
  rate_limit: {{ per_ip: 100000, per_token: 100000, window: 1m }}
{extra}"#,
            backend = backend.addr(),
            db = store.path().join("s.db").display(),
        );
        Env {
            gw: Gateway::start(&template),
            _backend: backend,
            _store: store,
        }
    }

    fn port(&self) -> u16 {
        self.gw.port
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- gateway log ---\n{}", self.gw.proc.log_text());
        }
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// An access and a refresh token, as a client holds them after login.
struct Tokens {
    access: String,
    refresh: String,
}

#[track_caller]
fn login(port: u16, email: &str) -> Tokens {
    let body = json!({ "email": email, "password": PASSWORD }).to_string();
    let resp = request(port, "POST", "/api/auth/login", &[], Some(&body));
    assert_eq!(resp.status, 200, "login: {}", resp.body);
    let body = resp.json();
    let field = |name: &str| {
        body[name]
            .as_str()
            .unwrap_or_else(|| panic!("login answer lacks {name}: {body}"))
            .to_owned()
    };
    Tokens {
        access: field("accessToken"),
        refresh: field("refreshToken"),
    }
}

/// `POST path` with `{"refreshToken": token}`.
fn post_refresh_token(port: u16, path: &str, token: &str) -> Response {
    let body = json!({ "refreshToken": token }).to_string();
    request(port, "POST", path, &[], Some(&body))
}

/// `method path` with `Authorization: Bearer <token>` and no body.
fn with_bearer(port: u16, method: &str, path: &str, token: &str) -> Response {
    let authorization = format!("Bearer {token}");
    request(
        port,
        method,
        path,
        &[("Authorization", &authorization)],
        None,
    )
}

/// The `sid` claim of an access token (the session id).
#[track_caller]
fn session_id(access: &str) -> String {
    use base64::Engine as _;
    let payload = access.split('.').nth(1).expect("a JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    let claims: Value = serde_json::from_slice(&bytes).expect("JSON claims");
    claims["sid"].as_str().expect("a sid claim").to_owned()
}

/// `access` re-signed with `secret` and, when `expired`, `exp` half an hour
/// in the past.
fn resigned(access: &str, secret: &str, expired: bool) -> String {
    use base64::Engine as _;
    let payload = access.split('.').nth(1).expect("a JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    let mut claims: Value = serde_json::from_slice(&bytes).expect("JSON claims");
    if expired {
        claims["iat"] = json!(now() - 3600);
        claims["exp"] = json!(now() - 1800);
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("hs".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// A refresh token in the gateway's format under its secret that was never
/// stored: it passes the tag check and is not found.
fn never_stored_refresh_token() -> String {
    portcullis::session::refresh_token::RefreshTokens::new(REFRESH_SECRET.as_bytes().to_vec())
        .mint()
        .0
}

/// Refreshes at `path` until the session's lifetime is over; the refusal.
fn refresh_until_refused(port: u16, path: &str, token: &str) -> Response {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = post_refresh_token(port, path, token);
        if resp.status != 200 || Instant::now() >= deadline {
            return resp;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------
// Expectations
// ---------------------------------------------------------------------------

/// An error answer: `status`, `success: false`, exactly `message` and the
/// machine-readable `error` code.
#[track_caller]
fn expect_error(resp: &Response, status: u16, code: &str, message: &str) {
    assert_eq!(
        resp.status, status,
        "expected {status} {message:?}, got {}: {}",
        resp.status, resp.body
    );
    let body = resp.json();
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["message"], message, "{body}");
    assert_eq!(body["error"], code, "{body}");
}

/// A success answer: `status`, `success: true`, exactly `message`.
#[track_caller]
fn expect_ok(resp: &Response, status: u16, message: &str) -> Value {
    assert_eq!(
        resp.status, status,
        "expected {status} {message:?}, got {}: {}",
        resp.status, resp.body
    );
    let body = resp.json();
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["message"], message, "{body}");
    body
}

// ---------------------------------------------------------------------------
// Seed 000: POST /refresh
// ---------------------------------------------------------------------------

#[test]
fn refresh_with_a_valid_token_answers_seed_000_success_message() {
    let env = Env::start();
    let bob = login(env.port(), BOB);
    let resp = post_refresh_token(env.port(), "/api/auth/refresh", &bob.refresh);
    // Seed 000, refresh controller: `res.status(200).json({ success: true,
    // message: "Access token refreshed successfully", ... })`.
    let body = expect_ok(&resp, 200, "Access token refreshed successfully");
    assert!(body["data"]["accessToken"].is_string(), "{body}");
}

#[test]
fn refresh_without_token_keeps_the_gateway_message_as_seed_000_words_none() {
    let env = Env::start();
    let resp = request(env.port(), "POST", "/api/auth/refresh", &[], Some("{}"));
    // Seed 000 guards `/refresh` with `validateRequest(refreshTokenSchema)`,
    // whose message is not in the seed text: the gateway's own stays (the
    // words seed 003 uses: "// Missing refresh token { "message": "Refresh
    // token is required" }").
    expect_error(
        &resp,
        400,
        "refresh_token_required",
        "Refresh token is required",
    );
}

#[test]
fn refresh_with_a_forged_token_answers_seed_000_invalid_or_expired_message() {
    let env = Env::start();
    let bob = login(env.port(), BOB);
    for forged in [
        "not-a-real-token".to_owned(),
        format!("{}x", bob.refresh),
        bob.access.clone(),
    ] {
        let resp = post_refresh_token(env.port(), "/api/auth/refresh", &forged);
        // Seed 000, `refreshAccessToken`: `verifyRefreshToken` failing →
        // `throw new UnauthorizedError("Invalid or expired refresh token")`.
        expect_error(
            &resp,
            401,
            "invalid_refresh_token",
            "Invalid or expired refresh token",
        );
    }
}

#[test]
fn refresh_with_a_token_never_stored_answers_seed_000_not_found_message() {
    let env = Env::start();
    let resp = post_refresh_token(
        env.port(),
        "/api/auth/refresh",
        &never_stored_refresh_token(),
    );
    // Seed 000, `refreshAccessToken`: no row for the token →
    // `throw new UnauthorizedError("Refresh token not found. Please login again.")`.
    expect_error(
        &resp,
        401,
        "invalid_refresh_token",
        "Refresh token not found. Please login again.",
    );
}

#[test]
fn refresh_after_logout_answers_seed_000_not_found_message() {
    let env = Env::start();
    let bob = login(env.port(), BOB);
    let out = post_refresh_token(env.port(), "/api/auth/logout", &bob.refresh);
    expect_ok(&out, 200, "Logged out successfully");
    let resp = post_refresh_token(env.port(), "/api/auth/refresh", &bob.refresh);
    // Seed 000, "Test 3": "Now try to refresh with the same token - it should
    // fail: ... { "success": false, "message": "Refresh token not found.
    // Please login again." }" (UnauthorizedError: 401).
    expect_error(
        &resp,
        401,
        "refresh_token_revoked",
        "Refresh token not found. Please login again.",
    );
}

#[test]
fn refresh_after_logout_all_or_session_deletion_answers_seed_000_not_found_message() {
    let env = Env::start();
    let port = env.port();
    let laptop = login(port, BOB);
    let phone = login(port, BOB);
    let deleted = with_bearer(
        port,
        "DELETE",
        &format!("/api/auth/sessions/{}", session_id(&phone.access)),
        &laptop.access,
    );
    expect_ok(&deleted, 200, "Session revoked successfully");
    let all = with_bearer(port, "POST", "/api/auth/logout-all", &laptop.access);
    expect_ok(&all, 200, "Logged out from all devices successfully");
    for token in [&phone.refresh, &laptop.refresh] {
        let resp = post_refresh_token(port, "/api/auth/refresh", token);
        // Seed 000: `revokeSession` and `logoutAllDevices` delete the rows,
        // so `refreshAccessToken` finds none → "Refresh token not found.
        // Please login again."
        expect_error(
            &resp,
            401,
            "refresh_token_revoked",
            "Refresh token not found. Please login again.",
        );
    }
}

#[test]
fn refresh_after_the_session_lifetime_answers_seed_000_expired_message() {
    let env = Env::with_sessions("  refresh_token_ttl: 2s\n  rotation: false\n");
    let bob = login(env.port(), BOB);
    let resp = refresh_until_refused(env.port(), "/api/auth/refresh", &bob.refresh);
    // Seed 000, `refreshAccessToken`: `isExpired(tokenRecord.expiresAt)` →
    // `throw new UnauthorizedError("Refresh token has expired. Please login again.")`.
    expect_error(
        &resp,
        401,
        "refresh_token_expired",
        "Refresh token has expired. Please login again.",
    );
}

#[test]
fn refresh_with_a_reused_rotated_token_keeps_the_gateway_message_at_both_paths() {
    let env = Env::with_sessions("  reuse_grace: 0s\n");
    let port = env.port();
    for path in ["/api/auth/refresh", "/api/auth/refresh-token"] {
        let bob = login(port, BOB);
        let rotated = post_refresh_token(port, path, &bob.refresh);
        expect_ok(&rotated, 200, "Access token refreshed successfully");
        let reused = post_refresh_token(port, path, &bob.refresh);
        // Neither seed rotates refresh tokens ("Next Steps: Token Rotation"),
        // so neither words reuse: the gateway's own message stays.
        expect_error(
            &reused,
            401,
            "refresh_token_reused",
            "Refresh token was already used; the session has been revoked. Please login again",
        );
    }
}

// ---------------------------------------------------------------------------
// Seed 000: POST /logout with a refresh token, /logout-all, /sessions
// ---------------------------------------------------------------------------

#[test]
fn logout_with_a_refresh_token_answers_seed_000_success_message() {
    let env = Env::start();
    let bob = login(env.port(), BOB);
    let resp = post_refresh_token(env.port(), "/api/auth/logout", &bob.refresh);
    // Seed 000, logout controller and "Test 3": `{ "success": true,
    // "message": "Logged out successfully" }`.
    expect_ok(&resp, 200, "Logged out successfully");
}

#[test]
fn logout_with_an_invalid_refresh_token_still_answers_seed_000_success_message() {
    let env = Env::start();
    let bob = login(env.port(), BOB);
    // The body's refresh token decides the family even next to a bearer token.
    let authorization = format!("Bearer {}", bob.access);
    for token in ["not-a-real-token".to_owned(), never_stored_refresh_token()] {
        let body = json!({ "refreshToken": token }).to_string();
        let resp = request(
            env.port(),
            "POST",
            "/api/auth/logout",
            &[("Authorization", &authorization)],
            Some(&body),
        );
        // Seed 000, `logoutUser`: "Even if token is invalid/expired, try to
        // delete it. This is a best-effort cleanup" → `return;`, then the
        // controller's "Logged out successfully".
        expect_ok(&resp, 200, "Logged out successfully");
    }
}

#[test]
fn logout_without_any_token_keeps_the_gateway_message_as_no_seed_words_one() {
    let env = Env::start();
    let resp = request(env.port(), "POST", "/api/auth/logout", &[], Some("{}"));
    // Seed 000's `validateRequest(refreshTokenSchema)` message is not in its
    // text, nor is seed 003's middleware answer to a request without a token.
    expect_error(
        &resp,
        400,
        "refresh_token_required",
        "Refresh token is required (in the body, or an access token in Authorization)",
    );
}

#[test]
fn logout_all_answers_seed_000_success_message() {
    let env = Env::start();
    let bob = login(env.port(), BOB);
    let resp = with_bearer(env.port(), "POST", "/api/auth/logout-all", &bob.access);
    // Seed 000, "Test 4": `{ "success": true, "message": "Logged out from all
    // devices successfully" }`.
    expect_ok(&resp, 200, "Logged out from all devices successfully");
}

#[test]
fn sessions_list_answers_seed_000_shape_without_a_message() {
    let env = Env::start();
    let bob = login(env.port(), BOB);
    let resp = with_bearer(env.port(), "GET", "/api/auth/sessions", &bob.access);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let body = resp.json();
    // Seed 000, "Test 2": `{ "success": true, "data": { "sessions": [...],
    // "count": 1 } }`: no `message`.
    assert_eq!(body["success"], true, "{body}");
    assert!(body.get("message").is_none(), "{body}");
    assert_eq!(body["data"]["count"], 1, "{body}");
}

#[test]
fn deleting_a_session_answers_seed_000_success_message() {
    let env = Env::start();
    let port = env.port();
    let laptop = login(port, BOB);
    let phone = login(port, BOB);
    let resp = with_bearer(
        port,
        "DELETE",
        &format!("/api/auth/sessions/{}", session_id(&phone.access)),
        &laptop.access,
    );
    // Seed 000, "Test 5": `{ "success": true, "message": "Session revoked
    // successfully" }`.
    expect_ok(&resp, 200, "Session revoked successfully");
}

#[test]
fn deleting_an_unknown_or_foreign_session_answers_seed_000_not_found_message() {
    let env = Env::start();
    let port = env.port();
    let bob = login(port, BOB);
    let alice = login(port, ALICE);
    for id in [
        "550e8400-e29b-41d4-a716-446655440000".to_owned(),
        session_id(&alice.access),
    ] {
        let resp = with_bearer(
            port,
            "DELETE",
            &format!("/api/auth/sessions/{id}"),
            &bob.access,
        );
        // Seed 000, `revokeSession`: `throw new NotFoundError("Session not
        // found")`. Someone else's session answers the same on purpose, not
        // seed 000's 401 "Cannot revoke another user's session": DESIGN's
        // `/api/auth` contract, "404 when the id is unknown **or belongs to
        // someone else** (no existence oracle)".
        expect_error(&resp, 404, "session_not_found", "Session not found");
    }
}

#[test]
fn deleting_a_session_by_a_non_uuid_keeps_the_gateway_message() {
    let env = Env::start();
    let bob = login(env.port(), BOB);
    let resp = with_bearer(
        env.port(),
        "DELETE",
        "/api/auth/sessions/not-a-uuid",
        &bob.access,
    );
    // Seed 000 words no answer for an id that is not a UUID.
    expect_error(
        &resp,
        400,
        "invalid_session_id",
        "Session id must be a UUID",
    );
}

#[test]
fn seed_000_bearer_routes_keep_the_gateway_messages_for_refused_access_tokens() {
    let env = Env::start();
    let port = env.port();
    let bob = login(port, BOB);
    let expired = resigned(&bob.access, HS_SECRET, true);
    let foreign = resigned(&bob.access, "another-secret-0123456789-0123456789", false);
    for (method, path) in [
        ("POST", "/api/auth/logout-all".to_owned()),
        ("GET", "/api/auth/sessions".to_owned()),
        (
            "DELETE",
            format!("/api/auth/sessions/{}", session_id(&bob.access)),
        ),
    ] {
        // Seed 000 imports `authenticateToken` but does not show it: none of
        // its messages are in the seed text, so the gateway's own stay.
        let none = request(port, method, &path, &[], None);
        expect_error(&none, 401, "missing_token", "Access token is required");
        let old = with_bearer(port, method, &path, &expired);
        expect_error(&old, 401, "token_expired", "Invalid or expired token");
        let bad = with_bearer(port, method, &path, &foreign);
        expect_error(
            &bad,
            401,
            "invalid_token",
            "Invalid token: token signature is invalid",
        );
    }
}

// ---------------------------------------------------------------------------
// Seed 003: POST /refresh-token
// ---------------------------------------------------------------------------

#[test]
fn refresh_token_with_a_valid_token_answers_seed_003_success_message() {
    let env = Env::start();
    let bob = login(env.port(), BOB);
    let resp = post_refresh_token(env.port(), "/api/auth/refresh-token", &bob.refresh);
    // Seed 003, "3. Refresh Token (NEW)" response: `{ "message": "Access
    // token refreshed successfully", "accessToken": ..., "user": ... }`.
    let body = expect_ok(&resp, 200, "Access token refreshed successfully");
    assert!(body["accessToken"].is_string(), "{body}");
}

#[test]
fn refresh_token_without_token_answers_seed_003_required_message() {
    let env = Env::start();
    let resp = request(
        env.port(),
        "POST",
        "/api/auth/refresh-token",
        &[],
        Some("{}"),
    );
    // Seed 003, error responses: "// Missing refresh token { "message":
    // "Refresh token is required" }" (status not given: the gateway's 400).
    expect_error(
        &resp,
        400,
        "refresh_token_required",
        "Refresh token is required",
    );
}

#[test]
fn refresh_token_with_a_forged_or_unknown_token_answers_seed_003_invalid_message() {
    let env = Env::start();
    let bob = login(env.port(), BOB);
    for token in [
        "invalid_token".to_owned(),
        bob.access.clone(),
        never_stored_refresh_token(),
    ] {
        let resp = post_refresh_token(env.port(), "/api/auth/refresh-token", &token);
        // Seed 003, error responses: "// Invalid refresh token { "message":
        // "Invalid refresh token" }"; its test: `.send({ refreshToken:
        // "invalid_token" })` → `expect(refreshRes.status).to.equal(401)`.
        expect_error(&resp, 401, "invalid_refresh_token", "Invalid refresh token");
    }
}

#[test]
fn refresh_token_after_logout_answers_seed_003_invalid_message() {
    let env = Env::start();
    let bob = login(env.port(), BOB);
    let out = with_bearer(env.port(), "POST", "/api/auth/logout", &bob.access);
    expect_ok(&out, 200, "Logout successful");
    let resp = post_refresh_token(env.port(), "/api/auth/refresh-token", &bob.refresh);
    // Seed 003, Notes: "Logout clears the refresh token from the database,
    // making it invalid" → "// Invalid refresh token { "message": "Invalid
    // refresh token" }" (401).
    expect_error(&resp, 401, "refresh_token_revoked", "Invalid refresh token");
}

#[test]
fn refresh_token_after_the_session_lifetime_answers_seed_003_expired_message() {
    let env = Env::with_sessions("  refresh_token_ttl: 2s\n  rotation: false\n");
    let bob = login(env.port(), BOB);
    let resp = refresh_until_refused(env.port(), "/api/auth/refresh-token", &bob.refresh);
    // Seed 003, error responses: "// Expired refresh token { "message":
    // "Refresh token expired. Please login again" }" (status: "appropriate
    // error", the gateway's 401).
    expect_error(
        &resp,
        401,
        "refresh_token_expired",
        "Refresh token expired. Please login again",
    );
}

// ---------------------------------------------------------------------------
// Seed 003: POST /logout with a bearer access token
// ---------------------------------------------------------------------------

#[test]
fn logout_with_a_bearer_token_answers_seed_003_success_message() {
    let env = Env::start();
    let bob = login(env.port(), BOB);
    let resp = with_bearer(env.port(), "POST", "/api/auth/logout", &bob.access);
    // Seed 003, "4. Logout" (`Authorization: Bearer <accessToken>`) response:
    // `{ "message": "Logout successful" }`.
    expect_ok(&resp, 200, "Logout successful");
}

#[test]
fn logout_with_an_expired_bearer_token_answers_seed_003_middleware_message() {
    let env = Env::start();
    let bob = login(env.port(), BOB);
    let expired = resigned(&bob.access, HS_SECRET, true);
    let resp = with_bearer(env.port(), "POST", "/api/auth/logout", &expired);
    // Seed 003, "3. Expired Access Token": "Request fails with 401 / Error
    // message: "Invalid or expired token"".
    expect_error(&resp, 401, "token_expired", "Invalid or expired token");
}

#[test]
fn logout_with_an_invalid_bearer_token_answers_seed_003_middleware_message() {
    let env = Env::start();
    let port = env.port();
    let bob = login(port, BOB);
    let foreign = resigned(&bob.access, "another-secret-0123456789-0123456789", false);
    for token in ["not.a.token", "garbage", foreign.as_str()] {
        let resp = with_bearer(port, "POST", "/api/auth/logout", token);
        // Seed 003, token flow step 3: a refused bearer token answers
        // `{ message: "Invalid or expired token" }` (401).
        expect_error(&resp, 401, "invalid_token", "Invalid or expired token");
    }
}

#[test]
fn logout_with_the_bearer_token_of_a_revoked_session_answers_seed_003_middleware_message() {
    let env = Env::start();
    let port = env.port();
    let bob = login(port, BOB);
    let all = with_bearer(port, "POST", "/api/auth/logout-all", &bob.access);
    expect_ok(&all, 200, "Logged out from all devices successfully");
    let resp = with_bearer(port, "POST", "/api/auth/logout", &bob.access);
    // Seed 003, token flow step 3: `{ message: "Invalid or expired token" }`
    // for an access token the gateway refuses (401).
    expect_error(&resp, 401, "invalid_token", "Invalid or expired token");
}

#[test]
fn logout_with_an_authorization_header_without_a_bearer_token_keeps_the_gateway_message() {
    let env = Env::start();
    let resp = request(
        env.port(),
        "POST",
        "/api/auth/logout",
        &[("Authorization", "Basic Ym9iOnB3")],
        None,
    );
    // Seed 003 words no answer for a request without an access token (its
    // flow only shows the refused one), so the gateway's own stays.
    expect_error(&resp, 401, "missing_token", "Access token is required");
}
