//! End-to-end tests of the end of a gateway's life: `SIGTERM` drains (keeps
//! serving for `listeners.drain_window` with `Connection: close`, `/readyz`
//! 503 `draining`) and exits as soon as the last connection is done, bounded
//! by `listeners.grace_period`; `SIGQUIT` hands the listening sockets to a
//! `run --upgrade` process, under `wrk` load, without a failed request.
//!
//! Real processes on loopback: the `portcullis` binary, the demo backend,
//! and a small slow upstream thread. Time bounds are behavioural (exit "well
//! before" a 30 s grace period), and readiness is polled, never slept for.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Body of every answer of the slow upstream.
const SLOW_BODY: &str = "the slow upstream took its time, and every byte of this body arrived";

/// A gateway: `/slow` to `slow`, everything else to `fast`, with the given
/// `listeners` lines (grace period, drain window). The upgrade socket is in
/// the gateway's temp dir, so parallel tests never meet.
fn gateway(listeners: &str, fast: &str, slow: &str) -> Gateway {
    let listeners: String = listeners.lines().map(|l| format!("  {l}\n")).collect();
    Gateway::start(&format!(
        "listeners:\n  proxy: \"{{PROXY}}\"\n  admin: \"{{ADMIN}}\"\n  threads: 1\n  upgrade_socket: upgrade.sock\n{listeners}\
         log:\n  access: false\n\
         upstreams:\n  fast:\n    targets: [\"{fast}\"]\n  slow:\n    targets: [\"{slow}\"]\n\
         routes:\n  - name: slow\n    match: {{ path_prefix: /slow }}\n    upstream: slow\n    auth: none\n\
         \x20 - name: open\n    match: {{ path_prefix: / }}\n    upstream: fast\n    auth: none\n"
    ))
}

/// An upstream that answers every request `delay` after its head arrived,
/// with [`SLOW_BODY`]. Runs until the test process ends.
fn slow_upstream(delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the slow upstream");
    let addr = listener.local_addr().expect("slow upstream address");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || answer_slowly(stream, delay));
        }
    });
    addr.to_string()
}

fn answer_slowly(mut stream: TcpStream, delay: Duration) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    // The upstream's own slowness, the behaviour under test (not a wait
    // for something to happen).
    thread::sleep(delay);
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{SLOW_BODY}",
        SLOW_BODY.len()
    );
    let _ = stream.write_all(answer.as_bytes());
}

fn in_flight(gw: &Gateway) -> f64 {
    metric(&gw.metrics(), "portcullis_in_flight_requests", "")
}

/// Starts `n` requests to `/slow`, each on its own connection and thread.
fn slow_requests(port: u16, n: usize) -> Vec<thread::JoinHandle<(Response, Instant)>> {
    (0..n)
        .map(|_| thread::spawn(move || (get(port, "/slow", &[]), Instant::now())))
        .collect()
}

/// A kept-alive connection: requests without `Connection: close`.
struct KeepAlive(TcpStream);

impl KeepAlive {
    fn open(port: u16) -> KeepAlive {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the gateway");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set read timeout");
        KeepAlive(stream)
    }

    /// `GET path` and its answer (which has a `Content-Length` body).
    fn get(&mut self, path: &str) -> Response {
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        self.0
            .write_all(request.as_bytes())
            .expect("write the request");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match self.0.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                other => panic!(
                    "connection ended inside an answer head ({other:?}): {}",
                    String::from_utf8_lossy(&head)
                ),
            }
        }
        let length: usize = parse_raw_response(&head)
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .expect("the answer has a Content-Length");
        let mut body = vec![0u8; length];
        self.0.read_exact(&mut body).expect("read the answer body");
        head.extend_from_slice(&body);
        parse_raw_response(&head)
    }
}

#[test]
fn sigterm_with_nothing_in_flight_exits_well_before_the_grace_period() {
    let backend = Backend::start("a");
    let mut gw = gateway(
        "grace_period: 30s\ndrain_window: 1s",
        &backend.addr(),
        &backend.addr(),
    );
    assert_eq!(gw.get("/x", &[]).status, 200);

    let sent = Instant::now();
    signal(&gw.proc, "TERM");
    let status = wait_for_exit(&mut gw.proc, Duration::from_secs(10));
    let took = sent.elapsed();

    assert!(
        status.success(),
        "exit status {status}:\n{}",
        gw.proc.log_text()
    );
    assert!(
        took >= Duration::from_secs(1),
        "the drain window (1s) was not kept: exited after {took:?}"
    );
    assert!(
        gw.proc
            .log_text()
            .contains("every client connection is done; exiting"),
        "{}",
        gw.proc.log_text()
    );
}

