//! The client-facing edge end to end: the TLS listener beside the plain one
//! (HTTP/1.1 and HTTP/2 by ALPN, certificates chosen by SNI and rotated on
//! SIGHUP), client certificates (mTLS) for routes and plugins, h2c on the
//! plain listener, WebSocket over TLS, and `portcullis check` on bad
//! certificates. Real processes on loopback; certificates are made per test
//! with rcgen; clients are curl, rustls and the h2 crate.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::pki::{date_in_days, Ca, Issued};
use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};

const JWT: &str = r#"
jwt:
  issuer: test-issuer
  audience: test-aud
  keys:
    - kid: hs
      algorithms: [HS256]
      secret: "{SECRET}"
"#;

fn token(sub: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hs".into());
    let claims = json!({"sub": sub, "iss": "test-issuer", "aud": "test-aud",
                        "iat": now(), "exp": now() + 600});
    encode(
        &header,
        &claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

/// A directory of PEM files for one test.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pair(&self, issued: &Issued, stem: &str) -> (String, String) {
        let (cert, key) = issued.write(self.dir.path(), stem);
        (display(&cert), display(&key))
    }

    fn ca(&self, ca: &Ca, stem: &str) -> String {
        display(&ca.write(self.dir.path(), stem))
    }
}

fn display(path: &Path) -> String {
    path.to_str().expect("utf-8 path").to_owned()
}

/// A gateway with a TLS listener: `tls` is the body of `listeners.tls`
/// (without `listen`), `extra` any further top-level sections before the
/// routes.
struct Edge {
    gw: Gateway,
    tls_port: u16,
    _backend: Backend,
}

fn start(tls: &str, listeners: &str, extra: &str, routes: &str) -> Edge {
    let backend = Backend::start("tls");
    let tls_port = free_port();
    let template = format!(
        "listeners:\n  proxy: \"{{PROXY}}\"\n  admin: \"{{ADMIN}}\"\n  threads: 1\n  grace_period: 0s\n  drain_window: 0s\n{listeners}  tls:\n    listen: \"127.0.0.1:{tls_port}\"\n{tls}{JWT}{extra}\nupstreams:\n  main:\n    targets: [\"{backend}\"]\nroutes:\n{routes}",
        backend = backend.addr(),
    );
    let gw = Gateway::start(&template);
    Edge {
        gw,
        tls_port,
        _backend: backend,
    }
}

impl Edge {
    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.tls_port)
    }

    /// `--resolve` for `host` to this gateway's TLS port.
    fn resolve(&self, host: &str) -> String {
        format!("{host}:{}:127.0.0.1", self.tls_port)
    }

    fn handshakes(&self, result: &str, version: &str) -> f64 {
        metric(
            &self.gw.metrics(),
            "portcullis_tls_handshakes_total",
            &format!(r#"result="{result}",version="{version}""#),
        )
    }
}

const ROUTES: &str = "  - name: api\n    match: { path_prefix: /api }\n    upstream: main\n  - name: open\n    match: { path_prefix: /open }\n    upstream: main\n    auth: none\n";

/// What curl reports for one transfer.
#[derive(Debug)]
struct Curl {
    ok: bool,
    status: u16,
    version: String,
    body: String,
    stderr: String,
}

