//! The session routes the gateway answers itself (`{base}/refresh`,
//! `/refresh-token`, `/logout`, `/logout-all`, `GET /sessions`,
//! `DELETE /sessions/{id}`), in the shapes both seed clients understand and,
//! route family by route family, with the `message` its seed sent ([`Seed`]).

use std::time::{Duration, Instant};

use pingora::protocols::http::ServerSession;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::request::{client_ip, cookie_token, json_object, read_body, set_cookie, string_field};
use super::service::SessionService;
use super::settings::Seed;
use super::store::{NewSession, RefreshOutcome, RevokeReason, Session, StoreError, Timestamp};
use super::{Endpoint, SessionSettings};
use crate::generation::Generation;
use crate::jwt::{mint, MintRequest, Rejection, VerifiedToken};
use crate::metrics::Metrics;
use crate::reply::Reply;

/// What a session handler works with for one request.
pub struct AuthApi<'a> {
    pub gen: &'a Generation,
    pub settings: &'a SessionSettings,
    /// `None` when the config gained `sessions` by reload (needs a restart).
    pub service: Option<&'a SessionService>,
    pub metrics: &'a Metrics,
}

/// The 503 every store outage answers with.
pub fn unavailable() -> Reply {
    Reply::error(
        503,
        "session_store_unavailable",
        "The session store is unavailable; try again shortly",
    )
}

/// Maps a store failure to the answer; logs what the operator needs.
pub fn store_failure(error: &StoreError) -> Reply {
    if error.is_unavailable() {
        tracing::warn!(%error, "session store unavailable");
        unavailable()
    } else {
        tracing::error!(%error, "session store error");
        Reply::error(500, "internal_error", "The session could not be processed")
    }
}

