//! A real OpenID Provider for tests: panva's OpenID-certified `oidc-provider`
//! (npm), run by Node from `tests/fixtures/oidc-provider` on a free loopback
//! port, with issuer `http://127.0.0.1:<port>`. `scripts/setup.sh` installs
//! Node and the fixture's pinned packages; the fixture's README.md lists its
//! clients, the claims it puts into tokens and its `/test/` controls.
//!
//! ```ignore
//! let idp = OidcProvider::start(OidcOptions::default());
//! let token = idp.client_credentials(SVC_USER.id, SVC_USER.secret, RESOURCE);
//! let kid = idp.rotate(); // new tokens carry `kid`; the JWKS lists it
//! idp.stop();             // the IdP is unreachable…
//! idp.restart();          // …and back: same port, same keys
//! ```
//!
//! Readiness is the fixture's `ready <issuer>` line on stdout, never a sleep.
//! The provider is killed when the value is dropped, and it also exits when
//! this process dies: it watches its stdin, whose only write end we hold.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::{free_port, get, send, Response};

/// The fixture directory (`provider.mjs`, its pinned `package.json`).
pub const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/oidc-provider");

/// The one resource server the provider knows: a client_credentials grant
/// naming it gets a JWT access token with this `aud`.
pub const RESOURCE: &str = "https://api.portcullis.test";

/// The relying party registered with `backchannel_logout_uri`: the `aud` of
/// every logout token.
pub const BACKCHANNEL_CLIENT: &str = "portcullis";

/// How long the provider may take to print its ready line.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A static client of the provider (`client_secret_basic`); `role` and
/// `tenant` are claims of every access token issued to it.
#[derive(Clone, Copy, Debug)]
pub struct Client {
    pub id: &'static str,
    pub secret: &'static str,
    pub role: &'static str,
    pub tenant: &'static str,
}

pub const SVC_ADMIN: Client = Client {
    id: "svc-admin",
    secret: "svc-admin-secret-0123456789abcdef",
    role: "admin",
    tenant: "portcullis",
};

pub const SVC_USER: Client = Client {
    id: "svc-user",
    secret: "svc-user-secret-0123456789abcdef",
    role: "user",
    tenant: "acme",
};

/// The relying party itself, also allowed client_credentials.
pub const PORTCULLIS: Client = Client {
    id: BACKCHANNEL_CLIENT,
    secret: "portcullis-secret-0123456789abcdef",
    role: "gateway",
    tenant: "portcullis",
};

/// The provider's signing algorithm (and key type).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Alg {
    /// RSA 2048-bit keys.
    #[default]
    Rs256,
    /// P-256 keys.
    Es256,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
        }
    }
}

/// How to start the provider.
#[derive(Clone, Debug, Default)]
pub struct OidcOptions {
    pub alg: Alg,
    /// Registered as the `backchannel_logout_uri` of [`BACKCHANNEL_CLIENT`];
    /// without it [`OidcProvider::backchannel_logout`] is refused.
    pub backchannel_uri: Option<String>,
}

/// What the provider did for one back-channel logout.
#[derive(Clone, Debug)]
pub struct BackchannelLogout {
    /// The receiver's HTTP status; `None` when it could not be reached.
    pub status: Option<u16>,
    /// Why the delivery failed, when it did.
    pub error: Option<String>,
    pub jti: String,
    pub sub: Option<String>,
    pub sid: Option<String>,
    /// The compact JWS that was POSTed (for replay tests).
    pub logout_token: String,
}

/// A running `oidc-provider`; killed on drop.
pub struct OidcProvider {
    port: u16,
    options: OidcOptions,
    child: Option<Child>,
    log: PathBuf,
    token_path: String,
    jwks_path: String,
    // Keys survive `stop`/`restart` here; removed on drop.
    state: tempfile::TempDir,
}

