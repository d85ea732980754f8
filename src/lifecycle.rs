//! The end of a process's life: draining on `SIGTERM`, handing the listening
//! sockets to a new process on `SIGQUIT` (`portcullis run --upgrade`), and
//! exiting as soon as the last client connection is done.
//!
//! pingora alone stops accepting the moment `SIGTERM` arrives, then sleeps its
//! whole grace period even when nothing is in flight. A load balancer that
//! still sends traffic gets refused connections, and every stop takes the
//! full grace period. So Portcullis supplies its own signal watcher
//! ([`SignalWatch`]) and exit task ([`ExitWhenDrained`]):
//!
//! - **`SIGTERM`**: the process starts *draining*: `/readyz` answers 503
//!   `draining` and every answer carries `Connection: close`, so load
//!   balancers take the node out and keep-alive clients move away, while new
//!   connections are still accepted and served for `listeners.drain_window`.
//!   Then pingora's shutdown broadcast stops the accept loops; the process
//!   exits as soon as the last client connection has ended, at the latest
//!   `listeners.grace_period` after the broadcast (the rest are cut, and the
//!   log says how many).
//! - **`SIGQUIT`** (upgrade): once a new process (`run --upgrade`) listens on
//!   `listeners.upgrade_socket`, the old one drains the same way while pingora
//!   sends it the listening sockets (proxy and admin) and keeps accepting on
//!   them for its fixed 5 s; both processes accept from the same sockets
//!   meanwhile, so no connection is refused. Then the old process stops
//!   accepting and exits like after `SIGTERM`. Without a new process on the
//!   socket the upgrade is abandoned and the old process keeps serving.
//! - **`SIGINT`**: stop at once, also in the middle of a drain.
//!
//! Two details keep a drain free of dropped requests. pingora closes every
//! connection that waits for a request head when it shuts its proxy app down
//! (`http_cleanup`), and that includes a connection accepted in the last
//! instant before the broadcast whose request is still on its way;
//! [`DrainingApp`] holds that clean-up back until the connections accepted
//! during the drain are done (each serves one request: its answer says
//! `Connection: close`). And the exit waits for open connections, not only
//! for requests, and only once the proxy's accept loops have ended and a
//! short [`SETTLE`] has let the connections of their last turn be counted,
//! so such a connection is served before the process leaves.
//!
//! One process, one drain: the state is process-wide ([`install`]), so the
//! proxy phases reach it with one call each ([`request_started`],
//! [`request_finished`]) instead of a field threaded through the proxy.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::proxy::Session;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::Instant;

use crate::metrics::LifecycleGauges;

/// How often waits on the drain look again. Only runs while shutting down.
const POLL: Duration = Duration::from_millis(20);

/// How long the proxy's clean-up waits, once its accept loops have ended,
/// before it looks at the connection counts: a connection is counted when its
/// task first runs, and the accept loops' last turn may have spawned some.
const SETTLE: Duration = Duration::from_millis(100);

/// How long the old process waits, after `SIGQUIT`, for a new process to
/// listen on the upgrade socket before it abandons the upgrade. The new
/// process waits about 5 s for the old one, so either may be started first.
const SUCCESSOR_WAIT: Duration = Duration::from_secs(10);

/// The process's lifecycle, set once at start by [`install`].
static PROCESS: OnceLock<Arc<Lifecycle>> = OnceLock::new();

/// Drain state and the counts the exit waits on.
pub(crate) struct Lifecycle {
    draining: AtomicBool,
    /// Proxy requests between `request_filter` and `logging`.
    in_flight: AtomicUsize,
    /// Client connections open on the proxy listener.
    open_connections: AtomicUsize,
    /// Those of them accepted while draining.
    drain_connections: AtomicUsize,
    /// The proxy's accept loops have ended and pingora's clean-up has run.
    accepting_stopped: AtomicBool,
    gauges: LifecycleGauges,
}

impl Lifecycle {
    /// A lifecycle that is not draining, reporting to `gauges`.
    pub(crate) fn new(gauges: LifecycleGauges) -> Lifecycle {
        gauges.draining.set(0);
        gauges.in_flight_requests.set(0);
        Lifecycle {
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            open_connections: AtomicUsize::new(0),
            drain_connections: AtomicUsize::new(0),
            accepting_stopped: AtomicBool::new(false),
            gauges,
        }
    }

