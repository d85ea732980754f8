//! ABI v2 against small WAT guests: claims and request read by import,
//! the buffer protocol and its codes, header batches, version detection,
//! and v1 modules using the v2 imports.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;

use super::*;
use crate::claims::Claims;

fn host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| PluginHost::new().expect("plugin host"))
}

const IMPORTS: &str = r#"
  (import "portcullis" "claim" (func $claim (param i32 i32 i32 i32) (result i32)))
  (import "portcullis" "claim_kind" (func $claim_kind (param i32 i32) (result i32)))
  (import "portcullis" "claim_count" (func $claim_count (param i32 i32) (result i32)))
  (import "portcullis" "request_field" (func $request_field (param i32 i32 i32) (result i32)))
  (import "portcullis" "request_header" (func $request_header (param i32 i32 i32 i32) (result i32)))
  (import "portcullis" "claims_json" (func $claims_json (param i32 i32) (result i32)))
  (import "portcullis" "request_json" (func $request_json (param i32 i32) (result i32)))
  (import "portcullis" "header_batch" (func $header_batch (param i32 i32) (result i32)))
  (import "portcullis" "set_header" (func $set_header (param i32 i32 i32 i32) (result i32)))
  (import "portcullis" "log" (func $log (param i32 i32 i32)))"#;

/// A complete ABI v2 guest: every v2 import plus `set_header` and `log`,
/// two pages of memory, the config copied to 60000, the given data, `init`
/// body and `on_request` body (no params, a local `$n`; must leave an i32).
fn guest_v2(data: &str, init: &str, on_request: &str) -> Vec<u8> {
    format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 2)
  {data}
  (func (export "portcullis_abi_version") (result i32) (i32.const 2))
  (func (export "portcullis_alloc") (param i32) (result i32) (i32.const 60000))
  (func (export "portcullis_init") (param i32 i32) (result i32) {init})
  (func (export "portcullis_on_request") (result i32) (local $n i32)
    {on_request}))"#
    )
    .into_bytes()
}

/// WAT data segments: each string at its offset (`\00` separates path
/// segments).
fn strings(items: &[(u32, &str)]) -> String {
    items
        .iter()
        .map(|(at, s)| format!(r#"(data (i32.const {at}) "{s}")"#))
        .collect()
}

/// Instructions storing one `header_batch` entry at `at` (`value_len` is a
/// WAT expression, e.g. a local holding a claim's length).
fn entry(at: u32, op: i32, name: (u32, u32), value: (u32, &str)) -> String {
    let words = [
        op.to_string(),
        name.0.to_string(),
        name.1.to_string(),
        value.0.to_string(),
    ];
    let mut out: String = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            format!(
                "(i32.store (i32.const {}) (i32.const {w}))",
                at + 4 * i as u32
            )
        })
        .collect();
    out.push_str(&format!("(i32.store (i32.const {}) {})", at + 16, value.1));
    out
}

