//! `claims-to-headers`: copies verified JWT claims into request headers for
//! the upstream, so a backend reads `X-User-Id` instead of parsing tokens.
//!
//! Config (see `plugins/README.md`):
//!
//! ```json
//! {"headers": [
//!    {"header": "X-User-Id",    "claim": "sub", "required": true},
//!    {"header": "X-User-Roles", "claim": "roles", "array": "join", "separator": ","},
//!    {"header": "X-Org",        "claim": "org.tenant.id", "default": "none"},
//!    {"header": "X-Claims",     "claim": "org", "encoding": "base64json"}],
//!  "missing_status": 403,
//!  "missing_message": "missing required claim"}
//! ```
//!
//! Per request, in config order: a present claim sets its header (replacing
//! any value); a missing or `null` claim sets `default` when given, denies
//! with `missing_status` when `required`, and otherwise **removes** the
//! header, so a client-sent copy can never reach the upstream.
//!
//! ABI: built as a **v2** module ([`on_request_v2`], `plugin_v2!`) by
//! default: claim values are read in their text form through the host's
//! `claim` import — no JSON parsing per request — and all headers go out in
//! one `header_batch` call. With the cargo feature `abi-v1` the same crate
//! builds the v1 module ([`on_request`], `plugin!`; `out/claims-to-headers-v1.wasm`),
//! with identical behaviour, for equivalence tests and benchmarks.

use portcullis_plugin_sdk::json::write_json_string;
use portcullis_plugin_sdk::{
    base64, config, headers, ClaimKind, ClaimPath, Ctx, HeaderChange, Outcome, Request, Value,
};

/// How an array claim becomes a header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArrayMode {
    /// Items as text joined with a separator (default `,`).
    Join(String),
    /// The array's JSON encoding.
    Json,
}

/// Extra encoding applied to the header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The value as rendered (default).
    None,
    /// Base64 of the rendered value.
    Base64,
    /// Base64 of the claim's JSON encoding (strings keep their quotes).
    Base64Json,
}

/// One header mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Header to set, as configured.
    pub header: String,
    /// Claim to read.
    pub claim: ClaimPath,
    /// Deny when the claim is missing or null.
    pub required: bool,
    /// Value (sent verbatim) when the claim is missing or null.
    pub default: Option<String>,
    /// Array rendering.
    pub array: ArrayMode,
    /// Encoding.
    pub encoding: Encoding,
}

/// Parsed config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Mappings in config order.
    pub headers: Vec<Mapping>,
    /// Deny status when a required claim is missing (default 403).
    pub missing_status: u16,
    /// Deny message when a required claim is missing.
    pub missing_message: String,
}

/// Default deny status for a missing required claim: the token was valid,
/// it just does not carry what this route needs, so "forbidden".
pub const DEFAULT_MISSING_STATUS: u16 = 403;
/// Default deny message for a missing required claim.
pub const DEFAULT_MISSING_MESSAGE: &str = "missing required claim";

/// Validates the config.
pub fn init(cfg: &Value) -> Result<Config, String> {
    config::check_keys(
        cfg,
        "config",
        &["headers", "missing_status", "missing_message"],
    )?;
    let list = match config::required(cfg, "headers", "config")?.as_array() {
        Some(l) if !l.is_empty() => l,
        _ => return Err("config.headers must be a non-empty array".to_string()),
    };
    let mut mappings: Vec<Mapping> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let what = format!("headers[{}]", i);
        let m = mapping(item, &what)?;
        if let Some(prev) = mappings
            .iter()
            .find(|p| p.header.eq_ignore_ascii_case(&m.header))
        {
            return Err(format!(
                "{}: header `{}` is already mapped (from claim `{}`)",
                what, m.header, prev.claim
            ));
        }
        mappings.push(m);
    }
    let missing_message = config::opt_str(cfg, "missing_message", "config")?
        .unwrap_or(DEFAULT_MISSING_MESSAGE)
        .to_string();
    Ok(Config {
        headers: mappings,
        missing_status: config::opt_status(cfg, "missing_status", "config")?
            .unwrap_or(DEFAULT_MISSING_STATUS),
        missing_message,
    })
}

