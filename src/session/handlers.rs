//! The session routes the gateway answers itself (`{base}/refresh`,
//! `/refresh-token`, `/logout`, `/logout-all`, `GET /sessions`,
//! `DELETE /sessions/{id}`), in the shapes both seed clients understand and,
//! route family by route family, with the `message` its seed sent ([`Seed`]).

use std::time::{Duration, Instant};

use pingora::protocols::http::ServerSession;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::refresh_token::RefreshTokens;
use super::request::{client_ip, cookie_token, json_object, read_body, set_cookie, string_field};
use super::service::SessionService;
use super::settings::Seed;
use super::store::{NewSession, RefreshOutcome, RevokeReason, Session, StoreError, Timestamp};
use super::{Endpoint, SessionSettings};
use crate::error::GatewayError;
use crate::jwt::{mint, MintRequest, Rejection, VerifiedToken, Verifier};
use crate::metrics::Metrics;
use crate::reply::Reply;

/// What a session handler works with for one request.
pub(crate) struct AuthApi<'a> {
    /// The generation's token keys (they verify bearers and sign tokens).
    pub verifier: Option<&'a Verifier>,
    /// `limits.max_body_size`: the largest body a handler reads.
    pub max_body_size: usize,
    pub settings: &'a SessionSettings,
    /// `None` when the config gained `sessions` by reload (needs a restart).
    pub service: Option<&'a SessionService>,
    pub metrics: &'a Metrics,
}

/// `{"id": sub, …captured claims}`, the seed services' `user` object.
pub(crate) fn user_json(session: &Session) -> Value {
    let mut user = Map::new();
    user.insert("id".into(), Value::String(session.subject.clone()));
    for (k, v) in &session.claims {
        if k != "id" {
            user.insert(k.clone(), v.clone());
        }
    }
    Value::Object(user)
}

/// One entry of `data.sessions`.
pub(crate) fn session_json(session: &Session, current: Option<Uuid>) -> Value {
    json!({
        "id": session.id,
        "deviceInfo": session.device_info,
        "userAgent": session.user_agent,
        "ip": session.ip,
        "createdAt": session.created_at,
        "lastUsedAt": session.last_used_at,
        "expiresAt": session.expires_at,
        "current": Some(session.id) == current,
    })
}

/// Tokens handed out at login or refresh.
pub(crate) struct IssuedTokens {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
}

impl IssuedTokens {
    /// The token fields (`accessToken`, `refreshToken` unless it travels in
    /// the cookie, `tokenType`, `expiresIn`) as a JSON object.
    pub(crate) fn fields(&self, settings: &SessionSettings) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("accessToken".into(), self.access_token.clone().into());
        if settings.cookie.is_none() {
            m.insert("refreshToken".into(), self.refresh_token.clone().into());
        }
        m.insert("tokenType".into(), "Bearer".into());
        m.insert("expiresIn".into(), self.expires_in.into());
        m
    }

    /// The refresh cookie for these tokens, in cookie mode.
    pub(crate) fn cookie(
        &self,
        settings: &SessionSettings,
        session: &Session,
        now: Timestamp,
    ) -> Option<String> {
        let cookie = settings.cookie.as_ref()?;
        let max_age = session.expires_at.saturating_duration_since(now).as_secs();
        Some(set_cookie(
            cookie,
            &settings.base_path,
            Some((&self.refresh_token, max_age)),
        ))
    }
}

/// Signs an access token for `session`, never outliving it.
pub(crate) fn mint_access(
    verifier: Option<&Verifier>,
    settings: &SessionSettings,
    session: &Session,
    now: Timestamp,
) -> Result<(String, u64), GatewayError> {
    let remaining = session.expires_at.saturating_duration_since(now);
    let ttl = settings
        .access_ttl
        .min(remaining)
        .max(Duration::from_secs(1));
    let keys = verifier
        .map(|v| v.keys())
        .ok_or(GatewayError::SigningKeyMissing)?;
    let request = MintRequest {
        sub: session.subject.clone(),
        sid: Some(session.id.to_string()),
        ttl,
        issuer: settings.issuer.clone(),
        audience: settings.audience.clone(),
        claims: session.claims.clone(),
    };
    match mint(keys, &request) {
        Ok(token) => Ok((token, ttl.as_secs())),
        Err(e) => {
            tracing::error!(error = %e, "cannot sign an access token");
            Err(GatewayError::SigningFailed)
        }
    }
}

