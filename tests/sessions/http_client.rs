//! HTTP helpers: the requests a seed client sends to the session routes and
//! the proxied API.

use super::*;

/// A JSON request sent from another loopback source address.
pub fn request_from(source_ip: &str, port: u16, method: &str, path: &str, body: &str) -> Response {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nUser-Agent: {USER_AGENT}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let source: std::net::SocketAddr = format!("{source_ip}:0").parse().expect("source address");
    let bytes = runtime().block_on(async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(source).expect("bind the source address");
        let mut stream = socket
            .connect(([127, 0, 0, 1], port).into())
            .await
            .expect("connect");
        stream
            .write_all(req.as_bytes())
            .await
            .expect("write request");
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf)).await;
        buf
    });
    parse_raw_response(&bytes)
}

pub fn post_json(port: u16, path: &str, headers: &[(&str, &str)], body: &Value) -> Response {
    request(port, "POST", path, headers, Some(&body.to_string()))
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `method path` with only a bearer token (no body).
pub fn with_bearer(port: u16, method: &str, path: &str, token: &str) -> Response {
    request(
        port,
        method,
        path,
        &[("Authorization", &bearer(token))],
        None,
    )
}

pub fn refresh_at(port: u16, path: &str, refresh_token: &str) -> Response {
    post_json(port, path, &[], &json!({ "refreshToken": refresh_token }))
}

pub fn refresh(port: u16, refresh_token: &str) -> Response {
    refresh_at(port, "/api/auth/refresh", refresh_token)
}

pub fn logout_with_refresh_token(port: u16, refresh_token: &str) -> Response {
    refresh_at(port, "/api/auth/logout", refresh_token)
}

/// A protected upstream call with an access token.
pub fn api(port: u16, access_token: &str) -> Response {
    with_bearer(port, "GET", "/api/profile", access_token)
}

pub fn list_sessions(port: u16, access_token: &str) -> Response {
    with_bearer(port, "GET", "/api/auth/sessions", access_token)
}

/// `POST /api/auth/login` as a seed client sends it (`deviceInfo` optional).
pub fn login(port: u16, email: &str, password: &str, device: Option<&str>) -> Response {
    login_with_agent(port, email, password, device, USER_AGENT)
}

pub fn login_with_agent(
    port: u16,
    email: &str,
    password: &str,
    device: Option<&str>,
    user_agent: &str,
) -> Response {
    let mut body = json!({ "email": email, "password": password });
    if let Some(device) = device {
        body["deviceInfo"] = json!(device);
    }
    post_json(
        port,
        "/api/auth/login",
        &[("User-Agent", user_agent)],
        &body,
    )
}

/// An access and a refresh token, as a client holds them.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

/// A successful intercepted login: the gateway's tokens in the flat fields.
#[track_caller]
pub fn tokens_of_login(resp: &Response) -> Tokens {
    assert!(
        (200..300).contains(&resp.status),
        "login failed: {} {}",
        resp.status,
        resp.body
    );
    let body = resp.json();
    let access = body["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("login answer has no accessToken: {body}"))
        .to_owned();
    let refresh = body["refreshToken"]
        .as_str()
        .unwrap_or_else(|| panic!("login answer has no refreshToken: {body}"))
        .to_owned();
    assert_ne!(
        access, "backend-issued-access-token",
        "backend token leaked"
    );
    assert_ne!(
        refresh, "backend-issued-refresh-token",
        "backend token leaked"
    );
    Tokens { access, refresh }
}

#[track_caller]
pub fn login_ok(port: u16, email: &str, device: Option<&str>) -> Tokens {
    tokens_of_login(&login(port, email, PASSWORD, device))
}
