//! Answers the gateway writes itself: JSON, `no-store`, in the shape both
//! seed clients understand: `{"success":false,"message":…,"error":…}` — or,
//! for a refusal of a gRPC request (`content-type: application/grpc…`), a
//! gRPC answer a gRPC client can read: HTTP 200 with `grpc-status` and
//! `grpc-message` in a trailers-only response (headers alone, end of stream).
//! Refusals are built from [`crate::error::GatewayError`]; this module only
//! writes them.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::HttpTask;
use pingora::proxy::Session;
use serde_json::{json, Value};

/// The gRPC form of a refusal: its status code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrpcStatus {
    /// `google.rpc.Code` (see [`crate::error::grpc`]).
    pub code: u8,
    /// The text for `grpc-message` (percent-encoded when written).
    pub message: String,
}

/// A response the gateway produces without the upstream.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
    /// Close the client connection after this answer (`Connection: close`).
    pub close: bool,
    /// What a gRPC request gets instead of the JSON body; `None` for
    /// answers that are not refusals.
    pub grpc: Option<GrpcStatus>,
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
            grpc: None,
        }
    }

    /// A success answer with `body` as is.
    pub(crate) fn ok(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
            close: false,
            grpc: None,
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

    /// Writes the reply, closing the body. `request_id` is echoed back. A
    /// refusal of a gRPC request is written as a gRPC answer.
    pub(crate) async fn send(
        mut self,
        session: &mut Session,
        request_id: &str,
    ) -> pingora::Result<()> {
        if self.close {
            // pingora then writes `Connection: close` and drops the connection.
            session.set_keepalive(None);
        } else {
            discard_unread_body(session).await;
        }
        if let Some(grpc) = self.grpc.take() {
            if is_grpc_request(session.req_header()) {
                return self.send_grpc(grpc, session, request_id).await;
            }
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

impl Reply {
    /// The refusal as a gRPC trailers-only answer: HTTP 200, `grpc-status`
    /// and `grpc-message` in the one header block, which ends the stream.
    /// The refusal's other headers (`WWW-Authenticate`, `Retry-After`) stay.
    async fn send_grpc(
        self,
        grpc: GrpcStatus,
        session: &mut Session,
        request_id: &str,
    ) -> pingora::Result<()> {
        let mut resp = ResponseHeader::build(200, Some(5 + self.headers.len()))?;
        resp.insert_header("content-type", "application/grpc")?;
        resp.insert_header("grpc-status", grpc.code.to_string())?;
        resp.insert_header("grpc-message", grpc_message(&grpc.message))?;
        resp.insert_header("x-request-id", request_id)?;
        for (name, value) in self.headers {
            resp.insert_header(name, value)?;
        }
        if session.req_header().version < http::Version::HTTP_2 {
            // HTTP/1.1 (gRPC-Web): an empty body, framed.
            resp.insert_header("content-length", "0")?;
        }
        session
            .write_response_tasks(vec![HttpTask::Header(Box::new(resp), true)])
            .await?;
        Ok(())
    }
}

/// A gRPC (or gRPC-Web) request: its `content-type` starts with
/// `application/grpc`, in any letter case.
pub(crate) fn is_grpc_request(req: &pingora::http::RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.as_bytes().get(..16))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"application/grpc"))
}

/// `message` as the gRPC spec writes `grpc-message`: UTF-8, with every byte
/// outside printable ASCII, and `%` itself, percent-encoded.
pub(crate) fn grpc_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_messages_are_percent_encoded_outside_printable_ascii() {
        assert_eq!(
            grpc_message("No route for POST /a.B/C"),
            "No route for POST /a.B/C"
        );
        assert_eq!(grpc_message("100% sure"), "100%25 sure");
        assert_eq!(grpc_message("Zoë\n"), "Zo%C3%AB%0A");
    }

    #[test]
    fn grpc_requests_are_told_by_their_content_type() {
        let request = |content_type: Option<&str>| {
            let mut req =
                pingora::http::RequestHeader::build("POST", b"/a.B/C", None).expect("request head");
            if let Some(ct) = content_type {
                req.insert_header("content-type", ct).expect("header");
            }
            req
        };
        assert!(is_grpc_request(&request(Some("application/grpc"))));
        assert!(is_grpc_request(&request(Some("application/grpc+proto"))));
        assert!(is_grpc_request(&request(Some(
            "Application/GRPC-web+proto"
        ))));
        assert!(!is_grpc_request(&request(Some("application/json"))));
        assert!(!is_grpc_request(&request(Some("application/grp"))));
        assert!(!is_grpc_request(&request(None)));
    }
}
