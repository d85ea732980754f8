//! Every refusal the gateway answers itself, as one type.
//!
//! Each [`GatewayError`] variant knows its HTTP status, the JSON `error` code
//! and `message` clients see, a bounded `reason` label for metrics and logs,
//! the gRPC status it maps to, and the headers it implies (the RFC 6750
//! challenge of a 401, `Retry-After`, `Allow`). Handlers return
//! `Result<_, GatewayError>` and the answer is written in one place,
//! [`GatewayError::into_reply`], in the shape both seed clients understand:
//! `{"success":false,"message":…,"error":…}`. Like axum's rejections and
//! linkerd's single rescue function, a new refusal is a new variant, so the
//! wording, the labels and the status mapping cannot drift apart per call site.
//!
//! Texts are part of the client contract (the seeds' clients show `message`
//! to users): they are byte-identical to what the gateway answered before
//! this type existed, including the per-seed wording of the session routes
//! (variants that carry a [`Seed`]).

use std::borrow::Cow;
use std::fmt;

use crate::canonical::{HeaderError, PathError};
use crate::jwt::Rejection;
use crate::reply::{bearer_challenge, GrpcStatus, Reply};

/// Which seed service a route family took over (`shared/seeds/`). Their
/// clients show the server's `message` to users, so each family answers in
/// its seed's words; the JSON shapes and `error` codes are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seed {
    /// Seed 000, "Token Management - Refresh & Logout": `/refresh`, logout by
    /// refresh token, `/logout-all`, `/sessions`.
    TokenManagement,
    /// Seed 003, the CareFlow EHR API: `/refresh-token` and logout by bearer
    /// access token.
    CareFlow,
}

/// gRPC status codes the gateway maps its refusals to (`google.rpc.Code`),
/// written as `grpc-status` when the request is a gRPC one
/// ([`crate::reply`]).
pub(crate) mod grpc {
    /// `UNKNOWN`: an HTTP status without a closer gRPC meaning.
    pub(crate) const UNKNOWN: u8 = 2;
    /// `INVALID_ARGUMENT`: the request itself is unacceptable (400, 413, 415, 431).
    pub(crate) const INVALID_ARGUMENT: u8 = 3;
    /// `DEADLINE_EXCEEDED` (408).
    pub(crate) const DEADLINE_EXCEEDED: u8 = 4;
    /// `NOT_FOUND` (404 of a named thing: a session, an admin path).
    pub(crate) const NOT_FOUND: u8 = 5;
    /// `PERMISSION_DENIED` (403, and policy denials).
    pub(crate) const PERMISSION_DENIED: u8 = 7;
    /// `RESOURCE_EXHAUSTED` (429).
    pub(crate) const RESOURCE_EXHAUSTED: u8 = 8;
    /// `UNIMPLEMENTED` (405, and no route: to a gRPC client an unrouted
    /// path is a method nobody serves, as a gRPC server answers it).
    pub(crate) const UNIMPLEMENTED: u8 = 12;
    /// `INTERNAL` (500).
    pub(crate) const INTERNAL: u8 = 13;
    /// `UNAVAILABLE`: upstream and session-store outages (502, 503, 504).
    pub(crate) const UNAVAILABLE: u8 = 14;
    /// `UNAUTHENTICATED` (401).
    pub(crate) const UNAUTHENTICATED: u8 = 16;
}

/// Challenge of the admin API's 401: its own realm, so a client never
/// mistakes the admin token for an access token.
const ADMIN_CHALLENGE: &str = r#"Bearer realm="portcullis-admin""#;

