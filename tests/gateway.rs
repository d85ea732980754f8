//! End-to-end tests of the gateway core: real `portcullis` process, real demo
//! backend upstream(s), raw HTTP over loopback.

mod common;

use std::time::Duration;

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const KEYS: &str = r#"
jwt:
  issuer: test-issuer
  audience: [test-aud, other-aud]
  leeway: 0s
  max_token_size: 4KiB
  keys:
    - kid: hs
      algorithms: [HS256, HS384, HS512]
      secret: "{SECRET}"
    - kid: rsa
      algorithms: [RS256, RS384, RS512, PS256, PS384, PS512]
      public_key_file: {FIXTURES}/keys/rsa.pub
    - kid: ec256
      algorithms: [ES256]
      public_key_file: {FIXTURES}/keys/ec256.pub
    - kid: ec384
      algorithms: [ES384]
      public_key_file: {FIXTURES}/keys/ec384.pub
    - kid: ed
      algorithms: [EdDSA]
      public_key_file: {FIXTURES}/keys/ed25519.pub
"#;

fn config(upstreams: &str, routes: &str) -> String {
    format!(
        "listeners:\n  proxy: \"{{PROXY}}\"\n  admin: \"{{ADMIN}}\"\n  threads: 1\n  grace_period: 0s\n{KEYS}\nupstreams:\n{upstreams}\nroutes:\n{routes}"
    )
}

fn one_upstream(backend: &Backend) -> String {
    format!("  main:\n    targets: [\"{}\"]\n", backend.addr())
}

const API_ROUTE: &str = "  - name: api\n    match: { path_prefix: /api }\n    upstream: main\n";

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": "test-issuer", "aud": "test-aud", "iat": now(), "exp": now() + 600})
}

fn key_for(alg: Algorithm) -> (&'static str, EncodingKey) {
    use Algorithm::*;
    let pem = |f: &str| read(format!("{FIXTURES}/keys/{f}"));
    match alg {
        HS256 | HS384 | HS512 => ("hs", EncodingKey::from_secret(HS_SECRET.as_bytes())),
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
            ("rsa", EncodingKey::from_rsa_pem(&pem("rsa.key")).unwrap())
        }
        ES256 => (
            "ec256",
            EncodingKey::from_ec_pem(&pem("ec256.key")).unwrap(),
        ),
        ES384 => (
            "ec384",
            EncodingKey::from_ec_pem(&pem("ec384.key")).unwrap(),
        ),
        _ => ("ed", EncodingKey::from_ed_pem(&pem("ed25519.key")).unwrap()),
    }
}

fn sign(alg: Algorithm, claims: &Value) -> String {
    let (kid, key) = key_for(alg);
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, claims, &key).unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn upstream_saw(resp: &Response) -> Value {
    assert_eq!(
        resp.status, 200,
        "expected the upstream's answer, got: {}",
        resp.body
    );
    resp.json()
}

#[test]
fn valid_tokens_of_every_algorithm_reach_the_upstream_with_the_identity_header() {
    let backend = Backend::start("a");
    let gw = Gateway::start(&config(&one_upstream(&backend), API_ROUTE));
    use Algorithm::*;
    for alg in [
        HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ] {
        let token = sign(alg, &claims(&format!("user-{alg:?}")));
        let resp = gw.get("/api/me", &[("Authorization", &bearer(&token))]);
        let seen = upstream_saw(&resp);
        assert_eq!(
            seen["headers"]["x-user-id"],
            format!("user-{alg:?}"),
            "{alg:?}"
        );
        assert_eq!(seen["path"], "/api/me");
    }
    let m = gw.metrics();
    assert_eq!(
        metric(
            &m,
            "portcullis_jwt_validations_total",
            r#"reason="verified",result="ok",route="api""#
        ),
        12.0
    );
}

#[test]
fn bearer_scheme_is_case_insensitive_and_repeated_tokens_hit_the_cache() {
    let backend = Backend::start("a");
    let gw = Gateway::start(&config(&one_upstream(&backend), API_ROUTE));
    let token = sign(Algorithm::HS256, &claims("alice"));
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = gw.get("/api/x", &[("Authorization", &format!("{scheme} {token}"))]);
        assert_eq!(upstream_saw(&resp)["headers"]["x-user-id"], "alice");
    }
    let m = gw.metrics();
    assert_eq!(
        metric(
            &m,
            "portcullis_jwt_validations_total",
            r#"reason="verified",result="ok",route="api""#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "portcullis_jwt_validations_total",
            r#"reason="cached",result="ok",route="api""#
        ),
        2.0
    );
}

