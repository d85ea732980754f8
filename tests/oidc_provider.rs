//! The OpenID Provider fixture itself (tests/fixtures/oidc-provider through
//! tests/common/oidc.rs): what the issuer tests rely on — discovery, JWT
//! access tokens that verify against the JWKS, key rotation, restarts that
//! keep the keys, and back-channel logout delivery.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use common::oidc::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Checks `token`'s signature against the provider's current JWKS (the key
/// named by its `kid`), its `iss` and `aud`; its claims.
fn verify(idp: &OidcProvider, token: &str, alg: Algorithm, audience: &str) -> Value {
    let header = decode_header(token).expect("a JWT header");
    assert_eq!(header.alg, alg, "header of {token}");
    let kid = header.kid.expect("a kid in the header");
    let jwks: JwkSet = serde_json::from_value(idp.jwks()).expect("the JWKS is a JWK Set");
    let jwk = jwks
        .find(&kid)
        .unwrap_or_else(|| panic!("kid {kid} is not in the JWKS {:?}", idp.jwks_kids()));
    let key = DecodingKey::from_jwk(jwk).expect("a usable JWK");
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[idp.issuer()]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
    decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("{token} does not verify: {e}"))
        .claims
}

fn kid_of(token: &str) -> String {
    decode_header(token)
        .expect("a JWT header")
        .kid
        .expect("a kid")
}

/// One request as a back-channel logout receiver saw it.
#[derive(Debug)]
struct Received {
    request_line: String,
    content_type: String,
    body: String,
}

/// A loopback HTTP listener standing in for the relying party: answers every
/// request with `status` and hands it over.
fn receiver(status: u16) -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
    let uri = format!(
        "http://{}/backchannel-logout",
        listener.local_addr().expect("its address")
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let Some(received) = answer(stream, status) else {
                continue;
            };
            if tx.send(received).is_err() {
                return;
            }
        }
    });
    (uri, rx)
}

