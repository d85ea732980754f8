//! An issuer's keys fetched from a real OpenID Provider (`oidc-provider`,
//! started on loopback by `common::oidc`): discovery, the JWK Set, rotation
//! picked up by an unknown `kid`, the cooldown that bounds refetches, and
//! stale-if-error serving that fails closed after `max_stale`.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::oidc::{Alg, OidcOptions, OidcProvider, RESOURCE, SVC_ADMIN};
use jsonwebtoken::Algorithm;
use portcullis::idp::{FetchPolicy, KeyLocation, KeySourceSettings, RemoteKeys, Unavailable};
use serde_json::Value;

fn settings(provider: &OidcProvider, location: KeyLocation) -> KeySourceSettings {
    KeySourceSettings {
        name: "test".into(),
        issuer: provider.issuer(),
        location,
        algorithms: vec![Algorithm::RS256, Algorithm::ES256],
        min_refresh: Duration::from_millis(200),
        max_refresh: Duration::from_secs(3600),
        cooldown: Duration::from_secs(10),
        max_stale: Duration::from_secs(24 * 3600),
        fetch: FetchPolicy {
            allow_loopback_http: true,
            ..FetchPolicy::default()
        },
        wait_at_startup: true,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The `kid` in a token's header.
fn kid_of(token: &str) -> String {
    let header = token.split('.').next().expect("a header");
    let json: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url"))
        .expect("JSON header");
    json["kid"].as_str().expect("a kid").to_owned()
}

#[test]
fn discovery_finds_the_jwks_and_a_providers_token_names_a_fetched_key() {
    let provider = OidcProvider::start(OidcOptions::default());
    let keys = RemoteKeys::new(settings(&provider, KeyLocation::Discovery));
    assert_eq!(keys.keys().err(), Some(Unavailable::NotLoaded));
    runtime()
        .block_on(keys.refresh())
        .expect("fetch through discovery");
    let token = provider.client_credentials(SVC_ADMIN.id, SVC_ADMIN.secret, RESOURCE);
    let set = keys.keys().expect("keys");
    let (_, key) = set
        .by_kid(&kid_of(&token))
        .expect("the token's kid is fetched");
    assert_eq!(key.algorithms, vec![Algorithm::RS256]);
    // A configured jwks_uri works the same way, and ES256 keys get ES256.
    let es = OidcProvider::start(OidcOptions {
        alg: Alg::Es256,
        ..OidcOptions::default()
    });
    let keys = RemoteKeys::new(settings(&es, KeyLocation::JwksUri(es.jwks_uri())));
    runtime()
        .block_on(keys.refresh())
        .expect("fetch the jwks_uri");
    let token = es.client_credentials(SVC_ADMIN.id, SVC_ADMIN.secret, RESOURCE);
    let set = keys.keys().expect("keys");
    let (_, key) = set.by_kid(&kid_of(&token)).expect("the ES256 token's kid");
    assert_eq!(key.algorithms, vec![Algorithm::ES256]);
}

#[test]
fn a_discovery_document_for_another_issuer_is_refused() {
    let provider = OidcProvider::start(OidcOptions::default());
    let mut s = settings(&provider, KeyLocation::Discovery);
    // Same server, but the configured issuer differs from the document's.
    s.issuer = format!("{}/", provider.issuer());
    let keys = RemoteKeys::new(s);
    let err = runtime().block_on(keys.refresh()).expect_err("refused");
    assert!(err.to_string().contains("issuer"), "{err}");
    assert!(keys.keys().is_err());
}

#[test]
fn a_rotated_key_is_fetched_once_for_a_flood_of_unknown_kids() {
    let provider = OidcProvider::start(OidcOptions::default());
    let keys = RemoteKeys::new(settings(&provider, KeyLocation::Discovery));
    let rt = runtime();
    rt.block_on(keys.refresh()).expect("first fetch");
    let new_kid = provider.rotate();
    assert!(keys.keys().expect("keys").by_kid(&new_kid).is_none());
    let before = keys.counts().ok.load(Ordering::Relaxed);
    // 1,000 tokens with kids the set lacks (the rotated one among them):
    // one fetch, then the cooldown holds every other.
    let fetched: usize = rt.block_on(async {
        let mut n = 0;
        for _ in 0..1000 {
            if keys.refresh_for_unknown_kid().await {
                n += 1;
            }
        }
        n
    });
    assert_eq!(fetched, 1);
    assert_eq!(keys.counts().ok.load(Ordering::Relaxed), before + 1);
    assert!(keys.keys().expect("keys").by_kid(&new_kid).is_some());
    let token = provider.client_credentials(SVC_ADMIN.id, SVC_ADMIN.secret, RESOURCE);
    assert_eq!(kid_of(&token), new_kid);
}

#[test]
fn keys_serve_stale_while_the_provider_is_down_then_fail_closed_after_max_stale() {
    let mut provider = OidcProvider::start(OidcOptions::default());
    let mut s = settings(&provider, KeyLocation::Discovery);
    s.max_stale = Duration::from_secs(2);
    let keys = RemoteKeys::new(s);
    let rt = runtime();
    rt.block_on(keys.refresh()).expect("first fetch");
    provider.stop();
    assert!(rt.block_on(keys.refresh()).is_err(), "the provider is down");
    assert!(keys.last_error().is_some());
    assert!(keys.keys().is_ok(), "the last good set still serves");
    // Past max_stale the issuer fails closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while keys.keys().is_ok() {
        assert!(Instant::now() < deadline, "the stale set kept serving");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(keys.keys().err(), Some(Unavailable::Stale));
    // Back: the next fetch restores it.
    provider.restart();
    rt.block_on(keys.refresh())
        .expect("fetch after the restart");
    assert!(keys.keys().is_ok());
    assert!(keys.last_error().is_none());
}

#[test]
fn plain_http_is_refused_unless_allowed_for_loopback() {
    let provider = OidcProvider::start(OidcOptions::default());
    let mut s = settings(&provider, KeyLocation::Discovery);
    s.fetch.allow_loopback_http = false;
    let keys = RemoteKeys::new(s);
    let err = runtime().block_on(keys.refresh()).expect_err("plain http");
    assert!(err.to_string().contains("https"), "{err}");
}
