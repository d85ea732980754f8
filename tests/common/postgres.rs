//! Postgres for tests: the server in `DATABASE_URL` when it is set, otherwise
//! a throwaway cluster this test process starts on a free loopback port and
//! removes again. Each test gets its own database (`t_<uuid>`) on the shared
//! server, so tests run in parallel without seeing each other's rows.
//!
//! # Why a cluster of our own, and how it is cleaned up
//!
//! The machine has the server binaries but nothing running. `initdb` refuses
//! to run as root, so as root every server command runs as the `postgres` OS
//! user (`runuser -u postgres --`) inside a directory chowned to it; as any
//! other user they run directly. `pg_ctl -w start` detaches the postmaster
//! into its own session, so nothing kills it when the test process ends. A
//! `static` holding the shared cluster is never dropped, so cleanup is made
//! certain two ways:
//!
//! 1. an `atexit` handler (libc's, declared here; no extra crate) stops the
//!    shared cluster with `pg_ctl stop -m immediate` and deletes its
//!    directory. libtest leaves through `exit()` whether tests pass or fail,
//!    so `cargo test` returns only once the server is gone;
//! 2. a watchdog per cluster — `sh` in its own process group, blocked reading
//!    a pipe whose only write end this process holds — does the same when
//!    the pipe closes, which the kernel guarantees on *any* exit (a panic in
//!    a Drop, Ctrl-C, SIGKILL, a timed-out CI job).
//!
//! Clusters started for a single test (outage tests stop and restart theirs)
//! are stopped and removed by `Drop`, with the watchdog as the fallback.
//!
//! # TLS
//!
//! [`Cluster::start_tls`] starts a cluster of its own with `ssl=on` and the
//! given server certificate and key, written into its data directory owned
//! by the server's user (the key `0600`: the server refuses a key others can
//! read). Plain connections keep working beside TLS ones.
//!
//! If neither `DATABASE_URL` nor the binaries are available the tests fail
//! with a message saying so; they never skip silently.
//!
//! # Durability
//!
//! Test clusters run [`Durability::Fast`] (no fsync): a crash can only lose
//! a cluster that is thrown away anyway. `benches/session.rs` includes this
//! file too and starts [`Durability::Durable`] clusters (the server's
//! defaults), because it compares commit costs with SQLite, which syncs its
//! WAL on every commit.
#![allow(dead_code)]

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::Connection as _;

/// How long a freshly started server may take to accept SQL connections.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A Postgres server the tests may create databases on.
pub enum Server {
    /// `DATABASE_URL`: a maintenance URL with the right to create databases.
    External(String),
    /// A cluster this process started.
    Local(Cluster),
}

impl Server {
    /// URL of the server's maintenance database.
    pub fn admin_url(&self) -> String {
        match self {
            Server::External(url) => url.clone(),
            Server::Local(cluster) => cluster.url("postgres"),
        }
    }
}

static SHARED: OnceLock<Result<Server, String>> = OnceLock::new();

/// The server shared by every test of this process, started on first use.
/// Blocking: call it from `spawn_blocking` inside async tests.
pub fn shared() -> &'static Server {
    let server = SHARED.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            if !url.trim().is_empty() {
                return Ok(Server::External(url));
            }
        }
        let cluster = Cluster::start()?;
        // SAFETY: `atexit` is the C library's, takes a function pointer with
        // no arguments, and the handler below never unwinds into C.
        unsafe {
            atexit(stop_shared_cluster_at_exit);
        }
        Ok(Server::Local(cluster))
    });
    match server {
        Ok(server) => server,
        Err(message) => panic!("{message}"),
    }
}

extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
}

extern "C" fn stop_shared_cluster_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(Ok(Server::Local(cluster))) = SHARED.get() {
            cluster.remove();
        }
    });
}

/// A database of its own for one test.
pub struct TestDb {
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDb {
    /// Creates `t_<uuid>` on the shared server, waiting until it accepts
    /// connections.
    pub async fn create() -> TestDb {
        let server = tokio::task::spawn_blocking(shared)
            .await
            .expect("start the shared Postgres server");
        TestDb::create_on(&server.admin_url()).await
    }

    /// Creates `t_<uuid>` on the server behind `admin_url`.
    pub async fn create_on(admin_url: &str) -> TestDb {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = connect_when_ready(admin_url).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = admin.close().await;
        TestDb {
            url: with_database(admin_url, &name),
            name,
            admin_url: admin_url.to_string(),
        }
    }

    /// Drops the database (and any connections still open to it). Only
    /// matters on an external server; a local cluster goes away entirely.
    pub async fn drop_database(self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            )))
            .execute(&mut admin)
            .await;
            let _ = admin.close().await;
        }
    }
}

