//! Route table: compiled once per config generation, matched in config order
//! (first match wins), plus the claim requirements a route imposes.

use std::sync::Arc;

use http::Method;
use serde_json::{Map, Value};

pub use crate::config::raw::AuthMode;
use crate::plugin::PluginChain;

/// How a route matches the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    /// Segment-aware: `/api` matches `/api` and `/api/x`, not `/apix`.
    Prefix(String),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => prefix_matches(p, path),
        }
    }

    /// True when every path this matcher accepts is also accepted by `earlier`.
    pub fn covered_by(&self, earlier: &PathMatch) -> bool {
        match (earlier, self) {
            (PathMatch::Exact(a), PathMatch::Exact(b)) => a == b,
            (PathMatch::Exact(_), PathMatch::Prefix(_)) => false,
            (PathMatch::Prefix(a), PathMatch::Exact(b) | PathMatch::Prefix(b)) => {
                prefix_matches(a, b)
            }
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        }
    }
}

/// Segment-aware prefix test.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with('/')
            || path.len() == prefix.len()
            || path.as_bytes()[prefix.len()] == b'/')
}

/// A claim that must hold for a request to pass (else 403).
#[derive(Debug, Clone)]
pub struct Requirement {
    /// Dotted path into the claims, split once at load.
    pub claim: Vec<String>,
    pub claim_text: String,
    pub rule: Rule,
}

#[derive(Debug, Clone)]
pub enum Rule {
    /// The claim, or any element of an array claim, is one of these.
    OneOf(Vec<Value>),
    Equals(Value),
}

impl Requirement {
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

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    /// Lower-case host without port; `None` matches any host.
    pub host: Option<String>,
    pub path: PathMatch,
    pub methods: Option<Vec<Method>>,
    /// Index into the generation's upstream list.
    pub upstream: usize,
    pub auth: AuthMode,
    pub strip_prefix: Option<String>,
    pub add_prefix: Option<String>,
    pub requirements: Vec<Requirement>,
    pub forward_authorization: bool,
    /// Wasm plugins run after authentication, in order.
    pub plugins: PluginChain,
    /// Login interception: open a session from the upstream's 2xx answer.
    pub login: Option<Arc<crate::session::LoginCapture>>,
}

impl Route {
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
        self.path.matches(path)
    }

    /// The path sent upstream after `strip_prefix` / `add_prefix`.
    pub fn upstream_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        let mut rest = path;
        if let Some(strip) = &self.strip_prefix {
            if let Some(r) = path.strip_prefix(strip.as_str()) {
                rest = r;
            }
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

/// All routes of a generation.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
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

    pub fn get(&self, idx: usize) -> Option<&Route> {
        self.routes.get(idx)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }
}

/// Refuses paths an upstream might resolve differently than the router did
/// (`/public/../admin`, encoded slashes or dots, backslashes), so a prefix
/// route can never be bypassed by path tricks.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("path must start with `/`");
    }
    let bytes = path.as_bytes();
    let encoded_separator = bytes.windows(3).any(|w| {
        w[0] == b'%'
            && (w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'f')
                || w[1] == b'5' && w[2].eq_ignore_ascii_case(&b'c'))
    });
    if encoded_separator || bytes.contains(&b'\\') {
        return Err("encoded slashes and backslashes are not allowed in the path");
    }
    // Checked on every request: no allocation. A segment is a dot segment
    // when it is only `.`/`%2e` units, one or two of them.
    for segment in path.split('/') {
        if is_dot_segment(segment.as_bytes()) {
            return Err("dot segments (`.` and `..`) are not allowed in the path");
        }
    }
    Ok(())
}

/// `.`, `..`, or either spelled with `%2e` (any case) for some of the dots.
fn is_dot_segment(mut segment: &[u8]) -> bool {
    let mut dots = 0;
    while !segment.is_empty() {
        if segment[0] == b'.' {
            segment = &segment[1..];
        } else if segment.len() >= 3
            && segment[0] == b'%'
            && segment[1] == b'2'
            && segment[2].eq_ignore_ascii_case(&b'e')
        {
            segment = &segment[3..];
        } else {
            return false;
        }
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dot_segments_are_refused_in_any_spelling_and_nothing_else() {
        for bad in [
            "/a/./b",
            "/a/../b",
            "/..",
            "/.",
            "/a/%2e%2E/b",
            "/a/.%2e",
            "/%2E",
            "/a/%2e.",
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for good in [
            "/",
            "/a/b",
            "/a/.../b",
            "/a/.b",
            "/a/b.",
            "/%2e%2e%2e",
            "/a/%2",
            "/a%2",
            "/x/%2ex",
        ] {
            assert_eq!(check_path(good), Ok(()), "{good}");
        }
        assert!(check_path("a/b").is_err());
    }

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
        assert!(PathMatch::Prefix("/api/v1".into()).covered_by(&api));
        assert!(PathMatch::Exact("/api/x".into()).covered_by(&api));
        assert!(!PathMatch::Prefix("/apiv2".into()).covered_by(&api));
        assert!(!PathMatch::Prefix("/api".into()).covered_by(&PathMatch::Exact("/api".into())));
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
    fn traversal_paths_are_refused() {
        assert!(check_path("/api/users/1").is_ok());
        assert!(check_path("/public/../admin").is_err());
        assert!(check_path("/public/%2E%2e/admin").is_err());
        assert!(check_path("/a%2fb").is_err());
        assert!(check_path("/a/./b").is_err());
    }
}
