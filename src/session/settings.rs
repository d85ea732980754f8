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
    /// Lifetime of the access tokens the gateway mints
    /// (`sessions.access_token_ttl`).
    pub access_ttl: Duration,
    /// Absolute lifetime of a session and of its refresh tokens.
    pub refresh_ttl: Duration,
    /// A new refresh token on every refresh (`sessions.rotation`).
    pub rotation: bool,
    /// How long a rotated refresh token still works (`sessions.reuse_grace`);
    /// presented later, it revokes the session as reused.
    pub reuse_grace: Duration,
    /// Mints and checks refresh tokens under `sessions.refresh_secret`;
    /// `None` (no `refresh_secret`): the section is only the store of
    /// revocations, so no session is opened here and of the session routes
    /// only back-channel logout is served.
    pub refresh_tokens: Option<RefreshTokens>,
    /// Refresh and logout attempts per client IP.
    pub per_ip: RateLimiter,
    /// Refresh attempts per presented refresh token.
    pub per_token: RateLimiter,
    /// `sessions.cookie`; `None`: refresh tokens travel only in JSON bodies.
    pub cookie: Option<CookieSettings>,
    /// SHA-256 of the admin API token; `None` disables the admin session API.
    pub admin_token_hash: Option<[u8; 32]>,
    /// How often expired and long-revoked rows are deleted
    /// (`sessions.cleanup_interval`, at least 1 s).
    pub cleanup_interval: Duration,
    /// How often the store is polled for revocations made by other nodes
    /// (`sessions.revocation_poll_interval`, at least 100 ms).
    pub revocation_poll_interval: Duration,
    /// How often the store is probed while session requests fail fast
    /// because it was found unavailable (`sessions.store_probe_interval`,
    /// at least 100 ms); also the `Retry-After` of those 503s, rounded up.
    pub store_probe_interval: Duration,
    /// The session store's connection pool (`sessions.pool`).
    pub pool: PoolSettings,
    /// `iss` and `aud` of minted access tokens (the first configured values).
    pub issuer: Option<String>,
    /// `aud` of minted access tokens; `None` leaves the claim out.
    pub audience: Option<String>,
    /// Clock skew the verifier allows; revoked ids are kept this much longer.
    pub leeway: Duration,
}

/// Cookie mode for the refresh token.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    /// Name of the refresh-token cookie (`sessions.cookie.name`).
    pub name: String,
    /// Mark the cookie `Secure` (`sessions.cookie.secure`); false only for
    /// plain-http development.
    pub secure: bool,
    /// Header a cookie-authenticated call must carry (CSRF defence).
    pub csrf_header: HeaderName,
    /// Origins allowed to make cookie-authenticated calls; empty: any request
    /// without an `Origin` header, and none with one.
    pub allowed_origins: Vec<String>,
}

pub(crate) use crate::error::Seed;

