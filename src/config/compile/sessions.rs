//! The `sessions` section and routes' `login` blocks.

use std::path::Path;
use std::time::Duration;

use http::header::HeaderName;
use serde_saphyr::Spanned;

use super::Checker;
use crate::config::defaults;
use crate::config::raw::{RawJwt, RawLogin, RawRateLimit, RawSessions};
use crate::jwt::Verifier;
use crate::session::ratelimit::RateLimiter;
use crate::session::refresh_token::RefreshTokens;
use crate::session::store::PoolSettings;
use crate::session::{CookieSettings, LoginCapture, SessionSettings};

/// A JSON pointer as RFC 6901 writes it: empty or starting with `/`.
fn check_pointer(ck: &mut Checker, span: &Spanned<String>, what: &str) -> bool {
    let ok = span.value.starts_with('/');
    if !ok {
        ck.at(
            span,
            format!(
                "{what} `{}` is not a JSON pointer: write it like `/user/id`",
                span.value
            ),
        );
    }
    ok
}

/// The query parameters of a Postgres URL that name files.
const POSTGRES_FILE_PARAMS: [&str; 3] = ["sslrootcert", "sslcert", "sslkey"];

/// A `postgres://` store URL as sqlx reads it (so `sslmode` and the other
/// parameters are checked at load, not first at start), with the TLS files
/// (`sslrootcert`, `sslcert`, `sslkey`) made absolute — relative paths are
/// taken from the config file's directory, like every path in the file —
/// and checked to be readable.
fn postgres_store_url(ck: &mut Checker, span: &Spanned<String>) -> Option<String> {
    let url = &span.value;
    let redacted = crate::session::store::redact_url(url);
    if let Err(e) = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(url) {
        ck.at(
            span,
            format!("session store `{redacted}` is not a usable Postgres URL: {e}"),
        );
        return None;
    }
    let Some((base, query)) = url.split_once('?') else {
        return Some(url.clone());
    };
    let mut ok = true;
    let mut pairs = Vec::new();
    for pair in query.split('&') {
        let file = pair
            .split_once('=')
            .filter(|(key, _)| POSTGRES_FILE_PARAMS.contains(key));
        let Some((key, value)) = file else {
            pairs.push(pair.to_owned());
            continue;
        };
        let written = percent_decode(value);
        let path = ck.base_dir.join(&written);
        let unusable = match std::fs::read(&path) {
            Err(e) => Some(format!(
                "cannot be read: {e}; paths are relative to the config file's directory"
            )),
            Ok(pem) if key == "sslkey" => {
                use rustls_pki_types::pem::PemObject;
                rustls_pki_types::PrivateKeyDer::from_pem_slice(&pem)
                    .err()
                    .map(|e| format!("holds no usable PEM private key: {e}"))
            }
            Ok(pem) => match super::upstreams::tls::certificates(&pem) {
                Ok(certs) if certs.is_empty() => {
                    Some("holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into())
                }
                Ok(_) => None,
                Err(why) => Some(why),
            },
        };
        if let Some(why) = unusable {
            ck.at(
                span,
                format!(
                    "session store `{redacted}`: `{key}` file `{written}` ({}) {why}",
                    path.display()
                ),
            );
            ok = false;
        }
        pairs.push(format!(
            "{key}={}",
            percent_encode_path(&path.to_string_lossy())
        ));
    }
    ok.then(|| format!("{base}?{}", pairs.join("&")))
}

/// `%XX` escapes (and `+` for a space, as URL query strings write it) decoded.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A path as a query value: everything but unreserved characters and `/`
/// percent-encoded.
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn compile_login(ck: &mut Checker, route: &str, raw: &RawLogin) -> Option<LoginCapture> {
    let mut ok = check_pointer(ck, &raw.subject, &format!("route `{route}`: login subject"));
    let mut claims = Vec::new();
    for (name, pointer) in &raw.claims {
        ok &= check_pointer(
            ck,
            pointer,
            &format!("route `{route}`: login claim `{name}`"),
        );
        if crate::jwt::RESERVED_CLAIMS.contains(&name.as_str()) {
            ck.at(
                pointer,
                format!("route `{route}`: claim `{name}` is set by the gateway itself; capture it under another name"),
            );
            ok = false;
        }
        claims.push((name.clone(), pointer.value.clone()));
    }
    if let Some(d) = &raw.device_info {
        ok &= check_pointer(ck, d, &format!("route `{route}`: login device_info"));
    }
    ok.then(|| LoginCapture {
        subject: raw.subject.value.clone(),
        claims,
        device_info: raw.device_info.as_ref().map(|d| d.value.clone()),
    })
}

pub(super) fn compile_sessions(
    ck: &mut Checker,
    spanned: &Spanned<RawSessions>,
    jwt: Option<&RawJwt>,
    verifier: Option<&Verifier>,
) -> Option<SessionSettings> {
    let raw = &spanned.value;
    let mut ok = true;
    match (&raw.refresh_secret, verifier) {
        // Without `refresh_secret` the section only stores revocations:
        // nothing is minted, so no signing key is needed.
        (None, _) => warn_store_only(ck, raw),
        (Some(_), Some(v)) if v.keys().signing_key().is_some_and(|k| k.encoding.is_some()) => {}
        (Some(_), Some(_)) => {
            ck.at(spanned, "`sessions` mints access tokens but no key in `jwt.keys` has `sign: true` (with a private key for asymmetric algorithms): mark the signing key, or drop `refresh_secret` if the section is only to store revocations");
            ok = false;
        }
        (Some(_), None) => {
            ck.at(spanned, "`sessions` mints access tokens but there is no `jwt` section: add `jwt.keys` with one `sign: true` key, or drop `refresh_secret` if the section is only to store revocations");
            ok = false;
        }
    }
    let store_url = match raw.store.value.strip_prefix("sqlite:") {
        Some("") => {
            ck.at(
                &raw.store,
                "`sqlite:` needs a file path, e.g. `sqlite:data/portcullis.db`",
            );
            ok = false;
            String::new()
        }
        Some(path) if path.starts_with(':') || Path::new(path).is_absolute() => {
            raw.store.value.clone()
        }
        Some(path) => format!("sqlite:{}", ck.base_dir.join(path).display()),
        None if raw.store.value.starts_with("postgres://")
            || raw.store.value.starts_with("postgresql://") =>
        {
            match postgres_store_url(ck, &raw.store) {
                Some(url) => url,
                None => {
                    ok = false;
                    String::new()
                }
            }
        }
        None => {
            ck.at(
                &raw.store,
                format!(
                    "session store `{}` is not supported: use `sqlite:PATH` or `postgres://user:password@host/database`",
                    crate::session::store::redact_url(&raw.store.value)
                ),
            );
            ok = false;
            String::new()
        }
    };
    let base_path = match &raw.base_path {
        Some(p) => {
            let trimmed = p.value.trim_end_matches('/');
            if !p.value.starts_with('/') || trimmed.is_empty() || p.value.contains(['?', '#', ' '])
            {
                ck.at(
                    p,
                    format!("`base_path` `{}` must be a path like `/api/auth`", p.value),
                );
                ok = false;
            }
            trimmed.to_owned()
        }
        None => defaults::SESSIONS_BASE_PATH.to_owned(),
    };
    if let Some(secret) = &raw.refresh_secret {
        ok &= check_refresh_secret(ck, secret, jwt);
    }
    let d = |v: Option<crate::config::units::HumanDuration>, default: Duration| {
        v.map(|d| d.0).unwrap_or(default)
    };
    let spanned_d = |v: Option<&Spanned<crate::config::units::HumanDuration>>,
                     default: Duration| { d(v.map(|s| s.value), default) };
    let access_ttl = spanned_d(raw.access_token_ttl.as_ref(), defaults::ACCESS_TOKEN_TTL);
    let refresh_ttl = spanned_d(raw.refresh_token_ttl.as_ref(), defaults::REFRESH_TOKEN_TTL);
    if access_ttl.is_zero() || refresh_ttl.is_zero() {
        ck.at(
            spanned,
            "`access_token_ttl` and `refresh_token_ttl` must be longer than zero",
        );
        ok = false;
    }
    let cookie = raw.cookie.as_ref().and_then(|c| {
        let c = &c.value;
        let name = c.name.as_ref().map(|n| n.value.clone()).unwrap_or_else(|| defaults::REFRESH_COOKIE.into());
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            if let Some(n) = &c.name {
                ck.at(n, format!("`{name}` is not a usable cookie name: use letters, digits, `-`, `_` or `.`"));
            }
            return None;
        }
        let csrf_header = match &c.csrf_header {
            Some(h) => match HeaderName::from_bytes(h.value.trim().as_bytes()) {
                Ok(h) => h,
                Err(_) => {
                    ck.at(h, format!("`{}` is not a valid header name", h.value));
                    return None;
                }
            },
            None => HeaderName::from_static(defaults::CSRF_HEADER),
        };
        Some(CookieSettings {
            name,
            secure: c.secure.unwrap_or(defaults::COOKIE_SECURE),
            csrf_header,
            allowed_origins: c
                .allowed_origins
                .iter()
                .map(|o| o.value.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        })
    });
    if raw.cookie.is_some() && cookie.is_none() {
        ok = false;
    }
    let admin_token_hash = raw.admin_token.as_ref().and_then(|t| {
        if t.value.len() < 16 {
            ck.at(t, "`admin_token` is shorter than 16 characters: use a long random value (`portcullis secret`)");
            None
        } else {
            Some(crate::session::store::hash_refresh_token(&t.value))
        }
    });
    if raw.admin_token.is_some() && admin_token_hash.is_none() {
        ok = false;
    }
    let no_rate_limit = RawRateLimit::default();
    let rate_limit = raw.rate_limit.as_ref().map_or(&no_rate_limit, |r| &r.value);
    let window = d(rate_limit.window, defaults::RATE_LIMIT_WINDOW);
    if window.is_zero() {
        ck.at(spanned, "`rate_limit.window` must be longer than zero");
        ok = false;
    }
    // One connection for SQLite (its single write lock), eight for Postgres.
    let pool_defaults = PoolSettings::for_store(&store_url);
    let first = |v: Option<&Spanned<crate::config::raw::OneOrMany>>| {
        v.and_then(|v| v.value.clone().into_vec().into_iter().next())
    };
    ok.then(|| SessionSettings {
        store_url,
        migrate: raw.migrate.unwrap_or(defaults::SESSIONS_MIGRATE),
        base_path,
        access_ttl,
        refresh_ttl,
        rotation: raw
            .rotation
            .as_ref()
            .map_or(defaults::ROTATION, |r| r.value),
        reuse_grace: spanned_d(raw.reuse_grace.as_ref(), defaults::REUSE_GRACE),
        refresh_tokens: raw
            .refresh_secret
            .as_ref()
            .map(|secret| RefreshTokens::new(secret.value.as_bytes().to_vec())),
        per_ip: RateLimiter::new(
            rate_limit.per_ip.unwrap_or(defaults::RATE_LIMIT_PER_IP),
            window,
        ),
        per_token: RateLimiter::new(
            rate_limit
                .per_token
                .unwrap_or(defaults::RATE_LIMIT_PER_TOKEN),
            window,
        ),
        cookie,
        admin_token_hash,
        cleanup_interval: d(raw.cleanup_interval, defaults::CLEANUP_INTERVAL)
            .max(Duration::from_secs(1)),
        revocation_poll_interval: d(
            raw.revocation_poll_interval,
            defaults::REVOCATION_POLL_INTERVAL,
        )
        .max(Duration::from_millis(100)),
        store_probe_interval: d(raw.store_probe_interval, defaults::STORE_PROBE_INTERVAL)
            .max(Duration::from_millis(100)),
        pool: PoolSettings {
            max_connections: raw
                .pool
                .max_connections
                .unwrap_or(pool_defaults.max_connections)
                .max(1),
            acquire_timeout: raw
                .pool
                .acquire_timeout
                .map(|d| d.0)
                .unwrap_or(pool_defaults.acquire_timeout),
        },
        issuer: first(jwt.and_then(|j| j.issuer.as_ref())),
        audience: first(jwt.and_then(|j| j.audience.as_ref())),
        leeway: jwt
            .and_then(|j| j.leeway)
            .map(|l| l.0)
            .unwrap_or(defaults::JWT_LEEWAY),
    })
}

/// `sessions.refresh_secret` long enough and not shared with an access-token key.
fn check_refresh_secret(ck: &mut Checker, secret: &Spanned<String>, jwt: Option<&RawJwt>) -> bool {
    let mut ok = true;
    if secret.value.len() < 32 {
        ck.at(
            secret,
            "`refresh_secret` is shorter than 32 bytes: use 256 random bits (`portcullis secret` prints one)",
        );
        ok = false;
    }
    if let Some(keys) = jwt.map(|j| &j.keys) {
        let shared = keys
            .iter()
            .filter_map(|k| k.value.secret.as_ref())
            .any(|s| s.value == secret.value);
        if shared {
            ck.at(secret, "`refresh_secret` equals an access-token key's secret: use a separate secret so one leak does not expose both");
            ok = false;
        }
    }
    ok
}

/// Warns at each option a `sessions` section without `refresh_secret` sets
/// in vain: only the session routes read them, and those are not served.
fn warn_store_only(ck: &mut Checker, raw: &RawSessions) {
    let message = |key: &str| {
        format!("`sessions.{key}` has no effect without `refresh_secret`: a `sessions` section without it only stores revocations (no session is opened, refreshed or logged out here); remove `{key}`, or add `refresh_secret` to serve the session routes")
    };
    // Not `access_token_ttl`: it also keeps revoked session ids in the set
    // as long as tokens of those sessions live, which matters to a node that
    // shares its store with nodes that open sessions.
    let durations = [
        ("refresh_token_ttl", &raw.refresh_token_ttl),
        ("reuse_grace", &raw.reuse_grace),
    ];
    for (key, value) in durations {
        if let Some(v) = value {
            ck.warn_at(v, message(key));
        }
    }
    if let Some(v) = &raw.rotation {
        ck.warn_at(v, message("rotation"));
    }
    if let Some(v) = &raw.rate_limit {
        ck.warn_at(v, message("rate_limit"));
    }
    if let Some(v) = &raw.cookie {
        ck.warn_at(v, message("cookie"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_decode_and_paths_encode_back() {
        assert_eq!(percent_decode("certs%2Fca%20one.pem"), "certs/ca one.pem");
        assert_eq!(percent_decode("a+b%"), "a b%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(
            percent_encode_path("/etc/pg certs/ca&1.pem"),
            "/etc/pg%20certs/ca%261.pem"
        );
        let path = "/tmp/x y/ü.pem";
        assert_eq!(percent_decode(&percent_encode_path(path)), path);
    }
}
