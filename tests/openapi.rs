//! The API contract, `docs/openapi.json`: the admin listener serves exactly
//! the committed document, the document is OpenAPI 3.1 in shape (every
//! `$ref` resolves, every schema is a valid JSON Schema 2020-12), and the
//! answers of a real gateway — session routes, JWKS, the admin session API,
//! health, readiness and metrics — have a status, headers and a body the
//! document declares for that route.
//!
//! [`Contract::check`] is the one judge: an undocumented status, an
//! undocumented or missing header, an unexpected content type or a body
//! that fails the declared schema (wrong type, unknown field, an `error`
//! code not listed for that status) is an error.
//! `the_contract_check_refuses_what_the_document_does_not_declare` keeps it
//! honest with answers made up to break each of those rules.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// The document as committed; `src/admin.rs` embeds the same file.
const DOCUMENT: &str = include_str!("../docs/openapi.json");

const REFRESH_SECRET: &str = "refresh-secret-0123456789-0123456789-abcdef";
const ADMIN_TOKEN: &str = "admin-token-0123456789-0123456789-abcdef";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const PASSWORD: &str = "password123";
const COOKIE_NAME: &str = "portcullis_refresh";
const CSRF_HEADER: &str = "X-CSRF-Protection";
const APP_ORIGIN: &str = "https://app.example.com";
/// `limits.max_body_size` of every gateway here.
const MAX_BODY: usize = 4096;
/// `limits.max_header_size` of every gateway here.
const MAX_HEADERS: usize = 4096;

/// Response headers every HTTP/1.1 answer may carry that are about the
/// connection, not the API; `Content-Type` is checked on its own.
const TRANSPORT_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "date",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "server",
];

const OPERATION_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

// ---------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------

/// The parsed document and the checks made against it.
struct Contract {
    doc: Value,
}

/// Escapes one JSON Pointer token (RFC 6901).
fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

impl Contract {
    fn load() -> Contract {
        let doc = serde_json::from_str(DOCUMENT)
            .unwrap_or_else(|e| panic!("docs/openapi.json is not JSON: {e}"));
        Contract { doc }
    }

    /// The value a local `$ref` (`#/…`) names.
    fn target(&self, reference: &str) -> Result<&Value, String> {
        let pointer = reference
            .strip_prefix('#')
            .ok_or_else(|| format!("`{reference}` is not a local reference"))?;
        self.doc
            .pointer(pointer)
            .ok_or_else(|| format!("`{reference}` resolves to nothing"))
    }