/// A refusal the gateway answers itself. See the module docs.
///
/// `Display` is the client `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GatewayError {
    // ---- Request reading (proxy listener) ----
    /// 431: the request head is larger than `requests.max_header_size`.
    HeadersTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 400 `bad_path`: the path cannot be read one way; the connection is closed.
    BadPath(PathError),
    /// 400 `bad_request`: a head that could be framed or attributed twice;
    /// the connection is closed.
    BadHeaders(HeaderError),
    /// 400 `bad_request`: the canonical request target is not a valid URI;
    /// the connection is closed.
    UnreadableTarget,
    /// 400 `bad_request`: pingora could not read the request (downstream error).
    UnreadableRequest,
    /// 408: the request body did not arrive within `body_read_timeout`.
    BodyTimeout,
    /// 408: the request head did not arrive within `header_read_timeout`
    /// (written raw by `conn_guard`, before pingora has a session).
    HeadTimeout,

    // ---- Routing ----
    /// 404: no route matches the method, host and path.
    NoRoute {
        /// The request method.
        method: http::Method,
        /// The canonical path.
        path: String,
    },

    // ---- Authentication ----
    /// 401 with an RFC 6750 challenge: the access token was refused.
    AccessToken {
        /// Why the token was refused.
        rejection: Rejection,
        /// Whose words the message is in: `None` (or seed 000) is the
        /// gateway's own, seed 003 answers every refused token alike.
        seed: Option<Seed>,
    },

    // ---- Authorization and policy ----
    /// 403: a verified token's claim does not meet the route's requirement.
    InsufficientClaims {
        /// The requirement as configured (`claim_text`).
        claim: String,
    },
    /// 403: the route needs a verified client certificate and the
    /// connection has none (`require_client_cert`, or `client_cert` rules).
    ClientCertificateRequired,
    /// A plugin denied the request with its own 4xx status and message.
    DeniedByPolicy {
        /// The plugin's status (the plugin host only lets 400–499 through).
        status: u16,
        /// The plugin's message (checked by the host: UTF-8, at most 1 KiB).
        message: String,
    },
    /// 500: a plugin failed and the chain fails closed.
    PolicyFailed,
    /// 503: a plugin ran out of time and the chain fails closed.
    PolicyTimedOut,

    // ---- Session API: tokens ----
    /// 400: a refresh needs a refresh token (body or cookie).
    RefreshTokenRequired,
    /// 400: a logout needs a refresh token or a bearer access token.
    LogoutTokenRequired,
    /// 401: not a refresh token of ours (forged, garbled, another secret's).
    InvalidRefreshToken(Seed),
    /// 401: ours, but not in the store (never stored, or cleaned up).
    UnknownRefreshToken(Seed),
    /// 401: the refresh token's session was logged out or revoked.
    RevokedRefreshToken(Seed),
    /// 401: the refresh token's session is past its lifetime.
    ExpiredRefreshToken(Seed),
    /// 401: a rotated refresh token was presented again after the grace
    /// period; the session has been revoked.
    RefreshTokenReused,
    /// 403: the refresh cookie came without the CSRF header.
    CsrfHeaderMissing {
        /// The configured CSRF header.
        header: http::HeaderName,
    },
    /// 403: the refresh cookie came from an `Origin` not allowed to use it.
    CsrfOriginRefused,

    // ---- Session API: sessions and requests ----
    /// 405 with `Allow`: a session route called with another method.
    MethodNotAllowed {
        /// The one method the route answers.
        allow: http::Method,
    },
    /// 400: a session id that is not a UUID (session routes and admin API).
    InvalidSessionId,
    /// 404: the subject has no such active session.
    SessionNotFound,
    /// 429 with `Retry-After`: too many refresh or logout attempts.
    RateLimited {
        /// Whole seconds until the next attempt may succeed (at least 1).
        retry_after_secs: u64,
    },
    /// 503: the session store cannot be reached (or was added by a reload),
    /// with `Retry-After` when the gateway knows when it next probes it.
    StoreUnavailable {
        /// Whole seconds until the breaker's next probe (at least 1); `None`
        /// when `sessions` was added by a reload and needs a restart.
        retry_after_secs: Option<u64>,
    },
    /// 500: the session store failed otherwise.
    StoreFailed,
    /// 500: the generation has no key to sign access tokens with.
    SigningKeyMissing,
    /// 500: signing an access token failed.
    SigningFailed,

    // ---- Session API: request bodies ----
    /// 413: the body is larger than `requests.max_body_size`.
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 400: reading the body failed.
    BodyUnreadable,
    /// 415: a non-empty body that is not JSON.
    UnsupportedMediaType,
    /// 400: valid JSON, but not an object.
    JsonNotObject,
    /// 400: the body does not parse as JSON.
    InvalidJson {
        /// The parser's explanation (position and cause).
        detail: String,
    },
    /// 400: a body field that must be a string is not.
    FieldNotString {
        /// The field name.
        field: String,
    },
    /// 400: a body field that must be a JSON object is not.
    FieldNotObject {
        /// The field name.
        field: String,
    },
    /// 400: the admin caller set a claim the gateway sets itself.
    ReservedClaim {
        /// The reserved claim.
        claim: String,
    },

    // ---- Admin API ----
    /// 404: the config has no `sessions` section.
    AdminApiNotConfigured,
    /// 404: `sessions.admin_token` is not set.
    AdminApiDisabled,
    /// 404: `sessions` has no `refresh_secret` (it only stores
    /// revocations), so no session can be opened here.
    SessionsStoreOnly,
    /// 401 with the admin realm's challenge: no or a wrong admin token.
    AdminUnauthorized,
    /// 405: a method the admin session API does not answer (no `Allow`,
    /// as before: the allowed set depends on the path).
    AdminMethodNotAllowed,
    /// 404: a path the admin listener does not serve.
    AdminPathUnknown,
    /// 400: `subject` missing, empty or too long.
    InvalidSubject {
        /// The longest subject accepted, in bytes.
        max: usize,
    },
    /// 404: no active session with that id.
    AdminSessionNotFound,
    /// 400: a token revocation the admin API cannot store (what is wrong).
    InvalidRevocation {
        /// What to fix, for the caller.
        detail: String,
    },
    /// 400: a back-channel logout token failed a check of the spec (the
    /// `error_description`); `error` is `invalid_request` as the spec asks.
    LogoutTokenRefused {
        /// Which check failed; never quotes the token.
        description: String,
    },

    // ---- Upstream ----
    /// 502: connecting to or exchanging with the upstream failed.
    UpstreamUnreachable,
    /// 502: the upstream closed without a response head (login routes).
    UpstreamNoAnswer,
    /// 502: the upstream's login answer exceeds what a login route reads.
    LoginAnswerTooLarge,
    /// 502: a 2xx login answer from which no session could be opened.
    LoginUnusable,
    /// 503: no target of the route's pool is healthy.
    UpstreamUnavailable,
    /// 504: the upstream did not connect, read or write in time.
    UpstreamTimeout,

    // ---- Internal ----
    /// 500: a bug or an impossible state; details go to the log only.
    Internal,
    /// A bare HTTP status pingora failed with (`ErrorType::HTTPStatus`).
    HttpStatus(u16),
}

