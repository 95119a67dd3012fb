//! Kubernetes mode: Ingresses, Services, EndpointSlices, Secrets and Policy objects become
//! routes and certificates.
//!
//! Reflectors (list + watch, resumed with backoff after errors, 410s and API server restarts)
//! keep an in-memory copy of six kinds. Any change wakes one loop, which waits ~100 ms for more,
//! takes a [`translate::Snapshot`], translates it and publishes the result next to the
//! configuration file's routes (`Shared::publish_cluster`, a no-op when nothing changed). The
//! last good table keeps serving while the API server is away. `/readyz` turns ready after the
//! first complete list of every kind. The leader (a `coordination.k8s.io/v1` Lease) writes
//! Events, Policy status and the Ingresses' `status.loadBalancer`.

pub mod crd;
pub mod gateway;
mod leader;
mod status;
pub mod translate;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, future::BoxFuture};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressLoadBalancerIngress};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::routes::{Layer, RouteSink};
use translate::{Diagnostic, ObjectKey, Options, Snapshot, Translation};

/// How the controller is set up (`portcullis controller`'s flags, less the wiring ones).
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Watch only these namespaces; all namespaces when empty.
    pub namespaces: Vec<String>,
    /// Copy the addresses of this Service (NAMESPACE/NAME) into the Ingresses' status.
    pub publish_service: Option<String>,
    /// Put this IP address (or host name) into the Ingresses' status.
    pub publish_address: Option<String>,
    /// The IngressClass name this controller serves.
    pub ingress_class: String,
    /// The namespace of the leader-election Lease.
    pub lease_namespace: String,
    /// Seconds a leader's Lease stays valid without renewal (renewed every fifth of it).
    pub lease_seconds: u16,
    /// This replica's name in the Lease (the host name when absent).
    pub identity: Option<String>,
}

/// The Kubernetes controller: a producer of the route sink's cluster layer, run as a Pingora
/// background service.
pub struct Controller {
    args: ControllerOptions,
    sink: Arc<RouteSink>,
    kube_config: kube::Config,
    /// Failed watch attempts by kind (`portcullis_controller_watch_errors_total`).
    watch_errors: prometheus::IntCounterVec,
}

impl Controller {
    /// Its service name: Pingora's, and the `service` label of `portcullis_runtime_alive_tasks`.
    pub const NAME: &'static str = "kubernetes controller";

    /// `watch_errors`: the registered counter of failed watch attempts by kind.
    pub fn new(
        options: ControllerOptions,
        sink: Arc<RouteSink>,
        kube_config: kube::Config,
        watch_errors: prometheus::IntCounterVec,
    ) -> Controller {
        Controller {
            args: options,
            sink,
            kube_config,
            watch_errors,
        }
    }
}
#[async_trait]
impl BackgroundService for Controller {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        crate::metrics::count_tasks_of(Self::NAME);
        let client = match Client::try_from(self.kube_config.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot create the Kubernetes client");
                return;
            }
        };
        let identity = self.args.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "portcullis".into());
            format!("{host}-{}", std::process::id())
        });
        let lease = Arc::new(leader::Lease::new(
            Api::namespaced(client.clone(), &self.args.lease_namespace),
            format!("portcullis-{}", self.args.ingress_class),
            identity.clone(),
            self.args.lease_seconds,
        ));
        tokio::select! {
            _ = self.run(client, lease.clone(), identity) => {}
            _ = shutdown.changed() => {}
        }
        // Hand the Lease over at once instead of making a standby wait for it to expire.
        let _ = tokio::time::timeout(Duration::from_secs(2), lease.release()).await;
    }
}

/// The reflector stores, one per watched namespace (or one for all).
struct Stores {
    ingresses: Vec<Store<Ingress>>,
    classes: Vec<Store<IngressClass>>,
    services: Vec<Store<Service>>,
    slices: Vec<Store<EndpointSlice>>,
    secrets: Vec<Store<Secret>>,
    policies: Vec<Store<crd::Policy>>,
    /// Present when the Gateway API CRDs are installed.
    gateway: Option<GatewayStores>,
}

/// The Gateway API kinds' stores; a kind whose CRD is missing has none.
#[derive(Default, Clone)]
struct GatewayStores {
    classes: Vec<Store<gateway::types::GatewayClass>>,
    gateways: Vec<Store<gateway::types::Gateway>>,
    http_routes: Vec<Store<gateway::types::HTTPRoute>>,
    grpc_routes: Vec<Store<gateway::types::GRPCRoute>>,
    grants: Vec<Store<gateway::types::ReferenceGrant>>,
    backend_tls: Vec<Store<gateway::types::BackendTLSPolicy>>,
    /// For BackendTLSPolicies' CA certificates (watched with them). Not waited for: until
    /// `config_maps_listed`, policies that name a ConfigMap refuse their backends.
    config_maps: Vec<Store<ConfigMap>>,
    config_maps_listed: Arc<std::sync::atomic::AtomicBool>,
    namespaces: Vec<Store<Namespace>>,
}