    /// `value`, or what its `$ref` chain ends at, with the pointer to it.
    fn resolve<'a>(
        &'a self,
        value: &'a Value,
        pointer: String,
    ) -> Result<(&'a Value, String), String> {
        let (mut value, mut pointer) = (value, pointer);
        for _ in 0..8 {
            match value.get("$ref").and_then(Value::as_str) {
                Some(reference) => {
                    value = self.target(reference)?;
                    pointer = reference.trim_start_matches('#').to_owned();
                }
                None => return Ok((value, pointer)),
            }
        }
        Err(format!("`$ref` chain at {pointer} is too long"))
    }

    /// The path template of the document that `path` (query ignored) falls
    /// under: literal segments first, then `{param}` segments.
    fn path_template(&self, path: &str) -> Result<String, String> {
        let path = path.split('?').next().unwrap_or(path);
        let actual: Vec<&str> = path.split('/').collect();
        let paths = self.doc["paths"]
            .as_object()
            .ok_or("the document has no `paths` object")?;
        let mut candidates: Vec<(usize, &String)> = paths
            .keys()
            .filter_map(|template| {
                let segments: Vec<&str> = template.split('/').collect();
                if segments.len() != actual.len() {
                    return None;
                }
                let mut literal = 0;
                for (t, a) in segments.iter().zip(&actual) {
                    if t.starts_with('{') && t.ends_with('}') {
                        if a.is_empty() {
                            return None;
                        }
                    } else if t == a {
                        literal += 1;
                    } else {
                        return None;
                    }
                }
                Some((literal, template))
            })
            .collect();
        candidates.sort();
        candidates
            .last()
            .map(|(_, t)| (*t).clone())
            .ok_or_else(|| format!("no path of the document matches {path}"))
    }

    /// The response object (resolved) and its pointer that the document
    /// declares for `method path` answering `status`.
    fn declared_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
    ) -> Result<(&Value, String), String> {
        let template = self.path_template(path)?;
        let method = method.to_ascii_lowercase();
        let op_pointer = format!("/paths/{}/{method}", escape_token(&template));
        let operation = self
            .doc
            .pointer(&op_pointer)
            .ok_or_else(|| format!("{template} declares no `{method}` operation"))?;
        let code = status.to_string();
        let response = operation["responses"].get(&code).ok_or_else(|| {
            let declared: Vec<&String> = operation["responses"]
                .as_object()
                .map(|r| r.keys().collect())
                .unwrap_or_default();
            format!(
                "{} {template} answered {status}, which the document does not declare (declared: {declared:?})",
                method.to_ascii_uppercase()
            )
        })?;
        self.resolve(response, format!("{op_pointer}/responses/{code}"))
    }

    /// Checks a real answer of `method path` against the document.
    fn check(&self, method: &str, path: &str, resp: &Response) -> Result<(), String> {
        let (response, pointer) = self.declared_response(method, path, resp.status)?;
        self.check_response(response, &pointer, resp).map_err(|e| {
            format!(
                "{method} {path} → {}: {e}\nbody: {}",
                resp.status, resp.body
            )
        })
    }

    /// Checks a real answer against the response object at `pointer`
    /// (e.g. a shared `#/components/responses/…` no operation lists).
    fn check_named(&self, pointer: &str, resp: &Response) -> Result<(), String> {
        let response = self
            .doc
            .pointer(pointer)
            .ok_or_else(|| format!("the document has nothing at {pointer}"))?;
        let (response, pointer) = self.resolve(response, pointer.to_owned())?;
        self.check_response(response, &pointer, resp)
            .map_err(|e| format!("{pointer} → {}: {e}\nbody: {}", resp.status, resp.body))
    }

    fn check_response(
        &self,
        response: &Value,
        pointer: &str,
        resp: &Response,
    ) -> Result<(), String> {
        self.check_headers(response, pointer, resp)?;
        let content_type = resp.header("content-type").unwrap_or("");
        let essence = |t: &str| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        };
        let content = response["content"]
            .as_object()
            .ok_or_else(|| format!("{pointer} declares no content"))?;
        let (media, declared) = content
            .iter()
            .find(|(media, _)| essence(media) == essence(content_type))
            .ok_or_else(|| {
                format!(
                    "Content-Type {content_type:?} is not declared (declared: {:?})",
                    content.keys().collect::<Vec<_>>()
                )
            })?;
        if essence(media) != "application/json" {
            return Ok(());
        }
        let body: Value =
            serde_json::from_str(&resp.body).map_err(|e| format!("the body is not JSON ({e})"))?;
        let schema = declared
            .get("schema")
            .ok_or_else(|| format!("{pointer} `{media}` declares no schema"))?;
        self.validate(schema, &body)
            .map_err(|e| format!("the body does not match {pointer} `{media}`: {e}"))
    }

    /// Every documented header that is required is present, every present
    /// one matches its schema, and no header beyond the transport ones is
    /// undocumented.
    fn check_headers(
        &self,
        response: &Value,
        pointer: &str,
        resp: &Response,
    ) -> Result<(), String> {
        let empty = serde_json::Map::new();
        let declared = response["headers"].as_object().unwrap_or(&empty);
        for (name, header) in declared {
            let (header, _) = self.resolve(header, format!("{pointer}/headers/{name}"))?;
            let value = resp.header(name);
            if header["required"] == true && value.is_none() {
                return Err(format!("required header {name} is missing"));
            }
            if let (Some(value), Some(schema)) = (value, header.get("schema")) {
                self.validate(schema, &Value::String(value.to_owned()))
                    .map_err(|e| format!("header {name}: {value:?} does not match: {e}"))?;
            }
        }
        for (name, _) in &resp.headers {
            let lower = name.to_ascii_lowercase();
            if TRANSPORT_HEADERS.contains(&lower.as_str()) {
                continue;
            }
            if !declared.keys().any(|d| d.eq_ignore_ascii_case(name)) {
                return Err(format!(
                    "header {name} is not declared (declared: {:?})",
                    declared.keys().collect::<Vec<_>>()
                ));
            }
        }
        Ok(())
    }

    /// `schema` compiled as JSON Schema 2020-12 with the document's
    /// `components`, so `#/components/schemas/…` references resolve.
    fn validator(&self, schema: &Value) -> Result<jsonschema::Validator, String> {
        let mut root = match schema {
            Value::Object(map) => map.clone(),
            other => return Err(format!("a schema must be an object here, not {other}")),
        };
        root.insert("components".into(), self.doc["components"].clone());
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&Value::Object(root))
            .map_err(|e| format!("the schema does not compile: {e}"))
    }

    fn validate(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let validator = self.validator(schema)?;
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("at `{}`: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Request bodies the tests send are checked too, so a wrong request
    /// schema cannot hide behind the answers.
    fn check_request_body(&self, method: &str, path: &str, body: &Value) -> Result<(), String> {
        let template = self.path_template(path)?;
        let pointer = format!(
            "/paths/{}/{}/requestBody",
            escape_token(&template),
            method.to_ascii_lowercase()
        );
        let request_body = self
            .doc
            .pointer(&pointer)
            .ok_or_else(|| format!("{method} {template} declares no request body"))?;
        let (request_body, pointer) = self.resolve(request_body, pointer)?;
        let schema = request_body
            .pointer("/content/application~1json/schema")
            .ok_or_else(|| format!("{pointer} has no application/json schema"))?;
        self.validate(schema, body)
    }
}

/// Asserts that `resp` is what the document declares for `method path`.
#[track_caller]
fn conforms(contract: &Contract, method: &str, path: &str, resp: &Response) {
    if let Err(e) = contract.check(method, path, resp) {
        panic!("{e}");
    }
}

/// `conforms`, and the status and (for errors) the `error` code are these.
#[track_caller]
fn expect(
    contract: &Contract,
    method: &str,
    path: &str,
    resp: &Response,
    status: u16,
    code: Option<&str>,
) -> Value {
    assert_eq!(
        resp.status, status,
        "{method} {path}: expected {status}, got {}: {}",
        resp.status, resp.body
    );
    conforms(contract, method, path, resp);
    let body = resp.json();
    if let Some(code) = code {
        assert_eq!(body["error"], code, "{method} {path}: {body}");
    }
    body
}

// ---------------------------------------------------------------------------
// The document itself
// ---------------------------------------------------------------------------

/// Every `$ref` anywhere in `value`, with where it is.
fn references(value: &Value, at: String, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(r) = v.as_str() {
                        out.push((at.clone(), r.to_owned()));
                    }
                } else {
                    references(v, format!("{at}/{}", escape_token(k)), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                references(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The path parameters `{name}` of a path template.
fn template_params(template: &str) -> BTreeSet<String> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_document_is_openapi_3_1_and_every_reference_and_schema_resolves() {
    let contract = Contract::load();
    let doc = &contract.doc;
    let mut problems = Vec::new();

    let version = doc["openapi"].as_str().unwrap_or("");
    if !version.starts_with("3.1.") {
        problems.push(format!("`openapi` is {version:?}, not 3.1.x"));
    }
    for field in ["title", "version"] {
        if !doc["info"][field].is_string() {
            problems.push(format!("`info.{field}` is not a string"));
        }
    }
    let allowed_top = [
        "openapi",
        "info",
        "jsonSchemaDialect",
        "servers",
        "paths",
        "webhooks",
        "components",
        "security",
        "tags",
        "externalDocs",
    ];
    for key in doc.as_object().map(|m| m.keys()).into_iter().flatten() {
        if !allowed_top.contains(&key.as_str()) && !key.starts_with("x-") {
            problems.push(format!("unknown top-level field `{key}`"));
        }
    }

    let mut refs = Vec::new();
    references(doc, String::new(), &mut refs);
    assert!(!refs.is_empty(), "the document uses no `$ref` at all");
    for (at, reference) in &refs {
        if let Err(e) = contract.target(reference) {
            problems.push(format!("{at}: {e}"));
        }
    }

    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (name, scheme) in &schemes {
        let ok = match scheme["type"].as_str() {
            Some("http") => scheme["scheme"].is_string(),
            Some("apiKey") => {
                scheme["name"].is_string()
                    && ["query", "header", "cookie"].contains(&scheme["in"].as_str().unwrap_or(""))
            }
            Some("oauth2" | "openIdConnect" | "mutualTLS") => true,
            _ => false,
        };
        if !ok {
            problems.push(format!(
                "security scheme `{name}` is not a valid Security Scheme Object"
            ));
        }
    }
    let tags: HashSet<&str> = doc["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();

    let mut operation_ids = HashSet::new();
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    assert!(!paths.is_empty(), "the document has no paths");
    for (template, item) in &paths {
        if !template.starts_with('/') {
            problems.push(format!("path `{template}` does not start with /"));
        }
        let declared_at = |params: &Value| -> BTreeSet<String> {
            params
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter_map(|p| contract.resolve(p, String::new()).ok())
                        .filter(|(p, _)| p["in"] == "path")
                        .filter_map(|(p, _)| {
                            if p["required"] != true {
                                return None;
                            }
                            p["name"].as_str().map(str::to_owned)
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let path_level = declared_at(&item["parameters"]);
        let mut methods = 0;
        for method in OPERATION_METHODS {
            let Some(op) = item.get(method) else { continue };
            methods += 1;
            let here = format!("{} {template}", method.to_ascii_uppercase());
            let mut params = path_level.clone();
            params.extend(declared_at(&op["parameters"]));
            if params != template_params(template) {
                problems.push(format!(
                    "{here}: path parameters {params:?} (each `required: true`) do not match the template"
                ));
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                if let Ok((p, _)) = contract.resolve(p, String::new()) {
                    let place = p["in"].as_str().unwrap_or("");
                    if !p["name"].is_string()
                        || !["query", "header", "path", "cookie"].contains(&place)
                        || !(p.get("schema").is_some() || p.get("content").is_some())
                    {
                        problems.push(format!("{here}: a parameter lacks name, in or schema"));
                    }
                }
            }
            match op["operationId"].as_str() {
                Some(id) if operation_ids.insert(id.to_owned()) => {}
                Some(id) => problems.push(format!("{here}: operationId `{id}` is not unique")),
                None => problems.push(format!("{here}: no operationId")),
            }
            for tag in op["tags"].as_array().into_iter().flatten() {
                if !tags.contains(tag.as_str().unwrap_or("")) {
                    problems.push(format!("{here}: tag {tag} is not declared"));
                }
            }
            for requirement in op["security"].as_array().into_iter().flatten() {
                for scheme in requirement
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                {
                    if !schemes.contains_key(scheme) {
                        problems.push(format!(
                            "{here}: security scheme `{scheme}` is not declared"
                        ));
                    }
                }
            }
            let responses = op["responses"].as_object().cloned().unwrap_or_default();
            if responses.is_empty() {
                problems.push(format!("{here}: no responses"));
            }
            for (status, response) in &responses {
                let valid_key = status == "default"
                    || (status.len() == 3
                        && (b'1'..=b'5').contains(&status.as_bytes()[0])
                        && (status[1..].bytes().all(|b| b.is_ascii_digit())
                            || &status[1..] == "XX"));
                if !valid_key {
                    problems.push(format!("{here}: `{status}` is not a status code"));
                }
                let Ok((response, pointer)) = contract.resolve(response, String::new()) else {
                    continue;
                };
                if !response["description"].is_string() {
                    problems.push(format!(
                        "{here} {status}: response {pointer} has no description"
                    ));
                }
                for (name, header) in response["headers"].as_object().into_iter().flatten() {
                    if let Ok((header, _)) = contract.resolve(header, String::new()) {
                        if header.get("schema").is_none() {
                            problems.push(format!("{here} {status}: header {name} has no schema"));
                        }
                    }
                }
                for (media, content) in response["content"].as_object().into_iter().flatten() {
                    match content.get("schema") {
                        Some(schema) => {
                            if let Err(e) = contract.validator(schema) {
                                problems.push(format!("{here} {status} {media}: {e}"));
                            }
                        }
                        None => problems.push(format!("{here} {status} {media}: no schema")),
                    }
                }
            }
        }
        if methods == 0 {
            problems.push(format!("{template} has no operation"));
        }
    }

    // Every schema is a valid JSON Schema 2020-12 (checked against the
    // meta-schema) and compiles with the components in reach.
    for (name, schema) in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if let Err(e) = jsonschema::meta::validate(schema) {
            problems.push(format!(
                "components.schemas.{name} is not valid JSON Schema: {e}"
            ));
        }
        if let Err(e) = contract.validator(schema) {
            problems.push(format!("components.schemas.{name}: {e}"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/openapi.json:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_contract_check_refuses_what_the_document_does_not_declare() {
    let contract = Contract::load();
    let answer = |status: u16, headers: &[(&str, &str)], body: Value| Response {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.to_string(),
    };
    let json_headers = [
        ("Content-Type", "application/json"),
        ("Cache-Control", "no-store"),
        ("X-Request-Id", "r-1"),
    ];
    let token = "aaa.bbb.ccc";
    let refreshed = json!({
        "success": true,
        "message": "Access token refreshed successfully",
        "data": {"accessToken": token, "refreshToken": "r.t", "tokenType": "Bearer", "expiresIn": 900, "user": {"id": "u-1"}},
        "accessToken": token, "refreshToken": "r.t", "tokenType": "Bearer", "expiresIn": 900, "user": {"id": "u-1"},
    });
    let refresh = "/api/auth/refresh";
    // The well-formed answer passes: the refusals below are about one flaw each.
    contract
        .check(
            "POST",
            refresh,
            &answer(200, &json_headers, refreshed.clone()),
        )
        .unwrap_or_else(|e| panic!("a well-formed answer was refused: {e}"));

    let mut refusals = Vec::new();
    let mut refused = |what: &str, result: Result<(), String>| match result {
        Err(e) => refusals.push(format!("{what}: {e}")),
        Ok(()) => panic!("the contract check accepted {what}"),
    };
    refused(
        "an undocumented status",
        contract.check("POST", refresh, &answer(418, &json_headers, json!({}))),
    );
    let mut wrong_type = refreshed.clone();
    wrong_type["expiresIn"] = json!("900");
    refused(
        "a field of the wrong type",
        contract.check("POST", refresh, &answer(200, &json_headers, wrong_type)),
    );
    let mut extra = refreshed.clone();
    extra["data"]["debug"] = json!(true);
    refused(
        "an undocumented field",
        contract.check("POST", refresh, &answer(200, &json_headers, extra)),
    );
    let mut missing = refreshed.clone();
    missing.as_object_mut().map(|m| m.remove("user"));
    refused(
        "a missing required field",
        contract.check("POST", refresh, &answer(200, &json_headers, missing)),
    );
    refused(
        "an error code not listed for the status",
        contract.check(
            "DELETE",
            "/api/auth/sessions/4b1d0d9e-4a7e-4a58-9d9c-1b1a0b7f3c11",
            &answer(
                404,
                &json_headers,
                json!({"success": false, "message": "x", "error": "not_found"}),
            ),
        ),
    );
    refused(
        "a 401 without WWW-Authenticate",
        contract.check(
            "GET",
            "/api/auth/sessions",
            &answer(
                401,
                &json_headers,
                json!({"success": false, "message": "x", "error": "missing_token"}),
            ),
        ),
    );
    let mut with_debug = json_headers.to_vec();
    with_debug.push(("X-Debug", "1"));
    refused(
        "an undocumented header",
        contract.check(
            "POST",
            refresh,
            &answer(200, &with_debug, refreshed.clone()),
        ),
    );
    refused(
        "a cacheable answer",
        contract.check(
            "POST",
            refresh,
            &answer(
                200,
                &[
                    ("Content-Type", "application/json"),
                    ("Cache-Control", "max-age=60"),
                ],
                refreshed.clone(),
            ),
        ),
    );
    refused(
        "an undocumented content type",
        contract.check(
            "POST",
            refresh,
            &answer(
                200,
                &[("Content-Type", "text/html"), ("Cache-Control", "no-store")],
                refreshed,
            ),
        ),
    );
    refused(
        "an undocumented method",
        contract.check("PUT", refresh, &answer(200, &json_headers, json!({}))),
    );
    refused(
        "an undocumented path",
        contract.check(
            "GET",
            "/api/auth/nowhere",
            &answer(200, &json_headers, json!({})),
        ),
    );
    refused(
        "a session id that is not a UUID",
        contract.check(
            "GET",
            "/api/auth/sessions",
            &answer(
                200,
                &json_headers,
                json!({"success": true, "data": {"count": 1, "sessions": [{
                    "id": "not-a-uuid", "deviceInfo": null, "userAgent": null, "ip": null,
                    "createdAt": "2024-01-15T10:00:00.000Z", "lastUsedAt": "2024-01-15T10:00:00.000Z",
                    "expiresAt": "2024-01-22T10:00:00.000Z", "current": true}]}}),
            ),
        ),
    );
    assert_eq!(refusals.len(), 12, "{refusals:#?}");
}

// ---------------------------------------------------------------------------
// A real gateway
// ---------------------------------------------------------------------------

/// What distinguishes the gateways of these tests.
#[derive(Clone, Copy)]
struct Setup {
    per_ip: u32,
    cookie: bool,
    admin_token: bool,
    /// An extra upstream whose only target is down, health-checked: `/readyz`
    /// turns 503 once it is taken out.
    dead_upstream: bool,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            per_ip: 100_000,
            cookie: false,
            admin_token: true,
            dead_upstream: false,
        }
    }
}

/// A gateway on the demo backend (login interception) and a SQLite store.
struct World {
    gw: Gateway,
    _backend: Backend,
    _store: tempfile::TempDir,
    /// Holds the dead upstream's port: bound, never listening, so every
    /// connection to it is refused and no other test can take it.
    _dead: Option<tokio::net::TcpSocket>,
}

impl World {
    fn start(setup: Setup) -> World {
        let backend = Backend::start("app");
        let store = tempfile::tempdir().expect("temp dir");
        let mut c = String::new();
        c.push_str("listeners:\n  proxy: \"{PROXY}\"\n  admin: \"{ADMIN}\"\n  threads: 1\n  grace_period: 0s\n");
        c.push_str(
            "jwt:\n  issuer: test-issuer\n  audience: [test-aud]\n  leeway: 0s\n  keys:\n    - kid: hs\n      algorithms: [HS256]\n      secret: \"{SECRET}\"\n      sign: true\n",
        );
        // Verification-only public keys, so the JWK set shows every key type.
        for (kid, alg, file) in [
            ("rsa", "RS256", "rsa.pub"),
            ("ec256", "ES256", "ec256.pub"),
            ("ed25519", "EdDSA", "ed25519.pub"),
        ] {
            c.push_str(&format!(
                "    - kid: {kid}\n      algorithms: [{alg}]\n      public_key_file: {{FIXTURES}}/keys/{file}\n"
            ));
        }
        // An identity provider's issuer (configured keys): its tokens can be
        // revoked, and it sends back-channel logouts to client `rp`.
        c.push_str(&format!(
            "  issuers:\n    - name: corp\n      issuer: {CORP_ISS}\n      audiences: [api]\n      logout_client_ids: [rp]\n      keys:\n        - kid: corp\n          algorithms: [HS256]\n          secret: \"{CORP_SECRET}\"\n"
        ));
        c.push_str(&format!(
            "limits:\n  max_body_size: {MAX_BODY}\n  max_header_size: {MAX_HEADERS}\n"
        ));
        c.push_str(&format!(
            "upstreams:\n  main:\n    targets: [\"{}\"]\n",
            backend.addr()
        ));
        let dead = setup.dead_upstream.then(|| {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(([127, 0, 0, 1], 0).into())
                .expect("bind a port for the dead upstream");
            socket
        });
        if let Some(socket) = &dead {
            let addr = socket.local_addr().expect("bound address");
            c.push_str(&format!(
                "  dead:\n    targets: [\"{addr}\"]\n    health_check: {{ interval: 100ms, timeout: 100ms, unhealthy_after: 1, healthy_after: 1 }}\n"
            ));
        }
        c.push_str(
            "routes:\n  - name: login\n    match: { path: /api/auth/login, methods: [POST] }\n    upstream: main\n    auth: none\n    login:\n      subject: /user/id\n      claims: { role: /user/role, email: /user/email }\n      device_info: /deviceInfo\n",
        );
        c.push_str(&format!(
            "sessions:\n  store: \"sqlite:{}\"\n  refresh_secret: \"{REFRESH_SECRET}\"\n  reuse_grace: 0s\n  rate_limit: {{ per_ip: {}, per_token: 100000, window: 1m }}\n",
            store.path().join("s.db").display(),
            setup.per_ip
        ));
        if setup.cookie {
            c.push_str(&format!(
                "  cookie:\n    name: {COOKIE_NAME}\n    secure: true\n    csrf_header: {CSRF_HEADER}\n    allowed_origins: [\"{APP_ORIGIN}\"]\n"
            ));
        }
        if setup.admin_token {
            c.push_str(&format!("  admin_token: \"{ADMIN_TOKEN}\"\n"));
        }
        World {
            gw: Gateway::start(&c),
            _backend: backend,
            _store: store,
            _dead: dead,
        }
    }

    fn port(&self) -> u16 {
        self.gw.port
    }

    fn admin(&self) -> u16 {
        self.gw.admin_port
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.gw.proc.log_text();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "--- last gateway log lines ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `POST /api/auth/login` through the demo backend; the intercepted answer.
fn login(port: u16, email: &str) -> Response {
    let body = json!({"email": email, "password": PASSWORD, "deviceInfo": "openapi test"});
    let resp = request(
        port,
        "POST",
        "/api/auth/login",
        &[],
        Some(&body.to_string()),
    );
    assert_eq!(resp.status, 200, "login failed: {}", resp.body);
    resp
}

/// The value of the refresh cookie a `Set-Cookie` header sets.
fn refresh_cookie(resp: &Response) -> String {
    resp.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .find_map(|(_, v)| v.strip_prefix(&format!("{COOKIE_NAME}=")))
        .and_then(|v| v.split(';').next())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("no refresh cookie set: {:?}", resp.headers))
        .to_owned()
}

/// An HS256 access token of ours with `exp` in the past.
const CORP_ISS: &str = "https://idp.example";
const CORP_SECRET: &str = "corp-idp-secret-0123456789-0123456789";

/// A token of issuer `corp` with `claims` (HS256, its configured key).
fn corp_token(claims: &Value, typ: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("corp".into());
    header.typ = Some(typ.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(CORP_SECRET.as_bytes()),
    )
    .expect("sign a token")
}

#[test]
fn token_revocation_and_back_channel_logout_answer_with_what_the_document_declares() {
    let contract = Contract::load();
    let world = World::start(Setup::default());
    let (port, admin) = (world.port(), world.admin());
    let auth = bearer(ADMIN_TOKEN);
    let auth_header = [("Authorization", auth.as_str())];
    let path = "/admin/revocations";

    let good = json!({"issuer": "corp", "sub": "alice"});
    contract
        .check_request_body("POST", path, &good)
        .unwrap_or_else(|e| panic!("the request body the test sends is not declared: {e}"));
    let post = |body: &str| {
        send(
            admin,
            "POST",
            path,
            &auth_header,
            Some(("application/json", body)),
        )
    };
    let body = expect(&contract, "POST", path, &post(&good.to_string()), 201, None);
    assert_eq!(body["data"]["iss"], CORP_ISS, "{body}");
    for bad in [
        r#"{"issuer":"nobody","sub":"x"}"#,
        r#"{"issuer":"corp","sub":"x","sid":"y"}"#,
    ] {
        expect(
            &contract,
            "POST",
            path,
            &post(bad),
            400,
            Some("invalid_revocation"),
        );
    }
    expect(
        &contract,
        "POST",
        path,
        &post(r#"{"issuer":5}"#),
        400,
        Some("invalid_field"),
    );
    expect(
        &contract,
        "POST",
        path,
        &post("[1"),
        400,
        Some("invalid_json"),
    );
    let resp = send(admin, "POST", path, &[], Some(("application/json", "{}")));
    expect(&contract, "POST", path, &resp, 401, Some("unauthorized"));
    let body = expect(
        &contract,
        "GET",
        "/admin/revocations?issuer=corp",
        &send(
            admin,
            "GET",
            "/admin/revocations?issuer=corp",
            &auth_header,
            None,
        ),
        200,
        None,
    );
    assert_eq!(body["data"]["count"], 1, "{body}");
    expect(
        &contract,
        "GET",
        "/admin/revocations?issuer=x",
        &send(
            admin,
            "GET",
            "/admin/revocations?issuer=x",
            &auth_header,
            None,
        ),
        400,
        Some("invalid_revocation"),
    );

    // Back-channel logout: a good logout token, then its replay and a bad one.
    let logout = "/api/auth/backchannel-logout";
    let claims = json!({
        "iss": CORP_ISS, "aud": "rp", "iat": now(), "exp": now() + 60,
        "jti": "logout-1", "sid": "idp-session",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    });
    let token = corp_token(&claims, "logout+jwt");
    let form = |t: &str| {
        Some((
            "application/x-www-form-urlencoded",
            format!("logout_token={t}"),
        ))
    };
    let send_form = |t: &str| {
        let body = form(t).expect("form");
        send(port, "POST", logout, &[], Some((body.0, body.1.as_str())))
    };
    expect(&contract, "POST", logout, &send_form(&token), 200, None);
    let body = expect(
        &contract,
        "POST",
        logout,
        &send_form(&token),
        400,
        Some("invalid_request"),
    );
    assert!(body["error_description"].is_string(), "{body}");
    let mut with_nonce = claims.clone();
    with_nonce["nonce"] = json!("n");
    with_nonce["jti"] = json!("logout-2");
    expect(
        &contract,
        "POST",
        logout,
        &send_form(&corp_token(&with_nonce, "logout+jwt")),
        400,
        Some("invalid_request"),
    );
    let resp = send(port, "GET", logout, &[], None);
    assert_eq!(resp.status, 405, "{}", resp.body);
    contract
        .check_named("/components/responses/MethodNotAllowed", &resp)
        .unwrap_or_else(|e| panic!("GET {logout}: {e}"));
}

fn expired_access_token() -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("hs".into());
    let claims = json!({
        "sub": "u-1", "iss": "test-issuer", "aud": "test-aud",
        "iat": now() - 3600, "exp": now() - 1800,
    });
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .expect("sign a token")
}

/// The id of the session an access token belongs to, from the session list.
fn current_session_id(contract: &Contract, port: u16, access: &str) -> String {
    let path = "/api/auth/sessions";
    let resp = send(
        port,
        "GET",
        path,
        &[("Authorization", &bearer(access))],
        None,
    );
    let body = expect(contract, "GET", path, &resp, 200, None);
    body["data"]["sessions"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["current"] == true))
        .and_then(|s| s["id"].as_str())
        .unwrap_or_else(|| panic!("no current session in {body}"))
        .to_owned()
}

/// The status of `GET /api/auth/sessions` with `access` (401 once its
/// session has ended).
fn session_list_status(port: u16, access: &str) -> u16 {
    send(
        port,
        "GET",
        "/api/auth/sessions",
        &[("Authorization", &bearer(access))],
        None,
    )
    .status
}

#[test]
fn the_admin_listener_serves_the_committed_document() {
    let contract = Contract::load();
    let world = World::start(Setup::default());
    let resp = get(world.admin(), "/openapi.json", &[]);
    expect(&contract, "GET", "/openapi.json", &resp, 200, None);
    assert_eq!(
        resp.body, DOCUMENT,
        "GET /openapi.json must serve docs/openapi.json byte for byte"
    );
}

#[test]
fn session_routes_answer_with_what_the_document_declares() {
    let contract = Contract::load();
    let world = World::start(Setup::default());
    let port = world.port();
    let (refresh, refresh_token_path) = ("/api/auth/refresh", "/api/auth/refresh-token");
    let (sessions, logout, logout_all) = (
        "/api/auth/sessions",
        "/api/auth/logout",
        "/api/auth/logout-all",
    );
    let post = |path: &str, body: &Value| {
        contract
            .check_request_body("POST", path, body)
            .unwrap_or_else(|e| panic!("the request body the test sends is not declared: {e}"));
        request(port, "POST", path, &[], Some(&body.to_string()))
    };

    // The key set, with an RSA, an EC and an Ed25519 key to cover each shape.
    let jwks = "/.well-known/jwks.json";
    let body = expect(&contract, "GET", jwks, &get(port, jwks, &[]), 200, None);
    assert_eq!(body["keys"].as_array().map(Vec::len), Some(3), "{body}");

    // Refresh on both routes; each answer carries the next refresh token.
    let first = login(port, ALICE).json();
    let first_refresh = first["refreshToken"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    let body = expect(
        &contract,
        "POST",
        refresh,
        &post(refresh, &json!({"refreshToken": first_refresh})),
        200,
        None,
    );
    let second_refresh = body["refreshToken"]
        .as_str()
        .expect("rotated refresh token")
        .to_owned();
    let body = expect(
        &contract,
        "POST",
        refresh_token_path,
        &post(refresh_token_path, &json!({"refreshToken": second_refresh})),
        200,
        None,
    );
    let third_refresh = body["refreshToken"]
        .as_str()
        .expect("rotated refresh token")
        .to_owned();
    let access = body["accessToken"]
        .as_str()
        .expect("access token")
        .to_owned();

    // Refused requests, each in the shape declared for its status.
    for (path, content_type, body, status, code) in [
        (refresh, None, None, 400, "refresh_token_required"),
        (
            refresh,
            Some("application/json"),
            Some("[1]"),
            400,
            "invalid_json",
        ),
        (
            refresh,
            Some("application/json"),
            Some("{nope"),
            400,
            "invalid_json",
        ),
        (
            refresh_token_path,
            Some("application/json"),
            Some(r#"{"refreshToken":5}"#),
            400,
            "invalid_field",
        ),
        (
            refresh,
            Some("text/plain"),
            Some("refreshToken=x"),
            415,
            "unsupported_media_type",
        ),
        (
            refresh,
            Some("application/json"),
            Some(r#"{"refreshToken":"forged.token"}"#),
            401,
            "invalid_refresh_token",
        ),
        (
            refresh_token_path,
            Some("application/json"),
            Some(r#"{"refreshToken":"forged.token"}"#),
            401,
            "invalid_refresh_token",
        ),
        (logout, None, None, 400, "refresh_token_required"),
        (
            logout,
            Some("application/vnd.api+json"),
            Some("[]"),
            400,
            "invalid_json",
        ),
        (
            logout,
            Some("text/plain"),
            Some("x"),
            415,
            "unsupported_media_type",
        ),
    ] {
        let body = content_type.zip(body);
        let resp = send(port, "POST", path, &[], body);
        expect(&contract, "POST", path, &resp, status, Some(code));
    }
    let too_large = format!(r#"{{"refreshToken":"{}"}}"#, "x".repeat(MAX_BODY));
    for path in [refresh, logout] {
        let resp = send(
            port,
            "POST",
            path,
            &[],
            Some(("application/json", &too_large)),
        );
        expect(&contract, "POST", path, &resp, 413, Some("body_too_large"));
    }

    // Reuse detection: the first token was rotated away and the grace is 0s;
    // presenting it revokes the session, so the newest token is refused too.
    let resp = post(refresh, &json!({"refreshToken": first_refresh}));
    expect(
        &contract,
        "POST",
        refresh,
        &resp,
        401,
        Some("refresh_token_reused"),
    );
    let resp = post(refresh_token_path, &json!({"refreshToken": third_refresh}));
    expect(
        &contract,
        "POST",
        refresh_token_path,
        &resp,
        401,
        Some("refresh_token_revoked"),
    );

    // Bearer routes without a usable access token: 401 with the challenge.
    let expired = expired_access_token();
    let revoked = bearer(&access);
    for (auth, code) in [
        (None, "missing_token"),
        (Some("Basic dXNlcjpwYXNz".to_owned()), "missing_token"),
        (Some(bearer("not.a.jwt")), "invalid_token"),
        (Some(bearer(&expired)), "token_expired"),
        (Some(revoked), "invalid_token"),
    ] {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        for (method, path) in [
            ("GET", sessions),
            ("POST", logout_all),
            (
                "DELETE",
                "/api/auth/sessions/4b1d0d9e-4a7e-4a58-9d9c-1b1a0b7f3c11",
            ),
        ] {
            let resp = send(port, method, path, &headers, None);
            expect(&contract, method, path, &resp, 401, Some(code));
        }
        if auth.is_some() {
            // Logout by bearer token answers the same refusals.
            let resp = send(port, "POST", logout, &headers, None);
            expect(&contract, "POST", logout, &resp, 401, Some(code));
        }
    }

    // The session list, and deleting sessions: unknown, not a UUID, one's own.
    let bob = login(port, BOB).json();
    let bob_access = bob["accessToken"]
        .as_str()
        .expect("access token")
        .to_owned();
    let auth = bearer(&bob_access);
    let own_id = current_session_id(&contract, port, &bob_access);
    for (id, status, code) in [
        (
            "4b1d0d9e-4a7e-4a58-9d9c-1b1a0b7f3c11",
            404,
            Some("session_not_found"),
        ),
        ("not-a-uuid", 400, Some("invalid_session_id")),
        (own_id.as_str(), 200, None),
    ] {
        let path = format!("{sessions}/{id}");
        let resp = send(port, "DELETE", &path, &[("Authorization", &auth)], None);
        expect(&contract, "DELETE", &path, &resp, status, code);
    }

    // Logout by refresh token, by bearer token (each seed's message), and
    // logout everywhere.
    let by_refresh = login(port, BOB).json();
    let resp = post(logout, &json!({"refreshToken": by_refresh["refreshToken"]}));
    let body = expect(&contract, "POST", logout, &resp, 200, None);
    assert_eq!(body["message"], "Logged out successfully");
    let by_bearer = login(port, BOB).json();
    let auth = bearer(by_bearer["accessToken"].as_str().expect("access token"));
    let resp = send(port, "POST", logout, &[("Authorization", &auth)], None);
    let body = expect(&contract, "POST", logout, &resp, 200, None);
    assert_eq!(body["message"], "Logout successful");
    login(port, BOB);
    let everywhere = login(port, BOB).json();
    let auth = bearer(everywhere["accessToken"].as_str().expect("access token"));
    let resp = send(port, "POST", logout_all, &[("Authorization", &auth)], None);
    let body = expect(&contract, "POST", logout_all, &resp, 200, None);
    assert_eq!(body["data"]["revoked"], 2, "{body}");

    // Another method than the route's: 405 with `Allow`, in the shared shape.
    for (method, path, allow) in [
        ("GET", refresh, "POST"),
        ("POST", sessions, "GET"),
        ("DELETE", "/api/auth/sessions/", "GET"),
        (
            "GET",
            "/api/auth/sessions/4b1d0d9e-4a7e-4a58-9d9c-1b1a0b7f3c11",
            "DELETE",
        ),
    ] {
        let resp = send(port, method, path, &[], None);
        assert_eq!(resp.status, 405, "{method} {path}: {}", resp.body);
        assert_eq!(resp.header("allow"), Some(allow), "{method} {path}");
        contract
            .check_named("/components/responses/MethodNotAllowed", &resp)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    }

    // Refusals before routing: oversized headers, a path read two ways.
    let padding = "p".repeat(MAX_HEADERS);
    let resp = send(port, "GET", sessions, &[("X-Padding", &padding)], None);
    expect(
        &contract,
        "GET",
        sessions,
        &resp,
        431,
        Some("headers_too_large"),
    );
    let resp = send(port, "GET", "/api/auth/sessions;x=1", &[], None);
    expect(&contract, "GET", sessions, &resp, 400, Some("bad_path"));
}

#[test]
fn rate_limited_attempts_answer_429_with_retry_after_as_declared() {
    let contract = Contract::load();
    let world = World::start(Setup {
        per_ip: 2,
        ..Setup::default()
    });
    let port = world.port();
    let forged = json!({"refreshToken": "forged.token"}).to_string();
    for _ in 0..2 {
        let resp = request(port, "POST", "/api/auth/refresh", &[], Some(&forged));
        expect(
            &contract,
            "POST",
            "/api/auth/refresh",
            &resp,
            401,
            Some("invalid_refresh_token"),
        );
    }
    for path in [
        "/api/auth/refresh",
        "/api/auth/refresh-token",
        "/api/auth/logout",
    ] {
        let resp = request(port, "POST", path, &[], Some(&forged));
        expect(&contract, "POST", path, &resp, 429, Some("rate_limited"));
    }
}

#[test]
fn cookie_mode_answers_with_what_the_document_declares() {
    let contract = Contract::load();
    let world = World::start(Setup {
        cookie: true,
        admin_token: false,
        dead_upstream: true,
        ..Setup::default()
    });
    let port = world.port();
    let refresh = "/api/auth/refresh";

    let logged_in = login(port, ALICE);
    let cookie = format!("{COOKIE_NAME}={}", refresh_cookie(&logged_in));
    // The cookie without the CSRF header, or from a foreign origin: 403.
    for headers in [
        vec![("Cookie", cookie.as_str())],
        vec![
            ("Cookie", cookie.as_str()),
            (CSRF_HEADER, "1"),
            ("Origin", "https://evil.example"),
        ],
    ] {
        let resp = send(port, "POST", refresh, &headers, None);
        expect(&contract, "POST", refresh, &resp, 403, Some("csrf_failed"));
        let resp = send(port, "POST", "/api/auth/logout", &headers, None);
        expect(
            &contract,
            "POST",
            "/api/auth/logout",
            &resp,
            403,
            Some("csrf_failed"),
        );
    }
    // With it: a new refresh token in Set-Cookie, none in the body.
    let headers = [
        ("Cookie", cookie.as_str()),
        (CSRF_HEADER, "1"),
        ("Origin", APP_ORIGIN),
    ];
    let resp = send(port, "POST", refresh, &headers, None);
    let body = expect(&contract, "POST", refresh, &resp, 200, None);
    assert!(body.get("refreshToken").is_none(), "{body}");
    let access = body["accessToken"]
        .as_str()
        .expect("access token")
        .to_owned();
    let cookie = format!("{COOKIE_NAME}={}", refresh_cookie(&resp));

    // Logout by the cookie clears it, and so does deleting one's own
    // session (another one) and logout-all.
    let headers = [("Cookie", cookie.as_str()), (CSRF_HEADER, "1")];
    let resp = send(port, "POST", "/api/auth/logout", &headers, None);
    expect(&contract, "POST", "/api/auth/logout", &resp, 200, None);
    let refused = session_list_status(port, &access);
    assert_eq!(
        refused, 401,
        "the logged-out session's access token still works"
    );
    let second = login(port, ALICE).json();
    let access = second["accessToken"]
        .as_str()
        .expect("access token")
        .to_owned();
    let own = current_session_id(&contract, port, &access);
    let path = format!("/api/auth/sessions/{own}");
    let resp = send(
        port,
        "DELETE",
        &path,
        &[("Authorization", &bearer(&access))],
        None,
    );
    expect(&contract, "DELETE", &path, &resp, 200, None);
    assert!(
        resp.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0")),
        "{:?}",
        resp.headers
    );
    let fresh = login(port, ALICE).json();
    let auth = bearer(fresh["accessToken"].as_str().expect("access token"));
    let resp = send(
        port,
        "POST",
        "/api/auth/logout-all",
        &[("Authorization", &auth)],
        None,
    );
    expect(&contract, "POST", "/api/auth/logout-all", &resp, 200, None);
    assert!(resp.header("set-cookie").is_some(), "{:?}", resp.headers);

    // Without `admin_token` the admin session API is absent: 404 everywhere.
    let admin = world.admin();
    let auth = bearer(ADMIN_TOKEN);
    for (method, path) in [
        ("POST", "/admin/sessions"),
        ("GET", "/admin/sessions?subject=u-1"),
        ("DELETE", "/admin/sessions?subject=u-1"),
        (
            "DELETE",
            "/admin/sessions/4b1d0d9e-4a7e-4a58-9d9c-1b1a0b7f3c11",
        ),
    ] {
        let resp = send(admin, method, path, &[("Authorization", &auth)], None);
        expect(&contract, method, path, &resp, 404, Some("not_found"));
    }

    // An upstream whose only target is down makes the gateway not ready.
    wait_until(
        "/readyz to report the dead upstream",
        Duration::from_secs(20),
        || get(admin, "/readyz", &[]).status == 503,
    );
    let body = expect(
        &contract,
        "GET",
        "/readyz",
        &get(admin, "/readyz", &[]),
        503,
        None,
    );
    assert_eq!(body["session_store"], "available", "{body}");
}

#[test]
fn admin_listener_answers_with_what_the_document_declares() {
    let contract = Contract::load();
    let world = World::start(Setup::default());
    let admin = world.admin();

    expect(
        &contract,
        "GET",
        "/healthz",
        &get(admin, "/healthz", &[]),
        200,
        None,
    );
    let body = expect(
        &contract,
        "GET",
        "/readyz",
        &get(admin, "/readyz", &[]),
        200,
        None,
    );
    assert_eq!(body["session_store"], "available", "{body}");
    let metrics = get(admin, "/metrics", &[]);
    expect_text(&contract, "/metrics", &metrics);

    // Without the admin token, or with another one: 401 with the admin challenge.
    let create = "/admin/sessions";
    let good = json!({"subject": "svc-1", "claims": {"role": "ops"}, "deviceInfo": "batch"});
    contract
        .check_request_body("POST", create, &good)
        .unwrap_or_else(|e| panic!("the request body the test sends is not declared: {e}"));
    let wrong = bearer("not-the-admin-token");
    for headers in [vec![], vec![("Authorization", wrong.as_str())]] {
        let resp = send(
            admin,
            "POST",
            create,
            &headers,
            Some(("application/json", &good.to_string())),
        );
        expect(&contract, "POST", create, &resp, 401, Some("unauthorized"));
        let resp = send(
            admin,
            "GET",
            "/admin/sessions?subject=svc-1",
            &headers,
            None,
        );
        expect(
            &contract,
            "GET",
            "/admin/sessions",
            &resp,
            401,
            Some("unauthorized"),
        );
    }

    let auth = bearer(ADMIN_TOKEN);
    let auth_header = [("Authorization", auth.as_str())];
    // Refused bodies.
    let too_large = format!(r#"{{"subject":"{}"}}"#, "x".repeat(MAX_BODY));
    for (content_type, body, status, code) in [
        ("application/json", "[1]", 400, "invalid_json"),
        ("application/json", "{}", 400, "invalid_subject"),
        (
            "application/json",
            r#"{"subject":""}"#,
            400,
            "invalid_subject",
        ),
        ("application/json", r#"{"subject":5}"#, 400, "invalid_field"),
        (
            "application/json",
            r#"{"subject":"svc-1","claims":[1]}"#,
            400,
            "invalid_field",
        ),
        (
            "application/json",
            r#"{"subject":"svc-1","claims":{"sub":"other"}}"#,
            400,
            "invalid_field",
        ),
        ("text/plain", "subject=svc-1", 415, "unsupported_media_type"),
        (
            "application/json",
            too_large.as_str(),
            413,
            "body_too_large",
        ),
    ] {
        let resp = send(
            admin,
            "POST",
            create,
            &auth_header,
            Some((content_type, body)),
        );
        expect(&contract, "POST", create, &resp, status, Some(code));
    }

    // Create, use, list, revoke one, revoke all.
    let resp = send(
        admin,
        "POST",
        create,
        &auth_header,
        Some(("application/json", &good.to_string())),
    );
    let body = expect(&contract, "POST", create, &resp, 201, None);
    let session_id = body["data"]["sessionId"]
        .as_str()
        .expect("session id")
        .to_owned();
    let access = body["data"]["accessToken"]
        .as_str()
        .expect("access token")
        .to_owned();
    assert_eq!(
        current_session_id(&contract, world.port(), &access),
        session_id
    );
    let resp = send(
        admin,
        "POST",
        create,
        &auth_header,
        Some(("application/json", r#"{"subject":"svc-1"}"#)),
    );
    expect(&contract, "POST", create, &resp, 201, None);

    let list = "/admin/sessions?subject=svc-1";
    let body = expect(
        &contract,
        "GET",
        list,
        &send(admin, "GET", list, &auth_header, None),
        200,
        None,
    );
    assert_eq!(body["data"]["count"], 2, "{body}");
    for (method, path) in [
        ("GET", "/admin/sessions"),
        ("DELETE", "/admin/sessions"),
        ("GET", "/admin/sessions?subject=%zz"),
    ] {
        let resp = send(admin, method, path, &auth_header, None);
        expect(&contract, method, path, &resp, 400, Some("invalid_subject"));
    }

    let one = format!("/admin/sessions/{session_id}");
    expect(
        &contract,
        "DELETE",
        &one,
        &send(admin, "DELETE", &one, &auth_header, None),
        200,
        None,
    );
    let resp = send(admin, "DELETE", &one, &auth_header, None);
    expect(
        &contract,
        "DELETE",
        &one,
        &resp,
        404,
        Some("session_not_found"),
    );
    let resp = send(
        admin,
        "DELETE",
        "/admin/sessions/not-a-uuid",
        &auth_header,
        None,
    );
    expect(
        &contract,
        "DELETE",
        "/admin/sessions/not-a-uuid",
        &resp,
        400,
        Some("invalid_session_id"),
    );

    let body = expect(
        &contract,
        "DELETE",
        list,
        &send(admin, "DELETE", list, &auth_header, None),
        200,
        None,
    );
    assert_eq!(body["data"]["revoked"], 1, "{body}");

    // Methods the admin session API does not answer: 405, no `Allow`.
    for (method, path) in [
        ("GET", one.as_str()),
        ("PUT", "/admin/sessions"),
        ("DELETE", "/admin/sessions/"),
    ] {
        let resp = send(admin, method, path, &auth_header, None);
        assert_eq!(resp.status, 405, "{method} {path}: {}", resp.body);
        contract
            .check_named("/components/responses/AdminMethodNotAllowed", &resp)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    }
}

/// A non-JSON answer (`/metrics`): status, headers and content type.
#[track_caller]
fn expect_text(contract: &Contract, path: &str, resp: &Response) {
    assert_eq!(resp.status, 200, "{path}: {}", resp.body);
    conforms(contract, "GET", path, resp);
    assert!(resp.body.contains("portcullis_"), "{path}: {}", resp.body);
}
