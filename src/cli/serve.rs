//! The wiring of the data plane, shared by `serve` and `controller`: settings → metrics → route
//! sink → sign-in → Pingora server with its listeners, plus the producer of the mode.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::proxy::ops::{OpsApp, RedirectApp};
use crate::proxy::{Discovery, Portcullis, SignIn};
use crate::reload::{Reloader, publish_settings};
use crate::routes::RouteSink;

/// A TLS callback that does nothing: certificates come from the resolver.
/// Keeps the certificate chain a client presented with its connection, for the routes that
/// verify client certificates.
struct KeepClientChain;
#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for KeepClientChain {
    async fn handshake_complete_callback(
        &self,
        tls: &pingora::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let chain = tls.peer_cert_chain_der()?;
        Some(Arc::new(crate::tls::PeerChain(chain.into())))
    }
}

/// What every mode starts from: its settings, the metrics and the route sink.
pub struct Base {
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub sink: Arc<RouteSink>,
}

impl Base {
    pub fn new(settings: Settings) -> anyhow::Result<Base> {
        super::apply_log_level(settings.log_level);
        crate::reload::report_notices(&settings);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let metrics = Arc::new(Metrics::new().context("metrics")?);
        let sink = Arc::new(
            RouteSink::new(metrics.clone()).context("cannot generate the default certificate")?,
        );
        Ok(Base {
            settings,
            metrics,
            sink,
        })
    }
}

/// `portcullis serve --config FILE`: standalone mode, routes from the file, reloaded on change.
pub fn serve(config: &Path) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let base = Base::new(settings)?;
    // The first table is built before any listener opens: a bad file never starts serving.
    super::block_on(publish_settings(&base.sink, &base.settings))?;
    base.sink.mark_ready();
    tracing::info!(file = %config.display(), routes = base.settings.routes.len(), "configuration loaded");
    let reloader = background_service(
        Reloader::NAME,
        Reloader {
            path: config.to_path_buf(),
            sink: base.sink.clone(),
        },
    );
    run(base, vec![Box::new(reloader)])
}

