//! TLS to the Postgres session store: a throwaway cluster started with
//! `ssl=on` and a server certificate from a CA made in the test
//! (`common/postgres.rs`, `Cluster::start_tls`).
//!
//! - `sslmode=verify-full` with the right `sslrootcert` works end to end:
//!   a login and a refresh through the gateway, over TLS connections;
//! - a wrong CA makes `portcullis run` exit non-zero at start, naming the
//!   store (password redacted) and the TLS reason;
//! - `require` encrypts without checking; `verify-ca` and `verify-full`
//!   refuse a certificate from another CA; `verify-ca` accepts one from the
//!   right CA for another host name, which `verify-full` refuses;
//! - `portcullis check` reports an unreadable `sslrootcert` at the store's line.

mod common;
#[path = "common/test_ca.rs"]
mod pki;
#[path = "common/postgres.rs"]
mod postgres;

use std::path::Path;
use std::time::Duration;

use common::*;
use postgres::{Cluster, ServerTls, TestDb};
use serde_json::json;

const REFRESH_SECRET: &str = "refresh-secret-0123456789-0123456789-abcdef";

/// A cluster serving TLS with a certificate for `names` from `ca`.
fn tls_cluster(ca: &pki::TestCa, names: &[&str]) -> Cluster {
    let issued = ca.server(names);
    Cluster::start_tls(ServerTls {
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
    })
    .unwrap_or_else(|e| panic!("start a TLS Postgres cluster: {e}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

/// The gateway config: sessions on `store`, logins intercepted on `backend`.
fn config(store: &str, backend: &str) -> String {
    format!(
        r#"listeners:
  proxy: "{{PROXY}}"
  admin: "{{ADMIN}}"
  threads: 2
  grace_period: 0s
jwt:
  keys:
    - kid: hs
      algorithms: [HS256]
      secret: "{{SECRET}}"
      sign: true
upstreams:
  main:
    targets: ["{backend}"]
routes:
  - name: login
    match: {{ path: /api/auth/login, methods: [POST] }}
    upstream: main
    auth: none
    login:
      subject: /user/id
  - name: api
    match: {{ path_prefix: /api }}
    upstream: main
sessions:
  store: "{store}"
  refresh_secret: "{REFRESH_SECRET}"
"#
    )
}

#[test]
fn a_verify_full_store_with_the_right_ca_serves_a_refresh_through_the_gateway() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = pki::TestCa::new("Postgres CA");
    let ca_file = ca.write(dir.path(), "pg-ca");
    let cluster = tls_cluster(&ca, &["127.0.0.1", "localhost"]);
    let rt = runtime();
    let db = rt.block_on(TestDb::create_on(&cluster.url("postgres")));
    let store = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        db.url,
        ca_file.display()
    );
    let backend = Backend::start("app");
    let gw = Gateway::start(&config(&store, &backend.addr()));

    let login = request(
        gw.port,
        "POST",
        "/api/auth/login",
        &[],
        Some(&json!({"email": "bob@example.com", "password": "password123"}).to_string()),
    );
    assert_eq!(login.status, 200, "{}\n{}", login.body, gw.proc.log_text());
    let refresh_token = login.json()["refreshToken"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    let refreshed = request(
        gw.port,
        "POST",
        "/api/auth/refresh",
        &[],
        Some(&json!({ "refreshToken": refresh_token }).to_string()),
    );
    assert_eq!(
        refreshed.status,
        200,
        "{}\n{}",
        refreshed.body,
        gw.proc.log_text()
    );
    assert!(refreshed.json()["accessToken"].is_string());

    // The gateway's connections to the store are TLS ones.
    let encrypted: i64 = rt.block_on(async {
        let mut admin = postgres::connect_when_ready(&cluster.url("postgres")).await;
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE s.ssl AND a.application_name LIKE 'portcullis%'",
        )
        .fetch_one(&mut admin)
        .await
        .expect("read pg_stat_ssl")
    });
    assert!(encrypted > 0, "no TLS connection from the gateway");
    let plain: i64 = rt.block_on(async {
        let mut admin = postgres::connect_when_ready(&cluster.url("postgres")).await;
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE NOT s.ssl AND a.application_name LIKE 'portcullis%'",
        )
        .fetch_one(&mut admin)
        .await
        .expect("read pg_stat_ssl")
    });
    assert_eq!(plain, 0, "a gateway connection without TLS");
}

#[test]
fn a_store_behind_a_wrong_ca_stops_the_gateway_at_start_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = pki::TestCa::new("Postgres CA");
    let stranger = pki::TestCa::new("not the Postgres CA");
    let wrong_ca = stranger.write(dir.path(), "wrong-ca");
    let cluster = tls_cluster(&ca, &["127.0.0.1"]);
    let store = format!(
        "postgres://postgres:hunter2@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}",
        cluster.port,
        wrong_ca.display()
    );
    let config_file = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config_file,
        render(&config(&store, "127.0.0.1:9"), free_port(), free_port()),
    )
    .expect("write config");
    let mut gw = spawn_portcullis(
        &["run", "-c", config_file.to_str().expect("utf-8 path")],
        dir.path().join("gateway.log"),
    );
    let status = wait_for_exit(&mut gw, Duration::from_secs(60));
    let log = gw.log_text();
    assert!(!status.success(), "the gateway started:\n{log}");
    assert!(log.contains("cannot open the session store"), "{log}");
    assert!(
        log.contains(&format!(
            "postgres://postgres:***@127.0.0.1:{}/postgres",
            cluster.port
        )),
        "the store is named, its password redacted:\n{log}"
    );
    assert!(!log.contains("hunter2"), "{log}");
    assert!(
        log.contains("TLS") && log.contains("UnknownIssuer"),
        "the TLS reason is named:\n{log}"
    );
}