fn mapping(item: &Value, what: &str) -> Result<Mapping, String> {
    config::check_keys(
        item,
        what,
        &[
            "header",
            "claim",
            "required",
            "default",
            "array",
            "separator",
            "encoding",
        ],
    )?;
    let header = match config::opt_str(item, "header", what)? {
        Some(h) => h.to_string(),
        None => return Err(format!("{} needs `header`", what)),
    };
    headers::check_name(&header).map_err(|e| format!("{}: {}", what, e))?;
    let claim = ClaimPath::from_config(config::required(item, "claim", what)?)
        .map_err(|e| format!("{}: {}", what, e))?;
    claim
        .check_addressable()
        .map_err(|e| format!("{}: {}", what, e))?;
    let required = config::opt_bool(item, "required", what)?.unwrap_or(false);
    let default = config::opt_str(item, "default", what)?.map(str::to_string);
    if let Some(d) = &default {
        headers::check_value(d).map_err(|e| format!("{}.default: {}", what, e))?;
        if required {
            return Err(format!(
                "{}: `required: true` and `default` exclude each other",
                what
            ));
        }
    }
    let separator = config::opt_str(item, "separator", what)?;
    let array = match config::opt_str(item, "array", what)? {
        None | Some("join") => {
            let sep = separator.unwrap_or(",");
            headers::check_value(sep).map_err(|e| format!("{}.separator: {}", what, e))?;
            ArrayMode::Join(sep.to_string())
        }
        Some("json") => {
            if separator.is_some() {
                return Err(format!(
                    "{}: `separator` only applies to `array: \"join\"`",
                    what
                ));
            }
            ArrayMode::Json
        }
        Some(other) => {
            return Err(format!(
                "{}.array must be \"join\" or \"json\", got \"{}\"",
                what, other
            ))
        }
    };
    let encoding = match config::opt_str(item, "encoding", what)? {
        None | Some("none") => Encoding::None,
        Some("base64") => Encoding::Base64,
        Some("base64json") => Encoding::Base64Json,
        Some(other) => {
            return Err(format!(
                "{}.encoding must be \"none\", \"base64\" or \"base64json\", got \"{}\"",
                what, other
            ))
        }
    };
    Ok(Mapping {
        header,
        claim,
        required,
        default,
        array,
        encoding,
    })
}

/// Renders a present claim as a header value (not yet validated).
pub fn render(value: &Value, m: &Mapping) -> String {
    if m.encoding == Encoding::Base64Json {
        return base64::encode(value.to_json().as_bytes());
    }
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => match &m.array {
            ArrayMode::Json => value.to_json_ascii(),
            ArrayMode::Join(sep) => {
                let parts: Vec<String> = items.iter().map(item_text).collect();
                parts.join(sep)
            }
        },
        Value::Object(_) => value.to_json_ascii(),
        other => other.to_text(), // numbers (integers without ".0") and booleans
    };
    match m.encoding {
        Encoding::Base64 => base64::encode(text.as_bytes()),
        _ => text,
    }
}

fn item_text(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => v.to_json_ascii(),
        other => other.to_text(),
    }
}

/// Maps the claims to header changes, or denies on a missing required claim.
pub fn on_request(cfg: &Config, claims: &Value, _req: &Request) -> Outcome {
    let mut changes = Vec::with_capacity(cfg.headers.len());
    for m in &cfg.headers {
        match m.claim.find(claims) {
            Some(v) => {
                let value = render(v, m);
                if let Err(e) = headers::check_value(&value) {
                    return Outcome::Error(format!(
                        "claim `{}` cannot go into header `{}`: {}",
                        m.claim, m.header, e
                    ));
                }
                changes.push(HeaderChange::set(m.header.clone(), value));
            }
            None => {
                if let Some(d) = &m.default {
                    changes.push(HeaderChange::set(m.header.clone(), d.clone()));
                } else if m.required {
                    return Outcome::deny(cfg.missing_status, cfg.missing_message.clone());
                } else {
                    changes.push(HeaderChange::remove(m.header.clone()));
                }
            }
        }
    }
    Outcome::Continue(changes)
}

