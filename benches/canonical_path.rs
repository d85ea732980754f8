//! Cost of reading a request path one way (`portcullis::canonical`): an
//! already canonical path (the common case: borrowed, no allocation), a
//! worst-case spelling that needs every rewrite, a refused one, and the
//! header checks. Results are recorded in benches/RESULTS.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use pingora::http::RequestHeader;
use portcullis::canonical::{canonicalize, headers::check_framing, PathParams, PathRules};

fn paths(c: &mut Criterion) {
    let rules = PathRules::default();
    let keep = PathRules {
        path_params: PathParams::Keep,
        ..PathRules::default()
    };
    let mut group = c.benchmark_group("canonical_path");
    group.measurement_time(Duration::from_secs(3));
    let canonical = b"/api/v1/users/12345/orders";
    group.bench_function("canonical_26_bytes", |b| {
        b.iter(|| canonicalize(black_box(canonical), rules).map(|c| c.forward().len()))
    });
    let encoded = b"//API/%61%64%6d%69%6e//v1/%7eusers/%c3%a9t%c3%a9//12345/orders";
    group.bench_function("worst_case_encoded_62_bytes", |b| {
        b.iter(|| canonicalize(black_box(encoded), rules).map(|c| c.forward().len()))
    });
    let params = b"/api;jsessionid=1/v1/users;v=2/12345/orders";
    group.bench_function("kept_params_43_bytes", |b| {
        b.iter(|| canonicalize(black_box(params), keep).map(|c| c.matched().len()))
    });
    let refused = b"/api/v1/users/%2e%2e/admin";
    group.bench_function("refused_dot_segment", |b| {
        b.iter(|| canonicalize(black_box(refused), rules).is_err())
    });
    group.finish();

    let mut req = RequestHeader::build("GET", b"/api/v1/users", None).expect("request");
    for (k, v) in [
        ("host", "api.example.com"),
        ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"),
        ("accept", "application/json"),
        ("user-agent", "bench/1.0"),
    ] {
        req.append_header(k, v).expect("header");
    }
    let raw = b"GET /api/v1/users HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x\r\nAccept: application/json\r\nUser-Agent: bench/1.0\r\n\r\n";
    c.bench_function("check_framing_4_headers", |b| {
        b.iter(|| check_framing(black_box(&req), Some(black_box(&raw[..]))).is_ok())
    });
}

criterion_group!(benches, paths);
criterion_main!(benches);
