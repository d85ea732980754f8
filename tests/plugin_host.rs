//! The plugin host against real modules: the standard plugins and the
//! hostile guests built by `plugins/build.sh`, plus small WAT guests for
//! behaviour the prebuilt ones cannot show (recovery after a failure,
//! isolation, chain order).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis::plugin::{
    ChainResult, CompiledPlugin, HeaderChange, InvocationResult, Isolation, OnError, Outcome,
    PluginChain, PluginError, PluginHost, PluginSpec, RequestMeta,
};
use serde_json::json;

// ---------------------------------------------------------------- fixtures

fn host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| PluginHost::new().expect("plugin host"))
}

/// `plugins/out/`, built once per test process by `plugins/build.sh`.
fn plugins_out() -> &'static PathBuf {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins");
        let status = std::process::Command::new("bash")
            .arg(root.join("build.sh"))
            .status()
            .unwrap_or_else(|e| panic!("cannot run plugins/build.sh: {e}"));
        assert!(
            status.success(),
            "plugins/build.sh failed ({status}); run `bash plugins/build.sh` to see why"
        );
        root.join("out")
    })
}

fn module(name: &str) -> Vec<u8> {
    let path = plugins_out().join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{} missing after plugins/build.sh: {e}", path.display()))
}

fn names(list: &[&'static str]) -> Vec<HeaderName> {
    list.iter().map(|h| HeaderName::from_static(h)).collect()
}

fn spec(
    name: &str,
    wasm: Vec<u8>,
    config: serde_json::Value,
    allow: &[&'static str],
) -> PluginSpec {
    let mut spec = PluginSpec::new(name, wasm);
    spec.config = config;
    spec.allow_headers = names(allow);
    // Deadlines are wall-clock: on a busy 2-core test machine a thread can
    // be descheduled for longer than the 10 ms default mid-call. Tests about
    // deadlines set their own.
    spec.limits.deadline = RELAXED_DEADLINE;
    spec
}

const RELAXED_DEADLINE: Duration = Duration::from_secs(2);

fn compile(spec: PluginSpec) -> Arc<CompiledPlugin> {
    let name = spec.name.clone();
    Arc::new(
        CompiledPlugin::compile(host(), spec).unwrap_or_else(|e| panic!("compiling `{name}`: {e}")),
    )
}

fn compile_err(spec: PluginSpec) -> PluginError {
    match CompiledPlugin::compile(host(), spec) {
        Ok(p) => panic!("`{}` compiled but should not have", p.name()),
        Err(e) => e,
    }
}

struct Req {
    method: &'static str,
    path: String,
    query: &'static str,
    host: &'static str,
    headers: HeaderMap,
}

impl Req {
    fn get(path: &str) -> Req {
        Req {
            method: "GET",
            path: path.to_string(),
            query: "",
            host: "api.example.com",
            headers: HeaderMap::new(),
        }
    }

    fn meta(&self) -> RequestMeta<'_> {
        RequestMeta {
            method: self.method,
            path: &self.path,
            query: self.query,
            host: self.host,
            headers: &self.headers,
            client_cert: None,
        }
    }
}

fn run(chain: &PluginChain, claims: serde_json::Value, req: &Req) -> ChainResult {
    let claims = serde_json::to_vec(&claims).expect("claims json");
    chain.run(&claims, &req.meta())
}

fn call(plugin: &Arc<CompiledPlugin>, claims: serde_json::Value) -> Outcome {
    let claims = serde_json::to_vec(&claims).expect("claims json");
    plugin.call(&claims, &Req::get("/api/x").meta())
}

fn set(name: &'static str, value: &str) -> HeaderChange {
    HeaderChange::Set(
        HeaderName::from_static(name),
        HeaderValue::from_str(value).expect("header value"),
    )
}

fn remove(name: &'static str) -> HeaderChange {
    HeaderChange::Remove(HeaderName::from_static(name))
}

fn failure(outcome: Outcome) -> (PluginError, bool) {
    match outcome {
        Outcome::Failed { error, skipped, .. } => (error, skipped),
        other => panic!("expected Failed, got {other:?}"),
    }
}

fn results(r: &ChainResult) -> Vec<(&str, InvocationResult, bool)> {
    r.invocations
        .iter()
        .map(|i| (&*i.plugin, i.result, i.skipped))
        .collect()
}

fn claims_to_headers() -> Arc<CompiledPlugin> {
    compile(spec(
        "user-headers",
        module("claims-to-headers"),
        json!({"headers": [
            {"header": "X-User-Id", "claim": "sub", "required": true},
            {"header": "X-User-Roles", "claim": "roles", "array": "join", "separator": ","},
            {"header": "X-Org", "claim": "org.tenant.id", "default": "none"},
            {"header": "X-Email", "claim": "email"}
        ]}),
        &["x-user-id", "x-user-roles", "x-org", "x-email"],
    ))
}

/// A WAT guest with every import, a bump allocator reset per call, a
/// `$calls` counter global and the given data and `on_request` body
/// (params `$c $cl $r $rl`; leaves an i32).
fn wat_guest(data: &str, on_request: &str) -> Vec<u8> {
    format!(
        r#"(module
  (import "portcullis" "set_header" (func $set_header (param i32 i32 i32 i32) (result i32)))
  (import "portcullis" "deny" (func $deny (param i32 i32 i32)))
  (memory (export "memory") 1)
  (global $bump (mut i32) (i32.const 4096))
  (global $calls (mut i32) (i32.const 0))
  {data}
  (func (export "portcullis_abi_version") (result i32) (i32.const 1))
  (func (export "portcullis_alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (local.get $len)))
    (if (i32.gt_u (global.get $bump) (i32.const 65536)) (then (return (i32.const 0))))
    (local.get $p))
  (func (export "portcullis_init") (param i32 i32) (result i32)
    (global.set $bump (i32.const 4096))
    (i32.const 0))
  (func (export "portcullis_on_request") (param $c i32) (param $cl i32) (param $r i32) (param $rl i32) (result i32)
    (global.set $bump (i32.const 4096))
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    {on_request}))"#
    )
    .into_bytes()
}

/// Sets `x-calls` to this instance's call count (one digit), unless the
/// claims are longer than `{}`: then it runs `misbehave`.
fn counting_guest(misbehave: &str) -> Vec<u8> {
    wat_guest(
        r#"(data (i32.const 0) "x-calls")"#,
        &format!(
            "(if (i32.gt_u (local.get $cl) (i32.const 2)) (then {misbehave}))
             (i32.store8 (i32.const 16) (i32.add (i32.const 48) (global.get $calls)))
             (drop (call $set_header (i32.const 0) (i32.const 7) (i32.const 16) (i32.const 1)))
             (i32.const 0)"
        ),
    )
}

fn calls(n: u32) -> Outcome {
    Outcome::Continue(vec![set("x-calls", &n.to_string())])
}

// ------------------------------------------------------ standard plugins

#[test]
fn claims_to_headers_maps_nested_claims_joins_arrays_and_removes_absent_ones() {
    let plugin = claims_to_headers();
    let outcome = call(
        &plugin,
        json!({"sub": "u-42", "roles": ["admin", "ops"], "org": {"tenant": {"id": "acme"}}}),
    );
    assert_eq!(
        outcome,
        Outcome::Continue(vec![
            set("x-user-id", "u-42"),
            set("x-user-roles", "admin,ops"),
            set("x-org", "acme"),
            remove("x-email"),
        ])
    );
}

#[test]
fn claims_to_headers_uses_the_default_for_a_missing_claim() {
    let outcome = call(&claims_to_headers(), json!({"sub": "u-1", "roles": []}));
    assert_eq!(
        outcome,
        Outcome::Continue(vec![
            set("x-user-id", "u-1"),
            set("x-user-roles", ""),
            set("x-org", "none"),
            remove("x-email"),
        ])
    );
}

#[test]
fn claims_to_headers_denies_when_a_required_claim_is_missing() {
    let outcome = call(&claims_to_headers(), json!({"roles": ["admin"]}));
    assert_eq!(
        outcome,
        Outcome::Deny {
            status: 403,
            message: "missing required claim".into(),
            plugin: "user-headers".into()
        }
    );
}

#[test]
fn claims_to_headers_with_a_bad_config_fails_at_load_with_the_plugin_reason() {
    let err = compile_err(spec(
        "user-headers",
        module("claims-to-headers"),
        json!({"headers": [{"header": "X-User-Id", "claim": "sub", "requierd": true}]}),
        &["x-user-id"],
    ));
    let msg = err.to_string();
    assert!(matches!(err, PluginError::ConfigRejected { .. }), "{msg}");
    assert!(
        msg.starts_with("plugin `user-headers`: rejected its config"),
        "{msg}"
    );
    assert!(msg.contains("unknown key `requierd`"), "{msg}");
}

#[test]
fn require_claims_lets_matching_claims_through_and_denies_the_rest() {
    let plugin = compile(spec(
        "admins-only",
        module("require-claims"),
        json!({"rules": [{"claim": "role", "any_of": ["admin", "ops"]}],
               "status": 403, "message": "forbidden"}),
        &[],
    ));
    assert_eq!(
        call(&plugin, json!({"role": "ops"})),
        Outcome::Continue(vec![])
    );
    let denied = Outcome::Deny {
        status: 403,
        message: "forbidden".into(),
        plugin: "admins-only".into(),
    };
    assert_eq!(call(&plugin, json!({"role": "user"})), denied);
    assert_eq!(call(&plugin, json!({})), denied);
}

#[test]
fn tenant_guard_compares_the_path_segment_with_the_tenant_claim() {
    let plugin = compile(spec(
        "tenant-guard",
        module("tenant-guard"),
        json!({"segment": 2, "claim": "tenant_id"}),
        &[],
    ));
    let chain = PluginChain::new(vec![plugin]);
    let claims = json!({"tenant_id": "acme"});
    let ok = run(&chain, claims.clone(), &Req::get("/tenants/acme/orders"));
    assert_eq!(ok.outcome, Outcome::Continue(vec![]));
    for path in [
        "/tenants/globex/orders",
        "/tenants/%2e%2e/acme/orders",
        "/tenants",
        "/tenants//acme",
    ] {
        let r = run(&chain, claims.clone(), &Req::get(path));
        assert!(
            matches!(r.outcome, Outcome::Deny { status: 403, .. }),
            "{path}: {:?}",
            r.outcome
        );
    }
}

#[test]
fn c_and_wat_examples_run() {
    let c = compile(spec(
        "example-c",
        module("example-c"),
        json!({}),
        &["x-request-method"],
    ));
    let mut req = Req::get("/");
    req.method = "PATCH";
    let r = run(&PluginChain::new(vec![c]), json!({}), &req);
    assert_eq!(
        r.outcome,
        Outcome::Continue(vec![set("x-request-method", "PATCH")])
    );
    let wat = compile(spec(
        "example-wat",
        module("example-wat"),
        json!({}),
        &["x-plugin-lang"],
    ));
    assert_eq!(
        call(&wat, json!({})),
        Outcome::Continue(vec![set("x-plugin-lang", "wat")])
    );
}

// ------------------------------------------------------------------ chains

/// Sets `x-seen-request` to the request JSON it received, verbatim.
fn request_echo() -> Arc<CompiledPlugin> {
    let mut s = spec(
        "echo",
        wat_guest(
            r#"(data (i32.const 0) "x-seen-request")"#,
            "(drop (call $set_header (i32.const 0) (i32.const 14) (local.get $r) (local.get $rl)))
             (i32.const 0)",
        ),
        json!({}),
        &["x-seen-request"],
    );
    s.request_headers = names(&["x-user-id", "x-tenant"]);
    compile(s)
}

#[test]
fn chain_accumulates_changes_in_order_and_later_plugins_see_the_original_request() {
    let chain = PluginChain::new(vec![claims_to_headers(), request_echo()]);
    let mut req = Req::get("/api/orders");
    req.query = "page=2";
    req.headers
        .insert("x-tenant", HeaderValue::from_static("acme"));
    req.headers
        .insert("x-not-requested", HeaderValue::from_static("secret"));
    let r = run(&chain, json!({"sub": "u-7"}), &req);
    let Outcome::Continue(changes) = &r.outcome else {
        panic!("{:?}", r.outcome)
    };
    let names: Vec<&str> = changes.iter().map(|c| c.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "x-user-id",
            "x-user-roles",
            "x-org",
            "x-email",
            "x-seen-request"
        ]
    );
    let HeaderChange::Set(_, seen) = &changes[4] else {
        panic!("{:?}", changes[4])
    };
    let seen: serde_json::Value = serde_json::from_slice(seen.as_bytes()).expect("request JSON");
    // x-user-id was set by the first plugin but the echo plugin (which asked
    // for it) does not see it; x-not-requested is not shown at all.
    assert_eq!(
        seen,
        json!({"method": "GET", "path": "/api/orders", "query": "page=2",
               "host": "api.example.com", "client_cert": null, "headers": {"x-tenant": "acme"}})
    );
    assert_eq!(
        results(&r),
        [
            ("user-headers", InvocationResult::Ok, false),
            ("echo", InvocationResult::Ok, false)
        ]
    );
}