/// ABI v2 `on_request`: the same decisions as [`on_request`], from the
/// claims' text forms. Strings, numbers, booleans and `array: "json"` take
/// one `claim` call (plus `claim_kind` for a joined value starting with `[`,
/// which may be an array); joined arrays one `claim` per item; `base64json`
/// re-expands the `\uXXXX` escapes of the ASCII JSON text (v1 encodes the
/// claim's UTF-8 JSON). Nothing is parsed; values are built in the
/// context's reused scratch strings.
pub fn on_request_v2(cfg: &Config, ctx: &mut Ctx) -> Outcome {
    for m in &cfg.headers {
        let step = ctx.with_scratch(|ctx, value| {
            if render_v2(ctx, m, value) {
                if let Err(e) = headers::check_value(value) {
                    return Err(Outcome::Error(format!(
                        "claim `{}` cannot go into header `{}`: {}",
                        m.claim, m.header, e
                    )));
                }
                ctx.set_header(&m.header, value);
            } else if let Some(d) = &m.default {
                ctx.set_header(&m.header, d);
            } else if m.required {
                return Err(Outcome::deny(
                    cfg.missing_status,
                    cfg.missing_message.clone(),
                ));
            } else {
                ctx.remove_header(&m.header);
            }
            Ok(())
        });
        if let Err(outcome) = step {
            return outcome;
        }
    }
    Outcome::pass()
}

/// Appends the header value for a present claim to `out` (as [`render`]);
/// false when the claim is absent or `null`.
fn render_v2(ctx: &mut Ctx, m: &Mapping, out: &mut String) -> bool {
    match m.encoding {
        Encoding::None => render_text_v2(ctx, m, out),
        Encoding::Base64 => ctx.with_scratch(|ctx, text| {
            let present = render_text_v2(ctx, m, text);
            if present {
                base64::encode_into(text.as_bytes(), out);
            }
            present
        }),
        Encoding::Base64Json => {
            let kind = ctx.claim_kind(&m.claim);
            if !kind.is_present() {
                return false;
            }
            ctx.with_scratch(|ctx, json| {
                let text = match ctx.claim_text(&m.claim) {
                    Some(t) => t,
                    None => return false,
                };
                match kind {
                    ClaimKind::String => write_json_string(text, json, false),
                    ClaimKind::Array | ClaimKind::Object => unescape_non_ascii(text, json),
                    _ => json.push_str(text),
                }
                base64::encode_into(json.as_bytes(), out);
                true
            })
        }
    }
}

/// The rendered (not yet encoded) value of a present claim.
fn render_text_v2(ctx: &mut Ctx, m: &Mapping, out: &mut String) -> bool {
    let start = out.len();
    // The text form is already the v1 rendering for every kind except a
    // joined array (strings raw, numbers and booleans as text, objects and
    // `array: "json"` as ASCII JSON).
    if !ctx.push_claim_text(&m.claim, out) {
        return false;
    }
    let sep = match &m.array {
        ArrayMode::Join(sep) => sep,
        ArrayMode::Json => return true,
    };
    if !out[start..].starts_with('[') || ctx.claim_kind(&m.claim) != ClaimKind::Array {
        return true;
    }
    out.truncate(start);
    let n = ctx.claim_count(&m.claim).unwrap_or(0);
    for i in 0..n {
        if i > 0 {
            out.push_str(sep);
        }
        // Items: strings raw, numbers/booleans as text, arrays/objects as
        // ASCII JSON — the text forms; a null item (MISSING) is "null".
        if !ctx.push_claim_item_text(&m.claim, i, out) {
            out.push_str("null");
        }
    }
    true
}

/// Appends `ascii_json` (compact JSON with every character outside
/// 0x20..=0x7E escaped) with the `\uXXXX` escapes of characters >= U+007F
/// turned back into UTF-8: the text [`Value::to_json`] gives for the same
/// value. Other escapes (`\"`, `\n`, `\u001f`, …) stay as they are.
pub fn unescape_non_ascii(ascii_json: &str, out: &mut String) {
    fn unit(b: &[u8]) -> Option<u32> {
        if b.len() < 6 || b[0] != b'\\' || b[1] != b'u' {
            return None;
        }
        let hex = std::str::from_utf8(&b[2..6]).ok()?;
        u32::from_str_radix(hex, 16).ok()
    }
    let b = ascii_json.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        let decoded = match unit(&b[i..]) {
            Some(hi @ 0xd800..=0xdbff) => match unit(&b[i + 6..]) {
                Some(lo @ 0xdc00..=0xdfff) => {
                    char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)).map(|c| (c, 12))
                }
                _ => None,
            },
            Some(u) if u >= 0x7f => char::from_u32(u).map(|c| (c, 6)),
            _ => None,
        };
        match decoded {
            Some((c, len)) => {
                out.push_str(&ascii_json[copied..i]);
                out.push(c);
                i += len;
                copied = i;
            }
            // Another escape: keep both characters (so `\\u00e9` stays).
            None => i += 2,
        }
    }
    out.push_str(&ascii_json[copied..]);
}

