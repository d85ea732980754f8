//! gRPC end to end, with real peers: a grpcio client calls through the
//! gateway (plain listener with `h2c: true`) to a grpcio server upstream,
//! over h2c and over TLS with HTTP/2 by ALPN (certificate from a CA made in
//! the test, trusted by the gateway through `tls.ca_file`).
//!
//! - Unary, server-streaming and bidirectional calls pass, and so do the
//!   upstream's trailers (`grpc-status`, `grpc-message`, custom ones).
//! - The gateway's own refusals are gRPC answers the client can read:
//!   UNAUTHENTICATED (16) without a token, PERMISSION_DENIED (7) for a claim
//!   requirement, UNAVAILABLE (14) for an unreachable upstream,
//!   UNIMPLEMENTED (12) for a path no route matches — and a refused call
//!   never reaches the upstream.
//!
//! Every call uses a channel (one HTTP/2 connection) of its own.

mod common;
#[path = "common/peers.rs"]
mod peers;
#[path = "common/test_ca.rs"]
mod pki;

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use peers::{GrpcCall, GrpcServer};
use serde_json::{json, Value};

/// The listeners (`h2c: true`) and `jwt` sections of every gateway here;
/// `upstreams` and `routes` follow.
const GATEWAY: &str = r#"listeners:
  proxy: "{PROXY}"
  admin: "{ADMIN}"
  threads: 2
  grace_period: 0s
  h2c: true
jwt:
  issuer: test-issuer
  audience: [test-aud]
  keys:
    - kid: hs
      algorithms: [HS256]
      secret: "{SECRET}"
"#;

/// An h2c and a TLS gRPC server (certificate for `grpc.test`), and the file
/// of the CA that issued the TLS one.
fn servers(dir: &std::path::Path) -> (std::path::PathBuf, GrpcServer, GrpcServer) {
    let ca = pki::TestCa::new("Portcullis gRPC test CA");
    let ca_file = ca.write(dir, "ca");
    let (cert, key) = ca.server(&["grpc.test"]).write(dir, "grpc");
    (
        ca_file,
        GrpcServer::start(dir),
        GrpcServer::start_tls(dir, &cert, &key),
    )
}

/// A gateway with an h2c and a TLS h2 gRPC upstream.
struct Env {
    gw: Gateway,
    plain: GrpcServer,
    tls: GrpcServer,
    _dir: tempfile::TempDir,
}

impl Env {
    fn start() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca_file, plain, tls) = servers(dir.path());
        let template = format!(
            r#"{GATEWAY}upstreams:
  grpc:
    targets: ["127.0.0.1:{plain}"]
    protocol: h2c
  grpc_tls:
    targets: ["127.0.0.1:{tls}"]
    protocol: h2
    tls:
      ca_file: "{ca_file}"
      sni: grpc.test
  gone:
    targets: ["127.0.0.1:{gone}"]
    protocol: h2c
routes:
  - name: tls
    match: {{ path_prefix: /tls.Echo }}
    upstream: grpc_tls
    strip_prefix: /tls.Echo
    add_prefix: /test.Echo
  - name: admins
    match: {{ path_prefix: /admin.Echo }}
    upstream: grpc
    require: [{{ claim: role, equals: admin }}]
    strip_prefix: /admin.Echo
    add_prefix: /test.Echo
  - name: gone
    match: {{ path_prefix: /gone.Echo }}
    upstream: gone
  - name: echo
    match: {{ path_prefix: /test.Echo }}
    upstream: grpc
"#,
            plain = plain.port,
            tls = tls.port,
            gone = free_port(),
            ca_file = ca_file.display(),
        );
        Env {
            gw: Gateway::start(&template),
            plain,
            tls,
            _dir: dir,
        }
    }

    /// A call through the gateway to `/<service>/<method>`.
    fn call<'a>(&self, service: &'a str, method: &'a str) -> GrpcCall<'a> {
        GrpcCall::new(self.gw.port, service, method)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- gateway log ---\n{}", self.gw.proc.log_text());
            eprintln!("--- h2c server log ---\n{}", self.plain.proc.log_text());
            eprintln!("--- TLS server log ---\n{}", self.tls.proc.log_text());
        }
    }
}

