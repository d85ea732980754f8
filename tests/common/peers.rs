//! Real peers written in Python for the TLS and gRPC tests: a gRPC server
//! and client (Debian's `python3-grpcio`, installed by scripts/setup.sh) and
//! an HTTPS server (the standard library's `http.server` wrapped in `ssl`),
//! from `tests/fixtures/`. Each is a child process killed when dropped;
//! readiness is awaited by polling its port.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::common::{free_port, wait_until, Proc, FIXTURES};

/// A Python 3 that can `import grpc`: Debian's (`/usr/bin/python3`, where
/// `apt-get install python3-grpcio` puts the module) before the first one on
/// `PATH`. Panics with what to install when there is none.
pub fn python() -> &'static str {
    static FOUND: OnceLock<String> = OnceLock::new();
    FOUND.get_or_init(|| {
        for candidate in ["/usr/bin/python3", "python3"] {
            let ok = Command::new(candidate)
                .args(["-c", "import grpc, ssl"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return candidate.to_owned();
            }
        }
        panic!(
            "no python3 with the grpc module: run scripts/setup.sh as root \
             (or `apt-get install python3-grpcio`)"
        )
    })
}

fn spawn_python(args: &[&str], log: &Path) -> Proc {
    let out = std::fs::File::create(log).expect("create log file");
    let child = Command::new(python())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone log handle"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {} {args:?}: {e}", python()));
    Proc {
        child,
        log: log.to_owned(),
    }
}

