//! A minimal HTTP/1.1 upstream on loopback that records every request it
//! receives (request line, headers and body, as they arrived) and answers
//! through a function of the test's choosing — by default 200
//! `{"target":…,"host":…}` on a kept-alive connection. Tests use it to see
//! exactly what the gateway forwarded, and to misbehave on purpose.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the answer function did with the connection.
pub enum Then {
    /// Read the next request on this connection.
    KeepAlive,
    /// Stop serving this connection (it is closed when dropped).
    Close,
}

/// Writes the answer to one recorded request.
pub type Answer = fn(&Seen, &mut TcpStream) -> Then;

/// 200 `{"target":…,"host":…}` with `Content-Length`, kept alive.
pub fn echo_target(seen: &Seen, out: &mut TcpStream) -> Then {
    let answer =
        serde_json::json!({"target": seen.target, "host": seen.header("host")}).to_string();
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
        answer.len()
    );
    match out.write_all(reply.as_bytes()) {
        Ok(()) => Then::KeepAlive,
        Err(_) => Then::Close,
    }
}

/// The upstream: its port and what it has seen.
pub struct RecordingUpstream {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RecordingUpstream {
    /// Answers every request with [`echo_target`].
    pub fn start() -> RecordingUpstream {
        RecordingUpstream::start_with(echo_target)
    }

    /// Answers every request with `answer`, after recording it.
    pub fn start_with(answer: Answer) -> RecordingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let port = listener.local_addr().expect("addr").port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = record.clone();
                std::thread::spawn(move || serve(stream, record, answer));
            }
        });
        RecordingUpstream { port, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn targets(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.target).collect()
    }

    /// How many requests for exactly `target` arrived.
    pub fn count(&self, target: &str) -> usize {
        self.seen().iter().filter(|s| s.target == target).count()
    }
}

fn serve(stream: TcpStream, record: Arc<Mutex<Vec<Seen>>>, answer: Answer) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = stream;
    while let Some(seen) = read_request(&mut reader) {
        record.lock().expect("lock").push(seen.clone());
        if let Then::Close = answer(&seen, &mut writer) {
            return;
        }
    }
}

/// One request with its `Content-Length` or chunked body; `None` at the end
/// of the stream or on a request that cannot be read.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Seen> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
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
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut seen = Seen {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if seen
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        seen.body = read_chunked(reader)?;
    } else {
        let length: usize = seen
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        seen.body = vec![0; length];
        reader.read_exact(&mut seen.body).ok()?;
    }
    Some(seen)
}

/// A chunked body; `None` when it is broken or cut off.
fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size).ok()? == 0 {
            return None;
        }
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        let mut chunk = vec![0; n + 2];
        reader.read_exact(&mut chunk).ok()?;
        if n == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..n]);
    }
}
