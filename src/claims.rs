//! Verified claims as the rest of the gateway sees them: the parsed payload,
//! and its JSON encoding built only when something asks for it (ABI v1
//! plugins and the `claims_json` import). A cached token whose routes run
//! only ABI v2 plugins never pays for a second copy of its claims.

use std::ops::Deref;
use std::sync::{Arc, LazyLock, OnceLock};

use serde_json::{Map, Value};

/// The payload of a verified token (or `{}` for an anonymous request).
/// Shared through an `Arc` by the verifier's cache and the plugin host.
#[derive(Debug, Default)]
pub struct Claims {
    map: Map<String, Value>,
    json: OnceLock<Vec<u8>>,
}

static EMPTY: LazyLock<Arc<Claims>> = LazyLock::new(|| Arc::new(Claims::default()));

impl Claims {
    /// Wraps a verified payload.
    pub fn new(map: Map<String, Value>) -> Claims {
        Claims {
            map,
            json: OnceLock::new(),
        }
    }

    /// Wraps a JSON object (`None` for any other value), shared.
    pub fn from_value(value: Value) -> Option<Arc<Claims>> {
        match value {
            Value::Object(map) => Some(Arc::new(Claims::new(map))),
            _ => None,
        }
    }

    /// The shared empty claim set of anonymous requests.
    pub fn empty() -> Arc<Claims> {
        Arc::clone(&EMPTY)
    }

    /// The payload as compact JSON, encoded on first use and kept.
    pub fn json(&self) -> &[u8] {
        self.json.get_or_init(|| {
            // A map of JSON values always encodes; keep `{}` as a fallback
            // rather than a panic path.
            serde_json::to_vec(&self.map).unwrap_or_else(|_| b"{}".to_vec())
        })
    }

    /// Whether the JSON encoding exists yet (for memory tests).
    pub fn json_encoded(&self) -> bool {
        self.json.get().is_some()
    }
}

impl Deref for Claims {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Map<String, Value> {
        &self.map
    }
}

impl From<Map<String, Value>> for Claims {
    fn from(map: Map<String, Value>) -> Claims {
        Claims::new(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_encoded_once_on_demand() {
        let mut map = Map::new();
        map.insert("sub".into(), Value::from("alice"));
        let claims = Claims::new(map);
        assert!(!claims.json_encoded());
        assert_eq!(claims.json(), br#"{"sub":"alice"}"#);
        assert!(claims.json_encoded());
        assert_eq!(claims.get("sub"), Some(&Value::from("alice")));
        assert_eq!(Claims::empty().json(), b"{}");
    }
}