impl GatewayError {
    /// The HTTP status of the answer.
    pub(crate) fn status(&self) -> u16 {
        use GatewayError::*;
        match self {
            HeadersTooLarge { .. } => 431,
            BadPath(_) | BadHeaders(_) | UnreadableTarget | UnreadableRequest => 400,
            BodyTimeout | HeadTimeout => 408,
            NoRoute { .. } => 404,
            AccessToken { .. } => 401,
            InsufficientClaims { .. } | ClientCertificateRequired => 403,
            DeniedByPolicy { status, .. } => *status,
            PolicyFailed => 500,
            PolicyTimedOut => 503,
            RefreshTokenRequired | LogoutTokenRequired => 400,
            InvalidRefreshToken(_)
            | UnknownRefreshToken(_)
            | RevokedRefreshToken(_)
            | ExpiredRefreshToken(_)
            | RefreshTokenReused => 401,
            CsrfHeaderMissing { .. } | CsrfOriginRefused => 403,
            MethodNotAllowed { .. } => 405,
            InvalidSessionId => 400,
            SessionNotFound => 404,
            RateLimited { .. } => 429,
            StoreUnavailable { .. } => 503,
            StoreFailed | SigningKeyMissing | SigningFailed => 500,
            BodyTooLarge { .. } => 413,
            BodyUnreadable => 400,
            UnsupportedMediaType => 415,
            JsonNotObject
            | InvalidJson { .. }
            | FieldNotString { .. }
            | FieldNotObject { .. }
            | ReservedClaim { .. } => 400,
            AdminApiNotConfigured | AdminApiDisabled | SessionsStoreOnly => 404,
            AdminUnauthorized => 401,
            AdminMethodNotAllowed => 405,
            AdminPathUnknown => 404,
            InvalidSubject { .. } => 400,
            AdminSessionNotFound => 404,
            InvalidRevocation { .. } | LogoutTokenRefused { .. } => 400,
            UpstreamUnreachable | UpstreamNoAnswer | LoginAnswerTooLarge | LoginUnusable => 502,
            UpstreamUnavailable => 503,
            UpstreamTimeout => 504,
            Internal => 500,
            HttpStatus(status) => *status,
        }
    }

