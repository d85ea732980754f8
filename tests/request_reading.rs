//! One reading of every request, end to end: a real gateway in front of a
//! real upstream that records every request it receives. No spelling of a
//! protected path or of an identity header gets past its route's
//! requirements, the upstream only ever sees canonical paths, and request
//! smuggling shapes are refused with 400 and a closed connection.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::upstream::RecordingUpstream;
use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use portcullis::canonical::{canonicalize, EmptySegments, PathParams, PathRules};
use serde_json::json;

fn config(upstream: &RecordingUpstream, requests: &str, extra_routes: &str) -> String {
    format!(
        r#"listeners:
  proxy: "{{PROXY}}"
  admin: "{{ADMIN}}"
  threads: 1
  grace_period: 0s
jwt:
  keys:
    - kid: hs
      algorithms: [HS256]
      secret: "{{SECRET}}"
requests:
{requests}
upstreams:
  main:
    targets: ["127.0.0.1:{port}"]
routes:
  - name: admin
    match: {{ path_prefix: /api/admin }}
    upstream: main
    require:
      - claim: role
        in: [admin]
  - name: api
    match: {{ path_prefix: /api }}
    upstream: main
  - name: open
    match: {{ path_prefix: /open }}
    upstream: main
    auth: none
{extra_routes}"#,
        port = upstream.port
    )
}

fn token(role: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hs".into());
    let claims = json!({"sub": format!("{role}-user"), "role": role, "exp": now() + 600});
    let key = EncodingKey::from_secret(HS_SECRET.as_bytes());
    format!("Bearer {}", encode(&header, &claims, &key).expect("sign"))
}

/// Sends `GET target` exactly as written (no client-side normalisation).
fn get_raw_target(gw: &Gateway, target: &str, auth: &str) -> Response {
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: gw\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    );
    raw(gw.port, req.as_bytes())
}

fn default_rules() -> PathRules {
    PathRules::default()
}

/// Every target the upstream received is already canonical.
fn assert_only_canonical(upstream: &RecordingUpstream, rules: PathRules) {
    for target in upstream.targets() {
        let path = target.split('?').next().unwrap_or("");
        let c = canonicalize(path.as_bytes(), rules)
            .unwrap_or_else(|e| panic!("upstream saw a non-canonical path {target}: {e}"));
        assert!(!c.is_rewritten(), "upstream saw {target}, not canonical");
    }
}

#[test]
fn spellings_of_a_protected_path_get_403_or_400_and_never_reach_the_upstream() {
    let upstream = RecordingUpstream::start();
    let gw = Gateway::start(&config(&upstream, "  case_sensitive: false", ""));
    let user = token("user");
    let spellings_403 = [
        "/API/admin",
        "/api/ADMIN/x",
        "/Api/Admin",
        "/api/%61dmin",
        "/api/%41DMIN/users",
        "/api/adm%69n",
        "/api//admin",
        "//api/admin",
        "/api///admin//x",
        "/api/%61dmin?x=1",
    ];
    for target in spellings_403 {
        let resp = get_raw_target(&gw, target, &user);
        assert_eq!(resp.status, 403, "{target}: {}", resp.body);
        assert_eq!(resp.json()["error"], "insufficient_claims", "{target}");
    }
    let spellings_400 = [
        "/api/admin;x=1",
        "/api;x/admin",
        "/api/./admin",
        "/api/x/../admin",
        "/api/%2e%2e/admin",
        "/api/x/.%2E/admin",
        "/api%2fadmin",
        "/api%2Fadmin",
        "/api%5cadmin",
        "/api\\admin",
        "/api%3badmin",
        "/api/admin%00",
        "/api/admin%0d%0a",
        "/api/admin%",
        "/api/admin%g1",
    ];
    for target in spellings_400 {
        let resp = get_raw_target(&gw, target, &user);
        assert_eq!(resp.status, 400, "{target}: {}", resp.body);
        assert_eq!(resp.json()["error"], "bad_path", "{target}");
        assert_eq!(
            resp.header("connection").map(str::to_ascii_lowercase),
            Some("close".into()),
            "{target}"
        );
    }
    assert!(
        upstream.targets().is_empty(),
        "the upstream saw {:?}",
        upstream.targets()
    );

    // An admin passes, and the upstream gets the canonical form with the
    // query string as it came.
    let admin = token("admin");
    let resp = get_raw_target(&gw, "/API/%61dmin//x/%7euser/%c3%a9?q=%41&b=//", &admin);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        upstream.targets(),
        vec!["/API/admin/x/~user/%C3%A9?q=%41&b=//".to_owned()]
    );
    // A plain user still reaches the weaker route's paths.
    let resp = get_raw_target(&gw, "/api/%6Fther", &user);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        upstream.targets().last().map(String::as_str),
        Some("/api/other")
    );
    assert_only_canonical(&upstream, default_rules());

    let m = gw.metrics();
    assert!(
        metric(
            &m,
            "portcullis_request_refusals_total",
            r#"reason="dot_segment""#
        ) >= 3.0
    );
    assert!(
        metric(
            &m,
            "portcullis_request_refusals_total",
            r#"reason="encoded_separator""#
        ) >= 5.0
    );
    assert!(
        metric(
            &m,
            "portcullis_request_refusals_total",
            r#"reason="path_parameter""#
        ) >= 2.0
    );
    assert!(
        metric(
            &m,
            "portcullis_request_refusals_total",
            r#"reason="control_character""#
        ) >= 2.0
    );
    assert!(
        metric(
            &m,
            "portcullis_request_refusals_total",
            r#"reason="invalid_escape""#
        ) >= 2.0
    );
}

