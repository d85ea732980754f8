//! Revocation of tokens minted by a real OpenID Provider (`oidc-provider` on
//! loopback): OpenID Connect back-channel logouts delivered by the provider
//! itself, logout tokens that must be refused (forged, replayed, with a
//! nonce, …), revocation by `sub`/`jti` through the admin API reaching a
//! second gateway through Postgres, a gateway whose `sessions` section is
//! only the revocation store (no signing key, no refresh secret), and a
//! flood of unknown `kid`s that must not turn into a flood of key fetches.

mod common;
#[path = "common/postgres.rs"]
mod pg;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::oidc::{OidcOptions, OidcProvider, BACKCHANNEL_CLIENT, RESOURCE, SVC_ADMIN, SVC_USER};
use common::*;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";
const LOGOUT_PATH: &str = "/api/auth/backchannel-logout";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What the gateway's `sessions` section is for.
#[derive(Clone, Copy)]
enum Sessions {
    /// The gateway's own sessions too: a signing key and `refresh_secret`.
    Own,
    /// Only the store of revocations: no `jwt.keys`, no `refresh_secret`.
    StoreOnly,
}

/// A gateway accepting `provider`'s tokens as issuer `corp` (back-channel
/// logouts addressed to [`BACKCHANNEL_CLIENT`]), with sessions on `store`.
fn config(
    backend: &Backend,
    provider: &OidcProvider,
    store: &str,
    sessions: Sessions,
    extra_sessions: &str,
) -> String {
    let (own_keys, refresh_secret) = match sessions {
        Sessions::Own => (
            "  issuer: gateway\n  keys:\n    - kid: own\n      algorithms: [HS256]\n      secret: \"{SECRET}\"\n      sign: true\n",
            "  refresh_secret: \"refresh-secret-0123456789-abcdefgh\"\n",
        ),
        Sessions::StoreOnly => ("", ""),
    };
    format!(
        r#"listeners:
  proxy: "{{PROXY}}"
  admin: "{{ADMIN}}"
  threads: 1
  grace_period: 0s
  drain_window: 0s
jwt:
{own_keys}  issuers:
    - name: corp
      issuer: "{issuer}"
      discovery: true
      allow_http: loopback
      audiences: ["{RESOURCE}"]
      logout_client_ids: ["{BACKCHANNEL_CLIENT}"]
      max_token_lifetime: 1h
upstreams:
  main:
    targets: ["{backend}"]
routes:
  - name: api
    match: {{ path_prefix: /api }}
    upstream: main
sessions:
  store: "{store}"
{refresh_secret}  admin_token: "{ADMIN_TOKEN}"
{extra_sessions}"#,
        issuer = provider.issuer(),
        backend = backend.addr(),
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn call(port: u16, token: &str) -> Response {
    get(port, "/api/data", &[("Authorization", &bearer(token))])
}

/// Asserts `token` is refused as revoked on gateway `port`.
#[track_caller]
fn expect_revoked(port: u16, token: &str) {
    let resp = call(port, token);
    assert_eq!(resp.status, 401, "{}", resp.body);
    let challenge = resp.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("token has been revoked"), "{challenge}");
}

#[track_caller]
fn expect_passes(port: u16, token: &str) {
    let resp = call(port, token);
    assert_eq!(resp.status, 200, "{}", resp.body);
}

fn post_logout(port: u16, body: &str) -> Response {
    send(
        port,
        "POST",
        LOGOUT_PATH,
        &[],
        Some(("application/x-www-form-urlencoded", body)),
    )
}

fn admin(gw: &Gateway, method: &str, path: &str, body: Option<&str>) -> Response {
    request(
        gw.admin_port,
        method,
        path,
        &[("Authorization", &bearer(ADMIN_TOKEN))],
        body,
    )
}

fn metric_of(gw: &Gateway, name: &str, labels: &str) -> f64 {
    metric(&gw.metrics(), name, labels)
}

fn wait_ready(gw: &Gateway) {
    wait_until("readyz", Duration::from_secs(30), || {
        get(gw.admin_port, "/readyz", &[]).status == 200
    });
}

/// A provider that delivers back-channel logouts to a gateway started on
/// the returned ports, and that gateway (SQLite store).
fn provider_and_gateway(
    backend: &Backend,
    store_dir: &std::path::Path,
    sessions: Sessions,
) -> (OidcProvider, Gateway, String) {
    let (port, admin_port) = (free_port(), free_port());
    let provider = OidcProvider::start(OidcOptions {
        backchannel_uri: Some(format!("http://127.0.0.1:{port}{LOGOUT_PATH}")),
        ..OidcOptions::default()
    });
    let store = format!("sqlite:{}", store_dir.join("sessions.db").display());
    let template = config(backend, &provider, &store, sessions, "");
    let gw = Gateway::start_at(&template, port, admin_port);
    wait_ready(&gw);
    (provider, gw, template)
}

/// On a gateway whose `sessions` section is only the store: back-channel
/// logout needs neither a signing key nor a refresh secret.
#[test]
fn a_back_channel_logout_from_the_provider_revokes_that_sessions_tokens_and_a_replay_is_refused() {
    let backend = Backend::start("rp");
    let dir = tempfile::tempdir().expect("temp dir");
    let (provider, gw, template) = provider_and_gateway(&backend, dir.path(), Sessions::StoreOnly);
    let token_for = |sid: &str| {
        provider.client_credentials_with(SVC_ADMIN.id, SVC_ADMIN.secret, RESOURCE, &[("sid", sid)])
    };
    let ended = token_for("idp-session-1");
    let ended_too = token_for("idp-session-1");
    let other_session = token_for("idp-session-2");
    for t in [&ended, &ended_too, &other_session] {
        expect_passes(gw.port, t);
    }

    // The provider ends idp-session-1 and POSTs its logout token to us.
    let logout = provider.backchannel_logout_details(Some("someone"), Some("idp-session-1"));
    assert_eq!(
        logout.status,
        Some(200),
        "{logout:?}\n{}",
        gw.proc.log_text()
    );
    assert_eq!(logout.sid.as_deref(), Some("idp-session-1"));
    // Cached or not, both tokens of that IdP session are refused at once;
    // the other session's token still passes.
    expect_revoked(gw.port, &ended);
    expect_revoked(gw.port, &ended_too);
    expect_passes(gw.port, &other_session);
    assert_eq!(
        metric_of(&gw, "portcullis_backchannel_logouts_total", "result=\"ok\""),
        1.0
    );
    assert_eq!(
        metric_of(
            &gw,
            "portcullis_token_revocations_total",
            "kind=\"sid\",source=\"backchannel_logout\""
        ),
        1.0
    );
    assert_eq!(
        metric_of(&gw, "portcullis_token_revocations_active", ""),
        1.0
    );

    // The same logout token again: a replay, refused as the spec asks.
    let replay = post_logout(gw.port, &format!("logout_token={}", logout.logout_token));
    assert_eq!(replay.status, 400, "{}", replay.body);
    let body = replay.json();
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("already used")),
        "{body}"
    );
    assert_eq!(
        metric_of(
            &gw,
            "portcullis_backchannel_logouts_total",
            "result=\"replayed\""
        ),
        1.0
    );

    // A logout naming only a subject revokes that subject's tokens issued
    // until then; tokens issued afterwards pass.
    let user_token = provider.client_credentials(SVC_USER.id, SVC_USER.secret, RESOURCE);
    expect_passes(gw.port, &user_token);
    assert_eq!(provider.backchannel_logout(Some(SVC_USER.id), None), 200);
    expect_revoked(gw.port, &user_token);
    expect_passes(gw.port, &other_session);
    // `iat` has a one-second grain: a token of the same second is refused
    // too, so ask for fresh ones until one is issued after the logout.
    wait_until(
        "a token issued after the logout to pass",
        Duration::from_secs(5),
        || {
            let fresh = provider.client_credentials(SVC_USER.id, SVC_USER.secret, RESOURCE);
            call(gw.port, &fresh).status == 200
        },
    );

    // The revocations are in the store: a restarted gateway still refuses.
    drop(gw);
    let again = Gateway::start(&template);
    wait_ready(&again);
    expect_revoked(again.port, &ended);
    expect_revoked(again.port, &user_token);
    expect_passes(again.port, &other_session);
}