#[test]
fn bad_tokens_get_401_with_the_right_description_and_metric_reason() {
    let backend = Backend::start("a");
    let gw = Gateway::start(&config(&one_upstream(&backend), API_ROUTE));
    let hs = |c: &Value| sign(Algorithm::HS256, c);
    let mut expired = claims("u");
    expired["exp"] = json!(now() - 60);
    let mut future = claims("u");
    future["nbf"] = json!(now() + 3600);
    let mut wrong_iss = claims("u");
    wrong_iss["iss"] = json!("someone-else");
    let mut wrong_aud = claims("u");
    wrong_aud["aud"] = json!("not-us");
    let mut no_exp = claims("u");
    no_exp.as_object_mut().unwrap().remove("exp");

    let good = hs(&claims("u"));
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_payload = b64(serde_json::to_string(&claims("admin")).unwrap().as_bytes());
    parts[1] = &forged_payload;
    let bad_signature = parts.join(".");

    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"hs"}"#),
        b64(serde_json::to_string(&claims("u")).unwrap().as_bytes())
    );
    // Classic confusion: HS256 keyed with the RSA public key, claiming the RSA kid.
    let mut confused_header = Header::new(Algorithm::HS256);
    confused_header.kid = Some("rsa".into());
    let confused = encode(
        &confused_header,
        &claims("u"),
        &EncodingKey::from_secret(&read(format!("{FIXTURES}/keys/rsa.pub"))),
    )
    .unwrap();
    let mut unknown_kid_header = Header::new(Algorithm::HS256);
    unknown_kid_header.kid = Some("nope".into());
    let unknown_kid = encode(
        &unknown_kid_header,
        &claims("u"),
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap();
    let mut big = claims("u");
    big["padding"] = json!("x".repeat(5000));
    let oversized = hs(&big);

    let cases: Vec<(&str, Option<String>, &str, &str)> = vec![
        ("missing", None, "", "missing"),
        (
            "expired",
            Some(hs(&expired)),
            "token has expired",
            "expired",
        ),
        (
            "not yet valid",
            Some(hs(&future)),
            "not valid yet",
            "not_yet_valid",
        ),
        (
            "wrong issuer",
            Some(hs(&wrong_iss)),
            "issuer is not accepted",
            "bad_issuer",
        ),
        (
            "wrong audience",
            Some(hs(&wrong_aud)),
            "audience is not accepted",
            "bad_audience",
        ),
        (
            "no exp",
            Some(hs(&no_exp)),
            "lacks the required `exp` claim",
            "missing_claim",
        ),
        (
            "bad signature",
            Some(bad_signature),
            "signature is invalid",
            "bad_signature",
        ),
        (
            "alg none",
            Some(alg_none),
            "algorithm `none` is not accepted",
            "bad_algorithm",
        ),
        (
            "hs256 with rsa key",
            Some(confused),
            "HS256 is not allowed for this key",
            "bad_algorithm",
        ),
        (
            "unknown kid",
            Some(unknown_kid),
            "unknown key",
            "unknown_kid",
        ),
        (
            "oversized",
            Some(oversized),
            "larger than 4096 bytes",
            "too_large",
        ),
        (
            "garbage",
            Some("garbage".into()),
            "three dot-separated parts",
            "malformed",
        ),
        (
            "garbage parts",
            Some("a.b.c".into()),
            "header is not base64url",
            "malformed",
        ),
    ];
    for (name, token, description, reason) in cases {
        let auth = token.as_deref().map(bearer);
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let resp = gw.get("/api/x", &headers);
        assert_eq!(resp.status, 401, "{name}: {}", resp.body);
        let challenge = resp
            .header("www-authenticate")
            .unwrap_or_default()
            .to_owned();
        assert!(
            challenge.starts_with("Bearer realm=\"portcullis\""),
            "{name}: {challenge}"
        );
        if reason == "missing" {
            assert!(
                !challenge.contains("error="),
                "{name}: no error code without credentials: {challenge}"
            );
        } else {
            assert!(
                challenge.contains(r#"error="invalid_token""#),
                "{name}: {challenge}"
            );
            assert!(
                challenge.contains(description),
                "{name}: `{challenge}` lacks `{description}`"
            );
        }
        let body = resp.json();
        assert_eq!(body["success"], false, "{name}");
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{name}: {body}"
        );
        assert_eq!(resp.header("cache-control"), Some("no-store"), "{name}");
        let m = gw.metrics();
        let labels = format!(r#"reason="{reason}",result="fail",route="api""#);
        assert!(
            metric(&m, "portcullis_jwt_validations_total", &labels) >= 1.0,
            "{name}: metric {labels} missing"
        );
    }
    // Nothing above reached the upstream as an authenticated request.
    let m = gw.metrics();
    assert_eq!(
        metric(
            &m,
            "portcullis_requests_total",
            r#"route="api",status="200""#
        ),
        0.0
    );
}

#[test]
fn a_token_is_not_read_from_the_query_string() {
    let backend = Backend::start("a");
    let gw = Gateway::start(&config(&one_upstream(&backend), API_ROUTE));
    let token = sign(Algorithm::HS256, &claims("u"));
    let resp = gw.get(&format!("/api/x?access_token={token}"), &[]);
    assert_eq!(resp.status, 401);
}

#[test]
fn spoofed_identity_headers_from_the_client_never_reach_the_upstream() {
    let backend = Backend::start("a");
    let routes = format!("{API_ROUTE}  - name: open\n    match: {{ path_prefix: /open }}\n    upstream: main\n    auth: none\n");
    let gw = Gateway::start(&config(&one_upstream(&backend), &routes));
    let token = sign(Algorithm::HS256, &claims("alice"));
    let auth = bearer(&token);
    let resp = gw.get(
        "/api/x",
        &[
            ("Authorization", &auth),
            ("X-User-Id", "admin"),
            ("x-user-id", "root"),
            ("X-Auth-Role", "admin"),
            ("X-User-Role", "admin"),
        ],
    );
    let seen = upstream_saw(&resp);
    assert_eq!(
        seen["headers"]["x-user-id"], "alice",
        "only the verified identity arrives"
    );
    assert!(seen["headers"].get("x-auth-role").is_none());
    assert!(seen["headers"].get("x-user-role").is_none());

    let resp = gw.get("/open/x", &[("X-User-Id", "admin")]);
    let seen = upstream_saw(&resp);
    assert!(
        seen["headers"].get("x-user-id").is_none(),
        "stripped on unauthenticated routes too"
    );
    assert_eq!(
        metric(&gw.metrics(), "portcullis_header_spoof_stripped_total", ""),
        5.0
    );
}

#[test]
fn routes_match_in_order_with_exact_paths_hosts_methods_and_segment_prefixes() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let upstreams = format!(
        "  a:\n    targets: [\"{}\"]\n  b:\n    targets: [\"{}\"]\n",
        a.addr(),
        b.addr()
    );
    let routes = "  - name: exact
    match: { path: /api/special }
    upstream: b
    auth: none
  - name: by-host
    match: { host: admin.example.com, path_prefix: / }
    upstream: b
    auth: none
  - name: writes
    match: { path_prefix: /api, methods: [POST, DELETE] }
    upstream: b
    auth: none
  - name: api
    match: { path_prefix: /api }
    upstream: a
    auth: none
";
    let gw = Gateway::start(&config(&upstreams, routes));
    let backend_of = |r: Response| upstream_saw(&r)["backend"].as_str().unwrap().to_owned();
    assert_eq!(backend_of(gw.get("/api/special", &[])), "b");
    assert_eq!(
        backend_of(gw.get("/api/special/more", &[])),
        "a",
        "exact does not match longer paths"
    );
    assert_eq!(backend_of(gw.get("/api/users", &[])), "a");
    assert_eq!(
        backend_of(request(gw.port, "POST", "/api/users", &[], Some("{}"))),
        "b"
    );
    let host = raw(
        gw.port,
        b"GET /api/users HTTP/1.1\r\nHost: Admin.Example.com:8080\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(backend_of(host), "b", "host match ignores case and port");
    let resp = gw.get("/apix", &[]);
    assert_eq!(resp.status, 404, "prefixes match whole segments");
    assert_eq!(resp.json()["error"], "no_route");
}

#[test]
fn claim_requirements_answer_403_when_unmet() {
    let backend = Backend::start("a");
    let routes = "  - name: admin
    match: { path_prefix: /admin }
    upstream: main
    require:
      - claim: role
        in: [admin, ops]
      - claim: org.tier
        equals: 3
";
    let gw = Gateway::start(&config(&one_upstream(&backend), routes));
    let with = |role: Value, tier: Value| {
        let mut c = claims("u");
        c["role"] = role;
        c["org"] = json!({"tier": tier});
        bearer(&sign(Algorithm::HS256, &c))
    };
    assert_eq!(
        gw.get(
            "/admin/x",
            &[("Authorization", &with(json!("admin"), json!(3)))]
        )
        .status,
        200
    );
    assert_eq!(
        gw.get(
            "/admin/x",
            &[("Authorization", &with(json!(["user", "ops"]), json!(3)))]
        )
        .status,
        200
    );
    let resp = gw.get(
        "/admin/x",
        &[("Authorization", &with(json!("user"), json!(3)))],
    );
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json()["error"], "insufficient_claims");
    assert!(resp.json()["message"].as_str().unwrap().contains("`role`"));
    assert_eq!(
        gw.get(
            "/admin/x",
            &[("Authorization", &with(json!("admin"), json!(2)))]
        )
        .status,
        403
    );
}

