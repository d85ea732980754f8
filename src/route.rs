//! Route table: compiled once per config generation, matched in config order
//! (first match wins), plus the claim requirements a route imposes.

use std::sync::{Arc, OnceLock};

use http::Method;
use serde_json::{Map, Value};

use crate::plugin::PluginChain;
use serde::Deserialize;

/// Whether a route needs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A valid token is needed; missing or invalid answers 401.
    Required,
    /// No token passes as anonymous; a token that is sent must be valid.
    Optional,
    /// Tokens are not looked at.
    None,
}

/// How a route matches the request path. The pattern is canonical
/// (see [`crate::canonical::path`]) and compared with the request's
/// canonical path, ASCII case-insensitively unless the route says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// `match.path`: the whole path, nothing more.
    Exact(String),
    /// Segment-aware: `/api` matches `/api` and `/api/x`, not `/apix`.
    Prefix(String),
}

impl PathMatch {
    /// Whether the canonical `path` (as matched, without `;params`) is
    /// accepted by this pattern.
    pub fn matches(&self, path: &str, case_sensitive: bool) -> bool {
        match self {
            PathMatch::Exact(p) => same(p, path, case_sensitive),
            PathMatch::Prefix(p) => prefix_matches_with(p, path, case_sensitive),
        }
    }

    /// True when every path this matcher accepts is also accepted by `earlier`.
    pub fn covered_by(&self, earlier: &PathMatch, case_sensitive: bool) -> bool {
        match (earlier, self) {
            (PathMatch::Exact(a), PathMatch::Exact(b)) => same(a, b, case_sensitive),
            (PathMatch::Exact(_), PathMatch::Prefix(_)) => false,
            (PathMatch::Prefix(a), PathMatch::Exact(b) | PathMatch::Prefix(b)) => {
                prefix_matches_with(a, b, case_sensitive)
            }
        }
    }

    /// The pattern, in canonical form.
    pub fn as_str(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        }
    }
}

fn same(a: &str, b: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        a == b
    } else {
        a.eq_ignore_ascii_case(b)
    }
}

/// Segment-aware, case-sensitive prefix test.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix_matches_with(prefix, path, true)
}

/// Segment-aware prefix test; ASCII case-insensitive unless `case_sensitive`.
pub fn prefix_matches_with(prefix: &str, path: &str, case_sensitive: bool) -> bool {
    let (p, q) = (prefix.as_bytes(), path.as_bytes());
    q.len() >= p.len()
        && same_bytes(p, &q[..p.len()], case_sensitive)
        && (p.ends_with(b"/") || q.len() == p.len() || q[p.len()] == b'/')
}

fn same_bytes(a: &[u8], b: &[u8], case_sensitive: bool) -> bool {
    if case_sensitive {
        a == b
    } else {
        a.eq_ignore_ascii_case(b)
    }
}

/// A claim that must hold for a request to pass (else 403).
#[derive(Debug, Clone)]
pub struct Requirement {
    /// Dotted path into the claims, split once at load.
    pub claim: Vec<String>,
    /// The claim path as written in `require[].claim`, for messages.
    pub claim_text: String,
    /// What the claim's value must be.
    pub rule: Rule,
}

/// The test a required claim's value must pass.
#[derive(Debug, Clone)]
pub enum Rule {
    /// The claim, or any element of an array claim, is one of these.
    OneOf(Vec<Value>),
    /// The claim equals this value exactly (`equals`).
    Equals(Value),
}

impl Requirement {
    /// Whether `claims` satisfy the requirement; an absent claim never does.
    pub fn holds(&self, claims: &Map<String, Value>) -> bool {
        let mut parts = self.claim.iter();
        let Some(first) = parts.next() else {
            return false;
        };
        let mut value = claims.get(first.as_str());
        for part in parts {
            value = value.and_then(|v| v.get(part.as_str()));
        }
        let Some(value) = value else {
            return false;
        };
        match &self.rule {
            Rule::Equals(want) => value == want,
            Rule::OneOf(allowed) => match value {
                Value::Array(items) => items.iter().any(|i| allowed.contains(i)),
                v => allowed.contains(v),
            },
        }
    }
}

/// A field of the verified client certificate a requirement tests
/// (`require[].client_cert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertField {
    /// The SHA-256 thumbprint, base64url without padding (RFC 8705 `x5t#S256`).
    Sha256,
    /// The subject distinguished name as text, e.g. `CN=alice, O=Example`.
    Subject,
}

impl CertField {
    /// The field's name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            CertField::Sha256 => "sha256",
            CertField::Subject => "subject",
        }
    }
}

/// A requirement on the verified client certificate (else 403).
#[derive(Debug, Clone)]
pub struct CertRequirement {
    /// Which field of the certificate.
    pub field: CertField,
    /// What its value must be (compared as a JSON string).
    pub rule: Rule,
}

impl CertRequirement {
    /// Whether the certificate field `value` passes; no certificate
    /// (`None`) never does.
    pub fn holds(&self, value: Option<&str>) -> bool {
        let Some(value) = value else {
            return false;
        };
        match &self.rule {
            Rule::Equals(want) => want.as_str() == Some(value),
            Rule::OneOf(allowed) => allowed.iter().any(|a| a.as_str() == Some(value)),
        }
    }
}

