//! Observability end to end: a real gateway's `/metrics` passes `promtool check
//! metrics`, the alert rules (`config/prometheus-alerts.yml`) and the Grafana
//! dashboard (`config/grafana-dashboard.json`) only query metrics the gateway
//! really exports, the rules fire as intended (`promtool test rules`), and each
//! proxy metric moves by exactly what a request should add.
//!
//! These tests need `promtool` (Debian's `prometheus` package, installed by
//! `scripts/setup.sh`); without it they fail and say so.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn alerts_path() -> String {
    format!("{ROOT}/config/prometheus-alerts.yml")
}

fn dashboard_path() -> String {
    format!("{ROOT}/config/grafana-dashboard.json")
}

/// Runs `promtool` with `args` (and `stdin` as its input); fails the test when
/// promtool is not installed.
fn promtool(args: &[&str], stdin: Option<&Path>) -> Output {
    let mut cmd = Command::new("promtool");
    cmd.args(args);
    cmd.stdin(match stdin {
        Some(path) => Stdio::from(std::fs::File::open(path).expect("open promtool input")),
        None => Stdio::null(),
    });
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed (it comes with Debian's `prometheus` package): \
             run `bash scripts/setup.sh` as root, then re-run the tests"
        ),
        Err(e) => panic!("could not run promtool: {e}"),
    }
}

fn assert_promtool_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "promtool {what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three routes: `api` (token required), `plug` (token + the claims-to-headers
/// plugin) and `open` (no auth), all to one demo backend.
fn config(backend: &Backend) -> String {
    config_with(backend, "")
}

/// [`config`] with more `listeners` lines (a TLS listener).
fn config_with(backend: &Backend, listeners: &str) -> String {
    format!(
        r#"listeners:
  proxy: "{{PROXY}}"
  admin: "{{ADMIN}}"
  threads: 1
  grace_period: 0s
{listeners}jwt:
  issuer: test-issuer
  audience: test-aud
  leeway: 0s
  keys:
    - kid: hs
      algorithms: [HS256]
      secret: "{{SECRET}}"
  # An identity provider that is down: its fetch metrics are exported.
  issuers:
    - name: idp
      issuer: https://idp.invalid
      jwks_uri: http://127.0.0.1:9/jwks
      allow_http: loopback
      audiences: [test-aud]
      startup: lazy
      min_refresh: 1s
upstreams:
  main:
    targets: ["{backend}"]
plugins:
  identity:
    module: {out}/claims-to-headers.wasm
    allow_headers: [X-User-Id, X-User-Role]
    timeout: 2s
    config:
      headers:
        - {{ header: X-User-Id, claim: sub, required: true }}
        - {{ header: X-User-Role, claim: role }}
routes:
  - name: api
    match: {{ path_prefix: /api }}
    upstream: main
  - name: plug
    match: {{ path_prefix: /plug }}
    upstream: main
    plugins: [identity]
  - name: open
    match: {{ path_prefix: /open }}
    upstream: main
    auth: none
"#,
        backend = backend.addr(),
        out = plugins_out(),
    )
}

/// A TLS listener on a free port with a certificate made for the test,
/// its files in `dir`.
fn tls_listener(dir: &Path) -> String {
    let (cert, key) = common::pki::Ca::new("Observability CA")
        .server(&["localhost"])
        .write(dir, "localhost");
    format!(
        "  tls:\n    listen: \"127.0.0.1:{}\"\n    cert_file: {}\n    key_file: {}\n",
        free_port(),
        cert.display(),
        key.display()
    )
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "role": "reader", "iss": "test-issuer", "aud": "test-aud",
           "iat": now(), "exp": now() + 600})
}

