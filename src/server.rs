//! Process wiring: the pingora server with the proxy and admin services, and
//! the supervisor that reloads the config on SIGHUP and runs health checks.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::config;
use crate::conn_guard::{ClientGuard, GuardedApp};
use crate::generation::Generation;
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::session::SessionService;
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
}

impl Supervisor {
    /// Re-reads the config; on success swaps it in, else keeps the old one.
    pub(crate) fn reload(&self) -> Result<(), config::ConfigError> {
        let current = self.state.load_full();
        match config::load(&self.config_path) {
            Ok(next) => {
                if next.listeners != current.listeners {
                    tracing::warn!(
                        "listener settings changed in {}; they apply after a restart (still serving on {})",
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
                    }
                }
            }
        }
        for c in checks {
            c.abort();
        }
    }
}

/// Starts the gateway with an already compiled first generation. Never returns.
pub(crate) fn run(config_path: PathBuf, first: Generation) -> ! {
    let listeners = first.listeners.clone();
    let state = Arc::new(ArcSwap::from_pointee(first));
    let metrics = Arc::new(Metrics::new());
    for u in state.load().upstreams.iter() {
        for t in &u.targets {
            metrics
                .upstream_health
                .with_label_values(&[&*u.name, t.label.as_str()])
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
        grace_period_seconds: Some(listeners.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(listeners.grace_period.as_secs().max(1)),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let gateway = Gateway::new(state.clone(), metrics.clone(), sessions.clone());
    // Slow and broken clients: whole-phase read deadlines and a connection cap
    // around pingora's proxy app (see `conn_guard`).
    let client_guard = Arc::new(ClientGuard::new(listeners.client.clone(), &metrics));
    let mut proxy_app = pingora::proxy::http_proxy(&server.configuration, gateway);
    if listeners.h2c {
        let mut options = pingora::apps::HttpServerOptions::default();
        options.h2c = true;
        proxy_app.server_options = Some(options);
    }
    let proxy_app = Arc::new(proxy_app);
    let mut proxy = Service::new(
        "portcullis proxy".to_owned(),
        GuardedApp::new(proxy_app, client_guard),
    );
    proxy.add_listener(
        ListenerConfig::tcp(listeners.proxy.to_string()).l4_buffer(client_connection_buffers()),
    );

    let admin_app = AdminApp {
        state: state.clone(),
        metrics: metrics.clone(),
        sessions: sessions.clone(),
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
        },
    );
    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(supervisor);
    tracing::info!(proxy = %listeners.proxy, admin = %listeners.admin, "portcullis starting");
    server.run_forever()
}
