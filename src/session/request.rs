//! Reading what a client sends to the session routes: a size-capped body,
//! strict JSON, the refresh token from the body or the cookie (with its CSRF
//! check), and the client address.

use http::HeaderMap;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use serde_json::{Map, Value};

use super::CookieSettings;
use crate::error::GatewayError;

/// Reads the whole request body, refusing more than `limit` bytes (413).
pub(crate) async fn read_body(
    session: &mut ServerSession,
    limit: usize,
) -> Result<Vec<u8>, GatewayError> {
    let too_large = || GatewayError::BodyTooLarge { limit };
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => return Err(GatewayError::BodyUnreadable),
        }
    }
}

/// The body as a JSON object; `None` for an empty body. Anything else than
/// `application/json` (or `…+json`) is 415, invalid JSON or a non-object 400.
pub(crate) fn json_object(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<Map<String, Value>>, GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json" && !essence.ends_with("+json") {
        return Err(GatewayError::UnsupportedMediaType);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(GatewayError::JsonNotObject),
        Err(e) => Err(GatewayError::InvalidJson {
            detail: e.to_string(),
        }),
    }
}

/// `field` of the body as a string: absent, `null` and `""` are `None`, any
/// other type is a 400 naming the field.
pub(crate) fn string_field<'a>(
    body: Option<&'a Map<String, Value>>,
    field: &str,
) -> Result<Option<&'a str>, GatewayError> {
    match body.and_then(|b| b.get(field)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(GatewayError::FieldNotString {
            field: field.to_owned(),
        }),
    }
}

/// The refresh token from the cookie, when cookie mode is on and the CSRF
/// defence holds: the configured header is present and any `Origin` is
/// allowed. `Ok(None)` when there is no cookie.
pub(crate) fn cookie_token<'a>(
    headers: &'a HeaderMap,
    cookie: Option<&CookieSettings>,
) -> Result<Option<&'a str>, GatewayError> {
    let Some(cookie) = cookie else {
        return Ok(None);
    };
    let Some(token) = crate::access::cookie_value(headers, &cookie.name) else {
        return Ok(None);
    };
    if !headers.contains_key(&cookie.csrf_header) {
        return Err(GatewayError::CsrfHeaderMissing {
            header: cookie.csrf_header.clone(),
        });
    }
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        let origin = origin
            .to_str()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_ascii_lowercase();
        if !cookie.allowed_origins.contains(&origin) {
            return Err(GatewayError::CsrfOriginRefused);
        }
    }
    Ok(Some(token))
}

/// `Set-Cookie` value carrying `token` for `max_age_secs`; `None` clears it.
pub(crate) fn set_cookie(
    cookie: &CookieSettings,
    path: &str,
    token: Option<(&str, u64)>,
) -> String {
    let secure = if cookie.secure { "; Secure" } else { "" };
    match token {
        Some((value, max_age)) => format!(
            "{}={value}; HttpOnly{secure}; SameSite=Strict; Path={path}; Max-Age={max_age}",
            cookie.name
        ),
        None => format!(
            "{}=; HttpOnly{secure}; SameSite=Strict; Path={path}; Max-Age=0",
            cookie.name
        ),
    }
}

/// The client's IP address, as stored with the session and rate limited.
pub(crate) fn client_ip(session: &ServerSession) -> Option<String> {
    match session.client_addr() {
        Some(PingoraAddr::Inet(a)) => Some(a.ip().to_string()),
        _ => None,
    }
}

/// The `User-Agent`, capped so a huge header cannot bloat the store.
pub(crate) fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| truncate(s, 512))
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn json_bodies_are_strict_about_type_and_shape() {
        let json = headers(&[("content-type", "application/json; charset=utf-8")]);
        assert_eq!(json_object(&json, b"  ").ok(), Some(None));
        assert!(json_object(&json, br#"{"a":1}"#).expect("object").is_some());
        assert_eq!(
            json_object(&json, b"[1]").err().map(|e| e.status()),
            Some(400)
        );
        assert_eq!(
            json_object(&json, b"{nope").err().map(|e| e.status()),
            Some(400)
        );
        let text = headers(&[("content-type", "text/plain")]);
        assert_eq!(
            json_object(&text, br#"{"a":1}"#).err().map(|e| e.status()),
            Some(415)
        );
        let vendor = headers(&[("content-type", "application/vnd.api+json")]);
        assert!(json_object(&vendor, br#"{}"#).is_ok());
    }

    #[test]
    fn string_fields_refuse_other_types() {
        let map: Map<String, Value> =
            serde_json::from_str(r#"{"a":"x","b":5,"c":null,"d":""}"#).expect("json");
        assert_eq!(string_field(Some(&map), "a").ok(), Some(Some("x")));
        assert_eq!(
            string_field(Some(&map), "b").err().map(|e| e.status()),
            Some(400)
        );
        assert_eq!(string_field(Some(&map), "c").ok(), Some(None));
        assert_eq!(string_field(Some(&map), "d").ok(), Some(None));
        assert_eq!(string_field(None, "a").ok(), Some(None));
    }

    #[test]
    fn cookie_token_needs_the_csrf_header_and_an_allowed_origin() {
        let cookie = CookieSettings {
            name: "rt".into(),
            secure: true,
            csrf_header: http::header::HeaderName::from_static("x-csrf-protection"),
            allowed_origins: vec!["https://app.example.com".into()],
        };
        let no_csrf = headers(&[("cookie", "a=b; rt=tok")]);
        assert_eq!(
            cookie_token(&no_csrf, Some(&cookie))
                .err()
                .map(|e| e.status()),
            Some(403)
        );
        let ok = headers(&[("cookie", "rt=tok"), ("x-csrf-protection", "1")]);
        assert_eq!(cookie_token(&ok, Some(&cookie)).ok(), Some(Some("tok")));
        let foreign = headers(&[
            ("cookie", "rt=tok"),
            ("x-csrf-protection", "1"),
            ("origin", "https://evil.example"),
        ]);
        assert_eq!(
            cookie_token(&foreign, Some(&cookie))
                .err()
                .map(|e| e.status()),
            Some(403)
        );
        let allowed = headers(&[
            ("cookie", "rt=tok"),
            ("x-csrf-protection", "1"),
            ("origin", "https://APP.example.com/"),
        ]);
        assert_eq!(
            cookie_token(&allowed, Some(&cookie)).ok(),
            Some(Some("tok"))
        );
        assert_eq!(cookie_token(&headers(&[]), Some(&cookie)).ok(), Some(None));
        assert_eq!(cookie_token(&ok, None).ok(), Some(None));
        assert!(set_cookie(&cookie, "/api/auth", Some(("v", 60)))
            .contains("HttpOnly; Secure; SameSite=Strict; Path=/api/auth; Max-Age=60"));
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