/// A session route, parsed from the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /refresh` (seed 000) and `POST /refresh-token` (seed 003): one
    /// exchange, answered in the words of the seed whose path was called.
    Refresh(Seed),
    /// `POST /logout`: ends the session of the refresh token (or bearer
    /// token) presented.
    Logout,
    /// `POST /logout-all`: ends every session of the bearer token's subject.
    LogoutAll,
    /// `GET /sessions`.
    Sessions,
    /// `DELETE /sessions/{id}` (the id as sent, validated by the handler).
    Session(String),
    /// `POST /backchannel-logout`: OpenID Connect Back-Channel Logout.
    BackchannelLogout,
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
    /// path (login, register, …) go through the router as usual. Without
    /// `refresh_secret` only back-channel logout is one: the gateway owns no
    /// sessions then, and the other paths are routed like any path.
    ///
    /// One trailing slash names the same route (`/sessions/` is `/sessions`,
    /// `/sessions/{id}/` is `/sessions/{id}`): clients and frameworks that
    /// append one must not fall through to a proxied route, which would
    /// forward a refresh token or a bearer token to a backend.
    pub fn endpoint(&self, path: &str) -> Option<Endpoint> {
        let rest = path.strip_prefix(self.base_path.as_str())?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let endpoint = match rest {
            "/refresh" => Some(Endpoint::Refresh(Seed::TokenManagement)),
            "/refresh-token" => Some(Endpoint::Refresh(Seed::CareFlow)),
            "/logout" => Some(Endpoint::Logout),
            "/logout-all" => Some(Endpoint::LogoutAll),
            "/sessions" => Some(Endpoint::Sessions),
            "/backchannel-logout" => Some(Endpoint::BackchannelLogout),
            _ => {
                let id = rest.strip_prefix("/sessions/")?;
                (!id.is_empty() && !id.contains('/')).then(|| Endpoint::Session(id.to_owned()))
            }
        }?;
        let served = self.refresh_tokens.is_some() || endpoint == Endpoint::BackchannelLogout;
        served.then_some(endpoint)
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
    /// JSON pointer to the session subject in the backend's 2xx answer
    /// (`login.subject`).
    pub subject: String,
    /// (claim name, pointer) in config order.
    pub claims: Vec<(String, String)>,
    /// JSON pointer into the request body for the device description
    /// (`login.device_info`); `None` uses the User-Agent.
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
            refresh_tokens: Some(RefreshTokens::new(b"x".to_vec())),
            per_ip: RateLimiter::new(0, Duration::from_secs(60)),
            per_token: RateLimiter::new(0, Duration::from_secs(60)),
            cookie: None,
            admin_token_hash: None,
            cleanup_interval: Duration::from_secs(600),
            revocation_poll_interval: Duration::from_secs(10),
            store_probe_interval: Duration::from_secs(1),
            pool: PoolSettings::sqlite(),
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
        }
    }

    #[test]
    fn session_routes_are_recognised_under_the_base_path_only() {
        let s = settings("/api/auth");
        assert_eq!(
            s.endpoint("/api/auth/refresh"),
            Some(Endpoint::Refresh(Seed::TokenManagement))
        );
        assert_eq!(
            s.endpoint("/api/auth/refresh-token"),
            Some(Endpoint::Refresh(Seed::CareFlow))
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
        assert_eq!(s.endpoint("/api/auth/sessions/a/b"), None);
        assert_eq!(s.endpoint("/api/auth/login"), None);
        assert_eq!(s.endpoint("/api/authx/refresh"), None);
        assert_eq!(s.endpoint("/other/refresh"), None);
        let s = settings("/auth");
        assert_eq!(
            s.endpoint("/auth/refresh"),
            Some(Endpoint::Refresh(Seed::TokenManagement))
        );
    }

    #[test]
    fn one_trailing_slash_names_the_same_session_route() {
        let s = settings("/api/auth");
        assert_eq!(
            s.endpoint("/api/auth/refresh/"),
            Some(Endpoint::Refresh(Seed::TokenManagement))
        );
        assert_eq!(
            s.endpoint("/api/auth/refresh-token/"),
            Some(Endpoint::Refresh(Seed::CareFlow))
        );
        assert_eq!(s.endpoint("/api/auth/logout/"), Some(Endpoint::Logout));
        assert_eq!(
            s.endpoint("/api/auth/logout-all/"),
            Some(Endpoint::LogoutAll)
        );
        assert_eq!(s.endpoint("/api/auth/sessions/"), Some(Endpoint::Sessions));
        assert_eq!(
            s.endpoint("/api/auth/sessions/abc/"),
            Some(Endpoint::Session("abc".into()))
        );
        let s = settings("/auth");
        assert_eq!(s.endpoint("/auth/logout/"), Some(Endpoint::Logout));
    }

    #[test]
    fn delete_without_a_session_id_is_answered_by_the_gateway_not_proxied() {
        // `DELETE /sessions/` lands on the list route, whose handler answers
        // 405 (Allow: GET) instead of the router sending it to a backend.
        let s = settings("/api/auth");
        let endpoint = s.endpoint("/api/auth/sessions/");
        assert_eq!(endpoint, Some(Endpoint::Sessions));
        assert_ne!(
            endpoint.map(|e| e.method()),
            Some(http::Method::DELETE),
            "an empty id never reaches the delete handler"
        );
    }

    #[test]
    fn without_a_refresh_secret_only_back_channel_logout_is_a_session_route() {
        let s = SessionSettings {
            refresh_tokens: None,
            ..settings("/api/auth")
        };
        for path in [
            "/api/auth/refresh",
            "/api/auth/refresh-token",
            "/api/auth/logout",
            "/api/auth/logout-all",
            "/api/auth/sessions",
            "/api/auth/sessions/abc",
            "/api/auth/sessions/",
        ] {
            assert_eq!(s.endpoint(path), None, "{path}");
        }
        assert_eq!(
            s.endpoint("/api/auth/backchannel-logout"),
            Some(Endpoint::BackchannelLogout)
        );
        assert_eq!(
            s.endpoint("/api/auth/backchannel-logout/"),
            Some(Endpoint::BackchannelLogout)
        );
    }

    #[test]
    fn only_one_trailing_slash_and_only_session_routes_are_recognised() {
        let s = settings("/api/auth");
        for path in [
            "/api/auth/refresh//",
            "/api/auth/sessions//",
            "/api/auth/sessions/abc//",
            "/api/auth/sessions/a/b/",
            "/api/auth/",
            "/api/auth//",
            "/api/auth/login",
            "/api/auth/login/",
            "/api/auth/register/",
            "/api/authx/refresh/",
        ] {
            assert_eq!(s.endpoint(path), None, "{path}");
        }
    }

    /// The pool the config compiles to for `store`, with `pool` (YAML lines
    /// inside `sessions:`, or empty).
    fn compiled_pool(store: &str, pool: &str) -> PoolSettings {
        let yaml = format!(
            "listeners:\n  proxy: \"127.0.0.1:8080\"
jwt:
  keys:
    - kid: hs
      algorithms: [HS256]
      secret: \"access-secret-0123456789-0123456789-abcdef\"
      sign: true
upstreams:
  main:
    targets: [\"127.0.0.1:3000\"]
routes:
  - name: api
    match: {{ path_prefix: / }}
    upstream: main
sessions:
  store: \"{store}\"
  refresh_secret: \"refresh-secret-0123456789-0123456789-abcdef\"
{pool}"
        );
        let path = std::path::Path::new("/etc/portcullis/portcullis.yaml");
        let generation =
            crate::config::load_str(path, &yaml, |_| None).unwrap_or_else(|e| panic!("{e}"));
        generation.sessions.expect("a sessions section").pool
    }

    #[test]
    fn the_pool_defaults_to_one_connection_for_sqlite_and_eight_for_postgres() {
        assert_eq!(compiled_pool("sqlite:sessions.db", "").max_connections, 1);
        assert_eq!(
            compiled_pool("sqlite:/var/lib/portcullis/sessions.db", "").max_connections,
            1
        );
        for store in [
            "postgres://portcullis@db/portcullis",
            "postgresql://portcullis@db/portcullis",
        ] {
            assert_eq!(compiled_pool(store, "").max_connections, 8, "{store}");
        }
        // Only the size depends on the engine.
        assert_eq!(
            compiled_pool("sqlite:sessions.db", "").acquire_timeout,
            Duration::from_secs(3)
        );
    }

    #[test]
    fn an_explicit_pool_size_wins_over_the_engine_default() {
        let pool = "  pool: { max_connections: 4, acquire_timeout: 1s }\n";
        let sqlite = compiled_pool("sqlite:sessions.db", pool);
        assert_eq!(sqlite.max_connections, 4);
        assert_eq!(sqlite.acquire_timeout, Duration::from_secs(1));
        let pool = "  pool: { max_connections: 2 }\n";
        assert_eq!(
            compiled_pool("postgres://portcullis@db/portcullis", pool).max_connections,
            2
        );
    }
}
