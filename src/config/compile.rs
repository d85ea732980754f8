//! Semantic checks and compilation of a [`RawConfig`] into a [`Generation`].

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::Method;
use serde_saphyr::Spanned;

use super::raw::{
    AuthMode, PluginIsolation, PluginOnError, RawConfig, RawJwt, RawKey, RawLimits, RawLogin,
    RawPlugin, RawRoute, RawSessions, RawUpstream,
};
use super::units::HumanDuration;
use super::{ConfigError, Diagnostic};
use crate::generation::{ClientLimits, Generation, Listeners, LogSettings, TokenSources};
use crate::headers::HeaderPolicy;
use crate::jwt::{Key, KeyMaterial, KeySet, Verifier, VerifyPolicy};
use crate::plugin::{
    CompiledPlugin, Isolation, Limits, OnError, PluginChain, PluginHost, PluginSpec,
};
use crate::route::{PathMatch, Requirement, Route, Router, Rule};
use crate::session::ratelimit::RateLimiter;
use crate::session::refresh_token::RefreshTokens;
use crate::session::store::PoolSettings;
use crate::session::{CookieSettings, LoginCapture, SessionSettings};
use crate::upstream::{HealthCheck, Target, Upstream};

/// Collects diagnostics against one file.
struct Checker<'a> {
    file: &'a Path,
    base_dir: PathBuf,
    problems: Vec<Diagnostic>,
}

impl Checker<'_> {
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

const DEFAULT_ADMIN: &str = "127.0.0.1:9090";

