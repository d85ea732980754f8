//! The admin session API on the admin listener, for trusted services:
//! open a session for a subject (returns its tokens), list a subject's
//! sessions, revoke one or all; and revoke tokens of other issuers by `jti`,
//! `sub` or `sid` (`/admin/revocations`). Guarded by `sessions.admin_token`,
//! compared in constant time through its SHA-256.

use pingora::protocols::http::ServerSession;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::handlers::{session_json, AuthApi, SessionDraft};
use super::request::{json_object, read_body, string_field, truncate};
use super::store::{hash_refresh_token, RevocationKind, RevokeReason, Timestamp, TokenRevocation};
use super::{SessionService, SessionSettings};
use crate::error::GatewayError;
use crate::jwt::{IssuerInfo, Verifier};
use crate::metrics::Metrics;
use crate::reply::Reply;

/// Path prefix of the admin session API.
pub(crate) const PREFIX: &str = "/admin/sessions";

/// Path of the token revocation API.
pub(crate) const REVOCATIONS: &str = "/admin/revocations";

/// Longest `jti`, `sub` or `sid` value a revocation accepts (the store
/// announces revocations in NOTIFY payloads, which are capped at 8000 bytes).
pub(crate) const MAX_REVOKED_VALUE: usize = 1024;

/// Whether `path` is answered by [`handle`].
pub(crate) fn serves(path: &str) -> bool {
    path == PREFIX || path.starts_with("/admin/sessions/") || path == REVOCATIONS
}

/// Longest subject accepted (matches what login interception stores).
const MAX_SUBJECT: usize = 256;

/// Answers `/admin/sessions[/{id}]` and `/admin/revocations`.
pub(crate) async fn handle(
    settings: Option<&SessionSettings>,
    verifier: Option<&Verifier>,
    max_body_size: usize,
    service: Option<&SessionService>,
    metrics: &Metrics,
    session: &mut ServerSession,
) -> Reply {
    let Some(settings) = settings else {
        return GatewayError::AdminApiNotConfigured.into_reply();
    };
    let Some(expected) = settings.admin_token_hash else {
        return GatewayError::AdminApiDisabled.into_reply();
    };
    let presented =
        crate::access::extract_token(&session.req_header().headers, None).map(hash_refresh_token);
    let authorized = presented.is_some_and(|p| bool::from(p.ct_eq(&expected)));
    if !authorized {
        return GatewayError::AdminUnauthorized.into_reply();
    }
    let Some(service) = service else {
        return GatewayError::StoreUnavailable {
            retry_after_secs: None,
        }
        .into_reply();
    };
    let path = session.req_header().uri.path().to_owned();
    let method = session.req_header().method.clone();
    let subject = query_param(session.req_header().uri.query().unwrap_or(""), "subject");
    if path == REVOCATIONS {
        let query = session.req_header().uri.query().unwrap_or("").to_owned();
        let result = match method.as_str() {
            "POST" => revoke_tokens(verifier, max_body_size, service, session).await,
            "GET" => list_revocations(verifier, service, query_param(&query, "issuer")).await,
            _ => Err(GatewayError::AdminMethodNotAllowed),
        };
        return result.unwrap_or_else(GatewayError::into_reply);
    }
    let rest = path.strip_prefix(PREFIX).unwrap_or("");
    let result = match (method.as_str(), rest) {
        ("POST", "") => create(verifier, max_body_size, settings, service, metrics, session).await,
        ("GET", "") => list(service, subject).await,
        ("DELETE", "") => revoke_all(settings, service, subject).await,
        ("DELETE", id) if id.len() > 1 => revoke_one(settings, service, &id[1..]).await,
        _ => Err(GatewayError::AdminMethodNotAllowed),
    };
    result.unwrap_or_else(GatewayError::into_reply)
}

fn required_subject(subject: Option<String>) -> Result<String, GatewayError> {
    match subject {
        Some(s) if !s.is_empty() && s.len() <= MAX_SUBJECT => Ok(s),
        _ => Err(GatewayError::InvalidSubject { max: MAX_SUBJECT }),
    }
}