    /// `/readyz` turns 503 and every answer from now on closes its connection.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.gauges.draining.set(1);
    }

    /// The process is on its way out: answers close their connections.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Proxy requests being answered now.
    pub(crate) fn in_flight_requests(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Client connections open on the proxy listener.
    pub(crate) fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Acquire)
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.gauges.in_flight_requests.inc();
    }

    fn request_finished(&self) {
        // Saturating: a `logging` without its `request_filter` (an error
        // before it) must not wrap the count and hold the exit forever.
        let before = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if before.is_ok() {
            self.gauges.in_flight_requests.dec();
        }
    }

    /// Counts a new client connection until the returned guard drops.
    fn connection_opened(&self) -> OpenConnection<'_> {
        self.open_connections.fetch_add(1, Ordering::AcqRel);
        let during_drain = self.is_draining();
        if during_drain {
            self.drain_connections.fetch_add(1, Ordering::AcqRel);
        }
        OpenConnection {
            lifecycle: self,
            during_drain,
        }
    }
}

/// An open client connection, counted until dropped.
struct OpenConnection<'a> {
    lifecycle: &'a Lifecycle,
    during_drain: bool,
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.lifecycle
            .open_connections
            .fetch_sub(1, Ordering::AcqRel);
        if self.during_drain {
            self.lifecycle
                .drain_connections
                .fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Makes `lifecycle` the process's, for [`request_started`] and
/// [`request_finished`]. Called once, at start.
pub(crate) fn install(lifecycle: Arc<Lifecycle>) {
    if PROCESS.set(lifecycle).is_err() {
        tracing::error!("the process lifecycle was installed twice; keeping the first");
    }
}

/// A proxy request begins (first thing in `request_filter`): it is counted in
/// flight and, while draining, its answer will say `Connection: close`.
pub(crate) fn request_started(session: &mut Session) {
    if let Some(lifecycle) = PROCESS.get() {
        lifecycle.request_started();
        if lifecycle.is_draining() {
            session.set_keepalive(None);
        }
    }
}

/// An upstream answer is about to go out: a request that started before
/// the drain began still closes its connection after this answer.
pub(crate) fn answer_starting(session: &mut Session) {
    if PROCESS
        .get()
        .is_some_and(|lifecycle| lifecycle.is_draining())
    {
        session.set_keepalive(None);
    }
}

/// A proxy request is over (`logging`).
pub(crate) fn request_finished() {
    if let Some(lifecycle) = PROCESS.get() {
        lifecycle.request_finished();
    }
}

/// The proxy's [`ServerApp`] with its connections counted, and pingora's
/// clean-up held back until the connections accepted while draining are done
/// (see the module docs).
pub(crate) struct DrainingApp<A> {
    inner: Arc<A>,
    lifecycle: Arc<Lifecycle>,
}

impl<A> DrainingApp<A> {
    /// Wraps `inner` (the guarded proxy app).
    pub(crate) fn new(inner: A, lifecycle: Arc<Lifecycle>) -> DrainingApp<A> {
        DrainingApp {
            inner: Arc::new(inner),
            lifecycle,
        }
    }
}

#[async_trait]
impl<A> ServerApp for DrainingApp<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = self.lifecycle.connection_opened();
        self.inner.process_new(stream, shutdown).await
    }

    /// Runs once the accept loops have ended. pingora's clean-up drops every
    /// connection still waiting for a request head: first let those accepted
    /// during the drain (the request of which may still be on its way) finish.
    /// A silent one ends at `limits.header_read_timeout`; the exit deadline
    /// bounds it all.
    async fn cleanup(&self) {
        tokio::time::sleep(SETTLE).await;
        while self.lifecycle.drain_connections.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(POLL).await;
        }
        self.inner.cleanup().await;
        self.lifecycle
            .accepting_stopped
            .store(true, Ordering::Release);
    }
}

/// The process's signal handling, given to pingora's `Server::run`: what
/// `SIGTERM`, `SIGQUIT` and `SIGINT` do (module docs).
pub(crate) struct SignalWatch {
    /// The drain state to set.
    pub lifecycle: Arc<Lifecycle>,
    /// `listeners.drain_window`.
    pub drain_window: Duration,
    /// `listeners.upgrade_socket`, where a new process waits for the sockets.
    pub upgrade_socket: PathBuf,
}

/// The three signals, or why they cannot be listened for.
fn listen() -> io::Result<(Signal, Signal, Signal)> {
    Ok((
        signal(SignalKind::terminate())?,
        signal(SignalKind::quit())?,
        signal(SignalKind::interrupt())?,
    ))
}