/// What a route asks of the client certificate (mTLS).
#[derive(Debug, Clone, Default)]
pub struct ClientCertRules {
    /// `require_client_cert`: no verified certificate answers 403.
    pub required: bool,
    /// `require[].client_cert`: tests on the certificate's fields.
    pub requirements: Vec<CertRequirement>,
}

impl ClientCertRules {
    /// Whether the route looks at client certificates at all.
    pub fn is_empty(&self) -> bool {
        !self.required && self.requirements.is_empty()
    }
}

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    /// `name` from the config, as in logs, messages and metric labels.
    pub name: Arc<str>,
    /// Lower-case host without port; `None` matches any host.
    pub host: Option<String>,
    /// `match.path` or `match.path_prefix`.
    pub path: PathMatch,
    /// `match.methods`; `None` matches any method.
    pub methods: Option<Vec<Method>>,
    /// Index into the generation's upstream list.
    pub upstream: usize,
    /// `auth` (default `required`).
    pub auth: AuthMode,
    /// `strip_prefix`: removed from the path, by segments, before
    /// forwarding; `None` removes nothing.
    pub strip_prefix: Option<String>,
    /// `add_prefix`: put in front of the (stripped) path before forwarding;
    /// `None` adds nothing.
    pub add_prefix: Option<String>,
    /// `require`: claim checks that must all hold, else 403.
    pub requirements: Vec<Requirement>,
    /// Whether the client's `Authorization` header reaches the upstream
    /// (`forward_authorization`, default true).
    pub forward_authorization: bool,
    /// Compare paths case-sensitively (default: ASCII case-insensitive).
    pub case_sensitive: bool,
    /// Wasm plugins run after authentication, in order.
    pub plugins: PluginChain,
    /// Login interception: open a session from the upstream's 2xx answer.
    pub login: Option<Arc<crate::session::LoginCapture>>,
    /// Client-certificate requirements (`require_client_cert`, `require[].client_cert`).
    pub client_cert: ClientCertRules,
    /// Issuers whose tokens this route accepts (`issuers`); `None`: any.
    pub issuers: Option<Vec<Arc<str>>>,
    /// This route's busiest metric series, resolved on first use.
    pub series: RouteSeries,
}

/// Metric series of one route, each resolved on its first use (so the
/// exposition is the same as with label lookups) and then updated without
/// hashing labels on every request.
#[derive(Debug, Default)]
pub struct RouteSeries {
    /// `requests_total{route, status="200"}`.
    pub ok: OnceLock<prometheus::IntCounter>,
    /// `request_duration_seconds{route}`.
    pub duration: OnceLock<prometheus::Histogram>,
    /// `jwt_validations_total{route, result="ok", reason="cached"}`.
    pub jwt_cached: OnceLock<prometheus::IntCounter>,
    /// Per plugin of the chain, in order: `plugin_invocations_total{plugin,
    /// result="ok"}` and `plugin_duration_seconds{plugin}`.
    pub plugins: Vec<PluginSeries>,
}

/// Metric series of one plugin on a route's chain.
#[derive(Debug, Default)]
pub struct PluginSeries {
    /// `plugin_invocations_total{plugin, result="ok"}`.
    pub ok: OnceLock<prometheus::IntCounter>,
    /// `plugin_duration_seconds{plugin}`.
    pub duration: OnceLock<prometheus::Histogram>,
}

impl RouteSeries {
    /// Empty handles for a route whose chain has `plugins` plugins.
    pub fn new(plugins: usize) -> RouteSeries {
        RouteSeries {
            plugins: (0..plugins).map(|_| PluginSeries::default()).collect(),
            ..RouteSeries::default()
        }
    }
}

impl Route {
    /// Whether a request fits this route: `host` lower-case without port,
    /// `path` canonical as matched, and the method.
    pub fn matches(&self, host: Option<&str>, path: &str, method: &Method) -> bool {
        if let Some(want) = &self.host {
            if host != Some(want.as_str()) {
                return false;
            }
        }
        if let Some(methods) = &self.methods {
            if !methods.contains(method) {
                return false;
            }
        }
        self.path.matches(path, self.case_sensitive)
    }

    /// The path sent upstream after `strip_prefix` / `add_prefix`. `path`
    /// is the canonical forwarded path, which matched this route; the
    /// prefix is stripped by segments, so a different case or `;params`
    /// in those segments (as matched) are stripped with them.
    pub fn upstream_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        let mut rest = path;
        if let Some(strip) = &self.strip_prefix {
            rest = after_segments(path, segment_count(strip));
        }
        match (&self.add_prefix, rest.len() == path.len()) {
            (None, true) => path.into(),
            (prefix, _) => {
                let prefix = prefix.as_deref().unwrap_or("");
                let mut out = String::with_capacity(prefix.len() + rest.len() + 1);
                out.push_str(prefix.trim_end_matches('/'));
                if !rest.starts_with('/') {
                    out.push('/');
                }
                out.push_str(rest);
                out.into()
            }
        }
    }
}

