//! TLS toward upstreams, against real HTTPS servers (Python's `http.server`
//! in `ssl`, tests/fixtures/https_server.py) with certificates from CAs made
//! in the test:
//!
//! - a certificate from the configured `ca_file` is trusted (the server
//!   name defaults to the target's host, here an IP address);
//! - one from an unknown CA, for another name, or expired is a 502
//!   `upstream_error`, and the log line names the reason;
//! - `verify: false` accepts any certificate;
//! - a configured client certificate is presented to a server that
//!   requires one;
//! - a health check path is checked over TLS;
//! - `portcullis check` reports unusable TLS files at `file:line:column`.

mod common;
#[path = "common/peers.rs"]
mod peers;
#[path = "common/test_ca.rs"]
mod pki;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use peers::HttpsServer;

/// A gateway whose routes `/<name>/…` go to upstream `<name>` (prefix stripped).
fn gateway(upstreams: &[(&str, String)]) -> Gateway {
    let mut yaml = String::from(
        "listeners:\n  proxy: \"{PROXY}\"\n  admin: \"{ADMIN}\"\n  threads: 2\n  grace_period: 0s\nupstreams:\n",
    );
    for (name, body) in upstreams {
        yaml.push_str(&format!("  {name}:\n{body}"));
    }
    yaml.push_str("routes:\n");
    for (name, _) in upstreams {
        yaml.push_str(&format!(
            "  - name: {name}\n    match: {{ path_prefix: /{name} }}\n    upstream: {name}\n    auth: none\n    strip_prefix: /{name}\n"
        ));
    }
    Gateway::start(&yaml)
}

/// An upstream block: `targets` at `port`, then `extra` lines (4 spaces in).
fn upstream(port: u16, extra: &str) -> String {
    format!("    targets: [\"127.0.0.1:{port}\"]\n{extra}")
}

fn dump_on_panic(gw: &Gateway) {
    if std::thread::panicking() {
        eprintln!("--- gateway log ---\n{}", gw.proc.log_text());
    }
}

struct Dump<'a>(&'a Gateway);

impl Drop for Dump<'_> {
    fn drop(&mut self) {
        dump_on_panic(self.0);
    }
}

/// Polls the gateway log until a line says a TLS handshake failed for
/// `reason`; that line.
fn wait_for_tls_failure(gw: &Gateway, reason: &str) -> String {
    let mut found = String::new();
    wait_until(
        &format!("a log line naming the TLS failure `{reason}`"),
        Duration::from_secs(10),
        || {
            let log = gw.proc.log_text();
            match log.lines().find(|l| {
                l.contains("TLS handshake with the upstream failed") && l.contains(reason)
            }) {
                Some(line) => {
                    found = line.to_owned();
                    true
                }
                None => false,
            }
        },
    );
    found
}

#[test]
fn an_https_upstream_signed_by_the_configured_ca_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = pki::TestCa::new("upstream CA");
    let ca_file = ca.write(dir.path(), "ca");
    let (cert, key) = ca.server(&["127.0.0.1"]).write(dir.path(), "server");
    let server = HttpsServer::start(dir.path(), &cert, &key, None);
    let gw = gateway(&[(
        "secure",
        upstream(
            server.port,
            &format!("    tls:\n      ca_file: \"{}\"\n", ca_file.display()),
        ),
    )]);
    let _dump = Dump(&gw);
    let resp = gw.get("/secure/hello?x=1", &[]);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["path"], "/hello?x=1");
    assert_eq!(server.requests(), vec!["GET /hello?x=1 client=-"]);
}

