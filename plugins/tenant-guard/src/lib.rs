//! `tenant-guard`: the tenant named in a path segment must equal the
//! caller's tenant claim, so a user of `acme` cannot call
//! `/tenants/globex/orders`.
//!
//! ```json
//! {"segment": 2, "claim": "tenant_id", "status": 403, "message": "forbidden"}
//! ```
//!
//! `segment` is the 1-based index of the path's segments: in
//! `/tenants/acme/orders`, segment 1 is `tenants` and segment 2 is `acme`.
//! The comparison is exact (case-sensitive, byte for byte) against the raw,
//! still percent-encoded segment. The claim must be a string or an integer
//! (compared in decimal). Denied with `status` when the path has no such
//! segment, the claim is missing/null/of another type, the two differ, or the
//! path is **ambiguous** — something an upstream might normalise into a
//! different segment list than the one checked here:
//! - it does not start with `/`, or contains `\`;
//! - it has an empty segment (`//`), other than one trailing `/`;
//! - a segment is `.` or `..` once percent-decoded and cut at `;`
//!   (`%2e%2E`, `..;x`);
//! - a segment decodes to something containing `/`, `\` or NUL (`%2F`,
//!   `%5C`, `%00`), or has a malformed `%` escape.

use portcullis_plugin_sdk::json::Number;
use portcullis_plugin_sdk::{config, ClaimKind, ClaimPath, Ctx, Outcome, Request, Value};

/// Parsed config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// 1-based segment index.
    pub segment: usize,
    /// Tenant claim.
    pub claim: ClaimPath,
    /// Deny status (default 403).
    pub status: u16,
    /// Deny message (default "forbidden").
    pub message: String,
}

/// Validates the config. `segment` is required; `claim` defaults to `tenant_id`.
pub fn init(cfg: &Value) -> Result<Config, String> {
    config::check_keys(cfg, "config", &["segment", "claim", "status", "message"])?;
    let segment = match config::opt_int(cfg, "segment", "config", 1, 1024)? {
        Some(s) => s as usize,
        None => {
            return Err(
                "config needs `segment` (1-based index of the path segment holding the tenant)"
                    .to_string(),
            )
        }
    };
    let claim = match cfg.get("claim") {
        None | Some(Value::Null) => ClaimPath::parse("tenant_id")?,
        Some(v) => ClaimPath::from_config(v).map_err(|e| format!("config.claim: {}", e))?,
    };
    claim
        .check_addressable()
        .map_err(|e| format!("config.claim: {}", e))?;
    Ok(Config {
        segment,
        claim,
        status: config::opt_status(cfg, "status", "config")?.unwrap_or(403),
        message: config::opt_str(cfg, "message", "config")?
            .unwrap_or("forbidden")
            .to_string(),
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(seg: &str) -> Result<Vec<u8>, &'static str> {
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = b.get(i + 1).copied().and_then(hex);
            let lo = b.get(i + 2).copied().and_then(hex);
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h * 16 + l),
                _ => return Err("malformed percent-encoding"),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Splits a raw request path into its segments, or says why the path is
/// ambiguous (see the crate docs).
pub fn segments(path: &str) -> Result<Vec<&str>, &'static str> {
    let rest = match path.strip_prefix('/') {
        Some(r) => r,
        None => return Err("path does not start with '/'"),
    };
    if path.contains('\\') {
        return Err("backslash in path");
    }
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut out = Vec::new();
    for seg in rest.split('/') {
        if seg.is_empty() {
            return Err("empty path segment");
        }
        let decoded = percent_decode(seg)?;
        if decoded.iter().any(|&c| c == b'/' || c == b'\\' || c == 0) {
            return Err("encoded '/', '\\' or NUL in path segment");
        }
        let name = match decoded.iter().position(|&c| c == b';') {
            Some(p) => &decoded[..p],
            None => &decoded[..],
        };
        if name == b"." || name == b".." {
            return Err("dot segment in path");
        }
        out.push(seg);
    }
    Ok(out)
}

/// Whether `path`'s tenant segment is exactly `tenant` (non-empty).
pub fn tenant_matches(cfg: &Config, path: &str, tenant: &str) -> bool {
    let segs = match segments(path) {
        Ok(s) => s,
        Err(_) => return false,
    };
    match segs.get(cfg.segment - 1) {
        Some(in_path) => !tenant.is_empty() && *in_path == tenant,
        None => false,
    }
}

/// The tenant as text from a parsed claim: a string, or an integer literal
/// in decimal (`42`, not `42.0`); `None` for anything else.
fn tenant_text(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(Number::Int(i))) => Some(i.to_string()),
        _ => None,
    }
}

