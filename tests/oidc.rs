//! Tokens from a real OpenID Provider (`oidc-provider` on loopback, see
//! `common::oidc`) through a real gateway: keys found by OIDC discovery and
//! fetched off the request path, claims reaching the upstream through the
//! claims-to-headers plugin, a rotation picked up without a restart, no
//! cross-issuer key use, and an unreachable provider served stale, then
//! failed closed.

mod common;
#[path = "common/peers.rs"]
mod peers;
#[path = "common/test_ca.rs"]
mod pki;

use std::time::Duration;

use common::oidc::{OidcOptions, OidcProvider, RESOURCE, SVC_ADMIN, SVC_USER};
use common::*;
use serde_json::json;

/// `jwt.issuers` entries for `providers` (name, provider, extra lines).
fn config(backend: &Backend, issuers: &[(&str, &OidcProvider, &str)]) -> String {
    let out = plugins_out();
    let mut entries = String::new();
    for (name, provider, extra) in issuers {
        entries.push_str(&format!(
            r#"    - name: {name}
      issuer: "{issuer}"
      discovery: true
      allow_http: loopback
      audiences: ["{RESOURCE}"]
      min_refresh: 1s
{extra}"#,
            issuer = provider.issuer()
        ));
    }
    format!(
        r#"listeners:
  proxy: "{{PROXY}}"
  admin: "{{ADMIN}}"
  threads: 1
  grace_period: 0s
  drain_window: 0s
jwt:
  issuers:
{entries}upstreams:
  main:
    targets: ["{backend}"]
plugins:
  identity:
    module: {out}/claims-to-headers.wasm
    allow_headers: [X-User-Id, X-User-Role, X-Tenant]
    timeout: 2s
    config:
      headers:
        - {{ header: X-User-Id, claim: sub, required: true }}
        - {{ header: X-User-Role, claim: role }}
        - {{ header: X-Tenant, claim: tenant }}
routes:
  - name: api
    match: {{ path_prefix: /api }}
    upstream: main
    plugins: [identity]
  - name: only-first
    match: {{ path_prefix: /only }}
    upstream: main
    issuers: [{first}]
"#,
        backend = backend.addr(),
        first = issuers[0].0,
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn validations(gw: &Gateway, reason: &str) -> f64 {
    metric(
        &gw.metrics(),
        "portcullis_jwt_validations_total",
        &format!("reason=\"{reason}\",result=\"fail\",route=\"api\""),
    )
}

fn fetches(gw: &Gateway, issuer: &str) -> f64 {
    metric(
        &gw.metrics(),
        "portcullis_jwks_fetch_total",
        &format!("issuer=\"{issuer}\",result=\"ok\""),
    )
}

/// Polls `/readyz` until it reports `status`.
fn wait_ready(gw: &Gateway, ready: bool) {
    let want = if ready { 200 } else { 503 };
    wait_until("readyz", Duration::from_secs(30), || {
        get(gw.admin_port, "/readyz", &[]).status == want
    });
}

#[test]
fn a_providers_token_is_accepted_and_its_claims_reach_the_upstream_through_the_plugin() {
    let provider = OidcProvider::start(OidcOptions::default());
    let backend = Backend::start("oidc");
    let gw = Gateway::start(&config(&backend, &[("corp", &provider, "")]));
    wait_ready(&gw, true);
    let ready = get(gw.admin_port, "/readyz", &[]).json();
    assert_eq!(ready["issuers"]["corp"], "keys_loaded", "{ready}");
    let token = provider.client_credentials(SVC_ADMIN.id, SVC_ADMIN.secret, RESOURCE);
    let resp = gw.get("/api/profile", &[("Authorization", &bearer(&token))]);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = resp.json()["headers"].clone();
    assert_eq!(seen["x-user-id"], SVC_ADMIN.id, "{seen}");
    assert_eq!(seen["x-user-role"], "admin", "{seen}");
    assert_eq!(seen["x-tenant"], SVC_ADMIN.tenant, "{seen}");
    let metrics = gw.metrics();
    assert!(
        metric(&metrics, "portcullis_jwks_keys", "issuer=\"corp\"") >= 1.0,
        "{metrics}"
    );
    assert!(fetches(&gw, "corp") >= 1.0);
    // A token for another audience, and one of an issuer nobody configured.
    let foreign = provider.sign(
        &json!({"iss": "https://elsewhere.example", "aud": RESOURCE, "sub": "x", "exp": now() + 600}),
        None,
    );
    let resp = gw.get("/api/profile", &[("Authorization", &bearer(&foreign))]);
    assert_eq!(resp.status, 401);
    assert_eq!(validations(&gw, "unknown_issuer"), 1.0);
    let other_aud = provider.sign(
        &json!({"iss": provider.issuer(), "aud": "https://other.example", "sub": "x", "exp": now() + 600}),
        None,
    );
    let resp = gw.get("/api/profile", &[("Authorization", &bearer(&other_aud))]);
    assert_eq!(resp.status, 401);
    assert_eq!(validations(&gw, "bad_audience"), 1.0);
}

#[test]
fn a_key_rotated_at_the_provider_is_picked_up_without_a_restart() {
    let provider = OidcProvider::start(OidcOptions::default());
    let backend = Backend::start("oidc");
    let gw = Gateway::start(&config(&backend, &[("corp", &provider, "")]));
    wait_ready(&gw, true);
    let before = fetches(&gw, "corp");
    provider.rotate_dropping_old();
    let token = provider.client_credentials(SVC_USER.id, SVC_USER.secret, RESOURCE);
    let resp = gw.get("/api/profile", &[("Authorization", &bearer(&token))]);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["headers"]["x-user-role"], "user");
    assert!(fetches(&gw, "corp") > before, "the new kid was fetched");
}

#[test]
fn a_token_of_one_issuer_signed_with_another_issuers_key_is_refused() {
    let a = OidcProvider::start(OidcOptions::default());
    let b = OidcProvider::start(OidcOptions::default());
    let backend = Backend::start("oidc");
    let gw = Gateway::start(&config(&backend, &[("a", &a, ""), ("b", &b, "")]));
    wait_ready(&gw, true);
    for (p, client, only_first) in [(&a, SVC_ADMIN, 200), (&b, SVC_USER, 401)] {
        let token = p.client_credentials(client.id, client.secret, RESOURCE);
        let resp = gw.get("/api/x", &[("Authorization", &bearer(&token))]);
        assert_eq!(resp.status, 200, "{}", resp.body);
        // A route that accepts issuer `a` only.
        let resp = gw.get("/only/x", &[("Authorization", &bearer(&token))]);
        assert_eq!(resp.status, only_first, "{}", resp.body);
    }
    // Claims of issuer A, signed by B's (valid, published) key.
    let forged = b.sign(
        &json!({"iss": a.issuer(), "aud": RESOURCE, "sub": "mallory", "exp": now() + 600}),
        None,
    );
    let resp = gw.get("/api/x", &[("Authorization", &bearer(&forged))]);
    assert_eq!(resp.status, 401, "{}", resp.body);
    assert_eq!(validations(&gw, "unknown_kid"), 1.0);
}

#[test]
fn an_unreachable_provider_is_served_stale_then_fails_closed_after_max_stale() {
    let mut provider = OidcProvider::start(OidcOptions::default());
    let backend = Backend::start("oidc");
    let gw = Gateway::start(&config(
        &backend,
        &[("corp", &provider, "      max_stale: 3s\n")],
    ));
    wait_ready(&gw, true);
    let token = provider.client_credentials(SVC_ADMIN.id, SVC_ADMIN.secret, RESOURCE);
    provider.stop();
    // The cached verification and the stale keys keep serving a while.
    let auth = bearer(&token);
    assert_eq!(gw.get("/api/x", &[("Authorization", &auth)]).status, 200);
    // Then the issuer fails closed, and the gateway says it is not ready.
    wait_ready(&gw, false);
    let fresh = gw.get(
        "/api/x",
        &[("Authorization", &bearer(&format!("{token}x")))],
    );
    assert_eq!(fresh.status, 401, "{}", fresh.body);
    // So does the verification cached while the keys were still usable.
    let cached = gw.get("/api/x", &[("Authorization", &auth)]);
    assert_eq!(cached.status, 401, "{}", cached.body);
    let challenge = cached.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("keys are unavailable"), "{challenge}");
    let ready = get(gw.admin_port, "/readyz", &[]).json();
    assert_eq!(ready["issuers"]["corp"], "keys_unavailable", "{ready}");
    // Back: keys are fetched again by the refresh task.
    provider.restart();
    wait_ready(&gw, true);
    assert_eq!(gw.get("/api/x", &[("Authorization", &auth)]).status, 200);
}