#[test]
fn an_upstream_certificate_from_an_unknown_ca_is_a_502_and_the_log_names_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trusted = pki::TestCa::new("the CA the gateway trusts");
    let ca_file = trusted.write(dir.path(), "ca");
    let stranger = pki::TestCa::new("a CA nobody trusts");
    let (cert, key) = stranger.server(&["127.0.0.1"]).write(dir.path(), "server");
    let server = HttpsServer::start(dir.path(), &cert, &key, None);
    let gw = gateway(&[
        (
            "strict",
            upstream(
                server.port,
                &format!("    tls:\n      ca_file: \"{}\"\n", ca_file.display()),
            ),
        ),
        (
            "lenient",
            upstream(server.port, "    tls: { verify: false }\n"),
        ),
    ]);
    let _dump = Dump(&gw);
    let refused = gw.get("/strict/x", &[]);
    assert_eq!(refused.status, 502, "{}", refused.body);
    assert_eq!(refused.json()["error"], "upstream_error");
    let line = wait_for_tls_failure(&gw, "unknown_ca");
    assert!(
        line.contains("strict"),
        "the line names the upstream: {line}"
    );
    assert!(
        !gw.proc.log_text().contains("Fail to proxy"),
        "one line per failure"
    );

    let accepted = gw.get("/lenient/x", &[]);
    assert_eq!(accepted.status, 200, "verify: false: {}", accepted.body);
    assert_eq!(server.requests(), vec!["GET /x client=-"]);
}

#[test]
fn a_certificate_for_another_name_or_an_expired_one_is_a_502_naming_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = pki::TestCa::new("upstream CA");
    let ca_file = ca.write(dir.path(), "ca");
    let (cert, key) = ca.server(&["other.test"]).write(dir.path(), "other");
    let other = HttpsServer::start(dir.path(), &cert, &key, None);
    let (cert, key) = ca.expired_server(&["127.0.0.1"]).write(dir.path(), "old");
    let old = HttpsServer::start(dir.path(), &cert, &key, None);
    let tls = format!("    tls:\n      ca_file: \"{}\"\n", ca_file.display());
    let with_sni = format!(
        "    tls:\n      ca_file: \"{}\"\n      sni: other.test\n",
        ca_file.display()
    );
    let gw = gateway(&[
        ("mismatch", upstream(other.port, &tls)),
        ("named", upstream(other.port, &with_sni)),
        ("expired", upstream(old.port, &tls)),
    ]);
    let _dump = Dump(&gw);
    assert_eq!(gw.get("/mismatch/x", &[]).status, 502);
    wait_for_tls_failure(&gw, "name_mismatch");
    let named = gw.get("/named/x", &[]);
    assert_eq!(
        named.status, 200,
        "`sni` names the certificate's host: {}",
        named.body
    );
    assert_eq!(gw.get("/expired/x", &[]).status, 502);
    wait_for_tls_failure(&gw, "expired");
}

#[test]
fn the_client_certificate_is_presented_when_configured() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = pki::TestCa::new("upstream CA");
    let ca_file = ca.write(dir.path(), "ca");
    let clients = pki::TestCa::new("client CA");
    let client_ca = clients.write(dir.path(), "client-ca");
    let (client_cert, client_key) = clients
        .client("portcullis-gateway")
        .write(dir.path(), "client");
    let (cert, key) = ca.server(&["127.0.0.1"]).write(dir.path(), "server");
    let server = HttpsServer::start(dir.path(), &cert, &key, Some(&client_ca));
    let gw = gateway(&[
        (
            "mtls",
            upstream(
                server.port,
                &format!(
                    "    tls:\n      ca_file: \"{}\"\n      client_cert_file: \"{}\"\n      client_key_file: \"{}\"\n",
                    ca_file.display(),
                    client_cert.display(),
                    client_key.display()
                ),
            ),
        ),
        (
            "anonymous",
            upstream(
                server.port,
                &format!("    tls:\n      ca_file: \"{}\"\n", ca_file.display()),
            ),
        ),
    ]);
    let _dump = Dump(&gw);
    let resp = gw.get("/mtls/who", &[]);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["client"], "portcullis-gateway");
    let refused = gw.get("/anonymous/who", &[]);
    assert_eq!(
        refused.status, 502,
        "no client certificate: the upstream refuses: {}",
        refused.body
    );
    assert_eq!(
        server.requests(),
        vec!["GET /who client=portcullis-gateway"]
    );
}