/// Checks everything and builds the generation, or reports every problem.
pub fn compile(file: &Path, raw: RawConfig) -> Result<Generation, ConfigError> {
    let base_dir = file
        .parent()
        .map(Path::to_owned)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let mut ck = Checker {
        file,
        base_dir,
        problems: Vec::new(),
    };

    let admin = raw
        .listeners
        .admin
        .as_ref()
        .map(|a| a.value.0)
        .unwrap_or_else(|| DEFAULT_ADMIN.parse().expect("static address"));
    if admin == raw.listeners.proxy.value.0 {
        ck.at(
            &raw.listeners.proxy,
            format!("the proxy and admin listeners both use {admin}: give the admin listener its own port"),
        );
    }
    let listeners = Listeners {
        proxy: raw.listeners.proxy.value.0,
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
            .unwrap_or(Duration::from_secs(5)),
        client: compile_client_limits(&mut ck, &raw.limits),
    };
    let log = LogSettings {
        format: raw.log.format,
        level: raw.log.level.clone().unwrap_or_else(|| "info".into()),
        access: raw.log.access.unwrap_or(true),
        spans: raw.log.spans.unwrap_or(false),
    };

    let (verifier, token_sources) = match &raw.jwt {
        Some(jwt) => compile_jwt(&mut ck, jwt),
        None => (None, TokenSources { cookie: None }),
    };
    let mut headers = compile_headers(&mut ck, &raw);
    let plugins = compile_plugins(&mut ck, &raw.plugins);
    // Whatever a plugin may set is an identity header: clients must never
    // be able to send it themselves.
    for plugin in plugins.values() {
        for name in plugin.allow_headers() {
            if !headers.is_identity(name) {
                headers.identity.push(name.clone());
            }
        }
    }

    let mut upstream_index = HashMap::new();
    let mut upstreams = Vec::new();
    for (name, up) in &raw.upstreams {
        if let Some(u) = compile_upstream(&mut ck, name, up) {
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
        if let Some(mut route) = compile_route(
            &mut ck,
            r,
            &upstream_index,
            &raw.upstreams,
            &plugins,
            &raw.plugins,
        ) {
            if let Some(login) = &r.login {
                if raw.sessions.is_none() {
                    ck.at(
                        login,
                        format!("route `{}` has a `login` block but there is no `sessions` section: add `sessions` (store, refresh_secret) or remove `login`", route.name),
                    );
                }
                route.login = compile_login(&mut ck, &route.name, &login.value).map(Arc::new);
            }
            for (earlier, earlier_span) in routes.iter().zip(&route_spans) {
                if shadows(earlier, &route) {
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
        .and_then(|s| compile_sessions(&mut ck, s, raw.jwt.as_ref(), verifier.as_ref()))
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
        max_body_size: raw.limits.max_body_size.map(|b| b.0).unwrap_or(64 * 1024),
        max_header_size: raw.limits.max_header_size.map(|b| b.0).unwrap_or(32 * 1024),
        sessions,
        jwks,
    })
}

/// The slow-client limits; zero durations or connections are refused.
fn compile_client_limits(ck: &mut Checker, limits: &RawLimits) -> ClientLimits {
    let defaults = ClientLimits::default();
    let mut pick = |value: Option<HumanDuration>, default: Duration, key: &str| match value {
        Some(HumanDuration(d)) if d.is_zero() => {
            ck.general(format!(
                "limits.{key} is 0: give clients some time, e.g. `10s`"
            ));
            default
        }
        Some(HumanDuration(d)) => d,
        None => default,
    };
    let header_read_timeout = pick(
        limits.header_read_timeout,
        defaults.header_read_timeout,
        "header_read_timeout",
    );
    let body_read_timeout = pick(
        limits.body_read_timeout,
        defaults.body_read_timeout,
        "body_read_timeout",
    );
    let keepalive_timeout = pick(
        limits.keepalive_timeout,
        defaults.keepalive_timeout,
        "keepalive_timeout",
    );
    let max_connections = match limits.max_connections {
        Some(0) => {
            ck.general(
                "limits.max_connections is 0: no client could connect; remove it or set e.g. 10000",
            );
            defaults.max_connections
        }
        Some(n) => n,
        None => defaults.max_connections,
    };
    ClientLimits {
        header_read_timeout,
        body_read_timeout,
        keepalive_timeout,
        max_connections,
    }
}

fn shadows(earlier: &Route, later: &Route) -> bool {
    let host_ok = match (&earlier.host, &later.host) {
        (None, _) => true,
        (Some(a), Some(b)) => a == b,
        (Some(_), None) => false,
    };
    let methods_ok = match (&earlier.methods, &later.methods) {
        (None, _) => true,
        (Some(a), Some(b)) => b.iter().all(|m| a.contains(m)),
        (Some(_), None) => false,
    };
    host_ok && methods_ok && later.path.covered_by(&earlier.path)
}

fn compile_jwt(ck: &mut Checker, jwt: &RawJwt) -> (Option<Verifier>, TokenSources) {
    let mut keys = Vec::new();
    let mut kids: HashMap<&str, u64> = HashMap::new();
    let mut signer: Option<&Spanned<String>> = None;
    for spanned in &jwt.keys {
        let k = &spanned.value;
        if let Some(line) = kids.get(k.kid.value.as_str()) {
            ck.at(
                &k.kid,
                format!(
                    "duplicate kid `{}` (first on line {line}): every key needs its own kid",
                    k.kid.value
                ),
            );
            continue;
        }
        kids.insert(&k.kid.value, k.kid.referenced.line());
        if k.sign {
            if let Some(first) = signer {
                ck.at(
                    &k.kid,
                    format!(
                        "keys `{}` and `{}` both have `sign: true`: only one key signs; keep the others for verification only",
                        first.value, k.kid.value
                    ),
                );
            }
            signer = Some(&k.kid);
        }
        if let Some(key) = compile_key(ck, k) {
            keys.push(key);
        }
    }
    if jwt.keys.is_empty() {
        ck.general("`jwt.keys` is empty: configure at least one key, or remove the `jwt` section and use `auth: none` routes");
    }
    let mut policy = VerifyPolicy::default();
    if let Some(iss) = &jwt.issuer {
        policy.issuer = Some(iss.value.clone().into_vec());
    }
    if let Some(aud) = &jwt.audience {
        policy.audience = Some(aud.value.clone().into_vec());
    }
    if let Some(l) = jwt.leeway {
        policy.leeway = l.0;
    }
    if let Some(size) = jwt.max_token_size {
        policy.max_token_size = size.0;
    }
    if let Some(cookie) = &jwt.cookie {
        let valid = !cookie.value.is_empty()
            && cookie
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            ck.at(
                cookie,
                format!(
                    "`{}` is not a usable cookie name: use letters, digits, `-`, `_` or `.`",
                    cookie.value
                ),
            );
        }
    }
    let sources = TokenSources {
        cookie: jwt.cookie.as_ref().map(|c| c.value.clone()),
    };
    let verifier = Verifier::new(
        KeySet::new(keys),
        policy,
        jwt.cache_entries.unwrap_or(100_000),
    );
    (Some(verifier), sources)
}

fn compile_key(ck: &mut Checker, k: &RawKey) -> Option<Key> {
    let mut algorithms = Vec::new();
    for a in &k.algorithms.value {
        match crate::jwt::parse_algorithm_name(&a.value) {
            Ok(alg) => algorithms.push(alg),
            Err(e) => ck.at(a, format!("key `{}`: {e}", k.kid.value)),
        }
    }
    if k.algorithms.value.is_empty() {
        ck.at(
            &k.algorithms,
            format!(
                "key `{}` lists no algorithms: name at least one, e.g. [RS256]",
                k.kid.value
            ),
        );
        return None;
    }
    let sources = [
        k.secret.is_some(),
        k.secret_file.is_some(),
        k.public_key.is_some(),
        k.public_key_file.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        ck.at(
            &k.kid,
            format!(
                "key `{}` needs exactly one of `secret`, `secret_file`, `public_key`, `public_key_file`",
                k.kid.value
            ),
        );
        return None;
    }
    let material = if let Some(s) = &k.secret {
        if s.value.len() < 32 {
            tracing::warn!(kid = %k.kid.value, "HMAC secret is shorter than 32 bytes; use at least 256 random bits in production");
        }
        KeyMaterial::Secret(s.value.as_bytes().to_vec())
    } else if let Some(f) = &k.secret_file {
        let mut bytes = ck.read_file(f, "secret file")?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        KeyMaterial::Secret(bytes)
    } else {
        let public = match (&k.public_key, &k.public_key_file) {
            (Some(p), _) => p.value.as_bytes().to_vec(),
            (None, Some(f)) => ck.read_file(f, "public key file")?,
            (None, None) => return None,
        };
        let private = match &k.private_key_file {
            Some(f) => Some(ck.read_file(f, "private key file")?),
            None => None,
        };
        KeyMaterial::Pem { public, private }
    };
    if algorithms.len() != k.algorithms.value.len() {
        return None;
    }
    let is_pem = matches!(material, KeyMaterial::Pem { .. });
    if k.sign && is_pem && k.private_key_file.is_none() {
        ck.at(
            &k.kid,
            format!("key `{}` has `sign: true` but no `private_key_file`: add the PEM private key or drop `sign`", k.kid.value),
        );
        return None;
    }
    match Key::new(k.kid.value.clone(), algorithms, material, k.sign) {
        Ok(key) => Some(key),
        Err(e) => {
            ck.at(&k.algorithms, format!("key `{}`: {e}", k.kid.value));
            None
        }
    }
}

fn compile_headers(ck: &mut Checker, raw: &RawConfig) -> HeaderPolicy {
    let mut policy = HeaderPolicy::default();
    let parse = |ck: &mut Checker, s: &Spanned<String>| match HeaderName::from_bytes(
        s.value.trim().as_bytes(),
    ) {
        Ok(h) => Some(h),
        Err(_) => {
            ck.at(s, format!("`{}` is not a valid header name", s.value));
            None
        }
    };
    if let Some(list) = &raw.headers.identity {
        policy.identity = list.iter().filter_map(|s| parse(ck, s)).collect();
    }
    if let Some(prefixes) = &raw.headers.identity_prefixes {
        policy.identity_prefixes = prefixes
            .iter()
            .map(|p| p.value.trim().to_ascii_lowercase())
            .collect();
    }
    if let Some(rid) = &raw.headers.request_id {
        if let Some(h) = parse(ck, rid) {
            policy.request_id = h;
        }
    }
    policy
}

fn compile_upstream(ck: &mut Checker, name: &str, up: &Spanned<RawUpstream>) -> Option<Upstream> {
    let u = &up.value;
    if u.targets.value.is_empty() {
        ck.at(
            &u.targets,
            format!("upstream `{name}` has no targets: list at least one `host:port`"),
        );
        return None;
    }
    let mut targets = Vec::new();
    for t in &u.targets.value {
        match resolve(&t.value) {
            Ok(addr) => targets.push(Target::new(addr, t.value.clone())),
            Err(why) => ck.at(t, format!("upstream `{name}` target `{}` {why}", t.value)),
        }
    }
    let health_check = u.health_check.as_ref().map(|h| HealthCheck {
        interval: h.interval.map(|d| d.0).unwrap_or(Duration::from_secs(5)),
        timeout: h.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(1)),
        path: h.path.as_ref().map(|p| p.value.clone()),
        unhealthy_after: h.unhealthy_after.unwrap_or(2).max(1),
        healthy_after: h.healthy_after.unwrap_or(1).max(1),
    });
    if let Some(hc) = &u.health_check {
        if let Some(p) = &hc.path {
            if !p.value.starts_with('/') || p.value.contains(['\r', '\n', ' ']) {
                ck.at(
                    p,
                    format!(
                        "health check path `{}` must start with `/` and contain no spaces",
                        p.value
                    ),
                );
            }
        }
    }
    if targets.len() != u.targets.value.len() {
        return None;
    }
    let d = |v: Option<crate::config::units::HumanDuration>, default: u64| {
        v.map(|d| d.0).unwrap_or(Duration::from_secs(default))
    };
    Some(Upstream::new(
        name.into(),
        targets,
        d(u.connect_timeout, 2),
        d(u.read_timeout, 30),
        d(u.write_timeout, 30),
        health_check,
    ))
}

fn resolve(target: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !target.contains(':') {
        return Err("has no port: write it as `host:port`".into());
    }
    match target.to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(|| "resolves to no address".into()),
        Err(e) => Err(format!("cannot be resolved ({e}): check the host name")),
    }
}

