//! Per-call cost of a Wasm policy plugin: `claims-to-headers` (built by
//! `plugins/build.sh`) on ABI v2 (claims read by import, one header batch)
//! and its ABI v1 build (claims and request copied in as JSON and parsed by
//! the guest), on a reused instance and on a fresh instance per call,
//! against the same mapping written natively in Rust, plus a trivial WAT
//! plugin for the fixed cost of crossing into Wasm.
//!
//! `cargo bench --bench plugin_call`

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis::claims::Claims;
use portcullis::plugin::{
    CompiledPlugin, HeaderChange, Isolation, Outcome, PluginChain, PluginHost, PluginSpec,
    RequestMeta,
};
use serde_json::json;

const CLAIMS: &[u8] = br#"{"sub":"user-1234","iss":"https://auth.example.com","aud":"api","exp":1900000000,"iat":1700000000,"email":"someone@example.com","roles":["admin","billing","ops"],"org":{"tenant":{"id":"acme","plan":"pro"}}}"#;

fn module(name: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins");
    // PORTCULLIS_PLUGIN_OUT: compare another build of the plugins (e.g. other
    // optimisation settings) without touching plugins/out.
    let out = std::env::var_os("PORTCULLIS_PLUGIN_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("out"));
    let path = out.join(format!("{name}.wasm"));
    if !path.exists() {
        let status = std::process::Command::new("bash")
            .arg(root.join("build.sh"))
            .status()
            .expect("run plugins/build.sh");
        assert!(status.success(), "plugins/build.sh failed");
    }
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `build`: `claims-to-headers` (ABI v2) or `claims-to-headers-v1`.
fn claims_to_headers(host: &PluginHost, build: &str, isolation: Isolation) -> PluginChain {
    let mut spec = PluginSpec::new("claims-to-headers", module(build));
    spec.config = json!({"headers": [
        {"header": "X-User-Id", "claim": "sub", "required": true},
        {"header": "X-User-Roles", "claim": "roles", "array": "join", "separator": ","},
        {"header": "X-Tenant-Id", "claim": "org.tenant.id", "default": "none"}
    ]});
    spec.allow_headers = ["x-user-id", "x-user-roles", "x-tenant-id"]
        .iter()
        .map(|h| HeaderName::from_static(h))
        .collect();
    spec.isolation = isolation;
    let plugin = CompiledPlugin::compile(host, spec).expect("compile claims-to-headers");
    PluginChain::new(vec![Arc::new(plugin)])
}

/// The same mapping in Rust: what the plugin costs on top of doing it natively.
fn native_mapping(claims: &Claims) -> Option<Vec<HeaderChange>> {
    let sub = claims.get("sub")?.as_str()?;
    let roles = claims.get("roles").and_then(|r| r.as_array()).map(|items| {
        items
            .iter()
            .map(|i| match i {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    });
    let tenant = claims
        .get("org")
        .and_then(|o| o.pointer("/tenant/id"))
        .and_then(|t| t.as_str())
        .unwrap_or("none");
    let mut changes = vec![HeaderChange::Set(
        HeaderName::from_static("x-user-id"),
        HeaderValue::from_str(sub).ok()?,
    )];
    changes.push(match roles {
        Some(r) => HeaderChange::Set(
            HeaderName::from_static("x-user-roles"),
            HeaderValue::from_str(&r).ok()?,
        ),
        None => HeaderChange::Remove(HeaderName::from_static("x-user-roles")),
    });
    changes.push(HeaderChange::Set(
        HeaderName::from_static("x-tenant-id"),
        HeaderValue::from_str(tenant).ok()?,
    ));
    Some(changes)
}

fn bench(c: &mut Criterion) {
    let host = PluginHost::new().expect("plugin host");
    let headers = HeaderMap::new();
    let req = RequestMeta {
        method: "GET",
        path: "/api/orders/42",
        query: "expand=items",
        host: "api.example.com",
        headers: &headers,
        client_cert: None,
    };

    let claims = Claims::from_value(serde_json::from_slice(CLAIMS).expect("claims")).unwrap();
    let empty = Claims::empty();
    let reused = claims_to_headers(&host, "claims-to-headers", Isolation::Reused);
    let per_request = claims_to_headers(&host, "claims-to-headers", Isolation::PerRequest);
    let reused_v1 = claims_to_headers(&host, "claims-to-headers-v1", Isolation::Reused);
    let expected = native_mapping(&claims).expect("native mapping");
    for chain in [&reused, &per_request, &reused_v1] {
        assert_eq!(
            chain.run(&claims, &req).outcome,
            Outcome::Continue(expected.clone()),
            "plugin and native mapping disagree"
        );
    }

    let mut trivial = PluginSpec::new("example-wat", module("example-wat"));
    trivial.allow_headers = vec![HeaderName::from_static("x-plugin-lang")];
    let trivial = PluginChain::new(vec![Arc::new(
        CompiledPlugin::compile(&host, trivial).expect("compile example-wat"),
    )]);

    let mut group = c.benchmark_group("plugin_call");
    group.bench_function("claims_to_headers/reused", |b| {
        b.iter(|| reused.run(black_box(&claims), black_box(&req)))
    });
    group.bench_function("claims_to_headers/per_request", |b| {
        b.iter(|| per_request.run(black_box(&claims), black_box(&req)))
    });
    group.bench_function("claims_to_headers_abi_v1/reused", |b| {
        b.iter(|| reused_v1.run(black_box(&claims), black_box(&req)))
    });
    group.bench_function("claims_to_headers/native_rust", |b| {
        b.iter(|| native_mapping(black_box(&claims)))
    });
    group.bench_function("trivial_wat/reused", |b| {
        b.iter(|| trivial.run(black_box(&empty), black_box(&req)))
    });
    let mut trivial_fresh = PluginSpec::new("example-wat", module("example-wat"));
    trivial_fresh.allow_headers = vec![HeaderName::from_static("x-plugin-lang")];
    trivial_fresh.isolation = Isolation::PerRequest;
    let trivial_fresh = PluginChain::new(vec![Arc::new(
        CompiledPlugin::compile(&host, trivial_fresh).expect("compile example-wat"),
    )]);
    group.bench_function("trivial_wat/per_request", |b| {
        b.iter(|| trivial_fresh.run(black_box(&empty), black_box(&req)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
