//! End-to-end tests of slow and broken clients: a real `portcullis` process
//! with small `limits`, raw sockets that trickle, idle or pile up, and the
//! `client_*` metrics on the admin listener.
//!
//! Time bounds are generous multiples of the configured timeouts; nothing
//! waits a fixed time to synchronise.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const ROUTES: &str = "routes:\n  - name: api\n    match: { path_prefix: /api }\n    upstream: main\n    auth: none\n";

/// A gateway with `limits` (YAML lines under `limits:`) in front of `upstream`.
fn gateway(limits: &str, upstream: &str) -> Gateway {
    let limits: String = limits.lines().map(|l| format!("  {l}\n")).collect();
    Gateway::start(&format!(
        "listeners:\n  proxy: \"{{PROXY}}\"\n  admin: \"{{ADMIN}}\"\n  threads: 1\n  grace_period: 0s\n\
         limits:\n{limits}\
         upstreams:\n  main:\n    targets: [\"{upstream}\"]\n\
         {ROUTES}"
    ))
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the gateway");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set read timeout");
    s
}

fn closes(gw: &Gateway, reason: &str) -> f64 {
    metric(
        &gw.metrics(),
        "portcullis_client_closes_total",
        &format!("reason=\"{reason}\""),
    )
}

fn open_connections(gw: &Gateway) -> f64 {
    metric(&gw.metrics(), "portcullis_client_connections", "")
}

/// Reads one HTTP/1.1 answer with a `Content-Length` body off a kept-alive connection.
fn read_answer(stream: &mut TcpStream) -> Response {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "connection ended inside an answer head ({other:?}): {}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let partial = parse_raw_response(&head);
    let length: usize = partial
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .expect("the answer has a Content-Length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("read the answer body");
    head.extend_from_slice(&body);
    parse_raw_response(&head)
}

/// Reads until the gateway closes: the bytes, and whether it ended in a
/// close (end of stream or reset) rather than the socket's read timeout.
fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return (out, true)
            }
            Err(_) => return (out, false),
        }
    }
}

/// Writes `bytes` one at a time, one every 200 ms, until done, the peer goes
/// away, or `stop` is set. Returns how many were written.
fn trickle(mut stream: TcpStream, bytes: Vec<u8>, stop: Arc<AtomicBool>) -> usize {
    let mut sent = 0;
    for b in bytes {
        if stop.load(Ordering::Acquire) || stream.write_all(&[b]).is_err() {
            break;
        }
        sent += 1;
        thread::sleep(Duration::from_millis(200));
    }
    sent
}

#[test]
fn head_trickled_below_every_read_timeout_is_answered_408_at_header_read_timeout_while_others_are_served(
) {
    let backend = Backend::start("slow");
    // 2s, not 1s: the normal request below must finish inside it on a loaded machine.
    let timeout = Duration::from_secs(2);
    let gw = gateway(
        "header_read_timeout: 2s\nbody_read_timeout: 30s",
        &backend.addr(),
    );

    let started = Instant::now();
    let mut slow = connect(gw.port);
    let stop = Arc::new(AtomicBool::new(false));
    let head = b"GET /api/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n".to_vec();
    let head_len = head.len();
    let trickler = {
        let (w, stop) = (slow.try_clone().expect("clone socket"), stop.clone());
        thread::spawn(move || trickle(w, head, stop))
    };

    // Another client is served while the trickle holds its connection.
    let normal = gw.get("/api/normal", &[]);
    assert_eq!(normal.status, 200, "{normal:?}");
    assert!(
        !trickler.is_finished(),
        "the trickle should still be running while the normal request is served"
    );

    let (bytes, closed) = read_until_closed(&mut slow);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Release);
    let sent = trickler.join().expect("trickle thread");
    assert!(closed, "the gateway must close the trickled connection");
    assert!(
        elapsed >= timeout && elapsed < timeout * 5,
        "cut off after {elapsed:?}, expected about {timeout:?}"
    );
    assert!(sent < head_len, "the whole head got through");
    let answer = parse_raw_response(&bytes);
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.json()["error"], "request_timeout");
    assert_eq!(answer.json()["success"], false);

    wait_until(
        "head_timeout to be counted",
        Duration::from_secs(10),
        || closes(&gw, "head_timeout") >= 1.0,
    );
}

/// What a hand-written upstream saw of one request.
#[derive(Debug)]
struct Seen {
    head: bool,
    body_bytes: usize,
    completed: bool,
}

/// An upstream that records one request with a `Content-Length: 100` body
/// and answers 200 only when the body is complete.
fn recording_upstream() -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
    let addr = listener.local_addr().expect("upstream address").to_string();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
            let mut data = Vec::new();
            let mut buf = [0u8; 1024];
            let mut seen = Seen {
                head: false,
                body_bytes: 0,
                completed: false,
            };
            loop {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => data.extend_from_slice(&buf[..n]),
                }
                if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    seen.head = true;
                    seen.body_bytes = data.len() - end - 4;
                    if seen.body_bytes >= 100 {
                        seen.completed = true;
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        );
                        break;
                    }
                }
            }
            let _ = conn.shutdown(Shutdown::Both);
            if seen.head && tx.send(seen).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