fn compile_route(
    ck: &mut Checker,
    r: &RawRoute,
    upstream_index: &HashMap<String, usize>,
    raw_upstreams: &std::collections::BTreeMap<String, Spanned<RawUpstream>>,
    plugins: &HashMap<String, Arc<CompiledPlugin>>,
    raw_plugins: &std::collections::BTreeMap<String, Spanned<RawPlugin>>,
) -> Option<Route> {
    let name = &r.name.value;
    let m = &r.matcher.value;
    let path = match (&m.path, &m.path_prefix) {
        (Some(p), None) => PathMatch::Exact(p.value.clone()),
        (None, Some(p)) => PathMatch::Prefix(p.value.clone()),
        _ => {
            ck.at(
                &r.matcher,
                format!(
                    "route `{name}`: `match` needs exactly one of `path` (exact) or `path_prefix`"
                ),
            );
            return None;
        }
    };
    let path_span = m
        .path
        .as_ref()
        .or(m.path_prefix.as_ref())
        .expect("one is set");
    if !path.as_str().starts_with('/') {
        ck.at(
            path_span,
            format!(
                "route `{name}`: path `{}` must start with `/`",
                path.as_str()
            ),
        );
    }
    let host = m.host.as_ref().map(|h| {
        let h = h.value.trim().to_ascii_lowercase();
        h.split(':').next().unwrap_or("").to_owned()
    });
    let methods = m.methods.as_ref().map(|ms| {
        ms.iter()
            .filter_map(
                |s| match Method::from_bytes(s.value.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        ck.at(
                            s,
                            format!("route `{name}`: `{}` is not an HTTP method", s.value),
                        );
                        None
                    }
                },
            )
            .collect::<Vec<_>>()
    });
    let upstream = match upstream_index.get(&r.upstream.value) {
        Some(i) => *i,
        None => {
            let known: Vec<&str> = raw_upstreams.keys().map(String::as_str).collect();
            let hint = if known.is_empty() {
                "no upstreams are defined: add one under `upstreams`".to_owned()
            } else {
                format!("known: {}", known.join(", "))
            };
            if !raw_upstreams.contains_key(&r.upstream.value) {
                ck.at(
                    &r.upstream,
                    format!(
                        "route `{name}` names unknown upstream `{}` ({hint})",
                        r.upstream.value
                    ),
                );
            }
            return None;
        }
    };
    for (field, value) in [
        ("strip_prefix", &r.strip_prefix),
        ("add_prefix", &r.add_prefix),
    ] {
        if let Some(p) = value {
            if !p.value.starts_with('/') {
                ck.at(p, format!("route `{name}`: `{field}` must start with `/`"));
            }
        }
    }
    if let Some(strip) = &r.strip_prefix {
        if !crate::route::prefix_matches(&strip.value, path.as_str()) {
            ck.at(
                strip,
                format!(
                    "route `{name}`: strip_prefix `{}` is not a prefix of the route's path `{}`, so it would never apply",
                    strip.value,
                    path.as_str()
                ),
            );
        }
    }
    let mut requirements = Vec::new();
    for req in &r.require {
        let q = &req.value;
        let rule = match (&q.one_of, &q.equals) {
            (Some(list), None) => Rule::OneOf(list.clone()),
            (None, Some(v)) => Rule::Equals(v.clone()),
            _ => {
                ck.at(req, format!("route `{name}`: a requirement needs exactly one of `in: [...]` or `equals: value`"));
                continue;
            }
        };
        if q.claim.value.is_empty() || q.claim.value.split('.').any(str::is_empty) {
            ck.at(
                &q.claim,
                format!(
                    "route `{name}`: `{}` is not a claim path (use `role` or `org.tier`)",
                    q.claim.value
                ),
            );
            continue;
        }
        requirements.push(Requirement {
            claim: q.claim.value.split('.').map(str::to_owned).collect(),
            claim_text: q.claim.value.clone(),
            rule,
        });
    }
    let auth = r
        .auth
        .as_ref()
        .map(|a| a.value)
        .unwrap_or(AuthMode::Required);
    if auth == AuthMode::None && !requirements.is_empty() {
        ck.at(&r.name, format!("route `{name}` has claim requirements but `auth: none`: requirements need a token; use `auth: required`"));
    }
    let mut chain = Vec::new();
    for p in &r.plugins {
        match plugins.get(&p.value) {
            Some(plugin) => chain.push(plugin.clone()),
            // Configured but failed to load: already reported at its module.
            None if raw_plugins.contains_key(&p.value) => {}
            None => {
                let known: Vec<&str> = raw_plugins.keys().map(String::as_str).collect();
                let hint = if known.is_empty() {
                    "no plugins are defined: add one under `plugins`".to_owned()
                } else {
                    format!("known: {}", known.join(", "))
                };
                ck.at(
                    p,
                    format!("route `{name}` names unknown plugin `{}` ({hint})", p.value),
                );
            }
        }
    }
    Some(Route {
        plugins: PluginChain::new(chain),
        name: name.as_str().into(),
        host,
        path,
        methods,
        upstream,
        auth,
        strip_prefix: r.strip_prefix.as_ref().map(|p| p.value.clone()),
        add_prefix: r.add_prefix.as_ref().map(|p| p.value.clone()),
        requirements,
        forward_authorization: r.forward_authorization.unwrap_or(true),
        login: None,
    })
}

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

