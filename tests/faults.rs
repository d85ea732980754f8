//! Faithful proxying under faults, end to end: a real gateway in front of an
//! upstream that misbehaves on purpose, driven by a raw-socket client.
//!
//! - An upstream that dies after its answer has started never turns into a
//!   complete-looking answer: the client sees a truncated response and a
//!   cut connection, never gateway JSON inside a 200.
//! - HTTP/1.1 keep-alive follows RFC 9112: pipelined requests are answered
//!   in order, a stray CRLF after a body is ignored, and every answer that
//!   closes the connection says `Connection: close`.
//! - An HTTP/1.0 request without `Host` reaches the upstream with one.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::upstream::{echo_target, RecordingUpstream, Seen, Then};
use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

/// The gateway's upstream, answering by path: `/open/cut/length` and
/// `/open/cut/chunked` start an answer and die in its body,
/// `/open/cut/headers` dies right after a chunked head, `/stall` goes silent
/// in its body; anything else gets `200 {"target":…,"host":…}`.
fn faulty(seen: &Seen, out: &mut TcpStream) -> Then {
    if seen.target == "/stall" {
        // Starts the answer, then goes silent past the read timeout.
        let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nthe first part");
        std::thread::sleep(Duration::from_secs(3));
        return Then::Close;
    }
    let cut: &[u8] = match seen.target.as_str() {
        "/open/cut/length" => {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\nthe first part of a long body"
        }
        "/open/cut/chunked" => {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n1d\r\nthe first part of a long body\r\n"
        }
        "/open/cut/headers" => {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        }
        _ => return echo_target(seen, out),
    };
    let _ = out.write_all(cut);
    let _ = out.flush();
    // The upstream crashes: the connection ends mid-answer.
    let _ = out.shutdown(std::net::Shutdown::Both);
    Then::Close
}

fn config(upstream: &RecordingUpstream, upstream_extra: &str) -> String {
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
upstreams:
  main:
    targets: ["127.0.0.1:{port}"]
{upstream_extra}
  gone:
    targets: ["127.0.0.1:{closed}"]
  stalling:
    targets: ["127.0.0.1:{port}"]
    read_timeout: 300ms
routes:
  - name: stall
    match: {{ path: /stall }}
    upstream: stalling
    auth: none
  - name: gone
    match: {{ path_prefix: /open/gone }}
    upstream: gone
    auth: none
  - name: api
    match: {{ path_prefix: /api }}
    upstream: main
  - name: open
    match: {{ path_prefix: /open }}
    upstream: main
    auth: none
"#,
        port = upstream.port,
        closed = free_port(),
    )
}

fn token() -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hs".into());
    let claims = json!({"sub": "user-1", "exp": now() + 600});
    let key = EncodingKey::from_secret(HS_SECRET.as_bytes());
    encode(&header, &claims, &key).expect("sign")
}

/// Writes `bytes` on a fresh connection and reads until the gateway closes
/// it; `None` when it did not close within the read timeout.
fn until_closed(port: u16, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream.write_all(bytes).expect("write");
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => Some(out),
        // A reset after the answer also closes the connection.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(out),
        Err(_) => None,
    }
}

