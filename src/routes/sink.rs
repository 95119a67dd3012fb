//! The route sink: the one place a route table and its certificates are published.
//!
//! Producers (the configuration file's reloader, the Kubernetes controller) hold an
//! `Arc<RouteSink>` and publish their routes into a named [`Layer`]; the sink joins the layers
//! (the file's routes first), resolves upstream names, compiles the table, indexes the
//! certificates and swaps both atomically. A layer published unchanged (compared by value) swaps
//! nothing. The proxy only reads ([`RouteSink::load`], the SNI resolver); readiness is the
//! producers' to declare ([`RouteSink::mark_ready`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::RouteTable;
use crate::config::{
    BearerFormat, Branding, CertificatePair, DownstreamMtls, HostPattern, MtlsEnforcement, Route,
    Settings,
};
use crate::guard::path::PathOptions;
use crate::metrics::Metrics;
use crate::tls::{self, CertError, CertIndex, LoadedCert, SniResolver};

/// Settings that apply to all routes; they come with the file's layer and can change on reload.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    pub timeout: Duration,
    /// Client connections: each read and write may wait this long (`None`: no limit), and a
    /// kept-alive HTTP/1 connection this many seconds for its next request.
    pub client_read_timeout: Option<Duration>,
    pub client_write_timeout: Option<Duration>,
    pub keepalive_seconds: u64,
    pub insecure: bool,
    pub pass_identity_headers: bool,
    /// How request paths are made canonical before routing.
    pub path: PathOptions,
    /// Proxies in front of us trusted with `X-Forwarded-For` (0: none).
    pub xff_num_trusted_hops: usize,
    /// Headers set on every proxied response (`set_response_headers`, or Pomerium's defaults),
    /// with their lines written once when they may go outside Pingora's header map.
    pub response_headers: Arc<super::ResponseHeaders>,
    /// How our pages look.
    pub branding: Arc<Branding>,
    /// What a plain `Authorization: Bearer` token is, unless a route says (`bearer_token_format`).
    pub bearer_token_format: BearerFormat,
    /// Audiences an access token may be for, unless a route says.
    pub idp_access_token_allowed_audiences: Arc<Vec<String>>,
    /// `downstream_mtls`: the client certificate check of routes without their own.
    pub client_ca: Option<Arc<GlobalClientCa>>,
}

/// The global client CA, ready to verify chains.
pub struct GlobalClientCa {
    pub config: DownstreamMtls,
    /// `None` when the CAs cannot be used: every request of a route it covers is refused.
    pub verifier: Option<tls::ClientCaVerifier>,
}

impl std::fmt::Debug for GlobalClientCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalClientCa")
            .field("enforcement", &self.config.enforcement)
            .field("usable", &self.verifier.is_some())
            .finish()
    }
}

impl PartialEq for GlobalClientCa {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config
    }
}

impl Global {
    pub fn from_settings(s: &Settings) -> Global {
        let response_headers =
            super::ResponseHeaders::new(super::HeaderFields::new(&s.response_headers()));
        Global {
            timeout: s.timeout,
            client_read_timeout: Some(s.timeout_read).filter(|d| !d.is_zero()),
            client_write_timeout: Some(s.timeout_write).filter(|d| !d.is_zero()),
            keepalive_seconds: s.timeout_idle.as_secs().max(1),
            insecure: s.insecure_server,
            pass_identity_headers: s.pass_identity_headers,
            path: s.path,
            xff_num_trusted_hops: s.xff_num_trusted_hops,
            response_headers: Arc::new(response_headers),
            branding: Arc::new(s.branding.clone()),
            bearer_token_format: s.bearer_token_format,
            idp_access_token_allowed_audiences: Arc::new(
                s.idp_access_token_allowed_audiences.clone(),
            ),
            client_ca: s.downstream_mtls.as_ref().map(|m| {
                Arc::new(GlobalClientCa {
                    config: m.clone(),
                    verifier: tls::client_ca_verifier(&m.ca)
                        .inspect_err(|e| tracing::error!(error = %e, "downstream_mtls CA cannot be used; requests that need it are refused"))
                        .ok(),
                })
            }),
        }
    }
}

impl Default for Global {
    fn default() -> Global {
        Global::from_settings(&Settings::default())
    }
}

/// Everything one publish swaps in at once.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub table: RouteTable,
    pub global: Global,
}

/// Who publishes: the configuration file (with the settings that apply to every route) or the
/// cluster. The file's routes come first in the table.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    File(Global),
    Cluster,
}

impl Layer {
    pub fn as_str(&self) -> &'static str {
        match self {
            Layer::File(_) => "file",
            Layer::Cluster => "cluster",
        }
    }
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// False when the layer was published unchanged (nothing was swapped).
    pub changed: bool,
    /// Routes in the table being served now.
    pub routes: usize,
}