fn answer(mut stream: TcpStream, status: u16) -> Option<Received> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let (mut content_type, mut length) = (String::new(), 0usize);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = value.trim().to_owned(),
            "content-length" => length = value.trim().parse().ok()?,
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let reply =
        format!("HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(reply.as_bytes()).ok()?;
    Some(Received {
        request_line: request_line.trim_end().to_owned(),
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn next(requests: &mpsc::Receiver<Received>) -> Received {
    requests
        .recv_timeout(Duration::from_secs(10))
        .expect("the receiver got a request")
}

#[test]
fn discovery_document_names_the_issuer_and_a_jwks_uri() {
    let idp = OidcProvider::start(OidcOptions::default());
    let discovery = idp.discovery();
    assert_eq!(discovery["issuer"], idp.issuer());
    assert_eq!(discovery["jwks_uri"], idp.jwks_uri());
    assert!(idp.jwks_uri().starts_with(&idp.issuer()));
    assert_eq!(discovery["backchannel_logout_supported"], true);
    assert!(discovery["grant_types_supported"]
        .as_array()
        .expect("grant_types_supported")
        .contains(&json!("client_credentials")));
    assert!(discovery["id_token_signing_alg_values_supported"]
        .as_array()
        .expect("id_token_signing_alg_values_supported")
        .contains(&json!("RS256")));
    let jwks = idp.jwks();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    assert!(
        key.get("d").is_none(),
        "the JWKS publishes private parts: {key}"
    );
}

#[test]
fn client_credentials_token_for_the_resource_is_a_jwt_signed_by_a_key_in_the_jwks() {
    let idp = OidcProvider::start(OidcOptions::default());
    let token = idp.client_credentials(SVC_ADMIN.id, SVC_ADMIN.secret, RESOURCE);
    let header = decode_header(&token).expect("a JWT");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert!(idp.jwks_kids().contains(&kid_of(&token)));

    let claims = verify(&idp, &token, Algorithm::RS256, RESOURCE);
    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["aud"], RESOURCE);
    assert_eq!(claims["sub"], SVC_ADMIN.id);
    assert_eq!(claims["client_id"], SVC_ADMIN.id);
    assert_eq!(claims["role"], "admin");
    assert_eq!(claims["tenant"], SVC_ADMIN.tenant);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert!(claims.get("sid").is_none());

    let token = idp.client_credentials_with(
        SVC_USER.id,
        SVC_USER.secret,
        RESOURCE,
        &[("sid", "idp-session-1"), ("scope", "read")],
    );
    let claims = verify(&idp, &token, Algorithm::RS256, RESOURCE);
    assert_eq!(claims["sub"], SVC_USER.id);
    assert_eq!(claims["role"], "user");
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["sid"], "idp-session-1");
    assert_eq!(claims["scope"], "read");
}

#[test]
fn a_wrong_secret_or_an_unknown_resource_gets_no_token() {
    let idp = OidcProvider::start(OidcOptions::default());
    let grant = [("grant_type", "client_credentials"), ("resource", RESOURCE)];
    let wrong = idp.token_request(SVC_USER.id, "not-the-secret", &grant);
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert_eq!(wrong.json()["error"], "invalid_client");

    let elsewhere = [
        ("grant_type", "client_credentials"),
        ("resource", "https://elsewhere.test"),
    ];
    let unknown = idp.token_request(SVC_USER.id, SVC_USER.secret, &elsewhere);
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    assert_eq!(unknown.json()["error"], "invalid_target");
}

#[test]
fn es256_mode_issues_es256_tokens_that_verify_against_the_jwks() {
    let idp = OidcProvider::start(OidcOptions {
        alg: Alg::Es256,
        ..OidcOptions::default()
    });
    let jwks = idp.jwks();
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert_eq!(jwks["keys"][0]["crv"], "P-256");
    let token = idp.client_credentials(SVC_USER.id, SVC_USER.secret, RESOURCE);
    let claims = verify(&idp, &token, Algorithm::ES256, RESOURCE);
    assert_eq!(claims["role"], "user");

    let signed = idp.sign(&json!({"iss": idp.issuer(), "aud": RESOURCE, "iat": common::now(), "exp": common::now() + 60}), None);
    verify(&idp, &signed, Algorithm::ES256, RESOURCE);
}

#[test]
fn rotation_signs_new_tokens_with_a_new_kid_that_the_jwks_lists() {
    let idp = OidcProvider::start(OidcOptions::default());
    let before = idp.client_credentials(SVC_USER.id, SVC_USER.secret, RESOURCE);
    let old_kid = kid_of(&before);

    let new_kid = idp.rotate();
    assert_ne!(new_kid, old_kid);
    assert_eq!(idp.jwks_kids(), [new_kid.clone(), old_kid.clone()]);
    let after = idp.client_credentials(SVC_USER.id, SVC_USER.secret, RESOURCE);
    assert_eq!(kid_of(&after), new_kid);
    verify(&idp, &after, Algorithm::RS256, RESOURCE);
    // The previous key stays published, as during a real IdP's rotation.
    verify(&idp, &before, Algorithm::RS256, RESOURCE);

    let newest = idp.rotate_dropping_old();
    assert_eq!(idp.jwks_kids(), std::slice::from_ref(&newest));
    let latest = idp.client_credentials(SVC_USER.id, SVC_USER.secret, RESOURCE);
    assert_eq!(kid_of(&latest), newest);
    verify(&idp, &latest, Algorithm::RS256, RESOURCE);
}

#[test]
fn a_stopped_provider_is_unreachable_and_comes_back_with_the_same_issuer_and_keys() {
    let mut idp = OidcProvider::start(OidcOptions::default());
    let issuer = idp.issuer();
    let kid = idp.rotate();
    let kids = idp.jwks_kids();
    let token = idp.client_credentials(SVC_ADMIN.id, SVC_ADMIN.secret, RESOURCE);

    idp.stop();
    assert!(!idp.is_running());
    assert!(
        TcpStream::connect(("127.0.0.1", idp.port())).is_err(),
        "the stopped provider's port still accepts"
    );

    idp.restart();
    assert_eq!(idp.issuer(), issuer);
    assert_eq!(idp.discovery()["issuer"], issuer);
    assert_eq!(idp.jwks_kids(), kids);
    verify(&idp, &token, Algorithm::RS256, RESOURCE);
    let again = idp.client_credentials(SVC_ADMIN.id, SVC_ADMIN.secret, RESOURCE);
    assert_eq!(kid_of(&again), kid);
}

#[test]
fn backchannel_logout_posts_a_well_formed_logout_token_to_the_registered_uri() {
    let (uri, requests) = receiver(200);
    let idp = OidcProvider::start(OidcOptions {
        backchannel_uri: Some(uri),
        ..OidcOptions::default()
    });
    let logout = idp.backchannel_logout_details(Some("svc-user"), Some("idp-session-1"));
    assert_eq!(logout.status, Some(200), "{logout:?}");

    let received = next(&requests);
    assert_eq!(received.request_line, "POST /backchannel-logout HTTP/1.1");
    assert_eq!(received.content_type, "application/x-www-form-urlencoded");
    let token = received
        .body
        .strip_prefix("logout_token=")
        .map(form_decode)
        .unwrap_or_else(|| panic!("not a logout_token form: {}", received.body));
    assert_eq!(token, logout.logout_token);

    let header = decode_header(&token).expect("a JWT");
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    assert!(idp.jwks_kids().contains(&kid_of(&token)));
    // §2.4: iss, aud, iat, exp, jti, events, sub and/or sid; no nonce.
    let claims = verify(&idp, &token, Algorithm::RS256, BACKCHANNEL_CLIENT);
    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["aud"], BACKCHANNEL_CLIENT);
    assert!(claims["iat"].is_i64());
    assert!(claims["exp"].as_i64() > claims["iat"].as_i64());
    assert_eq!(claims["jti"], logout.jti.as_str());
    assert_eq!(claims["events"], json!({ LOGOUT_EVENT: {} }));
    assert_eq!(claims["sub"], "svc-user");
    assert_eq!(claims["sid"], "idp-session-1");
    assert!(claims.get("nonce").is_none(), "{claims}");

    // Only a session id, then only a subject: the other claim is absent.
    let by_sid = idp.backchannel_logout_details(None, Some("idp-session-2"));
    let claims = verify(
        &idp,
        &form_decode(next(&requests).body.trim_start_matches("logout_token=")),
        Algorithm::RS256,
        BACKCHANNEL_CLIENT,
    );
    assert_eq!(
        (by_sid.sub, by_sid.sid.as_deref()),
        (None, Some("idp-session-2"))
    );
    assert!(claims.get("sub").is_none(), "{claims}");
    assert_eq!(claims["sid"], "idp-session-2");

    assert_eq!(idp.backchannel_logout(Some("svc-admin"), None), 200);
    let claims = verify(
        &idp,
        &form_decode(next(&requests).body.trim_start_matches("logout_token=")),
        Algorithm::RS256,
        BACKCHANNEL_CLIENT,
    );
    assert_eq!(claims["sub"], "svc-admin");
    assert!(claims.get("sid").is_none(), "{claims}");
    assert_ne!(claims["jti"], logout.jti.as_str());
}