impl OidcProvider {
    /// Starts the provider on a free loopback port and waits until it listens.
    pub fn start(options: OidcOptions) -> OidcProvider {
        let state = tempfile::tempdir().expect("temp dir for the provider's state");
        let log = state.path().join("provider.log");
        let mut provider = OidcProvider {
            port: 0,
            options,
            child: None,
            log,
            token_path: String::new(),
            jwks_path: String::new(),
            state,
        };
        // A port free a moment ago can be taken before node binds it.
        for attempt in 1..=5 {
            provider.port = free_port();
            match provider.spawn() {
                Ok(()) => break,
                Err(e) if attempt < 5 && e.contains("EADDRINUSE") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        provider.read_discovery();
        provider
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`: the `iss` of its tokens.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `{issuer}/.well-known/openid-configuration`.
    pub fn discovery_uri(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer())
    }

    /// The `jwks_uri` its discovery document names.
    pub fn jwks_uri(&self) -> String {
        format!("{}{}", self.issuer(), self.jwks_path)
    }

    /// The discovery document.
    pub fn discovery(&self) -> Value {
        self.ok_json(get(self.port, "/.well-known/openid-configuration", &[]))
    }

    /// The JWK Set it publishes now.
    pub fn jwks(&self) -> Value {
        self.ok_json(get(self.port, &self.jwks_path, &[]))
    }

    /// The `kid`s in the published JWK Set, signing key first.
    pub fn jwks_kids(&self) -> Vec<String> {
        self.jwks()["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["kid"].as_str().map(str::to_owned))
            .collect()
    }

    /// A client_credentials grant for `resource`: the (JWT) access token.
    pub fn client_credentials(&self, client: &str, secret: &str, resource: &str) -> String {
        self.client_credentials_with(client, secret, resource, &[])
    }

    /// Like [`client_credentials`](Self::client_credentials) with more form
    /// fields, e.g. `("sid", "s-1")` (becomes the token's `sid` claim) or
    /// `("scope", "read")`.
    pub fn client_credentials_with(
        &self,
        client: &str,
        secret: &str,
        resource: &str,
        extra: &[(&str, &str)],
    ) -> String {
        let mut form = vec![("grant_type", "client_credentials"), ("resource", resource)];
        form.extend_from_slice(extra);
        let answer = self.token_request(client, secret, &form);
        let body = self.ok_json(answer);
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {body}"))
            .to_owned()
    }

    /// A raw token request (client_secret_basic), for tests of refusals.
    pub fn token_request(&self, client: &str, secret: &str, form: &[(&str, &str)]) -> Response {
        use base64::Engine as _;
        // RFC 6749 §2.3.1: both parts form-encoded before Basic.
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form_encode(client),
            form_encode(secret)
        ));
        let authorization = format!("Basic {credentials}");
        self.post_form(&self.token_path, &[("Authorization", &authorization)], form)
    }

    /// Rotates the signing key: new tokens carry the returned `kid`; the
    /// JWKS lists the new key and still the previous one.
    pub fn rotate(&self) -> String {
        self.rotate_with("/test/rotate")
    }

    /// Rotates and stops publishing every older key.
    pub fn rotate_dropping_old(&self) -> String {
        self.rotate_with("/test/rotate?drop_old=1")
    }

    fn rotate_with(&self, path: &str) -> String {
        let body = self.ok_json(self.post_form(path, &[], &[]));
        body["kid"]
            .as_str()
            .unwrap_or_else(|| panic!("no kid in {body}"))
            .to_owned()
    }

    /// A compact JWS over `claims`, signed with the provider's current key
    /// (header `alg`, `kid` and `typ` when given): for tokens the provider
    /// would never issue itself, e.g. a logout token carrying a `nonce`.
    pub fn sign(&self, claims: &Value, typ: Option<&str>) -> String {
        let mut request = serde_json::json!({ "claims": claims });
        if let Some(typ) = typ {
            request["typ"] = Value::from(typ);
        }
        let answer = send(
            self.port,
            "POST",
            "/test/sign",
            &[],
            Some(("application/json", &request.to_string())),
        );
        let body = self.ok_json(answer);
        body["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {body}"))
            .to_owned()
    }

    /// Ends an IdP session of `sub` and/or `sid` through oidc-provider's
    /// RP-initiated logout, which POSTs a logout token to the registered
    /// `backchannel_logout_uri`; the status the receiver answered.
    pub fn backchannel_logout(&self, sub: Option<&str>, sid: Option<&str>) -> u16 {
        let logout = self.backchannel_logout_details(sub, sid);
        logout.status.unwrap_or_else(|| {
            panic!(
                "the back-channel logout receiver was not reached: {}",
                logout.error.as_deref().unwrap_or("no reason given")
            )
        })
    }

    /// Like [`backchannel_logout`](Self::backchannel_logout), with the
    /// logout token that was delivered.
    pub fn backchannel_logout_details(
        &self,
        sub: Option<&str>,
        sid: Option<&str>,
    ) -> BackchannelLogout {
        let mut form = Vec::new();
        if let Some(sub) = sub {
            form.push(("sub", sub));
        }
        if let Some(sid) = sid {
            form.push(("sid", sid));
        }
        let answer = self.post_form("/test/backchannel-logout", &[], &form);
        if answer.status != 200 && answer.status != 502 {
            panic!(
                "/test/backchannel-logout answered {}: {}\n--- provider log ---\n{}",
                answer.status,
                answer.body,
                self.log_text()
            );
        }
        let body = answer.json();
        let text = |name: &str| body[name].as_str().map(str::to_owned);
        BackchannelLogout {
            status: body["status"].as_u64().and_then(|s| u16::try_from(s).ok()),
            error: text("error"),
            jti: text("jti").unwrap_or_else(|| panic!("no jti in {body}")),
            sub: text("sub"),
            sid: text("sid"),
            logout_token: text("logout_token").unwrap_or_else(|| panic!("no token in {body}")),
        }
    }

    /// Kills the provider: its port refuses connections until [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same keys.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The provider's stdout and stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where the provider keeps its keys (`keys.json`, private JWKs).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    fn spawn(&mut self) -> Result<(), String> {
        if !Path::new(FIXTURE_DIR)
            .join("node_modules/oidc-provider")
            .is_dir()
        {
            return Err(format!(
                "{FIXTURE_DIR}/node_modules is missing: run `bash scripts/setup.sh` \
                 (or `make setup`), which installs Node and runs `npm ci` there"
            ));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("open {}: {e}", self.log.display()))?;
        let _ = writeln!(&log, "--- starting on port {} ---", self.port);
        let port = self.port.to_string();
        let state_dir = self
            .state
            .path()
            .to_str()
            .ok_or("the temp dir path is not UTF-8")?
            .to_owned();
        let mut command = Command::new("node");
        command
            .current_dir(FIXTURE_DIR)
            .args(["provider.mjs", "--watch-stdin", "--port", &port])
            .args([
                "--alg",
                self.options.alg.as_str(),
                "--state-dir",
                &state_dir,
            ]);
        if let Some(uri) = &self.options.backchannel_uri {
            command.args(["--backchannel-uri", uri]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log.try_clone().map_err(|e| format!("clone log: {e}"))?)
            .spawn()
            .map_err(|e| {
                format!(
                    "spawn node {FIXTURE_DIR}/provider.mjs: {e} (is Node installed? \
                     `bash scripts/setup.sh` installs it)"
                )
            })?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        // Reads stdout to its end (into the log), reporting the ready line.
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut log = log;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                if let Some(issuer) = line.strip_prefix("ready ") {
                    let _ = ready_tx.send(issuer.to_owned());
                }
            }
        });
        match ready_rx.recv_timeout(READY_WITHIN) {
            Ok(issuer) if issuer == self.issuer() => {
                self.child = Some(child);
                Ok(())
            }
            outcome => {
                let _ = child.kill();
                let status = child.wait();
                let why = match outcome {
                    Ok(issuer) => format!("announced issuer {issuer}, expected {}", self.issuer()),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        format!("did not print its ready line within {READY_WITHIN:?}")
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        format!("exited before it was ready ({status:?})")
                    }
                };
                Err(format!(
                    "oidc-provider on port {} {why}\n--- provider log ---\n{}",
                    self.port,
                    self.log_text()
                ))
            }
        }
    }

    fn read_discovery(&mut self) {
        let discovery = self.discovery();
        let issuer = self.issuer();
        let path_of = |field: &str| -> String {
            let url = discovery[field]
                .as_str()
                .unwrap_or_else(|| panic!("discovery has no {field}: {discovery}"));
            url.strip_prefix(&issuer)
                .unwrap_or_else(|| panic!("{field} {url} is not under {issuer}"))
                .to_owned()
        };
        self.token_path = path_of("token_endpoint");
        self.jwks_path = path_of("jwks_uri");
    }

    fn post_form(&self, path: &str, headers: &[(&str, &str)], form: &[(&str, &str)]) -> Response {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        send(
            self.port,
            "POST",
            path,
            headers,
            Some(("application/x-www-form-urlencoded", &body)),
        )
    }

    fn ok_json(&self, answer: Response) -> Value {
        if answer.status != 200 {
            panic!(
                "oidc-provider answered {}: {}\n--- provider log ---\n{}",
                answer.status,
                answer.body,
                self.log_text()
            );
        }
        answer.json()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
pub fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Decodes one `application/x-www-form-urlencoded` value.
pub fn form_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