/// Runs curl with `args` on one URL and reads its status and HTTP version.
fn curl(args: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .args(args)
        .output()
        .expect("run curl (installed by scripts/setup.sh)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut fields = last.split_whitespace();
    Curl {
        ok: out.status.success(),
        status: fields.next().and_then(|s| s.parse().ok()).unwrap_or(0),
        version: fields.next().unwrap_or("").to_owned(),
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A rustls client configuration trusting `ca_pem`, with a client
/// certificate when given, speaking HTTP/1.1.
fn client_config(ca_pem: &str, client: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match client {
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(c.der.clone())],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to the gateway for `server_name`, handshake done.
fn tls_connect(port: u16, server_name: &str, config: Arc<rustls::ClientConfig>) -> TlsStream {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("TLS handshake");
    }
    stream
}

/// Sends a keep-alive GET on `stream` and reads its answer.
fn get_on<S: Read + Write>(
    stream: &mut BufReader<S>,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.get_mut().write_all(req.as_bytes()).unwrap();
    stream.get_mut().flush().unwrap();
    read_next_response(stream).expect("an answer")
}

/// The headers the demo backend saw, from its echo.
fn seen_headers(body: &str) -> Value {
    let echo: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    echo["headers"].clone()
}

#[test]
fn https_serves_http1_and_http2_beside_the_plain_listener_and_checks_tokens_on_both() {
    let files = Files::new();
    let ca = Ca::new("Edge CA");
    let (cert, key) = files.pair(&ca.server(&["localhost"]), "server");
    let ca_file = files.ca(&ca, "ca");
    let hosted = "  - name: hosted\n    match: { host: localhost, path_prefix: /hosted }\n    upstream: main\n    auth: none\n";
    let edge = start(
        &format!("    cert_file: {cert}\n    key_file: {key}\n"),
        "",
        "",
        &format!("{hosted}{ROUTES}"),
    );
    let bearer = format!("Authorization: Bearer {}", token("alice"));
    // HTTP/2 names the host in `:authority` only: routing by host, the
    // forwarded host and a rewritten (canonical) path all keep it.
    let h2 = curl(&[
        "--http2",
        "--cacert",
        &ca_file,
        &edge.url("localhost", "/hosted//a/./b?q=1"),
    ]);
    assert_eq!((h2.status, h2.version.as_str()), (200, "2"), "{h2:?}");
    let echo: Value = serde_json::from_str(&h2.body).unwrap();
    assert_eq!(echo["path"], "/hosted/a/b");
    assert_eq!(echo["query"], "q=1");
    assert_eq!(
        echo["headers"]["host"],
        format!("localhost:{}", edge.tls_port)
    );
    assert_eq!(
        echo["headers"]["x-forwarded-host"],
        format!("localhost:{}", edge.tls_port)
    );
    let elsewhere = curl(&[
        "--http2",
        "--cacert",
        &ca_file,
        "--resolve",
        &edge.resolve("localhost"),
        "-H",
        "Host: other.test",
        &edge.url("localhost", "/hosted/x"),
    ]);
    assert_eq!(elsewhere.status, 404, "{elsewhere:?}");
    for version in ["--http1.1", "--http2"] {
        let want = if version == "--http2" { "2" } else { "1.1" };
        let missing = curl(&[
            version,
            "--cacert",
            &ca_file,
            &edge.url("localhost", "/api/x"),
        ]);
        assert!(missing.ok, "{missing:?}");
        assert_eq!((missing.status, missing.version.as_str()), (401, want));
        let ok = curl(&[
            version,
            "--cacert",
            &ca_file,
            "-H",
            &bearer,
            &edge.url("localhost", "/api/x"),
        ]);
        assert_eq!((ok.status, ok.version.as_str()), (200, want), "{ok:?}");
        let seen = seen_headers(&ok.body);
        assert_eq!(seen["x-forwarded-proto"], "https");
        assert_eq!(seen["x-user-id"], "alice");
        assert_eq!(
            seen["x-forwarded-host"],
            format!("localhost:{}", edge.tls_port)
        );
    }
    // Several HTTP/2 requests on one connection: one handshake.
    let before = edge.handshakes("ok", "TLSv1.3");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "--cacert",
            &ca_file,
            "-w",
            "%{http_code} %{http_version}\n",
        ])
        .args(["-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null"])
        .args([
            edge.url("localhost", "/open/1"),
            edge.url("localhost", "/open/2"),
            edge.url("localhost", "/open/3"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 2\n200 2\n200 2\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(edge.handshakes("ok", "TLSv1.3") - before, 1.0);
    // The plain listener keeps answering beside it.
    let plain = edge.gw.get("/open/x", &[]);
    assert_eq!(plain.status, 200);
    assert_eq!(seen_headers(&plain.body)["x-forwarded-proto"], "http");
    let metrics = edge.gw.metrics();
    assert!(
        metric(
            &metrics,
            "portcullis_requests_by_version_total",
            r#"scheme="https",version="2""#
        ) >= 5.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "portcullis_requests_by_version_total",
            r#"scheme="https",version="1.1""#
        ) >= 2.0
    );
    assert!(
        metric(
            &metrics,
            "portcullis_requests_by_version_total",
            r#"scheme="http",version="1.1""#
        ) >= 1.0
    );
    let expiry = metric(
        &metrics,
        "portcullis_tls_certificate_expiry_seconds",
        &format!(r#"certificate="{cert}""#),
    );
    assert!(
        expiry > 360.0 * 86_400.0 && expiry <= 366.0 * 86_400.0,
        "{expiry}"
    );
}

#[test]
fn sni_picks_the_certificate_listed_for_the_name() {
    let files = Files::new();
    let (ca_default, ca_a, ca_b) = (Ca::new("Default CA"), Ca::new("A CA"), Ca::new("B CA"));
    let (cert, key) = files.pair(&ca_default.server(&["localhost"]), "default");
    let (a_cert, a_key) = files.pair(&ca_a.server(&["a.test"]), "a");
    let (b_cert, b_key) = files.pair(&ca_b.server(&["*.b.test"]), "b");
    let edge = start(
        &format!(
            "    cert_file: {cert}\n    key_file: {key}\n    certificates:\n      - {{ cert_file: {a_cert}, key_file: {a_key} }}\n      - {{ cert_file: {b_cert}, key_file: {b_key}, names: [\"api.b.test\"] }}\n"
        ),
        "",
        "",
        ROUTES,
    );
    let (default_ca, a_ca, b_ca) = (
        files.ca(&ca_default, "ca-default"),
        files.ca(&ca_a, "ca-a"),
        files.ca(&ca_b, "ca-b"),
    );
    let get = |host: &str, ca: &str| {
        curl(&[
            "--resolve",
            &edge.resolve(host),
            "--cacert",
            ca,
            &edge.url(host, "/open/sni"),
        ])
    };
    // Each name is served the certificate of its CA, and only that one.
    assert_eq!(get("a.test", &a_ca).status, 200);
    assert!(!get("a.test", &default_ca).ok);
    assert_eq!(get("api.b.test", &b_ca).status, 200);
    assert!(!get("api.b.test", &a_ca).ok);
    // Not listed for b (only api.b.test is), nor anywhere else: the default.
    assert_eq!(get("localhost", &default_ca).status, 200);
    let other = get("www.b.test", &b_ca);
    assert!(!other.ok, "www.b.test is not a listed name: {other:?}");
    // rustls shows which certificate came back.
    let served = |name: &str, ca: &Ca| {
        let stream = tls_connect(edge.tls_port, name, client_config(&ca.pem, None));
        stream.conn.peer_certificates().unwrap()[0].to_vec()
    };
    let a_der = CertificateDer::from_pem_slice(read(&a_cert).as_slice()).unwrap();
    assert_eq!(served("a.test", &ca_a), a_der.to_vec());
}

#[test]
fn sessions_resume_from_stateless_tickets_for_more_clients_than_a_session_cache_holds() {
    // 300 clients with a session store each: rustls' default stateful cache
    // (256 sessions, two tickets per TLS 1.3 handshake) would have evicted
    // most of them; tickets resume every one.
    const CLIENTS: usize = 300;
    let files = Files::new();
    let ca = Ca::new("Resumption CA");
    let (cert, key) = files.pair(&ca.server(&["localhost"]), "server");
    let edge = start(
        &format!("    cert_file: {cert}\n    key_file: {key}\n"),
        "",
        "",
        ROUTES,
    );
    let clients: Vec<_> = (0..CLIENTS).map(|_| client_config(&ca.pem, None)).collect();
    for (round, expect_resumed) in [(1, false), (2, true)] {
        let mut resumed = 0;
        for config in &clients {
            let stream = tls_connect(edge.tls_port, "localhost", Arc::clone(config));
            if stream.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                resumed += 1;
            }
            // A request, so the client also reads the tickets sent after
            // the handshake.
            let mut stream = BufReader::new(stream);
            assert_eq!(
                get_on(&mut stream, "localhost", "/open/tickets", &[]).status,
                200
            );
        }
        let want = if expect_resumed { CLIENTS } else { 0 };
        assert_eq!(
            resumed, want,
            "round {round}: {resumed} of {CLIENTS} resumed"
        );
    }
}

#[test]
fn sighup_rotates_the_certificate_for_new_handshakes_while_open_connections_keep_working() {
    let files = Files::new();
    let (old_ca, new_ca) = (Ca::new("Old CA"), Ca::new("New CA"));
    let old_leaf = old_ca.server(&["localhost"]);
    let (cert, key) = files.pair(&old_leaf, "server");
    let edge = start(
        &format!("    cert_file: {cert}\n    key_file: {key}\n"),
        "",
        "",
        ROUTES,
    );
    let (old_ca_file, new_ca_file) = (files.ca(&old_ca, "old-ca"), files.ca(&new_ca, "new-ca"));
    let open = tls_connect(edge.tls_port, "localhost", client_config(&old_ca.pem, None));
    let mut open = BufReader::new(open);
    assert_eq!(get_on(&mut open, "localhost", "/open/1", &[]).status, 200);

    // New files in place, then SIGHUP (the config itself is unchanged).
    files.pair(&new_ca.server(&["localhost"]), "server");
    signal(&edge.gw.proc, "HUP");
    wait_until(
        "a new handshake to get the new certificate",
        Duration::from_secs(20),
        || curl(&["--cacert", &new_ca_file, &edge.url("localhost", "/open/2")]).status == 200,
    );
    assert!(!curl(&["--cacert", &old_ca_file, &edge.url("localhost", "/open/3")]).ok);
    assert_eq!(
        metric(
            &edge.gw.metrics(),
            "portcullis_config_reloads_total",
            r#"result="ok""#
        ),
        1.0
    );
    // The connection opened before the reload goes on with its certificate.
    assert_eq!(get_on(&mut open, "localhost", "/open/4", &[]).status, 200);
    assert_eq!(
        open.get_ref().conn.peer_certificates().unwrap()[0].as_ref(),
        old_leaf.der.as_slice()
    );
}

#[test]
fn a_bad_certificate_file_on_reload_keeps_the_old_certificate_and_counts_a_reload_error() {
    let files = Files::new();
    let ca = Ca::new("Edge CA");
    let (cert, key) = files.pair(&ca.server(&["localhost"]), "server");
    let ca_file = files.ca(&ca, "ca");
    let edge = start(
        &format!("    cert_file: {cert}\n    key_file: {key}\n"),
        "",
        "",
        ROUTES,
    );
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n").unwrap();
    signal(&edge.gw.proc, "HUP");
    wait_until("the reload to be refused", Duration::from_secs(20), || {
        metric(
            &edge.gw.metrics(),
            "portcullis_config_reloads_total",
            r#"result="error""#,
        ) == 1.0
    });
    let log = edge.gw.proc.log_text();
    assert!(
        log.contains("configuration reload rejected") && log.contains("listeners.tls: `"),
        "{log}"
    );
    let still = curl(&["--cacert", &ca_file, &edge.url("localhost", "/open/x")]);
    assert_eq!(still.status, 200, "{still:?}");
}

#[test]
fn required_client_certificates_refuse_a_handshake_without_one() {
    let files = Files::new();
    let ca = Ca::new("Edge CA");
    let (cert, key) = files.pair(&ca.server(&["localhost"]), "server");
    let ca_file = files.ca(&ca, "ca");
    let (client_cert, client_key) = files.pair(&ca.client("alice"), "alice");
    let stranger = Ca::new("Stranger CA");
    let (stranger_cert, stranger_key) = files.pair(&stranger.client("mallory"), "mallory");
    let edge = start(
        &format!(
            "    cert_file: {cert}\n    key_file: {key}\n    client_auth:\n      ca_file: {ca_file}\n"
        ),
        "",
        "",
        ROUTES,
    );
    let url = edge.url("localhost", "/open/mtls");
    let without = curl(&["--cacert", &ca_file, &url]);
    assert!(
        !without.ok && without.status == 0,
        "{without:?}: {}",
        without.stderr
    );
    let foreign = curl(&[
        "--cacert",
        &ca_file,
        "--cert",
        &stranger_cert,
        "--key",
        &stranger_key,
        &url,
    ]);
    assert!(!foreign.ok && foreign.status == 0, "{foreign:?}");
    let with = curl(&[
        "--cacert",
        &ca_file,
        "--cert",
        &client_cert,
        "--key",
        &client_key,
        &url,
    ]);
    assert_eq!(with.status, 200, "{with:?}");
    wait_until(
        "both refusals to be counted",
        Duration::from_secs(10),
        || edge.handshakes("client_certificate", "unknown") == 2.0,
    );
}

/// A plugin that hands the request JSON it gets to the upstream in one header.
const ECHO_PLUGIN: &str = r#"(module
  (import "portcullis" "set_header" (func $set_header (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-plugin-request")
  (global $bump (mut i32) (i32.const 1024))
  (func (export "portcullis_abi_version") (result i32) (i32.const 1))
  (func (export "portcullis_alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (local.get $p) (i32.add (local.get $len) (i32.const 8))))
    (local.get $p))
  (func (export "portcullis_init") (param i32 i32) (result i32)
    (global.set $bump (i32.const 1024))
    (i32.const 0))
  (func (export "portcullis_on_request") (param i32 i32) (param $req i32) (param $len i32) (result i32)
    (global.set $bump (i32.const 1024))
    (if (call $set_header (i32.const 16) (i32.const 16) (local.get $req) (local.get $len))
      (then (return (i32.const 2))))
    (i32.const 0)))
"#;

#[test]
fn optional_client_certificates_let_routes_decide_and_reach_the_plugin() {
    let files = Files::new();
    let ca = Ca::new("Edge CA");
    let (cert, key) = files.pair(&ca.server(&["localhost"]), "server");
    let ca_file = files.ca(&ca, "ca");
    let alice = ca.client("alice");
    let bob = ca.client("bob");
    let (alice_cert, alice_key) = files.pair(&alice, "alice");
    let (bob_cert, bob_key) = files.pair(&bob, "bob");
    let plugin = files.path("echo.wat");
    std::fs::write(&plugin, ECHO_PLUGIN).unwrap();
    let routes = format!(
        "  - name: mtls\n    match: {{ path_prefix: /mtls }}\n    upstream: main\n    auth: none\n    require_client_cert: true\n    plugins: [echo]\n  - name: pinned\n    match: {{ path_prefix: /pinned }}\n    upstream: main\n    auth: none\n    require:\n      - {{ client_cert: sha256, in: [\"{}\"] }}\n      - {{ client_cert: subject, equals: \"CN=alice, O=Portcullis Tests\" }}\n{ROUTES}",
        alice.thumbprint()
    );
    let edge = start(
        &format!(
            "    cert_file: {cert}\n    key_file: {key}\n    client_auth:\n      ca_file: {ca_file}\n      mode: optional\n"
        ),
        "",
        &format!(
            "plugins:\n  echo:\n    module: {}\n    allow_headers: [x-plugin-request]\n    timeout: 2s\n",
            display(&plugin)
        ),
        &routes,
    );
    let with = |cert: &str, key: &str, path: &str| {
        curl(&[
            "--cacert",
            &ca_file,
            "--cert",
            cert,
            "--key",
            key,
            &edge.url("localhost", path),
        ])
    };
    // No certificate: the handshake passes, the route refuses.
    let without = curl(&["--cacert", &ca_file, &edge.url("localhost", "/mtls/x")]);
    assert_eq!(without.status, 403, "{without:?}");
    let refusal: Value = serde_json::from_str(&without.body).unwrap();
    assert_eq!(refusal["error"], "client_certificate_required");
    assert!(refusal["message"]
        .as_str()
        .unwrap()
        .contains("client certificate"));
    // Routes without client-certificate rules do not care.
    assert_eq!(
        curl(&["--cacert", &ca_file, &edge.url("localhost", "/open/x")]).status,
        200
    );
    // With one: 200, and the plugin saw its thumbprint and subject.
    let ok = with(&alice_cert, &alice_key, "/mtls/x");
    assert_eq!(ok.status, 200, "{ok:?}");
    let request = seen_headers(&ok.body)["x-plugin-request"]
        .as_str()
        .expect("the plugin's header reached the upstream")
        .to_owned();
    let request: Value = serde_json::from_str(&request).unwrap();
    assert_eq!(
        request["client_cert"],
        json!({"sha256": alice.thumbprint(), "subject": "CN=alice, O=Portcullis Tests"})
    );
    // Pinned by thumbprint and subject: alice passes, bob does not.
    assert_eq!(with(&alice_cert, &alice_key, "/pinned/x").status, 200);
    let refused = with(&bob_cert, &bob_key, "/pinned/x");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.body.contains("sha256"), "{}", refused.body);
    // The plain listener never has a client certificate.
    assert_eq!(edge.gw.get("/mtls/x", &[]).status, 403);
    assert_eq!(edge.gw.get("/open/x", &[]).status, 200);
}

#[test]
fn a_silent_tls_client_is_closed_at_the_header_read_timeout_before_and_after_the_handshake() {
    let files = Files::new();
    let ca = Ca::new("Edge CA");
    let (cert, key) = files.pair(&ca.server(&["localhost"]), "server");
    let edge = start(
        &format!("    cert_file: {cert}\n    key_file: {key}\n"),
        "",
        "limits:\n  header_read_timeout: 1s\n",
        ROUTES,
    );
    let mut silent = TcpStream::connect(("127.0.0.1", edge.tls_port)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = silent.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert!(started.elapsed() < Duration::from_secs(10));
    wait_until("the timeout to be counted", Duration::from_secs(10), || {
        edge.handshakes("timeout", "unknown") == 1.0
    });

    // Handshake done with ALPN h2, then no HTTP/2 preface: the same deadline.
    let mut config = (*client_config(&ca.pem, None)).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let mut quiet = tls_connect(edge.tls_port, "localhost", Arc::new(config));
    assert_eq!(quiet.conn.alpn_protocol(), Some(&b"h2"[..]));
    let started = std::time::Instant::now();
    // The server's SETTINGS frame may come first; then the connection ends.
    loop {
        match quiet.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => assert!(started.elapsed() < Duration::from_secs(10)),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    wait_until(
        "the head timeout to be counted",
        Duration::from_secs(10),
        || {
            metric(
                &edge.gw.metrics(),
                "portcullis_client_closes_total",
                r#"reason="head_timeout""#,
            ) == 1.0
        },
    );
}

#[test]
fn h2c_serves_several_requests_on_one_connection_past_the_http1_deadlines() {
    let backend = Backend::start("h2c");
    let gw = Gateway::start(&format!(
        "listeners:\n  proxy: \"{{PROXY}}\"\n  admin: \"{{ADMIN}}\"\n  threads: 1\n  grace_period: 0s\n  h2c: true\nlimits:\n  header_read_timeout: 1s\n  keepalive_timeout: 30s\n{JWT}\nupstreams:\n  main:\n    targets: [\"{}\"]\nroutes:\n{ROUTES}",
        backend.addr()
    ));
    let port = gw.port;
    let bearer = format!("Bearer {}", token("carol"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let statuses = runtime.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut client = client.ready().await.unwrap();
        let mut statuses = Vec::new();
        for (round, path) in ["/open/1", "/api/2", "/open/3", "/api/4"]
            .iter()
            .enumerate()
        {
            if round == 2 {
                // Longer than header_read_timeout: an HTTP/1 deadline would
                // have closed the connection by now.
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            let mut request = http::Request::builder()
                .uri(format!("http://127.0.0.1:{port}{path}"))
                .body(())
                .unwrap();
            if path.starts_with("/api") {
                request
                    .headers_mut()
                    .insert("authorization", bearer.parse().unwrap());
            }
            let (response, _) = client.send_request(request, true).unwrap();
            let response = response.await.unwrap();
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            let echo: Value = serde_json::from_slice(&bytes).unwrap();
            statuses.push((status, echo["path"].as_str().unwrap_or("").to_owned()));
            client = client.ready().await.unwrap();
        }
        statuses
    });
    assert_eq!(
        statuses,
        [
            (200, "/open/1".to_owned()),
            (200, "/api/2".to_owned()),
            (200, "/open/3".to_owned()),
            (200, "/api/4".to_owned()),
        ]
    );
    let metrics = gw.metrics();
    assert_eq!(
        metric(
            &metrics,
            "portcullis_client_closes_total",
            r#"reason="head_timeout""#
        ),
        0.0
    );
    assert_eq!(
        metric(
            &metrics,
            "portcullis_requests_by_version_total",
            r#"scheme="http",version="2""#
        ),
        4.0
    );
    // HTTP/1.1 on the same port is still read with its deadlines.
    assert_eq!(gw.get("/open/h1", &[]).status, 200);
}

#[test]
fn a_silent_client_on_an_h2c_listener_still_meets_the_head_deadline() {
    let backend = Backend::start("h2c");
    let gw = Gateway::start(&format!(
        "listeners:\n  proxy: \"{{PROXY}}\"\n  admin: \"{{ADMIN}}\"\n  threads: 1\n  grace_period: 0s\n  h2c: true\nlimits:\n  header_read_timeout: 1s\nupstreams:\n  main:\n    targets: [\"{}\"]\nroutes:\n  - name: open\n    match: {{ path_prefix: / }}\n    upstream: main\n    auth: none\n",
        backend.addr()
    ));
    // pingora peeks for the h2c preface first; that wait has the deadline too.
    let mut silent = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = std::time::Instant::now();
    let n = silent.read(&mut [0u8; 16]).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() < Duration::from_secs(10));
    wait_until(
        "the head timeout to be counted",
        Duration::from_secs(10),
        || {
            metric(
                &gw.metrics(),
                "portcullis_client_closes_total",
                r#"reason="head_timeout""#,
            ) == 1.0
        },
    );
}

/// A WebSocket upstream: answers the upgrade with 101 and echoes one text
/// frame back unmasked. Sends the upgrade request it saw down `seen`.
fn websocket_upstream() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let mut reader = BufReader::new(conn);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let _ = tx.send(head.clone());
            if !head.to_ascii_lowercase().contains("upgrade: websocket") {
                let _ = reader
                    .get_mut()
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                continue;
            }
            let _ = reader.get_mut().write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            );
            // One masked client frame: FIN+text, length < 126, 4-byte mask.
            let mut header = [0u8; 2];
            if reader.read_exact(&mut header).is_err() {
                continue;
            }
            let len = usize::from(header[1] & 0x7f);
            let mut mask = [0u8; 4];
            let mut payload = vec![0u8; len];
            if reader.read_exact(&mut mask).is_err() || reader.read_exact(&mut payload).is_err() {
                continue;
            }
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            let mut frame = vec![0x81, len as u8];
            frame.extend_from_slice(&payload);
            let _ = reader.get_mut().write_all(&frame);
        }
    });
    (addr, rx)
}

#[test]
fn websocket_upgrades_pass_through_tls_after_authentication() {
    let files = Files::new();
    let ca = Ca::new("Edge CA");
    let (cert, key) = files.pair(&ca.server(&["localhost"]), "server");
    let (ws_addr, seen) = websocket_upstream();
    let tls_port = free_port();
    let _gw = Gateway::start(&format!(
        "listeners:\n  proxy: \"{{PROXY}}\"\n  admin: \"{{ADMIN}}\"\n  threads: 1\n  grace_period: 0s\n  tls:\n    listen: \"127.0.0.1:{tls_port}\"\n    cert_file: {cert}\n    key_file: {key}\n{JWT}\nupstreams:\n  ws:\n    targets: [\"{ws_addr}\"]\nroutes:\n  - name: ws\n    match: {{ path_prefix: /ws }}\n    upstream: ws\n"
    ));
    let upgrade = |auth: Option<&str>| {
        let stream = tls_connect(tls_port, "localhost", client_config(&ca.pem, None));
        let mut stream = BufReader::new(stream);
        let mut headers = vec![
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ];
        if let Some(auth) = auth {
            headers.push(("Authorization", auth));
        }
        let answer = get_on(&mut stream, "localhost", "/ws/chat", &headers);
        (answer, stream)
    };
    let (refused, _) = upgrade(None);
    assert_eq!(refused.status, 401, "no token, no tunnel");

    let bearer = format!("Bearer {}", token("dave"));
    let (answer, mut stream) = upgrade(Some(&bearer));
    assert_eq!(answer.status, 101, "{answer:?}");
    let head = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        head.to_ascii_lowercase().contains("x-user-id: dave"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("x-forwarded-proto: https"),
        "{head}"
    );
    // A masked "hello" through the tunnel and its echo back.
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 5];
    frame.extend_from_slice(&mask);
    frame.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.get_mut().write_all(&frame).unwrap();
    stream.get_mut().flush().unwrap();
    let mut echo = [0u8; 7];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"\x81\x05hello");
}