/// Path segments of a prefix: `/` 0, `/api` and `/api/` 1, `/api/v1` 2.
fn segment_count(prefix: &str) -> usize {
    prefix.split('/').filter(|s| !s.is_empty()).count()
}

/// `path` after its first `n` segments (from the `/` that follows them).
fn after_segments(path: &str, n: usize) -> &str {
    if n == 0 {
        return path;
    }
    let mut slashes = 0;
    for (i, b) in path.bytes().enumerate() {
        if b == b'/' {
            if slashes == n {
                return &path[i..];
            }
            slashes += 1;
        }
    }
    ""
}

/// All routes of a generation.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Routes in config order, the order they are tried in.
    pub fn new(routes: Vec<Route>) -> Router {
        Router { routes }
    }

    /// The first route matching the request, with its index.
    pub fn find(&self, host: Option<&str>, path: &str, method: &Method) -> Option<(usize, &Route)> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(host, path, method))
    }

    /// The route at an index from [`find`](Self::find).
    pub fn get(&self, idx: usize) -> Option<&Route> {
        self.routes.get(idx)
    }

    /// Every route, in match order.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prefix_matching_respects_segments() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/users"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api/", "/api/x"));
    }

    #[test]
    fn shadowing_is_detected_for_covered_matchers() {
        let api = PathMatch::Prefix("/api".into());
        assert!(PathMatch::Prefix("/api/v1".into()).covered_by(&api, true));
        assert!(PathMatch::Exact("/api/x".into()).covered_by(&api, true));
        assert!(!PathMatch::Prefix("/apiv2".into()).covered_by(&api, true));
        assert!(
            !PathMatch::Prefix("/api".into()).covered_by(&PathMatch::Exact("/api".into()), true)
        );
    }

    #[test]
    fn requirements_match_scalars_arrays_and_nested_claims() {
        let claims = json!({"role": "admin", "groups": ["a", "b"], "org": {"tier": 3}});
        let claims = claims.as_object().unwrap();
        let req = |claim: &str, rule| Requirement {
            claim: claim.split('.').map(str::to_owned).collect(),
            claim_text: claim.into(),
            rule,
        };
        assert!(req("role", Rule::OneOf(vec![json!("admin")])).holds(claims));
        assert!(!req("role", Rule::OneOf(vec![json!("ops")])).holds(claims));
        assert!(req("groups", Rule::OneOf(vec![json!("b")])).holds(claims));
        assert!(req("org.tier", Rule::Equals(json!(3))).holds(claims));
        assert!(!req("missing", Rule::Equals(json!(1))).holds(claims));
    }

    #[test]
    fn client_certificate_requirements_need_a_certificate_with_the_value() {
        let pinned = CertRequirement {
            field: CertField::Sha256,
            rule: Rule::OneOf(vec![json!("abc"), json!("def")]),
        };
        assert!(pinned.holds(Some("def")));
        assert!(!pinned.holds(Some("xyz")));
        assert!(!pinned.holds(None));
        let subject = CertRequirement {
            field: CertField::Subject,
            rule: Rule::Equals(json!("CN=alice")),
        };
        assert!(subject.holds(Some("CN=alice")));
        assert!(!subject.holds(Some("CN=bob")));
    }

    #[test]
    fn matching_ignores_ascii_case_unless_the_route_is_case_sensitive() {
        let admin = PathMatch::Prefix("/api/admin".into());
        assert!(admin.matches("/API/Admin/users", false));
        assert!(!admin.matches("/API/Admin/users", true));
        assert!(admin.matches("/api/admin", true));
        assert!(!admin.matches("/api/adminx", false));
        let exact = PathMatch::Exact("/Login".into());
        assert!(exact.matches("/login", false));
        assert!(!exact.matches("/login", true));
    }

    #[test]
    fn strip_prefix_removes_whole_segments_in_any_case() {
        let route = |strip: &str, add: Option<&str>| Route {
            name: "r".into(),
            host: None,
            path: PathMatch::Prefix(strip.into()),
            methods: None,
            upstream: 0,
            auth: AuthMode::None,
            strip_prefix: Some(strip.into()),
            add_prefix: add.map(str::to_owned),
            requirements: Vec::new(),
            forward_authorization: true,
            case_sensitive: false,
            plugins: PluginChain::new(Vec::new()),
            login: None,
            client_cert: ClientCertRules::default(),
            issuers: None,
            series: RouteSeries::default(),
        };
        assert_eq!(route("/api", None).upstream_path("/API/users"), "/users");
        assert_eq!(route("/api", None).upstream_path("/api"), "/");
        assert_eq!(route("/api/", None).upstream_path("/api/x"), "/x");
        assert_eq!(
            route("/api/v1", Some("/v2")).upstream_path("/Api/V1/x"),
            "/v2/x"
        );
        assert_eq!(
            route("/api", None).upstream_path("/api;jsessionid=1/users;v=2"),
            "/users;v=2"
        );
        assert_eq!(route("/", Some("/svc")).upstream_path("/a"), "/svc/a");
    }
}