async fn create(
    verifier: Option<&Verifier>,
    max_body_size: usize,
    settings: &SessionSettings,
    service: &SessionService,
    metrics: &Metrics,
    session: &mut ServerSession,
) -> Result<Reply, GatewayError> {
    if settings.refresh_tokens.is_none() {
        return Err(GatewayError::SessionsStoreOnly);
    }
    let body = read_body(session, max_body_size).await?;
    let parsed = json_object(&session.req_header().headers, &body)?;
    let subject = required_subject(string_field(parsed.as_ref(), "subject")?.map(str::to_owned))?;
    let claims = match parsed.as_ref().and_then(|b| b.get("claims")) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(GatewayError::FieldNotObject {
                field: "claims".into(),
            });
        }
    };
    if let Some(reserved) = claims
        .keys()
        .find(|k| crate::jwt::RESERVED_CLAIMS.contains(&k.as_str()))
    {
        return Err(GatewayError::ReservedClaim {
            claim: reserved.clone(),
        });
    }
    let device_info = string_field(parsed.as_ref(), "deviceInfo")?.map(|d| truncate(d, 256));
    let api = AuthApi {
        verifier,
        max_body_size,
        settings,
        service: Some(service),
        metrics,
    };
    let draft = SessionDraft {
        subject,
        claims,
        device_info,
        user_agent: super::request::user_agent(&session.req_header().headers),
        ip: super::request::client_ip(session),
    };
    let (stored, issued, _) = api.open_session(draft).await?;
    let mut data = issued.fields(settings);
    // The admin caller always gets the refresh token, cookie mode or not.
    data.insert("refreshToken".into(), issued.refresh_token.clone().into());
    data.insert("sessionId".into(), json!(stored.id));
    Ok(Reply::ok(
        201,
        json!({"success": true, "message": "Session created", "data": data}),
    ))
}

async fn list(service: &SessionService, subject: Option<String>) -> Result<Reply, GatewayError> {
    let subject = required_subject(subject)?;
    let now = Timestamp::now();
    let sessions = service
        .call(move |s| async move { s.list_active_sessions(&subject, now).await })
        .await
        .map_err(|e| service.refusal(&e))?;
    let list: Vec<Value> = sessions.iter().map(|s| session_json(s, None)).collect();
    Ok(Reply::ok(
        200,
        json!({"success": true, "data": {"count": list.len(), "sessions": list}}),
    ))
}

async fn revoke_all(
    settings: &SessionSettings,
    service: &SessionService,
    subject: Option<String>,
) -> Result<Reply, GatewayError> {
    let subject = required_subject(subject)?;
    let now = Timestamp::now();
    let ids = service
        .call(move |s| async move {
            s.revoke_all_for_subject(&subject, RevokeReason::Admin, now)
                .await
        })
        .await
        .map_err(|e| service.refusal(&e))?;
    service.revoked_here(&ids, RevokeReason::Admin, settings);
    Ok(Reply::ok(
        200,
        json!({"success": true, "message": "Sessions revoked", "data": {"revoked": ids.len()}}),
    ))
}

async fn revoke_one(
    settings: &SessionSettings,
    service: &SessionService,
    id: &str,
) -> Result<Reply, GatewayError> {
    let Ok(id) = Uuid::parse_str(id) else {
        return Err(GatewayError::InvalidSessionId);
    };
    let now = Timestamp::now();
    let revoked = service
        .call(move |s| async move { s.revoke_session(id, RevokeReason::Admin, now).await })
        .await
        .map_err(|e| service.refusal(&e))?;
    if revoked.is_none() {
        return Err(GatewayError::AdminSessionNotFound);
    }
    service.revoked_here(&[id], RevokeReason::Admin, settings);
    Ok(Reply::ok(
        200,
        json!({"success": true, "message": "Session revoked successfully"}),
    ))
}