#[test]
fn optional_auth_passes_anonymous_requests_but_rejects_bad_tokens() {
    let backend = Backend::start("a");
    let routes = "  - name: maybe\n    match: { path_prefix: /maybe }\n    upstream: main\n    auth: optional\n";
    let gw = Gateway::start(&config(&one_upstream(&backend), routes));
    let seen = upstream_saw(&gw.get("/maybe", &[]));
    assert!(seen["headers"].get("x-user-id").is_none());
    let token = bearer(&sign(Algorithm::HS256, &claims("carol")));
    assert_eq!(
        upstream_saw(&gw.get("/maybe", &[("Authorization", &token)]))["headers"]["x-user-id"],
        "carol"
    );
    assert_eq!(
        gw.get("/maybe", &[("Authorization", "Bearer junk")]).status,
        401
    );
}

#[test]
fn token_from_the_configured_cookie_is_accepted() {
    let backend = Backend::start("a");
    let cfg = config(&one_upstream(&backend), API_ROUTE)
        .replace("  leeway: 0s\n", "  leeway: 0s\n  cookie: access_token\n");
    let gw = Gateway::start(&cfg);
    let token = sign(Algorithm::ES256, &claims("dora"));
    let cookie = format!("theme=dark; access_token={token}");
    assert_eq!(
        upstream_saw(&gw.get("/api/x", &[("Cookie", &cookie)]))["headers"]["x-user-id"],
        "dora"
    );
    assert_eq!(gw.get("/api/x", &[("Cookie", "theme=dark")]).status, 401);
}

