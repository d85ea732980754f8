//! Helpers for reading a plugin's JSON config strictly: unknown keys and
//! wrong types are errors, so a typo fails at load time instead of silently
//! changing a security decision.

use crate::json::Value;

/// Checks that `v` is an object whose keys are all in `allowed`.
/// `what` names the object in messages (e.g. `config`, `headers[2]`).
pub fn check_keys(v: &Value, what: &str, allowed: &[&str]) -> Result<(), String> {
    let members = match v.as_object() {
        Some(m) => m,
        None => return Err(format!("{} must be an object, got {}", what, v.type_name())),
    };
    for (k, _) in members {
        if !allowed.contains(&k.as_str()) {
            return Err(format!(
                "unknown key `{}` in {} (known: {})",
                k,
                what,
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

/// A required member of an object.
pub fn required<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a Value, String> {
    match v.get(key) {
        Some(x) if !x.is_null() => Ok(x),
        _ => Err(format!("{} needs `{}`", what, key)),
    }
}

/// An optional string member (`null` counts as absent).
pub fn opt_str<'a>(v: &'a Value, key: &str, what: &str) -> Result<Option<&'a str>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!(
            "{}.{} must be a string, got {}",
            what,
            key,
            other.type_name()
        )),
    }
}

/// An optional boolean member (`null` counts as absent).
pub fn opt_bool(v: &Value, key: &str, what: &str) -> Result<Option<bool>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(format!(
            "{}.{} must be true or false, got {}",
            what,
            key,
            other.type_name()
        )),
    }
}

/// An optional integer member within `min..=max` (`null` counts as absent).
pub fn opt_int(
    v: &Value,
    key: &str,
    what: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => match x.as_i64() {
            Some(i) if i >= min && i <= max => Ok(Some(i)),
            _ => Err(format!(
                "{}.{} must be an integer in {}..={}, got {}",
                what, key, min, max, x
            )),
        },
    }
}

/// An optional deny status: an integer in 400..=499 (the only range the
/// host accepts from `deny`).
pub fn opt_status(v: &Value, key: &str, what: &str) -> Result<Option<u16>, String> {
    Ok(opt_int(v, key, what, 400, 499)?.map(|s| s as u16))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;

    #[test]
    fn strict_reading() {
        let v = parse(br#"{"a":"x","b":true,"s":403,"n":null,"f":1.5}"#).unwrap();
        assert!(check_keys(&v, "config", &["a", "b", "s", "n", "f"]).is_ok());
        let e = check_keys(&v, "config", &["a"]).unwrap_err();
        assert!(e.contains("unknown key `b` in config"), "{}", e);
        assert!(check_keys(&parse(b"[]").unwrap(), "config", &[]).is_err());
        assert_eq!(opt_str(&v, "a", "c").unwrap(), Some("x"));
        assert_eq!(opt_str(&v, "n", "c").unwrap(), None);
        assert!(opt_str(&v, "b", "c").is_err());
        assert_eq!(opt_bool(&v, "b", "c").unwrap(), Some(true));
        assert!(opt_bool(&v, "a", "c").is_err());
        assert_eq!(opt_status(&v, "s", "c").unwrap(), Some(403));
        assert_eq!(opt_status(&v, "zz", "c").unwrap(), None);
        assert!(opt_int(&v, "f", "c", 0, 10).is_err());
        assert!(opt_status(&parse(br#"{"s":500}"#).unwrap(), "s", "c").is_err());
        assert!(opt_status(&parse(br#"{"s":"403"}"#).unwrap(), "s", "c").is_err());
        assert!(required(&v, "n", "c").is_err());
        assert!(required(&v, "a", "c").is_ok());
    }
}