#[test]
fn body_trickled_after_a_complete_head_is_cut_off_at_body_read_timeout_and_never_completes_upstream(
) {
    let (upstream, seen) = recording_upstream();
    let timeout = Duration::from_secs(1);
    let gw = gateway("header_read_timeout: 30s\nbody_read_timeout: 1s", &upstream);

    let mut client = connect(gw.port);
    client
        .write_all(b"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n")
        .expect("send the head");
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = {
        let (w, stop) = (client.try_clone().expect("clone socket"), stop.clone());
        thread::spawn(move || trickle(w, vec![b'x'; 100], stop))
    };

    let (bytes, closed) = read_until_closed(&mut client);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Release);
    let sent = trickler.join().expect("trickle thread");
    assert!(closed, "the gateway must close the trickled connection");
    assert!(
        elapsed >= timeout && elapsed < timeout * 5,
        "cut off after {elapsed:?}, expected about {timeout:?}"
    );
    assert!(sent < 100, "the whole body got through");
    if !bytes.is_empty() {
        let answer = parse_raw_response(&bytes);
        assert!(
            answer.status >= 400,
            "a cut-off body must not be answered with success: {answer:?}"
        );
    }

    let upstream_saw = seen
        .recv_timeout(Duration::from_secs(20))
        .expect("the upstream connection to end");
    assert!(
        !upstream_saw.completed && upstream_saw.body_bytes < 100,
        "the upstream must never see the request complete: {upstream_saw:?}"
    );
    wait_until(
        "body_timeout to be counted",
        Duration::from_secs(10),
        || closes(&gw, "body_timeout") >= 1.0,
    );
}

#[test]
fn idle_keepalive_connection_is_closed_after_keepalive_timeout() {
    let backend = Backend::start("idle");
    let timeout = Duration::from_secs(1);
    let gw = gateway(
        "header_read_timeout: 30s\nkeepalive_timeout: 1s",
        &backend.addr(),
    );

    let mut client = connect(gw.port);
    let request = b"GET /api/kept HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    // Two requests on one connection: the guard goes back to waiting after each.
    for _ in 0..2 {
        client.write_all(request).expect("send a request");
        let answer = read_answer(&mut client);
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let idle_since = Instant::now();
    let (bytes, closed) = read_until_closed(&mut client);
    let elapsed = idle_since.elapsed();
    assert!(closed, "the idle connection must be closed");
    assert!(bytes.is_empty(), "an idle close sends nothing: {bytes:?}");
    assert!(
        elapsed >= timeout.mul_f64(0.9) && elapsed < timeout * 5,
        "closed after {elapsed:?} idle, expected about {timeout:?}"
    );
    wait_until(
        "idle_timeout to be counted",
        Duration::from_secs(10),
        || closes(&gw, "idle_timeout") >= 1.0,
    );
    assert_eq!(closes(&gw, "head_timeout"), 0.0);
}

#[test]
fn connection_above_max_connections_is_closed_at_once_and_a_freed_slot_is_reused() {
    let backend = Backend::start("cap");
    let gw = gateway(
        "header_read_timeout: 60s\nkeepalive_timeout: 60s\nmax_connections: 3",
        &backend.addr(),
    );
    let request = b"GET /api/cap HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

    let mut held: Vec<TcpStream> = (0..3).map(|_| connect(gw.port)).collect();
    wait_until("three open connections", Duration::from_secs(10), || {
        open_connections(&gw) == 3.0
    });

    let mut fourth = connect(gw.port);
    let started = Instant::now();
    let _ = fourth.write_all(request);
    let (bytes, closed) = read_until_closed(&mut fourth);
    assert!(closed, "the fourth connection must be closed");
    assert!(bytes.is_empty(), "a refused connection gets no answer");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "refused at once, not by a read deadline"
    );
    wait_until(
        "max_connections to be counted",
        Duration::from_secs(10),
        || closes(&gw, "max_connections") >= 1.0,
    );

    for conn in held.iter_mut() {
        conn.write_all(request).expect("send on a held connection");
        let answer = read_answer(conn);
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    assert_eq!(open_connections(&gw), 3.0);

    drop(held.remove(0));
    wait_until("a freed slot", Duration::from_secs(10), || {
        open_connections(&gw) == 2.0
    });
    let mut fifth = connect(gw.port);
    fifth
        .write_all(request)
        .expect("send on the new connection");
    let answer = read_answer(&mut fifth);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(open_connections(&gw), 3.0);

    drop(held);
    drop(fifth);
    wait_until("every connection closed", Duration::from_secs(10), || {
        open_connections(&gw) == 0.0
    });
}