/// `portcullis check` on a config with a TLS listener.
fn check(files: &Files, tls: &str) -> (bool, String) {
    let config = files.path("portcullis.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  proxy: \"127.0.0.1:8080\"\n  tls:\n    listen: \"127.0.0.1:8443\"\n{tls}upstreams:\n  main:\n    targets: [\"127.0.0.1:3000\"]\nroutes:\n  - name: open\n    match: {{ path_prefix: / }}\n    upstream: main\n    auth: none\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c", &display(&config)])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn check_reports_a_key_that_is_not_the_certificates_and_an_expired_certificate_where_written() {
    let files = Files::new();
    let ca = Ca::new("Edge CA");
    let (cert, _) = files.pair(&ca.server(&["a.test"]), "a");
    let (_, other_key) = files.pair(&ca.server(&["a.test"]), "other");
    let (expired, expired_key) = files.pair(
        &ca.server_valid(&["b.test"], (2020, 1, 1), (2021, 1, 1)),
        "expired",
    );
    let (soon, soon_key) = files.pair(
        &ca.server_valid(&["c.test"], date_in_days(-30), date_in_days(5)),
        "soon",
    );
    let (ok, text) = check(
        &files,
        &format!(
            "    cert_file: {cert}\n    key_file: {other_key}\n    certificates:\n      - cert_file: {expired}\n        key_file: {expired_key}\n      - cert_file: {soon}\n        key_file: {soon_key}\n        names: [c.test, d.test]\n"
        ),
    );
    assert!(!ok, "{text}");
    let at = |line: usize, column: usize, rest: &str| {
        let wanted = format!("portcullis.yaml:{line}:{column}: {rest}");
        assert!(text.contains(&wanted), "expected `{wanted}` in:\n{text}");
    };
    at(
        6,
        15,
        &format!(
            "listeners.tls: `{other_key}` (the key for `{cert}`): the private key does not belong to the certificate"
        ),
    );
    at(
        8,
        20,
        &format!("listeners.tls.certificates[0]: certificate `{expired}` expired on 2021-01-01"),
    );
    at(
        12,
        25,
        &format!("listeners.tls.certificates[1].names: certificate `{soon}` does not cover `d.test` (it covers c.test)"),
    );

    // Expiring within 14 days: the config loads, with a warning.
    let (ok, text) = check(
        &files,
        &format!("    cert_file: {soon}\n    key_file: {soon_key}\n"),
    );
    assert!(ok, "{text}");
    let (y, m, d) = date_in_days(5);
    let wanted = format!(
        "portcullis.yaml:5:16: listeners.tls: certificate `{soon}` expires on {y:04}-{m:02}-{d:02} (in 4 days)"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("warning: ") && l.contains(&wanted)),
        "expected a warning `{wanted}` in:\n{text}"
    );

    // Client-certificate rules need a client CA; the TLS port is not the plain one.
    std::fs::write(
        files.path("rules.yaml"),
        format!(
            "listeners:\n  proxy: \"127.0.0.1:8080\"\n  tls:\n    listen: \"127.0.0.1:8080\"\n    cert_file: {soon}\n    key_file: {soon_key}\nupstreams:\n  main:\n    targets: [\"127.0.0.1:3000\"]\nroutes:\n  - name: pinned\n    match: {{ path_prefix: / }}\n    upstream: main\n    auth: none\n    require_client_cert: true\n    require:\n      - {{ client_cert: sha256, claim: sub, equals: x }}\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c", &display(&files.path("rules.yaml"))])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for wanted in [
        "rules.yaml:4:13: listeners.tls.listen 127.0.0.1:8080 uses port 8080 like listeners.proxy",
        "rules.yaml:17:9: route `pinned`: a requirement names exactly one of `claim` (a token claim) or `client_cert`",
        "rules.yaml:11:11: route `pinned` asks for a client certificate (`require_client_cert` or a `client_cert` requirement), but `listeners.tls.client_auth` is not configured",
    ] {
        assert!(text.contains(wanted), "expected `{wanted}` in:\n{text}");
    }

    // Unreadable files are named where they are written.
    let (ok, text) = check(
        &files,
        "    cert_file: missing.crt\n    key_file: missing.key\n",
    );
    assert!(!ok);
    assert!(
        text.contains("portcullis.yaml:5:16: cannot read certificate file `missing.crt`"),
        "{text}"
    );
    assert!(
        text.contains("portcullis.yaml:6:15: cannot read private key file `missing.key`"),
        "{text}"
    );
}