#[test]
fn sigterm_lets_slow_requests_finish_while_the_drain_window_serves_new_ones_with_connection_close()
{
    let backend = Backend::start("a");
    let slow = slow_upstream(Duration::from_secs(4));
    let mut gw = gateway(
        "grace_period: 30s\ndrain_window: 2s",
        &backend.addr(),
        &slow,
    );
    let mut kept = KeepAlive::open(gw.port);
    let before = kept.get("/before");
    assert_eq!(before.status, 200);
    assert_eq!(before.header("connection"), Some("keep-alive"));
    assert_eq!(get(gw.admin_port, "/readyz", &[]).json()["status"], "ready");

    let requests = slow_requests(gw.port, 3);
    wait_until("3 slow requests in flight", Duration::from_secs(10), || {
        in_flight(&gw) == 3.0
    });
    let sent = Instant::now();
    signal(&gw.proc, "TERM");

    // Draining: readiness fails at once, with a body that says why.
    wait_until("/readyz to answer 503", Duration::from_secs(2), || {
        get(gw.admin_port, "/readyz", &[]).status == 503
    });
    let readyz = get(gw.admin_port, "/readyz", &[]);
    assert_eq!(readyz.json()["status"], "draining", "{}", readyz.body);
    assert_eq!(metric(&gw.metrics(), "portcullis_draining", ""), 1.0);
    // Within the drain window new connections are served, and every answer
    // closes its connection: on a new connection and on a kept-alive one.
    let mut fresh = KeepAlive::open(gw.port);
    let during = fresh.get("/during");
    assert_eq!(during.status, 200, "{}", during.body);
    assert_eq!(during.header("connection"), Some("close"));
    let again = kept.get("/again");
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.header("connection"), Some("close"));
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "the checks above must run inside the 2s drain window; took {:?}",
        sent.elapsed()
    );

    // The slow requests outlast the drain window and still complete.
    let mut last = sent;
    for request in requests {
        let (resp, done) = request.join().expect("slow request thread");
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(resp.body, SLOW_BODY);
        last = last.max(done);
    }
    assert!(
        last - sent >= Duration::from_secs(2),
        "the slow requests should outlast the drain window"
    );
    let status = wait_for_exit(&mut gw.proc, Duration::from_secs(10));
    let exited = Instant::now();
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        gw.proc.log_text()
    );
    assert!(
        exited - last < Duration::from_secs(5),
        "exited {:?} after the last request finished; expected promptly",
        exited - last
    );
    assert!(
        !gw.proc.log_text().contains("cutting"),
        "nothing should have been cut:\n{}",
        gw.proc.log_text()
    );
}

#[test]
fn the_grace_period_cuts_requests_still_in_flight_and_the_log_says_how_many() {
    let backend = Backend::start("a");
    let slow = slow_upstream(Duration::from_secs(60));
    let mut gw = gateway("grace_period: 1s\ndrain_window: 0s", &backend.addr(), &slow);
    let requests = slow_requests(gw.port, 2);
    wait_until("2 slow requests in flight", Duration::from_secs(10), || {
        in_flight(&gw) == 2.0
    });
    let sent = Instant::now();
    signal(&gw.proc, "TERM");
    let status = wait_for_exit(&mut gw.proc, Duration::from_secs(15));
    let took = sent.elapsed();

    assert!(
        status.success(),
        "exit status {status}:\n{}",
        gw.proc.log_text()
    );
    assert!(
        took >= Duration::from_secs(1),
        "cut before the grace period: {took:?}"
    );
    let log = gw.proc.log_text();
    assert!(
        log.contains("cutting 2 request(s) in flight"),
        "the exit must say how many requests were cut:\n{log}"
    );
    for request in requests {
        let (resp, _) = request.join().expect("slow request thread");
        assert_eq!(resp.status, 0, "a cut request gets no answer: {resp:?}");
    }
}

