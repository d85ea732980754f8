//! Token verification cost per algorithm, cold (no cache: full signature
//! check) and cached (hash lookup), plus route matching on a 20-route table.
//! Results are recorded in benches/RESULTS.md.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::Method;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use portcullis::jwt::{Key, KeyMaterial, KeySet, Verifier, VerifyPolicy};
use portcullis::route::{AuthMode, PathMatch, Route, Router};
use serde_json::json;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");
const SECRET: &[u8] = b"bench-secret-0123456789-0123456789-abcdef";

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{KEYS}/{name}")).expect("fixture key")
}

fn setup(alg: Algorithm, cache_entries: usize) -> (Verifier, String) {
    use Algorithm::*;
    let (material, encoding) = match alg {
        HS256 | HS384 | HS512 => (
            KeyMaterial::Secret(SECRET.to_vec()),
            EncodingKey::from_secret(SECRET),
        ),
        RS256 | PS256 => (
            KeyMaterial::Pem {
                public: pem("rsa.pub"),
                private: None,
            },
            EncodingKey::from_rsa_pem(&pem("rsa.key")).unwrap(),
        ),
        ES256 => (
            KeyMaterial::Pem {
                public: pem("ec256.pub"),
                private: None,
            },
            EncodingKey::from_ec_pem(&pem("ec256.key")).unwrap(),
        ),
        ES384 => (
            KeyMaterial::Pem {
                public: pem("ec384.pub"),
                private: None,
            },
            EncodingKey::from_ec_pem(&pem("ec384.key")).unwrap(),
        ),
        _ => (
            KeyMaterial::Pem {
                public: pem("ed25519.pub"),
                private: None,
            },
            EncodingKey::from_ed_pem(&pem("ed25519.key")).unwrap(),
        ),
    };
    let key = Key::new("k", vec![alg], material, false).unwrap();
    let verifier = Verifier::new(
        KeySet::new(vec![key]),
        VerifyPolicy {
            issuer: None,
            audience: None,
            leeway: portcullis::config::defaults::JWT_LEEWAY,
            max_token_size: portcullis::config::defaults::JWT_MAX_TOKEN_SIZE,
        },
        cache_entries,
    );
    let mut header = Header::new(alg);
    header.kid = Some("k".into());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = json!({"sub": "user-123", "sid": "0b6a3f0e-2f5e-4a4e-9c55-1c1f8b9e2a10", "exp": exp, "role": "admin"});
    let token = encode(&header, &claims, &encoding).unwrap();
    (verifier, token)
}

fn verification(c: &mut Criterion) {
    use Algorithm::*;
    let mut group = c.benchmark_group("jwt_verify");
    group.measurement_time(Duration::from_secs(3));
    for alg in [HS256, HS512, RS256, PS256, ES256, ES384, EdDSA] {
        let (cold, token) = setup(alg, 0);
        group.bench_with_input(
            BenchmarkId::new("cold", format!("{alg:?}")),
            &token,
            |b, t| b.iter(|| cold.verify(t).unwrap()),
        );
        let (cached, token) = setup(alg, 1000);
        cached.verify(&token).unwrap();
        group.bench_with_input(
            BenchmarkId::new("cached", format!("{alg:?}")),
            &token,
            |b, t| b.iter(|| cached.verify(t).unwrap()),
        );
    }
    group.finish();
}

fn route_match(c: &mut Criterion) {
    let routes = (0..20)
        .map(|i| Route {
            name: format!("r{i}").into(),
            host: None,
            path: PathMatch::Prefix(format!("/svc{i}")),
            methods: Some(vec![Method::GET, Method::POST]),
            upstream: 0,
            auth: AuthMode::Required,
            strip_prefix: None,
            add_prefix: None,
            requirements: Vec::new(),
            forward_authorization: true,
            case_sensitive: false,
            plugins: Default::default(),
            login: None,
            client_cert: Default::default(),
            issuers: None,
        })
        .collect();
    let router = Router::new(routes);
    c.bench_function("route_match/last_of_20", |b| {
        b.iter(|| {
            router
                .find(Some("api.example.com"), "/svc19/users/42", &Method::GET)
                .unwrap()
        })
    });
}

criterion_group!(benches, verification, route_match);
criterion_main!(benches);
