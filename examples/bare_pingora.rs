//! The floor under Portcullis in the data-plane benchmark: a Pingora proxy that sends every
//! request to one fixed upstream and does nothing else (no routing, policy, headers, logs or
//! metrics), with the same allocator and worker model as Portcullis.
//!
//!     bare_pingora LISTEN_ADDR UPSTREAM_ADDR THREADS [CERT_PEM_FILE KEY_PEM_FILE]
//!
//! With a certificate and key it terminates TLS (rustls, as Portcullis does).
use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bare_pingora LISTEN_ADDR UPSTREAM_ADDR THREADS [CERT KEY]";
    let (listen, upstream, threads) = match &args[..] {
        [l, u, t, ..] => (l.clone(), u.parse()?, t.parse::<usize>()?),
        _ => anyhow::bail!(usage),
    };
    let conf = ServerConf {
        threads,
        work_stealing: false,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Bare { upstream });
    match (args.get(3), args.get(4)) {
        (Some(cert), Some(key)) => proxy.add_tls(&listen, cert, key)?,
        _ => proxy.add_tcp(&listen),
    }
    server.add_service(proxy);
    server.run_forever();
}
