//! The request metadata the host passes to `on_request` (ABI v1).

use crate::json::Value;

/// Request metadata. Built from the host's JSON
/// `{"method","path","query","host","client_cert","headers":{name: value}}`;
/// unknown fields are ignored so the host may add some without a version bump.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// Method as received, e.g. `GET`.
    pub method: String,
    /// Path as received: starts with `/`, still percent-encoded, not
    /// normalized (no `.`/`..` resolution), without the query.
    pub path: String,
    /// Raw query string without `?` (empty when none).
    pub query: String,
    /// Host the client asked for (`Host` header or URI authority), may be empty.
    pub host: String,
    /// Only the headers listed in the plugin's `request_headers`, with
    /// lower-case names, in the host's order.
    pub headers: Vec<(String, String)>,
    /// The verified client certificate of the connection (mTLS), `None`
    /// when the client sent none (or the host predates the field).
    pub client_cert: Option<ClientCert>,
}

/// A verified client certificate, as the host describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientCert {
    /// SHA-256 of the DER certificate, base64url without padding: the
    /// RFC 8705 `x5t#S256` value a certificate-bound token's `cnf` carries.
    pub sha256: String,
    /// The subject distinguished name, e.g. `CN=alice, O=Example`.
    pub subject: String,
}

impl Request {
    /// Reads the host's request JSON. `method` and `path` are required
    /// strings; `query`, `host` and `headers` default to empty.
    pub fn from_json(v: &Value) -> Result<Request, String> {
        if v.as_object().is_none() {
            return Err(format!(
                "request must be a JSON object, got {}",
                v.type_name()
            ));
        }
        let field = |k: &str, required: bool| -> Result<String, String> {
            match v.get(k) {
                Some(Value::String(s)) => Ok(s.clone()),
                None | Some(Value::Null) if !required => Ok(String::new()),
                None => Err(format!("request has no `{}`", k)),
                Some(other) => Err(format!(
                    "request `{}` must be a string, got {}",
                    k,
                    other.type_name()
                )),
            }
        };
        let mut req = Request {
            method: field("method", true)?,
            path: field("path", true)?,
            query: field("query", false)?,
            host: field("host", false)?,
            headers: Vec::new(),
            client_cert: None,
        };
        match v.get("client_cert") {
            None | Some(Value::Null) => {}
            Some(Value::Object(_)) => {
                let cert = v.get("client_cert");
                let text = |k: &str| match cert.and_then(|c| c.get(k)) {
                    Some(Value::String(s)) => Ok(s.clone()),
                    _ => Err(format!("request `client_cert.{}` must be a string", k)),
                };
                req.client_cert = Some(ClientCert {
                    sha256: text("sha256")?,
                    subject: text("subject")?,
                });
            }
            Some(other) => {
                return Err(format!(
                    "request `client_cert` must be an object or null, got {}",
                    other.type_name()
                ))
            }
        }
        match v.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(members)) => {
                for (name, value) in members {
                    match value {
                        Value::String(s) => {
                            req.headers.push((name.to_ascii_lowercase(), s.clone()))
                        }
                        other => {
                            return Err(format!(
                                "request header `{}` must be a string, got {}",
                                name,
                                other.type_name()
                            ))
                        }
                    }
                }
            }
            Some(other) => {
                return Err(format!(
                    "request `headers` must be an object, got {}",
                    other.type_name()
                ))
            }
        }
        Ok(req)
    }

    /// A forwarded request header by name (ASCII case-insensitive). When the
    /// JSON repeated a name, the last value wins.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;

    #[test]
    fn reads_the_documented_shape() {
        let v = parse(br#"{"method":"GET","path":"/api/x","query":"a=1","host":"example.com","headers":{"x-tenant":"acme","X-Other":"o"},"future":1}"#).unwrap();
        let r = Request::from_json(&v).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/api/x");
        assert_eq!(r.query, "a=1");
        assert_eq!(r.host, "example.com");
        assert_eq!(r.header("X-Tenant"), Some("acme"));
        assert_eq!(r.header("x-other"), Some("o"));
        assert_eq!(r.header("x-missing"), None);
    }

    #[test]
    fn reads_the_client_certificate_when_there_is_one() {
        let v = parse(
            br#"{"method":"GET","path":"/","client_cert":{"sha256":"q2V","subject":"CN=a"}}"#,
        )
        .unwrap();
        let r = Request::from_json(&v).unwrap();
        assert_eq!(
            r.client_cert,
            Some(ClientCert {
                sha256: "q2V".into(),
                subject: "CN=a".into()
            })
        );
        let v = parse(br#"{"method":"GET","path":"/","client_cert":null}"#).unwrap();
        assert_eq!(Request::from_json(&v).unwrap().client_cert, None);
        let v = parse(br#"{"method":"GET","path":"/","client_cert":"x"}"#).unwrap();
        assert!(Request::from_json(&v).is_err());
    }

    #[test]
    fn optional_fields_default_to_empty() {
        let v = parse(br#"{"method":"POST","path":"/"}"#).unwrap();
        let r = Request::from_json(&v).unwrap();
        assert_eq!(r.query, "");
        assert_eq!(r.host, "");
        assert!(r.headers.is_empty());
    }

    #[test]
    fn rejects_wrong_shapes() {
        for s in [
            "[]",
            r#"{"path":"/"}"#,
            r#"{"method":"GET"}"#,
            r#"{"method":1,"path":"/"}"#,
            r#"{"method":"GET","path":"/","headers":[]}"#,
            r#"{"method":"GET","path":"/","headers":{"a":1}}"#,
        ] {
            assert!(
                Request::from_json(&parse(s.as_bytes()).unwrap()).is_err(),
                "{}",
                s
            );
        }
    }
}