fn wait_for_port(port: u16, proc: &mut Proc, what: &str) {
    wait_until(what, Duration::from_secs(30), || {
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!("{what}: exited with {status}:\n{}", proc.log_text());
        }
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// `tests/fixtures/grpc_peer.py serve`: `/test.Echo/{Unary, ServerStream,
/// Bidi, Fail}` in plain text (h2c) or over TLS.
pub struct GrpcServer {
    pub port: u16,
    pub proc: Proc,
    /// What its gRPC health service answers (`SERVING` while absent).
    health_file: std::path::PathBuf,
}

impl GrpcServer {
    /// A plain-text (h2c) server; its log goes to `dir`.
    pub fn start(dir: &Path) -> GrpcServer {
        GrpcServer::start_with(dir, None)
    }

    /// A TLS server with this certificate and key.
    pub fn start_tls(dir: &Path, cert: &Path, key: &Path) -> GrpcServer {
        GrpcServer::start_with(dir, Some((cert, key)))
    }

    fn start_with(dir: &Path, tls: Option<(&Path, &Path)>) -> GrpcServer {
        let port = free_port();
        let script = format!("{FIXTURES}/grpc_peer.py");
        let port_text = port.to_string();
        let health_file = dir.join(format!("grpc-health-{port}.txt"));
        let health_text = health_file.to_string_lossy().into_owned();
        let mut args = vec![
            script.as_str(),
            "serve",
            "--port",
            &port_text,
            "--health-file",
            &health_text,
        ];
        let (cert, key);
        if let Some((c, k)) = tls {
            cert = c.to_string_lossy().into_owned();
            key = k.to_string_lossy().into_owned();
            args.extend(["--cert", &cert, "--key", &key]);
        }
        let mut proc = spawn_python(&args, &dir.join(format!("grpc-server-{port}.log")));
        wait_for_port(port, &mut proc, "the gRPC server to listen");
        GrpcServer {
            port,
            proc,
            health_file,
        }
    }

    /// Sets what its health service answers: `SERVING` or `NOT_SERVING`.
    pub fn set_health(&self, status: &str) {
        std::fs::write(&self.health_file, status).expect("write the health file");
    }

    /// The health checks it answered, one `HEALTH service=… status=…` line each.
    pub fn health_checks(&self) -> Vec<String> {
        self.proc
            .log_text()
            .lines()
            .filter(|l| l.starts_with("HEALTH "))
            .map(str::to_owned)
            .collect()
    }

    /// The calls it served, one `CALL <method> authorization=… x-user-id=…`
    /// line each.
    pub fn calls(&self) -> Vec<String> {
        self.proc
            .log_text()
            .lines()
            .filter(|l| l.starts_with("CALL "))
            .map(str::to_owned)
            .collect()
    }
}

/// One gRPC call made by `grpc_peer.py call` on a channel of its own.
pub struct GrpcCall<'a> {
    /// `host:port` the client connects to.
    pub target: String,
    /// The service (`test.Echo`); the path is `/<service>/<method>`.
    pub service: &'a str,
    /// `Unary`, `ServerStream`, `Bidi` or `Fail`.
    pub method: &'a str,
    /// The request (for `ServerStream`, how many messages to answer).
    pub data: &'a str,
    /// For `Bidi`: how many messages to send.
    pub count: usize,
    /// Request metadata.
    pub metadata: Vec<(String, String)>,
    /// Over TLS: the CA file and the server name to verify.
    pub tls: Option<(String, String)>,
}

impl<'a> GrpcCall<'a> {
    /// A call to `/<service>/<method>` at `127.0.0.1:port` in plain text.
    pub fn new(port: u16, service: &'a str, method: &'a str) -> GrpcCall<'a> {
        GrpcCall {
            target: format!("127.0.0.1:{port}"),
            service,
            method,
            data: "hello",
            count: 3,
            metadata: Vec::new(),
            tls: None,
        }
    }

    /// Adds request metadata.
    pub fn metadata(mut self, key: &str, value: &str) -> GrpcCall<'a> {
        self.metadata.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets the request data.
    pub fn data(mut self, data: &'a str) -> GrpcCall<'a> {
        self.data = data;
        self
    }

    /// Sets how many messages a `Bidi` call sends.
    pub fn count(mut self, count: usize) -> GrpcCall<'a> {
        self.count = count;
        self
    }

    /// Makes the call; its outcome as the client saw it: `code` (a
    /// `grpc.StatusCode` name), `details`, `responses`, `initial` and
    /// `trailing` metadata.
    pub fn run(&self) -> serde_json::Value {
        let script = format!("{FIXTURES}/grpc_peer.py");
        let path = format!("/{}/", self.service);
        let count = self.count.to_string();
        let mut command = Command::new(python());
        command.args([
            script.as_str(),
            "call",
            "--target",
            &self.target,
            "--service-path",
            &path,
            "--method",
            self.method,
            "--data",
            self.data,
            "--count",
            &count,
        ]);
        for (key, value) in &self.metadata {
            command.arg("--metadata").arg(format!("{key}={value}"));
        }
        if let Some((ca, name)) = &self.tls {
            command.args(["--ca", ca, "--server-name", name]);
        }
        let output = command
            .stdin(Stdio::null())
            .output()
            .expect("run the gRPC client");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "the gRPC client printed no result ({e}); stdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }
}

/// `tests/fixtures/https_server.py`: HTTPS/1.1, answering every `GET` with
/// `200 {"path": …, "client": <client certificate CN or null>}`; with a
/// client CA it requires a client certificate signed by it.
pub struct HttpsServer {
    pub port: u16,
    pub proc: Proc,
}

impl HttpsServer {
    /// Serves with this certificate and key; `client_ca`: require a client
    /// certificate from that CA.
    pub fn start(dir: &Path, cert: &Path, key: &Path, client_ca: Option<&Path>) -> HttpsServer {
        HttpsServer::start_with(dir, cert, key, client_ca, None)
    }

    /// [`start`](Self::start), answering paths that name a file under
    /// `docroot` with that file.
    pub fn start_with(
        dir: &Path,
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        docroot: Option<&Path>,
    ) -> HttpsServer {
        let port = free_port();
        let script = format!("{FIXTURES}/https_server.py");
        let port_text = port.to_string();
        let cert = cert.to_string_lossy().into_owned();
        let key = key.to_string_lossy().into_owned();
        let mut args = vec![
            script.as_str(),
            "--port",
            &port_text,
            "--cert",
            &cert,
            "--key",
            &key,
        ];
        let ca;
        if let Some(client_ca) = client_ca {
            ca = client_ca.to_string_lossy().into_owned();
            args.extend(["--client-ca", &ca]);
        }
        let root;
        if let Some(docroot) = docroot {
            root = docroot.to_string_lossy().into_owned();
            args.extend(["--docroot", &root]);
        }
        let mut proc = spawn_python(&args, &dir.join(format!("https-{port}.log")));
        wait_for_port(port, &mut proc, "the HTTPS server to listen");
        HttpsServer { port, proc }
    }

    /// The requests it answered, one `GET <path> client=<CN or ->` line each.
    pub fn requests(&self) -> Vec<String> {
        self.proc
            .log_text()
            .lines()
            .filter(|l| l.starts_with("GET "))
            .map(str::to_owned)
            .collect()
    }
}