/// Who a new session is for: from login interception or the admin API.
pub(crate) struct SessionDraft {
    pub subject: String,
    pub claims: Map<String, Value>,
    pub device_info: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

fn ok(message: &str) -> Value {
    json!({"success": true, "message": message})
}

impl AuthApi<'_> {
    /// The refresh-token codec; `Err` when `sessions` has no
    /// `refresh_secret` and only stores revocations (no session is opened,
    /// refreshed or logged out here).
    fn refresh_tokens(&self) -> Result<&RefreshTokens, GatewayError> {
        self.settings
            .refresh_tokens
            .as_ref()
            .ok_or(GatewayError::SessionsStoreOnly)
    }

    /// Answers one session route. Never panics on client input.
    pub(crate) async fn handle(&self, endpoint: Endpoint, session: &mut ServerSession) -> Reply {
        let method = session.req_header().method.clone();
        if method != endpoint.method() {
            return GatewayError::MethodNotAllowed {
                allow: endpoint.method(),
            }
            .into_reply();
        }
        let Some(service) = self.service else {
            tracing::error!(
                "`sessions` was added by a reload; restart the gateway to open the session store"
            );
            return GatewayError::StoreUnavailable {
                retry_after_secs: None,
            }
            .into_reply();
        };
        let result = match endpoint {
            Endpoint::Refresh(seed) => self.refresh(service, session, seed).await,
            Endpoint::Logout => self.logout(service, session).await,
            Endpoint::LogoutAll => self.logout_all(service, session).await,
            Endpoint::Sessions => self.list(service, session).await,
            Endpoint::Session(id) => self.delete(service, session, &id).await,
            Endpoint::BackchannelLogout => self.backchannel_logout(service, session).await,
        };
        result.unwrap_or_else(GatewayError::into_reply)
    }

    /// Stores a new session and issues its first tokens.
    pub(crate) async fn open_session(
        &self,
        draft: SessionDraft,
    ) -> Result<(Session, IssuedTokens, Timestamp), GatewayError> {
        let Some(service) = self.service else {
            return Err(GatewayError::StoreUnavailable {
                retry_after_secs: None,
            });
        };
        let (refresh_token, refresh_hash) = self.refresh_tokens()?.mint();
        let now = Timestamp::now();
        let new = NewSession {
            id: None,
            subject: draft.subject,
            claims: draft.claims,
            device_info: draft.device_info,
            user_agent: draft.user_agent,
            ip: draft.ip,
            refresh_hash,
            session_ttl: self.settings.refresh_ttl,
            now,
        };
        let stored = service
            .call(move |s| async move { s.create_session(new).await })
            .await
            .map_err(|e| service.refusal(&e))?;
        self.metrics.sessions_created.inc();
        let (access_token, expires_in) = mint_access(self.verifier, self.settings, &stored, now)?;
        let issued = IssuedTokens {
            access_token,
            expires_in,
            refresh_token,
        };
        Ok((stored, issued, now))
    }

    /// Per-IP rate limit of refresh and logout attempts.
    fn limit_ip(&self, session: &ServerSession) -> Result<(), GatewayError> {
        let ip = client_ip(session).unwrap_or_default();
        self.settings
            .per_ip
            .check(ip.as_bytes(), Instant::now())
            .map_err(rate_limited)
    }

    /// The verified bearer token of a session route (401 otherwise, in the
    /// words of `seed`'s auth middleware).
    fn bearer(
        &self,
        service: &SessionService,
        session: &ServerSession,
        seed: Seed,
    ) -> Result<std::sync::Arc<VerifiedToken>, GatewayError> {
        let token = crate::access::extract_token(&session.req_header().headers, None);
        let rejection = match crate::access::check(self.verifier, Some(&service.revoked), token) {
            Ok((verified, _)) if verified.sub.is_some() => return Ok(verified),
            Ok(_) => Rejection::MissingClaim("sub".into()),
            Err(rejection) => rejection,
        };
        Err(GatewayError::AccessToken {
            rejection,
            seed: Some(seed),
        })
    }