#[async_trait]
impl ShutdownSignalWatch for SignalWatch {
    async fn recv(&self) -> ShutdownSignal {
        let (mut term, mut quit, mut interrupt) = match listen() {
            Ok(signals) => signals,
            Err(e) => {
                tracing::error!(
                    "cannot listen for SIGTERM, SIGQUIT and SIGINT ({e}); the gateway can only be stopped with SIGKILL"
                );
                return std::future::pending().await;
            }
        };
        loop {
            tokio::select! {
                _ = term.recv() => {
                    self.lifecycle.start_draining();
                    tracing::info!(
                        drain_window = ?self.drain_window,
                        "SIGTERM: draining (/readyz answers 503, answers close their connections); accepting stops when the drain window ends"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(self.drain_window) => {}
                        _ = interrupt.recv() => {
                            tracing::warn!("SIGINT during the drain window: stopping at once");
                            return ShutdownSignal::FastShutdown;
                        }
                    }
                    tracing::info!("drain window over: no longer accepting; exiting once the open connections are done");
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = quit.recv() => {
                    let socket = &self.upgrade_socket;
                    match wait_for_successor(socket).await {
                        Ok(()) => {
                            self.lifecycle.start_draining();
                            tracing::info!(
                                socket = %socket.display(),
                                "SIGQUIT: handing the listening sockets to the new process; draining, and exiting once the open connections are done"
                            );
                            return ShutdownSignal::GracefulUpgrade;
                        }
                        Err(why) => {
                            tracing::error!(
                                "SIGQUIT: {why}; the upgrade is abandoned and this process keeps serving (start `portcullis run --upgrade` with the same config, then send SIGQUIT again)"
                            );
                        }
                    }
                }
                _ = interrupt.recv() => {
                    tracing::info!("SIGINT: stopping at once");
                    return ShutdownSignal::FastShutdown;
                }
            }
        }
    }
}

/// Waits until a process of this user listens on `socket` (the new process
/// of an upgrade), at most [`SUCCESSOR_WAIT`]. Only then may pingora send the
/// listening sockets there: it stops serving afterwards whether they arrived
/// or not.
async fn wait_for_successor(socket: &Path) -> Result<(), String> {
    let deadline = Instant::now() + SUCCESSOR_WAIT;
    loop {
        match successor_state(socket) {
            Ok(()) => return Ok(()),
            Err(why) if Instant::now() >= deadline => {
                return Err(format!("after {SUCCESSOR_WAIT:?}, {why}"))
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// `Ok` when `socket` is a listening Unix socket owned by this process's user
/// (not a stale file, nor a socket someone else planted to receive ours).
fn successor_state(socket: &Path) -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::symlink_metadata(socket).map_err(|e| {
        format!(
            "no new process waits on the upgrade socket {} ({e})",
            socket.display()
        )
    })?;
    if !meta.file_type().is_socket() {
        return Err(format!("{} is not a Unix socket", socket.display()));
    }
    let me = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| format!("cannot tell this process's user from /proc/self ({e})"))?;
    if meta.uid() != me {
        return Err(format!(
            "the upgrade socket {} belongs to user id {}, not to this process's ({me}); the sockets are only handed to the same user",
            socket.display(),
            meta.uid()
        ));
    }
    let table = std::fs::read_to_string("/proc/net/unix")
        .map_err(|e| format!("cannot read /proc/net/unix ({e})"))?;
    if listening_unix_sockets(&table).any(|p| Path::new(p) == socket) {
        Ok(())
    } else {
        Err(format!(
            "nothing listens on the upgrade socket {} yet",
            socket.display()
        ))
    }
}

/// The paths of the listening sockets in a `/proc/net/unix` table (flag
/// `__SO_ACCEPTCON`, `00010000`).
fn listening_unix_sockets(table: &str) -> impl Iterator<Item = &str> {
    table.lines().skip(1).filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, _, _, flags, _, _, _, path, ..] if *flags == "00010000" => Some(*path),
            _ => None,
        }
    })
}

/// Exits the process once pingora has broadcast its shutdown, the proxy has
/// stopped accepting and the last client connection has ended, or when `grace_period` has passed since the
/// broadcast (cutting what is left). pingora would otherwise sleep its whole
/// grace period, however little is in flight.
pub(crate) struct ExitWhenDrained {
    /// The counts to wait on.
    pub lifecycle: Arc<Lifecycle>,
    /// `listeners.grace_period`.
    pub grace_period: Duration,
}