#[test]
fn sigquit_without_a_new_process_on_the_upgrade_socket_keeps_serving() {
    let backend = Backend::start("a");
    let gw = gateway("grace_period: 1s", &backend.addr(), &backend.addr());
    signal(&gw.proc, "QUIT");
    wait_until(
        "the gateway to abandon the upgrade",
        Duration::from_secs(30),
        || gw.proc.log_text().contains("the upgrade is abandoned"),
    );
    assert_eq!(gw.get("/x", &[]).status, 200);
    assert_eq!(get(gw.admin_port, "/readyz", &[]).status, 200);
    assert_eq!(metric(&gw.metrics(), "portcullis_draining", ""), 0.0);
}

/// What `wrk` reported.
#[derive(Debug)]
struct WrkReport {
    requests: u64,
    socket_errors: Option<String>,
    non_2xx_3xx: Option<u64>,
}

/// Reads `N requests in`, `Socket errors: …` and `Non-2xx or 3xx responses: N`
/// (the last two appear only when nonzero).
fn parse_wrk(output: &str) -> WrkReport {
    let requests = output
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{output}"));
    let socket_errors = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|s| s.trim().to_owned());
    let non_2xx_3xx = output.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Non-2xx or 3xx responses:")
            .and_then(|n| n.trim().parse().ok())
    });
    WrkReport {
        requests,
        socket_errors,
        non_2xx_3xx,
    }
}

#[test]
fn wrk_output_is_read_with_and_without_errors() {
    let clean = "Running 5s test @ http://127.0.0.1:1/x\n  1 threads and 16 connections\n  50538 requests in 22.07s, 20.37MB read\nRequests/sec:   2290.30\n";
    let report = parse_wrk(clean);
    assert_eq!(report.requests, 50538);
    assert_eq!(report.socket_errors, None);
    assert_eq!(report.non_2xx_3xx, None);
    let failed = "  120 requests in 5.00s, 1.00MB read\n  Socket errors: connect 0, read 3, write 0, timeout 0\n  Non-2xx or 3xx responses: 7\n";
    let report = parse_wrk(failed);
    assert_eq!(report.requests, 120);
    assert_eq!(
        report.socket_errors.as_deref(),
        Some("connect 0, read 3, write 0, timeout 0")
    );
    assert_eq!(report.non_2xx_3xx, Some(7));
}

/// Starts `run --upgrade` on `config`, sends SIGQUIT to `old`, and waits
/// until `old` has exited (successfully). The new process.
fn upgrade(config: &Path, old: &mut Proc, name: &str) -> Proc {
    let log = config.with_file_name(format!("{name}.log"));
    let config = config.to_str().expect("utf-8 config path");
    let new = spawn_portcullis(&["run", "--upgrade", "-c", config], log);
    // Either order works (the old process waits for the new one's socket);
    // the upgrade procedure in docs/operations.md starts the new one first.
    signal(old, "QUIT");
    let status = wait_for_exit(old, Duration::from_secs(30));
    assert!(
        status.success(),
        "the old process exited with {status}:\n{}",
        old.log_text()
    );
    assert!(
        new.log_text()
            .contains("listening sockets taken over from the previous process"),
        "{name} did not take the sockets over:\n{}",
        new.log_text()
    );
    new
}

#[test]
fn two_upgrades_under_wrk_load_fail_no_request() {
    let backend = Backend::start("a");
    let mut gw = gateway("grace_period: 10s", &backend.addr(), &backend.addr());
    let url = format!("http://127.0.0.1:{}/load", gw.port);
    let wrk_log = gw.dir.path().join("wrk.log");
    // `--timeout 10s`: a slow answer on this 2-core machine is not a failure
    // of the upgrade; a dropped or refused one is.
    let mut wrk = Proc {
        child: Command::new("wrk")
            .args(["-t1", "-c16", "-d25s", "--timeout", "10s", &url])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&wrk_log).expect("create wrk log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("run wrk (scripts/setup.sh installs it)"),
        log: wrk_log,
    };
    wait_until("wrk to get answers", Duration::from_secs(10), || {
        metric(
            &gw.metrics(),
            "portcullis_requests_total",
            "route=\"open\",status=\"200\"",
        ) > 100.0
    });

    let config = gw.config.clone();
    let mut second = upgrade(&config, &mut gw.proc, "second");
    wait_until_served(&gw, "second");
    let third = upgrade(&config, &mut second, "third");
    wait_until_served(&gw, "third");

    let status = wait_for_exit(&mut wrk, Duration::from_secs(40));
    assert!(status.success(), "wrk failed:\n{}", wrk.log_text());
    let output = wrk.log_text();
    let report = parse_wrk(&output);
    assert!(report.requests > 0, "{output}");
    assert_eq!(report.socket_errors, None, "{output}");
    assert_eq!(report.non_2xx_3xx, None, "{output}");
    eprintln!("wrk across two upgrades:\n{output}");

    // The last process serves both listeners on the same ports.
    assert_eq!(gw.get("/after", &[]).status, 200);
    assert_eq!(get(gw.admin_port, "/readyz", &[]).status, 200);
    drop(third);
}

