//! The compiled `sessions` section and the routes' `login` blocks: what the
//! session handlers read on every call, built once per config generation.

use std::time::Duration;

use http::header::HeaderName;

use super::ratelimit::RateLimiter;
use super::refresh_token::RefreshTokens;
use super::store::PoolSettings;

/// Everything the `/api/auth` handlers need from the config.
pub struct SessionSettings {
    /// `sqlite:/abs/path` or `postgres://…` (may hold a password: never log it raw).
    pub store_url: String,
    /// Apply migrations at start.
    pub migrate: bool,
    /// Path the session routes live under, without a trailing slash.
    pub base_path: String,
    pub access_ttl: Duration,
    /// Absolute lifetime of a session and of its refresh tokens.
    pub refresh_ttl: Duration,
    pub rotation: bool,
    pub reuse_grace: Duration,
    pub refresh_tokens: RefreshTokens,
    /// Refresh and logout attempts per client IP.
    pub per_ip: RateLimiter,
    /// Refresh attempts per presented refresh token.
    pub per_token: RateLimiter,
    pub cookie: Option<CookieSettings>,
    /// SHA-256 of the admin API token; `None` disables the admin session API.
    pub admin_token_hash: Option<[u8; 32]>,
    pub cleanup_interval: Duration,
    pub revocation_poll_interval: Duration,
    pub pool: PoolSettings,
    /// `iss` and `aud` of minted access tokens (the first configured values).
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Clock skew the verifier allows; revoked ids are kept this much longer.
    pub leeway: Duration,
}

/// Cookie mode for the refresh token.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub name: String,
    pub secure: bool,
    /// Header a cookie-authenticated call must carry (CSRF defence).
    pub csrf_header: HeaderName,
    /// Origins allowed to make cookie-authenticated calls; empty: any request
    /// without an `Origin` header, and none with one.
    pub allowed_origins: Vec<String>,
}

/// A session route, parsed from the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /refresh` and `POST /refresh-token`.
    Refresh,
    Logout,
    LogoutAll,
    /// `GET /sessions`.
    Sessions,
    /// `DELETE /sessions/{id}` (the id as sent, validated by the handler).
    Session(String),
}

impl Endpoint {
    /// The one method the endpoint answers.
    pub fn method(&self) -> http::Method {
        match self {
            Endpoint::Sessions => http::Method::GET,
            Endpoint::Session(_) => http::Method::DELETE,
            _ => http::Method::POST,
        }
    }
}

impl SessionSettings {
    /// The session route `path` names, if any; other paths under the base
    /// path (login, register, …) go through the router as usual.
    pub fn endpoint(&self, path: &str) -> Option<Endpoint> {
        let rest = path.strip_prefix(self.base_path.as_str())?;
        match rest {
            "/refresh" | "/refresh-token" => Some(Endpoint::Refresh),
            "/logout" => Some(Endpoint::Logout),
            "/logout-all" => Some(Endpoint::LogoutAll),
            "/sessions" => Some(Endpoint::Sessions),
            _ => {
                let id = rest.strip_prefix("/sessions/")?;
                (!id.is_empty() && !id.contains('/')).then(|| Endpoint::Session(id.to_owned()))
            }
        }
    }

    /// How long a revoked session id must stay in the in-memory set: until
    /// the last access token minted for it has expired.
    pub fn revoked_retention(&self) -> Duration {
        self.access_ttl + self.leeway + Duration::from_secs(1)
    }
}

/// A route's `login` block, compiled: JSON pointers into the backend's
/// answer and the client's request body.
#[derive(Debug, Clone)]
pub struct LoginCapture {
    pub subject: String,
    /// (claim name, pointer) in config order.
    pub claims: Vec<(String, String)>,
    pub device_info: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(base: &str) -> SessionSettings {
        SessionSettings {
            store_url: "sqlite::memory:".into(),
            migrate: true,
            base_path: base.into(),
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(7 * 86400),
            rotation: true,
            reuse_grace: Duration::from_secs(10),
            refresh_tokens: RefreshTokens::new(b"x".to_vec()),
            per_ip: RateLimiter::new(0, Duration::from_secs(60)),
            per_token: RateLimiter::new(0, Duration::from_secs(60)),
            cookie: None,
            admin_token_hash: None,
            cleanup_interval: Duration::from_secs(600),
            revocation_poll_interval: Duration::from_secs(10),
            pool: PoolSettings::default(),
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
        }
    }

    #[test]
    fn session_routes_are_recognised_under_the_base_path_only() {
        let s = settings("/api/auth");
        assert_eq!(s.endpoint("/api/auth/refresh"), Some(Endpoint::Refresh));
        assert_eq!(
            s.endpoint("/api/auth/refresh-token"),
            Some(Endpoint::Refresh)
        );
        assert_eq!(s.endpoint("/api/auth/logout"), Some(Endpoint::Logout));
        assert_eq!(
            s.endpoint("/api/auth/logout-all"),
            Some(Endpoint::LogoutAll)
        );
        assert_eq!(s.endpoint("/api/auth/sessions"), Some(Endpoint::Sessions));
        assert_eq!(
            s.endpoint("/api/auth/sessions/abc"),
            Some(Endpoint::Session("abc".into()))
        );
        assert_eq!(s.endpoint("/api/auth/sessions/"), None);
        assert_eq!(s.endpoint("/api/auth/sessions/a/b"), None);
        assert_eq!(s.endpoint("/api/auth/login"), None);
        assert_eq!(s.endpoint("/api/authx/refresh"), None);
        assert_eq!(s.endpoint("/other/refresh"), None);
        let s = settings("/auth");
        assert_eq!(s.endpoint("/auth/refresh"), Some(Endpoint::Refresh));
    }
}