/// Claims of a logout token the gateway would accept, for `provider`.
fn logout_claims(provider: &OidcProvider, sid: &str) -> Value {
    let now = now();
    json!({
        "iss": provider.issuer(),
        "aud": BACKCHANNEL_CLIENT,
        "iat": now,
        "exp": now + 120,
        "jti": uuid::Uuid::new_v4().to_string(),
        "sid": sid,
        "events": { EVENT: {} },
    })
}

#[test]
fn forged_replayed_and_nonce_bearing_logout_tokens_are_refused_and_revoke_nothing() {
    let backend = Backend::start("rp");
    let dir = tempfile::tempdir().expect("temp dir");
    let (provider, gw, _) = provider_and_gateway(&backend, dir.path(), Sessions::Own);
    // Another provider: its keys are not the issuer's.
    let impostor = OidcProvider::start(OidcOptions::default());
    let sid = "idp-session-kept";
    let token =
        provider.client_credentials_with(SVC_ADMIN.id, SVC_ADMIN.secret, RESOURCE, &[("sid", sid)]);
    expect_passes(gw.port, &token);

    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = logout_claims(&provider, sid);
        change(&mut claims);
        claims
    };
    let signed = |claims: &Value| provider.sign(claims, Some("logout+jwt"));
    let valid = signed(&logout_claims(&provider, sid));
    let mut tampered = valid.clone();
    tampered.replace_range(tampered.len() - 6.., "AAAAAA");
    let swapped_payload = {
        // The payload of another (valid) logout token under this signature.
        let other = signed(&with(&|c| c["sid"] = json!("some-other-session")));
        let parts: Vec<&str> = valid.split('.').collect();
        let other_parts: Vec<&str> = other.split('.').collect();
        format!("{}.{}.{}", parts[0], other_parts[1], parts[2])
    };
    let none_alg = {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"logout+jwt"}"#);
        let payload = URL_SAFE_NO_PAD.encode(logout_claims(&provider, sid).to_string());
        format!("{header}.{payload}.")
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("signature altered", tampered, "signature"),
        (
            "payload swapped under a valid signature",
            swapped_payload,
            "signature",
        ),
        (
            "signed by another provider's key",
            impostor.sign(&logout_claims(&provider, sid), Some("logout+jwt")),
            "unknown key",
        ),
        ("alg none", none_alg, "none"),
        (
            "carries a nonce",
            signed(&with(&|c| c["nonce"] = json!("n-1"))),
            "nonce",
        ),
        (
            "no events claim",
            signed(&with(&|c| {
                c.as_object_mut().expect("object").remove("events");
            })),
            "events",
        ),
        (
            "another event",
            signed(&with(&|c| {
                c["events"] = json!({"https://example.com/other": {}})
            })),
            "events",
        ),
        (
            "addressed to another client",
            signed(&with(&|c| c["aud"] = json!("some-other-rp"))),
            "audience",
        ),
        (
            "no jti",
            signed(&with(&|c| {
                c.as_object_mut().expect("object").remove("jti");
            })),
            "jti",
        ),
        (
            "neither sub nor sid",
            signed(&with(&|c| {
                c.as_object_mut().expect("object").remove("sid");
            })),
            "neither",
        ),
        (
            "expired",
            signed(&with(&|c| {
                c["iat"] = json!(now() - 7200);
                c["exp"] = json!(now() - 3600);
            })),
            "expired",
        ),
        (
            "no iat",
            signed(&with(&|c| {
                c.as_object_mut().expect("object").remove("iat");
            })),
            "iat",
        ),
        (
            "an access token's typ",
            provider.sign(&logout_claims(&provider, sid), Some("at+jwt")),
            "typ",
        ),
    ];
    for (what, logout_token, reason) in &cases {
        let resp = post_logout(gw.port, &format!("logout_token={logout_token}"));
        assert_eq!(resp.status, 400, "{what}: {}", resp.body);
        let body = resp.json();
        assert_eq!(body["error"], "invalid_request", "{what}: {body}");
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(
            description.contains(reason),
            "{what}: `{description}` does not say `{reason}`"
        );
        expect_passes(gw.port, &token);
    }
    // Not a form, no field, the field twice.
    let json_body = request(
        gw.port,
        "POST",
        LOGOUT_PATH,
        &[],
        Some(r#"{"logout_token":"x"}"#),
    );
    assert_eq!(json_body.status, 400, "{}", json_body.body);
    assert_eq!(post_logout(gw.port, "token=x").status, 400);
    assert_eq!(
        post_logout(
            gw.port,
            &format!("logout_token={valid}&logout_token={valid}")
        )
        .status,
        400
    );
    assert_eq!(get(gw.port, LOGOUT_PATH, &[]).status, 405);
    expect_passes(gw.port, &token);
    assert_eq!(
        metric_of(
            &gw,
            "portcullis_backchannel_logouts_total",
            "result=\"invalid\""
        ),
        (cases.len() + 3) as f64
    );
    assert_eq!(
        metric_of(&gw, "portcullis_token_revocations_active", ""),
        0.0
    );

    // The control: the valid token does log the session out, once.
    let resp = post_logout(gw.port, &format!("logout_token={valid}"));
    assert_eq!(resp.status, 200, "{}", resp.body);
    expect_revoked(gw.port, &token);
    let replay = post_logout(gw.port, &format!("logout_token={valid}"));
    assert_eq!(replay.status, 400, "{}", replay.body);
    // Never the token in the log.
    assert!(!gw.proc.log_text().contains(&valid));
}