#[test]
fn a_deny_stops_the_chain_before_later_plugins_run() {
    let trap_if_called = compile(spec(
        "must-not-run",
        wat_guest("", "unreachable"),
        json!({}),
        &[],
    ));
    let chain = PluginChain::new(vec![claims_to_headers(), trap_if_called.clone()]);
    let r = run(&chain, json!({"roles": ["x"]}), &Req::get("/"));
    assert!(
        matches!(r.outcome, Outcome::Deny { status: 403, .. }),
        "{:?}",
        r.outcome
    );
    assert_eq!(
        results(&r),
        [("user-headers", InvocationResult::Deny, false)]
    );
    // The guard plugin really would have failed had it run.
    assert_eq!(
        failure(call(&trap_if_called, json!({})))
            .0
            .invocation_result(),
        InvocationResult::Trap
    );
}

#[test]
fn on_error_deny_stops_the_chain_with_an_unskipped_failure() {
    let failing = compile(spec(
        "bad-return",
        module("hostile-bad-return"),
        json!({}),
        &[],
    ));
    let chain = PluginChain::new(vec![failing, claims_to_headers()]);
    let r = run(&chain, json!({"sub": "u"}), &Req::get("/"));
    let (err, skipped) = failure(r.outcome.clone());
    assert!(!skipped);
    assert!(matches!(err, PluginError::BadAnswer { .. }), "{err}");
    assert_eq!(
        results(&r),
        [("bad-return", InvocationResult::Error, false)]
    );
}

