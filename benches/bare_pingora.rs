//! The floor of the load benchmark: a bare pingora proxy built from the same
//! pingora version, profile and server settings as Portcullis (one worker
//! thread, the same client-socket buffers), whose `ProxyHttp` only picks the
//! upstream. `benches/load.sh` runs it beside Portcullis, HAProxy and the
//! upstream, so every row carries "× bare pingora": what Portcullis costs on
//! top of pingora itself.
//!
//! `bare-pingora --listen 127.0.0.1:P --upstream 127.0.0.1:U
//!  [--h2c] [--tls-listen 127.0.0.1:T --cert CERT.pem --key KEY.pem]`
//!
//! For the edge rows of `benches/edge_load.sh`: `--h2c` also speaks HTTP/2
//! with prior knowledge on the plain listener (as Portcullis'
//! `listeners.h2c: true`), and `--tls-listen` adds a TLS listener (TLS 1.2
//! and 1.3, ALPN h2 and http/1.1, like `listeners.tls`) on pingora's own
//! rustls acceptor with the same crypto provider as Portcullis (aws-lc-rs).

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use pingora::Result;

/// Proxies every request to one upstream, nothing else.
struct Bare {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

/// The same allocator as the `portcullis` binary (src/main.rs), so the
/// floor differs from Portcullis only in what Portcullis does per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    const USAGE: &str = "usage: bare-pingora --listen ADDR --upstream ADDR [--h2c] \
                         [--tls-listen ADDR --cert CERT.pem --key KEY.pem]";
    let mut listen = None;
    let mut upstream = None;
    let mut h2c = false;
    let (mut tls_listen, mut cert, mut key) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next(),
            "--upstream" => upstream = args.next(),
            "--h2c" => h2c = true,
            "--tls-listen" => tls_listen = args.next(),
            "--cert" => cert = args.next(),
            "--key" => key = args.next(),
            other => {
                eprintln!("bare-pingora: unknown argument `{other}`; {USAGE}");
                std::process::exit(2);
            }
        }
    }
    let (Some(listen), Some(upstream)) = (listen, upstream) else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let tls = match (tls_listen, cert, key) {
        (None, None, None) => None,
        (Some(listen), Some(cert), Some(key)) => Some((listen, cert, key)),
        _ => {
            eprintln!("bare-pingora: --tls-listen needs --cert and --key; {USAGE}");
            std::process::exit(2);
        }
    };
    // Portcullis' TLS provider (src/tls): aws-lc-rs, installed first thing,
    // before pingora installs its ring default (building the proxy app's
    // upstream connector does).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Portcullis' server settings (src/server.rs): one worker as in the
    // benchmark config, and the same client-socket buffer settings.
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut app = pingora::proxy::http_proxy(&server.configuration, Bare { upstream });
    if h2c {
        let mut options = pingora::apps::HttpServerOptions::default();
        options.h2c = true;
        app.server_options = Some(options);
    }
    let mut service = Service::new("bare pingora".to_owned(), app);
    service.add_listener(ListenerConfig::tcp(listen).l4_buffer(L4BufferSettings::new(0, 4096)));
    if let Some((listen, cert, key)) = tls {
        let mut settings = TlsSettings::intermediate(&cert, &key).unwrap_or_else(|e| {
            eprintln!("bare-pingora: TLS settings: {e}");
            std::process::exit(2);
        });
        settings.enable_h2();
        service.add_listener(
            ListenerConfig::tcp(listen)
                .tls(settings)
                .l4_buffer(L4BufferSettings::new(0, 4096)),
        );
    }
    server.add_service(service);
    server.run_forever()
}