#[test]
fn prefix_rewrite_authorization_dropping_and_forwarding_headers_apply_upstream() {
    let backend = Backend::start("a");
    let routes = "  - name: svc
    match: { path_prefix: /svc }
    upstream: main
    strip_prefix: /svc
    add_prefix: /v2
    forward_authorization: false
";
    let gw = Gateway::start(&config(&one_upstream(&backend), routes));
    let token = bearer(&sign(Algorithm::HS256, &claims("erin")));
    let resp = gw.get(
        "/svc/items?page=2",
        &[("Authorization", &token), ("X-Request-Id", "req-abc.123")],
    );
    assert_eq!(resp.header("x-request-id"), Some("req-abc.123"));
    let seen = upstream_saw(&resp);
    assert_eq!(seen["path"], "/v2/items");
    assert_eq!(seen["query"], "page=2");
    assert!(seen["headers"].get("authorization").is_none());
    assert_eq!(seen["headers"]["x-request-id"], "req-abc.123");
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");

    let resp = gw.get(
        "/svc/items",
        &[
            ("Authorization", &token),
            ("X-Request-Id", "bad id with spaces"),
        ],
    );
    let generated = resp.header("x-request-id").unwrap().to_owned();
    assert_eq!(generated.len(), 36, "an unusable id is replaced by a UUID");
    assert_eq!(upstream_saw(&resp)["headers"]["x-request-id"], generated);
}