#[test]
fn a_health_check_path_is_checked_over_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = pki::TestCa::new("upstream CA");
    let ca_file = ca.write(dir.path(), "ca");
    let (cert, key) = ca.server(&["127.0.0.1"]).write(dir.path(), "server");
    let server = HttpsServer::start(dir.path(), &cert, &key, None);
    let gw = gateway(&[(
        "checked",
        upstream(
            server.port,
            &format!(
                "    tls:\n      ca_file: \"{}\"\n    health_check:\n      path: /health\n      interval: 100ms\n      timeout: 2s\n      unhealthy_after: 1\n",
                ca_file.display()
            ),
        ),
    )]);
    let _dump = Dump(&gw);
    wait_until(
        "three health checks over TLS",
        Duration::from_secs(20),
        || {
            server
                .requests()
                .iter()
                .filter(|r| r.starts_with("GET /health "))
                .count()
                >= 3
        },
    );
    let labels = format!("target=\"127.0.0.1:{}\",upstream=\"checked\"", server.port);
    assert_eq!(
        metric(&gw.metrics(), "portcullis_upstream_health", &labels),
        1.0,
        "a check that fails once takes the target out (unhealthy_after: 1)"
    );
    assert_eq!(gw.get("/checked/x", &[]).status, 200);
}

// ---------------------------------------------------------------------------
// portcullis check
// ---------------------------------------------------------------------------

/// Runs `portcullis check` on `yaml` (in `dir`); success and output.
fn check(dir: &Path, yaml: &str) -> (bool, String) {
    let path = dir.join("portcullis.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c", path.to_str().expect("utf-8 path")])
        .output()
        .expect("run portcullis check");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// A config with one upstream whose lines (4 spaces in) follow `targets`.
/// The upstream's extra lines start on line 6.
fn one_upstream(extra: &str) -> String {
    format!(
        "listeners:\n  proxy: \"127.0.0.1:8080\"\nupstreams:\n  api:\n    targets: [\"127.0.0.1:3000\"]\n{extra}routes:\n  - name: api\n    match: {{ path_prefix: /api }}\n    upstream: api\n    auth: none\n"
    )
}

#[track_caller]
fn assert_reports(text: &str, line_col: &str, message: &str) {
    let wanted = format!("portcullis.yaml:{line_col}: {message}");
    assert!(text.contains(&wanted), "expected `{wanted}` in:\n{text}");
}

#[test]
fn check_reports_an_unreadable_or_invalid_ca_file_at_its_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ok, text) = check(
        dir.path(),
        &one_upstream("    tls:\n      ca_file: missing.pem\n"),
    );
    assert!(!ok, "{text}");
    assert_reports(
        &text,
        "7:16",
        "cannot read upstream `api` CA file `missing.pem`",
    );

    std::fs::write(
        dir.path().join("junk.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let (ok, text) = check(
        dir.path(),
        &one_upstream("    tls:\n      ca_file: junk.pem\n"),
    );
    assert!(!ok, "{text}");
    assert_reports(
        &text,
        "7:16",
        "upstream `api` CA file `junk.pem` holds a certificate (1) that is not valid X.509",
    );

    std::fs::write(dir.path().join("empty.pem"), "nothing here\n").expect("write");
    let (ok, text) = check(
        dir.path(),
        &one_upstream("    tls:\n      ca_file: empty.pem\n"),
    );
    assert!(!ok, "{text}");
    assert_reports(
        &text,
        "7:16",
        "upstream `api` CA file `empty.pem` holds no PEM certificate",
    );
}

