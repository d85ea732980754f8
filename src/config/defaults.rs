//! Every default of the YAML configuration, in one place. The compile step
//! reads these; [`DOCUMENTED`] lists each key with its default as the
//! configuration reference (docs/configuration.md) writes it, and a test
//! checks the two agree.

use std::time::Duration;

/// `listeners.admin`.
pub const ADMIN_LISTENER: &str = "127.0.0.1:9090";
/// `listeners.grace_period`.
pub const GRACE_PERIOD: Duration = Duration::from_secs(5);
/// `listeners.drain_window`.
pub const DRAIN_WINDOW: Duration = Duration::from_secs(5);
/// `listeners.upgrade_socket`, with the admin listener's port in the name so
/// two gateways on one host do not meet on one socket.
pub fn upgrade_socket(admin_port: u16) -> std::path::PathBuf {
    format!("/tmp/portcullis-upgrade-{admin_port}.sock").into()
}

/// `listeners.tls.client_auth.mode`.
pub const CLIENT_AUTH_MODE: &str = "required";
/// `routes[].require_client_cert`.
pub const REQUIRE_CLIENT_CERT: bool = false;

/// `log.level`.
pub const LOG_LEVEL: &str = "info";
/// `log.access`.
pub const LOG_ACCESS: bool = true;
/// `log.spans`.
pub const LOG_SPANS: bool = false;

/// `jwt.leeway`: clock skew tolerated on `exp` and `nbf`.
pub const JWT_LEEWAY: Duration = Duration::from_secs(30);
/// `jwt.max_token_size`.
pub const JWT_MAX_TOKEN_SIZE: usize = 8 * 1024;
/// `jwt.cache_entries`.
pub const JWT_CACHE_ENTRIES: usize = 100_000;
/// `jwt.issuers[].min_refresh`.
pub const ISSUER_MIN_REFRESH: Duration = Duration::from_secs(60);
/// `jwt.issuers[].max_refresh`.
pub const ISSUER_MAX_REFRESH: Duration = Duration::from_secs(3600);
/// `jwt.issuers[].cooldown`.
pub const ISSUER_COOLDOWN: Duration = Duration::from_secs(10);
/// `jwt.issuers[].max_stale`.
pub const ISSUER_MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// `jwt.issuers[].max_token_lifetime`.
pub const ISSUER_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// `jwt.issuers[].fetch_timeout`.
pub const ISSUER_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// `jwt.issuers[].max_response_size`.
pub const ISSUER_MAX_RESPONSE: usize = 512 * 1024;

/// `headers.request_id`.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// `limits.max_body_size`.
pub const MAX_BODY_SIZE: usize = 64 * 1024;
/// `limits.max_header_size`.
pub const MAX_HEADER_SIZE: usize = 32 * 1024;
/// `limits.header_read_timeout`.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// `limits.body_read_timeout`.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// `limits.keepalive_timeout`.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// `limits.max_connections`.
pub const MAX_CONNECTIONS: usize = 10_000;

/// `requests.case_sensitive` (and a route's `case_sensitive` without it).
pub const CASE_SENSITIVE: bool = false;

/// `upstreams.*.connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// `upstreams.*.read_timeout`.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// `upstreams.*.write_timeout`.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// `upstreams.*.health_check.interval`.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// `upstreams.*.health_check.timeout`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// `upstreams.*.health_check.unhealthy_after`.
pub const UNHEALTHY_AFTER: u32 = 2;
/// `upstreams.*.health_check.healthy_after`.
pub const HEALTHY_AFTER: u32 = 1;
/// `upstreams.*.protocol`.
pub const UPSTREAM_PROTOCOL: &str = "http1";
/// `upstreams.*.tls.verify`.
pub const UPSTREAM_TLS_VERIFY: bool = true;
/// A certificate the gateway presents or trusts that expires sooner than
/// this gets a warning at load (not configurable).
pub const CERT_EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// `plugins.*.memory_limit`.
pub const PLUGIN_MEMORY: usize = 16 << 20;
/// `plugins.*.timeout`.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_millis(10);
/// Largest claims or request JSON handed to a plugin (not configurable).
pub const PLUGIN_MAX_INPUT: usize = 64 << 10;

