//! Slow and broken clients: whole-phase read deadlines on every client
//! connection, and a cap on how many may be open at once.
//!
//! pingora 0.9 only times out single reads (`read_request_buf` and
//! `read_body` in `pingora-core/src/protocols/http/v1/server.rs`), so a
//! client that trickles one byte per second resets them forever and holds a
//! connection and a task. Worse, after the first request of an HTTP/1.1
//! connection pingora's keep-alive is unbounded (`respect_keepalive` sets it
//! to "infinite" when the client sends no `Connection` header).
//!
//! [`GuardedApp`] wraps the proxy app: it refuses connections above
//! `limits.max_connections` and wraps every accepted stream in a
//! [`GuardedStream`]. That wrapper enforces one deadline per phase of the
//! connection — the whole request head, the whole body, the idle time
//! between two requests — inside `poll_read`, where no trickle can reset it.
//! The proxy phases tell it where the connection is with three cheap calls:
//! [`head_read`], [`body_read`] and [`request_done`].
//!
//! Wrapping pingora's `Stream` is safe because no pingora code on the
//! downstream side downcasts a stream to its concrete l4 type; the wrapper
//! forwards every `IO` supertrait method, including the defaulted ones
//! (socket digest for the client address, ALPN/SSL for TLS).
//!
//! On the TLS listener the handshake runs here too ([`crate::tls::TlsEdge`]),
//! once the connection has its slot and within `header_read_timeout`; the
//! head clock starts after it.
//!
//! HTTP/2 connections (ALPN `h2`, or h2c with `listeners.h2c`) must send
//! the client preface `PRI * HTTP/2.0…` within `header_read_timeout` like a
//! request head; once it is complete the connection is counted but no
//! longer given the HTTP/1 deadlines: its requests are multiplexed, the
//! hooks cannot reach the stream, and bytes between requests are frames
//! (pings, settings), not a request head. pingora closes an idle HTTP/2
//! connection after `keepalive_timeout` instead
//! (`HttpServerOptions::h2_idle_timeout`, see `server`). pingora peeks for
//! the h2c preface; the peek reads through the guard, so a client that
//! sends nothing still meets the head deadline.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::generation::ClientLimits;
use crate::metrics::Metrics;
use crate::tls::TlsEdge;

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long the `408` answer to a trickled head may take to leave before the
/// connection is dropped without it (a client that does not read its socket
/// must not hold the connection either).
const TIMEOUT_REPLY_GRACE: Duration = Duration::from_secs(2);

/// Why the gateway closed a client connection (the `reason` label of
/// `client_closes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The request head was not complete within `header_read_timeout`.
    HeadTimeout,
    /// The request body was not complete within `body_read_timeout`.
    BodyTimeout,
    /// No new request started within `keepalive_timeout`.
    IdleTimeout,
    /// `max_connections` were already open at accept.
    MaxConnections,
}

impl CloseReason {
    /// The metric label, one of [`crate::metrics::CLIENT_CLOSE_REASONS`].
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CloseReason::HeadTimeout => "head_timeout",
            CloseReason::BodyTimeout => "body_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::MaxConnections => "max_connections",
        }
    }
}

/// The payload of the `io::Error` (kind `TimedOut`) a guarded read fails with
/// once a deadline has passed. pingora wraps it (see [`read_deadline`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("client read deadline passed ({})", .reason.as_str())]
pub(crate) struct ReadDeadline {
    /// Which deadline passed.
    pub reason: CloseReason,
}

/// Which guard deadline, if any, caused a pingora error.
///
/// A body timeout reaches `ProxyHttp::fail_to_proxy` as
/// `ErrorType::ReadError` with `ErrorSource::Downstream` (context "when
/// reading body", plus pingora's "Peer: …" context when proxying); its root
/// cause is the `io::Error` carrying [`ReadDeadline`]. When the gateway reads
/// the body itself (`session.read_request_body()`), the error it gets has the
/// same shape.
pub(crate) fn read_deadline(e: &pingora::Error) -> Option<CloseReason> {
    e.root_cause()
        .downcast_ref::<io::Error>()
        .filter(|io| io.kind() == io::ErrorKind::TimedOut)
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<ReadDeadline>())
        .map(|d| d.reason)
}