#[test]
fn check_reports_a_client_key_that_does_not_fit_its_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = pki::TestCa::new("client CA");
    let (cert, _) = ca.client("one").write(dir.path(), "one");
    let (_, other_key) = ca.client("two").write(dir.path(), "two");
    let yaml = one_upstream(&format!(
        "    tls:\n      client_cert_file: {}\n      client_key_file: {}\n",
        cert.display(),
        other_key.display()
    ));
    let (ok, text) = check(dir.path(), &yaml);
    assert!(!ok, "{text}");
    assert_reports(&text, "8:24", "upstream `api` client key");
    assert!(text.contains("does not fit the certificate"), "{text}");

    let (ok, text) = check(
        dir.path(),
        &one_upstream(&format!(
            "    tls:\n      client_cert_file: {}\n",
            cert.display()
        )),
    );
    assert!(!ok, "{text}");
    assert_reports(
        &text,
        "7:25",
        "upstream `api`: `tls.client_cert_file` needs `tls.client_key_file`",
    );
}

#[test]
fn check_refuses_tls_on_an_h2c_upstream_and_a_bad_server_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ok, text) = check(
        dir.path(),
        &one_upstream("    protocol: h2c\n    tls: { verify: false }\n"),
    );
    assert!(!ok, "{text}");
    assert_reports(&text, "7:10", "upstream `api` has `protocol: h2c`");

    let (ok, text) = check(
        dir.path(),
        &one_upstream("    tls:\n      sni: \"not a name\"\n"),
    );
    assert!(!ok, "{text}");
    assert_reports(
        &text,
        "7:12",
        "upstream `api`: `tls.sni` `not a name` is not a DNS name",
    );

    let (ok, text) = check(dir.path(), &one_upstream("    protocol: h3\n"));
    assert!(!ok, "{text}");
    assert!(text.contains("portcullis.yaml:6:"), "{text}");
}

#[test]
fn check_reports_grpc_health_check_mistakes_where_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ok, text) = check(
        dir.path(),
        &one_upstream(
            "    protocol: h2c\n    health_check:\n      grpc: true\n      path: /health\n",
        ),
    );
    assert!(!ok, "{text}");
    assert_reports(
        &text,
        "8:13",
        "upstream `api`: a health check is either `path` (HTTP GET) or `grpc: true`, not both",
    );

    let (ok, text) = check(
        dir.path(),
        &one_upstream("    health_check:\n      grpc: true\n"),
    );
    assert!(!ok, "{text}");
    assert_reports(
        &text,
        "7:13",
        "upstream `api`: a gRPC health check needs HTTP/2: set `protocol: h2c` (plain text) or `h2` (TLS)",
    );

    let (ok, text) = check(
        dir.path(),
        &one_upstream("    protocol: h2c\n    health_check:\n      grpc_service: my.Service\n"),
    );
    assert!(!ok, "{text}");
    assert_reports(
        &text,
        "8:21",
        "upstream `api`: `grpc_service` names the service of a gRPC health check: add `grpc: true` beside it",
    );

    for extra in [
        "    protocol: h2c\n    health_check:\n      grpc: true\n      grpc_service: my.Service\n",
        "    protocol: h2\n    health_check:\n      grpc: true\n",
        "    health_check:\n      grpc: false\n      path: /health\n",
    ] {
        let (ok, text) = check(dir.path(), &one_upstream(extra));
        assert!(ok, "{extra}: {text}");
    }
}

#[test]
fn check_accepts_every_protocol_and_a_verified_tls_upstream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = pki::TestCa::new("upstream CA");
    let ca_file = ca.write(dir.path(), "ca");
    let clients = pki::TestCa::new("client CA");
    let (cert, key) = clients.client("gw").write(dir.path(), "client");
    for extra in [
        "    protocol: http1\n".to_owned(),
        "    protocol: h2c\n".to_owned(),
        "    protocol: h2\n".to_owned(),
        format!(
            "    protocol: h2\n    tls:\n      ca_file: ca.crt\n      sni: api.internal\n      client_cert_file: {}\n      client_key_file: {}\n",
            cert.display(),
            key.display()
        ),
    ] {
        let (ok, text) = check(dir.path(), &one_upstream(&extra));
        assert!(ok, "{extra}: {text}");
    }
    assert!(ca_file.exists());
}
