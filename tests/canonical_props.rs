//! Property tests of the canonical path: it never panics, is idempotent,
//! and no spelling of a protected path reaches a weaker route.

use http::Method;
use proptest::prelude::*;

use portcullis::canonical::{canonicalize, EmptySegments, PathParams, PathRules};
use portcullis::plugin::PluginChain;
use portcullis::route::{AuthMode, PathMatch, Route, Router};

fn route(name: &str, path: PathMatch) -> Route {
    Route {
        name: name.into(),
        host: None,
        path,
        methods: None,
        upstream: 0,
        auth: AuthMode::Required,
        strip_prefix: None,
        add_prefix: None,
        requirements: Vec::new(),
        forward_authorization: true,
        case_sensitive: false,
        plugins: PluginChain::new(Vec::new()),
        login: None,
        client_cert: Default::default(),
        issuers: None,
        series: Default::default(),
    }
}

/// The README's shape: a protected route under a weaker prefix route.
fn router() -> Router {
    Router::new(vec![
        route("admin", PathMatch::Prefix("/api/admin".into())),
        route("api", PathMatch::Prefix("/api".into())),
        route("public", PathMatch::Prefix("/".into())),
    ])
}

fn all_rules() -> impl Strategy<Value = PathRules> {
    (any::<bool>(), any::<bool>()).prop_map(|(reject_empty, keep_params)| PathRules {
        empty_segments: if reject_empty {
            EmptySegments::Reject
        } else {
            EmptySegments::Merge
        },
        path_params: if keep_params {
            PathParams::Keep
        } else {
            PathParams::Reject
        },
    })
}

/// How a lenient backend reads a path: every escape decoded, `;params`
/// dropped, `//` merged, case ignored (Express/ASP.NET + Tomcat + nginx).
fn backend_view(raw: &[u8]) -> Option<String> {
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            let hex = std::str::from_utf8(&raw[i + 1..i + 3]).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(raw[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(decoded).ok()?.to_ascii_lowercase();
    let mut out = String::new();
    for segment in text.split('/') {
        let name = segment.split(';').next().unwrap_or("");
        if name.is_empty() {
            continue;
        }
        out.push('/');
        out.push_str(name);
    }
    Some(if out.is_empty() { "/".into() } else { out })
}

/// Spellings of `/api/admin/<tail>` a client might try.
fn admin_spelling() -> impl Strategy<Value = Vec<u8>> {
    let letter = |c: char| {
        prop_oneof![
            Just(c.to_string()),
            Just(c.to_ascii_uppercase().to_string()),
            Just(format!("%{:02x}", c as u8)),
            Just(format!("%{:02X}", c.to_ascii_uppercase() as u8)),
        ]
    };
    let word = |w: &'static str| {
        w.chars()
            .map(letter)
            .collect::<Vec<_>>()
            .prop_map(|parts| parts.concat())
    };
    let slash = prop_oneof![Just("/"), Just("//"), Just("///")];
    let param = prop_oneof![Just(""), Just(";x=1"), Just(";jsessionid=abc")];
    (
        slash.clone(),
        word("api"),
        param.clone(),
        slash.clone(),
        word("admin"),
        param,
        slash,
        "[a-z0-9]{0,6}",
    )
        .prop_map(|(s1, api, p1, s2, admin, p2, s3, tail)| {
            format!("{s1}{api}{p1}{s2}{admin}{p2}{s3}{tail}").into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn canonicalisation_never_panics_on_arbitrary_bytes(
        raw in proptest::collection::vec(any::<u8>(), 0..64),
        rules in all_rules(),
    ) {
        let _ = canonicalize(&raw, rules);
        let mut rooted = vec![b'/'];
        rooted.extend_from_slice(&raw);
        let _ = canonicalize(&rooted, rules);
    }

    #[test]
    fn canonicalisation_is_idempotent(
        raw in "(/|//|%[0-9a-fA-F]{2}|[a-zA-Z0-9._~;=-]{1,4}|%2e|\\.){1,12}",
        rules in all_rules(),
    ) {
        let raw = format!("/{raw}");
        if let Ok(once) = canonicalize(raw.as_bytes(), rules) {
            let twice = canonicalize(once.forward().as_bytes(), rules)
                .expect("a canonical path is accepted again");
            prop_assert_eq!(twice.forward(), once.forward());
            prop_assert_eq!(twice.matched(), once.matched());
            prop_assert!(!twice.is_rewritten(), "canonical form rewritten again: {}", once.forward());
        }
    }

    #[test]
    fn no_spelling_of_a_protected_path_reaches_a_weaker_route(
        raw in admin_spelling(),
        rules in all_rules(),
    ) {
        let router = router();
        let backend = backend_view(&raw).expect("generated paths decode");
        prop_assume!(backend.starts_with("/api/admin"));
        match canonicalize(&raw, rules) {
            // Refused with 400: nothing reaches the backend.
            Err(_) => {}
            Ok(canonical) => {
                let (_, chosen) = router
                    .find(None, canonical.matched(), &Method::GET)
                    .expect("the catch-all route matches");
                prop_assert_eq!(&*chosen.name, "admin", "raw {:?} read as {:?}",
                    String::from_utf8_lossy(&raw), canonical.matched());
                // What the upstream receives is routed the same way.
                let again = canonicalize(canonical.forward().as_bytes(), rules).expect("canonical");
                let (_, upstream_route) = router
                    .find(None, again.matched(), &Method::GET)
                    .expect("the catch-all route matches");
                prop_assert_eq!(&*upstream_route.name, "admin");
                // And the backend reads the forwarded path as the gateway did.
                prop_assert_eq!(backend_view(canonical.forward().as_bytes()), Some(backend));
            }
        }
    }

    #[test]
    fn the_route_for_the_raw_path_equals_the_route_for_the_forwarded_path(
        raw in "(/|//|%[0-9a-fA-F]{2}|api|admin|API|Admin|;v=1|[a-z0-9]{1,3}){1,10}",
        rules in all_rules(),
    ) {
        let raw = format!("/{raw}");
        let router = router();
        if let Ok(canonical) = canonicalize(raw.as_bytes(), rules) {
            let first = router.find(None, canonical.matched(), &Method::GET).map(|(i, _)| i);
            let forwarded = canonicalize(canonical.forward().as_bytes(), rules).expect("canonical");
            let second = router.find(None, forwarded.matched(), &Method::GET).map(|(i, _)| i);
            prop_assert_eq!(first, second);
        }
    }
}