/// Where a connection is, and the deadline its reads must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head. `started`: at least one byte of it arrived,
    /// so a timeout is answered with 408.
    Head { deadline: Instant, started: bool },
    /// Between two requests; the first byte starts a `Head`.
    Idle { deadline: Instant },
    /// Reading the request body.
    Body { deadline: Instant },
    /// The request is read; the upstream may take its time. pingora keeps a
    /// read pending meanwhile to notice a client going away: never fail it.
    Responding,
    /// A deadline passed; every later read fails the same way.
    Expired(CloseReason),
    /// Not guarded: an HTTP/2 connection (ALPN `h2` or the h2c preface)
    /// multiplexes requests, so per-request phases do not apply and the
    /// hooks cannot find it.
    Unguarded,
}

impl Phase {
    fn deadline(self) -> Option<Instant> {
        match self {
            Phase::Head { deadline, .. } | Phase::Idle { deadline } | Phase::Body { deadline } => {
                Some(deadline)
            }
            Phase::Responding | Phase::Expired(_) | Phase::Unguarded => None,
        }
    }

    fn reason(self) -> Option<CloseReason> {
        match self {
            Phase::Head { .. } => Some(CloseReason::HeadTimeout),
            Phase::Idle { .. } => Some(CloseReason::IdleTimeout),
            Phase::Body { .. } => Some(CloseReason::BodyTimeout),
            Phase::Expired(reason) => Some(reason),
            Phase::Responding | Phase::Unguarded => None,
        }
    }
}

/// The limits and close counters every connection of the proxy listener shares.
pub(crate) struct ClientGuard {
    limits: ClientLimits,
    /// `listeners.h2c`: a plain connection may open with the HTTP/2 preface.
    h2c: bool,
    head_timeouts: IntCounter,
    body_timeouts: IntCounter,
    idle_timeouts: IntCounter,
    refusals: IntCounter,
    open_gauge: IntGauge,
}

impl ClientGuard {
    /// Takes the limits and the `client_closes_total` / `client_connections` metrics.
    pub(crate) fn new(limits: ClientLimits, metrics: &Metrics) -> ClientGuard {
        let closes =
            |reason: CloseReason| metrics.client_closes.with_label_values(&[reason.as_str()]);
        ClientGuard {
            limits,
            h2c: false,
            head_timeouts: closes(CloseReason::HeadTimeout),
            body_timeouts: closes(CloseReason::BodyTimeout),
            idle_timeouts: closes(CloseReason::IdleTimeout),
            refusals: closes(CloseReason::MaxConnections),
            open_gauge: metrics.client_connections.clone(),
        }
    }

    /// Plain connections may speak HTTP/2 with prior knowledge (`listeners.h2c`).
    pub(crate) fn with_h2c(mut self, h2c: bool) -> ClientGuard {
        self.h2c = h2c;
        self
    }

    fn count(&self, reason: CloseReason) {
        match reason {
            CloseReason::HeadTimeout => &self.head_timeouts,
            CloseReason::BodyTimeout => &self.body_timeouts,
            CloseReason::IdleTimeout => &self.idle_timeouts,
            CloseReason::MaxConnections => &self.refusals,
        }
        .inc();
    }
}