impl GatewayStores {
    /// Add the stores of kinds watched later (this one has none of them yet).
    fn absorb(&mut self, later: GatewayStores) {
        self.classes.extend(later.classes);
        self.gateways.extend(later.gateways);
        self.http_routes.extend(later.http_routes);
        self.grpc_routes.extend(later.grpc_routes);
        self.grants.extend(later.grants);
        self.backend_tls.extend(later.backend_tls);
        if !later.config_maps.is_empty() {
            self.config_maps_listed = later.config_maps_listed;
        }
        self.config_maps.extend(later.config_maps);
        self.namespaces.extend(later.namespaces);
    }

    async fn ready(&self) -> bool {
        all_ready(&self.classes).await
            && all_ready(&self.gateways).await
            && all_ready(&self.http_routes).await
            && all_ready(&self.grpc_routes).await
            && all_ready(&self.grants).await
            && all_ready(&self.backend_tls).await
            && all_ready(&self.namespaces).await
    }

    fn read(&self) -> gateway::Objects {
        gateway::Objects {
            classes: read_all(&self.classes),
            gateways: read_all(&self.gateways),
            http_routes: read_all(&self.http_routes),
            grpc_routes: read_all(&self.grpc_routes),
            grants: read_all(&self.grants),
            backend_tls: read_all(&self.backend_tls),
            config_maps: read_all(&self.config_maps),
            config_maps_pending: !self.config_maps.is_empty()
                && !self
                    .config_maps_listed
                    .load(std::sync::atomic::Ordering::Acquire),
            namespaces: read_all(&self.namespaces)
                .into_iter()
                .filter_map(|n| {
                    Some((
                        n.metadata.name.clone()?,
                        n.metadata.labels.clone().unwrap_or_default(),
                    ))
                })
                .collect(),
        }
    }
}

/// Which Gateway API kinds the API server serves (their CRDs are installed).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct GatewayKinds {
    /// GatewayClass, Gateway and HTTPRoute: without them nothing of the Gateway API is watched.
    core: bool,
    grpc: bool,
    grants: bool,
    backend_tls: bool,
}

impl GatewayKinds {
    fn all(self) -> bool {
        self.core && self.grpc && self.grants && self.backend_tls
    }

    fn any(self) -> bool {
        self.core || self.grpc || self.grants || self.backend_tls
    }

    /// The kinds of `self` not in `watched`; none while neither has the core kinds (the
    /// others are of no use without them).
    fn beyond(self, watched: GatewayKinds) -> GatewayKinds {
        if !(self.core || watched.core) {
            return GatewayKinds::default();
        }
        GatewayKinds {
            core: self.core && !watched.core,
            grpc: self.grpc && !watched.grpc,
            grants: self.grants && !watched.grants,
            backend_tls: self.backend_tls && !watched.backend_tls,
        }
    }

    fn union(self, other: GatewayKinds) -> GatewayKinds {
        GatewayKinds {
            core: self.core || other.core,
            grpc: self.grpc || other.grpc,
            grants: self.grants || other.grants,
            backend_tls: self.backend_tls || other.backend_tls,
        }
    }
}

/// Gateway API kinds found after the start, watched but not yet listed: they join the
/// translation once `listed` says so, without holding up the passes meanwhile.
struct PendingKinds {
    kinds: GatewayKinds,
    stores: GatewayStores,
    handles: Vec<tokio::task::JoinHandle<()>>,
    listed: tokio::sync::oneshot::Receiver<bool>,
}

/// Ask discovery which Gateway API kinds exist. A group that is not there is a normal answer;
/// other failures are tried `attempts` times, then taken as "not installed" (logged; the loop
/// asks again later).
async fn gateway_kinds(client: &Client, attempts: u32) -> GatewayKinds {
    let resources = |version: &'static str| async move {
        for attempt in 0..attempts {
            match client
                .list_api_group_resources(&format!("{}/{version}", gateway::types::GROUP))
                .await
            {
                Ok(list) => {
                    return list
                        .resources
                        .into_iter()
                        .map(|r| r.name)
                        .collect::<BTreeSet<String>>();
                }
                Err(kube::Error::Api(e)) if e.code == 404 => return BTreeSet::new(),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "cannot ask discovery for the Gateway API");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        BTreeSet::new()
    };
    let v1 = resources("v1").await;
    let v1beta1 = resources("v1beta1").await;
    GatewayKinds {
        core: ["gatewayclasses", "gateways", "httproutes"]
            .iter()
            .all(|k| v1.contains(*k)),
        grpc: v1.contains("grpcroutes"),
        grants: v1beta1.contains("referencegrants"),
        backend_tls: v1.contains("backendtlspolicies"),
    }
}