#[test]
fn an_upstream_dying_mid_body_cuts_the_client_connection_and_never_completes_the_answer() {
    let upstream = RecordingUpstream::start_with(faulty);
    let gw = Gateway::start(&config(&upstream, ""));
    for path in ["/open/cut/length", "/open/cut/chunked", "/open/cut/headers"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n");
        let bytes = until_closed(gw.port, request.as_bytes())
            .unwrap_or_else(|| panic!("{path}: the gateway kept a broken answer open"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
        assert!(
            !text.contains("\"success\"") && !text.contains("upstream"),
            "{path}: gateway JSON inside an upstream answer:\n{text}"
        );
        let (_, body) = text.split_once("\r\n\r\n").expect("a head");
        if path == "/open/cut/length" {
            assert!(body.len() < 1000, "{path}: the body was padded: {text}");
        } else {
            assert!(
                !body.ends_with("0\r\n\r\n"),
                "{path}: a chunked terminator completed a broken answer:\n{text}"
            );
        }
        // A real client calls it a failure.
        let curl = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "--max-time", "20"])
            .arg(format!("http://127.0.0.1:{}{path}", gw.port))
            .output()
            .expect("run curl");
        assert!(
            !curl.status.success(),
            "{path}: curl accepted a truncated answer: {:?}",
            String::from_utf8_lossy(&curl.stderr)
        );
    }
    // An upstream that goes silent mid-body: cut at its read timeout.
    let bytes = until_closed(gw.port, b"GET /stall HTTP/1.1\r\nHost: gw\r\n\r\n")
        .expect("a stalled answer is cut");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("the first part"),
        "{text}"
    );
    let metrics = gw.metrics();
    assert_eq!(
        metric(
            &metrics,
            "portcullis_upstream_aborts_total",
            "reason=\"timeout\""
        ),
        1.0,
        "{metrics}"
    );
    // Three by the raw client, three by curl: the upstream closed early.
    let aborts = metric(
        &metrics,
        "portcullis_upstream_aborts_total",
        "reason=\"closed\"",
    );
    assert_eq!(aborts, 6.0, "{metrics}");
    let log = gw.proc.log_text();
    assert!(
        log.lines().any(|l| l.contains("upstream answer aborted")
            && l.contains("\"open\"")
            && l.contains("\"main\"")
            && l.contains("\"closed\"")),
        "no abort log line naming route and upstream:\n{log}"
    );
    // One line per abort: pingora's own "Fail to proxy" line is not repeated.
    assert!(!log.contains("Fail to proxy"), "{log}");
    // The gateway keeps serving.
    assert_eq!(gw.get("/open/fine", &[]).status, 200);
}

#[test]
fn fifty_pipelined_requests_get_fifty_answers_in_order() {
    let upstream = RecordingUpstream::start_with(faulty);
    let gw = Gateway::start(&config(&upstream, ""));
    let auth = format!("Authorization: Bearer {}\r\n", token());
    for (prefix, auth) in [("/open/p", ""), ("/api/p", auth.as_str())] {
        let mut batch = String::new();
        for i in 0..50 {
            batch.push_str(&format!(
                "GET {prefix}/{i} HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"
            ));
        }
        let (mut stream, mut reader) = keep_alive(gw.port);
        stream.write_all(batch.as_bytes()).expect("write batch");
        for i in 0..50 {
            let answer = read_next_response(&mut reader)
                .unwrap_or_else(|| panic!("{prefix}: answer {i} of 50 missing"));
            assert_eq!(answer.status, 200, "{prefix}/{i}: {answer:?}");
            let body: serde_json::Value = serde_json::from_str(&answer.body).expect("json");
            assert_eq!(body["target"], format!("{prefix}/{i}"), "out of order");
            assert_ne!(answer.header("connection"), Some("close"), "{answer:?}");
        }
        // The connection is still usable afterwards.
        stream
            .write_all(format!("GET {prefix}/last HTTP/1.1\r\nHost: gw\r\n{auth}\r\n").as_bytes())
            .expect("write");
        let last = read_next_response(&mut reader).expect("an answer after the batch");
        assert_eq!(last.status, 200);
    }
    // Answers the gateway writes itself (401, with a body it never reads)
    // interleaved with proxied ones keep their places too.
    let mut batch = String::new();
    for i in 0..20 {
        if i % 2 == 0 {
            batch.push_str(&format!(
                "GET /api/m/{i} HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"
            ));
        } else {
            batch.push_str(&format!(
                "POST /api/m/{i} HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\nbody"
            ));
        }
    }
    let (mut stream, mut reader) = keep_alive(gw.port);
    stream.write_all(batch.as_bytes()).expect("write batch");
    for i in 0..20 {
        let answer =
            read_next_response(&mut reader).unwrap_or_else(|| panic!("answer {i} missing"));
        let expected = if i % 2 == 0 { 200 } else { 401 };
        assert_eq!(answer.status, expected, "answer {i}: {answer:?}");
        if expected == 200 {
            let body: serde_json::Value = serde_json::from_str(&answer.body).expect("json");
            assert_eq!(body["target"], format!("/api/m/{i}"), "out of order");
        }
    }
    assert_eq!(
        upstream
            .seen()
            .iter()
            .filter(|s| s.target.starts_with("/api/m/"))
            .count(),
        10,
        "the refused requests never reach the upstream"
    );
}

