//! `require-claims`: denies a request unless its verified claims satisfy
//! simple rules. Deliberately no regular expressions: every rule is an exact
//! comparison an operator can read at a glance.
//!
//! ```json
//! {"rules": [
//!    {"claim": "role",   "equals": "admin"},
//!    {"claim": "role",   "any_of": ["admin", "ops"]},
//!    {"claim": "groups", "contains": "billing"},
//!    {"claim": "email_verified", "exists": true}],
//!  "mode": "all", "status": 403, "message": "forbidden"}
//! ```
//!
//! Semantics (a missing or `null` claim fails every rule except
//! `exists: false`; comparisons are type-strict, numbers by value):
//! - `equals: X` — the claim equals X (an array claim never equals a scalar;
//!   use `contains`).
//! - `any_of: [X, …]` — the claim equals one of the values; for an array
//!   claim, at least one of its items is in the list.
//! - `contains: X` — the claim is an array with an item equal to X, or a
//!   string whose space-separated words include X (OAuth `scope` style:
//!   `"read write"` contains `"write"`, not `"writ"`).
//! - `exists: true|false` — the claim is present and not null / absent.

//!
//! Built as an ABI v2 module ([`on_request_v2`]): claims are read by path in
//! their text form, never parsed as JSON. [`on_request`] is the same logic
//! on parsed claims (the v1 form, kept for tests).

use portcullis_plugin_sdk::json::Number;
use portcullis_plugin_sdk::{config, ClaimKind, ClaimPath, Ctx, Outcome, Request, Value};

/// What a rule checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Claim equals the value.
    Equals(Value),
    /// Claim (or one of its items) equals one of the values.
    AnyOf(Vec<Value>),
    /// Array claim has the item, or string claim has the space-separated word.
    Contains(Value),
    /// Claim presence.
    Exists(bool),
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Claim to test.
    pub claim: ClaimPath,
    /// The test.
    pub check: Check,
}

/// How rules combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every rule must pass (default).
    All,
    /// At least one rule must pass.
    Any,
}

/// Parsed config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Rules in config order.
    pub rules: Vec<Rule>,
    /// Combination.
    pub mode: Mode,
    /// Deny status (default 403).
    pub status: u16,
    /// Deny message (default "forbidden"); the same whichever rule failed, so
    /// clients learn nothing about the policy.
    pub message: String,
}

fn scalar(v: &Value, what: &str) -> Result<Value, String> {
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(v.clone()),
        other => Err(format!(
            "{} must be a string, number or boolean, got {}",
            what,
            other.type_name()
        )),
    }
}

/// Validates the config.
pub fn init(cfg: &Value) -> Result<Config, String> {
    config::check_keys(cfg, "config", &["rules", "mode", "status", "message"])?;
    let list = match config::required(cfg, "rules", "config")?.as_array() {
        Some(l) if !l.is_empty() => l,
        _ => return Err("config.rules must be a non-empty array".to_string()),
    };
    let mut rules = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let what = format!("rules[{}]", i);
        config::check_keys(
            item,
            &what,
            &["claim", "equals", "any_of", "contains", "exists"],
        )?;
        let claim = ClaimPath::from_config(config::required(item, "claim", &what)?)
            .map_err(|e| format!("{}: {}", what, e))?;
        claim
            .check_addressable()
            .map_err(|e| format!("{}: {}", what, e))?;
        let mut checks = Vec::new();
        if let Some(v) = item.get("equals") {
            checks.push(Check::Equals(scalar(v, &format!("{}.equals", what))?));
        }
        if let Some(v) = item.get("any_of") {
            let values = match v.as_array() {
                Some(a) if !a.is_empty() => a,
                _ => return Err(format!("{}.any_of must be a non-empty array", what)),
            };
            let mut out = Vec::with_capacity(values.len());
            for (j, x) in values.iter().enumerate() {
                out.push(scalar(x, &format!("{}.any_of[{}]", what, j))?);
            }
            checks.push(Check::AnyOf(out));
        }
        if let Some(v) = item.get("contains") {
            checks.push(Check::Contains(scalar(v, &format!("{}.contains", what))?));
        }
        match item.get("exists") {
            None => {}
            Some(Value::Bool(b)) => checks.push(Check::Exists(*b)),
            Some(other) => {
                return Err(format!(
                    "{}.exists must be true or false, got {}",
                    what,
                    other.type_name()
                ))
            }
        }
        if checks.len() != 1 {
            return Err(format!(
                "{} needs exactly one of `equals`, `any_of`, `contains`, `exists` (has {})",
                what,
                checks.len()
            ));
        }
        rules.push(Rule {
            claim,
            check: checks.remove(0),
        });
    }
    let mode = match config::opt_str(cfg, "mode", "config")? {
        None | Some("all") => Mode::All,
        Some("any") => Mode::Any,
        Some(other) => {
            return Err(format!(
                "config.mode must be \"all\" or \"any\", got \"{}\"",
                other
            ))
        }
    };
    Ok(Config {
        rules,
        mode,
        status: config::opt_status(cfg, "status", "config")?.unwrap_or(403),
        message: config::opt_str(cfg, "message", "config")?
            .unwrap_or("forbidden")
            .to_string(),
    })
}