/// After an upgrade: the admin listener (now the new process's alone) says
/// ready and counts this process's own answers.
fn wait_until_served(gw: &Gateway, name: &str) {
    wait_until(
        &format!("the {name} process to answer wrk"),
        Duration::from_secs(10),
        || {
            get(gw.admin_port, "/readyz", &[]).status == 200
                && metric(
                    &gw.metrics(),
                    "portcullis_requests_total",
                    "route=\"open\",status=\"200\"",
                ) > 0.0
        },
    );
}

/// Ends, when dropped, the gateway processes a script started (they are
/// not this test's children): the ids it saw in the PID file.
struct ScriptStarted(Vec<u32>);

impl Drop for ScriptStarted {
    fn drop(&mut self) {
        for pid in self.0.iter().filter(|pid| !process_gone(**pid)) {
            let _ = Command::new("kill")
                .args(["-s", "KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `/proc/PID` is gone or a zombie (its parent, the script, has exited, and
/// whoever inherited it may not reap it at once).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

fn service_script(command: &str, config: &Path, pid_file: &Path, log: &Path) -> bool {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/portcullis-service");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the script log");
    Command::new("sh")
        .arg(script)
        .args([
            command,
            config.to_str().expect("utf-8"),
            pid_file.to_str().expect("utf-8"),
        ])
        .env("PORTCULLIS_BIN", env!("CARGO_BIN_EXE_portcullis"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone log handle"))
        .stderr(out)
        .status()
        .expect("run scripts/portcullis-service")
        .success()
}

fn pid_in(pid_file: &Path) -> u32 {
    String::from_utf8_lossy(&read(pid_file))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{} holds no pid: {e}", pid_file.display()))
}

#[test]
fn the_service_script_starts_and_upgrades_with_the_pid_file_naming_the_serving_process() {
    let backend = Backend::start("a");
    let dir = tempfile::tempdir().expect("temp dir");
    let (port, admin_port) = (free_port(), free_port());
    let config = dir.path().join("portcullis.yaml");
    let template = format!(
        "listeners:\n  proxy: \"{{PROXY}}\"\n  admin: \"{{ADMIN}}\"\n  threads: 1\n  grace_period: 5s\n  upgrade_socket: upgrade.sock\n\
         upstreams:\n  main:\n    targets: [\"{}\"]\n\
         routes:\n  - name: open\n    match: {{ path_prefix: / }}\n    upstream: main\n    auth: none\n",
        backend.addr()
    );
    std::fs::write(&config, render(&template, port, admin_port)).expect("write config");
    let pid_file = dir.path().join("portcullis.pid");
    let log = dir.path().join("service.log");
    let mut started = ScriptStarted(Vec::new());
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    assert!(
        service_script("start", &config, &pid_file, &log),
        "start failed:\n{}",
        log_text()
    );
    let first = pid_in(&pid_file);
    started.0.push(first);
    wait_until("the gateway to serve", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok() && get(port, "/x", &[]).status == 200
    });

    assert!(
        service_script("upgrade", &config, &pid_file, &log),
        "upgrade failed:\n{}",
        log_text()
    );
    let second = pid_in(&pid_file);
    started.0.push(second);
    assert_ne!(second, first, "the PID file must name the new process");
    assert!(
        !process_gone(second),
        "the new process is running:\n{}",
        log_text()
    );
    wait_until("the old process to exit", Duration::from_secs(30), || {
        process_gone(first)
    });
    assert_eq!(get(port, "/x", &[]).status, 200);
    assert_eq!(get(admin_port, "/readyz", &[]).status, 200);
}