#[test]
fn path_tricks_and_huge_headers_get_clear_4xx_answers() {
    let backend = Backend::start("a");
    let routes =
        "  - name: open\n    match: { path_prefix: /public }\n    upstream: main\n    auth: none\n";
    let gw = Gateway::start(&config(&one_upstream(&backend), routes));
    for path in ["/public/../admin", "/public/%2e%2E/admin", "/public/a%2Fb"] {
        let resp = gw.get(path, &[]);
        assert_eq!(resp.status, 400, "{path}");
        assert_eq!(resp.json()["error"], "bad_path");
    }
    let huge = "x".repeat(200 * 1024);
    let resp = gw.get("/public", &[("X-Big", &huge)]);
    assert_eq!(resp.status, 431, "huge header");
    assert_eq!(resp.json()["error"], "headers_too_large");
    // Still serving afterwards.
    assert_eq!(gw.get("/public", &[]).status, 200);
}

#[test]
fn an_unreachable_upstream_gives_502_json() {
    let dead = free_port();
    let upstreams =
        format!("  main:\n    targets: [\"127.0.0.1:{dead}\"]\n    connect_timeout: 1s\n");
    let routes =
        "  - name: api\n    match: { path_prefix: /api }\n    upstream: main\n    auth: none\n";
    let gw = Gateway::start(&config(&upstreams, routes));
    let resp = gw.get("/api/x", &[]);
    assert_eq!(resp.status, 502, "{}", resp.body);
    assert_eq!(resp.json()["error"], "upstream_error");
    assert_eq!(
        metric(
            &gw.metrics(),
            "portcullis_requests_total",
            r#"route="api",status="502""#
        ),
        1.0
    );
}