/// `Bearer <HS256 token>` for `sub` with extra claims.
fn bearer(sub: &str, extra: Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hs".into());
    let mut claims =
        json!({"sub": sub, "iss": "test-issuer", "aud": "test-aud", "exp": now() + 600});
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    let key = EncodingKey::from_secret(HS_SECRET.as_bytes());
    format!("Bearer {}", encode(&header, &claims, &key).expect("sign"))
}

fn alice() -> String {
    bearer("alice", json!({}))
}

#[track_caller]
fn assert_code(outcome: &Value, code: &str) {
    assert_eq!(outcome["code"], code, "call outcome: {outcome}");
}

#[test]
fn unary_call_with_a_valid_token_reaches_the_h2c_upstream_with_its_trailers_back() {
    let env = Env::start();
    let outcome = env
        .call("test.Echo", "Unary")
        .metadata("authorization", &alice())
        .run();
    assert_code(&outcome, "OK");
    let answer: Value = serde_json::from_str(outcome["responses"][0].as_str().unwrap_or("null"))
        .expect("the upstream's answer");
    assert_eq!(answer["echo"], "hello");
    assert_eq!(answer["x-user-id"], "alice", "the verified subject");
    assert_eq!(
        outcome["trailing"]["x-served-by"], "grpc-peer",
        "the upstream's own trailer reaches the client"
    );
    assert_eq!(
        env.plain.calls(),
        vec!["CALL Unary authorization=yes x-user-id=alice"]
    );
}

#[test]
fn server_streaming_call_passes_every_message_through_the_gateway() {
    let env = Env::start();
    let outcome = env
        .call("test.Echo", "ServerStream")
        .data("5")
        .metadata("authorization", &alice())
        .run();
    assert_code(&outcome, "OK");
    assert_eq!(
        outcome["responses"],
        json!([
            "message-0",
            "message-1",
            "message-2",
            "message-3",
            "message-4"
        ])
    );
}

#[test]
fn bidirectional_call_streams_both_ways_through_the_gateway() {
    let env = Env::start();
    let outcome = env
        .call("test.Echo", "Bidi")
        .data("ping")
        .count(4)
        .metadata("authorization", &alice())
        .run();
    assert_code(&outcome, "OK");
    assert_eq!(
        outcome["responses"],
        json!(["PING-0", "PING-1", "PING-2", "PING-3"])
    );
}

#[test]
fn the_upstreams_own_error_status_and_message_reach_the_client_intact() {
    let env = Env::start();
    let outcome = env
        .call("test.Echo", "Fail")
        .metadata("authorization", &alice())
        .run();
    assert_code(&outcome, "NOT_FOUND");
    assert_eq!(outcome["details"], "no such thing: Zoë 100%");
}

#[test]
fn unary_streaming_and_bidi_calls_reach_a_tls_h2_upstream() {
    let env = Env::start();
    let unary = env
        .call("tls.Echo", "Unary")
        .metadata("authorization", &alice())
        .run();
    assert_code(&unary, "OK");
    assert_eq!(unary["trailing"]["x-served-by"], "grpc-peer");
    let stream = env
        .call("tls.Echo", "ServerStream")
        .data("3")
        .metadata("authorization", &alice())
        .run();
    assert_code(&stream, "OK");
    assert_eq!(
        stream["responses"],
        json!(["message-0", "message-1", "message-2"])
    );
    let bidi = env
        .call("tls.Echo", "Bidi")
        .data("tls")
        .count(2)
        .metadata("authorization", &alice())
        .run();
    assert_code(&bidi, "OK");
    assert_eq!(bidi["responses"], json!(["TLS-0", "TLS-1"]));
    let failed = env
        .call("tls.Echo", "Fail")
        .metadata("authorization", &alice())
        .run();
    assert_code(&failed, "NOT_FOUND");
    assert_eq!(failed["details"], "no such thing: Zoë 100%");
    assert_eq!(env.tls.calls().len(), 4, "{:?}", env.tls.calls());
    assert!(env.plain.calls().is_empty());
}

