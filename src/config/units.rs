//! Human-friendly units in YAML: durations (`250ms`, `30s`, `15m`, `7d`) and
//! byte sizes (`8KiB`, `1MiB`, `4096`). Parsed once at load.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A duration written as a number with a unit: `ms`, `s`, `m`, `h`, `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub Duration);

/// Parses `250ms`, `30s`, `15m`, `12h`, `7d`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
        format!("duration `{text}` has no unit: write e.g. `30s`, `15m`, `7d`, `250ms`")
    })?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("duration `{text}` must start with a whole number, e.g. `30s`"))?;
    let secs = |k: u64| n.checked_mul(k).map(Duration::from_secs);
    let d = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        _ => {
            return Err(format!(
                "duration `{text}` has unknown unit `{unit}`: use ms, s, m, h or d"
            ))
        }
    };
    d.ok_or_else(|| format!("duration `{text}` is too large"))
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as `30s`, `15m` or `250ms`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse_duration(v).map(HumanDuration).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit: write e.g. `{v}s` or `{v}ms`"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A listen address `IP:PORT`, with an error that says how to write one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListenAddr(pub std::net::SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.trim().parse().map(ListenAddr).map_err(|_| {
            de::Error::custom(format!(
                "`{text}` is not a listen address: write IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080"
            ))
        })
    }
}

/// A byte count: a plain integer or one with `B`, `KiB`, `MiB`, `KB`, `MB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSize(pub usize);

/// Parses `4096`, `8KiB`, `1MiB`, `16KB`.
pub(crate) fn parse_byte_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("size `{text}` must start with a whole number, e.g. `8KiB`"))?;
    let k = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        other => {
            return Err(format!(
                "size `{text}` has unknown unit `{other}`: use B, KiB, MiB, KB or MB"
            ))
        }
    };
    n.checked_mul(k)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as `8KiB` or `4096`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_byte_size(v).map(ByteSize).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                usize::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("size is too large"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_duration("15").unwrap_err().contains("no unit"));
        assert!(parse_duration("5 years")
            .unwrap_err()
            .contains("unknown unit"));
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_byte_size("8KiB").unwrap(), 8192);
        assert_eq!(parse_byte_size("4096").unwrap(), 4096);
        assert!(parse_byte_size("8 parsecs").is_err());
    }
}