/// What the stores hold now: shared with them, not copied (at 10,000 Ingresses a copy per
/// pass was the controller's largest allocation).
fn read_all<K>(stores: &[Store<K>]) -> Vec<Arc<K>>
where
    K: kube::runtime::reflector::Lookup + Clone,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    stores.iter().flat_map(|s| s.state()).collect()
}

async fn all_ready<K>(stores: &[Store<K>]) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    for s in stores {
        if s.wait_until_ready().await.is_err() {
            return false;
        }
    }
    true
}

type Task = BoxFuture<'static, ()>;

fn all() -> watcher::Config {
    watcher::Config::default()
}

/// The watchers' backoff after an error: 100 ms doubling to 1 s, so that once the API server is
/// back, changes made meanwhile are seen within about a second (kube's default grows to 30 s).
/// Back to 100 ms after a success.
#[derive(Debug, Clone, Copy)]
struct QuickBackoff {
    next: Duration,
}

impl QuickBackoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(1);
}

impl Default for QuickBackoff {
    fn default() -> Self {
        QuickBackoff { next: Self::FIRST }
    }
}

impl Iterator for QuickBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (now * 2).min(Self::MAX);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for QuickBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// The annotation in which client-side `kubectl apply` keeps the whole object as applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Reflect `apis` (objects matching `config`) into stores; every event pokes `tx`.
fn reflect<K>(
    apis: Vec<Api<K>>,
    config: watcher::Config,
    kind: &'static str,
    tx: &mpsc::Sender<()>,
    errors: &prometheus::IntCounterVec,
) -> (Vec<Store<K>>, Vec<Task>)
where
    K: Resource + kube::runtime::reflector::Lookup + Clone + DeserializeOwned + std::fmt::Debug,
    K: Send + Sync + 'static,
    <K as kube::runtime::reflector::Lookup>::DynamicType:
        Eq + std::hash::Hash + Clone + Default + Send + Sync,
{
    reflect_trimmed(apis, config, kind, tx, errors, |_: &mut K| {})
}

/// [`reflect`], with `trim` applied to every object before it is stored (to drop what is
/// never read).
fn reflect_trimmed<K>(
    apis: Vec<Api<K>>,
    config: watcher::Config,
    kind: &'static str,
    tx: &mpsc::Sender<()>,
    errors: &prometheus::IntCounterVec,
    trim: fn(&mut K),
) -> (Vec<Store<K>>, Vec<Task>)
where
    K: Resource + kube::runtime::reflector::Lookup + Clone + DeserializeOwned + std::fmt::Debug,
    K: Send + Sync + 'static,
    <K as kube::runtime::reflector::Lookup>::DynamicType:
        Eq + std::hash::Hash + Clone + Default + Send + Sync,
{
    let mut stores = Vec::new();
    let mut tasks: Vec<Task> = Vec::new();
    for api in apis {
        let (reader, writer) = reflector::store();
        let (tx, errors) = (tx.clone(), errors.with_label_values(&[kind]));
        // Managed fields and `kubectl apply`'s copy of the last applied object are never
        // read; dropping them halves what many objects take.
        let stream = reflector::reflector(
            writer,
            watcher(api, config.clone())
                .backoff(QuickBackoff::default())
                .modify(move |o| {
                    let meta = o.meta_mut();
                    meta.managed_fields = None;
                    if let Some(a) = meta.annotations.as_mut() {
                        a.remove(LAST_APPLIED);
                    }
                    trim(o);
                }),
        );
        tasks.push(Box::pin(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(_) => {
                        let _ = tx.try_send(());
                    }
                    Err(e) => {
                        errors.inc();
                        tracing::warn!(kind, error = %e, "watch failed; retrying");
                    }
                }
            }
        }));
        stores.push(reader);
    }
    (stores, tasks)
}

fn apis<K>(client: &Client, namespaces: &[String]) -> Vec<Api<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

