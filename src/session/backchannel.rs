//! The OpenID Connect Back-Channel Logout 1.0 receiver,
//! `POST {base_path}/backchannel-logout`: an identity provider tells the
//! gateway that a user's session there ended, with a signed logout token
//! (form field `logout_token`). The token is checked as the spec's section
//! 2.6 requires (see [`Verifier::verify_logout_token`]), its `jti` is
//! recorded so a replay is refused on every node, and the tokens of that IdP
//! session (`sid`) — or, when the token names no `sid`, of that subject —
//! are revoked like an admin revocation: enforced here at once, announced to
//! the other nodes, kept for the issuer's `max_token_lifetime`.
//!
//! Answers as the spec asks: 200 on success, 400 with `error` and
//! `error_description` otherwise (and 503 while the store is down, so the
//! provider retries).

use std::time::Duration;

use pingora::protocols::http::ServerSession;
use serde_json::json;

use super::handlers::AuthApi;
use super::request::read_body;
use super::service::SessionService;
use super::store::{RevocationKind, Timestamp, TokenRevocation};
use crate::error::GatewayError;
use crate::jwt::Verifier;
use crate::reply::Reply;

/// How long past its `exp` a logout token's `jti` is remembered: longer
/// than any leeway a verifier grants, so a replay is always recognised.
const JTI_MARGIN: Duration = Duration::from_secs(600);

impl AuthApi<'_> {
    /// `POST {base}/backchannel-logout`.
    pub(super) async fn backchannel_logout(
        &self,
        service: &SessionService,
        session: &mut ServerSession,
    ) -> Result<Reply, GatewayError> {
        let outcome = self.logout_by_token(service, session).await;
        let result = match &outcome {
            Ok(_) => "ok",
            Err(Refusal::Replayed) => "replayed",
            Err(Refusal::Invalid(_)) => "invalid",
            Err(Refusal::Store(_)) => "unavailable",
        };
        self.metrics
            .backchannel_logouts
            .with_label_values(&[result])
            .inc();
        match outcome {
            Ok(stored) => {
                tracing::info!(
                    kind = stored.kind.as_str(),
                    iss = %stored.iss,
                    "back-channel logout: tokens revoked"
                );
                Ok(Reply::ok(
                    200,
                    json!({"success": true, "message": "Logged out"}),
                ))
            }
            Err(Refusal::Store(e)) => Err(e),
            Err(refusal) => {
                let description = match refusal {
                    Refusal::Replayed => "logout token was already used (jti replay)".to_owned(),
                    Refusal::Invalid(why) => why,
                    Refusal::Store(_) => unreachable!("answered above"),
                };
                tracing::info!(reason = %description, "back-channel logout refused");
                let mut reply = GatewayError::LogoutTokenRefused {
                    description: description.clone(),
                }
                .into_reply();
                reply.body["error_description"] = description.into();
                Ok(reply)
            }
        }
    }

    async fn logout_by_token(
        &self,
        service: &SessionService,
        session: &mut ServerSession,
    ) -> Result<TokenRevocation, Refusal> {
        let body = read_body(session, self.max_body_size)
            .await
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        let form_encoded = session
            .req_header()
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form_encoded {
            return Err(Refusal::Invalid(
                "send the logout token as `application/x-www-form-urlencoded`".into(),
            ));
        }
        let token = logout_token_field(&body)?;
        let verifier: &Verifier = self
            .verifier
            .ok_or_else(|| Refusal::Invalid("no issuer is configured".into()))?;
        let logout = verifier
            .verify_logout_token(&token)
            .await
            .map_err(Refusal::Invalid)?;
        let (kind, value) = match (logout.sid, logout.sub) {
            (Some(sid), _) => (RevocationKind::Sid, sid),
            (None, Some(sub)) => (RevocationKind::Sub, sub),
            (None, None) => unreachable!("verify_logout_token requires sub or sid"),
        };
        if value.len() > super::admin_api::MAX_REVOKED_VALUE || logout.jti.len() > 1024 {
            return Err(Refusal::Invalid(format!(
                "logout token's `{}` or `jti` is longer than {} bytes",
                kind.as_str(),
                super::admin_api::MAX_REVOKED_VALUE
            )));
        }
        let now = Timestamp::now();
        let revocation = TokenRevocation {
            kind,
            iss: logout.issuer.iss.clone(),
            value,
            revoked_at_ms: now.unix_millis(),
            keep_until_ms: now
                .saturating_add(logout.issuer.revocation_window)
                .unix_millis(),
        };
        let jti_kept_until = Timestamp::from_unix_millis(
            i64::try_from(logout.exp.saturating_mul(1000)).unwrap_or(i64::MAX),
        )
        .saturating_add(JTI_MARGIN);
        let jti = logout.jti;
        let stored = service
            .call(move |s| async move {
                s.revoke_tokens_for_logout(&jti, jti_kept_until, revocation)
                    .await
            })
            .await
            .map_err(|e| Refusal::Store(service.refusal(&e)))?
            .ok_or(Refusal::Replayed)?;
        service.tokens_revoked_here(&stored, "backchannel_logout");
        Ok(stored)
    }
}

/// Why a logout was not done.
enum Refusal {
    /// A check failed: 400 with this `error_description`.
    Invalid(String),
    /// The `jti` was seen before: 400.
    Replayed,
    /// The store could not record it: its answer (503).
    Store(GatewayError),
}

/// The one `logout_token` field of a form body.
fn logout_token_field(body: &[u8]) -> Result<String, Refusal> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Refusal::Invalid("the form body is not UTF-8".into()))?;
    let mut found = None;
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "logout_token" {
            continue;
        }
        if found.is_some() {
            return Err(Refusal::Invalid("`logout_token` is sent twice".into()));
        }
        found = Some(
            super::admin_api::percent_decode(value)
                .ok_or_else(|| Refusal::Invalid("`logout_token` is not form-encoded".into()))?,
        );
    }
    found
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Refusal::Invalid("the form field `logout_token` is required".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(body: &str) -> Result<String, String> {
        logout_token_field(body.as_bytes()).map_err(|r| match r {
            Refusal::Invalid(why) => why,
            Refusal::Replayed => "replayed".into(),
            Refusal::Store(e) => e.to_string(),
        })
    }

    #[test]
    fn the_logout_token_is_read_from_the_form_once() {
        assert_eq!(field("logout_token=a.b.c").as_deref(), Ok("a.b.c"));
        assert_eq!(field("x=1&logout_token=a%2Eb.c&y=").as_deref(), Ok("a.b.c"));
        assert!(field("").unwrap_err().contains("required"));
        assert!(field("logout_token=").unwrap_err().contains("required"));
        assert!(field("logout_token=a&logout_token=b")
            .unwrap_err()
            .contains("twice"));
        assert!(field("logout_token=%zz")
            .unwrap_err()
            .contains("form-encoded"));
    }
}