/// `portcullis check --online` with `issuers` (name, provider, extra lines):
/// success, and stdout + stderr.
fn check_online(issuers: &[(&str, &OidcProvider, &str)], also: &str) -> (bool, String) {
    let backend = Backend::start("oidc");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut yaml = render(&config(&backend, issuers), free_port(), free_port());
    yaml = yaml.replace("upstreams:\n", &format!("{also}upstreams:\n"));
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "--online", "-c", path.to_str().expect("utf-8")])
        .output()
        .expect("run portcullis check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_online_fetches_every_issuers_keys_and_names_the_one_that_fails() {
    let provider = OidcProvider::start(OidcOptions::default());
    let kid = provider.jwks_kids().remove(0);
    let (ok, text) = check_online(&[("corp", &provider, "")], "");
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("issuer `corp`: OK, 1 usable key ({kid})")),
        "{text}"
    );
    // A second issuer whose JWK Set cannot be fetched: named, exit status 1.
    let dead = "    - name: gone\n      issuer: \"http://127.0.0.1:9/realms/gone\"\n      jwks_uri: \"http://127.0.0.1:9/jwks\"\n      allow_http: loopback\n      audiences: [api]\n";
    let (ok, text) = check_online(&[("corp", &provider, "")], dead);
    assert!(!ok, "{text}");
    assert!(text.contains("issuer `corp`: OK"), "{text}");
    assert!(
        text.contains("issuer `gone`: cannot fetch its keys"),
        "{text}"
    );
}

