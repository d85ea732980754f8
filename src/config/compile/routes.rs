//! The `routes` section: matchers in canonical form, requirements, plugin
//! chains, and the checks between routes (shadowing, case-only overlaps).

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;
use serde_saphyr::Spanned;

use super::Checker;
use crate::canonical::{EmptySegments, PathParams, PathRules, ReadPolicy};
use crate::config::defaults;
use crate::config::raw::{AuthMode, RawPlugin, RawRoute, RawUpstream};
use crate::plugin::{CompiledPlugin, PluginChain};
use crate::route::{
    CertRequirement, ClientCertRules, PathMatch, Requirement, Route, RouteSeries, Rule,
};

pub(super) fn compile_route(
    ck: &mut Checker,
    r: &RawRoute,
    upstream_index: &HashMap<String, usize>,
    raw_upstreams: &std::collections::BTreeMap<String, Spanned<RawUpstream>>,
    plugins: &HashMap<String, Arc<CompiledPlugin>>,
    raw_plugins: &std::collections::BTreeMap<String, Spanned<RawPlugin>>,
    read: &ReadPolicy,
) -> Option<Route> {
    let name = &r.name.value;
    let m = &r.matcher.value;
    let path = match (&m.path, &m.path_prefix) {
        (Some(p), None) => PathMatch::Exact(canonical_route_path(ck, name, "path", p)?),
        (None, Some(p)) => PathMatch::Prefix(canonical_route_path(ck, name, "path_prefix", p)?),
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
    let case_sensitive = r.case_sensitive.unwrap_or(read.case_sensitive);
    let mut strip_prefix = None;
    let mut add_prefix = None;
    for (field, value, slot) in [
        ("strip_prefix", &r.strip_prefix, &mut strip_prefix),
        ("add_prefix", &r.add_prefix, &mut add_prefix),
    ] {
        if let Some(p) = value {
            *slot = canonical_route_path(ck, name, field, p);
        }
    }
    if let (Some(strip), Some(canonical)) = (&r.strip_prefix, &strip_prefix) {
        if !crate::route::prefix_matches_with(canonical, path.as_str(), case_sensitive) {
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
    let mut cert_requirements = Vec::new();
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
        let claim = match (&q.claim, &q.client_cert) {
            (Some(claim), None) => claim,
            (None, Some(field)) => {
                let values: Vec<&serde_json::Value> = match &rule {
                    Rule::OneOf(list) => list.iter().collect(),
                    Rule::Equals(v) => vec![v],
                };
                if values.iter().any(|v| !v.is_string()) {
                    ck.at(
                        req,
                        format!(
                            "route `{name}`: client_cert {} is text: write the value(s) as strings",
                            field.value.as_str()
                        ),
                    );
                    continue;
                }
                cert_requirements.push(CertRequirement {
                    field: field.value,
                    rule,
                });
                continue;
            }
            _ => {
                ck.at(
                    req,
                    format!("route `{name}`: a requirement names exactly one of `claim` (a token claim) or `client_cert` (sha256 or subject of the client certificate)"),
                );
                continue;
            }
        };
        if claim.value.is_empty() || claim.value.split('.').any(str::is_empty) {
            ck.at(
                claim,
                format!(
                    "route `{name}`: `{}` is not a claim path (use `role` or `org.tier`)",
                    claim.value
                ),
            );
            continue;
        }
        requirements.push(Requirement {
            claim: claim.value.split('.').map(str::to_owned).collect(),
            claim_text: claim.value.clone(),
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
    let series = RouteSeries::new(chain.len());
    Some(Route {
        plugins: PluginChain::new(chain),
        series,
        name: name.as_str().into(),
        host,
        path,
        methods,
        upstream,
        auth,
        strip_prefix,
        add_prefix,
        requirements,
        forward_authorization: r
            .forward_authorization
            .unwrap_or(defaults::FORWARD_AUTHORIZATION),
        case_sensitive,
        login: None,
        client_cert: ClientCertRules {
            required: r
                .require_client_cert
                .as_ref()
                .map(|b| b.value)
                .unwrap_or(defaults::REQUIRE_CLIENT_CERT),
            requirements: cert_requirements,
        },
        issuers: r
            .issuers
            .as_ref()
            .map(|list| list.value.iter().map(|n| n.value.as_str().into()).collect()),
    })
}

/// A route path in canonical form, read with the request rules that make
/// the most of it (`//` merged, `;params` kept and then dropped); a path no
/// request could ever be read as is an error, a rewritten one a warning.
fn canonical_route_path(
    ck: &mut Checker,
    route: &str,
    field: &str,
    written: &Spanned<String>,
) -> Option<String> {
    let text = &written.value;
    if !text.starts_with('/') {
        ck.at(
            written,
            format!("route `{route}`: `{field}` `{text}` must start with `/`"),
        );
        return None;
    }
    let rules = PathRules {
        empty_segments: EmptySegments::Merge,
        path_params: PathParams::Keep,
    };
    match crate::canonical::canonicalize(text.as_bytes(), rules) {
        Ok(canonical) => {
            let matched = canonical.matched().to_owned();
            if matched != *text {
                ck.warn_at(
                    written,
                    format!(
                        "route `{route}`: `{field}` `{text}` is read as `{matched}` (requests are matched in canonical form: unreserved %-escapes decoded, `//` merged, `;params` ignored); write it that way"
                    ),
                );
            }
            Some(matched)
        }
        Err(e) => {
            ck.at(
                written,
                format!("route `{route}`: `{field}` `{text}` can never match a request: {e}"),
            );
            None
        }
    }
}

pub(super) fn shadows(earlier: &Route, later: &Route) -> bool {
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
    // A case-insensitive later route matches spellings a case-sensitive
    // earlier one does not.
    let case_ok = !earlier.case_sensitive || later.case_sensitive;
    host_ok && methods_ok && case_ok && later.path.covered_by(&earlier.path, earlier.case_sensitive)
}

/// Whether `later` would be shadowed by `earlier` if letter case did not count.
pub(super) fn overlaps_by_case(earlier: &Route, later: &Route) -> bool {
    (earlier.case_sensitive || later.case_sensitive)
        && (earlier.host.is_none() || earlier.host == later.host)
        && later.path.covered_by(&earlier.path, false)
}
