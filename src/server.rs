//! Process wiring: the pingora server with the proxy and admin services, the
//! supervisor that reloads the config on SIGHUP and runs health checks, and
//! the [`crate::lifecycle`] pieces that drain, upgrade and exit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::config;
use crate::conn_guard::{ClientGuard, GuardedApp};
use crate::generation::Generation;
use crate::lifecycle::{DrainingApp, ExitWhenDrained, Lifecycle, SignalWatch};
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::session::SessionService;
use crate::tls::TlsEdge;
use crate::upstream::spawn_health_checks;

/// Socket buffers of each client connection. pingora's default puts a 64 KiB
/// read buffer in front of every connection (meant for TLS records); plain
/// HTTP/1 reads its headers into pingora's own parse buffer anyway, so that
/// buffer only costs a copy and 64 MiB of RSS per 1,000 open connections.
/// The small write buffer lets a short answer's header and body leave in one
/// send.
fn client_connection_buffers() -> L4BufferSettings {
    L4BufferSettings::new(0, 4096)
}

/// Reloads on SIGHUP and owns the health-check tasks of the live generation.
pub(crate) struct Supervisor {
    pub config_path: PathBuf,
    pub state: Arc<ArcSwap<Generation>>,
    pub metrics: Arc<Metrics>,
    pub sessions: Option<Arc<SessionService>>,
    /// The TLS listener, whose certificates and client CA a reload swaps.
    pub tls: Option<Arc<TlsEdge>>,
}

impl Supervisor {
    /// Re-reads the config; on success swaps it in, else keeps the old one.
    pub(crate) fn reload(&self) -> Result<(), config::ConfigError> {
        let current = self.state.load_full();
        match config::load(&self.config_path) {
            Ok(next) => {
                if next.listeners != current.listeners {
                    tracing::warn!(
                        "listener settings changed in {}; they apply after a restart or an upgrade (`run --upgrade`; still serving on {})",
                        self.config_path.display(),
                        current.listeners.proxy
                    );
                }
                if next.log != current.log {
                    tracing::warn!("log settings changed; they apply after a restart");
                }
                match (&self.sessions, &next.sessions) {
                    (Some(service), Some(s)) if !service.serves(&s.store_url) => tracing::warn!(
                        "sessions.store changed; the gateway keeps using the store it started with until a restart"
                    ),
                    (None, Some(_)) => tracing::warn!(
                        "a `sessions` section was added; the session routes answer 503 until a restart opens the store"
                    ),
                    _ => {}
                }
                for w in &next.warnings {
                    tracing::warn!("{w}");
                }
                if let Some(edge) = &self.tls {
                    match &next.tls {
                        Some(material) => {
                            edge.install(material.clone());
                            let files: Vec<&str> =
                                material.certificates.iter().map(|c| c.label.as_str()).collect();
                            tracing::info!(certificates = ?files, "TLS certificates reloaded; new handshakes use them");
                        }
                        None => tracing::warn!(
                            "listeners.tls was removed; the TLS listener on {} keeps its certificates until a restart",
                            edge.listen()
                        ),
                    }
                }
                self.state.store(Arc::new(next));
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(config = %self.config_path.display(), "configuration reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                tracing::error!(
                    config = %self.config_path.display(),
                    "configuration reload rejected; the previous configuration keeps serving:\n{e}"
                );
                Err(e)
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Supervisor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload is disabled");
                None
            }
        };
        let mut checks = spawn_health_checks(&self.state.load().upstreams, &self.metrics);
        start_key_sources(&self.state.load());
        loop {
            let hup_fired = async {
                match hup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = hup_fired => {
                    if self.reload().is_ok() {
                        for c in checks.drain(..) {
                            c.abort();
                        }
                        checks = spawn_health_checks(&self.state.load().upstreams, &self.metrics);
                        start_key_sources(&self.state.load());
                    }
                }
            }
        }
        for c in checks {
            c.abort();
        }
    }
}

/// Starts the refresh task of every fetched issuer's keys (sources kept from
/// an earlier generation already run; one whose last generation is gone
/// ends by itself).
fn start_key_sources(gen: &Generation) {
    if let Some(verifier) = gen.verifier.as_ref() {
        for (_, source) in verifier.key_sources() {
            source.clone().start();
        }
    }
}

/// How long pingora's own grace period outlasts ours: [`ExitWhenDrained`]
/// exits at `grace_period` at the latest, pingora's sleep is the backstop.
const PINGORA_GRACE_BACKSTOP_SECS: u64 = 2;

/// How the process comes up (`run`'s flags).
pub(crate) struct Start {
    /// Take the listening sockets over from a running gateway.
    pub upgrade: bool,
    /// Where to write the process id once the sockets are held.
    pub pid_file: Option<PathBuf>,
}

/// Writes this process's id to `path` whole (a reader never sees half a
/// file): into a temporary file beside it, then renamed over it.
fn write_pid_file(path: &Path) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, format!("{}\n", std::process::id()))?;
    std::fs::rename(&temporary, path)
}