#[test]
fn backchannel_logout_reports_the_status_the_receiver_answered() {
    let (uri, requests) = receiver(400);
    let idp = OidcProvider::start(OidcOptions {
        alg: Alg::Es256,
        backchannel_uri: Some(uri),
    });
    assert_eq!(idp.backchannel_logout(Some("svc-user"), None), 400);
    let token = form_decode(next(&requests).body.trim_start_matches("logout_token="));
    verify(&idp, &token, Algorithm::ES256, BACKCHANNEL_CLIENT);
}

#[test]
fn test_signed_tokens_carry_any_claims_under_the_current_key() {
    let idp = OidcProvider::start(OidcOptions::default());
    let kid = idp.rotate();
    let claims = json!({
        "iss": idp.issuer(),
        "aud": BACKCHANNEL_CLIENT,
        "iat": common::now(),
        "exp": common::now() + 120,
        "jti": "forged-but-signed",
        "events": { LOGOUT_EVENT: {} },
        "sub": "svc-user",
        "nonce": "must-be-refused",
    });
    let token = idp.sign(&claims, Some("logout+jwt"));
    assert_eq!(kid_of(&token), kid);
    assert_eq!(
        decode_header(&token).expect("a JWT").typ.as_deref(),
        Some("logout+jwt")
    );
    let verified = verify(&idp, &token, Algorithm::RS256, BACKCHANNEL_CLIENT);
    assert_eq!(verified["nonce"], "must-be-refused");
}
