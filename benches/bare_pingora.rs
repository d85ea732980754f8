//! The floor of the load benchmark: a bare pingora proxy built from the same
//! pingora version, profile and server settings as Portcullis (one worker
//! thread, the same client-socket buffers), whose `ProxyHttp` only picks the
//! upstream. `benches/load.sh` runs it beside Portcullis, HAProxy and the
//! upstream, so every row carries "× bare pingora": what Portcullis costs on
//! top of pingora itself.
//!
//! `bare-pingora --listen 127.0.0.1:P --upstream 127.0.0.1:U`

use async_trait::async_trait;
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
    let mut listen = None;
    let mut upstream = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next(),
            "--upstream" => upstream = args.next(),
            other => {
                eprintln!("bare-pingora: unknown argument `{other}`; usage: bare-pingora --listen ADDR --upstream ADDR");
                std::process::exit(2);
            }
        }
    }
    let (Some(listen), Some(upstream)) = (listen, upstream) else {
        eprintln!("usage: bare-pingora --listen ADDR --upstream ADDR");
        std::process::exit(2);
    };
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
    let app = pingora::proxy::http_proxy(&server.configuration, Bare { upstream });
    let mut service = Service::new("bare pingora".to_owned(), app);
    service.add_listener(ListenerConfig::tcp(listen).l4_buffer(L4BufferSettings::new(0, 4096)));
    server.add_service(service);
    server.run_forever()
}
