//! The floor under Portcullis in the data-plane benchmark: a Pingora proxy that sends every
//! request to one fixed upstream and does nothing else (no routing, policy, headers, logs or
//! metrics), with the same allocator, memory settings (no transparent huge pages) and worker
//! model as Portcullis.
//!
//!     bare_pingora LISTEN_ADDR UPSTREAM_ADDR THREADS [CERT_PEM_FILE KEY_PEM_FILE]
//!
//! With a certificate and key it terminates TLS (rustls, as Portcullis does).
//!
//! With `BARE_PINGORA_TIMEOUTS=1` in its environment it also sets the timeouts Portcullis sets
//! by default, and nothing else: the client's keep-alive wait (`timeout_idle`, 5 min) and
//! reads (`timeout_read`, 30 s), and on the upstream side connects (10 s, 15 s in all), reads
//! and writes (the route's 30 s `timeout`) and the pooled connection's idle limit (60 s).
//! That measures what those timeouts cost; the benchmark's floor is the proxy without them.
//!
//! With `BARE_PINGORA_BUSY_NS=N` it spends N nanoseconds of processor time on every request
//! before choosing the upstream (reading the clock until they have passed), as a proxy with N
//! nanoseconds of its own work would. That measures what added work costs beyond itself: the
//! system calls are the same, but the processes at the other ends wait longer for each answer.
use std::time::Duration;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[global_allocator]
static GLOBAL: portcullis::allocator::Mimalloc = portcullis::allocator::Mimalloc;

struct Bare {
    upstream: std::net::SocketAddr,
    timeouts: bool,
    busy: Duration,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        if !self.busy.is_zero() {
            let start = std::time::Instant::now();
            while start.elapsed() < self.busy {
                std::hint::spin_loop();
            }
        }
        if self.timeouts {
            let downstream = session.as_downstream_mut();
            downstream.set_read_timeout(Some(Duration::from_secs(30)));
            if downstream.get_keepalive().is_some() {
                downstream.set_keepalive(Some(300));
            }
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        if self.timeouts {
            let o = &mut peer.options;
            o.connection_timeout = Some(Duration::from_secs(10));
            o.total_connection_timeout = Some(Duration::from_secs(15));
            o.read_timeout = Some(Duration::from_secs(30));
            o.write_timeout = Some(Duration::from_secs(30));
            o.idle_timeout = Some(Duration::from_secs(60));
        }
        Ok(Box::new(peer))
    }
}

fn main() -> anyhow::Result<()> {
    portcullis::allocator::no_transparent_huge_pages();
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
    let timeouts = std::env::var("BARE_PINGORA_TIMEOUTS").is_ok_and(|v| v == "1");
    let busy = match std::env::var("BARE_PINGORA_BUSY_NS") {
        Ok(ns) => Duration::from_nanos(
            ns.parse()
                .map_err(|e| anyhow::anyhow!("BARE_PINGORA_BUSY_NS={ns}: {e}"))?,
        ),
        Err(_) => Duration::ZERO,
    };
    let bare = Bare {
        upstream,
        timeouts,
        busy,
    };
    let mut proxy = http_proxy_service(&server.configuration, bare);
    match (args.get(3), args.get(4)) {
        (Some(cert), Some(key)) => proxy.add_tls(&listen, cert, key)?,
        _ => proxy.add_tcp(&listen),
    }
    server.add_service(proxy);
    server.run_forever();
}