    /// The JSON `error` field: a stable code clients branch on.
    pub(crate) fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            HeadersTooLarge { .. } => "headers_too_large",
            BadPath(_) => "bad_path",
            BadHeaders(_) | UnreadableTarget | UnreadableRequest => "bad_request",
            BodyTimeout | HeadTimeout => "request_timeout",
            NoRoute { .. } => "no_route",
            AccessToken { rejection, .. } => match rejection {
                Rejection::Missing => "missing_token",
                Rejection::Expired => "token_expired",
                _ => "invalid_token",
            },
            InsufficientClaims { .. } => "insufficient_claims",
            ClientCertificateRequired => "client_certificate_required",
            DeniedByPolicy { .. } => "denied_by_policy",
            PolicyFailed | PolicyTimedOut => "policy_error",
            RefreshTokenRequired | LogoutTokenRequired => "refresh_token_required",
            InvalidRefreshToken(_) | UnknownRefreshToken(_) => "invalid_refresh_token",
            RevokedRefreshToken(_) => "refresh_token_revoked",
            ExpiredRefreshToken(_) => "refresh_token_expired",
            RefreshTokenReused => "refresh_token_reused",
            CsrfHeaderMissing { .. } | CsrfOriginRefused => "csrf_failed",
            MethodNotAllowed { .. } | AdminMethodNotAllowed => "method_not_allowed",
            InvalidSessionId => "invalid_session_id",
            SessionNotFound | AdminSessionNotFound => "session_not_found",
            InvalidRevocation { .. } => "invalid_revocation",
            LogoutTokenRefused { .. } => "invalid_request",
            RateLimited { .. } => "rate_limited",
            StoreUnavailable { .. } => "session_store_unavailable",
            StoreFailed | SigningKeyMissing | SigningFailed | Internal => "internal_error",
            BodyTooLarge { .. } => "body_too_large",
            BodyUnreadable => "bad_request",
            UnsupportedMediaType => "unsupported_media_type",
            JsonNotObject | InvalidJson { .. } => "invalid_json",
            FieldNotString { .. } | FieldNotObject { .. } | ReservedClaim { .. } => "invalid_field",
            AdminApiNotConfigured | AdminApiDisabled | SessionsStoreOnly | AdminPathUnknown => {
                "not_found"
            }
            AdminUnauthorized => "unauthorized",
            InvalidSubject { .. } => "invalid_subject",
            UpstreamUnreachable | UpstreamNoAnswer | LoginAnswerTooLarge => "upstream_error",
            LoginUnusable => "login_unusable",
            UpstreamUnavailable => "upstream_unavailable",
            UpstreamTimeout => "upstream_timeout",
            HttpStatus(_) => "error",
        }
    }

    /// The JSON `message` field, in the words clients have always seen.
    pub(crate) fn message(&self) -> Cow<'static, str> {
        use GatewayError::*;
        let text: &'static str = match self {
            HeadersTooLarge { limit } => {
                return format!("Request headers exceed {limit} bytes").into()
            }
            BadPath(e) => e.message(),
            BadHeaders(e) => e.message(),
            UnreadableTarget => "The request target could not be read",
            UnreadableRequest => "The request could not be read",
            BodyTimeout => "The request body was not received in time",
            HeadTimeout => "The request head was not received in time",
            NoRoute { method, path } => return format!("No route for {method} {path}").into(),
            AccessToken { rejection, seed } => return access_token_message(rejection, *seed),
            InsufficientClaims { claim } => {
                return format!(
                    "Access denied: claim `{claim}` does not meet this route's requirement"
                )
                .into()
            }
            ClientCertificateRequired => "A verified client certificate is required for this route",
            DeniedByPolicy { message, .. } => return message.clone().into(),
            PolicyFailed | PolicyTimedOut => "The request could not be authorized by policy",
            RefreshTokenRequired => "Refresh token is required",
            LogoutTokenRequired => {
                "Refresh token is required (in the body, or an access token in Authorization)"
            }
            // Refused refresh tokens, in the words of each seed's
            // `refreshAccessToken`. Seed 000 verifies a JWT, then looks its
            // row up (logout deletes it, so a logged-out token is "not
            // found"); seed 003 words only "invalid" and "expired" (its logout
            // clears the stored token, "making it invalid").
            InvalidRefreshToken(Seed::TokenManagement) => "Invalid or expired refresh token",
            UnknownRefreshToken(Seed::TokenManagement)
            | RevokedRefreshToken(Seed::TokenManagement) => {
                "Refresh token not found. Please login again."
            }
            InvalidRefreshToken(Seed::CareFlow)
            | UnknownRefreshToken(Seed::CareFlow)
            | RevokedRefreshToken(Seed::CareFlow) => "Invalid refresh token",
            ExpiredRefreshToken(Seed::TokenManagement) => {
                "Refresh token has expired. Please login again."
            }
            ExpiredRefreshToken(Seed::CareFlow) => "Refresh token expired. Please login again",
            RefreshTokenReused => {
                "Refresh token was already used; the session has been revoked. Please login again"
            }
            CsrfHeaderMissing { header } => {
                return format!(
                    "Requests authenticated by the refresh cookie must send the `{header}` header"
                )
                .into()
            }
            CsrfOriginRefused => "This Origin may not use the refresh cookie",
            MethodNotAllowed { allow } => return format!("Use {allow} for this route").into(),
            InvalidSessionId => "Session id must be a UUID",
            SessionNotFound => "Session not found",
            RateLimited { retry_after_secs } => {
                return format!("Too many attempts; retry in {retry_after_secs} seconds").into()
            }
            StoreUnavailable { .. } => "The session store is unavailable; try again shortly",
            StoreFailed => "The session could not be processed",
            SigningKeyMissing => "No signing key is configured",
            SigningFailed => "The access token could not be signed",
            BodyTooLarge { limit } => return format!("Request body exceeds {limit} bytes").into(),
            BodyUnreadable => "The request body could not be read",
            UnsupportedMediaType => {
                "Send the request body as JSON with `Content-Type: application/json`"
            }
            JsonNotObject => "Request body must be a JSON object",
            InvalidJson { detail } => {
                return format!("Request body is not valid JSON: {detail}").into()
            }
            FieldNotString { field } => return format!("`{field}` must be a string").into(),
            FieldNotObject { field } => return format!("`{field}` must be a JSON object").into(),
            ReservedClaim { claim } => {
                return format!("claim `{claim}` is set by the gateway itself").into()
            }
            AdminApiNotConfigured => "The admin session API needs a `sessions` section",
            AdminApiDisabled => "The admin session API is disabled: set `sessions.admin_token`",
            SessionsStoreOnly => {
                "This gateway opens no sessions: `sessions` has no `refresh_secret` (it only stores revocations)"
            }
            AdminUnauthorized => "A valid admin token is required",
            AdminMethodNotAllowed => {
                "Use POST/GET/DELETE /admin/sessions, DELETE /admin/sessions/{id} or POST/GET /admin/revocations"
            }
            AdminPathUnknown => "unknown admin path",
            InvalidSubject { max } => {
                return format!("`subject` is required (1 to {max} characters)").into()
            }
            AdminSessionNotFound => "Session not found or already revoked",
            InvalidRevocation { detail } => return format!("Revocation refused: {detail}").into(),
            LogoutTokenRefused { description } => return description.clone().into(),
            UpstreamUnreachable => "The upstream could not be reached",
            UpstreamNoAnswer => "The upstream sent no answer",
            LoginAnswerTooLarge => "The login answer of the upstream is too large",
            LoginUnusable => "The login answer could not be turned into a session",
            UpstreamUnavailable => "No healthy upstream is available",
            UpstreamTimeout => "The upstream did not answer in time",
            Internal => "Internal gateway error",
            HttpStatus(_) => "Request failed",
        };
        Cow::Borrowed(text)
    }

    /// A bounded, snake_case label for metrics and logs. Where a label set
    /// already exists it is reused: an access token's is `Rejection::reason`
    /// (the `jwt_validations` label), a refused head's the
    /// `request_refusals` label, a read timeout's the client-close label.
    pub(crate) fn reason(&self) -> &'static str {
        use GatewayError::*;
        match self {
            HeadersTooLarge { .. } => "headers_too_large",
            BadPath(e) => e.reason(),
            BadHeaders(e) => e.reason(),
            UnreadableTarget => "malformed_request",
            UnreadableRequest => "bad_request",
            BodyTimeout => "body_timeout",
            HeadTimeout => "head_timeout",
            NoRoute { .. } => "no_route",
            AccessToken { rejection, .. } => rejection.reason(),
            InsufficientClaims { .. } => "insufficient_claims",
            ClientCertificateRequired => "client_certificate_required",
            DeniedByPolicy { .. } => "denied_by_policy",
            PolicyFailed => "policy_error",
            PolicyTimedOut => "policy_timeout",
            RefreshTokenRequired | LogoutTokenRequired => "refresh_token_required",
            InvalidRefreshToken(_) => "invalid_refresh_token",
            UnknownRefreshToken(_) => "unknown_refresh_token",
            RevokedRefreshToken(_) => "refresh_token_revoked",
            ExpiredRefreshToken(_) => "refresh_token_expired",
            RefreshTokenReused => "refresh_token_reused",
            CsrfHeaderMissing { .. } => "csrf_header_missing",
            CsrfOriginRefused => "csrf_origin_refused",
            MethodNotAllowed { .. } | AdminMethodNotAllowed => "method_not_allowed",
            InvalidSessionId => "invalid_session_id",
            SessionNotFound | AdminSessionNotFound => "session_not_found",
            InvalidRevocation { .. } => "invalid_revocation",
            LogoutTokenRefused { .. } => "logout_token_refused",
            RateLimited { .. } => "rate_limited",
            StoreUnavailable { .. } => "session_store_unavailable",
            StoreFailed => "session_store_error",
            SigningKeyMissing => "signing_key_missing",
            SigningFailed => "signing_failed",
            BodyTooLarge { .. } => "body_too_large",
            BodyUnreadable => "body_unreadable",
            UnsupportedMediaType => "unsupported_media_type",
            JsonNotObject | InvalidJson { .. } => "invalid_json",
            FieldNotString { .. } | FieldNotObject { .. } => "invalid_field",
            ReservedClaim { .. } => "reserved_claim",
            AdminApiNotConfigured => "admin_api_not_configured",
            AdminApiDisabled => "admin_api_disabled",
            SessionsStoreOnly => "sessions_store_only",
            AdminUnauthorized => "admin_unauthorized",
            AdminPathUnknown => "not_found",
            InvalidSubject { .. } => "invalid_subject",
            UpstreamUnreachable => "upstream_error",
            UpstreamNoAnswer => "upstream_no_answer",
            LoginAnswerTooLarge => "login_answer_too_large",
            LoginUnusable => "login_unusable",
            UpstreamUnavailable => "upstream_unavailable",
            UpstreamTimeout => "upstream_timeout",
            Internal => "internal_error",
            HttpStatus(_) => "http_status",
        }
    }

    /// The gRPC status for the same refusal. Follows the HTTP status (see
    /// [`grpc`]), except that a policy denial with an unmapped 4xx is
    /// `PERMISSION_DENIED` (a plugin's deny is a decision about access) and
    /// no route is `UNIMPLEMENTED` (what a gRPC server answers for a method
    /// it does not serve).
    pub(crate) fn grpc_status(&self) -> u8 {
        match self {
            GatewayError::DeniedByPolicy { status, .. } => {
                grpc_for_http(*status).unwrap_or(grpc::PERMISSION_DENIED)
            }
            GatewayError::NoRoute { .. } => grpc::UNIMPLEMENTED,
            other => grpc_for_http(other.status()).unwrap_or(grpc::UNKNOWN),
        }
    }

    /// Headers the answer carries besides the JSON ones: the challenge of a
    /// 401, `Retry-After` of a 429 or of a store outage's 503, `Allow` of a
    /// session route's 405.
    ///
    /// No refusal clears the refresh cookie: only successful logouts do.
    /// Refused refresh tokens carry no challenge (as before): a refresh
    /// token is a body or cookie credential, not an HTTP auth scheme.
    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            GatewayError::AccessToken { rejection, .. } => {
                let challenge = match rejection {
                    Rejection::Missing => bearer_challenge(None),
                    _ => bearer_challenge(Some(("invalid_token", &rejection.description()))),
                };
                vec![("www-authenticate", challenge)]
            }
            GatewayError::AdminUnauthorized => {
                vec![("www-authenticate", ADMIN_CHALLENGE.to_owned())]
            }
            GatewayError::RateLimited { retry_after_secs }
            | GatewayError::StoreUnavailable {
                retry_after_secs: Some(retry_after_secs),
            } => {
                vec![("retry-after", retry_after_secs.to_string())]
            }
            GatewayError::MethodNotAllowed { allow } => vec![("allow", allow.to_string())],
            _ => Vec::new(),
        }
    }

    /// Whether the connection is closed after the answer: for heads whose
    /// framing cannot be trusted, nothing more is read from the connection.
    pub(crate) fn closes_connection(&self) -> bool {
        matches!(
            self,
            GatewayError::BadPath(_) | GatewayError::BadHeaders(_) | GatewayError::UnreadableTarget
        )
    }

    /// The answer: `{"success":false,"message":…,"error":…}` with the
    /// status, the implied headers and, for untrusted heads, `Connection: close`.
    pub(crate) fn into_reply(self) -> Reply {
        let message = self.message();
        let mut reply = Reply::error(self.status(), self.code(), message.clone());
        reply.grpc = Some(GrpcStatus {
            code: self.grpc_status(),
            message: message.into_owned(),
        });
        reply.headers = self.headers();
        if self.closes_connection() {
            reply = reply.closing();
        }
        reply
    }
}

