//! Gateway configuration: the config template scenarios vary, and the gateway
//! processes started on it.

use super::*;

/// The HS256 signing key every scenario but the JWKS one uses.
const HS_SIGNING_KEY: &str = r#"    - kid: hs
      algorithms: [HS256]
      secret: "{SECRET}"
      sign: true
"#;

/// Login interception on the demo backend's two seed-style endpoints, and
/// everything else under /api behind a valid access token.
const LOGIN_ROUTES: &str = r#"  - name: login
    match: { path: /api/auth/login, methods: [POST] }
    upstream: main
    auth: none
    login:
      subject: /user/id
      claims: { role: /user/role, email: /user/email }
      device_info: /deviceInfo
  - name: register
    match: { path: /api/auth/register, methods: [POST] }
    upstream: main
    auth: none
    login:
      subject: /user/id
      claims: { role: /user/role, email: /user/email }
      device_info: /deviceInfo
"#;

const API_ROUTE: &str = r#"  - name: api
    match: { path_prefix: /api }
    upstream: main
    auth: required
"#;

/// The knobs scenarios turn; everything else is the common template.
#[derive(Clone)]
pub struct Setup {
    /// Entries of `jwt.keys`.
    pub keys: &'static str,
    /// Routes inserted before the catch-all `api` route.
    pub routes: &'static str,
    pub reuse_grace: &'static str,
    pub rotation: bool,
    pub refresh_token_ttl: Option<&'static str>,
    pub per_ip: u32,
    pub per_token: u32,
    pub cookie: bool,
    pub admin_token: bool,
    /// Extra lines inside `sessions:` (two-space indented).
    pub extra: &'static str,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            keys: HS_SIGNING_KEY,
            routes: "",
            reuse_grace: "10s",
            rotation: true,
            refresh_token_ttl: None,
            per_ip: 100_000,
            per_token: 100_000,
            cookie: false,
            admin_token: true,
            extra: "",
        }
    }
}

pub const COOKIE_NAME: &str = "portcullis_refresh";
pub const CSRF_HEADER: &str = "X-CSRF-Protection";
pub const APP_ORIGIN: &str = "https://app.example.com";

/// The config template (placeholders `{PROXY}` etc. are filled by the harness).
fn config_template(setup: &Setup, backend: &Backend, store_url: &str) -> String {
    let mut c = String::new();
    c.push_str("listeners:\n  proxy: \"{PROXY}\"\n  admin: \"{ADMIN}\"\n  threads: 2\n  grace_period: 0s\n");
    c.push_str("jwt:\n  issuer: test-issuer\n  audience: [test-aud]\n  leeway: 0s\n  keys:\n");
    c.push_str(setup.keys);
    c.push_str("limits:\n  max_body_size: 4KiB\n");
    c.push_str(&format!(
        "upstreams:\n  main:\n    targets: [\"{}\"]\n",
        backend.addr()
    ));
    c.push_str("routes:\n");
    c.push_str(LOGIN_ROUTES);
    c.push_str(setup.routes);
    c.push_str(API_ROUTE);
    c.push_str("sessions:\n");
    c.push_str(&format!("  store: \"{store_url}\"\n"));
    c.push_str(&format!("  refresh_secret: \"{REFRESH_SECRET}\"\n"));
    c.push_str(&format!("  rotation: {}\n", setup.rotation));
    c.push_str(&format!("  reuse_grace: {}\n", setup.reuse_grace));
    if let Some(ttl) = setup.refresh_token_ttl {
        c.push_str(&format!("  refresh_token_ttl: {ttl}\n"));
    }
    c.push_str(&format!(
        "  rate_limit: {{ per_ip: {}, per_token: {}, window: 1m }}\n",
        setup.per_ip, setup.per_token
    ));
    if setup.cookie {
        c.push_str(&format!(
            "  cookie:\n    name: {COOKIE_NAME}\n    secure: true\n    csrf_header: {CSRF_HEADER}\n    allowed_origins: [\"{APP_ORIGIN}\"]\n"
        ));
    }
    if setup.admin_token {
        c.push_str(&format!("  admin_token: \"{ADMIN_TOKEN}\"\n"));
    }
    c.push_str(setup.extra);
    c
}

/// One scenario's world: a store, the demo backend and a gateway on both.
pub struct Env {
    pub gw: Gateway,
    /// Held so the backend runs as long as the scenario (no scenario reads it).
    #[allow(dead_code)]
    pub backend: Backend,
    pub store: Store,
    /// The gateway's config template, to start more gateways on the same store.
    pub template: String,
}

impl Env {
    pub fn start(kind: StoreKind, setup: Setup) -> Env {
        Env::start_on(Store::new(kind), setup)
    }

    pub fn start_on(store: Store, setup: Setup) -> Env {
        let backend = Backend::start("app");
        let template = config_template(&setup, &backend, &store.url);
        let gw = start_gateway(&template);
        Env {
            gw,
            backend,
            store,
            template,
        }
    }

    pub fn port(&self) -> u16 {
        self.gw.port
    }

    /// Another gateway process with the same configuration and store.
    pub fn another_gateway(&self) -> Gateway {
        start_gateway(&self.template)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.gw.proc.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- last gateway log lines ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// `Gateway::start`, but waiting until *both* listeners accept before asking
/// the admin listener for `/healthz` (the harness's version connects to the
/// admin port as soon as the proxy port accepts, and panics with "connection
/// refused" when the admin listener comes up a moment later).
pub fn start_gateway(template: &str) -> Gateway {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("temp dir");
    let (port, admin_port) = (free_port(), free_port());
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(&config, render(template, port, admin_port)).expect("write config");
    let log = dir.path().join("gateway.log");
    let out = std::fs::File::create(&log).expect("create log file");
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "-c", config.to_str().expect("utf-8 path")])
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone log handle"))
        .stderr(out)
        .spawn()
        .expect("spawn portcullis");
    let mut gw = Gateway {
        port,
        admin_port,
        proc: Proc { child, log },
        config,
        dir,
    };
    let accepts = |p: u16| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = gw.proc.child.try_wait() {
            panic!("gateway exited with {status}:\n{}", gw.proc.log_text());
        }
        if accepts(port) && accepts(admin_port) && get(admin_port, "/healthz", &[]).status == 200 {
            return gw;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("gateway did not become ready:\n{}", gw.proc.log_text());
}