    async fn refresh(
        &self,
        service: &SessionService,
        session: &mut ServerSession,
        seed: Seed,
    ) -> Result<Reply, GatewayError> {
        let count = |result: &str| {
            self.metrics.auth_refresh.with_label_values(&[result]).inc();
        };
        let refresh_tokens = self.refresh_tokens()?;
        if let Err(refusal) = self.limit_ip(session) {
            count("rate_limited");
            return Err(refusal);
        }
        let body = read_body(session, self.max_body_size)
            .await
            .inspect_err(|_| count("bad_request"))?;
        let headers = &session.req_header().headers;
        let parsed = json_object(headers, &body).inspect_err(|_| count("bad_request"))?;
        let from_body =
            string_field(parsed.as_ref(), "refreshToken").inspect_err(|_| count("bad_request"))?;
        let token = match from_body {
            Some(t) => t.to_owned(),
            None => match cookie_token(headers, self.settings.cookie.as_ref()) {
                Ok(Some(t)) => t.to_owned(),
                Ok(None) => {
                    count("bad_request");
                    return Err(GatewayError::RefreshTokenRequired);
                }
                Err(refusal) => {
                    count("bad_request");
                    return Err(refusal);
                }
            },
        };
        if let Err(refusal) = self
            .settings
            .per_token
            .check(token.as_bytes(), Instant::now())
            .map_err(rate_limited)
        {
            count("rate_limited");
            return Err(refusal);
        }
        let Some(presented) = refresh_tokens.check(&token) else {
            count("invalid");
            return Err(GatewayError::InvalidRefreshToken(seed));
        };
        let (next_token, next_hash) = refresh_tokens.mint();
        let (rotate, grace) = (self.settings.rotation, self.settings.reuse_grace);
        let now = Timestamp::now();
        let outcome = exchange_with_retry(service, presented, next_hash, rotate, grace, now).await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                count(if e.is_unavailable() {
                    "unavailable"
                } else {
                    "error"
                });
                return Err(service.refusal(&e));
            }
        };
        let (stored, refresh_token, result) = match outcome {
            RefreshOutcome::Rotated { session, .. } => (session, next_token, "ok"),
            RefreshOutcome::GraceReplay { session, .. } => (session, next_token, "grace_replay"),
            RefreshOutcome::Kept { session } => (session, token, "ok"),
            RefreshOutcome::Reused { session_id, .. } => {
                count("reused");
                self.metrics.refresh_token_reuse_detected.inc();
                service.revoked_here(&[session_id], RevokeReason::ReuseDetected, self.settings);
                tracing::warn!(session = %session_id, "refresh token reuse detected: the session is revoked");
                return Err(GatewayError::RefreshTokenReused);
            }
            RefreshOutcome::Expired => {
                count("expired");
                return Err(GatewayError::ExpiredRefreshToken(seed));
            }
            RefreshOutcome::Revoked { .. } => {
                count("revoked");
                return Err(GatewayError::RevokedRefreshToken(seed));
            }
            RefreshOutcome::Unknown => {
                count("invalid");
                return Err(GatewayError::UnknownRefreshToken(seed));
            }
        };
        let (access_token, expires_in) = mint_access(self.verifier, self.settings, &stored, now)?;
        count(result);
        let issued = IssuedTokens {
            access_token,
            expires_in,
            refresh_token,
        };
        let mut data = issued.fields(self.settings);
        data.insert("user".into(), user_json(&stored));
        let mut body = ok("Access token refreshed successfully");
        if let Value::Object(top) = &mut body {
            top.insert("data".into(), Value::Object(data.clone()));
            top.extend(data);
        }
        let mut reply = Reply::ok(200, body);
        if let Some(cookie) = issued.cookie(self.settings, &stored, now) {
            reply = reply.with_header("set-cookie", cookie);
        }
        Ok(reply)
    }

    async fn logout(
        &self,
        service: &SessionService,
        session: &mut ServerSession,
    ) -> Result<Reply, GatewayError> {
        let refresh_tokens = self.refresh_tokens()?;
        self.limit_ip(session)?;
        let body = read_body(session, self.max_body_size).await?;
        let headers = &session.req_header().headers;
        let parsed = json_object(headers, &body)?;
        let token = match string_field(parsed.as_ref(), "refreshToken")? {
            Some(t) => Some(t.to_owned()),
            None => cookie_token(headers, self.settings.cookie.as_ref())?.map(str::to_owned),
        };
        let now = Timestamp::now();
        // A refresh token (body or cookie) is seed 000's logout, a bearer
        // access token seed 003's: each answers in its seed's words.
        let seed = match token {
            Some(_) => Seed::TokenManagement,
            None => Seed::CareFlow,
        };
        let revoked = match token {
            Some(token) => match refresh_tokens.check(&token) {
                // Best effort, like the seeds: an unknown token is still a logout.
                None => None,
                Some(hash) => {
                    let found = service
                        .call(move |s| async move { s.session_by_refresh_token(hash).await })
                        .await
                        .map_err(|e| service.refusal(&e))?;
                    match found {
                        Some(found) => self.revoke(service, found.id, now).await?,
                        None => None,
                    }
                }
            },
            None => {
                let has_bearer = headers.contains_key(http::header::AUTHORIZATION);
                if !has_bearer {
                    return Err(GatewayError::LogoutTokenRequired);
                }
                let verified = self.bearer(service, session, seed)?;
                match verified.session_id {
                    Some(id) => self.revoke(service, id, now).await?,
                    None => None,
                }
            }
        };
        if revoked.is_some() {
            self.metrics
                .auth_logout
                .with_label_values(&["session"])
                .inc();
        }
        let message = match seed {
            Seed::TokenManagement => "Logged out successfully",
            Seed::CareFlow => "Logout successful",
        };
        Ok(self.with_cleared_cookie(Reply::ok(200, ok(message))))
    }

    async fn revoke(
        &self,
        service: &SessionService,
        id: Uuid,
        now: Timestamp,
    ) -> Result<Option<Session>, GatewayError> {
        let revoked = service
            .call(move |s| async move { s.revoke_session(id, RevokeReason::Logout, now).await })
            .await
            .map_err(|e| service.refusal(&e))?;
        if revoked.is_some() {
            service.revoked_here(&[id], RevokeReason::Logout, self.settings);
        }
        Ok(revoked)
    }

    async fn logout_all(
        &self,
        service: &SessionService,
        session: &mut ServerSession,
    ) -> Result<Reply, GatewayError> {
        let verified = self.bearer(service, session, Seed::TokenManagement)?;
        let subject = verified.sub.clone().unwrap_or_default();
        let now = Timestamp::now();
        let ids = service
            .call(move |s| async move {
                s.revoke_all_for_subject(&subject, RevokeReason::LogoutAll, now)
                    .await
            })
            .await
            .map_err(|e| service.refusal(&e))?;
        service.revoked_here(&ids, RevokeReason::LogoutAll, self.settings);
        self.metrics.auth_logout.with_label_values(&["all"]).inc();
        let mut body = ok("Logged out from all devices successfully");
        body["data"] = json!({"revoked": ids.len()});
        Ok(self.with_cleared_cookie(Reply::ok(200, body)))
    }

    async fn list(
        &self,
        service: &SessionService,
        session: &mut ServerSession,
    ) -> Result<Reply, GatewayError> {
        let verified = self.bearer(service, session, Seed::TokenManagement)?;
        let subject = verified.sub.clone().unwrap_or_default();
        let now = Timestamp::now();
        let sessions = service
            .call(move |s| async move { s.list_active_sessions(&subject, now).await })
            .await
            .map_err(|e| service.refusal(&e))?;
        let list: Vec<Value> = sessions
            .iter()
            .map(|s| session_json(s, verified.session_id))
            .collect();
        Ok(Reply::ok(
            200,
            json!({"success": true, "data": {"count": list.len(), "sessions": list}}),
        ))
    }

    async fn delete(
        &self,
        service: &SessionService,
        session: &mut ServerSession,
        id: &str,
    ) -> Result<Reply, GatewayError> {
        let verified = self.bearer(service, session, Seed::TokenManagement)?;
        let Ok(id) = Uuid::parse_str(id) else {
            return Err(GatewayError::InvalidSessionId);
        };
        let subject = verified.sub.clone().unwrap_or_default();
        let now = Timestamp::now();
        let revoked = service
            .call(move |s| async move {
                s.revoke_session_of_subject(&subject, id, RevokeReason::SessionDeleted, now)
                    .await
            })
            .await
            .map_err(|e| service.refusal(&e))?;
        if !revoked {
            return Err(GatewayError::SessionNotFound);
        }
        service.revoked_here(&[id], RevokeReason::SessionDeleted, self.settings);
        self.metrics
            .auth_logout
            .with_label_values(&["single"])
            .inc();
        let mut reply = Reply::ok(200, ok("Session revoked successfully"));
        if verified.session_id == Some(id) {
            reply = self.with_cleared_cookie(reply);
        }
        Ok(reply)
    }

    fn with_cleared_cookie(&self, reply: Reply) -> Reply {
        match &self.settings.cookie {
            Some(cookie) => reply.with_header(
                "set-cookie",
                set_cookie(cookie, &self.settings.base_path, None),
            ),
            None => reply,
        }
    }
}

/// 429 with `Retry-After` in whole seconds (at least 1).
pub(crate) fn rate_limited(wait: Duration) -> GatewayError {
    GatewayError::RateLimited {
        retry_after_secs: super::ratelimit::retry_after_secs(wait),
    }
}

/// Exchanges a refresh token, retrying twice when a concurrent transaction
/// won a serialisation conflict (the loser then sees the winner's result).
async fn exchange_with_retry(
    service: &SessionService,
    presented: [u8; 32],
    next: [u8; 32],
    rotate: bool,
    grace: Duration,
    now: Timestamp,
) -> Result<RefreshOutcome, StoreError> {
    let mut attempt = 0;
    loop {
        let result = service
            .call(move |s| async move {
                s.exchange_refresh_token(presented, next, rotate, grace, now)
                    .await
            })
            .await;
        match result {
            Err(StoreError::Conflict(_)) if attempt < 2 => attempt += 1,
            other => return other,
        }
    }
}