/// The message of a refused access token. Seed 003's middleware answers
/// every refused token alike; seed 000 does not show its middleware, so its
/// routes keep ours, and neither seed words a missing token.
fn access_token_message(rejection: &Rejection, seed: Option<Seed>) -> Cow<'static, str> {
    match rejection {
        Rejection::Missing => "Access token is required".into(),
        Rejection::Expired => "Invalid or expired token".into(),
        _ if seed == Some(Seed::CareFlow) => "Invalid or expired token".into(),
        _ => format!("Invalid token: {}", rejection.description()).into(),
    }
}

/// The gRPC status of an HTTP status the gateway answers with, if mapped.
fn grpc_for_http(status: u16) -> Option<u8> {
    Some(match status {
        400 | 413 | 415 | 431 => grpc::INVALID_ARGUMENT,
        401 => grpc::UNAUTHENTICATED,
        403 => grpc::PERMISSION_DENIED,
        404 => grpc::NOT_FOUND,
        405 => grpc::UNIMPLEMENTED,
        408 => grpc::DEADLINE_EXCEEDED,
        429 => grpc::RESOURCE_EXHAUSTED,
        500 => grpc::INTERNAL,
        502..=504 => grpc::UNAVAILABLE,
        _ => return None,
    })
}

// By hand rather than `#[error("…")]` on each variant: the client message is
// the one source of the text, and some texts depend on more than the fields
// (the seed family).
impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl From<Rejection> for GatewayError {
    /// A refused access token, in the gateway's own words.
    fn from(rejection: Rejection) -> GatewayError {
        GatewayError::AccessToken {
            rejection,
            seed: None,
        }
    }
}

