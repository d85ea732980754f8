//! Token verification cost per algorithm, cold (no cache: full signature
//! check) and cached (hash lookup), plus route matching on a 20-route table.
//! Results are recorded in benches/RESULTS.md.
//!
//! `jwt_verify_issuer`: the tokens of issue #14 the way the gateway gets them
//! from an OpenID Provider: RS256 and ES256 keys read from a JWK Set (as
//! fetched) under a `jwt.issuers` entry (`iss` selects the issuer, `aud`
//! checked), beside HS256 on the gateway's own `jwt.keys`, with the claims
//! `benches/edge_load.sh` sends; cold and cached.
//!
//! Before the criterion groups (`cargo bench` only), `token cache memory` prints the heap bytes
//! (glibc `mallinfo2`) that 10,000 distinct verified tokens of each of those
//! algorithms occupy in the verified-token cache.

use std::time::Duration;

use criterion::{criterion_group, BenchmarkId, Criterion};
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
            series: Default::default(),
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

const ISSUER: &str = "https://idp.example.test";
const AUDIENCE: &str = "https://api.portcullis.test";

/// A verifier the gateway would build for `alg` as in benches/edge_load.sh:
/// HS256 on `jwt.keys` (issuer `bench`), RS256/ES256 as a `jwt.issuers` entry
/// whose key comes from a JWK Set; and a signer for tokens it accepts.
fn issuer_setup(alg: Algorithm, cache_entries: usize) -> (Verifier, impl Fn(&str) -> String) {
    use portcullis::jwt::{IssuerKeys, IssuerPolicy, IssuerSpec};
    let leeway = portcullis::config::defaults::JWT_LEEWAY;
    let max = portcullis::config::defaults::JWT_MAX_TOKEN_SIZE;
    let (verifier, encoding, iss) = if alg == Algorithm::HS256 {
        let key = Key::new(
            "bench",
            vec![alg],
            KeyMaterial::Secret(SECRET.to_vec()),
            false,
        )
        .unwrap();
        let policy = VerifyPolicy {
            issuer: Some(vec!["bench".into()]),
            audience: None,
            leeway,
            max_token_size: max,
        };
        (
            Verifier::new(KeySet::new(vec![key]), policy, cache_entries),
            EncodingKey::from_secret(SECRET),
            "bench",
        )
    } else {
        let (public, private) = match alg {
            Algorithm::RS256 => (
                "rsa.pub",
                EncodingKey::from_rsa_pem(&pem("rsa.key")).unwrap(),
            ),
            _ => (
                "ec256.pub",
                EncodingKey::from_ec_pem(&pem("ec256.key")).unwrap(),
            ),
        };
        // The JWK Set an OpenID Provider would publish for this key.
        let pem_key = Key::new(
            "idp",
            vec![alg],
            KeyMaterial::Pem {
                public: pem(public),
                private: None,
            },
            false,
        )
        .unwrap();
        let jwks = portcullis::jwt::jwk_set(&KeySet::new(vec![pem_key]));
        let key = Key::from_jwk(&jwks["keys"][0], &[Algorithm::RS256, Algorithm::ES256]).unwrap();
        let spec = IssuerSpec {
            name: "idp".into(),
            keys: IssuerKeys::Static(KeySet::new(vec![key])),
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            policy: IssuerPolicy {
                issuer: Some(vec![ISSUER.into()]),
                audience: Some(vec![AUDIENCE.into()]),
                leeway,
                required_claims: Vec::new(),
                // As `jwt.issuers` compiles it (default max_token_lifetime).
                max_lifetime: Some(Duration::from_secs(24 * 3600)),
                logout_audiences: Vec::new(),
            },
        };
        (
            Verifier::with_issuers(None, vec![spec], max, cache_entries),
            private,
            ISSUER,
        )
    };
    let kid = if alg == Algorithm::HS256 {
        "bench"
    } else {
        "idp"
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = move |jti: &str| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        header.typ = None;
        let claims = json!({"iss": iss, "aud": AUDIENCE, "sub": "bench-user", "role": "admin",
            "email": "bench-user@example.com", "iat": now, "exp": now + 3600, "jti": jti});
        encode(&header, &claims, &encoding).unwrap()
    };
    (verifier, sign)
}

fn issuer_verification(c: &mut Criterion) {
    let mut group = c.benchmark_group("jwt_verify_issuer");
    group.measurement_time(Duration::from_secs(3));
    for alg in [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256] {
        let (cold, sign) = issuer_setup(alg, 0);
        let token = sign("bench");
        group.bench_with_input(
            BenchmarkId::new("cold", format!("{alg:?}")),
            &token,
            |b, t| b.iter(|| cold.verify(t).unwrap()),
        );
        let (cached, sign) = issuer_setup(alg, 1000);
        let token = sign("bench");
        cached.verify(&token).unwrap();
        group.bench_with_input(
            BenchmarkId::new("cached", format!("{alg:?}")),
            &token,
            |b, t| b.iter(|| cached.verify(t).unwrap()),
        );
    }
    group.finish();
}

/// glibc's count of heap bytes in use (every arena; large blocks mapped on
/// their own included).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_in_use() -> Option<usize> {
    #[repr(C)]
    struct Mallinfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    extern "C" {
        fn mallinfo2() -> Mallinfo2;
    }
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct.
    let info = unsafe { mallinfo2() };
    Some(info.uordblks + info.hblkhd)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_in_use() -> Option<usize> {
    None
}

/// Heap bytes per cached token: 10,000 distinct tokens (distinct `jti`)
/// verified into a default-sized cache (100,000 entries), the heap measured
/// before and after; the tokens' own strings are signed beforehand and
/// dropped only after the second measure, so what is counted is the cache:
/// the token text it keeps as the key, the verified claims, and its tables.
fn token_cache_memory() {
    const TOKENS: usize = 10_000;
    if heap_in_use().is_none() {
        println!("token cache memory: not measured (needs glibc's mallinfo2)");
        return;
    }
    println!("token cache memory: {TOKENS} distinct tokens verified into the cache (glibc mallinfo2, heap bytes in use)");
    for alg in [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256] {
        let (verifier, sign) = issuer_setup(alg, portcullis::config::defaults::JWT_CACHE_ENTRIES);
        let tokens: Vec<String> = (0..TOKENS).map(|i| sign(&format!("cache-{i}"))).collect();
        // A first token before measuring: the cache's first allocation per shard is not per token.
        verifier.verify(&sign("warm")).unwrap();
        let before = heap_in_use().unwrap();
        for token in &tokens {
            verifier.verify(token).unwrap();
        }
        let after = heap_in_use().unwrap();
        let per = (after - before) as f64 / TOKENS as f64;
        println!(
            "token cache memory: {alg:?}: token {} bytes, {per:.0} bytes per cached token, {:.2} MiB per 10,000",
            tokens[0].len(),
            per * 10_000.0 / 1_048_576.0
        );
        drop(tokens);
    }
}

criterion_group!(benches, verification, issuer_verification, route_match);

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs each
    // benchmark once without it, and needs no 30,000 signed tokens.
    if std::env::args().any(|a| a == "--bench") {
        token_cache_memory();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
