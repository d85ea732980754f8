//! The admin session API on the admin listener, for trusted services:
//! open a session for a subject (returns its tokens), list a subject's
//! sessions, revoke one or all. Guarded by `sessions.admin_token`, compared
//! in constant time through its SHA-256.

use pingora::protocols::http::ServerSession;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::handlers::{session_json, AuthApi, SessionDraft};
use super::request::{json_object, read_body, string_field, truncate};
use super::store::{hash_refresh_token, RevokeReason, Timestamp};
use super::{SessionService, SessionSettings};
use crate::error::GatewayError;
use crate::jwt::Verifier;
use crate::metrics::Metrics;
use crate::reply::Reply;

/// Path prefix of the admin session API.
pub(crate) const PREFIX: &str = "/admin/sessions";

/// Longest subject accepted (matches what login interception stores).
const MAX_SUBJECT: usize = 256;

/// Answers `/admin/sessions[/{id}]`.
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

/// A query parameter, percent-decoded (`+` is a space).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))?
    })
}

fn percent_decode(text: &str) -> Option<String> {
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
