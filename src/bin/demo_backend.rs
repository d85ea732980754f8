//! Demo backend for `make run` and the integration tests: an unchanged
//! "existing service" that knows nothing about Portcullis.
//!
//! - `GET /health` → `{"status":"ok"}`
//! - `POST /api/auth/login` `{email,password}` and `POST /api/auth/register`
//!   `{name,email,password}` answer like the seed services (user object plus
//!   their own tokens, which the gateway replaces once sessions are enabled).
//! - anything else echoes method, path, query and received headers as JSON,
//!   so you can see exactly what the gateway forwarded.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use clap::Parser;
use http::Response;
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Demo backend that echoes what it receives")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: String,
    /// Name reported in every answer (tells instances apart).
    #[arg(long, default_value = "demo")]
    name: String,
}

struct User {
    id: String,
    name: String,
    email: String,
    password: String,
    role: String,
}

struct Demo {
    name: String,
    users: Mutex<Vec<User>>,
}

fn reply(status: u16, body: Value) -> Response<Vec<u8>> {
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", bytes.len())
        .body(bytes)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

async fn read_json(session: &mut ServerSession) -> Option<Value> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = session.read_request_body().await {
        body.extend_from_slice(&chunk);
        if body.len() > 64 * 1024 {
            return None;
        }
    }
    serde_json::from_slice(&body).ok()
}

fn user_json(u: &User) -> Value {
    json!({"id": u.id, "name": u.name, "email": u.email, "role": u.role})
}

impl Demo {
    fn login(&self, body: Option<Value>) -> Response<Vec<u8>> {
        let body = body.unwrap_or(Value::Null);
        let (Some(email), Some(password)) = (body["email"].as_str(), body["password"].as_str())
        else {
            return reply(400, json!({"message": "email and password are required"}));
        };
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        match users
            .iter()
            .find(|u| u.email == email && u.password == password)
        {
            Some(u) => reply(
                200,
                json!({
                    "message": "Login successful",
                    "user": user_json(u),
                    "accessToken": "backend-issued-access-token",
                    "refreshToken": "backend-issued-refresh-token",
                }),
            ),
            None => reply(401, json!({"message": "Invalid email or password"})),
        }
    }

    fn register(&self, body: Option<Value>) -> Response<Vec<u8>> {
        let body = body.unwrap_or(Value::Null);
        let (Some(name), Some(email), Some(password)) = (
            body["name"].as_str(),
            body["email"].as_str(),
            body["password"].as_str(),
        ) else {
            return reply(
                400,
                json!({"message": "name, email and password are required"}),
            );
        };
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if users.iter().any(|u| u.email == email) {
            return reply(409, json!({"message": "User already exists"}));
        }
        let user = User {
            id: format!("u-{}", users.len() + 1),
            name: name.into(),
            email: email.into(),
            password: password.into(),
            role: "patient".into(),
        };
        let answer = json!({
            "message": "User registered successfully",
            "user": user_json(&user),
            "accessToken": "backend-issued-access-token",
            "refreshToken": "backend-issued-refresh-token",
        });
        users.push(user);
        reply(201, answer)
    }
}

#[async_trait]
impl ServeHttp for Demo {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let method = req.method.as_str().to_owned();
        let path = req.uri.path().to_owned();
        match (method.as_str(), path.as_str()) {
            ("GET", "/health") => reply(200, json!({"status": "ok", "backend": self.name})),
            ("POST", "/api/auth/login") => {
                let body = read_json(session).await;
                self.login(body)
            }
            ("POST", "/api/auth/register") => {
                let body = read_json(session).await;
                self.register(body)
            }
            _ => {
                let mut headers: BTreeMap<String, Value> = BTreeMap::new();
                for (name, value) in req.headers.iter() {
                    let v = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
                    match headers.get_mut(name.as_str()) {
                        Some(Value::Array(list)) => list.push(v),
                        Some(existing) => *existing = Value::Array(vec![existing.take(), v]),
                        None => {
                            headers.insert(name.as_str().to_owned(), v);
                        }
                    }
                }
                let query = req.uri.query().unwrap_or("").to_owned();
                reply(
                    200,
                    json!({
                        "backend": self.name,
                        "method": method,
                        "path": path,
                        "query": query,
                        "headers": headers,
                    }),
                )
            }
        }
    }
}

fn main() {
    let args = Args::parse();
    let demo = Demo {
        name: args.name,
        users: Mutex::new(vec![
            User {
                id: "u-1".into(),
                name: "Alice Admin".into(),
                email: "alice@example.com".into(),
                password: "password123".into(),
                role: "admin".into(),
            },
            User {
                id: "u-2".into(),
                name: "Bob Patient".into(),
                email: "bob@example.com".into(),
                password: "password123".into(),
                role: "patient".into(),
            },
        ]),
    };
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = Service::new("demo backend".to_owned(), HttpServer::new_app(demo));
    service.add_tcp(&args.listen);
    server.add_service(service);
    eprintln!("demo backend listening on {}", args.listen);
    server.run_forever()
}
