//! Test harness: real processes on 127.0.0.1 with ephemeral ports — the
//! `portcullis` binary, the demo backend as the upstream, a real OpenID
//! Provider ([`oidc`]) as a token issuer — and a raw HTTP/1.1
//! client so tests can send exactly the bytes they mean (spoofed or huge
//! headers included). Readiness is awaited by polling, never by sleeping a
//! fixed time.
#![allow(dead_code)]

pub mod pki;
pub mod upstream;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod oidc;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
pub const HS_SECRET: &str = "test-secret-0123456789-0123456789-abcdef";

/// A port that was free a moment ago, and not handed out before by this
/// test process (the kernel may give the same ephemeral port to two binds
/// in a row once the first is closed, e.g. as a gateway's proxy and admin
/// ports).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind an ephemeral port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Polls `ready` until it holds or `within` runs out.
pub fn wait_until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(bin: &str, args: &[&str], log: PathBuf) -> Proc {
    let out = std::fs::File::create(&log).expect("create log file");
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone log handle"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
    Proc { child, log }
}

/// The demo backend as a real upstream.
pub struct Backend {
    pub port: u16,
    pub proc: Proc,
    _dir: tempfile::TempDir,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let proc = spawn(
            env!("CARGO_BIN_EXE_portcullis-demo-backend"),
            &["--listen", &listen, "--name", name],
            dir.path().join("backend.log"),
        );
        wait_until("demo backend to listen", Duration::from_secs(20), || {
            accepts(port)
        });
        Backend {
            port,
            proc,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A running gateway with its config in a temp dir.
pub struct Gateway {
    pub port: u16,
    pub admin_port: u16,
    pub proc: Proc,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
}

/// Replaces `{PROXY}`, `{ADMIN}`, `{FIXTURES}`, `{SECRET}` in a config template.
pub fn render(template: &str, port: u16, admin_port: u16) -> String {
    template
        .replace("{PROXY}", &format!("127.0.0.1:{port}"))
        .replace("{ADMIN}", &format!("127.0.0.1:{admin_port}"))
        .replace("{FIXTURES}", FIXTURES)
        .replace("{SECRET}", HS_SECRET)
}

impl Gateway {
    /// Starts `portcullis run` with `template` and waits until both listeners answer.
    pub fn start(template: &str) -> Gateway {
        Gateway::start_at(template, free_port(), free_port())
    }

    /// [`start`](Self::start) on ports chosen beforehand (for peers that
    /// must know the gateway's address before it runs).
    pub fn start_at(template: &str, port: u16, admin_port: u16) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("portcullis.yaml");
        std::fs::write(&config, render(template, port, admin_port)).expect("write config");
        let proc = spawn(
            env!("CARGO_BIN_EXE_portcullis"),
            &["run", "-c", config.to_str().expect("utf-8 path")],
            dir.path().join("gateway.log"),
        );
        let mut gw = Gateway {
            port,
            admin_port,
            proc,
            config,
            dir,
        };
        // Generous: compiling Wasm plugins on a loaded CI machine takes a while.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = gw.proc.child.try_wait() {
                panic!("gateway exited with {status}:\n{}", gw.proc.log_text());
            }
            if accepts(port)
                && accepts(admin_port)
                && get(admin_port, "/healthz", &[]).status == 200
            {
                return gw;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("gateway did not become ready:\n{}", gw.proc.log_text());
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        get(self.port, path, headers)
    }

    pub fn metrics(&self) -> String {
        get(self.admin_port, "/metrics", &[]).body
    }

    /// Rewrites the config file and sends SIGHUP.
    pub fn reload_with(&self, template: &str) {
        std::fs::write(&self.config, render(template, self.port, self.admin_port))
            .expect("write config");
        let pid = self.proc.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -HUP failed");
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// Sends raw request bytes and reads the whole answer (the request asks the
/// server to close the connection).
pub fn raw(port: u16, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set timeout");
    stream.write_all(request).expect("write request");
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> Response {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `GET path` with extra headers.
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    request(port, "GET", path, headers, None)
}

pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    send(
        port,
        method,
        path,
        headers,
        body.map(|b| ("application/json", b)),
    )
}

/// A request with an explicit body content type (or none at all).
pub fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &str)>,
) -> Response {
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some((content_type, b)) = body {
        req.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some((_, b)) = body {
        req.push_str(b);
    }
    raw(port, req.as_bytes())
}

/// Value of one sample in a Prometheus text exposition (0 when absent).
/// `labels` must be written in the exporter's (alphabetical) order.
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    let needle = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .find_map(|l| {
            l.strip_prefix(&needle)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

pub fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path.as_ref()).unwrap_or_else(|e| panic!("read {}: {e}", path.as_ref().display()))
}

/// Parses a raw HTTP/1.1 answer read from a socket opened elsewhere (e.g.
/// from another loopback source address), like [`raw`] does.
pub fn parse_raw_response(buf: &[u8]) -> Response {
    parse_response(buf)
}

/// Reads one answer off a kept-alive connection, plain or TLS
/// (`Content-Length` or chunked framing); `None` at end of stream or on a
/// broken answer.
pub fn read_next_response<R: std::io::BufRead>(reader: &mut R) -> Option<Response> {
    let mut status_line = String::new();
    if reader.read_line(&mut status_line).ok()? == 0 {
        return None;
    }
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        body.resize(length, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A connection to `port` for several requests: the write half and a
/// buffered reader for [`read_next_response`].
pub fn keep_alive(port: u16) -> (TcpStream, std::io::BufReader<TcpStream>) {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("set timeout");
    let reader = std::io::BufReader::new(stream.try_clone().expect("clone the stream"));
    (stream, reader)
}

/// The Wasm modules of plugins/, built once per test binary by
/// plugins/build.sh (a no-op when up to date).
pub fn plugins_out() -> &'static str {
    static BUILT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let root = env!("CARGO_MANIFEST_DIR");
        let status = Command::new("bash")
            .arg(format!("{root}/plugins/build.sh"))
            .status()
            .expect("run plugins/build.sh");
        assert!(
            status.success(),
            "plugins/build.sh failed; run `make plugins` to see why"
        );
        format!("{root}/plugins/out")
    })
}

/// Seconds since the Unix epoch, for `iat`/`exp` claims.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64
}

/// Starts the `portcullis` binary with `args` (e.g. `run --upgrade -c …`),
/// its output in `log`; killed when dropped.
pub fn spawn_portcullis(args: &[&str], log: PathBuf) -> Proc {
    spawn(env!("CARGO_BIN_EXE_portcullis"), args, log)
}

/// Sends `signal` (a name `kill -s` knows: TERM, QUIT, HUP, INT) to `proc`.
pub fn signal(proc: &Proc, signal: &str) {
    let pid = proc.child.id().to_string();
    let ok = Command::new("kill")
        .args(["-s", signal, &pid])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -s {signal} {pid} failed");
}

/// Waits until `proc` has exited, at most `within`; its exit status.
pub fn wait_for_exit(proc: &mut Proc, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = proc.child.try_wait() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the process did not exit within {within:?}:\n{}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
