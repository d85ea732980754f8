//! Login interception: a route with a `login` block is sent to its upstream
//! by the gateway itself (pingora's body filters are synchronous, and opening
//! a session needs the database), so the whole answer can be read, a session
//! opened from it, and the body returned with the gateway's tokens in place
//! of the backend's. Non-2xx or non-JSON answers pass through untouched.

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use serde_json::{Map, Value};

use super::handlers::{AuthApi, SessionDraft};
use super::request::truncate;
use super::LoginCapture;
use crate::error::GatewayError;

/// Largest backend answer a login route reads (a login answer is small).
pub(crate) const MAX_LOGIN_RESPONSE: usize = 1024 * 1024;

/// Longest subject or device description stored.
const MAX_TEXT: usize = 256;

/// The backend's answer, read completely.
pub(crate) struct UpstreamAnswer {
    pub header: ResponseHeader,
    pub body: Vec<u8>,
}

/// Sends `request` with `body` to `peer` and reads the whole answer.
pub(crate) async fn exchange(
    connector: &Connector,
    peer: &HttpPeer,
    request: RequestHeader,
    body: Vec<u8>,
) -> Result<UpstreamAnswer, GatewayError> {
    let unreachable = |e: pingora::BError| {
        tracing::warn!(error = %e, "login route: upstream exchange failed");
        GatewayError::UpstreamUnreachable
    };
    let (mut http, _reused) = connector
        .get_http_session(peer)
        .await
        .map_err(unreachable)?;
    http.set_read_timeout(peer.options.read_timeout);
    http.set_write_timeout(peer.options.write_timeout);
    http.write_request_header(Box::new(request))
        .await
        .map_err(unreachable)?;
    if !body.is_empty() {
        http.write_request_body(Bytes::from(body), true)
            .await
            .map_err(unreachable)?;
    }
    http.finish_request_body().await.map_err(unreachable)?;
    loop {
        http.read_response_header().await.map_err(unreachable)?;
        let informational = http
            .response_header()
            .is_some_and(|h| h.status.is_informational());
        if !informational {
            break;
        }
    }
    let header = http
        .response_header()
        .cloned()
        .ok_or(GatewayError::UpstreamNoAnswer)?;
    let mut answer = Vec::new();
    while let Some(chunk) = http.read_response_body().await.map_err(unreachable)? {
        if answer.len() + chunk.len() > MAX_LOGIN_RESPONSE {
            return Err(GatewayError::LoginAnswerTooLarge);
        }
        answer.extend_from_slice(&chunk);
    }
    connector.release_http_session(http, peer, None).await;
    Ok(UpstreamAnswer {
        header,
        body: answer,
    })
}

/// Text of a JSON value used as subject or device info: strings as they are,
/// numbers in their JSON spelling; anything else is not usable.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(truncate(s, MAX_TEXT)),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl AuthApi<'_> {
    /// Opens a session from a 2xx JSON login answer and rewrites the body.
    /// Returns the new body and the refresh cookie (cookie mode).
    pub(crate) async fn open_session_from_login(
        &self,
        capture: &LoginCapture,
        request_body: &[u8],
        answer: &[u8],
        user_agent: Option<String>,
        ip: Option<String>,
    ) -> Result<(Vec<u8>, Option<String>), GatewayError> {
        let unusable = |why: String| {
            tracing::error!(
                "login route: {why}; check the route's `login` pointers against the backend's answer"
            );
            GatewayError::LoginUnusable
        };
        let mut body: Value = serde_json::from_slice(answer)
            .map_err(|_| unusable("the 2xx answer is not JSON".into()))?;
        if !body.is_object() {
            return Err(unusable("the 2xx answer is not a JSON object".into()));
        }
        let subject = body
            .pointer(&capture.subject)
            .and_then(scalar_text)
            .ok_or_else(|| unusable(format!("no subject at `{}`", capture.subject)))?;
        let mut claims = Map::new();
        for (name, pointer) in &capture.claims {
            if let Some(v) = body.pointer(pointer) {
                claims.insert(name.clone(), v.clone());
            }
        }
        let device_info = capture
            .device_info
            .as_ref()
            .and_then(|p| {
                serde_json::from_slice::<Value>(request_body)
                    .ok()?
                    .pointer(p)
                    .and_then(scalar_text)
            })
            .or_else(|| user_agent.as_deref().map(|ua| truncate(ua, MAX_TEXT)));
        let draft = SessionDraft {
            subject,
            claims,
            device_info,
            user_agent,
            ip,
        };
        let (stored, issued, now) = self.open_session(draft).await?;
        let fields = issued.fields(self.settings);
        replace_tokens(&mut body, &fields);
        let cookie = issued.cookie(self.settings, &stored, now);
        let bytes =
            serde_json::to_vec(&body).map_err(|_| unusable("cannot encode the answer".into()))?;
        Ok((bytes, cookie))
    }
}

/// Puts the gateway's token fields at the top level and, when the body has a
/// `data` object (the seed-000 envelope), inside it too. The backend's own
/// `accessToken`/`refreshToken` never reach the client.
fn replace_tokens(body: &mut Value, fields: &Map<String, Value>) {
    fn apply(target: &mut Map<String, Value>, fields: &Map<String, Value>) {
        target.remove("accessToken");
        target.remove("refreshToken");
        for (k, v) in fields {
            target.insert(k.clone(), v.clone());
        }
    }
    if let Some(top) = body.as_object_mut() {
        apply(top, fields);
        if let Some(Value::Object(data)) = top.get_mut("data") {
            apply(data, fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backend_tokens_are_replaced_at_the_top_and_inside_data() {
        let mut body = json!({
            "message": "Login successful",
            "user": {"id": "u-1"},
            "accessToken": "backend-access",
            "refreshToken": "backend-refresh",
            "data": {"accessToken": "x", "refreshToken": "y", "user": {"id": "u-1"}}
        });
        let fields = match json!({"accessToken": "gw-access", "tokenType": "Bearer"}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        replace_tokens(&mut body, &fields);
        assert_eq!(body["accessToken"], "gw-access");
        assert!(
            body.get("refreshToken").is_none(),
            "cookie mode leaves no refresh token in the body"
        );
        assert_eq!(body["data"]["accessToken"], "gw-access");
        assert!(body["data"].get("refreshToken").is_none());
        assert_eq!(body["user"]["id"], "u-1");
        assert_eq!(body["message"], "Login successful");
    }

    #[test]
    fn subjects_are_strings_or_numbers() {
        assert_eq!(scalar_text(&json!("u-1")).as_deref(), Some("u-1"));
        assert_eq!(scalar_text(&json!(42)).as_deref(), Some("42"));
        assert_eq!(scalar_text(&json!("")), None);
        assert_eq!(scalar_text(&json!(null)), None);
        assert_eq!(scalar_text(&json!({"a": 1})), None);
    }
}
