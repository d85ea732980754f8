//! Tracing spans end to end: a real gateway process with `log.spans` on or
//! off, the demo backend as upstream, the `claims-to-headers` plugin on the
//! route, and the gateway's log file read back line by line.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// An HS256 token signed with the test secret; `exp_in` seconds from now.
fn token(sub: &str, exp_in: i64) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hs".into());
    let claims = json!({"sub": sub, "role": "reader", "exp": now() + exp_in});
    encode(
        &header,
        &claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

/// The same claims as `token`, signed with a key the gateway does not know.
fn forged(sub: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hs".into());
    let claims = json!({"sub": sub, "role": "admin", "exp": now() + 600});
    encode(
        &header,
        &claims,
        &EncodingKey::from_secret(b"not-the-gateway-secret-0123456789abcdef"),
    )
    .unwrap()
}

/// A gateway config: `log` section as given, one `/api` route behind
/// `claims-to-headers`.
fn config(backend: &Backend, log: &str) -> String {
    config_with(backend, log, "", "")
}

/// [`config`] with `first_routes` ahead of the `/api` route and `tail`
/// (further sections) at the end.
fn config_with(backend: &Backend, log: &str, first_routes: &str, tail: &str) -> String {
    format!(
        "log:
{log}listeners:
  proxy: \"{{PROXY}}\"
  admin: \"{{ADMIN}}\"
  threads: 2
  grace_period: 0s
jwt:
  keys:
    - kid: hs
      algorithms: [HS256]
      secret: \"{{SECRET}}\"
      sign: true
upstreams:
  main:
    targets: [\"{backend}\"]
plugins:
  identity:
    module: {out}/claims-to-headers.wasm
    timeout: 2s
    allow_headers: [X-User-Id, X-User-Role]
    config:
      headers:
        - {{ header: X-User-Id, claim: sub, required: true }}
        - {{ header: X-User-Role, claim: role }}
routes:
{first_routes}  - name: api
    match: {{ path_prefix: /api }}
    upstream: main
    plugins: [identity]
{tail}",
        backend = backend.addr(),
        out = plugins_out(),
    )
}

const JSON_SPANS: &str = "  format: json\n  spans: true\n";

/// Every JSON line of the gateway's log.
fn json_lines(gw: &Gateway) -> Vec<Value> {
    gw.proc
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

fn is_access_event(line: &Value, request_id: &str) -> bool {
    line["target"] == "portcullis::access" && line["request_id"] == request_id
}

/// A span-close record: its span's name and fields, the `request_id` of
/// the `request` span it belongs to, and its path from the root span.
///
/// The JSON formatter puts the closing span under `span` and the spans above
/// it under `spans`, so the `request_id` is in `spans[0]`, or in `span` for
/// the `request` span itself.
#[derive(Debug, Clone)]
struct Closed {
    name: String,
    fields: Value,
    request_id: String,
    path: Vec<String>,
    line: usize,
}

fn closed_spans(lines: &[Value]) -> Vec<Closed> {
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l["target"] == "portcullis::span" && l["message"] == "close")
        .map(|(i, l)| {
            let above = l["spans"].as_array().cloned().unwrap_or_default();
            let root = above.first().unwrap_or(&l["span"]);
            let name = l["span"]["name"].as_str().unwrap_or("").to_owned();
            let mut path: Vec<String> = above
                .iter()
                .map(|s| s["name"].as_str().unwrap_or("").to_owned())
                .collect();
            path.push(name.clone());
            Closed {
                name,
                fields: l["span"].clone(),
                request_id: root["request_id"].as_str().unwrap_or("").to_owned(),
                path,
                line: i,
            }
        })
        .collect()
}

/// The close records of one request, by span name; fails on a duplicate.
fn spans_of(lines: &[Value], request_id: &str) -> BTreeMap<String, Closed> {
    let mut by_name = BTreeMap::new();
    for c in closed_spans(lines)
        .into_iter()
        .filter(|c| c.request_id == request_id)
    {
        let name = c.name.clone();
        assert!(
            by_name.insert(name.clone(), c).is_none(),
            "span `{name}` closed twice for request {request_id}"
        );
    }
    by_name
}

/// Waits (bounded) until `ready` holds for the log's JSON lines.
fn wait_for_lines(gw: &Gateway, what: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    wait_for_log(gw, what, |_| ready(&json_lines(gw)));
    json_lines(gw)
}

/// Polls the log (bounded) until `ready` holds; shows the log if it never does.
fn wait_for_log(gw: &Gateway, what: &str, ready: impl Fn(&str) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if ready(&gw.proc.log_text()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "timed out waiting for {what}; the log:\n{}",
        gw.proc.log_text()
    );
}

fn assert_timed(c: &Closed, lines: &[Value]) {
    let line = &lines[c.line];
    for key in ["time.busy", "time.idle"] {
        assert!(
            line[key].as_str().is_some_and(|t| !t.is_empty()),
            "the `{}` close record has no {key}: {line}",
            c.name
        );
    }
}

#[test]
fn json_logs_with_spans_on_trace_one_request_through_verification_plugins_and_upstream_under_one_request_id(
) {
    let backend = Backend::start("a");
    let gw = Gateway::start(&config(&backend, JSON_SPANS));
    let jwt = token("ada", 600);
    let resp = gw.get(
        "/api/orders?page=2",
        &[("Authorization", &format!("Bearer {jwt}"))],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = resp.json()["headers"].clone();
    assert_eq!(seen["x-user-id"], "ada", "the plugin ran");
    let id = seen["x-request-id"]
        .as_str()
        .expect("the upstream saw a request id")
        .to_owned();
    assert_eq!(resp.header("x-request-id"), Some(id.as_str()));

    // `request` closes last, after the access event it parents.
    let lines = wait_for_lines(&gw, "the request span to close", |lines| {
        lines.iter().any(|l| is_access_event(l, &id))
            && spans_of(lines, &id).contains_key("request")
    });
    let spans = spans_of(&lines, &id);
    let names: Vec<&str> = spans.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "jwt_verify",
            "plugin",
            "plugin_chain",
            "request",
            "upstream"
        ],
        "one close record per span, all under request id {id}"
    );
    for c in spans.values() {
        assert_timed(c, &lines);
    }

    let request = &spans["request"];
    assert_eq!(request.fields["request_id"], id.as_str());
    assert_eq!(request.fields["method"], "GET");
    assert_eq!(request.fields["route"], "api");
    assert_eq!(request.path, ["request"]);

    let jwt_verify = &spans["jwt_verify"];
    assert_eq!(jwt_verify.path, ["request", "jwt_verify"]);
    assert_eq!(jwt_verify.fields["result"], "ok");
    assert_eq!(jwt_verify.fields["cached"], false);

    let chain = &spans["plugin_chain"];
    assert_eq!(chain.path, ["request", "plugin_chain"]);
    assert_eq!(chain.fields["plugins"], 1);
    assert_eq!(chain.fields["outcome"], "continue");

    let plugin = &spans["plugin"];
    assert_eq!(plugin.path, ["request", "plugin_chain", "plugin"]);
    assert_eq!(plugin.fields["plugin"], "identity");
    assert_eq!(plugin.fields["result"], "ok");

    let upstream = &spans["upstream"];
    assert_eq!(upstream.path, ["request", "upstream"]);
    assert_eq!(upstream.fields["target"], backend.addr().as_str());
    assert_eq!(upstream.fields["status"], 200);
    assert!(
        upstream.fields.get("error").is_none(),
        "{}",
        upstream.fields
    );

    let access = lines
        .iter()
        .position(|l| is_access_event(l, &id))
        .expect("the access event");
    assert_eq!(
        lines[access]["span"]["request_id"],
        id.as_str(),
        "the access event carries the request span"
    );
    assert!(
        upstream.line < access && access < request.line,
        "upstream closes before the access event, request after it"
    );

    let log = gw.proc.log_text();
    assert!(!log.contains(&jwt), "the token leaked into the log");
    assert!(
        !log.contains("page=2"),
        "the query string leaked into the log"
    );
}

#[test]
fn a_forged_or_expired_token_gives_a_failed_jwt_verify_span_no_upstream_span_and_never_logs_the_token(
) {
    let backend = Backend::start("a");
    let gw = Gateway::start(&config(&backend, JSON_SPANS));
    let expired = token("ada", -3600);
    let forged = forged("mallory");
    let cases = [
        ("trace-expired-1", &expired, "expired"),
        ("trace-forged-1", &forged, "bad_signature"),
    ];
    for (id, jwt, _) in cases {
        let resp = gw.get(
            "/api/orders",
            &[
                ("Authorization", &format!("Bearer {jwt}")),
                ("X-Request-Id", id),
            ],
        );
        assert_eq!(resp.status, 401, "{}", resp.body);
        assert_eq!(resp.header("x-request-id"), Some(id));
    }

    let lines = wait_for_lines(&gw, "both request spans to close", |lines| {
        cases
            .iter()
            .all(|(id, _, _)| spans_of(lines, id).contains_key("request"))
    });
    for (id, _, reason) in cases {
        let spans = spans_of(&lines, id);
        let names: Vec<&str> = spans.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["jwt_verify", "request"],
            "{id}: no plugin chain, no upstream leg"
        );
        let jwt_verify = &spans["jwt_verify"];
        assert_eq!(jwt_verify.fields["result"], "fail", "{id}");
        assert_eq!(jwt_verify.fields["reason"], reason, "{id}");
        assert_timed(jwt_verify, &lines);
        assert!(
            lines.iter().any(|l| is_access_event(l, id)
                && l["status"] == 401
                && l["reason"] == reason
                && l["span"]["request_id"] == id),
            "{id}: the access event with the same reason"
        );
    }

    let log = gw.proc.log_text();
    for jwt in [&expired, &forged] {
        let signature = jwt.rsplit('.').next().unwrap();
        let payload = jwt.split('.').nth(1).unwrap();
        assert!(!log.contains(signature), "a token leaked: {log}");
        assert!(!log.contains(payload), "a token payload leaked: {log}");
    }
    assert!(!log.contains("mallory"), "claims never reach the log");
}