fn sign(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hs".into());
    encode(
        &header,
        claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `token` with its payload swapped for another subject's: the signature no
/// longer matches.
fn forged(token: &str) -> String {
    use base64::Engine as _;
    let payload = serde_json::to_vec(&claims("admin")).unwrap();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{payload}.{}", parts[0], parts[2])
}

fn get_status(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> u16 {
    gw.get(path, headers).status
}

/// A gateway that has seen one request of every kind the proxy counts, with
/// a TLS listener (whose certificate-expiry gauge the alerts read).
struct Exercised {
    gw: Gateway,
    _backend: Backend,
    _tls: tempfile::TempDir,
}

fn exercised_gateway() -> Exercised {
    let backend = Backend::start("obs");
    let tls = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config_with(&backend, &tls_listener(tls.path())));
    let good = sign(&claims("alice"));
    let mut expired = claims("u");
    expired["exp"] = json!(now() - 60);
    let mut wrong_iss = claims("u");
    wrong_iss["iss"] = json!("someone-else");
    let mut wrong_aud = claims("u");
    wrong_aud["aud"] = json!("not-us");

    let ok = bearer(&good);
    assert_eq!(get_status(&gw, "/api/a", &[("Authorization", &ok)]), 200);
    assert_eq!(get_status(&gw, "/api/b", &[("Authorization", &ok)]), 200);
    assert_eq!(get_status(&gw, "/plug/a", &[("Authorization", &ok)]), 200);
    for bad in [
        bearer(&sign(&expired)),
        bearer(&sign(&wrong_iss)),
        bearer(&sign(&wrong_aud)),
        bearer(&forged(&good)),
        "Bearer not-a-jwt".to_owned(),
    ] {
        assert_eq!(get_status(&gw, "/api/x", &[("Authorization", &bad)]), 401);
    }
    assert_eq!(get_status(&gw, "/api/x", &[]), 401, "no token");
    assert_eq!(
        get_status(&gw, "/open/x", &[("X-User-Id", "admin")]),
        200,
        "spoofed identity header on an open route"
    );
    assert_eq!(get_status(&gw, "/nowhere", &[]), 404);
    // Metrics are recorded when a request ends; wait until the last one shows.
    wait_until("the 404 to be counted", Duration::from_secs(10), || {
        metric(
            &gw.metrics(),
            "portcullis_requests_total",
            r#"route="none",status="404""#,
        ) >= 1.0
    });
    Exercised {
        gw,
        _backend: backend,
        _tls: tls,
    }
}

/// Sample names in a text exposition (`name{…} v` or `name v`).
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            l.split(['{', ' '])
                .next()
                .expect("split yields one item")
                .to_owned()
        })
        .collect()
}

/// `portcullis_*` identifiers in a PromQL expression.
fn metric_names_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("portcullis_") {
        let start = i + pos;
        let boundary = start == 0 || {
            let c = bytes[start - 1];
            !(c.is_ascii_alphanumeric() || c == b'_' || c == b':')
        };
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// Every `expr` of the rules file (parsed as YAML, not grepped: the
/// annotations name metrics too).
fn alert_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(alerts_path()).expect("read alert rules");
    let doc: Value = serde_saphyr::from_str(&text).expect("alert rules are YAML");
    let mut out = Vec::new();
    for group in doc["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .expect("alert or record name")
                .to_owned();
            let expr = rule["expr"].as_str().expect("expr is a string").to_owned();
            out.push((name, expr));
        }
    }
    out
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(dashboard_path()).expect("read dashboard");
    serde_json::from_str(&text).expect("the dashboard is valid JSON")
}