/// `routes[].forward_authorization`.
pub const FORWARD_AUTHORIZATION: bool = true;

/// `sessions.migrate`.
pub const SESSIONS_MIGRATE: bool = true;
/// `sessions.base_path`.
pub const SESSIONS_BASE_PATH: &str = "/api/auth";
/// `sessions.access_token_ttl`.
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// `sessions.refresh_token_ttl`.
pub const REFRESH_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// `sessions.rotation`.
pub const ROTATION: bool = true;
/// `sessions.reuse_grace`.
pub const REUSE_GRACE: Duration = Duration::from_secs(10);
/// `sessions.rate_limit.per_ip`.
pub const RATE_LIMIT_PER_IP: u32 = 60;
/// `sessions.rate_limit.per_token`.
pub const RATE_LIMIT_PER_TOKEN: u32 = 10;
/// `sessions.rate_limit.window`.
pub const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(60);
/// `sessions.cookie.name`.
pub const REFRESH_COOKIE: &str = "portcullis_refresh";
/// `sessions.cookie.secure`.
pub const COOKIE_SECURE: bool = true;
/// `sessions.cookie.csrf_header`.
pub const CSRF_HEADER: &str = "x-csrf-protection";
/// `sessions.cleanup_interval`.
pub const CLEANUP_INTERVAL: Duration = Duration::from_secs(600);
/// `sessions.revocation_poll_interval`.
pub const REVOCATION_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// `sessions.store_probe_interval`.
pub const STORE_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// `sessions.pool.max_connections` for `sqlite:` stores.
pub const SQLITE_POOL: u32 = crate::session::store::SQLITE_MAX_CONNECTIONS;
/// `sessions.pool.max_connections` for `postgres://` stores.
pub const POSTGRES_POOL: u32 = crate::session::store::POSTGRES_MAX_CONNECTIONS;