/// Whether one rule passes for these claims.
pub fn passes(rule: &Rule, claims: &Value) -> bool {
    let value = rule.claim.find(claims);
    match (&rule.check, value) {
        (Check::Exists(want), v) => v.is_some() == *want,
        (_, None) => false,
        (Check::Equals(x), Some(v)) => v == x,
        (Check::AnyOf(list), Some(Value::Array(items))) => items.iter().any(|i| list.contains(i)),
        (Check::AnyOf(list), Some(v)) => list.contains(v),
        (Check::Contains(x), Some(Value::Array(items))) => items.contains(x),
        (Check::Contains(Value::String(word)), Some(Value::String(s))) => {
            s.split(' ').any(|w| w == word)
        }
        (Check::Contains(_), Some(_)) => false,
    }
}

/// Continues when the rules pass (all or any), else denies.
pub fn on_request(cfg: &Config, claims: &Value, _req: &Request) -> Outcome {
    let ok = match cfg.mode {
        Mode::All => cfg.rules.iter().all(|r| passes(r, claims)),
        Mode::Any => cfg.rules.iter().any(|r| passes(r, claims)),
    };
    if ok {
        Outcome::pass()
    } else {
        Outcome::deny(cfg.status, cfg.message.clone())
    }
}

/// Whether a claim value given by kind and text form equals the scalar `x`
/// (type-strict; numbers by value, as [`Value`]'s equality).
pub fn text_equals(kind: ClaimKind, text: &str, x: &Value) -> bool {
    match (kind, x) {
        (ClaimKind::String, Value::String(s)) => text == s,
        (ClaimKind::Bool, Value::Bool(b)) => text == if *b { "true" } else { "false" },
        (ClaimKind::Number, Value::Number(n)) => Number::from_text(text).map_or(false, |m| m == *n),
        _ => false,
    }
}

/// Whether item `i` of the array claim equals one of `values`.
fn item_in(ctx: &mut Ctx, path: &ClaimPath, i: usize, values: &[Value]) -> bool {
    let kind = ctx.claim_item_kind(path, i);
    match kind {
        ClaimKind::String | ClaimKind::Number | ClaimKind::Bool => {}
        _ => return false, // null, arrays and objects never equal a scalar
    }
    match ctx.claim_item_text(path, i) {
        Some(t) => values.iter().any(|x| text_equals(kind, t, x)),
        None => false,
    }
}

/// [`passes`] for ABI v2: the same result from `claim_kind`, `claim`,
/// `claim_count` and item reads.
pub fn passes_v2(rule: &Rule, ctx: &mut Ctx) -> bool {
    let path = &rule.claim;
    let kind = ctx.claim_kind(path);
    if let Check::Exists(want) = rule.check {
        return kind.is_present() == want;
    }
    if !kind.is_present() {
        return false;
    }
    if kind == ClaimKind::Array {
        let values = match &rule.check {
            Check::AnyOf(list) => &list[..],
            Check::Contains(x) => std::slice::from_ref(x),
            _ => return false, // an array never equals a scalar
        };
        let n = ctx.claim_count(path).unwrap_or(0);
        return (0..n).any(|i| item_in(ctx, path, i, values));
    }
    let check = &rule.check;
    let text = match ctx.claim_text(path) {
        Some(t) => t,
        None => return false,
    };
    match check {
        Check::Equals(x) => text_equals(kind, text, x),
        Check::AnyOf(list) => list.iter().any(|x| text_equals(kind, text, x)),
        Check::Contains(Value::String(word)) if kind == ClaimKind::String => {
            text.split(' ').any(|w| w == word)
        }
        Check::Contains(_) | Check::Exists(_) => false,
    }
}