#[test]
fn on_error_skip_drops_the_failing_plugins_changes_and_continues() {
    // Sets x-a, then returns 7 (a plugin error).
    let mut s = spec(
        "flaky",
        wat_guest(
            r#"(data (i32.const 0) "x-a") (data (i32.const 8) "partial")"#,
            "(drop (call $set_header (i32.const 0) (i32.const 3) (i32.const 8) (i32.const 7)))
             (i32.const 7)",
        ),
        json!({}),
        &["x-a"],
    );
    s.on_error = OnError::Skip;
    let chain = PluginChain::new(vec![compile(s), claims_to_headers()]);
    let r = run(&chain, json!({"sub": "u-9"}), &Req::get("/"));
    assert_eq!(
        r.outcome,
        Outcome::Continue(vec![
            set("x-user-id", "u-9"),
            remove("x-user-roles"),
            set("x-org", "none"),
            remove("x-email"),
        ])
    );
    assert_eq!(
        results(&r),
        [
            ("flaky", InvocationResult::Error, true),
            ("user-headers", InvocationResult::Ok, false)
        ]
    );
}

#[test]
fn an_empty_chain_continues_without_invocations() {
    let r = run(&PluginChain::default(), json!({}), &Req::get("/"));
    assert_eq!(r.outcome, Outcome::Continue(vec![]));
    assert!(r.invocations.is_empty());
}

