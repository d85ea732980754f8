//! The plugin host against real modules: the standard plugins and the
//! hostile guests built by `plugins/build.sh`, plus small WAT guests for
//! behaviour the prebuilt ones cannot show (recovery after a failure,
//! isolation, chain order).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis::claims::Claims;
use portcullis::plugin::{
    AbiVersion, ChainResult, CompiledPlugin, HeaderChange, InvocationResult, Isolation, OnError,
    Outcome, PluginChain, PluginError, PluginHost, PluginSpec, RequestMeta,
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

fn claims(value: serde_json::Value) -> Arc<Claims> {
    Claims::from_value(value).expect("claims are an object")
}

fn run(chain: &PluginChain, value: serde_json::Value, req: &Req) -> ChainResult {
    chain.run(&claims(value), &req.meta())
}

fn call(plugin: &Arc<CompiledPlugin>, value: serde_json::Value) -> Outcome {
    plugin.call(&claims(value), &Req::get("/api/x").meta())
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
        "plugin `spin`: used its 20ms of CPU time (limits.deadline) and was stopped"
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
        "plugin `hostile-wrong-abi-version`: module reports ABI version 2, but its portcullis_on_request has the ABI v1 signature (four i32 parameters); this gateway speaks versions 1 and 2: rebuild the plugin against the SDK"
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
            .contains("import `portcullis::set_header` has type (i64, i64) -> i32, the ABI needs (i32, i32, i32, i32) -> i32"),
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
    let m = portcullis::plugin::measure(&plugin, &claims(json!({"sub": "u"})), &req.meta(), 100);
    assert_eq!(m.iterations, 100);
    assert!(
        m.mean > Duration::ZERO && m.mean < Duration::from_millis(10),
        "{m:?}"
    );
    assert!(m.min <= m.mean);
    assert!(matches!(m.outcome, Outcome::Continue(_)));
}

// ------------------------------------------------------------------ ABI v2

#[test]
fn claims_to_headers_on_abi_v2_decides_exactly_like_its_v1_build() {
    let config = json!({"headers": [
        {"header": "X-User-Id", "claim": "sub", "required": true},
        {"header": "X-User-Roles", "claim": "roles", "array": "join", "separator": ","},
        {"header": "X-Roles-Json", "claim": "roles", "array": "json"},
        {"header": "X-Org", "claim": "org.tenant.id", "default": "none"},
        {"header": "X-Plan", "claim": ["https://example.com/plan"]},
        {"header": "X-Org-B64", "claim": "org", "encoding": "base64json"},
        {"header": "X-Score", "claim": "score"},
        {"header": "X-Email", "claim": "email", "encoding": "base64"}
    ]});
    let allow = [
        "x-user-id",
        "x-user-roles",
        "x-roles-json",
        "x-org",
        "x-plan",
        "x-org-b64",
        "x-score",
        "x-email",
    ];
    let v2 = compile(spec(
        "c2h",
        module("claims-to-headers"),
        config.clone(),
        &allow,
    ));
    let v1 = compile(spec("c2h", module("claims-to-headers-v1"), config, &allow));
    assert_eq!(v2.abi(), AbiVersion::V2);
    assert_eq!(v1.abi(), AbiVersion::V1);
    let cases = [
        json!({"sub": "u-1", "roles": ["admin", "ops", 3, true, null, {"k": "v"}],
               "org": {"tenant": {"id": "acme"}}, "https://example.com/plan": "pro",
               "score": 42.0, "email": "a@b.c"}),
        json!({"sub": "Zürich 😀", "roles": [], "score": 1e-7, "org": {"é": "\u{1}\n"}}),
        json!({"sub": "u-2", "score": 0.25, "org": {"tenant": {"id": 7}}}),
        json!({"sub": "u-3", "score": 1.5e300, "roles": "single", "email": null}),
        json!({"sub": 12345, "score": -7, "roles": [[1, 2], []]}),
        json!({"roles": ["x"]}),
        json!({"sub": null}),
        json!({"sub": "bad\r\nvalue"}),
        json!({"sub": "x".repeat(9000)}),
    ];
    for case in cases {
        let claims = Claims::from_value(case.clone()).unwrap();
        let req = Req::get("/api/x");
        let from_v2 = v2.call(&claims, &req.meta());
        assert!(
            !claims.json_encoded(),
            "the v2 call encoded the claims as JSON: {case}"
        );
        assert_eq!(from_v2, v1.call(&claims, &req.meta()), "{case}");
    }
    // And the decisions themselves, for the first case.
    let first = call(
        &v2,
        json!({"sub": "u-1", "roles": ["admin", "ops"], "org": {"tenant": {"id": "acme"}},
               "https://example.com/plan": "pro", "score": 42.0}),
    );
    assert_eq!(
        first,
        Outcome::Continue(vec![
            set("x-user-id", "u-1"),
            set("x-user-roles", "admin,ops"),
            set("x-roles-json", r#"["admin","ops"]"#),
            set("x-org", "acme"),
            set("x-plan", "pro"),
            set("x-org-b64", "eyJ0ZW5hbnQiOnsiaWQiOiJhY21lIn19"),
            set("x-score", "42"),
            remove("x-email"),
        ])
    );
}

#[test]
fn the_v1_wat_example_still_runs_beside_v2_modules() {
    let v1 = compile(spec(
        "example-wat-v1",
        module("example-wat-v1"),
        json!({}),
        &["x-plugin-lang"],
    ));
    assert_eq!(v1.abi(), AbiVersion::V1);
    let chain = PluginChain::new(vec![v1, claims_to_headers()]);
    let r = run(&chain, json!({"sub": "u-9"}), &Req::get("/api/x"));
    assert_eq!(
        r.outcome,
        Outcome::Continue(vec![
            set("x-plugin-lang", "wat"),
            set("x-user-id", "u-9"),
            remove("x-user-roles"),
            set("x-org", "none"),
            remove("x-email"),
        ])
    );
}

#[test]
fn hostile_v2_guests_get_what_the_abi_promises() {
    let err = |name: &str| compile_err(spec(name, module(name), json!({}), &[])).to_string();
    let mismatch = err("hostile-v2-version-mismatch");
    assert!(
        mismatch.contains(
            "reports ABI version 1, but its portcullis_on_request has the ABI v2 signature"
        ),
        "{mismatch}"
    );
    let signature = err("hostile-v2-on-request-bad-signature");
    assert!(
        signature.contains("() -> i32 (ABI v2) or (i32, i32, i32, i32) -> i32 (ABI v1)"),
        "{signature}"
    );
    let early = err("hostile-v2-claim-in-init");
    assert!(
        early.contains("`claim` called outside portcullis_on_request"),
        "{early}"
    );

    let oob = compile(spec(
        "oob",
        module("hostile-v2-claim-out-of-bounds"),
        json!({}),
        &[],
    ));
    for _ in 0..2 {
        let (e, _) = failure(call(&oob, json!({"sub": "u"})));
        assert!(
            matches!(&e, PluginError::BadAnswer { detail, .. } if detail.contains("outside the guest memory")),
            "{e}"
        );
    }

    let bad_length = compile(spec(
        "len",
        module("hostile-v2-batch-bad-length"),
        json!({}),
        &[],
    ));
    let (e, _) = failure(call(&bad_length, json!({})));
    assert_eq!(e.invocation_result(), InvocationResult::Violation, "{e}");

    let forbidden = spec(
        "forbidden",
        module("hostile-v2-batch-forbidden"),
        json!({}),
        &["x-user-id", "x-other"],
    );
    let run =
        portcullis::plugin::run_once(host(), forbidden, &claims(json!({})), &Req::get("/").meta())
            .expect("loads");
    assert!(
        run.logs.iter().any(|l| l.message.contains("answered 257")),
        "{:?}",
        run.logs
    );
    let (e, _) = failure(run.outcome);
    assert!(
        e.to_string().contains("header_batch entry 1 (set_header)"),
        "{e}"
    );

    let mut spin = spec("spin2", module("hostile-v2-infinite-loop"), json!({}), &[]);
    spin.limits.deadline = Duration::from_millis(20);
    let (e, _) = failure(call(&compile(spin), json!({})));
    assert_eq!(e.invocation_result(), InvocationResult::Timeout, "{e}");

    let retry = compile(spec(
        "retry",
        module("hostile-v2-buffer-retry"),
        json!({}),
        &["x-sub"],
    ));
    let long_sub = "é".repeat(1500);
    assert_eq!(
        call(&retry, json!({"sub": long_sub})),
        Outcome::Continue(vec![set("x-sub", &long_sub)])
    );
}

// ------------------------------------------------- deadlines in CPU time

/// A v2 guest that spins the number of times its `iters` claim says.
const SPIN_GUEST: &str = r#"(module
  (import "portcullis" "claim" (func $claim (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "iters")
  (func (export "portcullis_abi_version") (result i32) (i32.const 2))
  (func (export "portcullis_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "portcullis_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "portcullis_on_request") (result i32)
    (local $len i32) (local $i i32) (local $n i64) (local $acc i64)
    (local.set $len (call $claim (i32.const 0) (i32.const 5) (i32.const 64) (i32.const 32)))
    (block $done (loop $digits
      (br_if $done (i32.ge_s (local.get $i) (local.get $len)))
      (local.set $n (i64.add (i64.mul (local.get $n) (i64.const 10))
        (i64.extend_i32_u (i32.sub (i32.load8_u (i32.add (i32.const 64) (local.get $i))) (i32.const 48)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $digits)))
    (block $out (loop $spin
      (br_if $out (i64.eqz (local.get $n)))
      (local.set $acc (i64.add (i64.mul (local.get $acc) (i64.const 6364136223846793005)) (i64.const 1)))
      (local.set $n (i64.sub (local.get $n) (i64.const 1)))
      (br $spin)))
    (i32.store (i32.const 512) (i32.wrap_i64 (local.get $acc)))
    (i32.const 0)))"#;

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Pins the calling thread to CPU 0.
fn pin_to_cpu0() {
    let mut set = rustix::thread::CpuSet::new();
    set.set(0);
    rustix::thread::sched_setaffinity(None, &set).expect("pin the thread to CPU 0");
}

/// Busy threads pinned to CPU 0 until dropped.
struct Hogs {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hogs {
    fn start(n: usize) -> Hogs {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let threads = (0..n)
            .map(|_| {
                let stop = Arc::clone(&stop);
                let ready = ready_tx.clone();
                std::thread::spawn(move || {
                    pin_to_cpu0();
                    ready.send(()).unwrap();
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                })
            })
            .collect();
        for _ in 0..n {
            ready_rx.recv().expect("hog started");
        }
        Hogs { stop, threads }
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn the_deadline_counts_cpu_time_so_a_descheduled_call_survives_and_a_runaway_does_not() {
    const DEADLINE: Duration = Duration::from_millis(50);
    // Its own thread, pinned to CPU 0 with six busy threads: the guest gets
    // about a seventh of the CPU, so wall time runs far ahead of CPU time.
    std::thread::spawn(|| {
        pin_to_cpu0();
        let mut s = spec("spin", SPIN_GUEST.as_bytes().to_vec(), json!({}), &[]);
        s.limits.deadline = DEADLINE;
        let plugin = compile(s);
        let spin = |iters: u64| {
            let started = Instant::now();
            let outcome = call(&plugin, json!({"iters": iters.to_string()}));
            (outcome, started.elapsed())
        };
        // Calibrate on this thread's CPU clock (not wall time, which other
        // tests and builds on the machine stretch): iterations for ~40% of
        // the deadline in CPU time.
        let probe = 2_000_000u64;
        let cpu_before = thread_cpu();
        let (outcome, _) = spin(probe);
        let cpu = thread_cpu() - cpu_before;
        assert_eq!(outcome, Outcome::Continue(vec![]));
        let per_iter = cpu.as_secs_f64() / probe as f64;
        let healthy = ((DEADLINE.as_secs_f64() * 0.4) / per_iter) as u64;

        let _hogs = Hogs::start(6);
        let mut over_wall = 0;
        for _ in 0..3 {
            let (outcome, took) = spin(healthy);
            assert_eq!(
                outcome,
                Outcome::Continue(vec![]),
                "a healthy call ({:?} wall) was stopped under contention",
                took
            );
            if took > DEADLINE {
                over_wall += 1;
            }
        }
        // Proves the contention: a wall-clock deadline would have stopped
        // these calls.
        assert!(
            over_wall > 0,
            "no call ran longer than the deadline in wall time: the test created no contention"
        );
        let (outcome, took) = spin(u64::MAX / 2);
        let (err, _) = failure(outcome);
        assert_eq!(err.invocation_result(), InvocationResult::Timeout, "{err}");
        assert!(took >= DEADLINE, "stopped after {took:?}");
    })
    .join()
    .expect("the contention test thread");
}
