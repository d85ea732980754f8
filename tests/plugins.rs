//! Wasm plugins end to end through the proxy: real gateway process, real
//! upstream, real modules compiled from plugins/ (built once by plugins/build.sh).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

fn token(claims: Value) -> String {
    let mut c = claims;
    c["exp"] = json!(now() + 600);
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("hs".into());
    format!(
        "Bearer {}",
        encode(&header, &c, &EncodingKey::from_secret(HS_SECRET.as_bytes())).unwrap()
    )
}

/// A gateway config with `plugins` and one `/api` route running `chain`.
fn config(backend: &Backend, plugins: &str, chain: &str) -> String {
    let out = plugins_out();
    format!(
        "listeners:\n  proxy: \"{{PROXY}}\"\n  admin: \"{{ADMIN}}\"\n  threads: 2\n  grace_period: 0s
jwt:
  keys:
    - kid: hs
      algorithms: [HS256]
      secret: \"{{SECRET}}\"
upstreams:
  main:
    targets: [\"{}\"]
plugins:
{}
routes:
  - name: api
    match: {{ path_prefix: / }}
    upstream: main
    plugins: [{chain}]
",
        backend.addr(),
        plugins.replace("OUT", out)
    )
}

// Fixtures keep the 10ms default deadline: it counts the worker's CPU time,
// so a loaded 2-core CI machine descheduling a worker does not trip it. The
// deadline itself is exercised by the `loop` plugin below.
const IDENTITY: &str = "  identity:
    module: OUT/claims-to-headers.wasm
    allow_headers: [X-User-Id, X-Tenant-Id, X-User-Roles, X-Plan]
    config:
      headers:
        - { header: X-User-Id, claim: sub, required: true }
        - { header: X-Tenant-Id, claim: org.tenant.id }
        - { header: X-User-Roles, claim: roles, array: join, separator: \"|\" }
        - { header: X-Plan, claim: plan, default: free }
";

fn seen(resp: &Response) -> Value {
    assert_eq!(
        resp.status, 200,
        "expected the upstream's answer: {}",
        resp.body
    );
    resp.json()["headers"].clone()
}

#[test]
fn claims_to_headers_maps_verified_claims_and_strips_client_copies() {
    let backend = Backend::start("a");
    let wat = "  lang:\n    module: OUT/example-wat.wasm\n    timeout: 2s\n    allow_headers: [x-plugin-lang]\n  c:\n    module: OUT/example-c.wasm\n    allow_headers: [x-plugin-lang-c, x-request-method]\n";
    let gw = Gateway::start(&config(
        &backend,
        &format!("{IDENTITY}{wat}"),
        "identity, lang",
    ));
    let auth = token(json!({"sub": "u-7", "org": {"tenant": {"id": "acme"}}, "roles": ["a", "b"]}));
    let h = seen(&gw.get(
        "/x",
        &[
            ("Authorization", &auth),
            ("X-Plan", "enterprise"),
            ("X-Plugin-Lang", "spoof"),
        ],
    ));
    assert_eq!(h["x-user-id"], "u-7");
    assert_eq!(h["x-tenant-id"], "acme");
    assert_eq!(h["x-user-roles"], "a|b");
    assert_eq!(
        h["x-plan"], "free",
        "a client copy of a plugin-set header is stripped first"
    );
    assert_eq!(h["x-plugin-lang"], "wat", "a WAT plugin in the same chain");
    let m = gw.metrics();
    assert_eq!(
        metric(
            &m,
            "portcullis_plugin_invocations_total",
            r#"plugin="identity",result="ok""#
        ),
        1.0
    );
    assert!(m.contains(r#"portcullis_plugin_duration_seconds_count{plugin="identity"} 1"#));
}

#[test]
fn a_deny_answers_with_the_plugins_status_and_stops_the_chain() {
    let backend = Backend::start("a");
    let guard = "  admins-only:
    module: OUT/require-claims.wasm
    timeout: 2s
    config: { rules: [{ claim: role, equals: admin }], status: 403, message: admins only }
  tenant:
    module: OUT/tenant-guard.wasm
    timeout: 2s
    config: { segment: 2, claim: tenant_id }
";
    let gw = Gateway::start(&config(
        &backend,
        &format!("{IDENTITY}{guard}"),
        "admins-only, tenant, identity",
    ));
    let resp = gw.get(
        "/tenants/acme/orders",
        &[(
            "Authorization",
            &token(json!({"sub": "u", "role": "user", "tenant_id": "acme"})),
        )],
    );
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json()["message"], "admins only");
    assert_eq!(resp.json()["error"], "denied_by_policy");
    let m = gw.metrics();
    assert_eq!(
        metric(
            &m,
            "portcullis_plugin_invocations_total",
            r#"plugin="admins-only",result="deny""#
        ),
        1.0
    );
    assert!(
        !m.contains(r#"plugin="identity""#),
        "plugins after a deny are not invoked"
    );

    let admin = |tenant: &str| token(json!({"sub": "boss", "role": "admin", "tenant_id": tenant}));
    assert_eq!(
        seen(&gw.get("/tenants/acme/orders", &[("Authorization", &admin("acme"))]))["x-user-id"],
        "boss"
    );
    assert_eq!(
        gw.get(
            "/tenants/acme/orders",
            &[("Authorization", &admin("globex"))]
        )
        .status,
        403,
        "tenant mismatch"
    );
    assert_eq!(
        gw.get(
            "/tenants/acme/../globex/orders",
            &[("Authorization", &admin("acme"))]
        )
        .status,
        400
    );
}

#[test]
fn failing_plugins_fail_closed_by_default_or_are_skipped() {
    let backend = Backend::start("a");
    let hostile = "  trap:
    module: OUT/hostile-trap.wasm
  trap-skip:
    module: OUT/hostile-trap.wasm
    on_error: skip
  loop:
    module: OUT/hostile-infinite-loop.wasm
    timeout: 20ms
  sets-auth:
    module: OUT/hostile-set-authorization.wasm
    allow_headers: [x-user-id]
";
    let plugins = format!("{IDENTITY}{hostile}");
    let auth = token(json!({"sub": "u-1"}));
    let gw = Gateway::start(&config(&backend, &plugins, "trap, identity"));
    let resp = gw.get("/x", &[("Authorization", &auth)]);
    assert_eq!(resp.status, 500);
    assert_eq!(resp.json()["error"], "policy_error");
    assert!(
        !resp.body.contains("trap") && !resp.body.contains("unreachable"),
        "no detail to the client: {}",
        resp.body
    );

    gw.reload_with(&config(&backend, &plugins, "trap-skip, identity"));
    wait_until("reload", Duration::from_secs(10), || {
        metric(
            &gw.metrics(),
            "portcullis_config_reloads_total",
            r#"result="ok""#,
        ) == 1.0
    });
    assert_eq!(
        seen(&gw.get("/x", &[("Authorization", &auth)]))["x-user-id"],
        "u-1",
        "skip drops the failing plugin only"
    );

    gw.reload_with(&config(&backend, &plugins, "loop, identity"));
    wait_until("reload", Duration::from_secs(10), || {
        metric(
            &gw.metrics(),
            "portcullis_config_reloads_total",
            r#"result="ok""#,
        ) == 2.0
    });
    for _ in 0..3 {
        let resp = gw.get("/x", &[("Authorization", &auth)]);
        assert_eq!(
            resp.status, 503,
            "deadline hit, the worker answers: {}",
            resp.body
        );
    }

    gw.reload_with(&config(&backend, &plugins, "sets-auth, identity"));
    wait_until("reload", Duration::from_secs(10), || {
        metric(
            &gw.metrics(),
            "portcullis_config_reloads_total",
            r#"result="ok""#,
        ) == 3.0
    });
    assert_eq!(
        gw.get("/x", &[("Authorization", &auth)]).status,
        500,
        "writing Authorization is refused and fails the call"
    );

    let m = gw.metrics();
    assert!(
        metric(
            &m,
            "portcullis_plugin_invocations_total",
            r#"plugin="trap",result="trap""#
        ) >= 1.0
    );
    assert!(
        metric(
            &m,
            "portcullis_plugin_invocations_total",
            r#"plugin="loop",result="timeout""#
        ) >= 3.0
    );
    assert!(
        metric(
            &m,
            "portcullis_plugin_invocations_total",
            r#"plugin="sets-auth",result="violation""#
        ) >= 1.0
    );
}

#[test]
fn check_rejects_bad_modules_and_forbidden_headers_with_positions() {
    let backend = Backend::start("a");
    let bad = "  old:
    module: OUT/hostile-wrong-abi-version.wasm
  greedy:
    module: OUT/claims-to-headers.wasm
    allow_headers: [Authorization]
  gone:
    module: OUT/does-not-exist.wasm
";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, render(&config(&backend, bad, "old"), 1, 2)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("portcullis.yaml:16:13:") && text.contains("version"),
        "wrong ABI version:\n{text}"
    );
    assert!(
        text.contains("portcullis.yaml:18:13:") && text.to_lowercase().contains("authorization"),
        "forbidden header:\n{text}"
    );
    assert!(
        text.contains("portcullis.yaml:21:13: cannot read plugin module"),
        "missing module:\n{text}"
    );
    assert!(
        !text.contains("unknown plugin"),
        "a plugin that failed to load is not also `unknown`:\n{text}"
    );
}

#[test]
fn reload_swaps_a_plugin_without_dropping_requests() {
    let backend = Backend::start("a");
    let gw = Arc::new(Gateway::start(&config(&backend, IDENTITY, "identity")));
    let auth = token(json!({"sub": "u-1", "plan": "pro", "tier": "gold"}));
    assert_eq!(
        seen(&gw.get("/x", &[("Authorization", &auth)]))["x-plan"],
        "pro"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (gw, auth, stop, ok, bad) = (
            gw.clone(),
            auth.clone(),
            stop.clone(),
            ok.clone(),
            bad.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let counter = if gw.get("/x", &[("Authorization", &auth)]).status == 200 {
                    &ok
                } else {
                    &bad
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    gw.reload_with(&config(
        &backend,
        &IDENTITY.replace("claim: plan", "claim: tier"),
        "identity",
    ));
    wait_until("the new mapping", Duration::from_secs(10), || {
        seen(&gw.get("/x", &[("Authorization", &auth)]))["x-plan"] == "gold"
    });
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert!(ok.load(Ordering::Relaxed) > 0);
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "no request failed during the swap"
    );
}

/// A claims-to-headers config (X-User-Id from `sub`, required; X-Plan from
/// `plan`, default `free`) and `claims`, as files in a new temp dir.
fn plugin_test_inputs(
    claims_json: &str,
) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let claims = dir.path().join("claims.json");
    std::fs::write(
        &config,
        r#"{"headers": [{"header": "X-User-Id", "claim": "sub", "required": true},
                        {"header": "X-Plan", "claim": "plan", "default": "free"}]}"#,
    )
    .unwrap();
    std::fs::write(&claims, claims_json).unwrap();
    (dir, config, claims)
}

/// `portcullis plugin test` with its stdout going to `stdout`; returns the
/// exit status and stderr.
fn plugin_test_into(stdout: std::process::Stdio, read_one_byte: bool) -> (bool, String) {
    use std::io::Read as _;
    let (_dir, config, claims) = plugin_test_inputs(r#"{"sub": "u-1", "plan": "pro"}"#);
    let module = format!("{}/claims-to-headers.wasm", plugins_out());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["plugin", "test", &module, "--config"])
        .arg(&config)
        .arg("--claims")
        .arg(&claims)
        .args(["--allow-header", "X-User-Id", "--allow-header", "X-Plan"])
        // Enough calls that the timing line comes well after the first
        // line has been read and the pipe closed.
        .args(["--iterations", "100000"])
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(mut out) = child.stdout.take() {
        if read_one_byte {
            let mut byte = [0u8; 1];
            out.read_exact(&mut byte)
                .expect("the first byte of the report");
            assert_eq!(&byte, b"a", "the report starts with `abi: v2`");
        }
        drop(out); // `| head -c 1` exits
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    (status.success(), stderr)
}

#[test]
fn plugin_test_reports_the_abi_version_and_both_builds_decide_alike() {
    let (_dir, config, claims) = plugin_test_inputs(r#"{"sub": "u-1"}"#);
    let report = |module: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args([
                "plugin",
                "test",
                &format!("{}/{module}.wasm", plugins_out()),
            ])
            .arg("--config")
            .arg(&config)
            .arg("--claims")
            .arg(&claims)
            .args(["--allow-header", "X-User-Id", "--allow-header", "X-Plan"])
            .args(["--iterations", "0"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let changes =
        "continue with 2 header change(s):\n  set     x-user-id: u-1\n  set     x-plan: free\n";
    assert_eq!(report("claims-to-headers"), format!("abi: v2\n{changes}"));
    assert_eq!(
        report("claims-to-headers-v1"),
        format!("abi: v1\n{changes}")
    );
}

#[test]
fn plugin_test_piped_into_a_reader_that_exits_early_ends_quietly() {
    // Like `| head -c 1`: the reader takes the first byte and leaves while
    // the report is still being written.
    let (ok, stderr) = plugin_test_into(std::process::Stdio::piped(), true);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(ok, "exit status after the reader left: {stderr}");

    // The reader is gone before the first line: a socket whose other end is
    // already closed (no race with the child's first write).
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(ours);
    let (ok, stderr) = plugin_test_into(std::os::fd::OwnedFd::from(theirs).into(), false);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(ok, "exit status with no reader at all: {stderr}");
    assert!(stderr.is_empty(), "nothing to report on stderr: {stderr}");
}
