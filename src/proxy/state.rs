//! What the proxy shares across requests: the current route table and certificates (swapped
//! atomically on reload), the settings that apply to every route, and the metrics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use super::ops::Metrics;
use super::signin::Auth;
use crate::config::{CertificatePair, Route, Settings};
use crate::routes::RouteTable;
use crate::routes::certs::{self, CertError, CertIndex, LoadedCert};

/// Settings that apply to all routes and can change on reload.
#[derive(Debug, Clone)]
pub struct Global {
    pub timeout: Duration,
    pub insecure: bool,
    pub pass_identity_headers: bool,
}

impl Global {
    pub fn from_settings(s: &Settings) -> Global {
        Global {
            timeout: s.timeout,
            insecure: s.insecure_server,
            pass_identity_headers: s.pass_identity_headers,
        }
    }
}

/// Everything a reload publishes at once.
#[derive(Debug)]
pub struct Snapshot {
    pub table: RouteTable,
    pub global: Global,
}

pub struct Shared {
    pub current: ArcSwap<Snapshot>,
    pub certs: Arc<ArcSwap<CertIndex>>,
    pub metrics: Metrics,
    pub ready: AtomicBool,
    /// The self-signed certificate served when no configured one matches.
    pub fallback: LoadedCert,
    /// Sign-in (authenticate service, sessions, identity headers); empty when
    /// `authenticate_service_url` is not set. Set once at start (see `proxy::signin`).
    pub auth: ArcSwapOption<Auth>,
    /// What `publish_cluster` last published (to publish only on change).
    cluster: std::sync::Mutex<Option<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{origin}: {source}")]
    Cert { origin: String, source: CertError },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl Shared {
    pub fn new() -> Result<Shared, StateError> {
        let fallback =
            certs::self_signed(&["portcullis.invalid".to_string()]).map_err(|source| {
                StateError::Cert {
                    origin: "generated default certificate".into(),
                    source,
                }
            })?;
        let index = CertIndex::new(&[], &fallback, true);
        Ok(Shared {
            current: ArcSwap::from_pointee(Snapshot {
                table: RouteTable::default(),
                global: Global {
                    timeout: Duration::from_secs(30),
                    insecure: false,
                    pass_identity_headers: false,
                },
            }),
            certs: Arc::new(ArcSwap::from_pointee(index)),
            metrics: Metrics::new()?,
            ready: AtomicBool::new(false),
            fallback,
            auth: ArcSwapOption::empty(),
            cluster: std::sync::Mutex::new(None),
        })
    }

    /// Build the table and certificate index for `settings` (resolving upstream names first)
    /// and publish both. Nothing is published when a certificate fails to load.
    pub async fn publish(&self, settings: &Settings) -> Result<(), StateError> {
        let mut loaded = Vec::new();
        for pair in &settings.certificates {
            let cert = certs::load_pair(pair).map_err(|source| StateError::Cert {
                origin: pair.origin.clone(),
                source,
            })?;
            loaded.push(cert);
        }
        let index = CertIndex::new(&loaded, &self.fallback, true);
        let names = resolve_names(&settings.routes).await;
        let table = RouteTable::compile(settings.routes.clone(), &|host, port| {
            names.get(&(host.to_string(), port)).copied()
        });
        for r in &table.routes {
            if r.route.host != crate::config::HostPattern::Any
                && !index.covers(&host_for_cert(&r.route))
                && !settings.insecure_server
            {
                tracing::warn!(
                    route = %r.route.name,
                    host = %r.route.host,
                    "no configured certificate covers this host: serving a self-signed one"
                );
            }
            for b in &r.backends {
                if b.addr.is_none() {
                    tracing::warn!(route = %r.route.name, upstream = %b.upstream.url, "upstream name does not resolve: requests will get 502");
                }
            }
        }
        self.metrics.routes.set(table.routes.len() as i64);
        self.certs.store(Arc::new(index));
        self.current.store(Arc::new(Snapshot {
            table,
            global: Global::from_settings(settings),
        }));
        Ok(())
    }
}

impl Shared {
    /// Publish the routes and certificates from the cluster together with those of `base` (the
    /// configuration file's settings; its routes come first). Does nothing and returns
    /// `Ok(false)` when they equal what was last published this way.
    pub async fn publish_cluster(
        &self,
        base: &Settings,
        routes: Vec<Route>,
        certs: Vec<CertificatePair>,
    ) -> Result<bool, StateError> {
        let fingerprint = format!("{routes:?}\n{:?}", {
            let pems: Vec<(&str, &str, &[u8])> = certs
                .iter()
                .map(|c| (c.origin.as_str(), c.cert_pem.as_str(), c.key_pem.as_bytes()))
                .collect();
            pems
        });
        if self
            .cluster
            .lock()
            .map(|last| last.as_deref() == Some(fingerprint.as_str()))
            .unwrap_or(false)
        {
            return Ok(false);
        }
        let mut combined = base.clone();
        combined.routes.extend(routes);
        combined.certificates.extend(certs);
        self.publish(&combined).await?;
        if let Ok(mut last) = self.cluster.lock() {
            *last = Some(fingerprint);
        }
        Ok(true)
    }
}

fn host_for_cert(route: &Route) -> String {
    match &route.host {
        crate::config::HostPattern::Exact(h) => h.clone(),
        crate::config::HostPattern::Wildcard(s) => format!("x.{s}"),
        crate::config::HostPattern::Any => String::new(),
    }
}

/// Resolve every upstream host name once, asynchronously, before the table is built.
async fn resolve_names(routes: &[Route]) -> HashMap<(String, u16), SocketAddr> {
    let mut out = HashMap::new();
    for route in routes {
        for u in &route.to {
            let key = (u.host().to_string(), u.port());
            if out.contains_key(&key) {
                continue;
            }
            let host = u.host().trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                out.insert(key, SocketAddr::new(ip, u.port()));
                continue;
            }
            match tokio::net::lookup_host((host, u.port())).await {
                Ok(mut addrs) => {
                    if let Some(a) = addrs.next() {
                        out.insert(key, a);
                    }
                }
                Err(e) => tracing::warn!(host, error = %e, "cannot resolve upstream"),
            }
        }
    }
    out
}