impl Controller {
    /// Reflectors for the Gateway API kinds that `kinds` says to start (`core`: GatewayClasses,
    /// Gateways, HTTPRoutes and Namespaces), their stores and tasks; the kinds not started
    /// have no store, so that [`GatewayStores::absorb`] can add these to earlier ones.
    fn watch_gateway_api(
        &self,
        client: &Client,
        kinds: GatewayKinds,
        tx: &mpsc::Sender<()>,
    ) -> (GatewayStores, Vec<Task>) {
        let ns = &self.args.namespaces;
        let errors = &self.watch_errors;
        let mut tasks: Vec<Task> = Vec::new();
        let mut g = GatewayStores::default();
        if kinds.core {
            let (s, t) = reflect(
                vec![Api::all(client.clone())],
                all(),
                "GatewayClass",
                tx,
                errors,
            );
            g.classes = s;
            tasks.extend(t);
            let (s, t) = reflect(apis(client, ns), all(), "Gateway", tx, errors);
            g.gateways = s;
            tasks.extend(t);
            let (s, t) = reflect(apis(client, ns), all(), "HTTPRoute", tx, errors);
            g.http_routes = s;
            tasks.extend(t);
            let (s, t) = reflect(
                vec![Api::<Namespace>::all(client.clone())],
                all(),
                "Namespace",
                tx,
                errors,
            );
            g.namespaces = s;
            tasks.extend(t);
        }
        if kinds.grpc {
            let (s, t) = reflect(apis(client, ns), all(), "GRPCRoute", tx, errors);
            g.grpc_routes = s;
            tasks.extend(t);
        }
        if kinds.backend_tls {
            let (s, t) = reflect(apis(client, ns), all(), "BackendTLSPolicy", tx, errors);
            g.backend_tls = s;
            tasks.extend(t);
            // Only the key a BackendTLSPolicy reads is kept: ConfigMaps can be large.
            let (s, t) = reflect_trimmed(
                apis(client, ns),
                all(),
                "ConfigMap",
                tx,
                errors,
                |c: &mut ConfigMap| {
                    c.binary_data = None;
                    if let Some(d) = c.data.as_mut() {
                        d.retain(|k, _| k == "ca.crt");
                    }
                },
            );
            // Their first list is awaited beside the rest (see `GatewayStores::config_maps`).
            let (listed, stores, wake) = (g.config_maps_listed.clone(), s.clone(), tx.clone());
            tasks.push(Box::pin(async move {
                if all_ready(&stores).await {
                    listed.store(true, std::sync::atomic::Ordering::Release);
                    let _ = wake.try_send(());
                }
            }));
            g.config_maps = s;
            tasks.extend(t);
        }
        if kinds.grants {
            // Grants live in the namespace of what they grant: watched everywhere.
            let (s, t) = reflect(
                vec![Api::all(client.clone())],
                all(),
                "ReferenceGrant",
                tx,
                errors,
            );
            g.grants = s;
            tasks.extend(t);
        }
        (g, tasks)
    }

