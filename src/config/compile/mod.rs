//! Semantic checks and compilation of a [`RawConfig`] into a [`Generation`],
//! one file per section; every default comes from [`super::defaults`].

mod headers;
mod jwt;
mod limits;
mod listeners;
mod plugins;
mod routes;
mod sessions;
mod tls;
mod upstreams;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::header::HeaderName;
use serde_saphyr::Spanned;

use super::defaults;
use super::raw::{AuthMode, RawConfig, RawRoute};
use super::{ConfigError, Diagnostic};
use crate::canonical::{PathRules, ReadPolicy};
use crate::generation::{Generation, Listeners, LogSettings, TokenSources};
use crate::route::{Route, Router};

/// Collects diagnostics against one file.
/// Collects diagnostics against one file.
struct Checker<'a> {
    file: &'a Path,
    base_dir: PathBuf,
    problems: Vec<Diagnostic>,
    /// Not errors: the config loads, but the operator should look.
    warnings: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn warn_at<T>(&mut self, span: &Spanned<T>, message: impl Into<String>) {
        self.warnings.push(Diagnostic {
            file: self.file.to_owned(),
            line: span.referenced.line() as usize,
            column: span.referenced.column() as usize,
            message: message.into(),
        });
    }

    fn at<T>(&mut self, span: &Spanned<T>, message: impl Into<String>) {
        self.problems.push(Diagnostic {
            file: self.file.to_owned(),
            line: span.referenced.line() as usize,
            column: span.referenced.column() as usize,
            message: message.into(),
        });
    }

    fn general(&mut self, message: impl Into<String>) {
        self.problems.push(Diagnostic {
            file: self.file.to_owned(),
            line: 0,
            column: 0,
            message: message.into(),
        });
    }

    /// Resolves a file named in the config relative to the config's directory.
    fn read_file(&mut self, span: &Spanned<String>, what: &str) -> Option<Vec<u8>> {
        let path = self.base_dir.join(&span.value);
        match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.at(
                    span,
                    format!(
                        "cannot read {what} `{}` ({}): {e}; paths are relative to the config file's directory",
                        span.value,
                        path.display()
                    ),
                );
                None
            }
        }
    }
}