/// Starts the gateway with an already compiled first generation. Never returns.
pub(crate) fn run(config_path: PathBuf, first: Generation, start: Start) -> ! {
    let Start { upgrade, pid_file } = start;
    if let Some(dir) = pid_file.as_deref().and_then(Path::parent) {
        if !dir.as_os_str().is_empty() && !dir.is_dir() {
            tracing::error!(
                "--pid-file: directory {} does not exist; create it or name another file",
                dir.display()
            );
            std::process::exit(1);
        }
    }
    crate::tls::install_crypto_provider();
    let listeners = first.listeners.clone();
    let state = Arc::new(ArcSwap::from_pointee(first));
    let metrics = Arc::new(Metrics::new());
    crate::idp::count_fetches_in(metrics.jwks.fetches.clone());
    for u in state.load().upstreams.iter() {
        for t in &u.targets {
            metrics
                .upstream_health
                .with_label_values(&[&*u.name, &*t.label])
                .set(1);
        }
    }

    let sessions = match &state.load().sessions {
        None => None,
        Some(settings) => match SessionService::start(settings, metrics.clone()) {
            Ok(service) => {
                tracing::info!(
                    engine = service.engine(),
                    store = %crate::session::store::redact_url(&settings.store_url),
                    "session store ready"
                );
                let live = state.clone();
                service.spawn_background(Arc::new(move || live.load().sessions.clone()));
                Some(service)
            }
            Err(e) => {
                tracing::error!(
                    store = %crate::session::store::redact_url(&settings.store_url),
                    "cannot open the session store: {e}; check `sessions.store` and that the database is up"
                );
                std::process::exit(1);
            }
        },
    };

    let conf = ServerConf {
        threads: listeners.threads,
        grace_period_seconds: Some(
            listeners.grace_period.as_secs_f64().ceil() as u64 + PINGORA_GRACE_BACKSTOP_SECS,
        ),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: listeners.upgrade_socket.to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    if upgrade {
        tracing::info!(
            socket = %listeners.upgrade_socket.display(),
            "waiting for the running gateway's listening sockets; send it SIGQUIT"
        );
    }
    // With `upgrade`, this receives the sockets (or exits after about 5 s
    // without them).
    server.bootstrap();
    if upgrade {
        tracing::info!("listening sockets taken over from the previous process");
    }
    if let Some(path) = &pid_file {
        // Before the old process of an upgrade exits (it drains for at least
        // 5 s more): systemd follows a forking service to its new PID as long
        // as the PID file names it first.
        if let Err(e) = write_pid_file(path) {
            tracing::error!(
                pid_file = %path.display(),
                "cannot write the pid file: {e}; serving anyway, but a service manager reading it loses track of this process"
            );
        }
    }

    let lifecycle = match metrics.lifecycle_gauges() {
        Ok(gauges) => Arc::new(Lifecycle::new(gauges)),
        Err(e) => {
            tracing::error!("cannot register the lifecycle metrics: {e}");
            std::process::exit(1);
        }
    };
    crate::lifecycle::install(lifecycle.clone());

    let tls = match (listeners.tls, state.load().tls.clone()) {
        (Some(listen), Some(material)) => match TlsEdge::new(listen, material, &metrics) {
            Ok(edge) => Some(Arc::new(edge)),
            Err(e) => {
                tracing::error!("cannot set up the TLS listener on {listen}: {e}");
                std::process::exit(1);
            }
        },
        _ => None,
    };

    let gateway = Gateway::new(state.clone(), metrics.clone(), sessions.clone());
    // Slow and broken clients: whole-phase read deadlines and a connection cap
    // around pingora's proxy app (see `conn_guard`).
    let client_guard =
        Arc::new(ClientGuard::new(listeners.client.clone(), &metrics).with_h2c(listeners.h2c));
    let mut proxy_app = pingora::proxy::http_proxy(&server.configuration, gateway);
    let mut options = pingora::apps::HttpServerOptions::default();
    options.h2c = listeners.h2c;
    // HTTP/2 connections (h2c, or ALPN h2 over TLS) have no HTTP/1 idle
    // deadline in `conn_guard`: pingora closes them once idle this long.
    options.h2_idle_timeout = Some(listeners.client.keepalive_timeout);
    proxy_app.server_options = Some(options);
    let proxy_app = Arc::new(proxy_app);
    let mut guarded = GuardedApp::new(proxy_app, client_guard);
    if let Some(edge) = &tls {
        guarded = guarded.with_tls(edge.clone());
    }
    let mut proxy = Service::new(
        "portcullis proxy".to_owned(),
        DrainingApp::new(guarded, lifecycle.clone()),
    );
    proxy.add_listener(
        ListenerConfig::tcp(listeners.proxy.to_string()).l4_buffer(client_connection_buffers()),
    );
    // The TLS port is a TCP listener of the same service: the handshake
    // runs in the app (`conn_guard`, `tls`), after the connection cap.
    if let Some(listen) = listeners.tls {
        proxy.add_listener(
            ListenerConfig::tcp(listen.to_string()).l4_buffer(client_connection_buffers()),
        );
    }

    let admin_app = AdminApp {
        state: state.clone(),
        metrics: metrics.clone(),
        sessions: sessions.clone(),
        lifecycle: lifecycle.clone(),
    };
    let mut admin = Service::new(
        "portcullis admin".to_owned(),
        pingora::apps::http_app::HttpServer::new_app(admin_app),
    );
    admin.add_tcp(&listeners.admin.to_string());
    admin.threads = Some(1);

    let supervisor = background_service(
        "supervisor",
        Supervisor {
            config_path,
            state,
            metrics,
            sessions,
            tls,
        },
    );
    let exit = background_service(
        "exit when drained",
        ExitWhenDrained {
            lifecycle: lifecycle.clone(),
            grace_period: listeners.grace_period,
        },
    );
    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(supervisor);
    server.add_service(exit);
    match listeners.tls {
        Some(tls) => {
            tracing::info!(proxy = %listeners.proxy, tls = %tls, admin = %listeners.admin, "portcullis starting")
        }
        None => {
            tracing::info!(proxy = %listeners.proxy, admin = %listeners.admin, "portcullis starting")
        }
    }
    server.run(RunArgs {
        shutdown_signal: Box::new(SignalWatch {
            lifecycle,
            drain_window: listeners.drain_window,
            upgrade_socket: listeners.upgrade_socket.clone(),
        }),
    });
    std::process::exit(0)
}