impl From<GatewayError> for Reply {
    fn from(error: GatewayError) -> Reply {
        error.into_reply()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use GatewayError::*;
    use Seed::{CareFlow, TokenManagement};

    /// One of every variant (and every seed wording) with what it answers.
    fn table() -> Vec<(GatewayError, u16, &'static str, &'static str, u8)> {
        let expired = AccessToken {
            rejection: Rejection::Expired,
            seed: None,
        };
        vec![
            // Request reading
            (
                HeadersTooLarge { limit: 8192 },
                431,
                "headers_too_large",
                "headers_too_large",
                3,
            ),
            (
                BadPath(PathError::DotSegment),
                400,
                "bad_path",
                "dot_segment",
                3,
            ),
            (
                BadHeaders(HeaderError::DuplicateHost),
                400,
                "bad_request",
                "duplicate_host",
                3,
            ),
            (UnreadableTarget, 400, "bad_request", "malformed_request", 3),
            (UnreadableRequest, 400, "bad_request", "bad_request", 3),
            (BodyTimeout, 408, "request_timeout", "body_timeout", 4),
            (HeadTimeout, 408, "request_timeout", "head_timeout", 4),
            // Routing
            (
                NoRoute {
                    method: http::Method::GET,
                    path: "/x".into(),
                },
                404,
                "no_route",
                "no_route",
                12,
            ),
            // Authentication
            (
                Rejection::Missing.into(),
                401,
                "missing_token",
                "missing",
                16,
            ),
            (expired, 401, "token_expired", "expired", 16),
            (
                AccessToken {
                    rejection: Rejection::BadSignature,
                    seed: Some(CareFlow),
                },
                401,
                "invalid_token",
                "bad_signature",
                16,
            ),
            // Authorization and policy
            (
                InsufficientClaims {
                    claim: "role == admin".into(),
                },
                403,
                "insufficient_claims",
                "insufficient_claims",
                7,
            ),
            (
                DeniedByPolicy {
                    status: 403,
                    message: "no".into(),
                },
                403,
                "denied_by_policy",
                "denied_by_policy",
                7,
            ),
            (
                DeniedByPolicy {
                    status: 451,
                    message: "no".into(),
                },
                451,
                "denied_by_policy",
                "denied_by_policy",
                7,
            ),
            (
                DeniedByPolicy {
                    status: 429,
                    message: "slow down".into(),
                },
                429,
                "denied_by_policy",
                "denied_by_policy",
                8,
            ),
            (PolicyFailed, 500, "policy_error", "policy_error", 13),
            (PolicyTimedOut, 503, "policy_error", "policy_timeout", 14),
            // Session API: tokens
            (
                RefreshTokenRequired,
                400,
                "refresh_token_required",
                "refresh_token_required",
                3,
            ),
            (
                LogoutTokenRequired,
                400,
                "refresh_token_required",
                "refresh_token_required",
                3,
            ),
            (
                InvalidRefreshToken(TokenManagement),
                401,
                "invalid_refresh_token",
                "invalid_refresh_token",
                16,
            ),
            (
                UnknownRefreshToken(CareFlow),
                401,
                "invalid_refresh_token",
                "unknown_refresh_token",
                16,
            ),
            (
                RevokedRefreshToken(TokenManagement),
                401,
                "refresh_token_revoked",
                "refresh_token_revoked",
                16,
            ),
            (
                ExpiredRefreshToken(CareFlow),
                401,
                "refresh_token_expired",
                "refresh_token_expired",
                16,
            ),
            (
                RefreshTokenReused,
                401,
                "refresh_token_reused",
                "refresh_token_reused",
                16,
            ),
            (
                CsrfHeaderMissing {
                    header: http::HeaderName::from_static("x-csrf"),
                },
                403,
                "csrf_failed",
                "csrf_header_missing",
                7,
            ),
            (
                CsrfOriginRefused,
                403,
                "csrf_failed",
                "csrf_origin_refused",
                7,
            ),
            // Session API: sessions and requests
            (
                MethodNotAllowed {
                    allow: http::Method::POST,
                },
                405,
                "method_not_allowed",
                "method_not_allowed",
                12,
            ),
            (
                InvalidSessionId,
                400,
                "invalid_session_id",
                "invalid_session_id",
                3,
            ),
            (
                SessionNotFound,
                404,
                "session_not_found",
                "session_not_found",
                5,
            ),
            (
                RateLimited {
                    retry_after_secs: 7,
                },
                429,
                "rate_limited",
                "rate_limited",
                8,
            ),
            (
                StoreUnavailable {
                    retry_after_secs: Some(1),
                },
                503,
                "session_store_unavailable",
                "session_store_unavailable",
                14,
            ),
            (
                StoreFailed,
                500,
                "internal_error",
                "session_store_error",
                13,
            ),
            (
                SigningKeyMissing,
                500,
                "internal_error",
                "signing_key_missing",
                13,
            ),
            (SigningFailed, 500, "internal_error", "signing_failed", 13),
            // Session API: request bodies
            (
                BodyTooLarge { limit: 10 },
                413,
                "body_too_large",
                "body_too_large",
                3,
            ),
            (BodyUnreadable, 400, "bad_request", "body_unreadable", 3),
            (
                UnsupportedMediaType,
                415,
                "unsupported_media_type",
                "unsupported_media_type",
                3,
            ),
            (JsonNotObject, 400, "invalid_json", "invalid_json", 3),
            (
                InvalidJson {
                    detail: "EOF".into(),
                },
                400,
                "invalid_json",
                "invalid_json",
                3,
            ),
            (
                FieldNotString {
                    field: "subject".into(),
                },
                400,
                "invalid_field",
                "invalid_field",
                3,
            ),
            (
                FieldNotObject {
                    field: "claims".into(),
                },
                400,
                "invalid_field",
                "invalid_field",
                3,
            ),
            (
                ReservedClaim {
                    claim: "sid".into(),
                },
                400,
                "invalid_field",
                "reserved_claim",
                3,
            ),
            // Admin API
            (
                AdminApiNotConfigured,
                404,
                "not_found",
                "admin_api_not_configured",
                5,
            ),
            (AdminApiDisabled, 404, "not_found", "admin_api_disabled", 5),
            (
                SessionsStoreOnly,
                404,
                "not_found",
                "sessions_store_only",
                5,
            ),
            (
                AdminUnauthorized,
                401,
                "unauthorized",
                "admin_unauthorized",
                16,
            ),
            (
                AdminMethodNotAllowed,
                405,
                "method_not_allowed",
                "method_not_allowed",
                12,
            ),
            (AdminPathUnknown, 404, "not_found", "not_found", 5),
            (
                InvalidSubject { max: 256 },
                400,
                "invalid_subject",
                "invalid_subject",
                3,
            ),
            (
                AdminSessionNotFound,
                404,
                "session_not_found",
                "session_not_found",
                5,
            ),
            (
                InvalidRevocation {
                    detail: "name exactly one of jti, sub, sid".into(),
                },
                400,
                "invalid_revocation",
                "invalid_revocation",
                3,
            ),
            (
                LogoutTokenRefused {
                    description: "logout token lacks `jti`".into(),
                },
                400,
                "invalid_request",
                "logout_token_refused",
                3,
            ),
            // Upstream
            (
                UpstreamUnreachable,
                502,
                "upstream_error",
                "upstream_error",
                14,
            ),
            (
                UpstreamNoAnswer,
                502,
                "upstream_error",
                "upstream_no_answer",
                14,
            ),
            (
                LoginAnswerTooLarge,
                502,
                "upstream_error",
                "login_answer_too_large",
                14,
            ),
            (LoginUnusable, 502, "login_unusable", "login_unusable", 14),
            (
                UpstreamUnavailable,
                503,
                "upstream_unavailable",
                "upstream_unavailable",
                14,
            ),
            (
                UpstreamTimeout,
                504,
                "upstream_timeout",
                "upstream_timeout",
                14,
            ),
            // Internal
            (Internal, 500, "internal_error", "internal_error", 13),
            (HttpStatus(502), 502, "error", "http_status", 14),
            (HttpStatus(418), 418, "error", "http_status", 2),
            (
                ClientCertificateRequired,
                403,
                "client_certificate_required",
                "client_certificate_required",
                7,
            ),
        ]
    }

    /// Fails to compile when a variant is added without a row in [`table`].
    fn variant_index(e: &GatewayError) -> usize {
        match e {
            HeadersTooLarge { .. } => 0,
            BadPath(_) => 1,
            BadHeaders(_) => 2,
            UnreadableTarget => 3,
            UnreadableRequest => 4,
            BodyTimeout => 5,
            HeadTimeout => 6,
            NoRoute { .. } => 7,
            AccessToken { .. } => 8,
            InsufficientClaims { .. } => 9,
            DeniedByPolicy { .. } => 10,
            PolicyFailed => 11,
            PolicyTimedOut => 12,
            RefreshTokenRequired => 13,
            LogoutTokenRequired => 14,
            InvalidRefreshToken(_) => 15,
            UnknownRefreshToken(_) => 16,
            RevokedRefreshToken(_) => 17,
            ExpiredRefreshToken(_) => 18,
            RefreshTokenReused => 19,
            CsrfHeaderMissing { .. } => 20,
            CsrfOriginRefused => 21,
            MethodNotAllowed { .. } => 22,
            InvalidSessionId => 23,
            SessionNotFound => 24,
            RateLimited { .. } => 25,
            StoreUnavailable { .. } => 26,
            StoreFailed => 27,
            SigningKeyMissing => 28,
            SigningFailed => 29,
            BodyTooLarge { .. } => 30,
            BodyUnreadable => 31,
            UnsupportedMediaType => 32,
            JsonNotObject => 33,
            InvalidJson { .. } => 34,
            FieldNotString { .. } => 35,
            FieldNotObject { .. } => 36,
            ReservedClaim { .. } => 37,
            AdminApiNotConfigured => 38,
            AdminApiDisabled => 39,
            AdminUnauthorized => 40,
            AdminMethodNotAllowed => 41,
            AdminPathUnknown => 42,
            InvalidSubject { .. } => 43,
            AdminSessionNotFound => 44,
            UpstreamUnreachable => 45,
            UpstreamNoAnswer => 46,
            LoginAnswerTooLarge => 47,
            LoginUnusable => 48,
            UpstreamUnavailable => 49,
            UpstreamTimeout => 50,
            Internal => 51,
            HttpStatus(_) => 52,
            ClientCertificateRequired => 53,
            InvalidRevocation { .. } => 54,
            LogoutTokenRefused { .. } => 55,
            SessionsStoreOnly => 56,
        }
    }

    #[test]
    fn every_variant_has_its_status_code_reason_and_grpc_status() {
        let table = table();
        let mut seen = [false; 57];
        for (error, status, code, reason, grpc) in &table {
            seen[variant_index(error)] = true;
            let got = (
                error.status(),
                error.code(),
                error.reason(),
                error.grpc_status(),
            );
            assert_eq!(got, (*status, *code, *reason, *grpc), "{error:?}");
            let reply = error.clone().into_reply();
            assert_eq!(reply.status, *status, "{error:?}");
            assert_eq!(reply.body["error"], *code, "{error:?}");
            assert_eq!(reply.body["message"], error.to_string(), "{error:?}");
        }
        let missing: Vec<usize> = (0..seen.len()).filter(|&i| !seen[i]).collect();
        assert!(missing.is_empty(), "variants without a row: {missing:?}");
    }

    #[test]
    fn reasons_are_bounded_snake_case_labels() {
        for (error, ..) in table() {
            let reason = error.reason();
            assert!(
                !reason.is_empty() && reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{error:?}: {reason}"
            );
        }
    }

    #[test]
    fn the_body_is_the_shape_both_seed_clients_read() {
        let reply = GatewayError::StoreUnavailable {
            retry_after_secs: None,
        }
        .into_reply();
        assert_eq!(
            reply.body,
            json!({
                "success": false,
                "message": "The session store is unavailable; try again shortly",
                "error": "session_store_unavailable",
            })
        );
        assert!(reply.headers.is_empty());
        assert!(!reply.close);
    }

    #[test]
    fn refused_access_tokens_carry_the_rfc_6750_challenge() {
        let missing = GatewayError::from(Rejection::Missing).into_reply();
        assert_eq!(missing.body["message"], "Access token is required");
        assert_eq!(
            missing.headers,
            vec![(
                "www-authenticate",
                r#"Bearer realm="portcullis""#.to_owned()
            )]
        );
        let bad = GatewayError::from(Rejection::BadSignature).into_reply();
        assert_eq!(
            bad.body["message"],
            "Invalid token: token signature is invalid"
        );
        assert_eq!(
            bad.headers,
            vec![(
                "www-authenticate",
                r#"Bearer realm="portcullis", error="invalid_token", error_description="token signature is invalid""#
                    .to_owned()
            )]
        );
        let admin = GatewayError::AdminUnauthorized.into_reply();
        assert_eq!(
            admin.headers,
            vec![(
                "www-authenticate",
                r#"Bearer realm="portcullis-admin""#.to_owned()
            )]
        );
    }

    #[test]
    fn rate_limits_say_when_to_retry_and_405s_what_is_allowed() {
        let limited = GatewayError::RateLimited {
            retry_after_secs: 12,
        }
        .into_reply();
        assert_eq!(
            limited.body["message"],
            "Too many attempts; retry in 12 seconds"
        );
        assert_eq!(limited.headers, vec![("retry-after", "12".to_owned())]);
        let wrong_method = GatewayError::MethodNotAllowed {
            allow: http::Method::DELETE,
        }
        .into_reply();
        assert_eq!(wrong_method.body["message"], "Use DELETE for this route");
        assert_eq!(wrong_method.headers, vec![("allow", "DELETE".to_owned())]);
    }

    #[test]
    fn store_outages_say_when_to_retry_when_the_gateway_knows() {
        let outage = GatewayError::StoreUnavailable {
            retry_after_secs: Some(2),
        }
        .into_reply();
        assert_eq!(outage.status, 503);
        assert_eq!(outage.body["error"], "session_store_unavailable");
        assert_eq!(outage.headers, vec![("retry-after", "2".to_owned())]);
        let needs_restart = GatewayError::StoreUnavailable {
            retry_after_secs: None,
        }
        .into_reply();
        assert_eq!(needs_restart.body, outage.body, "one shape for both");
        assert!(needs_restart.headers.is_empty());
    }

    #[test]
    fn seed_families_keep_their_own_words() {
        let text = |e: GatewayError| e.message().into_owned();
        assert_eq!(
            text(InvalidRefreshToken(TokenManagement)),
            "Invalid or expired refresh token"
        );
        assert_eq!(text(InvalidRefreshToken(CareFlow)), "Invalid refresh token");
        assert_eq!(
            text(UnknownRefreshToken(TokenManagement)),
            "Refresh token not found. Please login again."
        );
        assert_eq!(text(UnknownRefreshToken(CareFlow)), "Invalid refresh token");
        assert_eq!(
            text(RevokedRefreshToken(TokenManagement)),
            "Refresh token not found. Please login again."
        );
        assert_eq!(text(RevokedRefreshToken(CareFlow)), "Invalid refresh token");
        assert_eq!(
            text(ExpiredRefreshToken(TokenManagement)),
            "Refresh token has expired. Please login again."
        );
        assert_eq!(
            text(ExpiredRefreshToken(CareFlow)),
            "Refresh token expired. Please login again"
        );
        let token = |rejection, seed| text(AccessToken { rejection, seed });
        assert_eq!(
            token(Rejection::Revoked, Some(CareFlow)),
            "Invalid or expired token"
        );
        assert_eq!(
            token(Rejection::Revoked, Some(TokenManagement)),
            "Invalid token: session has been revoked"
        );
        assert_eq!(
            token(Rejection::Missing, Some(CareFlow)),
            "Access token is required"
        );
    }

    #[test]
    fn every_refusal_carries_its_grpc_status_and_message() {
        for (error, _, _, _, grpc) in table() {
            let reply = error.clone().into_reply();
            assert_eq!(
                reply.grpc,
                Some(GrpcStatus {
                    code: grpc,
                    message: error.to_string()
                }),
                "{error:?}"
            );
        }
        assert_eq!(
            AccessToken {
                rejection: Rejection::Missing,
                seed: None
            }
            .grpc_status(),
            grpc::UNAUTHENTICATED
        );
        assert_eq!(UpstreamUnreachable.grpc_status(), grpc::UNAVAILABLE);
    }

    #[test]
    fn refused_heads_close_the_connection() {
        assert!(BadPath(PathError::DotSegment).into_reply().close);
        assert!(BadHeaders(HeaderError::BareLineFeed).into_reply().close);
        assert!(UnreadableTarget.into_reply().close);
        assert!(!HeadersTooLarge { limit: 1 }.into_reply().close);
        assert!(!UnreadableRequest.into_reply().close);
    }
}
