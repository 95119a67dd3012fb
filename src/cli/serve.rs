//! `portcullis serve --config FILE`: standalone mode, routes from the file.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;

use crate::config::Settings;
use crate::proxy::ops::{OpsApp, RedirectApp};
use crate::proxy::reload::{Reloader, reload_file};
use crate::proxy::{Portcullis, Shared};
use crate::routes::certs::SniResolver;

/// A TLS callback that does nothing: certificates come from the resolver.
struct NoCallbacks;
#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for NoCallbacks {}

pub fn serve(config: &Path) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = Settings::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let shared = Arc::new(Shared::new()?);

    // The first table is built before any listener opens: a bad file never starts serving.
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a runtime")?;
        if !rt.block_on(reload_file(config, &shared)) {
            anyhow::bail!(
                "{}: the configuration was rejected (see the errors above)",
                config.display()
            );
        }
    }
    let reloader = pingora::services::background::background_service(
        "config reload",
        Reloader {
            path: config.to_path_buf(),
            shared: shared.clone(),
        },
    );
    run(&settings, shared, vec![Box::new(reloader)])
}

/// Open the listeners of `settings` and run the server with the given background services
/// (config reload, the Kubernetes controller, …) until SIGTERM. Does not return on success.
pub fn run(
    settings: &Settings,
    shared: Arc<Shared>,
    background: Vec<Box<dyn pingora::services::ServiceWithDependents>>,
) -> anyhow::Result<()> {
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
    let conf = ServerConf {
        threads,
        work_stealing,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(3),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    // Sign-in: built once at start; discovery runs in the background (the IdP may start after
    // us) and again on demand while it fails.
    if let Some(auth) = crate::proxy::signin::Auth::from_settings(settings)? {
        tracing::info!(authenticate = %auth.authenticate, "sign-in enabled");
        shared.auth.store(Some(Arc::new(auth)));
        server.add_service(pingora::services::background::background_service(
            "identity provider discovery",
            crate::proxy::signin::Discovery {
                shared: shared.clone(),
            },
        ));
    }

    let mut proxy = http_proxy_service(
        &server.configuration,
        Portcullis {
            shared: shared.clone(),
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
        let mut tls = TlsSettings::with_callbacks(Box::new(NoCallbacks))
            .map_err(|e| anyhow::anyhow!("TLS settings: {e}"))?;
        tls.set_cert_resolver(Arc::new(SniResolver {
            index: shared.certs.clone(),
        }));
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
                shared: shared.clone(),
            },
        );
        ops.add_tcp(&addr.to_string());
        server.add_service(ops);
    }
    for service in background {
        server.add_boxed_service(service);
    }
    tracing::info!(address = %address, insecure = settings.insecure_server, "serving");
    server.run_forever();
}