#[cfg(feature = "abi-v1")]
portcullis_plugin_sdk::plugin!(Config, init, on_request);
#[cfg(not(feature = "abi-v1"))]
portcullis_plugin_sdk::plugin_v2!(Config, init, on_request_v2);

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_plugin_sdk::json::parse;
    use portcullis_plugin_sdk::TestHost;

    fn cfg(s: &str) -> Config {
        init(&parse(s.as_bytes()).unwrap()).unwrap_or_else(|e| panic!("{}: {}", s, e))
    }

    fn cfg_err(s: &str) -> String {
        match init(&parse(s.as_bytes()).unwrap()) {
            Ok(c) => panic!("{} should be rejected, got {:?}", s, c),
            Err(e) => e,
        }
    }

    fn run(c: &Config, claims: &str) -> Outcome {
        on_request(c, &parse(claims.as_bytes()).unwrap(), &Request::default())
    }

    const EXAMPLE: &str = r#"{"headers":[
        {"header":"X-User-Id","claim":"sub","required":true},
        {"header":"X-User-Roles","claim":"roles","array":"join","separator":","},
        {"header":"X-Org","claim":"org.tenant.id","default":"none"},
        {"header":"X-Claims","claim":"org","encoding":"base64json"}]}"#;

    #[test]
    fn the_documented_example_maps_in_config_order() {
        let c = cfg(EXAMPLE);
        let out = run(
            &c,
            r#"{"sub":"u-1","roles":["admin","ops"],"org":{"tenant":{"id":"acme"}}}"#,
        );
        assert_eq!(
            out,
            Outcome::Continue(vec![
                HeaderChange::set("X-User-Id", "u-1"),
                HeaderChange::set("X-User-Roles", "admin,ops"),
                HeaderChange::set("X-Org", "acme"),
                HeaderChange::set("X-Claims", base64::encode(br#"{"tenant":{"id":"acme"}}"#)),
            ])
        );
    }

    #[test]
    fn missing_claims_use_default_remove_or_deny() {
        let c = cfg(EXAMPLE);
        let out = run(&c, r#"{"sub":"u-1","org":null}"#);
        assert_eq!(
            out,
            Outcome::Continue(vec![
                HeaderChange::set("X-User-Id", "u-1"),
                HeaderChange::remove("X-User-Roles"),
                HeaderChange::set("X-Org", "none"),
                HeaderChange::remove("X-Claims"),
            ])
        );
        assert_eq!(
            run(&c, r#"{"roles":["a"]}"#),
            Outcome::deny(403, "missing required claim")
        );
        assert_eq!(
            run(&c, r#"{"sub":null}"#),
            Outcome::deny(403, "missing required claim")
        );
    }

    #[test]
    fn missing_status_and_message_are_configurable() {
        let c = cfg(
            r#"{"headers":[{"header":"X-User-Id","claim":"sub","required":true}],"missing_status":401,"missing_message":"log in"}"#,
        );
        assert_eq!(run(&c, "{}"), Outcome::deny(401, "log in"));
    }

    #[test]
    fn scalars_are_stringified() {
        let c = cfg(r#"{"headers":[{"header":"X-A","claim":"a"}]}"#);
        for (claim, want) in [
            ("42", "42"),
            ("42.0", "42"),
            ("-7", "-7"),
            ("1.25", "1.25"),
            ("1e3", "1000"),
            ("true", "true"),
            ("false", "false"),
            ("\"s p\"", "s p"),
            ("\"é\"", "é"),
        ] {
            let out = run(&c, &format!(r#"{{"a":{}}}"#, claim));
            assert_eq!(
                out,
                Outcome::Continue(vec![HeaderChange::set("X-A", want)]),
                "{}",
                claim
            );
        }
    }

    #[test]
    fn arrays_join_or_json_and_objects_are_json() {
        let join = cfg(r#"{"headers":[{"header":"X-A","claim":"a"}]}"#);
        let semi = cfg(r#"{"headers":[{"header":"X-A","claim":"a","separator":"; "}]}"#);
        let json = cfg(r#"{"headers":[{"header":"X-A","claim":"a","array":"json"}]}"#);
        let claims = r#"{"a":["x",1,true,null,[2],{"k":"é"}]}"#;
        assert_eq!(
            run(&join, claims),
            Outcome::Continue(vec![HeaderChange::set(
                "X-A",
                r#"x,1,true,null,[2],{"k":"\u00e9"}"#
            )])
        );
        assert_eq!(
            run(&semi, r#"{"a":["x","y"]}"#),
            Outcome::Continue(vec![HeaderChange::set("X-A", "x; y")])
        );
        assert_eq!(
            run(&json, claims),
            Outcome::Continue(vec![HeaderChange::set(
                "X-A",
                r#"["x",1,true,null,[2],{"k":"\u00e9"}]"#
            )])
        );
        assert_eq!(
            run(&join, r#"{"a":[]}"#),
            Outcome::Continue(vec![HeaderChange::set("X-A", "")])
        );
        assert_eq!(
            run(&join, r#"{"a":{"b":[1,"é"]}}"#),
            Outcome::Continue(vec![HeaderChange::set("X-A", r#"{"b":[1,"\u00e9"]}"#)])
        );
    }

    #[test]
    fn encodings() {
        let b64 = cfg(r#"{"headers":[{"header":"X-A","claim":"a","encoding":"base64"}]}"#);
        let b64j = cfg(r#"{"headers":[{"header":"X-A","claim":"a","encoding":"base64json"}]}"#);
        assert_eq!(
            run(&b64, r#"{"a":"foobar"}"#),
            Outcome::Continue(vec![HeaderChange::set("X-A", "Zm9vYmFy")])
        );
        assert_eq!(
            run(&b64, r#"{"a":["a","b"]}"#),
            Outcome::Continue(vec![HeaderChange::set("X-A", base64::encode(b"a,b"))])
        );
        assert_eq!(
            run(&b64j, r#"{"a":"foobar"}"#),
            Outcome::Continue(vec![HeaderChange::set(
                "X-A",
                base64::encode(b"\"foobar\"")
            )])
        );
        assert_eq!(
            run(&b64j, r#"{"a":3.0}"#),
            Outcome::Continue(vec![HeaderChange::set("X-A", base64::encode(b"3"))])
        );
        // A default is sent verbatim, never encoded.
        let d = cfg(
            r#"{"headers":[{"header":"X-A","claim":"a","encoding":"base64json","default":"none"}]}"#,
        );
        assert_eq!(
            run(&d, "{}"),
            Outcome::Continue(vec![HeaderChange::set("X-A", "none")])
        );
    }

    #[test]
    fn claim_names_with_dots_use_the_array_form() {
        let c = cfg(r#"{"headers":[{"header":"X-Roles","claim":["https://example.com/roles"]}]}"#);
        let out = run(&c, r#"{"https://example.com/roles":["a","b"]}"#);
        assert_eq!(
            out,
            Outcome::Continue(vec![HeaderChange::set("X-Roles", "a,b")])
        );
    }

    #[test]
    fn unsafe_claim_values_are_errors_not_headers() {
        let c = cfg(r#"{"headers":[{"header":"X-A","claim":"a"}]}"#);
        assert!(
            matches!(run(&c, r#"{"a":"x\r\nX-Evil: 1"}"#), Outcome::Error(m) if m.contains("CR, LF"))
        );
        assert!(matches!(run(&c, r#"{"a":"x\u0000"}"#), Outcome::Error(_)));
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(9000));
        assert!(matches!(run(&c, &big), Outcome::Error(_)));
        // The same value is fine once encoded.
        let b = cfg(r#"{"headers":[{"header":"X-A","claim":"a","encoding":"base64"}]}"#);
        assert!(matches!(run(&b, r#"{"a":"x\r\ny"}"#), Outcome::Continue(_)));
        // JSON output is ASCII-escaped, so control characters never leak.
        let j = cfg(r#"{"headers":[{"header":"X-A","claim":"a","array":"json"}]}"#);
        assert_eq!(
            run(&j, r#"{"a":["x\ny"]}"#),
            Outcome::Continue(vec![HeaderChange::set("X-A", r#"["x\ny"]"#)])
        );
    }

    /// v1 (parsed claims) and v2 (text forms through the test host) give
    /// the same outcome, and v2 never fetches the claims JSON.
    fn same_v1_v2(c: &Config, claims: &str) -> Outcome {
        let v1 = run(c, claims);
        let mut host = TestHost::new(claims);
        let v2 = host.run(c, on_request_v2);
        assert_eq!(v1, v2, "claims {}", claims);
        assert_eq!(host.counts.claims_json, 0, "claims {}", claims);
        assert_eq!(host.counts.request_json, 0, "claims {}", claims);
        assert!(host.counts.header_batch <= 1);
        v2
    }

    const CLAIMS: &[&str] = &[
        r#"{"sub":"u-1","roles":["admin","ops"],"org":{"tenant":{"id":"acme"}}}"#,
        r#"{"sub":"u-1","org":null}"#,
        r#"{"roles":["a"]}"#,
        r#"{"sub":null}"#,
        "{}",
        r#"{"sub":42.0,"a":1e-7,"roles":[0.25,1.5e300,-7,42.0,1e21,123456789012]}"#,
        r#"{"sub":"Zoë 😀","a":["é😀",true,null,[2,[]],{"k":"é","n":null}],"roles":[]}"#,
        r#"{"sub":"x","a":"[not an array","roles":"[1,2]"}"#,
        r#"{"sub":"x","a":{"b":[1,"é","\u007f\\u00e9\"\n"]},"org":{"tenant":{"id":7}}}"#,
        r#"{"sub":"x","https://example.com/roles":["r1","r2"],"a.b":"dotted","a":{"b":"nested"}}"#,
        r#"{"sub":"x\r\nX-Evil: 1"}"#,
        r#"{"sub":true,"a":false,"roles":[true,false]}"#,
        r#"{"sub":"s","a":["x\ny"],"roles":["a,b","c"]}"#,
    ];

    #[test]
    fn v2_matches_v1_for_every_config_and_claims() {
        let configs = [
            EXAMPLE,
            r#"{"headers":[{"header":"X-A","claim":"a"},{"header":"X-R","claim":"roles","separator":"; "},{"header":"X-S","claim":"sub"}]}"#,
            r#"{"headers":[{"header":"X-A","claim":"a","array":"json"},{"header":"X-R","claim":"roles","array":"json"},{"header":"X-S","claim":"sub","array":"json"}]}"#,
            r#"{"headers":[{"header":"X-A","claim":"a","encoding":"base64"},{"header":"X-R","claim":"roles","encoding":"base64"},{"header":"X-S","claim":"sub","encoding":"base64","array":"json"}]}"#,
            r#"{"headers":[{"header":"X-A","claim":"a","encoding":"base64json"},{"header":"X-R","claim":"roles","encoding":"base64json"},{"header":"X-S","claim":"sub","encoding":"base64json"},{"header":"X-O","claim":"org","encoding":"base64json"}]}"#,
            r#"{"headers":[{"header":"X-D","claim":["https://example.com/roles"]},{"header":"X-E","claim":["a.b"]},{"header":"X-F","claim":"a.b"},{"header":"X-G","claim":"roles.1","default":"-"},{"header":"X-T","claim":"org.tenant.id","required":true}],"missing_status":401,"missing_message":"log in"}"#,
        ];
        for c in configs {
            let c = cfg(c);
            for claims in CLAIMS {
                same_v1_v2(&c, claims);
            }
        }
    }

    #[test]
    fn v2_reads_scalars_and_joined_arrays_without_json() {
        let c = cfg(EXAMPLE);
        let mut host = TestHost::new(CLAIMS[0]);
        let mut st = portcullis_plugin_sdk::CtxState::new(); // no retries
        let out = host.run_with(&mut st, &c, on_request_v2);
        assert!(
            matches!(out, Outcome::Continue(ref ch) if ch.len() == 4),
            "{:?}",
            out
        );
        // sub: 1 claim; roles: claim + kind + count + 2 items; org.tenant.id:
        // 1 claim; org (base64json): kind + claim.
        assert_eq!(host.counts.claim, 6);
        assert_eq!(host.counts.claim_kind, 2);
        assert_eq!(host.counts.claim_count, 1);
        assert_eq!(host.counts.header_batch, 1);
    }

    #[test]
    fn v2_reuses_its_buffers_across_requests() {
        let c = cfg(EXAMPLE);
        let mut st = portcullis_plugin_sdk::CtxState::new();
        let mut host = TestHost::new(CLAIMS[0]);
        let first = host.run_with(&mut st, &c, on_request_v2);
        for _ in 0..5 {
            assert_eq!(host.run_with(&mut st, &c, on_request_v2), first);
        }
    }

    #[test]
    fn unescape_restores_utf8_json() {
        for claims in CLAIMS {
            let v = parse(claims.as_bytes()).unwrap();
            let mut out = String::new();
            unescape_non_ascii(&v.to_json_ascii(), &mut out);
            assert_eq!(out, v.to_json(), "{}", claims);
        }
    }

    #[test]
    fn claim_paths_v2_cannot_address_are_rejected() {
        let e = cfg_err(r#"{"headers":[{"header":"X-A","claim":["a\u0000b"]}]}"#);
        assert!(e.contains("headers[0]") && e.contains("NUL"), "{}", e);
    }

    #[test]
    fn bad_configs_are_rejected_with_a_reason() {
        let cases = [
            ("{}", "needs `headers`"),
            (r#"{"headers":[]}"#, "non-empty"),
            (r#"{"headers":{}}"#, "non-empty"),
            (r#"{"headers":[{"claim":"sub"}]}"#, "needs `header`"),
            (r#"{"headers":[{"header":"X-A"}]}"#, "needs `claim`"),
            (
                r#"{"headers":[{"header":"X A","claim":"sub"}]}"#,
                "not a valid header name",
            ),
            (
                r#"{"headers":[{"header":"Authorization","claim":"sub"}]}"#,
                "never be changed",
            ),
            (
                r#"{"headers":[{"header":"X-Forwarded-User","claim":"sub"}]}"#,
                "never be changed",
            ),
            (
                r#"{"headers":[{"header":"X-A","claim":"a..b"}]}"#,
                "empty segment",
            ),
            (
                r#"{"headers":[{"header":"X-A","claim":"a","requred":true}]}"#,
                "unknown key `requred` in headers[0]",
            ),
            (
                r#"{"headers":[{"header":"X-A","claim":"a","required":"yes"}]}"#,
                "must be true or false",
            ),
            (
                r#"{"headers":[{"header":"X-A","claim":"a","array":"csv"}]}"#,
                "must be \"join\" or \"json\"",
            ),
            (
                r#"{"headers":[{"header":"X-A","claim":"a","array":"json","separator":";"}]}"#,
                "only applies",
            ),
            (
                r#"{"headers":[{"header":"X-A","claim":"a","separator":"\n"}]}"#,
                "separator",
            ),
            (
                r#"{"headers":[{"header":"X-A","claim":"a","encoding":"hex"}]}"#,
                "encoding",
            ),
            (
                r#"{"headers":[{"header":"X-A","claim":"a","default":"a\r\nb"}]}"#,
                "default",
            ),
            (
                r#"{"headers":[{"header":"X-A","claim":"a","default":"d","required":true}]}"#,
                "exclude",
            ),
            (
                r#"{"headers":[{"header":"X-A","claim":"a"},{"header":"x-a","claim":"b"}]}"#,
                "already mapped",
            ),
            (
                r#"{"headers":[{"header":"X-A","claim":"a"}],"missing_status":500}"#,
                "400..=499",
            ),
            (
                r#"{"headers":[{"header":"X-A","claim":"a"}],"extra":1}"#,
                "unknown key `extra` in config",
            ),
            ("[]", "config must be an object"),
        ];
        for (c, want) in cases {
            let e = cfg_err(c);
            assert!(e.contains(want), "{} -> {} (wanted {:?})", c, e, want);
        }
    }
}