/// Open the listeners of the settings and run the server with the given background services
/// (config reload, the Kubernetes controller, …) until SIGTERM. Does not return on success.
pub fn run(
    base: Base,
    background: Vec<Box<dyn pingora::services::ServiceWithDependents>>,
) -> anyhow::Result<()> {
    let Base {
        settings,
        metrics,
        sink,
    } = base;
    // Pingora retries a busy address quietly for a while; say at once which setting names a
    // port that is taken (or not ours to bind).
    let listeners = [
        ("address", Some(settings.address)),
        ("http_redirect_addr", settings.http_redirect_addr),
        ("metrics_address", settings.metrics_address),
    ];
    for (key, addr) in listeners {
        if let Some(addr) = addr
            && let Err(e) = std::net::TcpListener::bind(addr)
        {
            anyhow::bail!("{key}: cannot listen on {addr}: {e}");
        }
    }
    // Worker threads: one per core unless PORTCULLIS_THREADS says otherwise. Each worker runs its
    // own single-threaded runtime (no work stealing): connections stay on the thread that
    // accepted them, which avoids cross-thread wake-ups on the hot path.
    let threads = std::env::var("PORTCULLIS_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        });
    let work_stealing = std::env::var("PORTCULLIS_WORK_STEALING").is_ok_and(|v| v == "1");
    // Shutdown (SIGTERM): readiness fails at once and listeners stay open for the drain
    // (PORTCULLIS_SHUTDOWN_DRAIN_SECONDS, default 2) so load balancers stop sending; then they
    // close and requests in flight have the grace period (PORTCULLIS_SHUTDOWN_GRACE_SECONDS,
    // default 5) to finish; then the runtimes stop (3 s at most).
    let seconds = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let drain = std::time::Duration::from_secs(seconds("PORTCULLIS_SHUTDOWN_DRAIN_SECONDS", 2));
    let conf = ServerConf {
        threads,
        work_stealing,
        grace_period_seconds: Some(seconds("PORTCULLIS_SHUTDOWN_GRACE_SECONDS", 5)),
        graceful_shutdown_timeout_seconds: Some(3),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    // Sign-in: built once at start; discovery runs in the background (the IdP may start after
    // us) and again on demand while it fails.
    // PORTCULLIS_REFRESH_GRACE_SECONDS: how long a session outlives its ID token while the
    // identity provider cannot be reached (default 300).
    let grace = std::env::var("PORTCULLIS_REFRESH_GRACE_SECONDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let sign_in = SignIn::from_settings(&settings)?
        .map(|s| match grace {
            Some(g) => s.with_refresh_grace(std::time::Duration::from_secs(g)),
            None => s,
        })
        .map(Arc::new);
    if let Some(sign_in) = &sign_in {
        tracing::info!(authenticate = %sign_in.authenticate, "sign-in enabled");
        server.add_service(background_service(
            Discovery::NAME,
            Discovery {
                sign_in: sign_in.clone(),
            },
        ));
    }

    server.add_service(background_service(
        crate::proxy::probe::Prober::NAME,
        crate::proxy::probe::Prober { sink: sink.clone() },
    ));

    // Room in every parsed request and response for the headers the proxy adds to them, so
    // that neither header map grows (and rehashes) on the way through.
    pingora::http::set_header_headroom(crate::proxy::HEADER_HEADROOM);
    let mut proxy = http_proxy_service(
        &server.configuration,
        Portcullis {
            sink: sink.clone(),
            sign_in,
            metrics: metrics.clone(),
            unrouted: Default::default(),
        },
    );
    let address = settings.address.to_string();
    if settings.insecure_server {
        if let Some(app) = proxy.app_logic_mut() {
            let mut opts = pingora::apps::HttpServerOptions::default();
            opts.h2c = true;
            app.server_options = Some(opts);
        }
        proxy.add_tcp(&address);
    } else {
        let mut tls = TlsSettings::with_callbacks(Box::new(KeepClientChain))
            .map_err(|e| anyhow::anyhow!("TLS settings: {e}"))?;
        tls.set_cert_resolver(Arc::new(sink.sni_resolver()));
        tls.set_client_cert_verifier(Arc::new(crate::tls::RequestClientCerts::new(
            sink.client_certs_wanted(),
            sink.client_certs_required(),
        )));
        tls.enable_h2();
        proxy.add_tls_with_settings(&address, None, tls);
    }
    server.add_service(proxy);

    if let (Some(addr), false) = (settings.http_redirect_addr, settings.insecure_server) {
        let mut redirect = Service::new(
            "http redirect".to_string(),
            RedirectApp {
                https_port: settings.address.port(),
            },
        );
        redirect.add_tcp(&addr.to_string());
        server.add_service(redirect);
    }
    if let Some(addr) = settings.metrics_address {
        let mut ops = Service::new(
            "metrics".to_string(),
            OpsApp {
                metrics,
                sink: sink.clone(),
            },
        );
        ops.add_tcp(&addr.to_string());
        server.add_service(ops);
    }
    for service in background {
        server.add_boxed_service(service);
    }
    tracing::info!(address = %address, insecure = settings.insecure_server, "serving");
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainFirst { sink, drain }),
    });
    crate::access_log::flush();
    std::process::exit(0)
}

/// Pingora's signals (SIGTERM graceful, SIGINT fast, SIGQUIT upgrade), except that SIGTERM
/// first fails readiness and keeps serving for `drain` before the listeners close.
struct DrainFirst {
    sink: Arc<RouteSink>,
    drain: std::time::Duration,
}

#[async_trait::async_trait]
impl ShutdownSignalWatch for DrainFirst {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{SignalKind, signal};
        // A signal that cannot be watched never arrives (said once in the log).
        async fn arrival(kind: SignalKind, name: &str) {
            match signal(kind) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::error!(signal = name, error = %e, "cannot watch the signal");
                    std::future::pending::<()>().await;
                }
            }
        }
        tokio::select! {
            _ = arrival(SignalKind::quit(), "SIGQUIT") => ShutdownSignal::GracefulUpgrade,
            _ = arrival(SignalKind::interrupt(), "SIGINT") => ShutdownSignal::FastShutdown,
            _ = arrival(SignalKind::terminate(), "SIGTERM") => {
                self.sink.begin_draining();
                tracing::info!(drain_s = self.drain.as_secs_f64(), "SIGTERM: readiness fails now; listeners close after the drain");
                tokio::time::sleep(self.drain).await;
                tracing::info!("drain over: listeners close, requests in flight get the grace period");
                ShutdownSignal::GracefulTerminate
            }
        }
    }
}