#[test]
fn access_log_records_both_the_raw_and_the_canonical_path() {
    let upstream = RecordingUpstream::start();
    let config = config(&upstream, "  case_sensitive: false", "") + "log:\n  format: json\n";
    let gw = Gateway::start(&config);
    let resp = get_raw_target(&gw, "/open//%61b?secret=s3cr3t", "none");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let resp = get_raw_target(&gw, "/open/plain", "none");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let access = || -> Vec<serde_json::Value> {
        gw.proc
            .log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "portcullis::access")
            .collect()
    };
    wait_until("two access events", Duration::from_secs(10), || {
        access().len() >= 2
    });
    let events = access();
    let rewritten = events
        .iter()
        .find(|e| e["path"] == "/open/ab")
        .unwrap_or_else(|| panic!("no access event for /open/ab: {events:?}"));
    assert_eq!(rewritten["raw_path"], "/open//%61b");
    let plain = events
        .iter()
        .find(|e| e["path"] == "/open/plain")
        .unwrap_or_else(|| panic!("no access event for /open/plain: {events:?}"));
    assert_eq!(plain["raw_path"], "");
    assert!(
        !gw.proc.log_text().contains("s3cr3t"),
        "the query string was logged"
    );
}

#[test]
fn kept_path_params_are_forwarded_and_ignored_for_matching() {
    let upstream = RecordingUpstream::start();
    let gw = Gateway::start(&config(&upstream, "  path_params: keep", ""));
    let user = token("user");
    for target in [
        "/api;jsessionid=1/admin",
        "/api/admin;v=2/x",
        "/API;a/Admin;b",
    ] {
        let resp = get_raw_target(&gw, target, &user);
        assert_eq!(resp.status, 403, "{target}: {}", resp.body);
    }
    for target in ["/api/..;x/admin", "/api/.;/admin", "/;x/api/admin"] {
        let resp = get_raw_target(&gw, target, &user);
        assert_eq!(resp.status, 400, "{target}: {}", resp.body);
    }
    assert!(upstream.targets().is_empty(), "{:?}", upstream.targets());
    let resp = get_raw_target(&gw, "/api;jsessionid=1/%61dmin;v=2", &token("admin"));
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        upstream.targets(),
        vec!["/api;jsessionid=1/admin;v=2".to_owned()]
    );
    let rules = PathRules {
        empty_segments: EmptySegments::Merge,
        path_params: PathParams::Keep,
    };
    assert_only_canonical(&upstream, rules);
}

#[test]
fn strict_options_refuse_empty_segments_and_case_sensitive_routes_do_not_fold() {
    let upstream = RecordingUpstream::start();
    let extra = "  - name: files\n    match: { path_prefix: /Files }\n    upstream: main\n    auth: none\n    case_sensitive: true\n";
    let gw = Gateway::start(&config(&upstream, "  empty_segments: reject", extra));
    let resp = get_raw_target(&gw, "/open//x", "none");
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert_eq!(
        resp.json()["message"],
        "empty path segments (`//`) are not allowed"
    );
    assert_eq!(get_raw_target(&gw, "/Files/a", "none").status, 200);
    // `/files` is not the case-sensitive `/Files` route and no other matches.
    assert_eq!(get_raw_target(&gw, "/files/a", "none").status, 404);
    assert_eq!(upstream.targets(), vec!["/Files/a".to_owned()]);
}

#[test]
fn duplicate_and_underscore_identity_headers_never_reach_the_upstream() {
    let upstream = RecordingUpstream::start();
    let gw = Gateway::start(&config(&upstream, "  underscore_headers: drop", ""));
    let user = token("user");

    // A second Authorization or Host: 400 and the connection closed.
    for extra in [
        format!(
            "Authorization: {user}\r\nAuthorization: {}\r\n",
            token("admin")
        ),
        format!("Authorization: {user}\r\nHost: other\r\n"),
    ] {
        let req = format!("GET /api/admin HTTP/1.1\r\nHost: gw\r\n{extra}\r\n");
        let resp = raw(gw.port, req.as_bytes());
        assert_eq!(resp.status, 400, "{extra}: {}", resp.body);
        assert_eq!(resp.header("connection"), Some("close"), "{extra}");
    }

    // `_` spellings of identity headers and plain `_` headers are dropped.
    let req = format!(
        "GET /api/me HTTP/1.1\r\nHost: gw\r\nAuthorization: {user}\r\nX_User_Id: evil\r\nx_user_role: admin\r\nX_Forwarded_For: 6.6.6.6\r\nX_Custom: dropped\r\nConnection: close\r\n\r\n"
    );
    let resp = raw(gw.port, req.as_bytes());
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].header("x-user-id"), Some("user-user"));
    for (name, _) in &seen[0].headers {
        assert!(!name.contains('_'), "the upstream saw `{name}`: {seen:?}");
    }
    assert_eq!(seen[0].header("x-forwarded-for"), Some("127.0.0.1"));
    let m = gw.metrics();
    assert!(metric(&m, "portcullis_header_spoof_stripped_total", "") >= 2.0);
    assert_eq!(
        metric(
            &m,
            "portcullis_request_refusals_total",
            r#"reason="duplicate_authorization""#
        ),
        1.0
    );
}

