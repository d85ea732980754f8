//! The request JSON handed to `portcullis_on_request` (ABI v1, section 6):
//! `{"method":…,"path":…,"query":…,"host":…,"client_cert":…,"headers":{…}}`.
//!
//! Written by hand rather than through serde: the fixed part is encoded once
//! per chain run and each plugin only appends the headers it asked for.

use http::{HeaderMap, HeaderName};

use super::RequestMeta;

/// The part of the request JSON every plugin shares, up to and including
/// `"headers":{`.
pub(crate) fn encode_prefix(req: &RequestMeta<'_>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"{\"method\":");
    push_json_string(out, req.method);
    out.extend_from_slice(b",\"path\":");
    push_json_string(out, req.path);
    out.extend_from_slice(b",\"query\":");
    push_json_string(out, req.query);
    out.extend_from_slice(b",\"host\":");
    push_json_string(out, req.host);
    out.extend_from_slice(b",\"client_cert\":");
    match &req.client_cert {
        Some(cert) => {
            out.extend_from_slice(b"{\"sha256\":");
            push_json_string(out, cert.sha256);
            out.extend_from_slice(b",\"subject\":");
            push_json_string(out, cert.subject);
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"headers\":{");
}

/// Appends the selected headers and closes the object. Several values of
/// one header are joined with `", "`; values that are not UTF-8 are left
/// out, and a header with no usable value is omitted.
pub(crate) fn encode_headers(headers: &HeaderMap, wanted: &[HeaderName], out: &mut Vec<u8>) {
    let mut first = true;
    for name in wanted {
        let mut values = headers
            .get_all(name)
            .iter()
            .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
            .peekable();
        if values.peek().is_none() {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        push_json_string(out, name.as_str());
        out.extend_from_slice(b":\"");
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            push_json_escaped(out, value);
        }
        out.push(b'"');
    }
    out.extend_from_slice(b"}}");
}

fn push_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_json_escaped(out, s);
    out.push(b'"');
}

/// RFC 8259 string escaping (quotes, backslash, control characters).
fn push_json_escaped(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn encode(req: &RequestMeta<'_>, wanted: &[HeaderName]) -> serde_json::Value {
        let mut out = Vec::new();
        encode_prefix(req, &mut out);
        encode_headers(req.headers, wanted, &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn encodes_the_documented_shape_with_only_the_wanted_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-tenant", HeaderValue::from_static("acme"));
        headers.insert("x-other", HeaderValue::from_static("hidden"));
        let req = RequestMeta {
            method: "GET",
            path: "/api/x",
            query: "a=1",
            host: "example.com",
            headers: &headers,
            client_cert: None,
        };
        let got = encode(
            &req,
            &[
                HeaderName::from_static("x-tenant"),
                HeaderName::from_static("x-absent"),
            ],
        );
        assert_eq!(
            got,
            serde_json::json!({"method":"GET","path":"/api/x","query":"a=1","host":"example.com","client_cert":null,"headers":{"x-tenant":"acme"}})
        );
    }

    #[test]
    fn a_client_certificate_is_shown_with_its_thumbprint_and_subject() {
        let headers = HeaderMap::new();
        let req = RequestMeta {
            method: "GET",
            path: "/",
            query: "",
            host: "",
            headers: &headers,
            client_cert: Some(super::super::ClientCertMeta {
                sha256: "q2Vz-abc_",
                subject: "CN=alice, O=\"Ex\"",
            }),
        };
        let got = encode(&req, &[]);
        assert_eq!(
            got["client_cert"],
            serde_json::json!({"sha256": "q2Vz-abc_", "subject": "CN=alice, O=\"Ex\""})
        );
    }

    #[test]
    fn escapes_strings_and_joins_repeated_headers() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", HeaderValue::from_static("one \"1\""));
        headers.append("x-a", HeaderValue::from_static("two\\2"));
        headers.append("x-a", HeaderValue::from_bytes(b"bad\xff").unwrap());
        headers.append("x-b", HeaderValue::from_bytes(b"\xfe").unwrap());
        let req = RequestMeta {
            method: "P\"ST",
            path: "/a\u{1}b\n\u{e9}",
            query: "",
            host: "",
            headers: &headers,
            client_cert: None,
        };
        let got = encode(
            &req,
            &[
                HeaderName::from_static("x-a"),
                HeaderName::from_static("x-b"),
            ],
        );
        assert_eq!(got["method"], "P\"ST");
        assert_eq!(got["path"], "/a\u{1}b\n\u{e9}");
        assert_eq!(
            got["headers"],
            serde_json::json!({"x-a": "one \"1\", two\\2"})
        );
    }
}