#[async_trait]
impl BackgroundService for ExitWhenDrained {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Listened for from the start: after `SIGTERM` or `SIGQUIT` pingora
        // no longer watches signals, and `SIGINT` must still stop a drain.
        let mut interrupt = signal(SignalKind::interrupt()).ok();
        while !*shutdown.borrow() {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = interrupted(&mut interrupt) => {
                    // Before a drain, `SignalWatch` stops the server itself.
                    if self.lifecycle.is_draining() {
                        tracing::warn!("SIGINT during the drain: exiting at once");
                        exit();
                    }
                }
            }
        }
        let started = Instant::now();
        let deadline = started + self.grace_period;
        loop {
            let open = self.lifecycle.open_connections();
            if open == 0 && self.lifecycle.accepting_stopped.load(Ordering::Acquire) {
                tracing::info!(
                    after = ?started.elapsed(),
                    "every client connection is done; exiting"
                );
                exit();
            }
            if Instant::now() >= deadline {
                let cut = self.lifecycle.in_flight_requests();
                tracing::warn!(
                    cut_requests = cut,
                    open_connections = open,
                    "grace period ({:?}) over: exiting, cutting {cut} request(s) in flight on {open} open connection(s)",
                    self.grace_period
                );
                exit();
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = interrupted(&mut interrupt) => {
                    tracing::warn!(
                        cut_requests = self.lifecycle.in_flight_requests(),
                        "SIGINT during the drain: exiting at once"
                    );
                    exit();
                }
            }
        }
    }
}

/// The next `SIGINT`; never, when it cannot be listened for.
async fn interrupted(interrupt: &mut Option<Signal>) {
    match interrupt.as_mut() {
        Some(s) => {
            if s.recv().await.is_none() {
                // The signal driver is gone (runtime shutting down).
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending().await,
    }
}

/// Leaves the process. Logs go to stderr unbuffered; nothing else needs
/// flushing (the session store's writes are committed transactions).
fn exit() -> ! {
    use std::io::Write as _;
    let _ = io::stderr().flush();
    std::process::exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn lifecycle() -> (Metrics, Lifecycle) {
        let metrics = Metrics::new();
        let gauges = metrics.lifecycle_gauges().unwrap();
        (metrics, Lifecycle::new(gauges))
    }

    #[test]
    fn draining_shows_in_the_gauge() {
        let (metrics, lifecycle) = lifecycle();
        assert!(!lifecycle.is_draining());
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(text.contains("portcullis_draining 0"), "{text}");
        lifecycle.start_draining();
        assert!(lifecycle.is_draining());
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(text.contains("portcullis_draining 1"), "{text}");
    }

    #[test]
    fn requests_in_flight_are_counted_and_never_go_below_zero() {
        let (metrics, lifecycle) = lifecycle();
        lifecycle.request_started();
        lifecycle.request_started();
        assert_eq!(lifecycle.in_flight_requests(), 2);
        lifecycle.request_finished();
        lifecycle.request_finished();
        lifecycle.request_finished();
        assert_eq!(lifecycle.in_flight_requests(), 0);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(text.contains("portcullis_in_flight_requests 0"), "{text}");
    }

    #[test]
    fn connections_accepted_while_draining_are_counted_apart_until_they_close() {
        let (_metrics, lifecycle) = lifecycle();
        let before = lifecycle.connection_opened();
        lifecycle.start_draining();
        let during = lifecycle.connection_opened();
        assert_eq!(lifecycle.open_connections(), 2);
        assert_eq!(lifecycle.drain_connections.load(Ordering::Acquire), 1);
        drop(during);
        assert_eq!(lifecycle.drain_connections.load(Ordering::Acquire), 0);
        drop(before);
        assert_eq!(lifecycle.open_connections(), 0);
    }

    #[test]
    fn only_listening_sockets_are_read_from_proc_net_unix() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 23456 /tmp/portcullis-upgrade-9090.sock
0000000000000000: 00000002 00000000 00000000 0001 03  1234 /tmp/connected.sock
0000000000000000: 00000002 00000000 00010000 0001 01   999
0000000000000000: 00000003 00000000 00000000 0001 03 55555
";
        let found: Vec<&str> = listening_unix_sockets(table).collect();
        assert_eq!(found, ["/tmp/portcullis-upgrade-9090.sock"]);
    }

    #[test]
    fn a_missing_upgrade_socket_is_no_successor() {
        let dir = tempfile::tempdir().unwrap();
        let why = successor_state(&dir.path().join("none.sock")).unwrap_err();
        assert!(why.contains("no new process waits"), "{why}");
    }

    #[test]
    fn a_socket_file_nobody_listens_on_is_no_successor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stale.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(successor_state(&path), Ok(()));
        drop(listener); // the file stays, like after a crashed new process
        let why = successor_state(&path).unwrap_err();
        assert!(why.contains("nothing listens"), "{why}");
    }
}