#[test]
fn revoking_a_subject_through_the_admin_api_reaches_a_second_gateway_through_postgres() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(pg::TestDb::create());
    let backend = Backend::start("rp");
    let provider = OidcProvider::start(OidcOptions::default());
    // The fallback poll is 30 s: only LISTEN/NOTIFY can deliver within the bound.
    let template = config(
        &backend,
        &provider,
        &db.url,
        Sessions::Own,
        "  revocation_poll_interval: 30s\n",
    );
    let a = Gateway::start(&template);
    let b = Gateway::start(&template);
    wait_ready(&a);
    wait_ready(&b);
    let admin_token = provider.client_credentials(SVC_ADMIN.id, SVC_ADMIN.secret, RESOURCE);
    let user_token = provider.client_credentials(SVC_USER.id, SVC_USER.secret, RESOURCE);
    for gw in [&a, &b] {
        expect_passes(gw.port, &admin_token);
        expect_passes(gw.port, &user_token);
    }

    // Refusals of the admin API.
    let unauthorized = request(
        a.admin_port,
        "POST",
        "/admin/revocations",
        &[],
        Some(r#"{"issuer":"corp","sub":"x"}"#),
    );
    assert_eq!(unauthorized.status, 401);
    for (body, says) in [
        (r#"{"sub":"x"}"#, "issuer"),
        (r#"{"issuer":"nobody","sub":"x"}"#, "known: corp"),
        (r#"{"issuer":"corp"}"#, "exactly one"),
        (r#"{"issuer":"corp","sub":"x","jti":"y"}"#, "exactly one"),
        (r#"{"issuer":"corp","sid":5}"#, "string"),
    ] {
        let resp = admin(&a, "POST", "/admin/revocations", Some(body));
        assert_eq!(resp.status, 400, "{body}: {}", resp.body);
        assert!(resp.body.contains(says), "{body}: {}", resp.body);
    }

    // Revoke SVC_ADMIN by subject on A.
    let resp = admin(
        &a,
        "POST",
        "/admin/revocations",
        Some(&format!(
            r#"{{"issuer":"{}","sub":"{}"}}"#,
            provider.issuer(),
            SVC_ADMIN.id
        )),
    );
    assert_eq!(resp.status, 201, "{}", resp.body);
    let data = resp.json()["data"].clone();
    assert_eq!(data["kind"], "sub", "{data}");
    assert_eq!(data["issuer"], "corp", "{data}");
    expect_revoked(a.port, &admin_token);
    let start = Instant::now();
    wait_until(
        "B to refuse the revoked subject",
        Duration::from_secs(2),
        || call(b.port, &admin_token).status == 401,
    );
    eprintln!("A → B token revocation seen after {:?}", start.elapsed());
    expect_revoked(b.port, &admin_token);
    expect_passes(b.port, &user_token);
    wait_until("B to count the propagation", Duration::from_secs(2), || {
        metric_of(&b, "portcullis_token_revocations_active", "") == 1.0
    });

    // Revoke one token by jti on B: A refuses that token only.
    let jti = claims_of(&user_token)["jti"]
        .as_str()
        .expect("the provider's tokens carry a jti")
        .to_owned();
    let second_user_token = provider.client_credentials(SVC_USER.id, SVC_USER.secret, RESOURCE);
    let resp = admin(
        &b,
        "POST",
        "/admin/revocations",
        Some(&format!(r#"{{"issuer":"corp","jti":"{jti}"}}"#)),
    );
    assert_eq!(resp.status, 201, "{}", resp.body);
    wait_until(
        "A to refuse the revoked jti",
        Duration::from_secs(2),
        || call(a.port, &user_token).status == 401,
    );
    expect_passes(a.port, &second_user_token);

    let listed = admin(&a, "GET", "/admin/revocations?issuer=corp", None).json();
    assert_eq!(listed["data"]["count"], 2, "{listed}");
    assert_eq!(
        metric_of(
            &a,
            "portcullis_token_revocations_total",
            "kind=\"sub\",source=\"admin\""
        ),
        1.0
    );

    // A token issued after the subject's revocation passes everywhere.
    wait_until("a fresh token to pass on B", Duration::from_secs(5), || {
        let fresh = provider.client_credentials(SVC_ADMIN.id, SVC_ADMIN.secret, RESOURCE);
        call(b.port, &fresh).status == 200 && call(a.port, &fresh).status == 200
    });
    drop((a, b));
    runtime.block_on(db.drop_database());
}

#[test]
fn a_store_only_gateway_revokes_a_subject_through_the_admin_api_and_routes_the_session_paths() {
    let backend = Backend::start("rp");
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = OidcProvider::start(OidcOptions::default());
    let store = format!("sqlite:{}", dir.path().join("sessions.db").display());
    let gw = Gateway::start(&config(
        &backend,
        &provider,
        &store,
        Sessions::StoreOnly,
        "",
    ));
    wait_ready(&gw);
    let admin_token = provider.client_credentials(SVC_ADMIN.id, SVC_ADMIN.secret, RESOURCE);
    let user_token = provider.client_credentials(SVC_USER.id, SVC_USER.secret, RESOURCE);
    expect_passes(gw.port, &admin_token);
    expect_passes(gw.port, &user_token);

    let resp = admin(
        &gw,
        "POST",
        "/admin/revocations",
        Some(&format!(r#"{{"issuer":"corp","sub":"{}"}}"#, SVC_ADMIN.id)),
    );
    assert_eq!(resp.status, 201, "{}", resp.body);
    assert_eq!(resp.json()["data"]["kind"], "sub", "{}", resp.body);
    expect_revoked(gw.port, &admin_token);
    expect_passes(gw.port, &user_token);
    let listed = admin(&gw, "GET", "/admin/revocations", None).json();
    assert_eq!(listed["data"]["count"], 1, "{listed}");

    // No session of the gateway's own: its session paths are routed like
    // any path (`/api` needs a token, then goes to the backend) instead of
    // being answered by the gateway.
    let refresh = |headers: &[(&str, &str)]| {
        request(
            gw.port,
            "POST",
            "/api/auth/refresh",
            headers,
            Some(r#"{"refreshToken":"x.y"}"#),
        )
    };
    let unauthenticated = refresh(&[]);
    assert_eq!(unauthenticated.status, 401, "{}", unauthenticated.body);
    assert_eq!(
        unauthenticated.json()["error"],
        "missing_token",
        "{}",
        unauthenticated.body
    );
    let routed = refresh(&[("Authorization", &bearer(&user_token))]);
    assert_eq!(routed.status, 200, "{}", routed.body);
    let echoed = routed.json();
    assert_eq!(echoed["backend"], "rp", "{echoed}");
    assert_eq!(echoed["path"], "/api/auth/refresh", "{echoed}");
    let sessions = get(
        gw.port,
        "/api/auth/sessions",
        &[("Authorization", &bearer(&user_token))],
    );
    assert_eq!(sessions.json()["backend"], "rp", "{}", sessions.body);

    // Nor can the admin API open one.
    let create = admin(&gw, "POST", "/admin/sessions", Some(r#"{"subject":"u-1"}"#));
    assert_eq!(create.status, 404, "{}", create.body);
    assert_eq!(create.json()["error"], "not_found", "{}", create.body);
    assert!(create.body.contains("refresh_secret"), "{}", create.body);
}

/// The payload of a compact JWS.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("json")
}

#[test]
fn a_thousand_tokens_with_random_kids_cause_at_most_one_key_fetch_per_cooldown() {
    let backend = Backend::start("rp");
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = OidcProvider::start(OidcOptions::default());
    let store = format!("sqlite:{}", dir.path().join("sessions.db").display());
    let gw = Gateway::start(&config(&backend, &provider, &store, Sessions::Own, ""));
    wait_ready(&gw);
    let fetches = |gw: &Gateway| {
        metric_of(
            gw,
            "portcullis_jwks_fetch_total",
            "issuer=\"corp\",result=\"ok\"",
        )
    };
    let before = fetches(&gw);
    let valid = provider.client_credentials(SVC_ADMIN.id, SVC_ADMIN.secret, RESOURCE);
    let parts: Vec<&str> = valid.split('.').collect();
    let (mut writer, mut reader) = keep_alive(gw.port);
    let started = Instant::now();
    for i in 0..1000 {
        let header = URL_SAFE_NO_PAD.encode(
            json!({"alg": "RS256", "typ": "at+jwt", "kid": format!("random-{i}-{}", uuid::Uuid::new_v4())})
                .to_string(),
        );
        let forged = format!("{header}.{}.{}", parts[1], parts[2]);
        use std::io::Write as _;
        write!(
            writer,
            "GET /api/data HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {forged}\r\n\r\n"
        )
        .expect("send");
        let resp = read_next_response(&mut reader).expect("an answer");
        assert_eq!(resp.status, 401, "{}", resp.body);
    }
    let took = started.elapsed();
    let fetched = fetches(&gw) - before;
    // Default cooldown 10 s: one fetch may start at once, then one per 10 s.
    let allowed = 1.0 + (took.as_secs_f64() / 10.0).floor();
    eprintln!("1,000 unknown kids in {took:?}: {fetched} key fetches (allowed {allowed})");
    assert!(fetched <= allowed, "{fetched} fetches in {took:?}");
    assert!(fetched >= 1.0, "an unknown kid should trigger one refetch");
    assert_eq!(
        metric(
            &gw.metrics(),
            "portcullis_jwt_validations_total",
            "reason=\"unknown_kid\",result=\"fail\",route=\"api\""
        ),
        1000.0
    );
    expect_passes(gw.port, &valid);
}