fn spec(name: &str, wasm: Vec<u8>, allow: &[&'static str]) -> PluginSpec {
    let mut spec = PluginSpec::new(name, wasm);
    spec.limits.deadline = Duration::from_secs(2);
    spec.allow_headers = allow.iter().map(|h| HeaderName::from_static(h)).collect();
    spec
}

fn compile(spec: PluginSpec) -> CompiledPlugin {
    CompiledPlugin::compile(host(), spec).unwrap_or_else(|e| panic!("compile: {e}"))
}

fn claims(value: serde_json::Value) -> Arc<Claims> {
    Claims::from_value(value).expect("an object")
}

fn call_with(plugin: &CompiledPlugin, claims: &Arc<Claims>, headers: &HeaderMap) -> Outcome {
    plugin.call(
        claims,
        &RequestMeta {
            method: "PATCH",
            path: "/api/x",
            query: "a=1&b=%20",
            host: "api.example.com:8443",
            headers,
            client_cert: None,
        },
    )
}

fn set(name: &'static str, value: &str) -> HeaderChange {
    HeaderChange::Set(
        HeaderName::from_static(name),
        HeaderValue::from_str(value).unwrap(),
    )
}

fn failed(outcome: Outcome) -> PluginError {
    match outcome {
        Outcome::Failed { error, .. } => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn sample_claims() -> Arc<Claims> {
    claims(json!({
        "sub": "alice",
        "org": {"tenant": {"id": "acme"}},
        "n": 42.0,
        "roles": ["a", "b"],
        "nothing": null,
        "https://example.com/plan": "pro"
    }))
}

#[test]
fn claims_read_by_path_become_headers_in_one_batch() {
    let data = strings(&[
        (0, "sub"),
        (16, "org\\00tenant\\00id"),
        (48, "n"),
        (56, "roles"),
        (64, "https://example.com/plan"),
        (200, "x-a"),
        (208, "x-b"),
        (216, "x-c"),
        (224, "x-d"),
        (232, "x-e"),
    ]);
    let mut body = String::new();
    for (i, (at, len)) in [(0, 3), (16, 13), (48, 1), (56, 5), (64, 24)]
        .iter()
        .enumerate()
    {
        let buf = 1024 + 128 * i as u32;
        body.push_str(&format!(
            "(local.set $n (call $claim (i32.const {at}) (i32.const {len}) (i32.const {buf}) (i32.const 128)))"
        ));
        body.push_str(&entry(
            2048 + 20 * i as u32,
            1,
            (200 + 8 * i as u32, 3),
            (buf, "(local.get $n)"),
        ));
    }
    body.push_str("(if (call $header_batch (i32.const 2048) (i32.const 100)) (then (return (i32.const 2)))) (i32.const 0)");
    let plugin = compile(spec(
        "reader",
        guest_v2(&data, "(i32.const 0)", &body),
        &["x-a", "x-b", "x-c", "x-d", "x-e"],
    ));
    assert_eq!(plugin.abi(), AbiVersion::V2);
    let headers = HeaderMap::new();
    assert_eq!(
        call_with(&plugin, &sample_claims(), &headers),
        Outcome::Continue(vec![
            set("x-a", "alice"),
            set("x-b", "acme"),
            set("x-c", "42"),
            set("x-d", r#"["a","b"]"#),
            set("x-e", "pro"),
        ])
    );
    // The reused instance sees the next call's claims, not the last ones.
    let bob = claims(
        json!({"sub": "bob", "org": {"tenant": {"id": "beta"}}, "n": 7, "roles": [], "https://example.com/plan": "free"}),
    );
    assert_eq!(
        call_with(&plugin, &bob, &headers),
        Outcome::Continue(vec![
            set("x-a", "bob"),
            set("x-b", "beta"),
            set("x-c", "7"),
            set("x-d", "[]"),
            set("x-e", "free"),
        ])
    );
}

/// Each expression's i32 result as one character, `code + 102` (so -4 `b`,
/// -3 `c`, -2 `d`, -1 `e`, 0 `f`, 1 `g`, 2 `h`, 3 `i`, 4 `j`, 5 `k`), set
/// as `x-a`.
fn codes_guest(data: &str, exprs: &[&str]) -> Vec<u8> {
    let mut body = String::new();
    for (i, e) in exprs.iter().enumerate() {
        body.push_str(&format!(
            "(i32.store8 (i32.const {}) (i32.add (i32.const 102) {e}))",
            3000 + i
        ));
    }
    body.push_str(&format!(
        "(drop (call $set_header (i32.const 200) (i32.const 3) (i32.const 3000) (i32.const {}))) (i32.const 0)",
        exprs.len()
    ));
    let data = format!("{data}{}", strings(&[(200, "x-a")]));
    guest_v2(&data, "(i32.const 0)", &body)
}

#[test]
fn kinds_counts_and_error_codes() {
    let data = strings(&[
        (0, "sub"),
        (8, "nothing"),
        (16, "n"),
        (24, "roles"),
        (32, "org"),
        (40, "absent"),
        (48, "sub\\00"),
        (56, "roles\\00x"),
        (64, "x-tenant"),
        (80, "x-secret"),
        (96, "bad name"),
        (112, "sub\\00\\00x"),
    ]);
    let exprs = [
        "(call $claim_kind (i32.const 40) (i32.const 6))", // absent: -1
        "(call $claim_kind (i32.const 8) (i32.const 7))",  // null: 0
        "(call $claim_kind (i32.const 0) (i32.const 3))",  // string: 1
        "(call $claim_kind (i32.const 16) (i32.const 1))", // number: 2
        "(call $claim_kind (i32.const 24) (i32.const 5))", // array: 4
        "(call $claim_kind (i32.const 32) (i32.const 3))", // object: 5
        "(call $claim_kind (i32.const 48) (i32.const 4))", // trailing NUL: -2
        "(call $claim_kind (i32.const 0) (i32.const 0))",  // empty: -2
        "(call $claim_kind (i32.const 112) (i32.const 6))", // empty segment: -2
        "(call $claim_count (i32.const 24) (i32.const 5))", // 2 items
        "(call $claim_count (i32.const 32) (i32.const 3))", // 1 member
        "(call $claim_count (i32.const 0) (i32.const 3))", // not a container: -4
        "(call $claim_count (i32.const 8) (i32.const 7))", // null: -1
        "(call $claim (i32.const 8) (i32.const 7) (i32.const 0) (i32.const 0))", // null: -1
        "(call $claim (i32.const 40) (i32.const 6) (i32.const 0) (i32.const 0))", // absent: -1
        "(call $claim (i32.const 56) (i32.const 7) (i32.const 0) (i32.const 0))", // not an index: -1
        "(call $request_field (i32.const 4) (i32.const 0) (i32.const 0))",        // no cert: -1
        "(call $request_field (i32.const 9) (i32.const 0) (i32.const 0))",        // unknown: -2
        "(call $request_header (i32.const 64) (i32.const 8) (i32.const 0) (i32.const 0))", // listed, absent: -1
        "(call $request_header (i32.const 80) (i32.const 8) (i32.const 0) (i32.const 0))", // not listed: -3
        "(call $request_header (i32.const 96) (i32.const 8) (i32.const 0) (i32.const 0))", // bad name: -2
    ];
    let mut s = spec("codes", codes_guest(&data, &exprs), &["x-a"]);
    s.request_headers = vec![HeaderName::from_static("x-tenant")];
    let plugin = compile(s);
    let mut headers = HeaderMap::new();
    headers.insert("x-secret", HeaderValue::from_static("hidden"));
    assert_eq!(
        call_with(&plugin, &sample_claims(), &headers),
        Outcome::Continue(vec![set("x-a", "efghjkdddhgbeeeeedecd")])
    );
}

#[test]
fn a_value_longer_than_the_buffer_is_measured_not_written() {
    // Buffer at 1024 prefilled with "zzzzz": cap 0 and cap 2 answer 5 and
    // leave it alone; cap 5 writes "alice".
    let data = strings(&[(0, "sub"), (1024, "zzzzz"), (200, "x-a"), (208, "x-b")]);
    let body = "
      (i32.store8 (i32.const 3000) (i32.add (i32.const 48)
        (call $claim (i32.const 0) (i32.const 3) (i32.const 99999999) (i32.const 0))))
      (i32.store8 (i32.const 3001) (i32.add (i32.const 48)
        (call $claim (i32.const 0) (i32.const 3) (i32.const 1024) (i32.const 2))))
      (drop (call $set_header (i32.const 200) (i32.const 3) (i32.const 1024) (i32.const 5)))
      (local.set $n (call $claim (i32.const 0) (i32.const 3) (i32.const 1024) (i32.const 5)))
      (i32.store8 (i32.const 3002) (i32.add (i32.const 48) (local.get $n)))
      (drop (call $set_header (i32.const 208) (i32.const 3) (i32.const 1024) (local.get $n)))
      (drop (call $set_header (i32.const 208) (i32.const 3) (i32.const 3000) (i32.const 3)))
      (i32.const 0)";
    let plugin = compile(spec(
        "retry",
        guest_v2(&data, "(i32.const 0)", body),
        &["x-a", "x-b"],
    ));
    let headers = HeaderMap::new();
    assert_eq!(
        call_with(&plugin, &sample_claims(), &headers),
        Outcome::Continue(vec![
            set("x-a", "zzzzz"),
            set("x-b", "alice"),
            set("x-b", "555"),
        ])
    );
}

#[test]
fn request_parts_and_both_json_inputs_read_like_v1() {
    let data = strings(&[
        (0, "x-tenant"),
        (200, "x-a"),
        (208, "x-b"),
        (216, "x-c"),
        (224, "x-d"),
        (232, "x-e"),
        (240, "x-f"),
        (248, "x-g"),
    ]);
    let read = |i: u32, call: &str| {
        let buf = 4096 + 1024 * i;
        format!(
            "(local.set $n {})
             (drop (call $set_header (i32.const {}) (i32.const 3) (i32.const {buf}) (local.get $n)))",
            call.replace("BUF", &format!("(i32.const {buf}) (i32.const 1024)")),
            200 + 8 * i
        )
    };
    let body = [
        read(0, "(call $request_field (i32.const 0) BUF)"),
        read(1, "(call $request_field (i32.const 1) BUF)"),
        read(2, "(call $request_field (i32.const 2) BUF)"),
        read(3, "(call $request_field (i32.const 3) BUF)"),
        read(4, "(call $request_header (i32.const 0) (i32.const 8) BUF)"),
        read(5, "(call $claims_json BUF)"),
        read(6, "(call $request_json BUF)"),
    ]
    .concat()
        + "(i32.const 0)";
    let mut s = spec(
        "request",
        guest_v2(&data, "(i32.const 0)", &body),
        &["x-a", "x-b", "x-c", "x-d", "x-e", "x-f", "x-g"],
    );
    s.request_headers = vec![HeaderName::from_static("x-tenant")];
    let plugin = compile(s);
    let mut headers = HeaderMap::new();
    headers.append("x-tenant", HeaderValue::from_static("acme"));
    headers.append("x-tenant", HeaderValue::from_static("beta"));
    let claims = claims(json!({"sub": "alice", "n": 1}));
    assert_eq!(
        call_with(&plugin, &claims, &headers),
        Outcome::Continue(vec![
            set("x-a", "PATCH"),
            set("x-b", "/api/x"),
            set("x-c", "a=1&b=%20"),
            set("x-d", "api.example.com:8443"),
            set("x-e", "acme, beta"),
            set("x-f", r#"{"n":1,"sub":"alice"}"#),
            set(
                "x-g",
                r#"{"method":"PATCH","path":"/api/x","query":"a=1&b=%20","host":"api.example.com:8443","client_cert":null,"headers":{"x-tenant":"acme, beta"}}"#
            ),
        ])
    );
}

#[test]
fn batch_answers_name_the_first_refused_entry_and_void_the_call() {
    // Entry 0 sets x-a, entry 1 sets authorization (forbidden), entry 2 x-b.
    // The guest logs "257" when told (1 | 1 << 8), then returns 0 anyway.
    let data = strings(&[
        (200, "x-a"),
        (208, "authorization"),
        (224, "x-b"),
        (240, "v"),
        (300, "257"),
        (310, "other"),
    ]);
    let body = [
        entry(2048, 1, (200, 3), (240, "(i32.const 1)")),
        entry(2068, 1, (208, 13), (240, "(i32.const 1)")),
        entry(2088, 1, (224, 3), (240, "(i32.const 1)")),
    ]
    .concat()
        + "(if (i32.eq (call $header_batch (i32.const 2048) (i32.const 60)) (i32.const 257))
             (then (call $log (i32.const 2) (i32.const 300) (i32.const 3)))
             (else (call $log (i32.const 2) (i32.const 310) (i32.const 5))))
           (i32.const 0)";
    let s = spec(
        "batch",
        guest_v2(&data, "(i32.const 0)", &body),
        &["x-a", "x-b"],
    );
    let headers = HeaderMap::new();
    let req = RequestMeta {
        method: "GET",
        path: "/",
        query: "",
        host: "",
        headers: &headers,
        client_cert: None,
    };
    let run = run_once(host(), s, &Claims::empty(), &req).unwrap();
    assert_eq!(run.abi, AbiVersion::V2);
    assert_eq!(
        run.logs
            .iter()
            .map(|l| l.message.as_str())
            .collect::<Vec<_>>(),
        ["257"]
    );
    let err = failed(run.outcome);
    assert_eq!(err.invocation_result(), InvocationResult::Violation);
    assert!(
        err.to_string()
            .contains("header_batch entry 1 (set_header): ")
            && err.to_string().contains("authorization"),
        "{err}"
    );
}

#[test]
fn malformed_batches_are_invalid_and_bad_ranges_trap() {
    let cases = [
        // Not a whole number of entries.
        ("(call $header_batch (i32.const 2048) (i32.const 7))", 2),
        // More than 1024 entries.
        ("(call $header_batch (i32.const 0) (i32.const 20500))", 2),
        // Unknown op 9 in entry 0.
        ("(i32.store (i32.const 2048) (i32.const 9)) (call $header_batch (i32.const 2048) (i32.const 20))", 2),
        // An empty batch is fine.
        ("(call $header_batch (i32.const 2048) (i32.const 0))", 0),
    ];
    for (expr, code) in cases {
        let body = format!(
            "(local.set $n {expr}) (if (i32.ne (local.get $n) (i32.const {code})) (then unreachable)) (i32.const 0)"
        );
        let plugin = compile(spec("batch", guest_v2("", "(i32.const 0)", &body), &[]));
        let outcome = call_with(&plugin, &Claims::empty(), &HeaderMap::new());
        if code == 0 {
            assert_eq!(outcome, Outcome::Continue(vec![]), "{expr}");
        } else {
            let err = failed(outcome);
            assert_eq!(
                err.invocation_result(),
                InvocationResult::Violation,
                "{expr}: {err}"
            );
        }
    }
    // A batch, a path or a buffer outside memory (2 pages) traps.
    for expr in [
        "(call $header_batch (i32.const 131060) (i32.const 40))",
        "(call $claim (i32.const 131070) (i32.const 10) (i32.const 0) (i32.const 0))",
        "(call $claim (i32.const 0) (i32.const 1) (i32.const 131000) (i32.const 100))",
        "(call $claims_json (i32.const -1) (i32.const 1))",
        "(call $request_field (i32.const 0) (i32.const 0) (i32.const -1))",
    ] {
        let body = format!("(drop {expr}) (i32.const 0)");
        let plugin = compile(spec("oob", guest_v2("", "(i32.const 0)", &body), &[]));
        let err = failed(call_with(&plugin, &sample_claims(), &HeaderMap::new()));
        assert!(
            matches!(&err, PluginError::BadAnswer { detail, .. } if detail.contains("outside the guest memory")),
            "{expr}: {err}"
        );
    }
}

#[test]
fn reading_imports_outside_on_request_trap() {
    let err = CompiledPlugin::compile(
        host(),
        spec(
            "early",
            guest_v2(
                "",
                "(drop (call $claim_kind (i32.const 0) (i32.const 1))) (i32.const 0)",
                "(i32.const 0)",
            ),
            &[],
        ),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("`claim_kind` called outside portcullis_on_request"),
        "{err}"
    );
}

#[test]
fn the_on_request_signature_decides_the_version_the_module_must_report() {
    let v2_says_1 = String::from_utf8(guest_v2("", "(i32.const 0)", "(i32.const 0)"))
        .unwrap()
        .replace("(result i32) (i32.const 2))", "(result i32) (i32.const 1))");
    let err = CompiledPlugin::compile(host(), spec("v", v2_says_1.into_bytes(), &[])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `v`: module reports ABI version 1, but its portcullis_on_request has the ABI v2 signature (no parameters); this gateway speaks versions 1 and 2: rebuild the plugin against the SDK"
    );
    let one_param = String::from_utf8(guest_v2("", "(i32.const 0)", "(i32.const 0)"))
        .unwrap()
        .replace(
            r#"(func (export "portcullis_on_request") (result i32)"#,
            r#"(func (export "portcullis_on_request") (param i32) (result i32)"#,
        );
    let err = CompiledPlugin::compile(host(), spec("p", one_param.into_bytes(), &[])).unwrap_err();
    assert!(
        matches!(&err, PluginError::WrongType { expected, .. }
            if expected == "() -> i32 (ABI v2) or (i32, i32, i32, i32) -> i32 (ABI v1)"),
        "{err}"
    );
}

#[test]
fn v1_modules_may_use_the_new_imports_and_still_get_json_inputs() {
    // A v1 guest reads `sub` by import and checks that its claims input is
    // the JSON the host describes (same length as claims_json answers).
    let wat = format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 0) "sub") (data (i32.const 8) "x-a")
  (func (export "portcullis_abi_version") (result i32) (i32.const 1))
  (func (export "portcullis_alloc") (param $len i32) (result i32) (i32.const 32768))
  (func (export "portcullis_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "portcullis_on_request") (param $c i32) (param $cl i32) (param $r i32) (param $rl i32) (result i32)
    (if (i32.ne (local.get $cl) (call $claims_json (i32.const 0) (i32.const 0))) (then unreachable))
    (drop (call $set_header (i32.const 8) (i32.const 3) (i32.const 1024)
      (call $claim (i32.const 0) (i32.const 3) (i32.const 1024) (i32.const 64))))
    (i32.const 0)))"#
    );
    let plugin = compile(spec("v1", wat.into_bytes(), &["x-a"]));
    assert_eq!(plugin.abi(), AbiVersion::V1);
    assert_eq!(
        call_with(&plugin, &sample_claims(), &HeaderMap::new()),
        Outcome::Continue(vec![set("x-a", "alice")])
    );
}

#[test]
fn v2_modules_need_no_json_encoding_of_the_claims() {
    let plugin = compile(spec(
        "lean",
        guest_v2(
            &strings(&[(0, "sub"), (8, "x-a")]),
            "(i32.const 0)",
            "(drop (call $set_header (i32.const 8) (i32.const 3) (i32.const 1024)
               (call $claim (i32.const 0) (i32.const 3) (i32.const 1024) (i32.const 64))))
             (i32.const 0)",
        ),
        &["x-a"],
    ));
    let claims = sample_claims();
    assert_eq!(
        call_with(&plugin, &claims, &HeaderMap::new()),
        Outcome::Continue(vec![set("x-a", "alice")])
    );
    assert!(
        !claims.json_encoded(),
        "a v2 call encoded the claims as JSON"
    );
}