/// `POST /admin/revocations` `{"issuer": name or iss, "jti"|"sub"|"sid": value}`:
/// stores the revocation, enforces it here at once and announces it to the
/// other nodes. Kept for the issuer's `max_token_lifetime` plus leeway.
async fn revoke_tokens(
    verifier: Option<&Verifier>,
    max_body_size: usize,
    service: &SessionService,
    session: &mut ServerSession,
) -> Result<Reply, GatewayError> {
    let body = read_body(session, max_body_size).await?;
    let parsed = json_object(&session.req_header().headers, &body)?;
    let invalid = |detail: String| GatewayError::InvalidRevocation { detail };
    let issuer_field = string_field(parsed.as_ref(), "issuer")?
        .ok_or_else(|| invalid("`issuer` is required: a `jwt.issuers` name or its `iss`".into()))?;
    let issuer = resolve_issuer(verifier, issuer_field)?;
    let mut named = Vec::new();
    for kind in RevocationKind::ALL {
        if let Some(value) = string_field(parsed.as_ref(), kind.as_str())? {
            named.push((kind, value));
        }
    }
    let [(kind, value)] = named[..] else {
        return Err(invalid(
            "name exactly one of `jti`, `sub` or `sid` (a non-empty string)".into(),
        ));
    };
    if value.len() > MAX_REVOKED_VALUE {
        return Err(invalid(format!(
            "`{}` is longer than {MAX_REVOKED_VALUE} bytes",
            kind.as_str()
        )));
    }
    let now = Timestamp::now();
    let revocation = TokenRevocation {
        kind,
        iss: issuer.iss.clone(),
        value: value.to_owned(),
        revoked_at_ms: now.unix_millis(),
        keep_until_ms: now.saturating_add(issuer.revocation_window).unix_millis(),
    };
    let stored = service
        .call(move |s| async move { s.revoke_tokens(revocation).await })
        .await
        .map_err(|e| service.refusal(&e))?;
    service.tokens_revoked_here(&stored, "admin");
    tracing::info!(
        issuer = %issuer.name,
        kind = stored.kind.as_str(),
        "tokens revoked through the admin API"
    );
    Ok(Reply::ok(
        201,
        json!({
            "success": true,
            "message": "Tokens revoked",
            "data": revocation_json(&stored, Some(&issuer.name)),
        }),
    ))
}

/// `GET /admin/revocations[?issuer=…]`: the token revocations in force.
async fn list_revocations(
    verifier: Option<&Verifier>,
    service: &SessionService,
    issuer: Option<String>,
) -> Result<Reply, GatewayError> {
    let only = match issuer.as_deref() {
        Some(i) if !i.is_empty() => Some(resolve_issuer(verifier, i)?.iss),
        _ => None,
    };
    let now = Timestamp::now();
    let rows = service
        .call(move |s| async move { s.token_revocations(Timestamp::MIN, now).await })
        .await
        .map_err(|e| service.refusal(&e))?;
    let name_of = |iss: &str| {
        verifier
            .and_then(|v| v.revocable_issuer(iss))
            .map(|i| i.name)
    };
    let list: Vec<Value> = rows
        .iter()
        .filter(|r| only.as_ref().is_none_or(|iss| &r.iss == iss))
        .map(|r| revocation_json(r, name_of(&r.iss).as_deref()))
        .collect();
    Ok(Reply::ok(
        200,
        json!({"success": true, "data": {"count": list.len(), "revocations": list}}),
    ))
}

/// The issuer a revocation names, or 400 listing the ones that can be named.
fn resolve_issuer(
    verifier: Option<&Verifier>,
    name_or_iss: &str,
) -> Result<IssuerInfo, GatewayError> {
    verifier
        .and_then(|v| v.revocable_issuer(name_or_iss))
        .ok_or_else(|| {
            let known: Vec<String> = verifier
                .map(|v| v.revocable_issuers().map(|i| i.name.to_string()).collect())
                .unwrap_or_default();
            GatewayError::InvalidRevocation {
                detail: if known.is_empty() {
                    "no `jwt.issuers` are configured (the gateway's own tokens are revoked through sessions)".into()
                } else {
                    format!("unknown issuer; known: {}", known.join(", "))
                },
            }
        })
}

/// One revocation as the admin API shows it.
fn revocation_json(r: &TokenRevocation, name: Option<&str>) -> Value {
    json!({
        "kind": r.kind.as_str(),
        "issuer": name,
        "iss": r.iss,
        "value": r.value,
        "revokedAt": Timestamp::from_unix_millis(r.revoked_at_ms),
        "keepUntil": Timestamp::from_unix_millis(r.keep_until_ms),
    })
}

/// A query parameter, percent-decoded (`+` is a space).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))?
    })
}

pub(super) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_percent_decoded() {
        assert_eq!(
            query_param("subject=u-1", "subject").as_deref(),
            Some("u-1")
        );
        assert_eq!(
            query_param("a=1&subject=alice%40example.com", "subject").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(
            query_param("subject=a+b", "subject").as_deref(),
            Some("a b")
        );
        assert_eq!(query_param("subject=%zz", "subject"), None);
        assert_eq!(query_param("other=1", "subject"), None);
    }
}