#[test]
fn chains_run_concurrently_on_many_threads() {
    let chain = PluginChain::new(vec![claims_to_headers(), request_echo()]);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let chain = &chain;
            scope.spawn(move || {
                for i in 0..200 {
                    let sub = format!("u-{t}-{i}");
                    let r = run(chain, json!({"sub": sub}), &Req::get("/"));
                    let Outcome::Continue(changes) = r.outcome else {
                        panic!("{:?}", r.outcome)
                    };
                    assert_eq!(changes[0], set("x-user-id", &sub));
                }
            });
        }
    });
}

// --------------------------------------------------------------- isolation

#[test]
fn reused_instances_keep_guest_state_between_calls() {
    let plugin = compile(spec(
        "counter",
        counting_guest("unreachable"),
        json!({}),
        &["x-calls"],
    ));
    assert_eq!(call(&plugin, json!({})), calls(1));
    assert_eq!(call(&plugin, json!({})), calls(2));
    assert_eq!(call(&plugin, json!({})), calls(3));
}

#[test]
fn per_request_isolation_gives_every_call_a_fresh_instance() {
    let mut s = spec(
        "counter",
        counting_guest("unreachable"),
        json!({}),
        &["x-calls"],
    );
    s.isolation = Isolation::PerRequest;
    let plugin = compile(s);
    for _ in 0..3 {
        assert_eq!(call(&plugin, json!({})), calls(1));
    }
}

// ------------------------------------------------------------ hostile guests