/// A TLS cluster whose certificate (for `names`) comes from `ca`, with the
/// files of that CA and of another one, for opening the store directly.
struct TlsStore {
    base: String,
    ca: String,
    wrong: String,
    _cluster: Cluster,
    _dir: tempfile::TempDir,
}

impl TlsStore {
    fn start(names: &[&str]) -> TlsStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = pki::TestCa::new("Postgres CA");
        let ca_file = ca.write(dir.path(), "pg-ca");
        let wrong_file = pki::TestCa::new("another CA").write(dir.path(), "other-ca");
        let cluster = tls_cluster(&ca, names);
        let base = cluster.url("postgres");
        // Wait for the server without TLS first: start-up is not the point here.
        runtime().block_on(async { drop(postgres::connect_when_ready(&base).await) });
        TlsStore {
            base,
            ca: ca_file.display().to_string(),
            wrong: wrong_file.display().to_string(),
            _cluster: cluster,
            _dir: dir,
        }
    }

    /// Opens the store at `base?query`; the error's text when it fails.
    fn open(&self, query: &str) -> Result<(), String> {
        let url = format!("{}?{query}", self.base);
        runtime()
            .block_on(portcullis::session::store::open(&url))
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

#[test]
fn require_encrypts_without_a_ca_and_verify_modes_refuse_a_certificate_from_another_ca() {
    let store = TlsStore::start(&["127.0.0.1"]);
    // `require`: encrypted, nothing verified (no CA needed).
    let required = store.open("sslmode=require");
    assert!(required.is_ok(), "require: {required:?}");
    for mode in ["verify-ca", "verify-full"] {
        let trusted = store.open(&format!("sslmode={mode}&sslrootcert={}", store.ca));
        assert!(trusted.is_ok(), "{mode}: {trusted:?}");
        let error = store
            .open(&format!("sslmode={mode}&sslrootcert={}", store.wrong))
            .expect_err("another CA is refused");
        assert!(
            error.contains("TLS error") && error.contains("UnknownIssuer"),
            "{mode} with another CA: {error}"
        );
    }
}

#[test]
fn verify_ca_trusts_the_chain_whatever_the_name_while_verify_full_wants_the_host_name() {
    // The certificate names another host than the one the URL connects to.
    let store = TlsStore::start(&["db.internal"]);
    assert!(store.base.contains("127.0.0.1"), "{}", store.base);
    let chain_only = store.open(&format!("sslmode=verify-ca&sslrootcert={}", store.ca));
    assert!(chain_only.is_ok(), "verify-ca: {chain_only:?}");
    let error = store
        .open(&format!("sslmode=verify-full&sslrootcert={}", store.ca))
        .expect_err("verify-full wants the host's name");
    assert!(
        error.contains("TLS error") && error.contains("not valid for name"),
        "verify-full for a certificate of another name: {error}"
    );
    let error = store
        .open(&format!("sslmode=verify-ca&sslrootcert={}", store.wrong))
        .expect_err("verify-ca still wants the CA");
    assert!(
        error.contains("TLS error") && error.contains("UnknownIssuer"),
        "verify-ca with another CA: {error}"
    );
}

#[test]
fn check_reports_an_unreadable_sslrootcert_at_the_store_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = config(
        "postgres://app@db.internal/portcullis?sslmode=verify-full&sslrootcert=certs/missing.pem",
        "127.0.0.1:3000",
    );
    let (ok, text) = check(dir.path(), &yaml);
    assert!(!ok, "{text}");
    assert!(
        text.contains("portcullis.yaml:26:10: session store `postgres://app@db.internal/portcullis?sslmode=verify-full&sslrootcert=certs/missing.pem`: `sslrootcert` file `certs/missing.pem`"),
        "{text}"
    );
    assert!(
        text.contains("paths are relative to the config file's directory"),
        "{text}"
    );

    let (ok, text) = check(
        dir.path(),
        &config(
            "postgres://app@db.internal/p?sslmode=maybe",
            "127.0.0.1:3000",
        ),
    );
    assert!(!ok, "{text}");
    assert!(text.contains("\"maybe\""), "{text}");

    std::fs::write(dir.path().join("notes.txt"), "not a certificate\n").expect("write");
    let (ok, text) = check(
        dir.path(),
        &config(
            "postgres://app@db.internal/p?sslmode=verify-full&sslrootcert=notes.txt",
            "127.0.0.1:3000",
        ),
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("`sslrootcert` file `notes.txt`")
            && text.contains("holds no PEM certificate"),
        "{text}"
    );

    // A relative path is taken from the config file's directory.
    std::fs::create_dir(dir.path().join("certs")).expect("create certs/");
    pki::TestCa::new("Postgres CA").write(&dir.path().join("certs"), "ca");
    let (ok, text) = check(
        dir.path(),
        &config(
            "postgres://app@db.internal/p?sslmode=verify-full&sslrootcert=certs/ca.crt",
            "127.0.0.1:3000",
        ),
    );
    assert!(ok, "{text}");
    assert!(!text.contains("warning"), "{text}");
    let (ok, text) = check(
        dir.path(),
        &config(
            "postgres://app@db.internal/p?sslmode=verify-ca&sslrootcert=certs/ca.crt",
            "127.0.0.1:3000",
        ),
    );
    assert!(ok, "{text}");
    assert!(
        !text.contains("warning"),
        "verify-ca is read as written: {text}"
    );
}

/// Runs `portcullis check` on `yaml` (in `dir`); success and output.
fn check(dir: &Path, yaml: &str) -> (bool, String) {
    let path = dir.join("portcullis.yaml");
    std::fs::write(&path, render(yaml, 8080, 9090)).expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c", path.to_str().expect("utf-8 path")])
        .output()
        .expect("run portcullis check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}
