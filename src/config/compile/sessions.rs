//! The `sessions` section and routes' `login` blocks.

use std::path::Path;
use std::time::Duration;

use http::header::HeaderName;
use serde_saphyr::Spanned;

use super::Checker;
use crate::config::defaults;
use crate::config::raw::{RawJwt, RawLogin, RawSessions};
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
    match verifier {
        Some(v) if v.keys().signing_key().is_some_and(|k| k.encoding.is_some()) => {}
        Some(_) => {
            ck.at(spanned, "`sessions` mints access tokens but no key in `jwt.keys` has `sign: true` (with a private key for asymmetric algorithms): mark the signing key");
            ok = false;
        }
        None => {
            ck.at(spanned, "`sessions` mints access tokens but there is no `jwt` section: add `jwt.keys` with one `sign: true` key");
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
            raw.store.value.clone()
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
    if raw.refresh_secret.value.len() < 32 {
        ck.at(
            &raw.refresh_secret,
            "`refresh_secret` is shorter than 32 bytes: use 256 random bits (`portcullis secret` prints one)",
        );
        ok = false;
    }
    if let Some(keys) = jwt.map(|j| &j.keys) {
        let shared = keys
            .iter()
            .filter_map(|k| k.value.secret.as_ref())
            .any(|s| s.value == raw.refresh_secret.value);
        if shared {
            ck.at(&raw.refresh_secret, "`refresh_secret` equals an access-token key's secret: use a separate secret so one leak does not expose both");
            ok = false;
        }
    }
    let d = |v: Option<crate::config::units::HumanDuration>, default: Duration| {
        v.map(|d| d.0).unwrap_or(default)
    };
    let access_ttl = d(raw.access_token_ttl, defaults::ACCESS_TOKEN_TTL);
    let refresh_ttl = d(raw.refresh_token_ttl, defaults::REFRESH_TOKEN_TTL);
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
    let window = d(raw.rate_limit.window, defaults::RATE_LIMIT_WINDOW);
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
        rotation: raw.rotation.unwrap_or(defaults::ROTATION),
        reuse_grace: d(raw.reuse_grace, defaults::REUSE_GRACE),
        refresh_tokens: RefreshTokens::new(raw.refresh_secret.value.as_bytes().to_vec()),
        per_ip: RateLimiter::new(
            raw.rate_limit.per_ip.unwrap_or(defaults::RATE_LIMIT_PER_IP),
            window,
        ),
        per_token: RateLimiter::new(
            raw.rate_limit
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
