//! Answers the gateway writes itself: always JSON, always `no-store`, in the
//! shape both seed clients understand: `{"success":false,"message":…,"error":…}`.
//! Refusals are built from [`crate::error::GatewayError`]; this module only
//! writes them.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use serde_json::{json, Value};

/// A response the gateway produces without the upstream.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
    /// Close the client connection after this answer (`Connection: close`).
    pub close: bool,
}

impl Reply {
    /// `{"success":false,"message":…,"error":…}` with `status`. Refusals go
    /// through [`crate::error::GatewayError::into_reply`], which calls this.
    pub(crate) fn error(status: u16, code: &str, message: impl Into<String>) -> Reply {
        Reply {
            status,
            body: json!({"success": false, "message": message.into(), "error": code}),
            headers: Vec::new(),
            close: false,
        }
    }

    /// A success answer with `body` as is.
    pub(crate) fn ok(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
            close: false,
        }
    }

    /// Adds a response header.
    pub(crate) fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// Closes the connection after the answer: for requests whose framing
    /// cannot be trusted, nothing more is read from that connection.
    pub(crate) fn closing(mut self) -> Reply {
        self.close = true;
        self
    }

    /// Writes the reply, closing the body. `request_id` is echoed back.
    pub(crate) async fn send(self, session: &mut Session, request_id: &str) -> pingora::Result<()> {
        if self.close {
            // pingora then writes `Connection: close` and drops the connection.
            session.set_keepalive(None);
        } else {
            discard_unread_body(session).await;
        }
        let body = Bytes::from(serde_json::to_vec(&self.body).unwrap_or_else(|_| b"{}".to_vec()));
        let mut resp = ResponseHeader::build(self.status, Some(6))?;
        resp.insert_header("content-type", "application/json")?;
        resp.insert_header("cache-control", "no-store")?;
        resp.insert_header("content-length", body.len().to_string())?;
        resp.insert_header("x-request-id", request_id)?;
        for (name, value) in self.headers {
            resp.insert_header(name, value)?;
        }
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await?;
        Ok(())
    }
}

/// The largest unread request body read and dropped so that the
/// connection survives an answer the gateway gives without reading it.
const DISCARD_LIMIT: usize = 64 * 1024;

/// An answer given before the request body was read (a 401 to a POST):
/// a small declared body is read and dropped, so the connection — and any
/// request pipelined behind this one — stays usable, as in nginx. A large,
/// chunked or broken one closes the connection instead (pingora then says
/// `Connection: close`), as does a client still waiting for `100 Continue`.
/// The client's body deadline applies to the read.
async fn discard_unread_body(session: &mut Session) {
    if session.is_body_done() {
        return;
    }
    let headers = &session.req_header().headers;
    // A client waiting for `100 Continue` has not sent its body: do not
    // make it send one only to drop it.
    let small = !headers.contains_key(http::header::EXPECT)
        && headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n <= DISCARD_LIMIT);
    if !small || session.drain_request_body().await.is_err() {
        session.set_keepalive(None);
    }
}

/// RFC 6750 challenge. A request without credentials gets no error code.
pub(crate) fn bearer_challenge(error: Option<(&str, &str)>) -> String {
    match error {
        None => r#"Bearer realm="portcullis""#.to_owned(),
        Some((code, description)) => {
            let description = description.replace(['"', '\\'], "'");
            format!(
                r#"Bearer realm="portcullis", error="{code}", error_description="{description}""#
            )
        }
    }
}