/// Continues when the path's tenant segment equals the tenant claim (ABI v1).
pub fn on_request(cfg: &Config, claims: &Value, req: &Request) -> Outcome {
    match tenant_text(cfg.claim.find(claims)) {
        Some(t) if tenant_matches(cfg, &req.path, &t) => Outcome::pass(),
        _ => Outcome::deny(cfg.status, cfg.message.clone()),
    }
}

/// ABI v2 `on_request`, same decisions as [`on_request`]: a string claim is
/// read as text (`claim`) and compared with the path (`request_field`); a
/// number claim falls back to the parsed claims, because only an integer
/// *literal* counts (`42` but not `42.0`, which share the text form `42`).
pub fn on_request_v2(cfg: &Config, ctx: &mut Ctx) -> Outcome {
    let ok = match ctx.claim_kind(&cfg.claim) {
        ClaimKind::String => ctx.with_scratch(|ctx, tenant| {
            ctx.push_claim_text(&cfg.claim, tenant) && tenant_matches(cfg, ctx.path(), tenant)
        }),
        ClaimKind::Number => {
            let tenant = match ctx.claims() {
                Ok(claims) => tenant_text(cfg.claim.find(claims)),
                Err(e) => return Outcome::Error(e),
            };
            match tenant {
                Some(t) => tenant_matches(cfg, ctx.path(), &t),
                None => false,
            }
        }
        _ => false,
    };
    if ok {
        Outcome::pass()
    } else {
        Outcome::deny(cfg.status, cfg.message.clone())
    }
}

