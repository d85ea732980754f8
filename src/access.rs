//! Access-token checks shared by proxied routes and the session routes:
//! where the token is read from, and verification plus the revoked-session
//! check. A [`Rejection`] is answered as [`GatewayError::AccessToken`].

use std::sync::Arc;

use http::HeaderMap;

use crate::jwt::{Rejection, VerifiedToken, Verifier};
use crate::revoked::RevokedSet;

/// Token from `Authorization: Bearer <t>` (scheme case-insensitive) or the cookie.
pub(crate) fn extract_token<'a>(headers: &'a HeaderMap, cookie: Option<&str>) -> Option<&'a str> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?.trim();
        let (scheme, rest) = value.split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") {
            let token = rest.trim();
            return (!token.is_empty()).then_some(token);
        }
        return None;
    }
    cookie_value(headers, cookie?)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Verifies `token` with the generation's keys and refuses tokens of revoked
/// sessions and revoked tokens of other issuers (`jti`, `sub`, `sid`). The
/// boolean says whether the verification came from the cache.
pub(crate) fn check(
    verifier: Option<&Verifier>,
    revoked: Option<&RevokedSet>,
    token: Option<&str>,
) -> Result<(Arc<VerifiedToken>, bool), Rejection> {
    let token = token.ok_or(Rejection::Missing)?;
    // compile() refuses token routes without keys; keep failing closed.
    let verifier = verifier.ok_or(Rejection::UnknownKid)?;
    let (verified, cached) = verifier.verify(token)?;
    if let Some(set) = revoked {
        if verified
            .session_id
            .as_ref()
            .is_some_and(|sid| set.contains(sid))
        {
            return Err(Rejection::Revoked);
        }
        if set.tokens.refuses(&verified.claims) {
            return Err(Rejection::TokenRevoked);
        }
    }
    Ok((verified, cached))
}