/// The `408` written to a client whose request head stopped arriving. No part
/// of a response exists yet for that request, so the socket is ours to write.
fn head_timeout_reply() -> Vec<u8> {
    let timeout = crate::error::GatewayError::HeadTimeout;
    let body = serde_json::json!({
        "success": false,
        "message": timeout.message(),
        "error": timeout.code(),
    })
    .to_string();
    format!(
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The `408` on its way out, and when to give up on it.
struct PendingReply {
    bytes: Vec<u8>,
    sent: usize,
    give_up: Instant,
}

/// A client connection with whole-phase read deadlines (see the module docs).
pub(crate) struct GuardedStream {
    inner: Stream,
    /// Written by the hooks through `&self` (they reach the stream through
    /// `&Session`), read by `poll_read`.
    phase: Mutex<Phase>,
    guard: Arc<ClientGuard>,
    timer: Pin<Box<Sleep>>,
    /// The deadline `timer` is set to.
    armed: Option<Instant>,
    reply: Option<PendingReply>,
    /// Bytes a peek read ahead, served again by the next reads.
    replay: Vec<u8>,
    /// While the connection may still turn out to be HTTP/2: how many bytes
    /// of the client preface have arrived so far.
    preface: Option<usize>,
    /// ALPN chose `h2`: a timed-out preface gets no HTTP/1 408.
    alpn_h2: bool,
}

impl GuardedStream {
    /// Wraps a freshly accepted stream: its head (or HTTP/2 preface) must
    /// arrive within `header_read_timeout` of now.
    pub(crate) fn new(inner: Stream, guard: Arc<ClientGuard>) -> GuardedStream {
        let now = Instant::now();
        let alpn_h2 = matches!(inner.selected_alpn_proto(), Some(ALPN::H2));
        let tls = inner.get_ssl_digest().is_some();
        // pingora speaks HTTP/2 on ALPN h2, and on a plain connection that
        // starts with the preface when h2c is on; HTTP/1 otherwise.
        let preface = (alpn_h2 || (guard.h2c && !tls)).then_some(0);
        let phase = Phase::Head {
            deadline: now + guard.limits.header_read_timeout,
            started: false,
        };
        GuardedStream {
            inner,
            phase: Mutex::new(phase),
            guard,
            timer: Box::pin(tokio::time::sleep_until(now)),
            armed: None,
            reply: None,
            replay: Vec::new(),
            preface,
            alpn_h2,
        }
    }

    /// Follows the HTTP/2 client preface through the first bytes read: once
    /// complete, the connection is HTTP/2 and leaves the HTTP/1 deadlines;
    /// any other byte makes it HTTP/1 for good.
    fn watch_preface(&mut self, read: &[u8]) {
        let Some(matched) = self.preface else {
            return;
        };
        let want = &H2_PREFACE[matched..];
        let n = want.len().min(read.len());
        if read[..n] != want[..n] {
            self.preface = None;
        } else if matched + n == H2_PREFACE.len() {
            self.preface = None;
            self.unguard();
        } else {
            self.preface = Some(matched + n);
        }
    }

    /// The connection turned out to speak HTTP/2: no more HTTP/1 deadlines.
    fn unguard(&self) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(*phase, Phase::Expired(_)) {
            *phase = Phase::Unguarded;
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves to `next` unless a deadline already passed or the stream is unguarded.
    fn enter(&self, next: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(*phase, Phase::Expired(_) | Phase::Unguarded) {
            *phase = next(*phase);
        }
    }

    fn head_read(&self, has_body: bool) {
        let limits = &self.guard.limits;
        self.enter(|_| {
            if has_body {
                Phase::Body {
                    deadline: Instant::now() + limits.body_read_timeout,
                }
            } else {
                Phase::Responding
            }
        });
    }

    fn body_read(&self) {
        self.enter(|_| Phase::Responding);
    }

    fn request_done(&self, body_done: bool) {
        let limits = &self.guard.limits;
        self.enter(|phase| match phase {
            // pingora drains an unread body before reusing the connection
            // (it closes instead when the answer went out first, the usual
            // case): that drain still runs on the body's clock.
            Phase::Body { .. } if !body_done => phase,
            _ if !body_done => Phase::Body {
                deadline: Instant::now() + limits.body_read_timeout,
            },
            _ => Phase::Idle {
                deadline: Instant::now() + limits.keepalive_timeout,
            },
        });
    }

    /// Bytes arrived: a new head starts its own clock.
    fn bytes_arrived(&self) {
        let header_read_timeout = self.guard.limits.header_read_timeout;
        self.enter(|phase| match phase {
            Phase::Idle { .. } => Phase::Head {
                deadline: Instant::now() + header_read_timeout,
                started: true,
            },
            Phase::Head { deadline, .. } => Phase::Head {
                deadline,
                started: true,
            },
            other => other,
        });
    }

    /// Polls the timer set to `deadline`.
    fn poll_deadline(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        if self.armed != Some(deadline) {
            self.timer.as_mut().reset(deadline);
            self.armed = Some(deadline);
        }
        self.timer.as_mut().poll(cx)
    }

    /// The deadline of `phase` passed: count it once and close the phase.
    fn expire(&mut self, cx: &mut Context<'_>, phase: Phase) -> Poll<io::Result<()>> {
        let Some(reason) = phase.reason() else {
            return Poll::Ready(Ok(()));
        };
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = Phase::Expired(reason);
        self.guard.count(reason);
        tracing::debug!(reason = reason.as_str(), "closing a slow client connection");
        // An HTTP/2 client (ALPN h2) would not read an HTTP/1 answer.
        if let (Phase::Head { started: true, .. }, false) = (phase, self.alpn_h2) {
            self.reply = Some(PendingReply {
                bytes: head_timeout_reply(),
                sent: 0,
                give_up: Instant::now() + TIMEOUT_REPLY_GRACE,
            });
            return self.poll_reply(cx);
        }
        Poll::Ready(expired_read(reason))
    }

    /// Writes and flushes the 408, then fails the read. Gives up after
    /// [`TIMEOUT_REPLY_GRACE`] or on any write error.
    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(reply) = self.reply.as_mut() else {
            return Poll::Ready(expired_read(CloseReason::HeadTimeout));
        };
        let give_up = reply.give_up;
        let pending = loop {
            let result = if reply.sent < reply.bytes.len() {
                match Pin::new(&mut self.inner).poll_write(cx, &reply.bytes[reply.sent..]) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        reply.sent += n;
                        continue;
                    }
                    Poll::Ready(_) => false,
                    Poll::Pending => true,
                }
            } else {
                Pin::new(&mut self.inner).poll_flush(cx).is_pending()
            };
            break result;
        };
        if pending && self.poll_deadline(cx, give_up).is_pending() {
            return Poll::Pending;
        }
        self.reply = None;
        Poll::Ready(expired_read(CloseReason::HeadTimeout))
    }
}