portcullis_plugin_sdk::plugin_v2!(Config, init, on_request_v2);

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_plugin_sdk::json::parse;
    use portcullis_plugin_sdk::TestHost;

    fn cfg(s: &str) -> Config {
        init(&parse(s.as_bytes()).unwrap()).unwrap_or_else(|e| panic!("{}: {}", s, e))
    }

    fn check(c: &Config, path: &str, claims: &str) -> bool {
        let req = Request {
            method: "GET".into(),
            path: path.into(),
            ..Request::default()
        };
        let v1 = on_request(c, &parse(claims.as_bytes()).unwrap(), &req);
        // The v2 build decides the same, and reads no JSON for string claims.
        let mut host = TestHost::new(claims).with_request(req.clone());
        let v2 = host.run(c, on_request_v2);
        assert_eq!(v1, v2, "{} {}", path, claims);
        let parsed = parse(claims.as_bytes()).unwrap();
        if !matches!(c.claim.find(&parsed), Some(Value::Number(_))) {
            assert_eq!(host.counts.claims_json, 0, "{}", claims);
        }
        match v1 {
            Outcome::Continue(ch) => {
                assert!(ch.is_empty());
                true
            }
            Outcome::Deny { status, message } => {
                assert_eq!((status, message), (c.status, c.message.clone()));
                false
            }
            Outcome::Error(e) => panic!("{}", e),
        }
    }

    const ACME: &str = r#"{"tenant_id":"acme"}"#;

    #[test]
    fn matching_tenant_passes_and_others_are_denied() {
        let c = cfg(r#"{"segment":2,"claim":"tenant_id","status":403}"#);
        assert!(check(&c, "/tenants/acme/orders", ACME));
        assert!(check(&c, "/tenants/acme", ACME));
        assert!(check(&c, "/tenants/acme/", ACME));
        assert!(!check(&c, "/tenants/globex/orders", ACME));
        assert!(!check(&c, "/tenants/ACME/orders", ACME));
        assert!(!check(&c, "/tenants/acme2/orders", ACME));
        assert!(!check(&c, "/tenants", ACME));
        assert!(!check(&c, "/", ACME));
    }

    #[test]
    fn missing_or_odd_claims_are_denied() {
        let c = cfg(r#"{"segment":2}"#);
        assert!(!check(&c, "/tenants/acme", "{}"));
        assert!(!check(&c, "/tenants/acme", r#"{"tenant_id":null}"#));
        assert!(!check(&c, "/tenants/acme", r#"{"tenant_id":["acme"]}"#));
        assert!(!check(&c, "/tenants/true", r#"{"tenant_id":true}"#));
        assert!(!check(&c, "/tenants/1.5", r#"{"tenant_id":1.5}"#));
        assert!(check(&c, "/tenants/42", r#"{"tenant_id":42}"#));
    }

    #[test]
    fn only_integer_literals_count_in_v1_and_v2() {
        let c = cfg(r#"{"segment":2}"#);
        assert!(check(&c, "/tenants/42", r#"{"tenant_id":42}"#));
        assert!(!check(&c, "/tenants/42", r#"{"tenant_id":42.0}"#));
        assert!(!check(&c, "/tenants/1000", r#"{"tenant_id":1e3}"#));
        assert!(!check(&c, "/tenants/1.5", r#"{"tenant_id":1.5}"#));
        assert!(check(&c, "/tenants/-7", r#"{"tenant_id":-7}"#));
    }

    #[test]
    fn claim_names_with_dots_and_nul() {
        let c = cfg(r#"{"segment":1,"claim":["https://x.io/tenant"]}"#);
        assert!(check(&c, "/acme", r#"{"https://x.io/tenant":"acme"}"#));
        assert!(!check(
            &c,
            "/acme",
            r#"{"https":{"//x":{"io/tenant":"acme"}}}"#
        ));
        let e = init(&parse(br#"{"segment":1,"claim":["a\u0000"]}"#).unwrap()).unwrap_err();
        assert!(e.contains("NUL"), "{}", e);
    }

    #[test]
    fn nested_claims_and_segment_one() {
        let c = cfg(r#"{"segment":1,"claim":"org.id","status":404,"message":"not found"}"#);
        assert!(check(&c, "/acme/orders", r#"{"org":{"id":"acme"}}"#));
        assert!(!check(&c, "/globex/orders", r#"{"org":{"id":"acme"}}"#));
        assert_eq!(c.status, 404);
    }

    #[test]
    fn ambiguous_paths_are_denied_even_when_the_segment_matches() {
        let c = cfg(r#"{"segment":2}"#);
        for p in [
            "/tenants/acme/../globex/orders",
            "/tenants/acme/./orders",
            "/tenants/acme/%2e%2E/globex",
            "/tenants/acme/%2e/orders",
            "/tenants/acme/..;x=1/globex",
            "/tenants/acme/.;/orders",
            "/tenants/acme%2Fx/orders",
            "/tenants/acme/x%5c..",
            "/tenants/acme/x%00",
            "/tenants/acme\\..\\globex",
            "/tenants//acme/orders",
            "/tenants/acme//orders",
            "//tenants/acme",
            "/tenants/acme/%zz",
            "/tenants/acme/%4",
            "tenants/acme",
            "*",
            "",
        ] {
            assert!(!check(&c, p, ACME), "{} should be denied", p);
        }
        // Dots inside a name are fine, and encoded characters are compared raw.
        assert!(check(&c, "/tenants/acme/v1.2/...x", ACME));
        assert!(!check(&c, "/tenants/ac%6De/orders", ACME));
    }

    #[test]
    fn segment_splitting() {
        assert_eq!(segments("/a/b/c"), Ok(vec!["a", "b", "c"]));
        assert_eq!(segments("/a/b/"), Ok(vec!["a", "b"]));
        assert_eq!(segments("/"), Ok(vec![]));
        assert!(segments("/a//").is_err());
        assert!(segments("/a/b;c=..").is_ok());
    }

    #[test]
    fn bad_configs_are_rejected_with_a_reason() {
        let cases = [
            ("{}", "needs `segment`"),
            (r#"{"segment":0}"#, "1..=1024"),
            (r#"{"segment":"2"}"#, "integer"),
            (r#"{"segment":1.5}"#, "integer"),
            (r#"{"segment":2,"claim":""}"#, "empty segment"),
            (r#"{"segment":2,"status":500}"#, "400..=499"),
            (r#"{"segment":2,"tenant":"x"}"#, "unknown key `tenant`"),
        ];
        for (c, want) in cases {
            match init(&parse(c.as_bytes()).unwrap()) {
                Ok(_) => panic!("{} accepted", c),
                Err(e) => assert!(e.contains(want), "{} -> {} (wanted {:?})", c, e, want),
            }
        }
        assert_eq!(cfg(r#"{"segment":3}"#).claim.to_string(), "tenant_id");
    }
}