/// ABI v2 `on_request`: continues when the rules pass (all or any), else
/// denies — as [`on_request`].
pub fn on_request_v2(cfg: &Config, ctx: &mut Ctx) -> Outcome {
    let ok = match cfg.mode {
        Mode::All => cfg.rules.iter().all(|r| passes_v2(r, ctx)),
        Mode::Any => cfg.rules.iter().any(|r| passes_v2(r, ctx)),
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

    fn allowed(c: &Config, claims: &str) -> bool {
        let v1 = on_request(c, &parse(claims.as_bytes()).unwrap(), &Request::default());
        // The v2 build decides the same without reading the claims JSON.
        let mut host = TestHost::new(claims);
        assert_eq!(host.run(c, on_request_v2), v1, "{}", claims);
        assert_eq!(host.counts.claims_json, 0);
        match v1 {
            Outcome::Continue(changes) => {
                assert!(changes.is_empty());
                true
            }
            Outcome::Deny { status, message } => {
                assert_eq!((status, message.as_str()), (c.status, c.message.as_str()));
                false
            }
            Outcome::Error(e) => panic!("unexpected error {}", e),
        }
    }

    fn rule(r: &str) -> Config {
        cfg(&format!(r#"{{"rules":[{}]}}"#, r))
    }

    #[test]
    fn equals_is_type_strict_and_numeric() {
        let c = rule(r#"{"claim":"role","equals":"admin"}"#);
        assert!(allowed(&c, r#"{"role":"admin"}"#));
        assert!(!allowed(&c, r#"{"role":"Admin"}"#));
        assert!(!allowed(&c, r#"{"role":["admin"]}"#));
        assert!(!allowed(&c, r#"{}"#));
        assert!(!allowed(&c, r#"{"role":null}"#));
        let n = rule(r#"{"claim":"level","equals":2}"#);
        assert!(allowed(&n, r#"{"level":2.0}"#));
        assert!(!allowed(&n, r#"{"level":"2"}"#));
        let b = rule(r#"{"claim":"email_verified","equals":true}"#);
        assert!(allowed(&b, r#"{"email_verified":true}"#));
        assert!(!allowed(&b, r#"{"email_verified":"true"}"#));
    }

    #[test]
    fn any_of_matches_scalars_and_array_items() {
        let c = rule(r#"{"claim":"role","any_of":["admin","ops"]}"#);
        assert!(allowed(&c, r#"{"role":"ops"}"#));
        assert!(!allowed(&c, r#"{"role":"dev"}"#));
        assert!(allowed(&c, r#"{"role":["dev","ops"]}"#));
        assert!(!allowed(&c, r#"{"role":["dev"]}"#));
        assert!(!allowed(&c, r#"{"role":[]}"#));
    }

    #[test]
    fn contains_matches_array_items_and_scope_words() {
        let c = rule(r#"{"claim":"groups","contains":"billing"}"#);
        assert!(allowed(&c, r#"{"groups":["eng","billing"]}"#));
        assert!(!allowed(&c, r#"{"groups":["eng"]}"#));
        assert!(!allowed(&c, r#"{"groups":"billing-admins"}"#));
        assert!(allowed(&c, r#"{"groups":"read billing write"}"#));
        assert!(!allowed(&c, r#"{"groups":{"billing":true}}"#));
        let n = rule(r#"{"claim":"ids","contains":7}"#);
        assert!(allowed(&n, r#"{"ids":[1,7]}"#));
        assert!(!allowed(&n, r#"{"ids":"7"}"#));
    }

    #[test]
    fn exists_checks_presence() {
        let yes = rule(r#"{"claim":"org.id","exists":true}"#);
        let no = rule(r#"{"claim":"org.id","exists":false}"#);
        assert!(allowed(&yes, r#"{"org":{"id":0}}"#));
        assert!(!allowed(&yes, r#"{"org":{"id":null}}"#));
        assert!(!allowed(&yes, r#"{"org":"x"}"#));
        assert!(allowed(&no, r#"{}"#));
        assert!(!allowed(&no, r#"{"org":{"id":false}}"#));
    }

    #[test]
    fn mode_all_and_any() {
        let rules =
            r#"[{"claim":"role","equals":"admin"},{"claim":"groups","contains":"billing"}]"#;
        let all = cfg(&format!(
            r#"{{"rules":{},"mode":"all","status":401,"message":"nope"}}"#,
            rules
        ));
        let any = cfg(&format!(r#"{{"rules":{},"mode":"any"}}"#, rules));
        assert!(allowed(&all, r#"{"role":"admin","groups":["billing"]}"#));
        assert!(!allowed(&all, r#"{"role":"admin","groups":[]}"#));
        assert!(allowed(&any, r#"{"role":"admin","groups":[]}"#));
        assert!(allowed(&any, r#"{"groups":["billing"]}"#));
        assert!(!allowed(&any, r#"{}"#));
        assert_eq!(all.status, 401);
        assert_eq!(any.status, 403);
        assert_eq!(any.message, "forbidden");
    }

    #[test]
    fn the_documented_example_parses() {
        let c = cfg(
            r#"{"rules":[{"claim":"role","equals":"admin"},{"claim":"role","any_of":["admin","ops"]},{"claim":"groups","contains":"billing"}],"mode":"all","status":403,"message":"forbidden"}"#,
        );
        assert!(allowed(&c, r#"{"role":"admin","groups":["billing"]}"#));
        assert!(!allowed(&c, r#"{"role":"ops","groups":["billing"]}"#));
    }

    #[test]
    fn v1_and_v2_agree_on_numbers_unicode_nesting_and_dotted_names() {
        let rules = [
            r#"{"claim":"n","equals":42}"#,
            r#"{"claim":"n","equals":42.0}"#,
            r#"{"claim":"n","any_of":[1e-7,0.25,"42"]}"#,
            r#"{"claim":"n","contains":0.25}"#,
            r#"{"claim":"n","contains":"é😀"}"#,
            r#"{"claim":"n","contains":"b"}"#,
            r#"{"claim":"n","equals":"Zoë 😀"}"#,
            r#"{"claim":"n","equals":true}"#,
            r#"{"claim":"n","any_of":[false,9223372036854775807]}"#,
            r#"{"claim":"n","exists":true}"#,
            r#"{"claim":"n","exists":false}"#,
            r#"{"claim":"org.tenant.id","equals":"acme"}"#,
            r#"{"claim":"roles.1","equals":"ops"}"#,
            r#"{"claim":["https://x.io/roles"],"contains":"admin"}"#,
            r#"{"claim":["a.b"],"equals":1}"#,
        ];
        let claims = [
            r#"{"n":42}"#,
            r#"{"n":42.0}"#,
            r#"{"n":1e-7}"#,
            r#"{"n":0.25}"#,
            r#"{"n":"42"}"#,
            r#"{"n":[0.25,"x",null,[0.25],{"a":0.25}]}"#,
            r#"{"n":["é😀",true]}"#,
            r#"{"n":"a b c"}"#,
            r#"{"n":"Zoë 😀"}"#,
            r#"{"n":true}"#,
            r#"{"n":false}"#,
            r#"{"n":9223372036854775807}"#,
            r#"{"n":null}"#,
            r#"{"n":{"42":42}}"#,
            r#"{"org":{"tenant":{"id":"acme"}},"roles":["admin","ops"]}"#,
            r#"{"https://x.io/roles":["admin"],"a.b":1.0,"a":{"b":2}}"#,
            r#"{"https":{"//x":{"io/roles":["admin"]}},"a":{"b":1}}"#,
            "{}",
        ];
        for r in rules {
            for mode in ["all", "any"] {
                let c = cfg(&format!(r#"{{"rules":[{}],"mode":"{}"}}"#, r, mode));
                for claims in claims {
                    allowed(&c, claims); // asserts v1 == v2
                }
            }
        }
    }

    #[test]
    fn bad_configs_are_rejected_with_a_reason() {
        let cases = [
            ("{}", "needs `rules`"),
            (r#"{"rules":[]}"#, "non-empty"),
            (r#"{"rules":[{"equals":"a"}]}"#, "needs `claim`"),
            (r#"{"rules":[{"claim":"a"}]}"#, "exactly one"),
            (
                r#"{"rules":[{"claim":"a","equals":"x","contains":"y"}]}"#,
                "exactly one",
            ),
            (
                r#"{"rules":[{"claim":"a","equals":null}]}"#,
                "string, number or boolean",
            ),
            (
                r#"{"rules":[{"claim":"a","equals":["x"]}]}"#,
                "string, number or boolean",
            ),
            (
                r#"{"rules":[{"claim":"a","any_of":[]}]}"#,
                "non-empty array",
            ),
            (
                r#"{"rules":[{"claim":"a","any_of":"x"}]}"#,
                "non-empty array",
            ),
            (r#"{"rules":[{"claim":"a","any_of":[{}]}]}"#, "any_of[0]"),
            (
                r#"{"rules":[{"claim":"a","exists":"yes"}]}"#,
                "true or false",
            ),
            (
                r#"{"rules":[{"claim":"a","exists":null}]}"#,
                "true or false",
            ),
            (
                r#"{"rules":[{"claim":"a","matches":"^x"}]}"#,
                "unknown key `matches`",
            ),
            (
                r#"{"rules":[{"claim":"a","equals":"x"}],"mode":"some"}"#,
                "\"all\" or \"any\"",
            ),
            (
                r#"{"rules":[{"claim":"a","equals":"x"}],"status":302}"#,
                "400..=499",
            ),
            (
                r#"{"rules":[{"claim":"a","equals":"x"}],"message":5}"#,
                "must be a string",
            ),
        ];
        for (c, want) in cases {
            match init(&parse(c.as_bytes()).unwrap()) {
                Ok(_) => panic!("{} accepted", c),
                Err(e) => assert!(e.contains(want), "{} -> {} (wanted {:?})", c, e, want),
            }
        }
    }
}