/// What a read returns after `reason`'s deadline passed: end of stream for an
/// idle keep-alive connection (pingora then closes quietly), else `TimedOut`.
fn expired_read(reason: CloseReason) -> io::Result<()> {
    match reason {
        CloseReason::IdleTimeout => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            ReadDeadline { reason },
        )),
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.reply.is_some() {
            return this.poll_reply(cx);
        }
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.drain(..n);
            return Poll::Ready(Ok(()));
        }
        let phase = this.phase();
        if let Phase::Expired(reason) = phase {
            return Poll::Ready(expired_read(reason));
        }
        if let Some(deadline) = phase.deadline() {
            if this.poll_deadline(cx, deadline).is_ready() {
                return this.expire(cx, phase);
            }
        }
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut this.inner).poll_read(cx, buf));
        if result.is_ok() && buf.filled().len() > before {
            this.bytes_arrived();
            this.watch_preface(&buf.filled()[before..]);
        }
        Poll::Ready(result)
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, socket_digest: SocketDigest) {
        self.inner.set_socket_digest(socket_digest)
    }
}

/// pingora peeks for the h2c preface when `listeners.h2c` is on. The peek
/// reads through the guard (the inner stream's own peek would wait without
/// any deadline, and the reads follow the preface) and keeps the bytes for
/// the reads that follow.
#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        use tokio::io::AsyncReadExt;
        let mut read = 0;
        while read < buf.len() {
            match self.read(&mut buf[read..]).await {
                Ok(0) => {
                    self.replay = buf[..read].to_vec();
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Ok(n) => read += n,
                Err(e) => {
                    self.replay = buf[..read].to_vec();
                    return Err(e);
                }
            }
        }
        self.replay = buf.to_vec();
        Ok(true)
    }
}