    async fn run(&self, client: Client, lease: Arc<leader::Lease>, identity: String) {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let ns = &self.args.namespaces;
        let mut tasks: Vec<Task> = Vec::new();
        let (ingresses, t) = reflect(
            apis::<Ingress>(&client, ns),
            all(),
            "Ingress",
            &tx,
            &self.watch_errors,
        );
        tasks.extend(t);
        let (classes, t) = reflect(
            vec![Api::<IngressClass>::all(client.clone())],
            all(),
            "IngressClass",
            &tx,
            &self.watch_errors,
        );
        tasks.extend(t);
        // Services and EndpointSlices are kept with only what translation reads: clusters
        // have many, and most of each is never looked at.
        let (services, t) = reflect_trimmed(
            apis::<Service>(&client, ns),
            all(),
            "Service",
            &tx,
            &self.watch_errors,
            translate::trim_service,
        );
        tasks.extend(t);
        let (slices, t) = reflect_trimmed(
            apis::<EndpointSlice>(&client, ns),
            all(),
            "EndpointSlice",
            &tx,
            &self.watch_errors,
            translate::trim_slice,
        );
        tasks.extend(t);
        let (secrets, t) = reflect(
            apis::<Secret>(&client, ns),
            // TLS Secrets, and the ones annotations may name (headers, CA, service-account
            // tokens); never Helm's release records, the largest Secrets of most clusters.
            watcher::Config::default().fields("type!=helm.sh/release.v1"),
            "Secret",
            &tx,
            &self.watch_errors,
        );
        tasks.extend(t);
        let (policies, t) = reflect(
            apis::<crd::Policy>(&client, ns),
            all(),
            "Policy",
            &tx,
            &self.watch_errors,
        );
        tasks.extend(t);
        let kinds = gateway_kinds(&client, 5).await;
        let mut watched = kinds.beyond(GatewayKinds::default());
        let gateway = if kinds.core {
            tracing::info!(
                grpc_routes = kinds.grpc,
                reference_grants = kinds.grants,
                backend_tls_policies = kinds.backend_tls,
                "the Gateway API CRDs are installed: watching GatewayClasses, Gateways and routes"
            );
            let (g, t) = self.watch_gateway_api(&client, kinds, &tx);
            tasks.extend(t);
            Some(g)
        } else {
            tracing::info!(
                "the Gateway API CRDs (gateway.networking.k8s.io/v1) are not installed: only Ingresses are watched (looked for again every 30 s)"
            );
            None
        };
        let mut stores = Stores {
            ingresses,
            classes,
            services,
            slices,
            secrets,
            policies,
            gateway,
        };
        for t in tasks {
            tokio::spawn(t);
        }

        let is_leader = lease.flag();
        let lease_task = {
            let lease_tx = tx.clone();
            tokio::spawn(async move { lease.run(lease_tx).await })
        };
        // Stop renewing when this future is dropped (shutdown), so the release sticks.
        struct AbortOnDrop(tokio::task::JoinHandle<()>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let _lease_task = AbortOnDrop(lease_task);

        // The first table only once every kind has been listed completely.
        tracing::info!(
            "waiting for the first list of Ingresses, IngressClasses, Services, EndpointSlices, Secrets and Policies"
        );
        let ready = all_ready(&stores.ingresses).await
            && all_ready(&stores.classes).await
            && all_ready(&stores.services).await
            && all_ready(&stores.slices).await
            && all_ready(&stores.secrets).await
            && all_ready(&stores.policies).await
            && match &stores.gateway {
                Some(g) => g.ready().await,
                None => true,
            };
        if !ready {
            tracing::error!("a watch stopped before its first list");
            return;
        }
        let writer = Writer {
            client: client.clone(),
            reporter: Reporter {
                controller: "portcullis".into(),
                instance: Some(identity),
            },
            reported: BTreeMap::new(),
            args: self.args.clone(),
        };
        // The leader's writes (an Event per Ingress on the first pass: minutes of API calls
        // with thousands of Ingresses) run in their own task on the latest pass, so they never
        // delay serving a change.
        let (passes, latest) = tokio::sync::watch::channel(None);
        let _writer_task = AbortOnDrop(tokio::spawn(writer.run(latest, is_leader)));
        let mut first = true;
        let mut gateway_looked_for = std::time::Instant::now();
        let mut pending: Option<PendingKinds> = None;
        loop {
            // Collect a burst of changes into one translation.
            tokio::time::sleep(Duration::from_millis(100)).await;
            while rx.try_recv().is_ok() {}
            // CRDs installed after the start (or a discovery that failed then) are picked up
            // here, the optional kinds too; the loop wakes at least every 30 s. Their first
            // list is awaited beside the passes, never in them.
            if pending.is_none()
                && !watched.all()
                && gateway_looked_for.elapsed() >= Duration::from_secs(30)
            {
                gateway_looked_for = std::time::Instant::now();
                let new = gateway_kinds(&client, 1).await.beyond(watched);
                if new.any() {
                    tracing::info!(
                        core = new.core,
                        grpc_routes = new.grpc,
                        reference_grants = new.grants,
                        backend_tls_policies = new.backend_tls,
                        "more Gateway API CRDs are installed now: watching them"
                    );
                    let (g, t) = self.watch_gateway_api(&client, new, &tx);
                    let handles: Vec<_> = t.into_iter().map(tokio::spawn).collect();
                    let (done, listed) = tokio::sync::oneshot::channel();
                    let (waiting, wake) = (g.clone(), tx.clone());
                    tokio::spawn(async move {
                        // A missing permission would keep them from ever listing: give up
                        // after a while, and look again later.
                        let ok = tokio::time::timeout(Duration::from_secs(60), waiting.ready())
                            .await
                            .unwrap_or(false);
                        let _ = done.send(ok);
                        let _ = wake.try_send(());
                    });
                    pending = Some(PendingKinds {
                        kinds: new,
                        stores: g,
                        handles,
                        listed,
                    });
                }
            }
            if let Some(p) = pending.as_mut() {
                match p.listed.try_recv() {
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
                    Ok(true) => {
                        if let Some(p) = pending.take() {
                            watched = watched.union(p.kinds);
                            match stores.gateway.as_mut() {
                                Some(g) => g.absorb(p.stores),
                                None => stores.gateway = Some(p.stores),
                            }
                        }
                    }
                    Ok(false) | Err(_) => {
                        tracing::warn!(
                            "the newly installed Gateway API kinds could not be listed within 60 s; trying again in 30 s"
                        );
                        if let Some(p) = pending.take() {
                            p.handles.iter().for_each(|h| h.abort());
                        }
                        gateway_looked_for = std::time::Instant::now();
                    }
                }
            }
            let started = std::time::Instant::now();
            let snapshot = Snapshot {
                ingresses: read_all(&stores.ingresses),
                classes: read_all(&stores.classes),
                services: read_all(&stores.services),
                slices: read_all(&stores.slices),
                secrets: read_all(&stores.secrets),
                policies: read_all(&stores.policies),
                gateway: stores
                    .gateway
                    .as_ref()
                    .map(GatewayStores::read)
                    .unwrap_or_default(),
                options: Options {
                    ingress_class: self.args.ingress_class.clone(),
                    ..Options::default()
                },
            };
            let took_snapshot = started.elapsed();
            let mut t = translate::translate(&snapshot);
            let took_translate = started.elapsed() - took_snapshot;
            // The routes move into the sink; the writer below needs the rest only.
            let changed = self.publish(&mut t, took_snapshot, took_translate).await;
            if first {
                self.sink.mark_ready();
                first = false;
            }
            // The previous pass is freed here (unless the writer still holds it).
            passes.send_replace(Some(Arc::new((snapshot, t))));
            // Only after a pass that swapped in a new table: the 30 s wake-ups and passes that
            // change nothing leave the proxy's pages alone.
            if changed {
                give_back_memory();
            }
            // Wake on a change, or every 30 s to retry writes that failed.
            if let Ok(None) = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                return;
            }
        }
    }