#[test]
fn unauthenticated_call_gets_unauthenticated_and_never_reaches_the_upstream() {
    let env = Env::start();
    let outcome = env.call("test.Echo", "Unary").run();
    assert_code(&outcome, "UNAUTHENTICATED");
    assert_eq!(outcome["details"], "Access token is required");
    let challenge = outcome["trailing"]["www-authenticate"]
        .as_str()
        .or_else(|| outcome["initial"]["www-authenticate"].as_str());
    assert_eq!(challenge, Some(r#"Bearer realm="portcullis""#));

    let forged = env
        .call("test.Echo", "Bidi")
        .metadata("authorization", "Bearer not.a.token")
        .run();
    assert_code(&forged, "UNAUTHENTICATED");
    assert!(
        env.plain.calls().is_empty(),
        "the upstream saw {:?}",
        env.plain.calls()
    );
}

#[test]
fn a_call_refused_by_a_claim_requirement_gets_permission_denied() {
    let env = Env::start();
    let outcome = env
        .call("admin.Echo", "Unary")
        .metadata("authorization", &bearer("bob", json!({"role": "user"})))
        .run();
    assert_code(&outcome, "PERMISSION_DENIED");
    assert_eq!(
        outcome["details"],
        "Access denied: claim `role` does not meet this route's requirement"
    );
    let admin = env
        .call("admin.Echo", "Unary")
        .metadata("authorization", &bearer("root", json!({"role": "admin"})))
        .run();
    assert_code(&admin, "OK");
    assert_eq!(
        env.plain.calls(),
        vec!["CALL Unary authorization=yes x-user-id=root"]
    );
}

#[test]
fn a_call_to_an_unreachable_upstream_gets_unavailable() {
    let env = Env::start();
    let outcome = env
        .call("gone.Echo", "Unary")
        .metadata("authorization", &alice())
        .run();
    assert_code(&outcome, "UNAVAILABLE");
    assert_eq!(outcome["details"], "The upstream could not be reached");
}

#[test]
fn a_call_no_route_matches_gets_unimplemented() {
    let env = Env::start();
    let outcome = env
        .call("nothing.Here", "Unary")
        .metadata("authorization", &alice())
        .run();
    assert_code(&outcome, "UNIMPLEMENTED");
    assert_eq!(outcome["details"], "No route for POST /nothing.Here/Unary");
}

#[test]
fn a_refusal_of_a_plain_http_request_stays_json() {
    let env = Env::start();
    let resp = env.gw.get("/test.Echo/Unary", &[]);
    assert_eq!(resp.status, 401);
    assert_eq!(resp.json()["error"], "missing_token");
    assert_eq!(resp.header("grpc-status"), None);
}

#[test]
fn a_grpc_web_refusal_over_http1_is_a_framed_grpc_answer() {
    let env = Env::start();
    let resp = send(
        env.gw.port,
        "POST",
        "/test.Echo/Unary",
        &[],
        Some(("application/grpc-web+proto", "")),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("grpc-status"), Some("16"));
    assert_eq!(
        resp.header("grpc-message"),
        Some("Access token is required")
    );
    assert_eq!(resp.header("content-type"), Some("application/grpc"));
    assert_eq!(resp.header("content-length"), Some("0"));
    assert!(resp.header("www-authenticate").is_some());
    assert!(resp.body.is_empty());
}

/// The gRPC Health Checking Protocol as the upstream health check: a target
/// whose health service says NOT_SERVING is taken out (calls get
/// UNAVAILABLE and never reach it) and put back once it says SERVING; the
/// configured service name is what the target is asked about, over h2c and
/// over TLS; an unknown service (NOT_FOUND) is unhealthy.
#[test]
fn grpc_health_checks_take_a_not_serving_target_out_and_put_it_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca_file, plain, tls) = servers(dir.path());
    let unknown = GrpcServer::start(dir.path());
    let template = format!(
        r#"{GATEWAY}upstreams:
  grpc:
    targets: ["127.0.0.1:{plain}"]
    protocol: h2c
    health_check:
      grpc: true
      grpc_service: test.Echo
      interval: 100ms
      unhealthy_after: 1
      healthy_after: 1
  grpc_tls:
    targets: ["127.0.0.1:{tls}"]
    protocol: h2
    tls:
      ca_file: "{ca_file}"
      sni: grpc.test
    health_check:
      grpc: true
      interval: 100ms
  unknown:
    targets: ["127.0.0.1:{unknown}"]
    protocol: h2c
    health_check:
      grpc: true
      grpc_service: no.Such
      interval: 100ms
      unhealthy_after: 1
routes:
  - name: unknown
    match: {{ path_prefix: /unknown.Echo }}
    upstream: unknown
    strip_prefix: /unknown.Echo
    add_prefix: /test.Echo
  - name: echo
    match: {{ path_prefix: /test.Echo }}
    upstream: grpc
"#,
        plain = plain.port,
        tls = tls.port,
        unknown = unknown.port,
        ca_file = ca_file.display(),
    );
    let gw = Gateway::start(&template);
    let health = |upstream: &str, server: &GrpcServer| {
        let labels = format!(
            r#"target="127.0.0.1:{}",upstream="{upstream}""#,
            server.port
        );
        let text = gw.metrics();
        text.contains(&labels)
            .then(|| metric(&text, "portcullis_upstream_health", &labels))
    };
    let call = || {
        GrpcCall::new(gw.port, "test.Echo", "Unary")
            .metadata("authorization", &alice())
            .run()
    };
    let within = std::time::Duration::from_secs(10);
    wait_until("checks of every target", within, || {
        [&plain, &tls, &unknown]
            .iter()
            .all(|s| !s.health_checks().is_empty())
    });
    assert!(
        plain
            .health_checks()
            .iter()
            .all(|l| l == "HEALTH service=test.Echo status=SERVING"),
        "{:?}",
        plain.health_checks()
    );
    assert!(
        tls.health_checks()
            .iter()
            .all(|l| l == "HEALTH service= status=SERVING"),
        "the server as a whole, over TLS: {:?}",
        tls.health_checks()
    );
    wait_until("the h2c and TLS targets healthy", within, || {
        health("grpc", &plain) == Some(1.0) && health("grpc_tls", &tls) == Some(1.0)
    });
    wait_until("the unknown service's target unhealthy", within, || {
        health("unknown", &unknown) == Some(0.0)
    });
    assert!(unknown
        .health_checks()
        .contains(&"HEALTH service=no.Such status=UNKNOWN".to_owned()));
    let refused = GrpcCall::new(gw.port, "unknown.Echo", "Unary")
        .metadata("authorization", &alice())
        .run();
    assert_code(&refused, "UNAVAILABLE");
    assert!(unknown.calls().is_empty(), "{:?}", unknown.calls());

    assert_code(&call(), "OK");
    plain.set_health("NOT_SERVING");
    wait_until("the NOT_SERVING target taken out", within, || {
        health("grpc", &plain) == Some(0.0)
    });
    let outcome = call();
    assert_code(&outcome, "UNAVAILABLE");
    assert_eq!(plain.calls().len(), 1, "{:?}", plain.calls());

    plain.set_health("SERVING");
    wait_until("the SERVING target put back", within, || {
        health("grpc", &plain) == Some(1.0)
    });
    assert_code(&call(), "OK");
    assert_eq!(plain.calls().len(), 2, "{:?}", plain.calls());
}