impl fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("phase", &self.phase())
            .finish()
    }
}

/// The guarded stream under a proxy session, if there is one (HTTP/1 only).
fn guarded(session: &Session) -> Option<&GuardedStream> {
    let stream = session.as_downstream().stream()?;
    (**stream).as_any().downcast_ref::<GuardedStream>()
}

/// The request head is parsed: call first thing in `request_filter`.
/// `has_body`: the request has a body to read (`!session.is_body_empty()`);
/// it must then be complete within `body_read_timeout`, else the connection
/// has no read deadline until [`request_done`]. A no-op without a guard.
pub(crate) fn head_read(session: &Session, has_body: bool) {
    if let Some(stream) = guarded(session) {
        stream.head_read(has_body);
    }
}

/// The request body is complete (`request_body_filter` with
/// `end_of_stream`): the upstream may now take its time. A no-op without a
/// guard, and harmless to call more than once.
pub(crate) fn body_read(session: &Session) {
    if let Some(stream) = guarded(session) {
        stream.body_read();
    }
}

/// The request is over (`logging`): the connection waits for the next head
/// at most `keepalive_timeout`. Takes `&mut` to ask pingora whether the body
/// was read to its end; if not, the body deadline keeps running for the drain
/// pingora may do before reuse. A no-op without a guard.
pub(crate) fn request_done(session: &mut Session) {
    if guarded(session).is_none() {
        return;
    }
    let body_done = session.as_downstream_mut().is_body_done();
    if let Some(stream) = guarded(session) {
        stream.request_done(body_done);
    }
}

/// A taken connection slot; gives it back when dropped, however the
/// connection ends.
struct Slot<'a> {
    open: &'a AtomicUsize,
    gauge: &'a IntGauge,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

/// A [`ServerApp`] that caps open client connections, shakes hands on
/// those of the TLS listener, and guards each one with a [`GuardedStream`];
/// everything else is `A`'s.
pub(crate) struct GuardedApp<A> {
    inner: Arc<A>,
    guard: Arc<ClientGuard>,
    open: AtomicUsize,
    /// The TLS listener, when there is one: its connections are TLS.
    tls: Option<Arc<TlsEdge>>,
}

impl<A> GuardedApp<A> {
    /// Guards `inner` (e.g. `Arc::new(pingora::proxy::http_proxy(&conf, gateway))`).
    pub(crate) fn new(inner: Arc<A>, guard: Arc<ClientGuard>) -> GuardedApp<A> {
        GuardedApp {
            inner,
            guard,
            open: AtomicUsize::new(0),
            tls: None,
        }
    }

    /// Connections accepted on `edge`'s listener shake hands first.
    pub(crate) fn with_tls(mut self, edge: Arc<TlsEdge>) -> GuardedApp<A> {
        self.tls = Some(edge);
        self
    }

    /// Client connections open right now.
    #[cfg(test)]
    pub(crate) fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// A slot for one more connection, or `None` at `max_connections`.
    fn take_slot(&self) -> Option<Slot<'_>> {
        let max = self.guard.limits.max_connections;
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        self.guard.open_gauge.inc();
        Some(Slot {
            open: &self.open,
            gauge: &self.guard.open_gauge,
        })
    }
}