    /// Publish a translation, moving its routes into the sink (at 10,000 Ingresses a copy of
    /// them was the controller's largest allocation after the table itself); `snapshot` and
    /// `translate` are how long reading the stores and translating took (logged with the
    /// publish time). Whether the served table changed.
    async fn publish(&self, t: &mut Translation, snapshot: Duration, translate: Duration) -> bool {
        let started = std::time::Instant::now();
        let routes = std::mem::take(&mut t.routes);
        let count = routes.len();
        let published = self
            .sink
            .publish(Layer::Cluster, routes, t.certs.clone())
            .await;
        if published.changed {
            tracing::info!(
                routes = count,
                certificates = t.certs.len(),
                snapshot_ms = ms(snapshot),
                translate_ms = ms(translate),
                publish_ms = ms(started.elapsed()),
                "published routes from the cluster"
            );
        }
        for d in &t.diagnostics {
            tracing::debug!(object = %d.object, reason = d.reason, message = %d.message, "diagnostic");
        }
        published.changed
    }
}

/// Hand memory freed since the last pass (the previous translation and table, the watch's
/// decoding buffers) back to the system. mimalloc keeps freed pages for reuse, which at 10,000
/// Ingresses left about 30 MiB resident after the first table. It collects this thread's heap
/// and purges every arena of the process (pages the proxy workers freed too, which they then
/// fault in again), so it runs only after a pass that swapped in a new table (at most once
/// per debounced change), never on a request's path. Nothing happens when mimalloc is not
/// the allocator (tests).
fn give_back_memory() {
    // SAFETY: `mi_collect` takes no pointer and only walks mimalloc's own structures; it may
    // be called at any time from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Milliseconds with a fraction, for logs.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

type Reported = BTreeMap<ObjectKey, BTreeSet<(String, String)>>;

/// Which Events to write, given what was reported before: a Warning for each diagnostic not
/// reported yet; a Normal `Served` for an Ingress seen clean for the first time or clean again.
/// Returns the new "reported" state and the Events as (object, warning?, reason, message).
fn plan_events(
    before: &Reported,
    t: &Translation,
) -> (Reported, Vec<(ObjectKey, bool, String, String)>) {
    let mut now: Reported = BTreeMap::new();
    for key in &t.owned {
        now.entry(key.clone()).or_default();
    }
    for Diagnostic {
        object,
        reason,
        message,
    } in t.diagnostics.iter().chain(&t.notices)
    {
        now.entry(object.clone())
            .or_default()
            .insert((reason.to_string(), message.clone()));
    }
    // Notices are reported once, as Normal Events, and do not make an Ingress unclean.
    let problems = |set: &BTreeSet<(String, String)>| {
        set.iter()
            .filter(|(reason, _)| reason != translate::IGNORED_ANNOTATION)
            .count()
    };
    let mut events = Vec::new();
    for (key, diags) in &now {
        let earlier = before.get(key);
        for (reason, message) in diags {
            if !earlier.is_some_and(|b| b.contains(&(reason.clone(), message.clone()))) {
                let warning = reason != translate::IGNORED_ANNOTATION;
                events.push((key.clone(), warning, reason.clone(), message.clone()));
            }
        }
        let clean = problems(diags) == 0;
        let recovered = earlier.is_some_and(|b| problems(b) > 0) && clean;
        if recovered || (earlier.is_none() && clean) {
            events.push((
                key.clone(),
                false,
                "Served".to_string(),
                "all rules and paths are served".to_string(),
            ));
        }
    }
    (now, events)
}

/// What only the leader writes: Events, Policy status, Ingress status.
struct Writer {
    client: Client,
    /// Who writes the Events (a [`Recorder`] is made per Event, see [`Writer::event`]).
    reporter: Reporter,
    /// Per object, the diagnostics last reported as Events.
    reported: Reported,
    args: ControllerOptions,
}

/// A translation and the snapshot it was made from.
type Pass = Option<Arc<(Snapshot, Translation)>>;

impl Writer {
    /// Write for each pass (skipping those that came in meanwhile) while leading; forget what
    /// was reported while not, so a new term reports afresh.
    async fn run(
        mut self,
        mut passes: tokio::sync::watch::Receiver<Pass>,
        leader: Arc<AtomicBool>,
    ) {
        while passes.changed().await.is_ok() {
            let Some(pass) = passes.borrow_and_update().clone() else {
                continue;
            };
            if !leader.load(Ordering::Acquire) {
                self.reported.clear();
                continue;
            }
            let started = std::time::Instant::now();
            self.write(&pass.0, &pass.1).await;
            let took = started.elapsed();
            if took > Duration::from_millis(500) {
                tracing::info!(write_ms = ms(took), "wrote Events and status");
            }
        }
    }

    async fn write(&mut self, snap: &Snapshot, t: &Translation) {
        self.events(snap, t).await;
        self.policy_status(snap, t).await;
        self.ingress_status(snap, t).await;
        if t.gateway != gateway::Reports::default() {
            let addresses = self.addresses().await.map(|list| {
                list.into_iter()
                    .filter_map(|a| match (a.ip, a.hostname) {
                        (Some(ip), _) => Some(gateway::types::GatewayAddress {
                            type_: "IPAddress".into(),
                            value: ip,
                        }),
                        (None, Some(h)) => Some(gateway::types::GatewayAddress {
                            type_: "Hostname".into(),
                            value: h,
                        }),
                        _ => None,
                    })
                    .collect()
            });
            status::write(&self.client, snap, &t.gateway, addresses).await;
        }
    }

    async fn events(&mut self, snap: &Snapshot, t: &Translation) {
        let (now, planned) = plan_events(&self.reported, t);
        // Looked up by name: one Event per object on the first pass.
        let ingresses = translate::ByName::new(&snap.ingresses);
        let http_routes = translate::ByName::new(&snap.gateway.http_routes);
        let grpc_routes = translate::ByName::new(&snap.gateway.grpc_routes);
        for (key, warning, reason, message) in planned {
            let (ns, name) = (key.namespace.as_str(), key.name.as_str());
            let reference = match key.kind {
                "HTTPRoute" => http_routes.get(ns, name).map(|r| r.object_ref(&())),
                "GRPCRoute" => grpc_routes.get(ns, name).map(|r| r.object_ref(&())),
                _ => ingresses.get(ns, name).map(|i| i.object_ref(&())),
            };
            let Some(reference) = reference else {
                continue;
            };
            let type_ = if warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            self.event(&reference, type_, &reason, &message).await;
        }
        self.reported = now;
    }

    async fn event(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(message.chars().take(1000).collect()),
            action: "Translate".to_string(),
            secondary: None,
        };
        // A Recorder of its own per Event: kube's Recorder keeps every Event it wrote for a few
        // minutes, to turn a repeat into a series; plan_events reports a diagnostic once while
        // it lasts, so that cache would only hold memory (about 26 MB after the first pass at
        // 10,000 Ingresses).
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        if let Err(e) = recorder.publish(&ev, reference).await {
            tracing::warn!(error = %e, reason, "cannot write an Event");
        }
    }

    async fn policy_status(&self, snap: &Snapshot, t: &Translation) {
        let policies = translate::ByName::new(&snap.policies);
        for result in &t.policies {
            let Some(obj) = policies.get(&result.object.namespace, &result.object.name) else {
                continue;
            };
            let (status, reason, message) = match &result.error {
                None => ("True", "Compiled", "the policy compiled".to_string()),
                Some(e) => ("False", "Invalid", e.clone()),
            };
            let current = obj.status.as_ref();
            let existing =
                current.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Accepted"));
            let unchanged = existing.is_some_and(|c| {
                c.status == status
                    && c.reason == reason
                    && c.message == message
                    && c.observed_generation == result.generation
            }) && current.and_then(|s| s.observed_generation) == result.generation;
            if unchanged {
                continue;
            }
            let since = existing
                .filter(|c| c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
            let condition = Condition {
                type_: "Accepted".into(),
                status: status.into(),
                reason: reason.into(),
                message,
                observed_generation: result.generation,
                last_transition_time: since,
            };
            let patch = serde_json::json!({
                "status": {"conditions": [condition], "observedGeneration": result.generation}
            });
            let api: Api<crd::Policy> =
                Api::namespaced(self.client.clone(), &result.object.namespace);
            if let Err(e) = api
                .patch_status(
                    &result.object.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                tracing::warn!(policy = %result.object, error = %e, "cannot write Policy status");
            }
        }
    }

    async fn addresses(&self) -> Option<Vec<IngressLoadBalancerIngress>> {
        if let Some(addr) = &self.args.publish_address {
            let entry = if addr.parse::<std::net::IpAddr>().is_ok() {
                IngressLoadBalancerIngress {
                    ip: Some(addr.clone()),
                    ..Default::default()
                }
            } else {
                IngressLoadBalancerIngress {
                    hostname: Some(addr.clone()),
                    ..Default::default()
                }
            };
            return Some(vec![entry]);
        }
        let (ns, name) = self.args.publish_service.as_deref()?.split_once('/')?;
        let api: Api<Service> = Api::namespaced(self.client.clone(), ns);
        let svc = match api.get(name).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(service = %format!("{ns}/{name}"), error = %e, "cannot read the publish Service");
                return None;
            }
        };
        let from_lb: Vec<IngressLoadBalancerIngress> = svc
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .unwrap_or_default()
            .into_iter()
            .map(|i| IngressLoadBalancerIngress {
                ip: i.ip,
                hostname: i.hostname,
                ports: None,
            })
            .collect();
        if !from_lb.is_empty() {
            return Some(from_lb);
        }
        let spec = svc.spec.unwrap_or_default();
        let ips = match spec.external_ips {
            Some(ips) if !ips.is_empty() => ips,
            _ => spec
                .cluster_ip
                .into_iter()
                .filter(|ip| ip != "None")
                .collect(),
        };
        Some(
            ips.into_iter()
                .map(|ip| IngressLoadBalancerIngress {
                    ip: Some(ip),
                    ..Default::default()
                })
                .collect(),
        )
    }

    async fn ingress_status(&self, snap: &Snapshot, t: &Translation) {
        if t.owned.is_empty() {
            return;
        }
        let Some(addresses) = self.addresses().await else {
            return;
        };
        let ingresses = translate::ByName::new(&snap.ingresses);
        for key in &t.owned {
            let Some(ing) = ingresses.get(&key.namespace, &key.name) else {
                continue;
            };
            let current = ing
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.clone())
                .unwrap_or_default();
            if current == addresses {
                continue;
            }
            let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": addresses}}});
            let api: Api<Ingress> = Api::namespaced(self.client.clone(), &key.namespace);
            if let Err(e) = api
                .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(ingress = %key, error = %e, "cannot write Ingress status");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_written_once_per_change() {
        let key = |name: &str| ObjectKey {
            kind: "Ingress",
            namespace: "ns".into(),
            name: name.into(),
        };
        let diag = |name: &str, reason: &'static str| Diagnostic {
            object: key(name),
            reason,
            message: format!("{reason} message"),
        };
        let round = |before: &Reported, diags: Vec<Diagnostic>| {
            let t = Translation {
                owned: vec![key("a"), key("b")],
                diagnostics: diags,
                ..Translation::default()
            };
            plan_events(before, &t)
        };
        let summary = |events: &[(ObjectKey, bool, String, String)]| -> Vec<String> {
            events
                .iter()
                .map(|(k, w, r, _)| format!("{} {} {r}", k.name, if *w { "W" } else { "N" }))
                .collect()
        };
        // First sight: a is broken, b is clean.
        let (state, ev) = round(&Reported::new(), vec![diag("a", "UnknownAnnotation")]);
        assert_eq!(summary(&ev), vec!["a W UnknownAnnotation", "b N Served"]);
        // Nothing new: nothing written.
        let (state, ev) = round(&state, vec![diag("a", "UnknownAnnotation")]);
        assert!(ev.is_empty(), "{ev:?}");
        // A second problem on a: only it is written.
        let (state, ev) = round(
            &state,
            vec![diag("a", "UnknownAnnotation"), diag("a", "Conflict")],
        );
        assert_eq!(summary(&ev), vec!["a W Conflict"]);
        // a is fixed: Normal once.
        let (state, ev) = round(&state, Vec::new());
        assert_eq!(summary(&ev), vec!["a N Served"]);
        let (_, ev) = round(&state, Vec::new());
        assert!(ev.is_empty());
    }

    #[test]
    fn ignored_annotations_are_one_normal_event_and_the_ingress_stays_clean() {
        let a = ObjectKey {
            kind: "Ingress",
            namespace: "ns".into(),
            name: "a".into(),
        };
        let t = Translation {
            owned: vec![a.clone()],
            notices: vec![Diagnostic {
                object: a.clone(),
                reason: translate::IGNORED_ANNOTATION,
                message: "ingress.pomerium.io/logo_url: accepted".into(),
            }],
            ..Translation::default()
        };
        let (state, ev) = plan_events(&Reported::new(), &t);
        let kinds: Vec<(bool, &str)> = ev.iter().map(|(_, w, r, _)| (*w, r.as_str())).collect();
        assert_eq!(
            kinds,
            vec![(false, translate::IGNORED_ANNOTATION), (false, "Served")]
        );
        let (_, ev) = plan_events(&state, &t);
        assert!(ev.is_empty(), "reported once: {ev:?}");
    }
}