#[test]
fn a_stray_crlf_after_a_body_is_ignored_and_the_request_runs_once() {
    let upstream = RecordingUpstream::start_with(faulty);
    let gw = Gateway::start(&config(&upstream, ""));
    let (mut stream, mut reader) = keep_alive(gw.port);
    let body = r#"{"order":1}"#;
    let post = format!(
        "POST /open/orders HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}\r\n",
        body.len()
    );
    stream.write_all(post.as_bytes()).expect("write");
    let answer = read_next_response(&mut reader).expect("an answer");
    assert_eq!(answer.status, 200, "{answer:?}");
    // The same connection serves the next request.
    stream
        .write_all(b"GET /open/next HTTP/1.1\r\nHost: gw\r\n\r\n")
        .expect("write");
    let next = read_next_response(&mut reader).expect("an answer to the next request");
    assert_eq!(next.status, 200, "{next:?}");
    assert_eq!(upstream.count("/open/orders"), 1, "{:?}", upstream.seen());
    let order = upstream
        .seen()
        .into_iter()
        .find(|s| s.target == "/open/orders")
        .expect("seen");
    assert_eq!(order.method, "POST");
    assert_eq!(order.body, body.as_bytes());
}

#[test]
fn answers_that_close_the_connection_say_connection_close() {
    let upstream = RecordingUpstream::start_with(faulty);
    let gw = Gateway::start(&config(&upstream, ""));
    let token = token();
    let cases = [
        // The gateway's own 502: the upstream refuses connections.
        ("unreachable upstream", "GET /open/gone HTTP/1.1\r\nHost: gw\r\n\r\n".to_owned(), 502),
        // A framing refusal.
        (
            "CL+TE",
            format!("POST /api/x HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        // pingora's own refusal of an unreadable head.
        ("unreadable head", "GET /open/x HTTP/1.1\r\nHost: gw\r\nBad Header\r\n\r\n".to_owned(), 400),
    ];
    for (case, request, status) in cases {
        let bytes = until_closed(gw.port, request.as_bytes())
            .unwrap_or_else(|| panic!("{case}: the connection stayed open"));
        let text = String::from_utf8_lossy(&bytes);
        let answer = parse_raw_response(&bytes);
        assert_eq!(answer.status, status, "{case}: {text}");
        assert_eq!(
            answer
                .header("connection")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("close"),
            "{case}: a closing answer must say so:\n{text}"
        );
    }
    // A kept-alive answer says keep-alive and the connection stays usable.
    let (mut stream, mut reader) = keep_alive(gw.port);
    stream
        .write_all(b"GET /api/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        .expect("write");
    let refused = read_next_response(&mut reader).expect("401");
    assert_eq!(refused.status, 401);
    assert_ne!(refused.header("connection"), Some("close"));
    stream
        .write_all(b"GET /open/after HTTP/1.1\r\nHost: gw\r\n\r\n")
        .expect("write");
    assert_eq!(read_next_response(&mut reader).expect("200").status, 200);
}

#[test]
fn an_http10_request_without_host_reaches_the_upstream_with_one() {
    let upstream = RecordingUpstream::start_with(faulty);
    let gw = Gateway::start(&config(&upstream, ""));
    let bytes = until_closed(gw.port, b"GET /open/old HTTP/1.0\r\n\r\n").expect("closed");
    let answer = parse_raw_response(&bytes);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&bytes));
    let seen = upstream.seen();
    let old = seen.iter().find(|s| s.target == "/open/old").expect("seen");
    assert_eq!(
        old.header("host"),
        Some(format!("127.0.0.1:{}", upstream.port).as_str()),
        "{old:?}"
    );
    // A client's Host is preserved by default.
    gw.get("/open/preserved", &[]);
    let seen = upstream.seen();
    let kept = seen
        .iter()
        .find(|s| s.target == "/open/preserved")
        .expect("seen");
    assert_eq!(
        kept.header("host"),
        Some(format!("127.0.0.1:{}", gw.port).as_str())
    );
}

#[test]
fn an_upstream_with_a_fixed_host_always_gets_it() {
    let upstream = RecordingUpstream::start_with(faulty);
    let gw = Gateway::start(&config(&upstream, "    host: api.internal.example:8443"));
    gw.get("/open/fixed", &[]);
    until_closed(gw.port, b"GET /open/fixed-old HTTP/1.0\r\n\r\n").expect("closed");
    let seen = upstream.seen();
    for target in ["/open/fixed", "/open/fixed-old"] {
        let s = seen.iter().find(|s| s.target == target).expect("seen");
        assert_eq!(s.header("host"), Some("api.internal.example:8443"), "{s:?}");
    }
    let s = seen
        .iter()
        .find(|s| s.target == "/open/fixed")
        .expect("seen");
    assert_eq!(
        s.header("x-forwarded-host"),
        Some(format!("127.0.0.1:{}", gw.port).as_str())
    );
}
