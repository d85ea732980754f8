//! Login interception, the request side: the proxy hands over a login
//! route's request prepared as for any upstream (see `crate::proxy`); this
//! reads the client's body, sends both to the backend through
//! [`super::login::exchange`], and on a 2xx JSON answer opens a session and
//! returns the backend's body with the gateway's tokens. Non-2xx or
//! non-JSON answers pass through untouched.

use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::Session;
use tracing::{Instrument, Span};

use super::handlers::AuthApi;
use super::LoginCapture;
use crate::error::GatewayError;

/// One login exchange, as the proxy hands it over.
pub(crate) struct LoginExchange<'a> {
    /// Upstream connections of login routes.
    pub connector: &'a Connector,
    /// The target the proxy picked.
    pub peer: &'a HttpPeer,
    pub capture: &'a LoginCapture,
    pub api: AuthApi<'a>,
    /// The request as the upstream must receive it (path rewritten,
    /// identity and forwarding headers set); the body length is added here.
    pub request: RequestHeader,
    pub client_ip: Option<String>,
    pub request_id: &'a str,
    pub max_body_size: usize,
    /// The `upstream` span; closed when the backend's answer is in.
    pub span: Span,
}

/// Runs the exchange and writes the answer itself; `Err` is an answer to
/// send instead (nothing has been written then).
pub(crate) async fn intercept_login(
    session: &mut Session,
    exchange: LoginExchange<'_>,
) -> Result<(), GatewayError> {
    let internal = |what: &str, e: pingora::BError| {
        tracing::error!(error = %e, "login route: {what}");
        GatewayError::Internal
    };
    let LoginExchange {
        connector,
        peer,
        capture,
        api,
        mut request,
        client_ip,
        request_id,
        max_body_size,
        span,
    } = exchange;
    // While the store is known to be down no session can be opened: refuse
    // before the backend checks the credentials, not after.
    if let Some(service) = api.service {
        service.admit()?;
    }
    let body = super::request::read_body(session, max_body_size).await?;
    request
        .insert_header(http::header::CONTENT_LENGTH, body.len().to_string())
        .map_err(|e| internal("content-length", e))?;
    let answer = super::login::exchange(connector, peer, request, body.clone())
        .instrument(span.clone())
        .await;
    match &answer {
        Ok(a) => span.record("status", a.header.status.as_u16()),
        Err(refusal) => span.record("error", refusal.code()),
    };
    drop(span);
    let answer = answer?;

    let mut header = answer.header;
    let mut out_body = answer.body;
    let is_json = header
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
    if header.status.is_success() && is_json {
        let user_agent = super::request::user_agent(&session.req_header().headers);
        let (rewritten, cookie) = api
            .open_session_from_login(capture, &body, &out_body, user_agent, client_ip)
            .await?;
        out_body = rewritten;
        let set = |h: &mut ResponseHeader, name: &'static str, value: String| {
            h.insert_header(name, value)
                .map_err(|e| internal("answer header", e))
        };
        set(&mut header, "cache-control", "no-store".to_owned())?;
        if let Some(cookie) = cookie {
            header
                .append_header("set-cookie", cookie)
                .map_err(|e| internal("answer header", e))?;
        }
    }
    header.remove_header(&http::header::TRANSFER_ENCODING);
    header.remove_header(&http::header::CONNECTION);
    header
        .insert_header(http::header::CONTENT_LENGTH, out_body.len().to_string())
        .map_err(|e| internal("answer header", e))?;
    header
        .insert_header("x-request-id", request_id)
        .map_err(|e| internal("answer header", e))?;
    let write = async {
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session
            .write_response_body(Some(bytes::Bytes::from(out_body)), true)
            .await
    };
    if let Err(e) = write.await {
        tracing::debug!(error = %e, "login route: the client went away");
    }
    Ok(())
}