/// Every configuration key with its default as the reference documents it
/// (empty: no default, the key is required or off when absent). Keys of
/// list entries are written `routes[].name`, of maps `upstreams.*.targets`.
pub const DOCUMENTED: &[(&str, &str)] = &[
    ("listeners.proxy", ""),
    ("listeners.admin", "127.0.0.1:9090"),
    ("listeners.threads", "number of CPUs"),
    ("listeners.grace_period", "5s"),
    ("listeners.h2c", "false"),
    ("listeners.drain_window", "5s"),
    (
        "listeners.upgrade_socket",
        "/tmp/portcullis-upgrade-<admin port>.sock",
    ),
    ("listeners.tls.listen", ""),
    ("listeners.tls.cert_file", ""),
    ("listeners.tls.key_file", ""),
    ("listeners.tls.names", "the certificate's DNS names"),
    ("listeners.tls.certificates[].cert_file", ""),
    ("listeners.tls.certificates[].key_file", ""),
    (
        "listeners.tls.certificates[].names",
        "the certificate's DNS names",
    ),
    ("listeners.tls.client_auth.ca_file", ""),
    ("listeners.tls.client_auth.mode", "required"),
    ("log.format", "pretty"),
    ("log.level", "info"),
    ("log.access", "true"),
    ("log.spans", "false"),
    ("jwt.issuer", ""),
    ("jwt.audience", ""),
    ("jwt.leeway", "30s"),
    ("jwt.max_token_size", "8KiB"),
    ("jwt.cookie", ""),
    ("jwt.cache_entries", "100000"),
    ("jwt.keys[].kid", ""),
    ("jwt.keys[].algorithms", ""),
    ("jwt.keys[].secret", ""),
    ("jwt.keys[].secret_file", ""),
    ("jwt.keys[].public_key", ""),
    ("jwt.keys[].public_key_file", ""),
    ("jwt.keys[].private_key_file", ""),
    ("jwt.keys[].sign", "false"),
    ("routes[].issuers", ""),
    ("jwt.issuers[].issuer", ""),
    ("jwt.issuers[].name", "the issuer URL"),
    ("jwt.issuers[].discovery", "false"),
    ("jwt.issuers[].jwks_uri", ""),
    ("jwt.issuers[].keys", ""),
    ("jwt.issuers[].audiences", ""),
    ("jwt.issuers[].algorithms", "[RS256, ES256]"),
    ("jwt.issuers[].leeway", "30s"),
    ("jwt.issuers[].required_claims", ""),
    ("jwt.issuers[].max_token_lifetime", "24h"),
    ("jwt.issuers[].logout_client_ids", ""),
    ("jwt.issuers[].ca_file", ""),
    ("jwt.issuers[].allow_http", ""),
    ("jwt.issuers[].startup", "wait"),
    ("jwt.issuers[].min_refresh", "1m"),
    ("jwt.issuers[].max_refresh", "1h"),
    ("jwt.issuers[].cooldown", "10s"),
    ("jwt.issuers[].max_stale", "24h"),
    ("jwt.issuers[].fetch_timeout", "5s"),
    ("jwt.issuers[].max_response_size", "512KiB"),
    ("headers.identity", "X-User-Id, X-User-Role, …"),
    ("headers.identity_prefixes", "X-Auth-, X-Portcullis-"),
    ("headers.request_id", "X-Request-Id"),
    ("limits.max_body_size", "64KiB"),
    ("limits.max_header_size", "32KiB"),
    ("limits.header_read_timeout", "10s"),
    ("limits.body_read_timeout", "60s"),
    ("limits.keepalive_timeout", "60s"),
    ("limits.max_connections", "10000"),
    ("requests.case_sensitive", "false"),
    ("requests.empty_segments", "merge"),
    ("requests.path_params", "reject"),
    ("requests.underscore_headers", "drop"),
    ("upstreams.*.targets", ""),
    ("upstreams.*.host", "preserve"),
    ("upstreams.*.connect_timeout", "2s"),
    ("upstreams.*.read_timeout", "30s"),
    ("upstreams.*.write_timeout", "30s"),
    ("upstreams.*.health_check.path", ""),
    ("upstreams.*.health_check.grpc", "false"),
    ("upstreams.*.health_check.grpc_service", ""),
    ("upstreams.*.health_check.interval", "5s"),
    ("upstreams.*.health_check.timeout", "1s"),
    ("upstreams.*.health_check.unhealthy_after", "2"),
    ("upstreams.*.health_check.healthy_after", "1"),
    ("upstreams.*.protocol", "http1"),
    ("upstreams.*.tls.sni", "each target's host"),
    ("upstreams.*.tls.verify", "true"),
    ("upstreams.*.tls.ca_file", "the system's roots"),
    ("upstreams.*.tls.client_cert_file", ""),
    ("upstreams.*.tls.client_key_file", ""),
    ("plugins.*.module", ""),
    ("plugins.*.allow_headers", ""),
    ("plugins.*.request_headers", ""),
    ("plugins.*.on_error", "deny"),
    ("plugins.*.isolation", "reused"),
    ("plugins.*.memory_limit", "16MiB"),
    ("plugins.*.timeout", "10ms"),
    ("plugins.*.config", ""),
    ("routes[].name", ""),
    ("routes[].match.host", ""),
    ("routes[].match.path", ""),
    ("routes[].match.path_prefix", ""),
    ("routes[].match.methods", ""),
    ("routes[].upstream", ""),
    ("routes[].auth", "required"),
    ("routes[].require[].claim", ""),
    ("routes[].require[].client_cert", ""),
    ("routes[].require[].in", ""),
    ("routes[].require[].equals", ""),
    ("routes[].strip_prefix", ""),
    ("routes[].add_prefix", ""),
    ("routes[].forward_authorization", "true"),
    ("routes[].require_client_cert", "false"),
    ("routes[].case_sensitive", "requests.case_sensitive"),
    ("routes[].plugins", ""),
    ("routes[].login.subject", ""),
    ("routes[].login.claims", ""),
    ("routes[].login.device_info", "the User-Agent"),
    ("sessions.store", ""),
    ("sessions.migrate", "true"),
    ("sessions.base_path", "/api/auth"),
    ("sessions.access_token_ttl", "15m"),
    ("sessions.refresh_token_ttl", "7d"),
    ("sessions.rotation", "true"),
    ("sessions.reuse_grace", "10s"),
    ("sessions.refresh_secret", ""),
    ("sessions.rate_limit.per_ip", "60"),
    ("sessions.rate_limit.per_token", "10"),
    ("sessions.rate_limit.window", "1m"),
    ("sessions.cookie.name", "portcullis_refresh"),
    ("sessions.cookie.secure", "true"),
    ("sessions.cookie.csrf_header", "X-CSRF-Protection"),
    ("sessions.cookie.allowed_origins", ""),
    ("sessions.admin_token", ""),
    ("sessions.cleanup_interval", "10m"),
    ("sessions.revocation_poll_interval", "10s"),
    ("sessions.store_probe_interval", "1s"),
    (
        "sessions.pool.max_connections",
        "1 for sqlite, 8 for postgres",
    ),
    ("sessions.pool.acquire_timeout", "3s"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::{parse_byte_size, parse_duration};

    /// The documented text of each default parses back to the constant the
    /// compile step uses.
    #[test]
    fn documented_defaults_are_the_values_in_force() {
        let doc = |key: &str| {
            DOCUMENTED
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| panic!("{key} is not documented"))
        };
        for (key, value) in [
            ("listeners.grace_period", GRACE_PERIOD),
            ("listeners.drain_window", DRAIN_WINDOW),
            ("jwt.leeway", JWT_LEEWAY),
            ("jwt.issuers[].min_refresh", ISSUER_MIN_REFRESH),
            ("jwt.issuers[].max_refresh", ISSUER_MAX_REFRESH),
            ("jwt.issuers[].cooldown", ISSUER_COOLDOWN),
            ("jwt.issuers[].max_stale", ISSUER_MAX_STALE),
            ("jwt.issuers[].fetch_timeout", ISSUER_FETCH_TIMEOUT),
            (
                "jwt.issuers[].max_token_lifetime",
                ISSUER_MAX_TOKEN_LIFETIME,
            ),
            ("limits.header_read_timeout", HEADER_READ_TIMEOUT),
            ("limits.body_read_timeout", BODY_READ_TIMEOUT),
            ("limits.keepalive_timeout", KEEPALIVE_TIMEOUT),
            ("upstreams.*.connect_timeout", CONNECT_TIMEOUT),
            ("upstreams.*.read_timeout", READ_TIMEOUT),
            ("upstreams.*.write_timeout", WRITE_TIMEOUT),
            ("upstreams.*.health_check.interval", HEALTH_INTERVAL),
            ("upstreams.*.health_check.timeout", HEALTH_TIMEOUT),
            ("plugins.*.timeout", PLUGIN_TIMEOUT),
            ("sessions.access_token_ttl", ACCESS_TOKEN_TTL),
            ("sessions.refresh_token_ttl", REFRESH_TOKEN_TTL),
            ("sessions.reuse_grace", REUSE_GRACE),
            ("sessions.rate_limit.window", RATE_LIMIT_WINDOW),
            ("sessions.cleanup_interval", CLEANUP_INTERVAL),
            (
                "sessions.revocation_poll_interval",
                REVOCATION_POLL_INTERVAL,
            ),
            ("sessions.store_probe_interval", STORE_PROBE_INTERVAL),
        ] {
            assert_eq!(parse_duration(doc(key)), Ok(value), "{key}");
        }
        for (key, value) in [
            ("jwt.max_token_size", JWT_MAX_TOKEN_SIZE),
            ("limits.max_body_size", MAX_BODY_SIZE),
            ("limits.max_header_size", MAX_HEADER_SIZE),
            ("plugins.*.memory_limit", PLUGIN_MEMORY),
        ] {
            assert_eq!(parse_byte_size(doc(key)), Ok(value), "{key}");
        }
        for (key, value) in [
            ("jwt.cache_entries", JWT_CACHE_ENTRIES as u64),
            ("limits.max_connections", MAX_CONNECTIONS as u64),
            (
                "upstreams.*.health_check.unhealthy_after",
                UNHEALTHY_AFTER.into(),
            ),
            (
                "upstreams.*.health_check.healthy_after",
                HEALTHY_AFTER.into(),
            ),
            ("sessions.rate_limit.per_ip", RATE_LIMIT_PER_IP.into()),
            ("sessions.rate_limit.per_token", RATE_LIMIT_PER_TOKEN.into()),
        ] {
            assert_eq!(doc(key).parse::<u64>(), Ok(value), "{key}");
        }
        for (key, value) in [
            ("log.access", LOG_ACCESS),
            ("log.spans", LOG_SPANS),
            ("requests.case_sensitive", CASE_SENSITIVE),
            ("routes[].forward_authorization", FORWARD_AUTHORIZATION),
            ("routes[].require_client_cert", REQUIRE_CLIENT_CERT),
            ("sessions.migrate", SESSIONS_MIGRATE),
            ("sessions.rotation", ROTATION),
            ("sessions.cookie.secure", COOKIE_SECURE),
            ("upstreams.*.tls.verify", UPSTREAM_TLS_VERIFY),
        ] {
            assert_eq!(doc(key).parse::<bool>(), Ok(value), "{key}");
        }
        assert_eq!(doc("listeners.admin"), ADMIN_LISTENER);
        assert_eq!(doc("listeners.tls.client_auth.mode"), CLIENT_AUTH_MODE);
        assert_eq!(
            doc("listeners.upgrade_socket").replace("<admin port>", "9090"),
            upgrade_socket(9090).to_string_lossy()
        );
        assert_eq!(doc("log.level"), LOG_LEVEL);
        assert_eq!(doc("upstreams.*.protocol"), UPSTREAM_PROTOCOL);
        assert_eq!(
            crate::upstream::UpstreamProtocol::default().as_str(),
            UPSTREAM_PROTOCOL
        );
        assert_eq!(doc("sessions.base_path"), SESSIONS_BASE_PATH);
        assert_eq!(doc("sessions.cookie.name"), REFRESH_COOKIE);
        assert!(doc("sessions.cookie.csrf_header").eq_ignore_ascii_case(CSRF_HEADER));
        assert!(doc("headers.request_id").eq_ignore_ascii_case(REQUEST_ID_HEADER));
        assert_eq!(
            doc("sessions.pool.max_connections"),
            format!("{SQLITE_POOL} for sqlite, {POSTGRES_POOL} for postgres")
        );
    }

    /// Library types that keep a `Default` for callers outside the config
    /// (the plugin tool, the store opened by `portcullis migrate`) agree
    /// with the configuration's defaults.
    #[test]
    fn library_defaults_agree_with_the_configuration() {
        let plugin = crate::plugin::Limits::default();
        assert_eq!(plugin.memory_bytes, PLUGIN_MEMORY);
        assert_eq!(plugin.deadline, PLUGIN_TIMEOUT);
        assert_eq!(plugin.max_input_bytes, PLUGIN_MAX_INPUT);
        let pool = crate::session::store::PoolSettings::for_store("sqlite:x.db");
        assert_eq!(pool.max_connections, SQLITE_POOL);
        assert_eq!(
            Some(pool.acquire_timeout),
            crate::config::units::parse_duration(
                DOCUMENTED
                    .iter()
                    .find(|(k, _)| *k == "sessions.pool.acquire_timeout")
                    .map(|(_, v)| *v)
                    .unwrap_or_default()
            )
            .ok()
        );
        let mode: crate::tls::ClientAuthMode =
            serde_json::from_value(serde_json::json!(CLIENT_AUTH_MODE)).unwrap();
        assert_eq!(mode, crate::tls::ClientAuthMode::default());
        let headers = crate::headers::HeaderPolicy::default();
        assert_eq!(headers.request_id.as_str(), REQUEST_ID_HEADER);
    }
}