/// `{"id": sub, …captured claims}`, the seed services' `user` object.
pub fn user_json(session: &Session) -> Value {
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
pub fn session_json(session: &Session, current: Option<Uuid>) -> Value {
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
pub struct IssuedTokens {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
}

impl IssuedTokens {
    /// The token fields (`accessToken`, `refreshToken` unless it travels in
    /// the cookie, `tokenType`, `expiresIn`) as a JSON object.
    pub fn fields(&self, settings: &SessionSettings) -> Map<String, Value> {
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
    pub fn cookie(
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
pub fn mint_access(
    gen: &Generation,
    settings: &SessionSettings,
    session: &Session,
    now: Timestamp,
) -> Result<(String, u64), Reply> {
    let remaining = session.expires_at.saturating_duration_since(now);
    let ttl = settings
        .access_ttl
        .min(remaining)
        .max(Duration::from_secs(1));
    let keys = gen
        .verifier
        .as_ref()
        .map(|v| v.keys())
        .ok_or_else(|| Reply::error(500, "internal_error", "No signing key is configured"))?;
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
            Err(Reply::error(
                500,
                "internal_error",
                "The access token could not be signed",
            ))
        }
    }
}

/// Who a new session is for: from login interception or the admin API.
pub struct SessionDraft {
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
    /// Answers one session route. Never panics on client input.
    pub async fn handle(&self, endpoint: Endpoint, session: &mut ServerSession) -> Reply {
        let method = session.req_header().method.clone();
        if method != endpoint.method() {
            let allow = endpoint.method();
            return Reply::error(
                405,
                "method_not_allowed",
                format!("Use {allow} for this route"),
            )
            .with_header("allow", allow.to_string());
        }
        let Some(service) = self.service else {
            tracing::error!(
                "`sessions` was added by a reload; restart the gateway to open the session store"
            );
            return unavailable();
        };
        let result = match endpoint {
            Endpoint::Refresh(seed) => self.refresh(service, session, seed).await,
            Endpoint::Logout => self.logout(service, session).await,
            Endpoint::LogoutAll => self.logout_all(service, session).await,
            Endpoint::Sessions => self.list(service, session).await,
            Endpoint::Session(id) => self.delete(service, session, &id).await,
        };
        result.unwrap_or_else(|reply| reply)
    }

    /// Stores a new session and issues its first tokens.
    pub async fn open_session(
        &self,
        draft: SessionDraft,
    ) -> Result<(Session, IssuedTokens, Timestamp), Reply> {
        let Some(service) = self.service else {
            return Err(unavailable());
        };
        let (refresh_token, refresh_hash) = self.settings.refresh_tokens.mint();
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
            .map_err(|e| store_failure(&e))?;
        self.metrics.sessions_created.inc();
        let (access_token, expires_in) = mint_access(self.gen, self.settings, &stored, now)?;
        let issued = IssuedTokens {
            access_token,
            expires_in,
            refresh_token,
        };
        Ok((stored, issued, now))
    }

    /// Per-IP rate limit of refresh and logout attempts.
    fn limit_ip(&self, session: &ServerSession) -> Result<(), Reply> {
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
    ) -> Result<std::sync::Arc<VerifiedToken>, Reply> {
        let token = crate::access::extract_token(&session.req_header().headers, None);
        let rejection = match crate::access::check(self.gen, Some(&service.revoked), token) {
            Ok((verified, _)) if verified.sub.is_some() => return Ok(verified),
            Ok(_) => Rejection::MissingClaim("sub".into()),
            Err(rejection) => rejection,
        };
        let mut reply = crate::access::rejection_reply(&rejection);
        // Seed 003's middleware answers every refused access token alike;
        // seed 000 does not show its middleware, so its routes keep ours, and
        // neither seed words a missing token.
        if seed == Seed::CareFlow && rejection != Rejection::Missing {
            reply.body["message"] = "Invalid or expired token".into();
        }
        Err(reply)
    }

    async fn refresh(
        &self,
        service: &SessionService,
        session: &mut ServerSession,
        seed: Seed,
    ) -> Result<Reply, Reply> {
        let count = |result: &str| {
            self.metrics.auth_refresh.with_label_values(&[result]).inc();
        };
        if let Err(reply) = self.limit_ip(session) {
            count("rate_limited");
            return Err(reply);
        }
        let body = read_body(session, self.gen.max_body_size)
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
                    return Err(Reply::error(
                        400,
                        "refresh_token_required",
                        "Refresh token is required",
                    ));
                }
                Err(reply) => {
                    count("bad_request");
                    return Err(reply);
                }
            },
        };
        if let Err(reply) = self
            .settings
            .per_token
            .check(token.as_bytes(), Instant::now())
            .map_err(rate_limited)
        {
            count("rate_limited");
            return Err(reply);
        }
        let Some(presented) = self.settings.refresh_tokens.check(&token) else {
            count("invalid");
            return Err(invalid_refresh_token(seed));
        };
        let (next_token, next_hash) = self.settings.refresh_tokens.mint();
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
                return Err(store_failure(&e));
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
                return Err(Reply::error(
                    401,
                    "refresh_token_reused",
                    "Refresh token was already used; the session has been revoked. Please login again",
                ));
            }
            RefreshOutcome::Expired => {
                count("expired");
                return Err(expired_refresh_token(seed));
            }
            RefreshOutcome::Revoked { .. } => {
                count("revoked");
                return Err(revoked_refresh_token(seed));
            }
            RefreshOutcome::Unknown => {
                count("invalid");
                return Err(unknown_refresh_token(seed));
            }
        };
        let (access_token, expires_in) = mint_access(self.gen, self.settings, &stored, now)?;
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
    ) -> Result<Reply, Reply> {
        self.limit_ip(session)?;
        let body = read_body(session, self.gen.max_body_size).await?;
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
            Some(token) => match self.settings.refresh_tokens.check(&token) {
                // Best effort, like the seeds: an unknown token is still a logout.
                None => None,
                Some(hash) => {
                    let found = service
                        .call(move |s| async move { s.session_by_refresh_token(hash).await })
                        .await
                        .map_err(|e| store_failure(&e))?;
                    match found {
                        Some(found) => self.revoke(service, found.id, now).await?,
                        None => None,
                    }
                }
            },
            None => {
                let has_bearer = headers.contains_key(http::header::AUTHORIZATION);
                if !has_bearer {
                    return Err(Reply::error(
                        400,
                        "refresh_token_required",
                        "Refresh token is required (in the body, or an access token in Authorization)",
                    ));
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
    ) -> Result<Option<Session>, Reply> {
        let revoked = service
            .call(move |s| async move { s.revoke_session(id, RevokeReason::Logout, now).await })
            .await
            .map_err(|e| store_failure(&e))?;
        if revoked.is_some() {
            service.revoked_here(&[id], RevokeReason::Logout, self.settings);
        }
        Ok(revoked)
    }

    async fn logout_all(
        &self,
        service: &SessionService,
        session: &mut ServerSession,
    ) -> Result<Reply, Reply> {
        let verified = self.bearer(service, session, Seed::TokenManagement)?;
        let subject = verified.sub.clone().unwrap_or_default();
        let now = Timestamp::now();
        let ids = service
            .call(move |s| async move {
                s.revoke_all_for_subject(&subject, RevokeReason::LogoutAll, now)
                    .await
            })
            .await
            .map_err(|e| store_failure(&e))?;
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
    ) -> Result<Reply, Reply> {
        let verified = self.bearer(service, session, Seed::TokenManagement)?;
        let subject = verified.sub.clone().unwrap_or_default();
        let now = Timestamp::now();
        let sessions = service
            .call(move |s| async move { s.list_active_sessions(&subject, now).await })
            .await
            .map_err(|e| store_failure(&e))?;
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
    ) -> Result<Reply, Reply> {
        let verified = self.bearer(service, session, Seed::TokenManagement)?;
        let Ok(id) = Uuid::parse_str(id) else {
            return Err(Reply::error(
                400,
                "invalid_session_id",
                "Session id must be a UUID",
            ));
        };
        let subject = verified.sub.clone().unwrap_or_default();
        let now = Timestamp::now();
        let revoked = service
            .call(move |s| async move {
                s.revoke_session_of_subject(&subject, id, RevokeReason::SessionDeleted, now)
                    .await
            })
            .await
            .map_err(|e| store_failure(&e))?;
        if !revoked {
            return Err(Reply::error(404, "session_not_found", "Session not found"));
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

// Refused refresh tokens, in the words of each seed's `refreshAccessToken`.
// Seed 000 verifies a JWT, then looks its row up (logout deletes it, so a
// logged-out token is "not found"); seed 003 words only "invalid" and
// "expired" (its logout clears the stored token, "making it invalid").

/// Not a token of ours: forged, garbled, another secret's.
fn invalid_refresh_token(seed: Seed) -> Reply {
    let message = match seed {
        Seed::TokenManagement => "Invalid or expired refresh token",
        Seed::CareFlow => "Invalid refresh token",
    };
    Reply::error(401, "invalid_refresh_token", message)
}

/// Ours, but not in the store (never stored, or cleaned up).
fn unknown_refresh_token(seed: Seed) -> Reply {
    match seed {
        Seed::TokenManagement => Reply::error(
            401,
            "invalid_refresh_token",
            "Refresh token not found. Please login again.",
        ),
        Seed::CareFlow => invalid_refresh_token(seed),
    }
}

/// The session was logged out or revoked.
fn revoked_refresh_token(seed: Seed) -> Reply {
    let message = match seed {
        Seed::TokenManagement => "Refresh token not found. Please login again.",
        Seed::CareFlow => "Invalid refresh token",
    };
    Reply::error(401, "refresh_token_revoked", message)
}

/// The session is past its lifetime.
fn expired_refresh_token(seed: Seed) -> Reply {
    let message = match seed {
        Seed::TokenManagement => "Refresh token has expired. Please login again.",
        Seed::CareFlow => "Refresh token expired. Please login again",
    };
    Reply::error(401, "refresh_token_expired", message)
}

/// 429 with `Retry-After` in whole seconds (at least 1).
pub fn rate_limited(wait: Duration) -> Reply {
    let secs = super::ratelimit::retry_after_secs(wait);
    Reply::error(
        429,
        "rate_limited",
        format!("Too many attempts; retry in {secs} seconds"),
    )
    .with_header("retry-after", secs.to_string())
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