#[test]
fn infinite_loop_is_stopped_at_the_deadline() {
    let mut s = spec("spin", module("hostile-infinite-loop"), json!({}), &[]);
    s.limits.deadline = Duration::from_millis(20);
    let plugin = compile(s);
    let started = Instant::now();
    let (err, _) = failure(call(&plugin, json!({})));
    let took = started.elapsed();
    assert_eq!(err.invocation_result(), InvocationResult::Timeout, "{err}");
    assert_eq!(
        err.to_string(),
        "plugin `spin`: ran past its 20ms deadline and was stopped"
    );
    // At least deadline minus one 1 ms tick; the upper bound is loose
    // because the ticker thread may be starved on a busy test machine.
    assert!(took >= Duration::from_millis(19), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn after_a_timeout_the_same_thread_gets_a_fresh_working_instance() {
    let mut s = spec(
        "sometimes-spins",
        counting_guest("(loop $forever (br $forever))"),
        json!({}),
        &["x-calls"],
    );
    s.limits.deadline = Duration::from_millis(100);
    let plugin = compile(s);
    assert_eq!(call(&plugin, json!({})), calls(1));
    assert_eq!(call(&plugin, json!({})), calls(2));
    let (err, _) = failure(call(&plugin, json!({"spin": true})));
    assert_eq!(err.invocation_result(), InvocationResult::Timeout, "{err}");
    // A fresh instance: its counter starts again.
    assert_eq!(call(&plugin, json!({})), calls(1));
}

#[test]
fn a_trap_fails_the_call_and_the_next_call_succeeds_on_a_new_instance() {
    let plugin = compile(spec("hostile-trap", module("hostile-trap"), json!({}), &[]));
    let (err, skipped) = failure(call(&plugin, json!({})));
    assert_eq!(err.invocation_result(), InvocationResult::Trap, "{err}");
    assert!(!skipped);

    let plugin = compile(spec(
        "sometimes-traps",
        counting_guest("unreachable"),
        json!({}),
        &["x-calls"],
    ));
    assert_eq!(call(&plugin, json!({})), calls(1));
    let (err, _) = failure(call(&plugin, json!({"trap": 1})));
    assert_eq!(
        err.to_string(),
        "plugin `sometimes-traps`: trapped: wasm `unreachable` instruction executed"
    );
    assert_eq!(call(&plugin, json!({})), calls(1));
}

fn vm_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn memory_bomb_is_capped_and_fails_the_call() {
    let mut s = spec("bomb", module("hostile-memory-bomb"), json!({}), &[]);
    s.limits.deadline = Duration::from_millis(50);
    let plugin = compile(s);
    let before = vm_rss_bytes();
    let (err, _) = failure(call(&plugin, json!({})));
    // It asks for 4 GiB, then grows page by page until the deadline.
    assert!(
        matches!(
            err.invocation_result(),
            InvocationResult::Timeout | InvocationResult::Memory
        ),
        "{err}"
    );
    if let (Some(before), Some(after)) = (before, vm_rss_bytes()) {
        assert!(
            after.saturating_sub(before) < 256 << 20,
            "RSS grew from {before} to {after}"
        );
    }
    // The plugin still answers (with a fresh instance), it does not wedge.
    let (err, _) = failure(call(&plugin, json!({})));
    assert!(matches!(
        err.invocation_result(),
        InvocationResult::Timeout | InvocationResult::Memory
    ));
}

#[test]
fn forbidden_and_invalid_header_writes_void_the_invocation() {
    for (module_name, expected) in [
        (
            "hostile-set-authorization",
            "`authorization`, which no plugin may change",
        ),
        ("hostile-set-host", "`host`, which no plugin may change"),
        (
            "hostile-crlf-value",
            "value for `x-user-id` contains CR, LF or NUL",
        ),
    ] {
        let plugin = compile(spec(
            module_name,
            module(module_name),
            json!({}),
            &["x-user-id"],
        ));
        let chain = PluginChain::new(vec![plugin]);
        let r = run(&chain, json!({"sub": "u"}), &Req::get("/"));
        assert_eq!(
            results(&r),
            [(module_name, InvocationResult::Violation, false)]
        );
        let (err, _) = failure(r.outcome);
        assert!(
            matches!(err, PluginError::PolicyViolation { .. })
                && err.to_string().contains(expected),
            "{module_name}: {err}"
        );
    }
}

#[test]
fn a_refused_write_under_on_error_skip_applies_nothing_from_that_plugin() {
    let mut s = spec(
        "crlf",
        module("hostile-crlf-value"),
        json!({}),
        &["x-user-id"],
    );
    s.on_error = OnError::Skip;
    let r = run(
        &PluginChain::new(vec![compile(s)]),
        json!({}),
        &Req::get("/"),
    );
    assert_eq!(r.outcome, Outcome::Continue(vec![]));
    assert_eq!(results(&r), [("crlf", InvocationResult::Violation, true)]);
}

#[test]
fn bad_answers_fail_the_call() {
    for name in [
        "hostile-bad-return",
        "hostile-deny-500",
        "hostile-deny-then-continue",
        "hostile-deny-without-call",
        "hostile-bad-pointer",
    ] {
        let plugin = compile(spec(name, module(name), json!({}), &["x-user-id"]));
        let (err, _) = failure(call(&plugin, json!({})));
        assert!(
            matches!(err, PluginError::BadAnswer { .. }),
            "{name}: {err}"
        );
        assert_eq!(err.invocation_result(), InvocationResult::Error);
    }
    let plugin = compile(spec("deny-500", module("hostile-deny-500"), json!({}), &[]));
    assert_eq!(
        failure(call(&plugin, json!({}))).0.to_string(),
        "plugin `deny-500`: bad answer: denied with status 500; plugins may only deny with 400..=499"
    );
}

#[test]
fn broken_modules_are_refused_at_load_with_a_clear_message() {
    let err = |name: &str| compile_err(spec(name, module(name), json!({}), &[])).to_string();
    assert_eq!(
        err("hostile-wrong-abi-version"),
        "plugin `hostile-wrong-abi-version`: module exports ABI version 2, this gateway speaks version 1: rebuild the plugin against the v1 SDK"
    );
    assert!(
        err("hostile-missing-export")
            .starts_with("plugin `hostile-missing-export`: missing export `portcullis_on_request`"),
        "{}",
        err("hostile-missing-export")
    );
    assert_eq!(
        err("hostile-init-fails"),
        "plugin `hostile-init-fails`: rejected its config (portcullis_init returned 1): init-fails: this plugin rejects every config"
    );
    assert!(
        err("hostile-import-wasi").starts_with(
            "plugin `hostile-import-wasi`: imports `wasi_snapshot_preview1::fd_write`"
        ),
        "{}",
        err("hostile-import-wasi")
    );
    assert!(
        err("hostile-wrong-import-signature")
            .contains("import `portcullis::set_header` has type (i64, i64) -> i32, ABI v1 needs (i32, i32, i32, i32) -> i32"),
        "{}",
        err("hostile-wrong-import-signature")
    );
    let oob = err("hostile-alloc-out-of-bounds");
    assert!(
        oob.starts_with("plugin `hostile-alloc-out-of-bounds`: cannot start an instance:")
            && oob.contains("outside its memory"),
        "{oob}"
    );
}

#[test]
fn compile_refuses_forbidden_allow_headers() {
    for header in [
        "authorization",
        "host",
        "cookie",
        "x-forwarded-for",
        "x-forwarded-proto",
        "forwarded",
        "transfer-encoding",
        "content-length",
        "connection",
        "proxy-authorization",
        "te",
        "upgrade",
    ] {
        let mut s = spec(
            "greedy",
            module("example-wat"),
            json!({}),
            &["x-plugin-lang"],
        );
        s.allow_headers.push(HeaderName::from_static(header));
        let err = compile_err(s);
        assert_eq!(
            err.to_string(),
            format!("plugin `greedy`: `{header}` may never be set by a plugin; remove it from allow_headers")
        );
    }
    let mut s = spec("nosy", module("example-wat"), json!({}), &["x-plugin-lang"]);
    s.request_headers = names(&["x-tenant", "cookie"]);
    assert!(matches!(
        compile_err(s),
        PluginError::ForbiddenRequestHeader { header, .. } if header == "cookie"
    ));
}

// ------------------------------------------------------------------ tooling

#[test]
fn invocations_report_durations_and_measure_gives_a_per_call_mean() {
    let plugin = claims_to_headers();
    let r = run(
        &PluginChain::new(vec![plugin.clone()]),
        json!({"sub": "u"}),
        &Req::get("/"),
    );
    assert!(r.invocations[0].duration > Duration::ZERO);
    let req = Req::get("/");
    let m = portcullis::plugin::measure(&plugin, br#"{"sub":"u"}"#, &req.meta(), 100);
    assert_eq!(m.iterations, 100);
    assert!(
        m.mean > Duration::ZERO && m.mean < Duration::from_millis(10),
        "{m:?}"
    );
    assert!(m.min <= m.mean);
    assert!(matches!(m.outcome, Outcome::Continue(_)));
}