/// Every PromQL query string in the dashboard: panel targets, annotations and
/// template-variable queries (`label_values(metric, label)` → the metric).
fn dashboard_exprs(dash: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let here = format!("{path}/{k}");
                    match (k.as_str(), child) {
                        ("expr", Value::String(s)) | ("definition", Value::String(s)) => {
                            out.push((here, s.clone()))
                        }
                        _ => walk(child, &here, out),
                    }
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, &format!("{path}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dash, "", &mut out);
    out
}

/// A dashboard query with Grafana's variables replaced, so promtool can parse it.
fn concrete(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__range", "1h")
        .replace("$__interval", "1m")
        .replace("$job", ".*")
        .replace("$instance", ".*")
        .replace("$route", ".*")
        .replace("$plugin", ".*")
}

#[test]
fn metrics_exposition_passes_promtool_lint() {
    let ex = exercised_gateway();
    let text = ex.gw.metrics();
    // The traffic above touched every proxy metric family.
    for family in [
        "portcullis_requests_total",
        "portcullis_request_duration_seconds_bucket",
        "portcullis_jwt_validations_total",
        "portcullis_header_spoof_stripped_total",
        "portcullis_plugin_invocations_total",
        "portcullis_plugin_duration_seconds_bucket",
        "portcullis_upstream_health",
        "portcullis_config_reloads_total",
        "portcullis_auth_refresh_total",
        "portcullis_auth_logout_total",
        "portcullis_sessions_created_total",
        "portcullis_sessions_revoked_total",
        "portcullis_sessions_active",
        "portcullis_refresh_token_reuse_detected_total",
        "portcullis_revocation_propagation_seconds_bucket",
    ] {
        assert!(
            exported_names(&text).contains(family),
            "{family} missing from /metrics:\n{text}"
        );
    }
    let file = ex.gw.dir.path().join("metrics.prom");
    std::fs::write(&file, &text).expect("write exposition");
    let out = promtool(&["check", "metrics"], Some(&file));
    assert_promtool_ok("check metrics", &out);
    // promtool prints lint findings even when they are not fatal.
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.trim().is_empty(),
        "promtool check metrics reported:\n{report}"
    );
    // Label values stay bounded: no subject or token ever appears.
    assert!(!text.contains("alice"), "a subject leaked into /metrics");
    assert!(
        !text.contains("/api/") && !text.contains("nowhere"),
        "a path leaked into /metrics"
    );
}

#[test]
fn alert_rules_pass_promtool_and_query_only_exported_metrics() {
    let out = promtool(&["check", "rules", &alerts_path()], None);
    assert_promtool_ok("check rules", &out);

    let ex = exercised_gateway();
    let exported = exported_names(&ex.gw.metrics());
    let exprs = alert_exprs();
    assert!(exprs.len() >= 8, "expected the full rule set");
    for (alert, expr) in &exprs {
        let names = metric_names_in(expr);
        assert!(!names.is_empty(), "{alert} queries no portcullis_ metric");
        for name in names {
            assert!(
                exported.contains(&name),
                "{alert} queries `{name}`, which the gateway does not export; exported: {exported:?}"
            );
        }
    }
    let text = std::fs::read_to_string(alerts_path()).unwrap();
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    for group in doc["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap_or("?");
            assert!(rule["for"].is_string(), "{name}: no `for:`");
            assert!(
                matches!(
                    rule["labels"]["severity"].as_str(),
                    Some("warning" | "critical")
                ),
                "{name}: severity label"
            );
            for annotation in ["summary", "description"] {
                assert!(
                    rule["annotations"][annotation]
                        .as_str()
                        .is_some_and(|s| s.len() > 20),
                    "{name}: {annotation} annotation"
                );
            }
        }
    }
}

