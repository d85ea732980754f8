//! `${VAR}` and `${VAR:-default}` interpolation of the raw YAML text.
//!
//! Interpolation happens before parsing so that every scalar (addresses,
//! durations, secrets) can come from the environment. To keep a value from
//! changing the YAML structure, a substituted value is escaped for the quoting
//! context it lands in: inside `"…"` it is escaped as a double-quoted scalar,
//! inside `'…'` as a single-quoted one, and in a plain scalar it may only use
//! characters that cannot start a comment, a mapping or a flow collection.
//! Substitutions never add a line, so line numbers in later errors stay true.

use std::fmt::Write as _;

/// A reference to an environment variable that could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterpolationError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Double,
    Single,
}

/// Replaces every `${NAME}` / `${NAME:-default}` in `text` using `lookup`.
/// `$${` is an escaped literal `${`. All problems are collected, not just the
/// first, so an operator can fix them in one pass.
pub(crate) fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<InterpolationError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (line_idx, line) in text.split_inclusive('\n').enumerate() {
        let mut quote = Quote::None;
        let mut rest = line;
        let mut column = 1;
        while let Some(ch) = rest.chars().next() {
            if rest.starts_with("$${") {
                out.push_str("${");
                rest = &rest[3..];
                column += 3;
                continue;
            }
            if quote == Quote::None && ch == '#' && (column == 1 || out.ends_with([' ', '\t'])) {
                out.push_str(rest);
                break;
            }
            if rest.starts_with("${") {
                let Some(end) = rest.find('}') else {
                    errors.push(InterpolationError {
                        line: line_idx + 1,
                        column,
                        message: "unterminated `${`: write `${NAME}` or `${NAME:-default}` (or `$${` for a literal)".into(),
                    });
                    out.push_str(rest);
                    break;
                };
                let inner = &rest[2..end];
                let (name, default) = match inner.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (inner, None),
                };
                let valid_name = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                let here = |message: String| InterpolationError {
                    line: line_idx + 1,
                    column,
                    message,
                };
                if !valid_name {
                    errors.push(here(format!(
                        "`${{{inner}}}` is not a valid variable reference: names use A-Z, a-z, 0-9 and _"
                    )));
                } else {
                    match lookup(name).or_else(|| default.map(str::to_owned)) {
                        None => errors.push(here(format!(
                            "environment variable `{name}` is not set: export it, or give a default with `${{{name}:-value}}`"
                        ))),
                        Some(value) => match escape_for(quote, &value) {
                            Ok(escaped) => out.push_str(&escaped),
                            Err(why) => errors.push(here(format!(
                                "environment variable `{name}` {why}: put the reference in double quotes, e.g. \"${{{name}}}\""
                            ))),
                        },
                    }
                }
                column += end + 1;
                rest = &rest[end + 1..];
                continue;
            }
            match (quote, ch) {
                (Quote::None, '"') => quote = Quote::Double,
                (Quote::None, '\'') => quote = Quote::Single,
                (Quote::Double, '"') => quote = Quote::None,
                (Quote::Single, '\'') => quote = Quote::None,
                (Quote::Double, '\\') => {
                    // Copy the escape and the escaped character together.
                    let mut two = rest.chars();
                    two.next();
                    if let Some(next) = two.next() {
                        out.push('\\');
                        out.push(next);
                        rest = &rest[1 + next.len_utf8()..];
                        column += 2;
                        continue;
                    }
                }
                _ => {}
            }
            out.push(ch);
            rest = &rest[ch.len_utf8()..];
            column += 1;
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn escape_for(quote: Quote, value: &str) -> Result<String, &'static str> {
    match quote {
        Quote::Double => {
            let mut s = String::with_capacity(value.len());
            for c in value.chars() {
                match c {
                    '"' => s.push_str("\\\""),
                    '\\' => s.push_str("\\\\"),
                    '\n' => s.push_str("\\n"),
                    '\r' => s.push_str("\\r"),
                    '\t' => s.push_str("\\t"),
                    c if c.is_control() => {
                        let _ = write!(s, "\\u{:04x}", c as u32);
                    }
                    c => s.push(c),
                }
            }
            Ok(s)
        }
        Quote::Single => {
            if value.contains(['\n', '\r']) {
                return Err("contains a line break, which a single-quoted scalar cannot hold");
            }
            Ok(value.replace('\'', "''"))
        }
        Quote::None => {
            let safe = value.chars().all(|c| {
                c.is_ascii_alphanumeric() || "._/+=-~@%:,;()$^*!?".contains(c) || !c.is_ascii()
            });
            let starts_ok = !value.starts_with(['-', '?', ':', '!', '*', '&', '%', '@', ',']);
            if safe && starts_ok && !value.contains(": ") {
                Ok(value.to_owned())
            } else {
                Err("contains characters that would change the YAML structure here")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8080".into()),
            "SECRET" => Some("a#b\"c\\d".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn plain_reference_is_replaced() {
        assert_eq!(
            interpolate("listen: 127.0.0.1:${PORT}\n", env).unwrap(),
            "listen: 127.0.0.1:8080\n"
        );
    }

    #[test]
    fn default_is_used_when_unset() {
        assert_eq!(interpolate("a: ${NOPE:-x1}\n", env).unwrap(), "a: x1\n");
        assert_eq!(interpolate("a: ${EMPTY:-x1}\n", env).unwrap(), "a: \n");
    }

    #[test]
    fn missing_variable_reports_line_and_column() {
        let errs = interpolate("a: 1\nb: ${NOPE}\n", env).unwrap_err();
        assert_eq!((errs[0].line, errs[0].column), (2, 4));
        assert!(
            errs[0].message.contains("`NOPE` is not set"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn value_inside_double_quotes_is_escaped() {
        let out = interpolate("s: \"${SECRET}\"\n", env).unwrap();
        assert_eq!(out, "s: \"a#b\\\"c\\\\d\"\n");
    }

    #[test]
    fn structural_characters_in_plain_scalar_are_refused() {
        let errs = interpolate("s: ${SECRET}\n", env).unwrap_err();
        assert!(
            errs[0].message.contains("double quotes"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn comments_and_escaped_dollar_are_left_alone() {
        assert_eq!(
            interpolate("a: 1 # ${NOPE}\n", env).unwrap(),
            "a: 1 # ${NOPE}\n"
        );
        assert_eq!(interpolate("a: $${HOME}\n", env).unwrap(), "a: ${HOME}\n");
    }
}