#[test]
fn with_spans_off_by_default_the_same_request_logs_the_access_event_but_no_span_records() {
    let backend = Backend::start("a");
    let gw = Gateway::start(&config(&backend, "  format: json\n"));
    let id = "trace-off-1";
    let resp = gw.get(
        "/api/orders",
        &[
            ("Authorization", &format!("Bearer {}", token("ada", 600))),
            ("X-Request-Id", id),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["headers"]["x-request-id"], id);

    let lines = wait_for_lines(&gw, "the access event", |lines| {
        lines.iter().any(|l| is_access_event(l, id))
    });
    let access = lines.iter().find(|l| is_access_event(l, id)).unwrap();
    assert_eq!(access["status"], 200);
    assert!(
        access.get("span").is_none() && access.get("spans").is_none(),
        "no span context without spans: {access}"
    );
    assert!(
        !lines.iter().any(|l| l["target"] == "portcullis::span"),
        "span records although log.spans is off"
    );
}

/// Removes ANSI colour sequences (the pretty format colours its output).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn pretty_logs_with_spans_on_print_span_close_lines_with_timings_inside_the_request_span() {
    let backend = Backend::start("a");
    let gw = Gateway::start(&config(&backend, "  format: pretty\n  spans: true\n"));
    let id = "trace-pretty-1";
    let resp = gw.get(
        "/api/orders",
        &[
            ("Authorization", &format!("Bearer {}", token("ada", 600))),
            ("X-Request-Id", id),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);

    // `&str` fields print quoted, `request_id` (recorded with `%`) does not.
    let request = format!("request{{request_id={id} method=\"GET\" route=\"api\"}}");
    let close_of = |span: &str| {
        let prefix = if span == "request" {
            format!("{request}: portcullis::span: close")
        } else {
            format!("{request}:{span}")
        };
        strip_ansi(&gw.proc.log_text())
            .lines()
            .find(|l| l.contains(&prefix) && l.contains("close time.busy="))
            .map(str::to_owned)
    };
    wait_for_log(&gw, "the request span to close", |_| {
        close_of("request").is_some()
    });
    let jwt_verify = close_of("jwt_verify{result=\"ok\" cached=false}").expect("jwt_verify closed");
    assert!(jwt_verify.contains("time.idle="), "{jwt_verify}");
    // The chain's outcome is recorded after its plugins closed.
    let plugin = "plugin_chain{plugins=1}:plugin{plugin=\"identity\" result=\"ok\"}";
    assert!(close_of(plugin).is_some(), "no `{plugin}` close line");
    let chain = "plugin_chain{plugins=1 outcome=\"continue\"}";
    assert!(close_of(chain).is_some(), "no `{chain}` close line");
    let upstream = format!("upstream{{target=\"{}\" status=200}}", backend.addr());
    assert!(close_of(&upstream).is_some(), "no `{upstream}` close line");
}

#[test]
fn changing_log_spans_on_reload_is_refused_until_a_restart() {
    let backend = Backend::start("a");
    let gw = Gateway::start(&config(&backend, "  format: json\n"));
    gw.reload_with(&config(&backend, JSON_SPANS));
    wait_for_log(&gw, "the reload warning", |log| {
        log.contains("log settings changed; they apply after a restart")
    });
    let id = "trace-reload-1";
    let resp = gw.get(
        "/api/orders",
        &[
            ("Authorization", &format!("Bearer {}", token("ada", 600))),
            ("X-Request-Id", id),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let lines = wait_for_lines(&gw, "the access event", |lines| {
        lines.iter().any(|l| is_access_event(l, id))
    });
    assert!(
        !lines.iter().any(|l| l["target"] == "portcullis::span"),
        "spans turned on without a restart"
    );
}

/// Runs `portcullis check` on a config whose `log` section is `log`.
fn check(log: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.yaml");
    let yaml = format!(
        "log:\n{log}listeners:\n  proxy: \"127.0.0.1:8080\"\nupstreams:\n  backend:\n    targets: [\"127.0.0.1:3000\"]\nroutes:\n  - name: a\n    match: {{ path_prefix: / }}\n    upstream: backend\n    auth: none\n"
    );
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn check_accepts_log_spans_as_a_boolean_and_points_at_anything_else() {
    let (ok, text) = check("  format: json\n  spans: true\n");
    assert!(ok, "{text}");
    let (ok, text) = check("  spans: sometimes\n");
    assert!(!ok);
    assert!(text.contains("portcullis.yaml:2:10:"), "{text}");
    let (ok, text) = check("  span: true\n");
    assert!(!ok);
    assert!(
        text.contains("portcullis.yaml:2:3: unknown field `span`") && text.contains("spans"),
        "{text}"
    );
}

#[test]
fn a_login_route_traces_its_own_upstream_leg_and_never_logs_the_tokens_it_issues() {
    let backend = Backend::start("a");
    let login_route = "  - name: register
    match: { path: /api/auth/register, methods: [POST] }
    upstream: main
    auth: none
    login:
      subject: /user/id
      claims: { role: /user/role }
";
    let sessions = "sessions:
  store: \"sqlite:sessions.db\"
  refresh_secret: \"refresh-secret-0123456789-0123456789-abcdef\"
";
    let cfg = config_with(&backend, JSON_SPANS, login_route, sessions);
    let gw = Gateway::start(&cfg);
    let id = "trace-login-1";
    let password = "correct-horse-battery-staple";
    let resp = request(
        gw.port,
        "POST",
        "/api/auth/register",
        &[("X-Request-Id", id)],
        Some(&json!({"name": "Ada", "email": "ada@example.com", "password": password}).to_string()),
    );
    assert_eq!(resp.status, 201, "{}", resp.body);
    let body = resp.json();

    let lines = wait_for_lines(&gw, "the request span to close", |lines| {
        spans_of(lines, id).contains_key("request")
    });
    let spans = spans_of(&lines, id);
    let names: Vec<&str> = spans.keys().map(String::as_str).collect();
    assert_eq!(names, ["request", "upstream"], "auth: none, no plugins");
    assert_eq!(spans["request"].fields["route"], "register");
    let upstream = &spans["upstream"];
    assert_eq!(upstream.path, ["request", "upstream"]);
    assert_eq!(upstream.fields["target"], backend.addr().as_str());
    assert_eq!(upstream.fields["status"], 201);

    let log = gw.proc.log_text();
    let issued: Vec<&str> = ["accessToken", "refreshToken"]
        .iter()
        .filter_map(|k| body[*k].as_str())
        .collect();
    assert_eq!(issued.len(), 2, "the gateway's tokens: {body}");
    for secret in issued.into_iter().chain([password]) {
        assert!(!log.contains(secret), "`{secret}` leaked into the log");
    }
}

#[test]
fn an_unreachable_upstream_closes_the_upstream_span_with_the_error_and_no_status() {
    let mut backend = Backend::start("a");
    let gw = Gateway::start(&config(&backend, JSON_SPANS));
    backend.proc.kill();
    let id = "trace-unreachable-1";
    let resp = gw.get(
        "/api/orders",
        &[
            ("Authorization", &format!("Bearer {}", token("ada", 600))),
            ("X-Request-Id", id),
        ],
    );
    assert_eq!(resp.status, 502, "{}", resp.body);

    let lines = wait_for_lines(&gw, "the request span to close", |lines| {
        spans_of(lines, id).contains_key("request")
    });
    let spans = spans_of(&lines, id);
    let upstream = spans.get("upstream").expect("an upstream span");
    assert_eq!(upstream.fields["target"], backend.addr().as_str());
    let access = lines
        .iter()
        .find(|l| is_access_event(l, id))
        .expect("the access event");
    assert!(
        access["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{access}"
    );
    assert_eq!(
        upstream.fields["error"], access["error"],
        "the same error as the access event"
    );
    assert!(
        upstream.fields.get("status").is_none(),
        "{}",
        upstream.fields
    );
}