#[async_trait]
impl<A> ServerApp for GuardedApp<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(_slot) = self.take_slot() else {
            self.guard.count(CloseReason::MaxConnections);
            tracing::debug!(
                max_connections = self.guard.limits.max_connections,
                "refusing a client connection"
            );
            // Dropping the stream closes the socket.
            return None;
        };
        let stream: Stream = if (*stream).as_any().is::<GuardedStream>() {
            stream
        } else {
            let stream = match &self.tls {
                Some(edge) if edge.serves(&stream) => {
                    edge.accept(stream, self.guard.limits.header_read_timeout)
                        .await?
                }
                _ => stream,
            };
            Box::new(GuardedStream::new(stream, self.guard.clone()))
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    fn limits(ms: u64) -> ClientLimits {
        ClientLimits {
            header_read_timeout: Duration::from_millis(ms),
            body_read_timeout: Duration::from_millis(ms),
            keepalive_timeout: Duration::from_millis(ms),
            max_connections: 2,
        }
    }

    fn guarded_pair(ms: u64) -> (Arc<Metrics>, GuardedStream, DuplexStream) {
        let metrics = Arc::new(Metrics::new());
        let guard = Arc::new(ClientGuard::new(limits(ms), &metrics));
        let (client, server) = tokio::io::duplex(4096);
        (metrics, GuardedStream::new(Box::new(server), guard), client)
    }

    /// A guarded stream on a plain listener with `listeners.h2c` on.
    fn h2c_pair(ms: u64) -> (Arc<Metrics>, GuardedStream, DuplexStream) {
        let metrics = Arc::new(Metrics::new());
        let guard = Arc::new(ClientGuard::new(limits(ms), &metrics).with_h2c(true));
        let (client, server) = tokio::io::duplex(4096);
        (metrics, GuardedStream::new(Box::new(server), guard), client)
    }

    #[tokio::test]
    async fn the_http2_preface_ends_the_http1_deadlines() {
        let (metrics, mut stream, mut client) = h2c_pair(100);
        client.write_all(&H2_PREFACE[..10]).await.unwrap();
        let mut first = [0u8; 10];
        stream.read_exact(&mut first).await.unwrap();
        assert!(matches!(stream.phase(), Phase::Head { .. }));
        client.write_all(&H2_PREFACE[10..]).await.unwrap();
        let mut rest = [0u8; 14];
        stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(stream.phase(), Phase::Unguarded);
        // Past every deadline, a read simply waits for the next frame.
        let mut one = [0u8; 1];
        let wait = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut one));
        assert!(wait.await.is_err(), "the read must still be pending");
        assert_eq!(closes(&metrics, CloseReason::HeadTimeout), 0);
    }

    #[tokio::test]
    async fn an_http1_head_on_an_h2c_listener_keeps_its_deadlines() {
        let (metrics, mut stream, mut client) = h2c_pair(150);
        client.write_all(b"PUT / HT").await.unwrap();
        let err = read_to_end(&mut stream).await.unwrap_err();
        assert_eq!(deadline_reason(&err), Some(CloseReason::HeadTimeout));
        assert_eq!(closes(&metrics, CloseReason::HeadTimeout), 1);
    }

    #[tokio::test]
    async fn a_peek_meets_the_head_deadline_and_replays_what_it_read() {
        let (_metrics, mut silent, _client) = h2c_pair(100);
        let mut buf = [0u8; 24];
        let err = silent.try_peek(&mut buf).await.unwrap_err();
        assert_eq!(deadline_reason(&err), Some(CloseReason::HeadTimeout));

        let (_metrics, mut stream, mut client) = h2c_pair(60_000);
        client.write_all(H2_PREFACE).await.unwrap();
        client.write_all(b"frames").await.unwrap();
        let mut peeked = [0u8; 24];
        assert!(stream.try_peek(&mut peeked).await.unwrap());
        assert_eq!(&peeked[..], H2_PREFACE);
        assert_eq!(stream.phase(), Phase::Unguarded);
        let mut again = [0u8; 30];
        stream.read_exact(&mut again).await.unwrap();
        assert_eq!(&again[..24], H2_PREFACE);
        assert_eq!(&again[24..], b"frames");
    }

    fn closes(metrics: &Metrics, reason: CloseReason) -> u64 {
        metrics
            .client_closes
            .with_label_values(&[reason.as_str()])
            .get()
    }

    /// Reads until an error or end of stream (bounded so a bug cannot hang the test).
    async fn read_to_end(stream: &mut GuardedStream) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 64];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => return Ok(()),
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        outcome.map_err(|_| io::Error::other("test read never ended"))??;
        Ok(out)
    }

    fn deadline_reason(e: &io::Error) -> Option<CloseReason> {
        e.get_ref()
            .and_then(|i| i.downcast_ref::<ReadDeadline>())
            .map(|d| d.reason)
    }

    #[test]
    fn timeout_reply_declares_its_body_length() {
        let reply = String::from_utf8(head_timeout_reply()).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 408 Request Timeout\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.contains("Connection: close"));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "request_timeout");
        assert_eq!(json["success"], false);
    }

    #[tokio::test]
    async fn started_head_past_its_deadline_gets_408_and_a_timed_out_read() {
        let (metrics, mut stream, mut client) = guarded_pair(150);
        client.write_all(b"GET / HT").await.unwrap();
        let err = read_to_end(&mut stream).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(deadline_reason(&err), Some(CloseReason::HeadTimeout));
        let mut answer = vec![0u8; head_timeout_reply().len()];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(answer, head_timeout_reply());
        assert_eq!(closes(&metrics, CloseReason::HeadTimeout), 1);
        // Later reads fail the same way and are not counted again.
        let again = stream.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(deadline_reason(&again), Some(CloseReason::HeadTimeout));
        assert_eq!(closes(&metrics, CloseReason::HeadTimeout), 1);
    }

    #[tokio::test]
    async fn silent_connection_fails_at_the_head_deadline_without_an_answer() {
        let (metrics, mut stream, mut client) = guarded_pair(100);
        let err = read_to_end(&mut stream).await.unwrap_err();
        assert_eq!(deadline_reason(&err), Some(CloseReason::HeadTimeout));
        drop(stream);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "no 408 before any byte arrived");
        assert_eq!(closes(&metrics, CloseReason::HeadTimeout), 1);
    }

    #[tokio::test]
    async fn idle_keepalive_connection_reads_end_of_stream() {
        let (metrics, mut stream, _client) = guarded_pair(100);
        stream.request_done(true);
        let read = read_to_end(&mut stream).await.unwrap();
        assert!(read.is_empty());
        assert_eq!(closes(&metrics, CloseReason::IdleTimeout), 1);
        assert_eq!(closes(&metrics, CloseReason::HeadTimeout), 0);
    }

    #[tokio::test]
    async fn first_byte_after_idle_starts_the_head_clock() {
        let (metrics, mut stream, mut client) = guarded_pair(150);
        stream.request_done(true);
        client.write_all(b"G").await.unwrap();
        let mut one = [0u8; 1];
        stream.read_exact(&mut one).await.unwrap();
        assert!(matches!(stream.phase(), Phase::Head { started: true, .. }));
        let err = read_to_end(&mut stream).await.unwrap_err();
        assert_eq!(deadline_reason(&err), Some(CloseReason::HeadTimeout));
        assert_eq!(closes(&metrics, CloseReason::IdleTimeout), 0);
    }

    #[tokio::test]
    async fn trickled_body_fails_at_the_body_deadline_without_an_answer() {
        let (metrics, mut stream, mut client) = guarded_pair(150);
        stream.head_read(true);
        client.write_all(b"ab").await.unwrap();
        let err = read_to_end(&mut stream).await.unwrap_err();
        assert_eq!(deadline_reason(&err), Some(CloseReason::BodyTimeout));
        drop(stream);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        assert_eq!(closes(&metrics, CloseReason::BodyTimeout), 1);
    }

    #[tokio::test]
    async fn responding_reads_have_no_deadline() {
        let (metrics, mut stream, _client) = guarded_pair(50);
        stream.head_read(true);
        stream.body_read();
        let mut one = [0u8; 1];
        let wait = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut one));
        assert!(wait.await.is_err(), "the read must still be pending");
        stream.head_read(false);
        let mut one = [0u8; 1];
        let wait = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut one));
        assert!(wait.await.is_err(), "the read must still be pending");
        assert_eq!(closes(&metrics, CloseReason::BodyTimeout), 0);
    }

    #[tokio::test]
    async fn unread_body_at_request_end_keeps_the_body_clock() {
        let (_metrics, stream, _client) = guarded_pair(60_000);
        stream.head_read(true);
        let before = stream.phase();
        stream.request_done(false);
        assert_eq!(stream.phase(), before);
        stream.request_done(true);
        assert!(matches!(stream.phase(), Phase::Idle { .. }));
    }

    #[tokio::test]
    async fn hooks_find_the_stream_through_a_pingora_session() {
        let (_metrics, stream, mut client) = guarded_pair(60_000);
        let mut session = Session::new_h1(Box::new(stream));
        client
            .write_all(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n")
            .await
            .unwrap();
        assert!(session.read_request().await.unwrap());
        let has_body = !session.is_body_empty();
        head_read(&session, has_body);
        assert!(matches!(
            guarded(&session).unwrap().phase(),
            Phase::Body { .. }
        ));
        client.write_all(b"hi").await.unwrap();
        while session.read_request_body().await.unwrap().is_some() {}
        body_read(&session);
        assert_eq!(guarded(&session).unwrap().phase(), Phase::Responding);
        request_done(&mut session);
        assert!(matches!(
            guarded(&session).unwrap().phase(),
            Phase::Idle { .. }
        ));
    }

    #[tokio::test]
    async fn hooks_are_no_ops_on_an_unguarded_session() {
        let (_client, server) = tokio::io::duplex(64);
        let mut session = Session::new_h1(Box::new(server));
        head_read(&session, true);
        body_read(&session);
        request_done(&mut session);
    }

    #[test]
    fn read_deadline_is_found_under_pingora_context() {
        use pingora::{Error, ErrorType, OrErr};
        let io = io::Error::new(
            io::ErrorKind::TimedOut,
            ReadDeadline {
                reason: CloseReason::BodyTimeout,
            },
        );
        let e = Err::<(), _>(io)
            .or_err(ErrorType::ReadError, "when reading body")
            .unwrap_err()
            .into_down()
            .more_context("Peer: x");
        assert_eq!(read_deadline(&e), Some(CloseReason::BodyTimeout));
        assert_eq!(*e.etype(), ErrorType::ReadError);
        let other = Error::explain(ErrorType::ReadError, "when reading body");
        assert_eq!(read_deadline(&other), None);
    }

    #[test]
    fn slots_stop_at_max_connections_and_come_back_when_dropped() {
        let metrics = Metrics::new();
        let app = GuardedApp::new(
            Arc::new(()),
            Arc::new(ClientGuard::new(limits(10), &metrics)),
        );
        let a = app.take_slot().unwrap();
        let b = app.take_slot().unwrap();
        assert!(app.take_slot().is_none());
        assert_eq!(metrics.client_connections.get(), 2);
        drop(a);
        assert_eq!(app.open_connections(), 1);
        let c = app.take_slot().unwrap();
        drop((b, c));
        assert_eq!(app.open_connections(), 0);
        assert_eq!(metrics.client_connections.get(), 0);
    }
}
