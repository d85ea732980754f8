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
    encode_fixed(
        out,
        [req.method, req.path, req.query, req.host],
        req.client_cert.map(|c| (c.sha256, c.subject)),
    );
}

fn encode_fixed(
    out: &mut Vec<u8>,
    [method, path, query, host]: [&str; 4],
    cert: Option<(&str, &str)>,
) {
    out.clear();
    out.extend_from_slice(b"{\"method\":");
    push_json_string(out, method);
    out.extend_from_slice(b",\"path\":");
    push_json_string(out, path);
    out.extend_from_slice(b",\"query\":");
    push_json_string(out, query);
    out.extend_from_slice(b",\"host\":");
    push_json_string(out, host);
    out.extend_from_slice(b",\"client_cert\":");
    match cert {
        Some((sha256, subject)) => {
            out.extend_from_slice(b"{\"sha256\":");
            push_json_string(out, sha256);
            out.extend_from_slice(b",\"subject\":");
            push_json_string(out, subject);
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
        let mut values = utf8_values(headers, name).peekable();
        if values.peek().is_none() {
            continue;
        }
        push_header_member(out, &mut first, name.as_str());
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

fn utf8_values<'h>(headers: &'h HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
}

/// `,"name":"` (without the comma for the first member).
fn push_header_member(out: &mut Vec<u8>, first: &mut bool, name: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    push_json_string(out, name);
    out.extend_from_slice(b":\"");
}

/// The request as an ABI v2 guest reads it (`request_field`,
/// `request_header`, `request_json`): copied into buffers the instance
/// keeps, so a warm instance allocates nothing per call.
#[derive(Debug, Default)]
pub(crate) struct RequestView {
    /// method, path, query, host.
    fixed: [String; 4],
    /// Client certificate thumbprint and subject (buffers kept between
    /// calls; `has_cert` says whether this request has one).
    cert: (String, String),
    has_cert: bool,
    /// One slot per `request_headers` entry: the joined value, if any.
    headers: Vec<Option<String>>,
    spare: Vec<String>,
}

impl RequestView {
    /// Copies what a guest may read of `req`; `wanted` is the plugin's
    /// `request_headers`.
    pub(crate) fn fill(&mut self, req: &RequestMeta<'_>, wanted: &[HeaderName]) {
        for (slot, value) in self
            .fixed
            .iter_mut()
            .zip([req.method, req.path, req.query, req.host])
        {
            slot.clear();
            slot.push_str(value);
        }
        self.has_cert = req.client_cert.is_some();
        if let Some(c) = req.client_cert {
            self.cert.0.clear();
            self.cert.0.push_str(c.sha256);
            self.cert.1.clear();
            self.cert.1.push_str(c.subject);
        }
        self.spare.extend(self.headers.drain(..).flatten());
        for name in wanted {
            let mut values = utf8_values(req.headers, name).peekable();
            if values.peek().is_none() {
                self.headers.push(None);
                continue;
            }
            let mut joined = self.spare.pop().unwrap_or_default();
            joined.clear();
            for (i, value) in values.enumerate() {
                if i > 0 {
                    joined.push_str(", ");
                }
                joined.push_str(value);
            }
            self.headers.push(Some(joined));
        }
    }

    /// `request_field`: 0 method, 1 path, 2 query, 3 host, 4 certificate
    /// SHA-256, 5 certificate subject.
    pub(crate) fn field(&self, field: i32) -> Result<&[u8], i32> {
        use super::claim_text::{INVALID, MISSING};
        match field {
            0..=3 => Ok(self.fixed[field as usize].as_bytes()),
            4 | 5 if !self.has_cert => Err(MISSING),
            4 => Ok(self.cert.0.as_bytes()),
            5 => Ok(self.cert.1.as_bytes()),
            _ => Err(INVALID),
        }
    }

    /// `request_header`: the joined value of a listed header.
    pub(crate) fn header(&self, wanted: &[HeaderName], name: &[u8]) -> Result<&[u8], i32> {
        use super::claim_text::{INVALID, MISSING, NOT_VISIBLE};
        let name = HeaderName::from_bytes(name).map_err(|_| INVALID)?;
        let slot = wanted.iter().position(|w| *w == name).ok_or(NOT_VISIBLE)?;
        match self.headers.get(slot) {
            Some(Some(value)) => Ok(value.as_bytes()),
            _ => Err(MISSING),
        }
    }

    /// v1's request JSON, byte for byte.
    pub(crate) fn encode_json(&self, wanted: &[HeaderName], out: &mut Vec<u8>) {
        let [method, path, query, host] = &self.fixed;
        encode_fixed(
            out,
            [method, path, query, host],
            self.has_cert
                .then_some((self.cert.0.as_str(), self.cert.1.as_str())),
        );
        let mut first = true;
        for (name, value) in wanted.iter().zip(&self.headers) {
            if let Some(value) = value {
                push_header_member(out, &mut first, name.as_str());
                push_json_escaped(out, value);
                out.push(b'"');
            }
        }
        out.extend_from_slice(b"}}");
    }
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
    fn the_v2_view_reads_fields_and_encodes_the_same_json() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", HeaderValue::from_static("one \"1\""));
        headers.append("x-a", HeaderValue::from_static("two"));
        headers.append("x-b", HeaderValue::from_bytes(b"\xfe").unwrap());
        let wanted = [
            HeaderName::from_static("x-a"),
            HeaderName::from_static("x-b"),
            HeaderName::from_static("x-c"),
        ];
        let cert = super::super::ClientCertMeta {
            sha256: "q2Vz",
            subject: "CN=alice",
        };
        let mut view = RequestView::default();
        for client_cert in [Some(cert), None, Some(cert)] {
            let req = RequestMeta {
                method: "POST",
                path: "/p\u{e9}",
                query: "a=1",
                host: "h:8443",
                headers: &headers,
                client_cert,
            };
            view.fill(&req, &wanted);
            let mut v1 = Vec::new();
            encode_prefix(&req, &mut v1);
            encode_headers(&headers, &wanted, &mut v1);
            let mut v2 = Vec::new();
            view.encode_json(&wanted, &mut v2);
            assert_eq!(
                String::from_utf8(v2).unwrap(),
                String::from_utf8(v1).unwrap()
            );
            assert_eq!(view.field(0), Ok(&b"POST"[..]));
            assert_eq!(view.field(1), Ok("/p\u{e9}".as_bytes()));
            assert_eq!(view.field(2), Ok(&b"a=1"[..]));
            assert_eq!(view.field(3), Ok(&b"h:8443"[..]));
            match client_cert {
                Some(_) => {
                    assert_eq!(view.field(4), Ok(&b"q2Vz"[..]));
                    assert_eq!(view.field(5), Ok(&b"CN=alice"[..]));
                }
                None => {
                    assert_eq!(view.field(4), Err(-1));
                    assert_eq!(view.field(5), Err(-1));
                }
            }
            assert_eq!(view.field(6), Err(-2));
            assert_eq!(view.field(-1), Err(-2));
            assert_eq!(view.header(&wanted, b"X-A"), Ok(&b"one \"1\", two"[..]));
            assert_eq!(view.header(&wanted, b"x-b"), Err(-1), "no UTF-8 value");
            assert_eq!(view.header(&wanted, b"x-c"), Err(-1));
            assert_eq!(view.header(&wanted, b"x-d"), Err(-3));
            assert_eq!(view.header(&wanted, b"bad name"), Err(-2));
        }
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