/// `promtool test rules`: each alert fires on the series it is meant for and
/// stays quiet on healthy ones.
#[test]
fn alert_rules_fire_on_the_conditions_they_describe() {
    let dir = tempfile::tempdir().unwrap();
    // promtool compares annotations too; test a copy without them (JSON is YAML).
    let text = std::fs::read_to_string(alerts_path()).unwrap();
    let mut doc: Value = serde_saphyr::from_str(&text).unwrap();
    for group in doc["groups"].as_array_mut().unwrap() {
        for rule in group["rules"].as_array_mut().unwrap() {
            rule.as_object_mut().unwrap().remove("annotations");
        }
    }
    let rules = dir.path().join("alerts.yml");
    std::fs::write(&rules, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let tests = format!(
        r#"rule_files:
  - {rules}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # 50 checks/s on api, 30% failing with a bad signature from minute 10 on.
      - series: 'portcullis_jwt_validations_total{{job="gw",instance="a",route="api",result="ok",reason="cached"}}'
        values: '0+3000x10 30000+2100x30'
      - series: 'portcullis_jwt_validations_total{{job="gw",instance="a",route="api",result="fail",reason="bad_signature"}}'
        values: '0x10 0+900x30'
      # Clients without a token do not count as failures.
      - series: 'portcullis_jwt_validations_total{{job="gw",instance="a",route="web",result="ok",reason="verified"}}'
        values: '0+600x40'
      - series: 'portcullis_jwt_validations_total{{job="gw",instance="a",route="web",result="fail",reason="missing"}}'
        values: '0+3000x40'
      - series: 'portcullis_refresh_token_reuse_detected_total{{job="gw",instance="a"}}'
        values: '0x20 1x20'
      - series: 'portcullis_auth_refresh_total{{job="gw",instance="a",result="unavailable"}}'
        values: '0x20 0+5x20'
      # The breaker opens at minute 20 and alternates open/probing until 40.
      - series: 'portcullis_session_store_breaker_state{{job="gw",instance="a"}}'
        values: '0x20 1 2 1 2 1 2 1 2 1 2 1 2 1 2 1 2 1 2 1 2'
      # A blip: open for less than a minute.
      - series: 'portcullis_session_store_breaker_state{{job="gw",instance="b"}}'
        values: '0x10 1 0x29'
      - series: 'portcullis_upstream_health{{job="gw",instance="a",upstream="main",target="10.0.0.1:80"}}'
        values: '1x20 0x20'
      - series: 'portcullis_upstream_health{{job="gw",instance="a",upstream="main",target="10.0.0.2:80"}}'
        values: '1x40'
      - series: 'portcullis_config_reloads_total{{job="gw",instance="a",result="error"}}'
        values: '0x20 1x20'
      - series: 'portcullis_plugin_invocations_total{{job="gw",instance="a",plugin="identity",result="trap"}}'
        values: '0x20 0+60x20'
      - series: 'portcullis_plugin_invocations_total{{job="gw",instance="a",plugin="identity",result="ok"}}'
        values: '0+600x40'
      - series: 'portcullis_requests_total{{job="gw",instance="a",route="api",status="200"}}'
        values: '0+6000x40'
      - series: 'portcullis_requests_total{{job="gw",instance="a",route="api",status="502"}}'
        values: '0x20 0+600x20'
    alert_rule_test:
      - eval_time: 9m
        alertname: PortcullisTokenValidationFailureSpike
        exp_alerts: []
      - eval_time: 35m
        alertname: PortcullisTokenValidationFailureSpike
        exp_alerts:
          - exp_labels: {{ severity: warning, job: gw, instance: a, route: api }}
      - eval_time: 35m
        alertname: PortcullisTokenForgeryAttempts
        exp_alerts:
          - exp_labels: {{ severity: warning, job: gw, instance: a, route: api }}
      - eval_time: 19m
        alertname: PortcullisRefreshTokenReuseDetected
        exp_alerts: []
      - eval_time: 22m
        alertname: PortcullisRefreshTokenReuseDetected
        exp_alerts:
          - exp_labels: {{ severity: critical, job: gw, instance: a }}
      - eval_time: 30m
        alertname: PortcullisRefreshTokenReuseDetected
        exp_alerts: []
      - eval_time: 25m
        alertname: PortcullisSessionStoreUnavailable
        exp_alerts:
          - exp_labels: {{ severity: critical, job: gw, instance: a, result: unavailable }}
      - eval_time: 20m
        alertname: PortcullisSessionStoreBreakerOpen
        exp_alerts: []
      - eval_time: 25m
        alertname: PortcullisSessionStoreBreakerOpen
        exp_alerts:
          - exp_labels: {{ severity: critical, job: gw, instance: a }}
      - eval_time: 11m
        alertname: PortcullisSessionStoreBreakerOpen
        exp_alerts: []
      - eval_time: 25m
        alertname: PortcullisUpstreamUnhealthy
        exp_alerts:
          - exp_labels: {{ severity: warning, job: gw, instance: a, upstream: main, target: "10.0.0.1:80" }}
      - eval_time: 25m
        alertname: PortcullisUpstreamDown
        exp_alerts: []
      - eval_time: 21m
        alertname: PortcullisConfigReloadFailed
        exp_alerts:
          - exp_labels: {{ severity: warning, job: gw, instance: a, result: error }}
      - eval_time: 30m
        alertname: PortcullisPluginErrors
        exp_alerts:
          - exp_labels: {{ severity: warning, job: gw, instance: a, plugin: identity, result: trap }}
      - eval_time: 19m
        alertname: PortcullisHigh5xxRatio
        exp_alerts: []
      - eval_time: 30m
        alertname: PortcullisHigh5xxRatio
        exp_alerts:
          - exp_labels: {{ severity: critical, job: gw, instance: a, route: api }}
  - interval: 1m
    input_series:
      # Revocations arrive ~2 s after they were made elsewhere.
      - series: 'portcullis_revocation_propagation_seconds_bucket{{job="gw",instance="b",le="1"}}'
        values: '0x40'
      - series: 'portcullis_revocation_propagation_seconds_bucket{{job="gw",instance="b",le="2.5"}}'
        values: '0+10x40'
      - series: 'portcullis_revocation_propagation_seconds_bucket{{job="gw",instance="b",le="+Inf"}}'
        values: '0+10x40'
      - series: 'portcullis_revocation_propagation_seconds_count{{job="gw",instance="b"}}'
        values: '0+10x40'
      - series: 'portcullis_upstream_health{{job="gw",instance="b",upstream="solo",target="10.0.0.3:80"}}'
        values: '0x10'
      # Certificates 10 days, 1 day and 300 days from their end.
      - series: 'portcullis_tls_certificate_expiry_seconds{{job="gw",instance="c",certificate="soon.crt"}}'
        values: '864000-60x120'
      - series: 'portcullis_tls_certificate_expiry_seconds{{job="gw",instance="c",certificate="late.crt"}}'
        values: '86400-60x120'
      - series: 'portcullis_tls_certificate_expiry_seconds{{job="gw",instance="c",certificate="fresh.crt"}}'
        values: '25920000-60x120'
    alert_rule_test:
      - eval_time: 30m
        alertname: PortcullisRevocationPropagationSlow
        exp_alerts:
          - exp_labels: {{ severity: warning, job: gw, instance: b }}
      - eval_time: 5m
        alertname: PortcullisUpstreamDown
        exp_alerts:
          - exp_labels: {{ severity: critical, job: gw, instance: b, upstream: solo }}
      - eval_time: 59m
        alertname: PortcullisTlsCertificateExpiresSoon
        exp_alerts: []
      - eval_time: 61m
        alertname: PortcullisTlsCertificateExpiresSoon
        exp_alerts:
          - exp_labels: {{ severity: warning, job: gw, instance: c, certificate: soon.crt }}
      - eval_time: 4m
        alertname: PortcullisTlsCertificateExpiring
        exp_alerts: []
      - eval_time: 61m
        alertname: PortcullisTlsCertificateExpiring
        exp_alerts:
          - exp_labels: {{ severity: critical, job: gw, instance: c, certificate: late.crt }}
"#,
        rules = rules.display()
    );
    let file = dir.path().join("alerts_test.yml");
    std::fs::write(&file, tests).unwrap();
    let out = promtool(&["test", "rules", file.to_str().unwrap()], None);
    assert_promtool_ok("test rules", &out);
}

#[test]
fn proxy_metrics_move_by_exactly_what_each_request_adds() {
    let backend = Backend::start("obs");
    let gw = Gateway::start(&config(&backend));
    let good = sign(&claims("bob"));
    let ok = bearer(&good);
    let bad = bearer(&forged(&good));

    // Polls until `name{labels}` reaches `want`, then checks it did not overshoot.
    let expect = |name: &str, labels: &str, want: f64| {
        wait_until(
            &format!("{name}{{{labels}}} to reach {want}"),
            Duration::from_secs(10),
            || metric(&gw.metrics(), name, labels) >= want,
        );
        let got = metric(&gw.metrics(), name, labels);
        assert_eq!(got, want, "{name}{{{labels}}}");
    };
    const V: &str = "portcullis_jwt_validations_total";
    const R: &str = "portcullis_requests_total";
    const D: &str = "portcullis_request_duration_seconds_count";

    // One forged token: one bad_signature failure and one 401, nothing else.
    let before = gw.metrics();
    assert_eq!(gw.get("/api/x", &[("Authorization", &bad)]).status, 401);
    expect(
        V,
        r#"reason="bad_signature",result="fail",route="api""#,
        metric(
            &before,
            V,
            r#"reason="bad_signature",result="fail",route="api""#,
        ) + 1.0,
    );
    expect(R, r#"route="api",status="401""#, 1.0);
    expect(D, r#"route="api""#, 1.0);
    let after = gw.metrics();
    for (labels, v) in [
        (r#"reason="verified",result="ok",route="api""#, 0.0),
        (r#"reason="cached",result="ok",route="api""#, 0.0),
        (r#"reason="missing",result="fail",route="api""#, 0.0),
    ] {
        assert_eq!(metric(&after, V, labels), v, "{labels}");
    }
    assert_eq!(
        metric(&after, R, r#"route="api",status="200""#),
        0.0,
        "a forged token never reaches the upstream"
    );

    // The same forged token again: counted again (failures are not cached).
    assert_eq!(gw.get("/api/x", &[("Authorization", &bad)]).status, 401);
    expect(
        V,
        r#"reason="bad_signature",result="fail",route="api""#,
        2.0,
    );

    // A valid token: verified once, then served from the cache.
    assert_eq!(gw.get("/api/x", &[("Authorization", &ok)]).status, 200);
    expect(V, r#"reason="verified",result="ok",route="api""#, 1.0);
    expect(R, r#"route="api",status="200""#, 1.0);
    assert_eq!(gw.get("/api/y", &[("Authorization", &ok)]).status, 200);
    expect(V, r#"reason="cached",result="ok",route="api""#, 1.0);
    expect(R, r#"route="api",status="200""#, 2.0);
    expect(D, r#"route="api""#, 4.0);

    // Other failure reasons land in their own series.
    let mut expired = claims("bob");
    expired["exp"] = json!(now() - 60);
    assert_eq!(
        gw.get("/api/x", &[("Authorization", &bearer(&sign(&expired)))])
            .status,
        401
    );
    expect(V, r#"reason="expired",result="fail",route="api""#, 1.0);
    assert_eq!(gw.get("/api/x", &[]).status, 401);
    expect(V, r#"reason="missing",result="fail",route="api""#, 1.0);
    expect(R, r#"route="api",status="401""#, 4.0);
    expect(
        V,
        r#"reason="bad_signature",result="fail",route="api""#,
        2.0,
    );

    // A spoofed identity header is stripped (and counted) even with a valid token.
    assert_eq!(
        metric(&gw.metrics(), "portcullis_header_spoof_stripped_total", ""),
        0.0
    );
    assert_eq!(gw.get("/open/x", &[("X-User-Id", "admin")]).status, 200);
    expect("portcullis_header_spoof_stripped_total", "", 1.0);
    expect(R, r#"route="open",status="200""#, 1.0);
    assert_eq!(
        gw.get(
            "/api/z",
            &[("Authorization", &ok), ("X-User-Role", "superuser")]
        )
        .status,
        200
    );
    expect("portcullis_header_spoof_stripped_total", "", 2.0);
    expect(R, r#"route="api",status="200""#, 3.0);

    // The plugin route: one plugin call, timed.
    assert_eq!(gw.get("/plug/x", &[("Authorization", &ok)]).status, 200);
    expect(
        "portcullis_plugin_invocations_total",
        r#"plugin="identity",result="ok""#,
        1.0,
    );
    expect(
        "portcullis_plugin_duration_seconds_count",
        r#"plugin="identity""#,
        1.0,
    );
    expect(R, r#"route="plug",status="200""#, 1.0);

    // No route: a 404 under route="none".
    assert_eq!(gw.get("/nowhere", &[]).status, 404);
    expect(R, r#"route="none",status="404""#, 1.0);

    // Healthy upstream, no reloads.
    let m = gw.metrics();
    let target = format!(r#"target="{}",upstream="main""#, backend.addr());
    assert_eq!(metric(&m, "portcullis_upstream_health", &target), 1.0);
    assert_eq!(
        metric(&m, "portcullis_config_reloads_total", r#"result="error""#),
        0.0
    );
}

#[test]
fn dashboard_parses_and_queries_only_exported_metrics() {
    let dash = dashboard();
    assert!(
        dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion"
    );
    assert_eq!(dash["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(dash["__inputs"][0]["pluginId"], "prometheus");
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "duplicate panel id {id}");
        assert!(p["gridPos"]["w"].is_u64() && p["gridPos"]["h"].is_u64());
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"], "${DS_PROMETHEUS}",
                "panel {}",
                p["title"]
            );
            assert!(
                p["targets"].as_array().is_some_and(|t| !t.is_empty()),
                "panel {} has no query",
                p["title"]
            );
        }
    }
    // The metrics the issue asks to chart are all there.
    let exprs = dashboard_exprs(&dash);
    let mut charted = BTreeSet::new();
    for (_, expr) in &exprs {
        charted.extend(metric_names_in(expr));
    }
    for family in [
        "portcullis_requests_total",
        "portcullis_request_duration_seconds_bucket",
        "portcullis_jwt_validations_total",
        "portcullis_auth_refresh_total",
        "portcullis_auth_logout_total",
        "portcullis_sessions_active",
        "portcullis_sessions_created_total",
        "portcullis_sessions_revoked_total",
        "portcullis_refresh_token_reuse_detected_total",
        "portcullis_revocation_propagation_seconds_bucket",
        "portcullis_plugin_invocations_total",
        "portcullis_plugin_duration_seconds_bucket",
        "portcullis_upstream_health",
        "portcullis_config_reloads_total",
        "portcullis_header_spoof_stripped_total",
    ] {
        assert!(
            charted.contains(family),
            "the dashboard never charts {family}"
        );
    }

    // Every metric a query names exists on a live gateway.
    let ex = exercised_gateway();
    let exported = exported_names(&ex.gw.metrics());
    for (path, expr) in &exprs {
        for name in metric_names_in(expr) {
            assert!(
                exported.contains(&name),
                "{path} queries `{name}`, which the gateway does not export"
            );
        }
    }

    // And every query is valid PromQL (variables replaced): promtool parses
    // them as recording rules.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (path, expr)) in exprs.iter().enumerate() {
        if path.ends_with("/definition") {
            continue; // label_values(...) is Grafana syntax, not PromQL
        }
        let quoted = serde_json::to_string(&concrete(expr)).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {quoted}\n"
        ));
    }
    let file = ex.gw.dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, rules).unwrap();
    let out = promtool(&["check", "rules", file.to_str().unwrap()], None);
    assert_promtool_ok("check rules (dashboard queries)", &out);
}