/// Checks everything and builds the generation, or reports every problem.
pub(crate) fn compile(file: &Path, raw: RawConfig) -> Result<Generation, ConfigError> {
    let base_dir = file
        .parent()
        .map(Path::to_owned)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let mut ck = Checker {
        file,
        base_dir,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let read = ReadPolicy {
        case_sensitive: raw
            .requests
            .case_sensitive
            .unwrap_or(defaults::CASE_SENSITIVE),
        path: PathRules {
            empty_segments: raw.requests.empty_segments.unwrap_or_default(),
            path_params: raw.requests.path_params.unwrap_or_default(),
        },
        underscore_headers: raw.requests.underscore_headers.unwrap_or_default(),
    };

    let admin = raw
        .listeners
        .admin
        .as_ref()
        .map(|a| a.value.0)
        .unwrap_or_else(|| defaults::ADMIN_LISTENER.parse().expect("static address"));
    if admin == raw.listeners.proxy.value.0 {
        ck.at(
            &raw.listeners.proxy,
            format!("the proxy and admin listeners both use {admin}: give the admin listener its own port"),
        );
    }
    let tls = raw
        .listeners
        .tls
        .as_ref()
        .and_then(|t| tls::compile_tls(&mut ck, t, raw.listeners.proxy.value.0, admin));
    let client_certificates = raw
        .listeners
        .tls
        .as_ref()
        .is_some_and(|t| t.value.client_auth.is_some());
    let listeners = Listeners {
        proxy: raw.listeners.proxy.value.0,
        tls: tls.as_ref().map(|(listen, _)| *listen),
        admin,
        threads: raw
            .listeners
            .threads
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            })
            .max(1),
        grace_period: raw
            .listeners
            .grace_period
            .map(|d| d.0)
            .unwrap_or(defaults::GRACE_PERIOD),
        h2c: raw.listeners.h2c.unwrap_or(false),
        drain_window: raw
            .listeners
            .drain_window
            .map(|d| d.0)
            .unwrap_or(defaults::DRAIN_WINDOW),
        upgrade_socket: listeners::compile_upgrade_socket(&mut ck, &raw.listeners, admin.port()),
        client: limits::compile_client_limits(&mut ck, &raw.limits),
    };
    let log = LogSettings {
        format: raw.log.format,
        level: raw
            .log
            .level
            .clone()
            .unwrap_or_else(|| defaults::LOG_LEVEL.into()),
        access: raw.log.access.unwrap_or(defaults::LOG_ACCESS),
        spans: raw.log.spans.unwrap_or(defaults::LOG_SPANS),
    };

    let (verifier, token_sources) = match &raw.jwt {
        Some(jwt) => jwt::compile_jwt(&mut ck, jwt, raw.sessions.is_some()),
        None => (None, TokenSources { cookie: None }),
    };
    let mut headers = headers::compile_headers(&mut ck, &raw);
    let plugins = plugins::compile_plugins(&mut ck, &raw.plugins);
    // Whatever a plugin may set is an identity header: clients must never
    // be able to send it themselves.
    for plugin in plugins.values() {
        for name in plugin.allow_headers() {
            if !headers.is_identity(name) {
                let folded = crate::canonical::fold_header_name(name.as_str());
                match HeaderName::from_bytes(folded.as_bytes()) {
                    Ok(folded) => headers.identity.push(folded),
                    Err(_) => headers.identity.push(name.clone()),
                }
            }
        }
    }

    let mut upstream_index = HashMap::new();
    let mut upstreams = Vec::new();
    for (name, up) in &raw.upstreams {
        if let Some(u) = upstreams::compile_upstream(&mut ck, name, up) {
            upstream_index.insert(name.clone(), upstreams.len());
            upstreams.push(Arc::new(u));
        }
    }

    let mut routes: Vec<Route> = Vec::new();
    let mut route_spans: Vec<&Spanned<RawRoute>> = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for spanned in &raw.routes {
        let r = &spanned.value;
        if let Some(first_line) = names.get(r.name.value.as_str()) {
            ck.at(
                &r.name,
                format!(
                    "duplicate route name `{}` (first defined on line {first_line}): route names must be unique",
                    r.name.value
                ),
            );
            continue;
        }
        names.insert(&r.name.value, r.name.referenced.line() as usize);
        let needs_keys = !matches!(r.auth.as_ref().map(|a| a.value), Some(AuthMode::None));
        if needs_keys && verifier.is_none() {
            let span = r
                .auth
                .as_ref()
                .map(|a| (a.referenced.line(), a.referenced.column()));
            let msg = format!(
                "route `{}` checks tokens (auth: required is the default) but there is no `jwt` section with keys: add `jwt.keys` or set `auth: none`",
                r.name.value
            );
            match span {
                Some(_) => ck.at(r.auth.as_ref().expect("checked above"), msg),
                None => ck.at(&r.name, msg),
            }
        }
        if let Some(mut route) = routes::compile_route(
            &mut ck,
            r,
            &upstream_index,
            &raw.upstreams,
            &plugins,
            &raw.plugins,
            &read,
        ) {
            if let Some(list) = &r.issuers {
                let known: Vec<&str> = verifier
                    .as_ref()
                    .map(|v| v.issuer_names().collect())
                    .unwrap_or_default();
                for name in &list.value {
                    if !known.contains(&name.value.as_str()) {
                        ck.at(
                            name,
                            format!(
                                "route `{}` accepts issuer `{}`, which is not configured (known: {})",
                                route.name,
                                name.value,
                                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                            ),
                        );
                    }
                }
            }
            if !route.client_cert.is_empty() && !client_certificates {
                ck.at(
                    &r.name,
                    format!(
                        "route `{}` asks for a client certificate (`require_client_cert` or a `client_cert` requirement), but `listeners.tls.client_auth` is not configured, so no request can carry one: add `client_auth` with the CA that issues them",
                        route.name
                    ),
                );
            }
            if let Some(login) = &r.login {
                match &raw.sessions {
                    None => ck.at(
                        login,
                        format!("route `{}` has a `login` block but there is no `sessions` section: add `sessions` (store, refresh_secret) or remove `login`", route.name),
                    ),
                    Some(s) if s.value.refresh_secret.is_none() => ck.at(
                        login,
                        format!("route `{}` has a `login` block but `sessions` has no `refresh_secret`: logins open sessions, so add `sessions.refresh_secret` (32+ random bytes, `portcullis secret` prints one) and a `jwt.keys` entry with `sign: true`, or remove `login`", route.name),
                    ),
                    Some(_) => {}
                }
                route.login =
                    sessions::compile_login(&mut ck, &route.name, &login.value).map(Arc::new);
            }
            for (earlier, earlier_span) in routes.iter().zip(&route_spans) {
                if !routes::shadows(earlier, &route) && routes::overlaps_by_case(earlier, &route) {
                    ck.warn_at(
                        &r.matcher,
                        format!(
                            "route `{}` overlaps route `{}` (line {}) only by letter case: a backend that ignores case (Express, ASP.NET) reads both as one path, so a request meant for one may get the other's rules; keep `case_sensitive: true` only if the backend distinguishes case",
                            route.name,
                            earlier.name,
                            earlier_span.referenced.line(),
                        ),
                    );
                }
                if routes::shadows(earlier, &route) {
                    ck.at(
                        &r.matcher,
                        format!(
                            "route `{}` can never match: route `{}` (line {}) comes first and matches everything it does; move it above `{}` or narrow `{}`",
                            route.name,
                            earlier.name,
                            earlier_span.referenced.line(),
                            earlier.name,
                            earlier.name
                        ),
                    );
                    break;
                }
            }
            routes.push(route);
            route_spans.push(spanned);
        }
    }
    let sessions = raw
        .sessions
        .as_ref()
        .and_then(|s| sessions::compile_sessions(&mut ck, s, raw.jwt.as_ref(), verifier.as_ref()))
        .map(Arc::new);
    let jwks = verifier.as_ref().map(|v| crate::jwt::jwk_set(v.keys()));

    if raw.routes.is_empty() {
        ck.general("no routes are configured: every request would get 404; add at least one entry under `routes`");
    }

    if !ck.problems.is_empty() {
        ck.problems.sort_by_key(|d| (d.line, d.column));
        return Err(ConfigError(ck.problems));
    }
    Ok(Generation {
        source: file.to_owned(),
        listeners,
        log,
        verifier,
        token_sources,
        headers,
        router: Router::new(routes),
        upstreams,
        max_body_size: raw
            .limits
            .max_body_size
            .map(|b| b.0)
            .unwrap_or(defaults::MAX_BODY_SIZE),
        max_header_size: raw
            .limits
            .max_header_size
            .map(|b| b.0)
            .unwrap_or(defaults::MAX_HEADER_SIZE),
        sessions,
        jwks,
        read,
        tls: tls.map(|(_, material)| material),
        warnings: ck.warnings.iter().map(ToString::to_string).collect(),
    })
}