#[test]
fn health_checks_take_a_dead_target_out_and_503_when_none_is_left() {
    let a = Backend::start("a");
    let mut b = Backend::start("b");
    let upstreams = format!(
        "  main:\n    targets: [\"{}\", \"{}\"]\n    health_check: {{ path: /health, interval: 100ms, timeout: 500ms, unhealthy_after: 1 }}\n",
        a.addr(),
        b.addr()
    );
    let routes =
        "  - name: api\n    match: { path_prefix: /api }\n    upstream: main\n    auth: none\n";
    let gw = Gateway::start(&config(&upstreams, routes));
    let backends: std::collections::HashSet<String> = (0..6)
        .map(|_| {
            upstream_saw(&gw.get("/api/x", &[]))["backend"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(backends.len(), 2, "round-robin uses both targets");

    b.proc.kill();
    let b_label = format!(r#"target="{}",upstream="main""#, b.addr());
    wait_until("b to be marked unhealthy", Duration::from_secs(10), || {
        metric(&gw.metrics(), "portcullis_upstream_health", &b_label) == 0.0
            && gw.metrics().contains(&b_label)
    });
    for _ in 0..6 {
        assert_eq!(upstream_saw(&gw.get("/api/x", &[]))["backend"], "a");
    }
    drop(a);
    wait_until("no healthy target", Duration::from_secs(10), || {
        gw.get("/api/x", &[]).status == 503
    });
    let resp = gw.get("/api/x", &[]);
    assert_eq!(resp.json()["error"], "upstream_unavailable");
    assert_eq!(get(gw.admin_port, "/readyz", &[]).status, 503);
}

#[test]
fn reload_with_a_valid_file_changes_routing_and_an_invalid_file_keeps_the_old_one() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let upstreams = format!(
        "  a:\n    targets: [\"{}\"]\n  b:\n    targets: [\"{}\"]\n",
        a.addr(),
        b.addr()
    );
    let route_to = |u: &str| {
        format!("  - name: api\n    match: {{ path_prefix: /api }}\n    upstream: {u}\n    auth: none\n")
    };
    let gw = Gateway::start(&config(&upstreams, &route_to("a")));
    assert_eq!(upstream_saw(&gw.get("/api/x", &[]))["backend"], "a");

    gw.reload_with(&config(&upstreams, &route_to("b")));
    wait_until("reload to apply", Duration::from_secs(10), || {
        metric(
            &gw.metrics(),
            "portcullis_config_reloads_total",
            r#"result="ok""#,
        ) == 1.0
    });
    assert_eq!(upstream_saw(&gw.get("/api/x", &[]))["backend"], "b");

    gw.reload_with(&config(&upstreams, &route_to("nonexistent")));
    wait_until("reload to be rejected", Duration::from_secs(10), || {
        metric(
            &gw.metrics(),
            "portcullis_config_reloads_total",
            r#"result="error""#,
        ) == 1.0
    });
    assert_eq!(
        upstream_saw(&gw.get("/api/x", &[]))["backend"],
        "b",
        "old config keeps serving"
    );
    gw.reload_with("listeners: [this is not: valid");
    wait_until("second rejection", Duration::from_secs(10), || {
        metric(
            &gw.metrics(),
            "portcullis_config_reloads_total",
            r#"result="error""#,
        ) == 2.0
    });
    assert_eq!(upstream_saw(&gw.get("/api/x", &[]))["backend"], "b");
    assert!(
        gw.proc
            .log_text()
            .contains("unknown upstream `nonexistent`"),
        "the log says why"
    );
}

#[test]
fn admin_listener_serves_health_readiness_and_metrics() {
    let backend = Backend::start("a");
    let gw = Gateway::start(&config(&one_upstream(&backend), API_ROUTE));
    assert_eq!(get(gw.admin_port, "/healthz", &[]).json()["status"], "ok");
    assert_eq!(get(gw.admin_port, "/readyz", &[]).status, 200);
    let m = gw.metrics();
    for name in [
        "portcullis_config_reloads_total",
        "portcullis_header_spoof_stripped_total",
        "portcullis_upstream_health",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics");
    }
    gw.get("/api/x", &[]);
    let m = gw.metrics();
    assert_eq!(
        metric(
            &m,
            "portcullis_requests_total",
            r#"route="api",status="401""#
        ),
        1.0
    );
    assert!(m.contains(r#"portcullis_request_duration_seconds_count{route="api"} 1"#));
}

#[test]
fn access_log_never_contains_the_token() {
    let backend = Backend::start("a");
    let gw = Gateway::start(&config(&one_upstream(&backend), API_ROUTE));
    let token = sign(Algorithm::HS256, &claims("u"));
    gw.get("/api/x", &[("Authorization", &bearer(&token))]);
    gw.get(
        &format!("/api/y?token={token}"),
        &[("Authorization", "Bearer garbage.tok.en")],
    );
    wait_until("access events", Duration::from_secs(5), || {
        gw.proc.log_text().matches("portcullis::access").count() >= 2
    });
    let log = gw.proc.log_text();
    let signature = token.rsplit('.').next().unwrap();
    assert!(!log.contains(signature), "token leaked into the log");
    assert!(!log.contains("garbage.tok.en"));
}

#[test]
fn json_logs_carry_one_access_event_with_the_request_id_the_upstream_saw() {
    let backend = Backend::start("a");
    let cfg = config(&one_upstream(&backend), API_ROUTE)
        .replace("listeners:", "log:\n  format: json\nlisteners:");
    let gw = Gateway::start(&cfg);
    let token = bearer(&sign(Algorithm::HS256, &claims("frank")));
    let resp = gw.get("/api/orders?secret=1", &[("Authorization", &token)]);
    let id = upstream_saw(&resp)["headers"]["x-request-id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(resp.header("x-request-id"), Some(id.as_str()));
    let event = || {
        gw.proc
            .log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["target"] == "portcullis::access" && e["request_id"] == id.as_str())
    };
    wait_until("the access event", Duration::from_secs(5), || {
        event().is_some()
    });
    let e = event().unwrap();
    assert_eq!(e["route"], "api");
    assert_eq!(e["status"], 200);
    assert_eq!(e["auth"], "verified");
    assert_eq!(e["path"], "/api/orders", "the query string is never logged");
    assert!(e["latency_ms"].as_f64().unwrap() >= 0.0);
}