#[test]
fn underscore_headers_can_be_refused_or_allowed_but_identity_spellings_never_pass() {
    let upstream = RecordingUpstream::start();
    let gw = Gateway::start(&config(&upstream, "  underscore_headers: reject", ""));
    let req = "GET /open/x HTTP/1.1\r\nHost: gw\r\nX_Custom: a\r\nConnection: close\r\n\r\n";
    let resp = raw(gw.port, req.as_bytes());
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert_eq!(resp.json()["error"], "bad_request");
    assert!(upstream.targets().is_empty());
    drop(gw);

    let gw = Gateway::start(&config(&upstream, "  underscore_headers: allow", ""));
    let req = "GET /open/x HTTP/1.1\r\nHost: gw\r\nX_Custom: kept\r\nX_User_Role: admin\r\nX_Auth_Token: t\r\nConnection: close\r\n\r\n";
    let resp = raw(gw.port, req.as_bytes());
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x_custom"), Some("kept"));
    assert_eq!(seen[0].header("x_user_role"), None);
    assert_eq!(seen[0].header("x_auth_token"), None);
}

/// Sends `bytes` on one connection and reads until the gateway closes it.
fn exchange(port: u16, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream.write_all(bytes).expect("write");
    let mut out = Vec::new();
    // A closed connection ends the read; a timeout here fails the caller's
    // "connection closed" assertion through the missing close.
    let closed = stream.read_to_end(&mut out).is_ok();
    assert!(
        closed,
        "the gateway kept the connection open after: {}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn smuggling_shapes_get_400_and_a_closed_connection_and_no_second_request_reaches_the_upstream() {
    let upstream = RecordingUpstream::start();
    let gw = Gateway::start(&config(&upstream, "  case_sensitive: false", ""));
    let user = token("user");
    let smuggled = "GET /open/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n";
    for (route, auth) in [
        ("/open/a", String::new()),
        ("/api/a", format!("Authorization: {user}\r\n")),
    ] {
        let shapes = [
            (
                "CL+TE",
                format!("POST {route} HTTP/1.1\r\nHost: gw\r\n{auth}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
            ),
            (
                "TE+CL",
                format!("POST {route} HTTP/1.1\r\nHost: gw\r\n{auth}Transfer-Encoding: chunked\r\nContent-Length: 48\r\n\r\n0\r\n\r\n{smuggled}"),
            ),
            (
                "duplicate CL",
                format!("POST {route} HTTP/1.1\r\nHost: gw\r\n{auth}Content-Length: 0\r\nContent-Length: 44\r\n\r\n{smuggled}"),
            ),
            (
                "obs-fold",
                format!("POST {route} HTTP/1.1\r\nHost: gw\r\n{auth}X-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n{smuggled}"),
            ),
            (
                "bare LF",
                format!("POST {route} HTTP/1.1\nHost: gw\n{}Content-Length: 0\n\n{smuggled}", auth.replace("\r\n", "\n")),
            ),
            (
                "invalid chunk size",
                format!("POST {route} HTTP/1.1\r\nHost: gw\r\n{auth}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n{smuggled}"),
            ),
            (
                "negative chunk size",
                format!("POST {route} HTTP/1.1\r\nHost: gw\r\n{auth}Transfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n{smuggled}"),
            ),
            (
                "TE not chunked",
                format!("POST {route} HTTP/1.1\r\nHost: gw\r\n{auth}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"),
            ),
        ];
        for (shape, bytes) in shapes {
            let answer = exchange(gw.port, bytes.as_bytes());
            let responses = answer.matches("HTTP/1.1 ").count();
            assert_eq!(
                responses, 1,
                "{shape} on {route}: one answer, then close:\n{answer}"
            );
            assert!(
                answer.starts_with("HTTP/1.1 400"),
                "{shape} on {route}: expected 400:\n{answer}"
            );
            assert!(
                !upstream.targets().iter().any(|t| t.contains("smuggled")),
                "{shape} on {route}: the upstream saw the smuggled request: {:?}",
                upstream.targets()
            );
        }
    }
    // Still serving afterwards.
    assert_eq!(get_raw_target(&gw, "/open/after", "none").status, 200);
}