#[derive(Default, PartialEq)]
struct LayerContent {
    /// Shared with the compiled table's routes.
    routes: Vec<Arc<Route>>,
    certs: Vec<CertificatePair>,
}

#[derive(Default)]
struct Layers {
    global: Global,
    file: LayerContent,
    cluster: LayerContent,
}

/// See the module documentation.
pub struct RouteSink {
    current: ArcSwap<Snapshot>,
    certs: Arc<ArcSwap<CertIndex>>,
    /// The self-signed certificate served when no configured one matches.
    fallback: LoadedCert,
    ready: AtomicBool,
    /// Set on SIGTERM: readiness fails from then on while requests are still served.
    draining: AtomicBool,
    metrics: Arc<Metrics>,
    /// The last content of each layer; the lock also keeps publishes in order.
    layers: tokio::sync::Mutex<Layers>,
    /// Whether some route verifies client certificates (the TLS listener then asks for them).
    client_certs_wanted: Arc<AtomicBool>,
    /// Whether the handshake refuses clients without a certificate (`downstream_mtls` with
    /// `enforcement: reject_connection`).
    client_certs_required: Arc<AtomicBool>,
}

impl RouteSink {
    /// An empty sink (no routes, not ready) with a freshly generated fallback certificate.
    pub fn new(metrics: Arc<Metrics>) -> Result<RouteSink, CertError> {
        let fallback = tls::self_signed(&["portcullis.invalid".to_string()])?;
        Ok(RouteSink {
            current: ArcSwap::from_pointee(Snapshot::default()),
            certs: Arc::new(ArcSwap::from_pointee(CertIndex::new(&[], &fallback, true))),
            fallback,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            metrics,
            layers: tokio::sync::Mutex::new(Layers::default()),
            client_certs_wanted: Arc::new(AtomicBool::new(false)),
            client_certs_required: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The snapshot being served (cheap: no reference count is taken).
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The rustls resolver that reads the current certificates on every handshake.
    /// Set while some route verifies client certificates: the TLS listener asks for them.
    pub fn client_certs_wanted(&self) -> Arc<AtomicBool> {
        self.client_certs_wanted.clone()
    }

    /// Set while the handshake must refuse clients without a certificate.
    pub fn client_certs_required(&self) -> Arc<AtomicBool> {
        self.client_certs_required.clone()
    }

    pub fn sni_resolver(&self) -> SniResolver {
        SniResolver {
            index: self.certs.clone(),
        }
    }

    /// Ready: a producer has declared it and no shutdown has begun.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.is_draining()
    }

    /// Whether a shutdown has begun ([`RouteSink::begin_draining`]).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The process is about to stop: readiness fails from now on, so load balancers take this
    /// replica out before its listeners close.
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Declared by a producer once it has published what it had to publish first.
    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Count a configuration a producer refused (it published nothing).
    pub fn rejected(&self) {
        self.metrics.reloads.with_label_values(&["error"]).inc();
    }

    /// Replace one layer's routes and certificates and serve the result. Unchanged content
    /// swaps nothing.
    pub async fn publish(
        &self,
        layer: Layer,
        routes: Vec<Route>,
        certs: Vec<CertificatePair>,
    ) -> Published {
        let mut layers = self.layers.lock().await;
        let content = LayerContent {
            routes: routes.into_iter().map(Arc::new).collect(),
            certs,
        };
        let changed = match &layer {
            Layer::File(global) => {
                let changed = layers.file != content || layers.global != *global;
                layers.file = content;
                layers.global = global.clone();
                changed
            }
            Layer::Cluster => {
                let changed = layers.cluster != content;
                layers.cluster = content;
                changed
            }
        };
        if !changed {
            return Published {
                changed,
                routes: self.current.load().table.routes.len(),
            };
        }
        let timer = self.metrics.publish_seconds.start_timer();
        let routes: Vec<Arc<Route>> = layers
            .file
            .routes
            .iter()
            .chain(&layers.cluster.routes)
            .cloned()
            .collect();
        let loaded: Vec<LoadedCert> = layers
            .file
            .certs
            .iter()
            .chain(&layers.cluster.certs)
            .map(|c| c.cert.clone())
            .collect();
        let index = CertIndex::new(&loaded, &self.fallback, true);
        let names = resolve_names(&routes).await;
        let previous = self.current.load();
        let table = RouteTable::compile_after(
            routes,
            &|host, port| names.get(&(host.to_string(), port)).copied(),
            Some(&previous.table),
            &layers.global.response_headers,
        );
        drop(previous);
        warn_about(&table, &index, layers.global.insecure);
        let global_ca = layers.global.client_ca.as_ref();
        self.client_certs_wanted.store(
            global_ca.is_some() || table.routes.iter().any(|r| r.client_ca.is_some()),
            Ordering::Release,
        );
        self.client_certs_required.store(
            global_ca.is_some_and(|c| c.config.enforcement == MtlsEnforcement::RejectConnection),
            Ordering::Release,
        );
        let count = table.routes.len();
        self.metrics.routes.set(count as i64);
        self.metrics.reloads.with_label_values(&["success"]).inc();
        self.certs.store(Arc::new(index));
        self.current.store(Arc::new(Snapshot {
            table,
            global: layers.global.clone(),
        }));
        timer.observe_duration();
        Published {
            changed,
            routes: count,
        }
    }
}

/// Warn about hosts served with the self-signed certificate and upstreams that did not resolve.
fn warn_about(table: &RouteTable, index: &CertIndex, insecure: bool) {
    for r in &table.routes {
        let name = match &r.route.host {
            HostPattern::Exact(h) => Some(h.clone()),
            HostPattern::Wildcard(s) => Some(format!("x.{s}")),
            HostPattern::Any => None,
        };
        if let Some(name) = name
            && !insecure
            && !index.covers(&name)
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
}

/// Resolve every upstream host name once, asynchronously, before the table is built.
async fn resolve_names(routes: &[Arc<Route>]) -> HashMap<(String, u16), SocketAddr> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::fixtures::route;

    fn sink() -> RouteSink {
        RouteSink::new(Arc::new(Metrics::new().unwrap())).unwrap()
    }

    fn names(s: &RouteSink) -> Vec<String> {
        s.load()
            .table
            .routes
            .iter()
            .map(|r| r.route.name.clone())
            .collect()
    }

    #[tokio::test]
    async fn cluster_routes_join_the_file_routes_and_publish_only_on_change() {
        let s = sink();
        let file = Layer::File(Global::default());
        let first = s
            .publish(file.clone(), vec![route("routes[0]", "file.test")], vec![])
            .await;
        assert!(first.changed);
        let published = s
            .publish(Layer::Cluster, vec![route("ns/a.test", "a.test")], vec![])
            .await;
        assert!(published.changed);
        assert_eq!(names(&s), vec!["routes[0]", "ns/a.test"]);
        let again = s
            .publish(Layer::Cluster, vec![route("ns/a.test", "a.test")], vec![])
            .await;
        assert!(!again.changed, "nothing changed: nothing published");
        let changed = s
            .publish(Layer::Cluster, vec![route("ns/b.test", "b.test")], vec![])
            .await;
        assert!(changed.changed);
        assert_eq!(names(&s), vec!["routes[0]", "ns/b.test"]);
    }

    #[tokio::test]
    async fn a_new_global_setting_republishes_an_unchanged_file() {
        let s = sink();
        let routes = vec![route("routes[0]", "file.test")];
        s.publish(Layer::File(Global::default()), routes.clone(), vec![])
            .await;
        let slower = Global {
            timeout: Duration::from_secs(99),
            ..Global::default()
        };
        let p = s.publish(Layer::File(slower), routes, vec![]).await;
        assert!(p.changed);
        assert_eq!(s.load().global.timeout, Duration::from_secs(99));
    }

    #[tokio::test]
    async fn every_route_carries_the_global_response_headers_of_its_publish() {
        // A request reads the global response headers through its route: a new global set
        // must reach routes that did not change, and both layers' routes.
        let s = sink();
        let file = vec![route("routes[0]", "file.test")];
        s.publish(Layer::File(Global::default()), file.clone(), vec![])
            .await;
        s.publish(Layer::Cluster, vec![route("ns/a.test", "a.test")], vec![])
            .await;
        let deny = Global::from_settings(&Settings {
            set_response_headers: Some([("X-Frame-Options".into(), "DENY".into())].into()),
            ..Settings::default()
        });
        assert_ne!(deny.response_headers, Global::default().response_headers);
        s.publish(Layer::File(deny.clone()), file, vec![]).await;
        let snapshot = s.load();
        assert_eq!(snapshot.table.routes.len(), 2);
        for r in &snapshot.table.routes {
            assert!(
                Arc::ptr_eq(
                    &r.global_response_headers,
                    &snapshot.global.response_headers
                ),
                "{}",
                r.route.name
            );
            assert_eq!(r.global_response_headers, deny.response_headers);
        }
    }

    #[tokio::test]
    async fn readiness_is_declared_by_the_producer_not_by_a_publish() {
        let s = sink();
        s.publish(Layer::File(Global::default()), vec![], vec![])
            .await;
        assert!(!s.is_ready());
        s.mark_ready();
        assert!(s.is_ready());
        s.begin_draining();
        assert!(!s.is_ready() && s.is_draining());
    }
}