fn compile_login(ck: &mut Checker, route: &str, raw: &RawLogin) -> Option<LoginCapture> {
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

fn compile_sessions(
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
        None => "/api/auth".to_owned(),
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
    let d = |v: Option<crate::config::units::HumanDuration>, default: u64| {
        v.map(|d| d.0).unwrap_or(Duration::from_secs(default))
    };
    let access_ttl = d(raw.access_token_ttl, 15 * 60);
    let refresh_ttl = d(raw.refresh_token_ttl, 7 * 24 * 3600);
    if access_ttl.is_zero() || refresh_ttl.is_zero() {
        ck.at(
            spanned,
            "`access_token_ttl` and `refresh_token_ttl` must be longer than zero",
        );
        ok = false;
    }
    let cookie = raw.cookie.as_ref().and_then(|c| {
        let c = &c.value;
        let name = c.name.as_ref().map(|n| n.value.clone()).unwrap_or_else(|| "portcullis_refresh".into());
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
            None => HeaderName::from_static("x-csrf-protection"),
        };
        Some(CookieSettings {
            name,
            secure: c.secure.unwrap_or(true),
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
    let window = d(raw.rate_limit.window, 60);
    if window.is_zero() {
        ck.at(spanned, "`rate_limit.window` must be longer than zero");
        ok = false;
    }
    // One connection for SQLite (its single write lock), eight for Postgres.
    let defaults = PoolSettings::for_store(&store_url);
    let first = |v: Option<&Spanned<super::raw::OneOrMany>>| {
        v.and_then(|v| v.value.clone().into_vec().into_iter().next())
    };
    ok.then(|| SessionSettings {
        store_url,
        migrate: raw.migrate.unwrap_or(true),
        base_path,
        access_ttl,
        refresh_ttl,
        rotation: raw.rotation.unwrap_or(true),
        reuse_grace: d(raw.reuse_grace, 10),
        refresh_tokens: RefreshTokens::new(raw.refresh_secret.value.as_bytes().to_vec()),
        per_ip: RateLimiter::new(raw.rate_limit.per_ip.unwrap_or(60), window),
        per_token: RateLimiter::new(raw.rate_limit.per_token.unwrap_or(10), window),
        cookie,
        admin_token_hash,
        cleanup_interval: d(raw.cleanup_interval, 600).max(Duration::from_secs(1)),
        revocation_poll_interval: d(raw.revocation_poll_interval, 10)
            .max(Duration::from_millis(100)),
        pool: PoolSettings {
            max_connections: raw
                .pool
                .max_connections
                .unwrap_or(defaults.max_connections)
                .max(1),
            acquire_timeout: raw
                .pool
                .acquire_timeout
                .map(|d| d.0)
                .unwrap_or(defaults.acquire_timeout),
        },
        issuer: first(jwt.and_then(|j| j.issuer.as_ref())),
        audience: first(jwt.and_then(|j| j.audience.as_ref())),
        leeway: jwt
            .and_then(|j| j.leeway)
            .map(|l| l.0)
            .unwrap_or(Duration::from_secs(30)),
    })
}

/// The process's one Wasm engine, started on first use (only configs with
/// plugins pay for it) and shared by every config generation.
fn plugin_host() -> Result<&'static PluginHost, String> {
    static HOST: std::sync::OnceLock<Result<PluginHost, String>> = std::sync::OnceLock::new();
    HOST.get_or_init(|| PluginHost::new().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

fn compile_plugins(
    ck: &mut Checker,
    raw: &std::collections::BTreeMap<String, Spanned<RawPlugin>>,
) -> HashMap<String, Arc<CompiledPlugin>> {
    let mut out = HashMap::new();
    if raw.is_empty() {
        return out;
    }
    let host = match plugin_host() {
        Ok(h) => h,
        Err(e) => {
            ck.general(format!("the Wasm engine could not start: {e}"));
            return out;
        }
    };
    for (name, spanned) in raw {
        let p = &spanned.value;
        let header_list = |ck: &mut Checker, list: &[Spanned<String>]| -> Option<Vec<HeaderName>> {
            let mut names = Vec::new();
            let mut ok = true;
            for h in list {
                match HeaderName::from_bytes(h.value.trim().as_bytes()) {
                    Ok(n) => names.push(n),
                    Err(_) => {
                        ck.at(
                            h,
                            format!("plugin `{name}`: `{}` is not a valid header name", h.value),
                        );
                        ok = false;
                    }
                }
            }
            ok.then_some(names)
        };
        let allow = header_list(ck, &p.allow_headers);
        let request = header_list(ck, &p.request_headers);
        let wasm = ck.read_file(&p.module, "plugin module");
        let (Some(allow_headers), Some(request_headers), Some(wasm)) = (allow, request, wasm)
        else {
            continue;
        };
        let defaults = Limits::default();
        let spec = PluginSpec {
            name: name.clone(),
            wasm,
            config: p.config.clone().unwrap_or_else(|| serde_json::json!({})),
            allow_headers,
            request_headers,
            on_error: match p.on_error {
                Some(PluginOnError::Skip) => OnError::Skip,
                _ => OnError::Deny,
            },
            isolation: match p.isolation {
                Some(PluginIsolation::PerRequest) => Isolation::PerRequest,
                _ => Isolation::Reused,
            },
            limits: Limits {
                memory_bytes: p.memory_limit.map(|b| b.0).unwrap_or(defaults.memory_bytes),
                deadline: p.timeout.map(|d| d.0).unwrap_or(defaults.deadline),
                max_input_bytes: defaults.max_input_bytes,
            },
        };
        match CompiledPlugin::compile(host, spec) {
            Ok(plugin) => {
                out.insert(name.clone(), Arc::new(plugin));
            }
            Err(e) => ck.at(&p.module, e.to_string()),
        }
    }
    out
}