/// Polls until the server accepts a connection (no fixed sleeps).
pub async fn connect_when_ready(url: &str) -> sqlx::PgConnection {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        match sqlx::PgConnection::connect(url).await {
            Ok(connection) => return connection,
            Err(e) if Instant::now() >= deadline => {
                panic!("Postgres at {url} did not accept connections within {READY_WITHIN:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// `url` pointing at database `name` instead (query string kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..path_start])
}

/// What a cluster's commits cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `fsync`, `synchronous_commit` and `full_page_writes` off (and room
    /// for 300 connections): fast tests, nothing worth keeping after a crash.
    Fast,
    /// The server's defaults: `fsync`, `synchronous_commit` and
    /// `full_page_writes` on; `initdb` syncs its files too. For benchmarks.
    Durable,
}

/// A server certificate and key (PEM) for a cluster that serves TLS.
#[derive(Clone)]
pub struct ServerTls {
    /// The certificate (chain), PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
}

/// A Postgres cluster in a temp directory, owned by this test process.
pub struct Cluster {
    pub port: u16,
    durability: Durability,
    /// `ssl=on` with this certificate; `None`: plain connections only.
    tls: Option<ServerTls>,
    root: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    as_postgres_user: bool,
    /// Write end of the watchdog's pipe: closing it makes the watchdog stop
    /// the server and delete `root`.
    watchdog: Mutex<Option<ChildStdin>>,
}

impl Cluster {
    /// `initdb` and start a new [`Durability::Fast`] cluster on a free
    /// loopback port.
    pub fn start() -> Result<Cluster, String> {
        Cluster::start_with(Durability::Fast)
    }

    /// `initdb` and start a new cluster of the given durability on a free
    /// loopback port.
    pub fn start_with(durability: Durability) -> Result<Cluster, String> {
        Cluster::start_cluster(durability, None)
    }

    /// `initdb` and start a new [`Durability::Fast`] cluster that also
    /// accepts TLS (`ssl=on`) with this server certificate. Plain
    /// connections keep working (the tests' admin URL uses them).
    pub fn start_tls(tls: ServerTls) -> Result<Cluster, String> {
        Cluster::start_cluster(Durability::Fast, Some(tls))
    }

    fn start_cluster(durability: Durability, tls: Option<ServerTls>) -> Result<Cluster, String> {
        let bin_dir = find_bin_dir().ok_or_else(|| {
            "no Postgres server binaries found (looked in $PG_BINDIR, /usr/local/bin, \
             /usr/lib/postgresql/*/bin and $PATH for initdb, pg_ctl and postgres) and \
             DATABASE_URL is not set: install Postgres or point DATABASE_URL at a server \
             where the user may CREATE DATABASE"
                .to_string()
        })?;
        static SEQUENCE: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "portcullis-pg-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        let as_postgres_user = running_as_root();
        let mut cluster = Cluster {
            port: 0,
            durability,
            tls,
            data: root.join("data"),
            socket_dir: root.join("socket"),
            root,
            bin_dir,
            as_postgres_user,
            watchdog: Mutex::new(None),
        };
        // From here on `cluster` is dropped (stopped, deleted) on any error.
        cluster.prepare_directories()?;
        cluster.spawn_watchdog()?;
        cluster.initdb()?;
        cluster.write_tls_files()?;
        // A port free a moment ago can be taken before the server binds it.
        let mut last_error = String::new();
        for _ in 0..5 {
            cluster.port = free_port()?;
            match cluster.pg_ctl_start() {
                Ok(()) => return Ok(cluster),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the server (fast shutdown: sessions are cut, committed data
    /// stays), as an operator restarting the database would.
    pub fn stop(&self) -> Result<(), String> {
        self.pg_ctl(&[
            "-D",
            path_str(&self.data)?,
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
            "stop",
        ])
    }

    /// Stops the server the way a crash would (immediate shutdown: every
    /// connection is cut without a goodbye, and the next start recovers from
    /// the WAL); committed data stays. Blocking, and not from inside a Tokio
    /// runtime (it runs one of its own).
    pub fn crash(&self) -> Result<(), String> {
        if self.durability == Durability::Fast {
            // A fast cluster acknowledges commits before their WAL is written
            // (`synchronous_commit=off`), so an immediate stop would lose the
            // last moments of acknowledged work, which a durable server keeps.
            // A checkpoint writes it out first, so the crash loses only what a
            // durable server's would: nothing.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("start a runtime for CHECKPOINT: {e}"))?;
            runtime.block_on(async {
                let url = self.url("postgres");
                let mut admin = sqlx::PgConnection::connect(&url)
                    .await
                    .map_err(|e| format!("connect to {url} for CHECKPOINT: {e}"))?;
                sqlx::query("CHECKPOINT")
                    .execute(&mut admin)
                    .await
                    .map_err(|e| format!("CHECKPOINT before the crash: {e}"))?;
                let _ = admin.close().await;
                Ok::<(), String>(())
            })?;
        }
        self.pg_ctl(&[
            "-D",
            path_str(&self.data)?,
            "-m",
            "immediate",
            "-w",
            "-t",
            "60",
            "stop",
        ])
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&self) -> Result<(), String> {
        self.pg_ctl_start()
    }

    /// Stops the server at once and deletes the cluster directory.
    fn remove(&self) {
        if let Ok(data) = path_str(&self.data) {
            if self.data.join("postmaster.pid").exists() {
                let _ = self.pg_ctl(&["-D", data, "-m", "immediate", "-w", "-t", "60", "stop"]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
        // Let the watchdog go: nothing is left for it to do.
        if let Ok(mut watchdog) = self.watchdog.lock() {
            watchdog.take();
        }
    }

    fn prepare_directories(&self) -> Result<(), String> {
        for dir in [&self.root, &self.data, &self.socket_dir] {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        // The server user must be able to reach its directories.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod {}: {e}", self.root.display()))?;
        if self.as_postgres_user {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(&self.data)
                .arg(&self.socket_dir))?;
        }
        Ok(())
    }

    fn spawn_watchdog(&mut self) -> Result<(), String> {
        let script = r#"
            trap '' HUP INT
            cat >/dev/null 2>&1
            if [ "$4" = 1 ]; then
                runuser -u postgres -- "$1" -D "$2" -m immediate -w stop
            else
                "$1" -D "$2" -m immediate -w stop
            fi
            rm -rf "$3"
        "#;
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(script)
            .arg("portcullis-pg-watchdog")
            .arg(self.bin_dir.join("pg_ctl"))
            .arg(&self.data)
            .arg(&self.root)
            .arg(if self.as_postgres_user { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: a Ctrl-C meant for `cargo test` must not
        // kill the watchdog before it has cleaned up.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .map_err(|e| format!("spawn the cleanup watchdog: {e}"))?;
        let stdin = child.stdin.take().ok_or("watchdog has no stdin")?;
        if let Ok(mut watchdog) = self.watchdog.lock() {
            *watchdog = Some(stdin);
        }
        // Not waited for: it outlives this process by design.
        drop(child);
        Ok(())
    }

    fn initdb(&self) -> Result<(), String> {
        let log = self.root.join("initdb.log");
        let mut command = self.server_command("initdb");
        command.args([
            "-D",
            path_str(&self.data)?,
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        if self.durability == Durability::Fast {
            command.arg("--no-sync");
        }
        run_logged(&mut command, &log)
    }

    /// Puts the server certificate and key into the data directory, where
    /// the server reads them: owned by the server's user, the key `0600`
    /// (the server refuses a key others can read).
    fn write_tls_files(&self) -> Result<(), String> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        use std::os::unix::fs::PermissionsExt as _;
        let cert = self.data.join("server.crt");
        let key = self.data.join("server.key");
        std::fs::write(&cert, &tls.cert_pem)
            .map_err(|e| format!("write {}: {e}", cert.display()))?;
        std::fs::write(&key, &tls.key_pem).map_err(|e| format!("write {}: {e}", key.display()))?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("chmod {}: {e}", key.display()))?;
        if self.as_postgres_user {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(&cert)
                .arg(&key))?;
        }
        Ok(())
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            path_str(&self.socket_dir)?
        );
        if self.durability == Durability::Fast {
            options.push_str(
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                 -c max_connections=300",
            );
        }
        if self.tls.is_some() {
            // Relative to the data directory.
            options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        let server_log = self.data.join("server.log");
        self.pg_ctl(&[
            "-D",
            path_str(&self.data)?,
            "-l",
            path_str(&server_log)?,
            "-o",
            &options,
            "-w",
            "-t",
            "60",
            "start",
        ])
        .map_err(|e| {
            let log = std::fs::read_to_string(&server_log).unwrap_or_default();
            format!("{e}\n--- server log ---\n{log}")
        })
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let log = self.root.join("pg_ctl.log");
        let mut command = self.server_command("pg_ctl");
        command.args(args);
        run_logged(&mut command, &log)
    }

    /// A server binary run as the `postgres` user when we are root.
    fn server_command(&self, program: &str) -> Command {
        let program = self.bin_dir.join(program);
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        // The server user may not be able to enter the caller's directory.
        command.current_dir(&self.root);
        command
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.remove();
    }
}

fn find_bin_dir() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        candidates.push(dir.into());
    }
    candidates.push("/usr/local/bin".into());
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse().ok()?;
                Some((version, e.path().join("bin")))
            })
            .collect();
        versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
        candidates.extend(versions.into_iter().map(|(_, dir)| dir));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates.into_iter().find(|dir| has_all(dir))
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .map(|uid| uid == "0")
        })
        .unwrap_or(false)
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("find a free port: {e}"))
}

fn path_str(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Runs with output to `log` (never a pipe: a server started by `pg_ctl`
/// would inherit it and keep it open), quoting the log on failure.
fn run_logged(command: &mut Command, log: &Path) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("open {}: {e}", log.display()))?;
    let _ = writeln!(file, "$ {command:?}");
    let err = file
        .try_clone()
        .map_err(|e| format!("clone log handle: {e}"))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .status()
        .map_err(|e| format!("run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        Err(format!("{command:?} failed ({status}):\n{text}"))
    }
}