#[test]
fn an_issuer_on_https_with_a_private_ca_is_trusted_through_its_ca_file_only() {
    // The provider only signs; its discovery document and JWK Set are served
    // over https by a server whose certificate comes from a private CA.
    let provider = OidcProvider::start(OidcOptions::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = pki::TestCa::new("Private IdP CA");
    let (cert, key) = ca.server(&["127.0.0.1"]).write(dir.path(), "idp");
    let ca_file = ca.write(dir.path(), "idp-ca");
    let docroot = dir.path().join("docroot");
    std::fs::create_dir_all(docroot.join(".well-known")).expect("docroot");
    let server = peers::HttpsServer::start_with(dir.path(), &cert, &key, None, Some(&docroot));
    let issuer = format!("https://127.0.0.1:{}", server.port);
    std::fs::write(
        docroot.join(".well-known/openid-configuration"),
        json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}).to_string(),
    )
    .expect("discovery document");
    std::fs::write(docroot.join("jwks"), provider.jwks().to_string()).expect("jwks");
    let token = provider.sign(
        &json!({"iss": issuer, "aud": RESOURCE, "sub": "svc", "iat": now(), "exp": now() + 600}),
        None,
    );
    let backend = Backend::start("oidc");
    let yaml = |extra: &str| {
        format!(
            "listeners:\n  proxy: \"{{PROXY}}\"\n  admin: \"{{ADMIN}}\"\n  threads: 1\n  grace_period: 0s\n  drain_window: 0s\njwt:\n  issuers:\n    - name: private\n      issuer: \"{issuer}\"\n      discovery: true\n      audiences: [\"{RESOURCE}\"]\n      min_refresh: 1s\n{extra}upstreams:\n  main:\n    targets: [\"{}\"]\nroutes:\n  - name: api\n    match: {{ path_prefix: /api }}\n    upstream: main\n",
            backend.addr()
        )
    };
    let trusting = Gateway::start(&yaml(&format!(
        "      ca_file: \"{}\"\n",
        ca_file.display()
    )));
    wait_ready(&trusting, true);
    let auth = bearer(&token);
    let resp = trusting.get("/api/x", &[("Authorization", &auth)]);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(server.requests().iter().any(|r| r.starts_with("GET /jwks")));

    // Without `ca_file` the system's roots do not know the private CA: the
    // issuer fails closed and the log says why.
    let default_roots = Gateway::start(&yaml(""));
    wait_until(
        "the failed fetch to be logged",
        Duration::from_secs(30),
        || {
            default_roots
                .proc
                .log_text()
                .contains("cannot fetch the issuer's signing keys")
        },
    );
    let log = default_roots.proc.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("cannot fetch the issuer's signing keys"))
        .expect("the failure line");
    assert!(
        line.to_lowercase().contains("certificate") || line.contains("Tls"),
        "{line}"
    );
    assert_eq!(get(default_roots.admin_port, "/readyz", &[]).status, 503);
    let resp = default_roots.get("/api/x", &[("Authorization", &auth)]);
    assert_eq!(resp.status, 401, "{}", resp.body);
    assert_eq!(validations(&default_roots, "keys_unavailable"), 1.0);
}
