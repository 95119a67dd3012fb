//! Gateway API objects → routes in the same table as Ingresses, and the status the
//! specification asks for. Pure, like [`super::translate`]: objects in, routes and reports out.
//!
//! GatewayClasses naming [`CONTROLLER_NAME`] are accepted; their Gateways' HTTP and HTTPS
//! listeners take HTTPRoutes and GRPCRoutes whose `parentRefs` name them (and, with
//! `sectionName`, one listener). A route's hostnames are intersected with each listener's;
//! each rule match becomes one route per host. The policy of a rule is the merge of the
//! `portcullis.dev/Policy` objects its `ExtensionRef` filters name; a rule without one denies
//! every request, as an Ingress without a policy does.

pub mod backend_tls;
pub mod features;
pub mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::networking::v1::{IngressBackend, IngressServiceBackend, ServiceBackendPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::translate::{Diagnostic, Index, ObjectKey, Snapshot, Translation, tls_pair, upstreams};
use crate::config::{
    CertificatePair, Direct, HostPattern, PathMatch, Redirect, RequestMatch, Route, RouteOptions,
    Upstream, ValueMatch,
};
use crate::ppl::{LegacyOptions, Policy};
use types::{
    BackendRef, GRPCRoute, Gateway, GatewayClass, HTTPRoute, HttpFilter, Listener, NamespaceLabels,
    ParentRef, ReferenceGrant, RouteGroupKind,
};

/// `spec.controllerName` of the GatewayClasses this controller implements.
pub const CONTROLLER_NAME: &str = "portcullis.dev/gateway-controller";
/// The group and kind of our `Policy`, as an `ExtensionRef` filter names it.
pub const POLICY_GROUP: &str = "portcullis.dev";
pub const POLICY_KIND: &str = "Policy";

/// Every Gateway API object the translation reads (empty when the CRDs are not installed).
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub classes: Vec<Arc<GatewayClass>>,
    pub gateways: Vec<Arc<Gateway>>,
    pub http_routes: Vec<Arc<HTTPRoute>>,
    pub grpc_routes: Vec<Arc<GRPCRoute>>,
    pub grants: Vec<Arc<ReferenceGrant>>,
    pub backend_tls: Vec<Arc<types::BackendTLSPolicy>>,
    /// ConfigMaps, for the CA certificates BackendTLSPolicies name (watched only when the
    /// BackendTLSPolicy CRD is installed; only their `ca.crt` is kept).
    pub config_maps: Vec<Arc<k8s_openapi::api::core::v1::ConfigMap>>,
    /// The ConfigMaps' first listing has not completed (no permission to list them, say):
    /// a policy naming one cannot be honoured yet.
    pub config_maps_pending: bool,
    /// Namespace labels, for `allowedRoutes.namespaces.from: Selector`.
    pub namespaces: NamespaceLabels,
}

/// One status condition as the controller decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Cond {
    fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Cond {
        Cond {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassReport {
    pub name: String,
    pub generation: Option<i64>,
    pub conditions: Vec<Cond>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerReport {
    pub name: String,
    pub supported_kinds: Vec<RouteGroupKind>,
    pub attached_routes: i32,
    pub conditions: Vec<Cond>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayReport {
    pub object: ObjectKey,
    pub generation: Option<i64>,
    pub conditions: Vec<Cond>,
    pub listeners: Vec<ListenerReport>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentReport {
    pub parent: ParentRef,
    pub conditions: Vec<Cond>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteReport {
    /// `kind` is `HTTPRoute` or `GRPCRoute`.
    pub object: ObjectKey,
    pub generation: Option<i64>,
    pub parents: Vec<ParentReport>,
}

/// The status to write for every Gateway API object of ours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reports {
    pub classes: Vec<ClassReport>,
    pub gateways: Vec<GatewayReport>,
    pub routes: Vec<RouteReport>,
    pub backend_tls: Vec<backend_tls::PolicyReport>,
    /// Which BackendTLSPolicy (namespace, name) a route attached to which Gateway
    /// (namespace, name) reaches a backend through: the policies' ancestors.
    tls_uses: TlsUses,
}

/// A namespace and a name.
pub type NsName = (String, String);
/// A route attached to `gateway` reaches a backend that `policy` targets: through it, or not
/// (`lost_to`: the policy that took precedence).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TlsUse {
    pub policy: NsName,
    pub gateway: NsName,
    pub lost_to: Option<String>,
}
pub type TlsUses = BTreeSet<TlsUse>;
/// A BackendTLSPolicy that targets a backend, and the one that took precedence over it (if
/// not itself).
type TargetedBy = (NsName, Option<String>);

/// What a rule's `backendRefs` resolve to.
struct Backends {
    /// Each endpoint weighted so that every backend gets its `weight` share whatever its
    /// number of endpoints.
    to: Vec<Upstream>,
    /// The first reference that did not resolve (reason, message), whose share is dropped.
    failure: Option<(&'static str, String)>,
    /// The BackendTLSPolicies that target a backend: (policy, the one that took precedence
    /// over it, if not itself).
    tls_policies: Vec<TargetedBy>,
}

/// A listener ready to take routes.
struct Ready<'a> {
    gateway: &'a Gateway,
    gateway_ns: String,
    listener: &'a Listener,
    index: usize,
    kinds: Vec<RouteGroupKind>,
    https: bool,
}

fn key(
    kind: &'static str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
    }
}

/// Translate the Gateway API objects of `snap` into routes (after the Ingresses' in `out`,
/// sharing their `claims`, so a Gateway route that claims an Ingress's host and path is a
/// conflict reported on the route).
pub(super) fn translate(
    snap: &Snapshot,
    index: &Index<'_>,
    policies: &HashMap<(String, String), Result<Policy, String>>,
    claims: &mut HashMap<(HostPattern, String), String>,
    out: &mut Translation,
) {
    let objects = &snap.gateway;
    let mut reports = Reports::default();
    let ours: Vec<&str> = objects
        .classes
        .iter()
        .filter(|c| c.spec.controller_name == CONTROLLER_NAME)
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    for c in objects
        .classes
        .iter()
        .filter(|c| c.spec.controller_name == CONTROLLER_NAME)
    {
        reports.classes.push(ClassReport {
            name: c.metadata.name.clone().unwrap_or_default(),
            generation: c.metadata.generation,
            conditions: vec![Cond::new(
                "Accepted",
                true,
                "Accepted",
                "handled by Portcullis",
            )],
        });
    }

    // Listeners of our Gateways.
    let mut ready: Vec<Ready> = Vec::new();
    let mut gateways: Vec<&Gateway> = objects
        .gateways
        .iter()
        .filter(|g| ours.contains(&g.spec.gateway_class_name.as_str()))
        .map(|g| &**g)
        .collect();
    gateways.sort_by_key(|g| age(&g.metadata));
    for gw in &gateways {
        let gkey = key("Gateway", &gw.metadata);
        let mut listeners = Vec::new();
        let mut valid = 0;
        for (i, l) in gw.spec.listeners.iter().enumerate() {
            let (report, ok) = listener(snap, index, gw, &gkey, i, l, out);
            if let Some(r) = ok {
                ready.push(r);
                valid += 1;
            }
            listeners.push(report);
        }
        let conditions = if valid == 0 && !gw.spec.listeners.is_empty() {
            vec![
                Cond::new(
                    "Accepted",
                    false,
                    "ListenersNotValid",
                    "no listener is valid",
                ),
                Cond::new("Programmed", false, "Invalid", "no listener is valid"),
            ]
        } else {
            vec![
                Cond::new("Accepted", true, "Accepted", "handled by Portcullis"),
                Cond::new(
                    "Programmed",
                    true,
                    "Programmed",
                    "its listeners are in the route table",
                ),
            ]
        };
        reports.gateways.push(GatewayReport {
            object: gkey,
            generation: gw.metadata.generation,
            conditions,
            listeners,
        });
    }

    let lookups = Lookups {
        index,
        policies,
        tls: backend_tls::Verdicts::new(snap),
    };
    // Routes, oldest first (the first claim of a host and path wins).
    let mut routes: Vec<RouteInput> = objects
        .http_routes
        .iter()
        .map(|r| RouteInput::http(r))
        .chain(objects.grpc_routes.iter().map(|r| RouteInput::grpc(r)))
        .collect();
    routes.sort_by_key(|r| (age(r.meta), r.kind));
    for route in &routes {
        let report = attach(snap, route, &ready, &mut reports, &lookups, claims, out);
        if let Some(r) = report {
            reports.routes.push(r);
        }
    }
    reports.backend_tls = backend_tls::reports(snap, &lookups.tls, &reports.tls_uses);
    out.gateway = reports;
}

fn age(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> (Option<k8s_openapi::jiff::Timestamp>, String, String) {
    (
        meta.creation_timestamp.as_ref().map(|t| t.0),
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The kinds a listener of this protocol can take.
fn default_kinds() -> Vec<RouteGroupKind> {
    ["HTTPRoute", "GRPCRoute"]
        .iter()
        .map(|k| RouteGroupKind {
            group: Some(types::GROUP.to_string()),
            kind: k.to_string(),
        })
        .collect()
}

/// Check one listener: its report, and the listener when it can take routes.
fn listener<'a>(
    snap: &Snapshot,
    objects: &Index<'_>,
    gw: &'a Gateway,
    gkey: &ObjectKey,
    index: usize,
    l: &'a Listener,
    out: &mut Translation,
) -> (ListenerReport, Option<Ready<'a>>) {
    let mut report = ListenerReport {
        name: l.name.clone(),
        supported_kinds: Vec::new(),
        attached_routes: 0,
        conditions: Vec::new(),
    };
    let field = format!("spec.listeners[{index}]");
    let https = match l.protocol.as_str() {
        "HTTP" => false,
        "HTTPS" => true,
        other => {
            let msg = format!("{field}.protocol: {other:?} is not supported (HTTP, HTTPS)");
            report.conditions = vec![
                Cond::new("Accepted", false, "UnsupportedProtocol", &msg),
                Cond::new("Programmed", false, "Invalid", &msg),
                Cond::new("ResolvedRefs", true, "ResolvedRefs", ""),
            ];
            return (report, None);
        }
    };
    // Kinds: the ones asked for that we serve; others make ResolvedRefs false.
    let mut resolved = Cond::new(
        "ResolvedRefs",
        true,
        "ResolvedRefs",
        "all references resolved",
    );
    let kinds = match l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()) {
        None => default_kinds(),
        Some(asked) => {
            let mut kinds = Vec::new();
            for k in asked {
                let group = k.group.as_deref().unwrap_or(types::GROUP);
                if group == types::GROUP && (k.kind == "HTTPRoute" || k.kind == "GRPCRoute") {
                    kinds.push(RouteGroupKind {
                        group: Some(types::GROUP.to_string()),
                        kind: k.kind.clone(),
                    });
                } else {
                    resolved = Cond::new(
                        "ResolvedRefs",
                        false,
                        "InvalidRouteKinds",
                        format!(
                            "{field}.allowedRoutes.kinds: {group}/{} is not supported",
                            k.kind
                        ),
                    );
                }
            }
            kinds
        }
    };
    report.supported_kinds = kinds.clone();
    if let Some(hostname) = &l.hostname
        && HostPattern::parse(hostname).is_err()
    {
        let msg = format!("{field}.hostname: {hostname:?} is not a host name");
        report.conditions = vec![
            Cond::new("Accepted", false, "UnsupportedValue", &msg),
            Cond::new("Programmed", false, "Invalid", &msg),
            resolved,
        ];
        return (report, None);
    }
    if https {
        let tls = l.tls.clone().unwrap_or_default();
        if tls.mode.as_deref().is_some_and(|m| m != "Terminate") {
            let msg = format!("{field}.tls.mode: only Terminate is supported");
            report.conditions = vec![
                Cond::new("Accepted", false, "UnsupportedValue", &msg),
                Cond::new("Programmed", false, "Invalid", &msg),
                resolved,
            ];
            return (report, None);
        }
        for (ci, cref) in tls.certificate_refs.iter().enumerate() {
            let at = format!("{field}.tls.certificateRefs[{ci}]");
            match certificate(snap, objects, gkey, cref) {
                Ok(cert) => {
                    if !out.certs.iter().any(|c| c.origin == cert.origin) {
                        out.certs.push(cert);
                    }
                }
                Err((reason, msg)) => {
                    resolved = Cond::new("ResolvedRefs", false, reason, format!("{at}: {msg}"));
                }
            }
        }
        if tls.certificate_refs.is_empty() {
            resolved = Cond::new(
                "ResolvedRefs",
                false,
                "InvalidCertificateRef",
                format!("{field}.tls.certificateRefs: an HTTPS listener needs a certificate"),
            );
        }
    }
    let ok = resolved.status;
    report.conditions = vec![
        Cond::new("Accepted", true, "Accepted", "the listener is served"),
        if ok {
            Cond::new("Programmed", true, "Programmed", "in the route table")
        } else {
            Cond::new("Programmed", false, "Invalid", resolved.message.clone())
        },
        resolved,
    ];
    // A listener whose certificate is missing still serves (the default certificate), as an
    // Ingress whose TLS Secret is missing does; a kind we do not serve only narrows its kinds.
    let ready = Ready {
        gateway: gw,
        gateway_ns: gkey.namespace.clone(),
        listener: l,
        index,
        kinds,
        https,
    };
    (report, Some(ready))
}

/// A certificate reference of a listener, loaded.
fn certificate(
    snap: &Snapshot,
    index: &Index<'_>,
    gkey: &ObjectKey,
    cref: &types::ObjectRef,
) -> Result<CertificatePair, (&'static str, String)> {
    let group = cref.group.as_deref().unwrap_or("");
    let kind = cref.kind.as_deref().unwrap_or("Secret");
    if !group.is_empty() || kind != "Secret" {
        return Err((
            "InvalidCertificateRef",
            format!("{group}/{kind} is not a Secret"),
        ));
    }
    let ns = cref
        .namespace
        .clone()
        .unwrap_or_else(|| gkey.namespace.clone());
    if ns != gkey.namespace
        && !granted(
            &snap.gateway.grants,
            "Gateway",
            &gkey.namespace,
            "",
            "Secret",
            &ns,
            &cref.name,
        )
    {
        return Err((
            "RefNotPermitted",
            format!(
                "Secret {ns}/{} is in another namespace and no ReferenceGrant allows it",
                cref.name
            ),
        ));
    }
    let secret = index.secret(&ns, &cref.name).ok_or_else(|| {
        (
            "InvalidCertificateRef",
            format!("no Secret {ns}/{}", cref.name),
        )
    })?;
    let cert = tls_pair(secret).map_err(|e| {
        (
            "InvalidCertificateRef",
            format!("Secret {ns}/{}: {e}", cref.name),
        )
    })?;
    Ok(CertificatePair {
        origin: format!("{ns}/{}", cref.name),
        cert,
    })
}

/// Whether a ReferenceGrant in `to_ns` lets a `from_kind` of `from_ns` refer to the named
/// object of `to_group`/`to_kind`.
pub fn granted(
    grants: &[Arc<ReferenceGrant>],
    from_kind: &str,
    from_ns: &str,
    to_group: &str,
    to_kind: &str,
    to_ns: &str,
    to_name: &str,
) -> bool {
    grants
        .iter()
        .filter(|g| g.metadata.namespace.as_deref() == Some(to_ns))
        .any(|g| {
            g.spec
                .from
                .iter()
                .any(|f| f.group == types::GROUP && f.kind == from_kind && f.namespace == from_ns)
                && g.spec.to.iter().any(|t| {
                    t.group == to_group
                        && t.kind == to_kind
                        && t.name.as_deref().is_none_or(|n| n == to_name)
                })
        })
}

/// Whether a namespace's labels satisfy a selector (`matchLabels` and `matchExpressions`).
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// The host names a route serves on a listener: the route's hostnames intersected with the
/// listener's (a wildcard on either side takes the other side's more specific name). `None`
/// when they share none; `Some([Any])` when neither names a host.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Option<Vec<HostPattern>> {
    let listener = match listener {
        None | Some("") => None,
        Some(h) => Some(HostPattern::parse(h).ok()?),
    };
    let named = !route.is_empty();
    let route: Vec<HostPattern> = route
        .iter()
        .filter_map(|h| HostPattern::parse(h).ok())
        .collect();
    // Names that do not parse match nothing: a route whose names are all invalid serves no
    // host, never every host.
    if named && route.is_empty() {
        return None;
    }
    let hosts: Vec<HostPattern> = match (listener, route.is_empty()) {
        (None, true) => vec![HostPattern::Any],
        (Some(l), true) => vec![l],
        (None, false) => route,
        (Some(l), false) => route.into_iter().filter_map(|r| narrower(&l, &r)).collect(),
    };
    if hosts.is_empty() { None } else { Some(hosts) }
}

/// The more specific of two host patterns when one covers the other.
fn narrower(a: &HostPattern, b: &HostPattern) -> Option<HostPattern> {
    use HostPattern::{Any, Exact, Wildcard};
    let under = |name: &str, suffix: &str| {
        name.strip_suffix(suffix)
            .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1)
    };
    match (a, b) {
        (Any, x) | (x, Any) => Some(x.clone()),
        (Exact(x), Exact(y)) => (x == y).then(|| a.clone()),
        (Wildcard(s), Exact(n)) | (Exact(n), Wildcard(s)) => under(n, s).then(|| Exact(n.clone())),
        (Wildcard(x), Wildcard(y)) => {
            if x == y || under(x, y) {
                Some(a.clone())
            } else if under(y, x) {
                Some(b.clone())
            } else {
                None
            }
        }
    }
}

/// The parts of an HTTPRoute or GRPCRoute the attachment reads, with its rules made HTTP-like.
struct RouteInput<'a> {
    kind: &'static str,
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    parents: &'a [ParentRef],
    hostnames: &'a [String],
    rules: Vec<RuleInput<'a>>,
}

struct RuleInput<'a> {
    /// Matches, or the field that cannot be served.
    matches: Vec<Result<Match, String>>,
    filters: &'a [HttpFilter],
    backends: &'a [BackendRef],
    timeouts: Option<&'a types::HttpRouteTimeouts>,
}

/// A rule's matches as path matches (no `matches`, or none: every path), with its filters,
/// backends and timeouts.
type RuleParts<'a, M> = (
    &'a Option<Vec<M>>,
    &'a [HttpFilter],
    &'a [BackendRef],
    Option<&'a types::HttpRouteTimeouts>,
);

fn rule_inputs<'a, M: 'a>(
    rules: impl Iterator<Item = RuleParts<'a, M>>,
    to_path: fn(&M, &str) -> Result<Match, String>,
) -> Vec<RuleInput<'a>> {
    rules
        .enumerate()
        .map(|(ri, (matches, filters, backends, timeouts))| RuleInput {
            matches: match matches {
                Some(ms) if !ms.is_empty() => ms
                    .iter()
                    .enumerate()
                    .map(|(mi, m)| to_path(m, &format!("spec.rules[{ri}].matches[{mi}]")))
                    .collect(),
                _ => vec![Ok((PathMatch::Any, RequestMatch::default()))],
            },
            filters,
            backends,
            timeouts,
        })
        .collect()
}

impl<'a> RouteInput<'a> {
    fn http(r: &'a HTTPRoute) -> RouteInput<'a> {
        let rules = r.spec.rules.iter().map(|x| {
            (
                &x.matches,
                x.filters.as_slice(),
                x.backend_refs.as_slice(),
                x.timeouts.as_ref(),
            )
        });
        RouteInput {
            kind: "HTTPRoute",
            meta: &r.metadata,
            parents: &r.spec.parent_refs,
            hostnames: &r.spec.hostnames,
            rules: rule_inputs(rules, http_match),
        }
    }

    fn grpc(r: &'a GRPCRoute) -> RouteInput<'a> {
        let rules = r.spec.rules.iter().map(|x| {
            (
                &x.matches,
                x.filters.as_slice(),
                x.backend_refs.as_slice(),
                None,
            )
        });
        RouteInput {
            kind: "GRPCRoute",
            meta: &r.metadata,
            parents: &r.spec.parent_refs,
            hostnames: &r.spec.hostnames,
            rules: rule_inputs(rules, grpc_match),
        }
    }
}

/// A route match: the path, and the request conditions beside it.
pub type Match = (PathMatch, RequestMatch);

/// Header or query parameter matches as conditions; `header` names are checked as header
/// names and kept lower case. Of two entries with one name, the first counts (the
/// specification's rule).
fn value_matches(
    list: &[types::ValueMatch],
    field: &str,
    header: bool,
) -> Result<Vec<(String, ValueMatch)>, String> {
    let mut out: Vec<(String, ValueMatch)> = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let name = if header {
            if http::HeaderName::from_bytes(v.name.as_bytes()).is_err() {
                return Err(format!(
                    "{field}[{i}].name: {:?} is not a header name",
                    v.name
                ));
            }
            v.name.to_ascii_lowercase()
        } else {
            v.name.clone()
        };
        let matcher = match v.type_.as_deref().unwrap_or("Exact") {
            "Exact" => ValueMatch::Exact(v.value.clone()),
            "RegularExpression" => ValueMatch::regex(&v.value)
                .map_err(|e| format!("{field}[{i}].value: invalid regex: {e}"))?,
            other => return Err(format!("{field}[{i}].type: {other:?} is not supported")),
        };
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, matcher));
        }
    }
    Ok(out)
}

/// An HTTPRoute match: its path, method, header and query parameter conditions.
pub fn http_match(m: &types::HttpMatch, field: &str) -> Result<Match, String> {
    let conditions = RequestMatch {
        method: m.method.clone(),
        headers: value_matches(&m.headers, &format!("{field}.headers"), true)?,
        query: value_matches(&m.query_params, &format!("{field}.queryParams"), false)?,
    };
    let Some(path) = &m.path else {
        return Ok((PathMatch::Any, conditions));
    };
    let value = path.value.as_deref().unwrap_or("/");
    let path = match path.type_.as_deref().unwrap_or("PathPrefix") {
        "Exact" | "PathPrefix" if !value.starts_with('/') => {
            return Err(format!("{field}.path.value: {value:?} must start with /"));
        }
        "Exact" => PathMatch::Exact(value.to_string()),
        "PathPrefix" => PathMatch::prefix(value),
        "RegularExpression" => {
            PathMatch::regex(value).map_err(|e| format!("{field}.path.value: {e}"))?
        }
        other => return Err(format!("{field}.path.type: {other:?} is not supported")),
    };
    Ok((path, conditions))
}

/// A GRPCRoute match: a path match on `/SERVICE/METHOD` and its header conditions.
pub fn grpc_match(m: &types::GrpcMatch, field: &str) -> Result<Match, String> {
    let conditions = RequestMatch {
        headers: value_matches(&m.headers, &format!("{field}.headers"), true)?,
        ..RequestMatch::default()
    };
    grpc_path(m, field).map(|p| (p, conditions))
}

fn grpc_path(m: &types::GrpcMatch, field: &str) -> Result<PathMatch, String> {
    let Some(method) = &m.method else {
        return Ok(PathMatch::Any);
    };
    let service = method.service.as_deref().filter(|s| !s.is_empty());
    let name = method.method.as_deref().filter(|s| !s.is_empty());
    match method.type_.as_deref().unwrap_or("Exact") {
        "Exact" => {
            let bad = |s: &str| s.contains('/') || s.contains(char::is_whitespace);
            if service.is_some_and(bad) || name.is_some_and(bad) {
                return Err(format!(
                    "{field}.method: a service or method name has / or spaces"
                ));
            }
            match (service, name) {
                (Some(s), Some(n)) => Ok(PathMatch::Exact(format!("/{s}/{n}"))),
                (Some(s), None) => Ok(PathMatch::prefix(&format!("/{s}"))),
                (None, Some(n)) => PathMatch::regex(&format!("/[^/]+/{}", regex::escape(n)))
                    .map_err(|e| format!("{field}.method: {e}")),
                (None, None) => Err(format!("{field}.method: needs service or method")),
            }
        }
        "RegularExpression" => PathMatch::regex(&format!(
            "/(?:{})/(?:{})",
            service.unwrap_or("[^/]+"),
            name.unwrap_or("[^/]+")
        ))
        .map_err(|e| format!("{field}.method: {e}")),
        other => Err(format!("{field}.method.type: {other:?} is not supported")),
    }
}

/// What the rules of every route look up, made once per translation.
struct Lookups<'a> {
    /// Services, EndpointSlices and Secrets by name.
    index: &'a Index<'a>,
    /// Policy objects by (namespace, name), as translated.
    policies: &'a HashMap<(String, String), Result<Policy, String>>,
    /// Every BackendTLSPolicy judged once.
    tls: backend_tls::Verdicts,
}

/// Attach one route to the listeners its parents name; its routes go to `out`.
fn attach(
    snap: &Snapshot,
    route: &RouteInput,
    ready: &[Ready],
    reports: &mut Reports,
    lookups: &Lookups<'_>,
    claims: &mut HashMap<(HostPattern, String), String>,
    out: &mut Translation,
) -> Option<RouteReport> {
    let rkey = key(route.kind, route.meta);
    let mut parents = Vec::new();
    // (listener, hosts) pairs the route is attached to, over all parents.
    let mut attached: Vec<(&Ready, Vec<HostPattern>)> = Vec::new();
    for (pi, parent) in route.parents.iter().enumerate() {
        let group = parent.group.as_deref().unwrap_or(types::GROUP);
        let kind = parent.kind.as_deref().unwrap_or("Gateway");
        if group != types::GROUP || kind != "Gateway" {
            continue;
        }
        let gw_ns = parent
            .namespace
            .clone()
            .unwrap_or_else(|| rkey.namespace.clone());
        let candidates: Vec<&Ready> = ready
            .iter()
            .filter(|r| {
                r.gateway_ns == gw_ns
                    && r.gateway.metadata.name.as_deref() == Some(parent.name.as_str())
            })
            .collect();
        let ours = reports
            .gateways
            .iter()
            .any(|g| g.object.namespace == gw_ns && g.object.name == parent.name);
        if !ours {
            // Not a Gateway of ours (or not there): another controller's business.
            continue;
        }
        let field = format!("spec.parentRefs[{pi}]");
        let named: Vec<&Ready> = candidates
            .into_iter()
            .filter(|r| {
                parent
                    .section_name
                    .as_deref()
                    .is_none_or(|s| s == r.listener.name)
            })
            .filter(|r| parent.port.is_none_or(|p| p == r.listener.port))
            .collect();
        let refuse = |reason: &'static str, message: String| ParentReport {
            parent: parent.clone(),
            conditions: vec![
                Cond::new("Accepted", false, reason, message),
                Cond::new("ResolvedRefs", true, "ResolvedRefs", ""),
            ],
        };
        if named.is_empty() {
            parents.push(refuse(
                "NoMatchingParent",
                format!(
                    "{field}: Gateway {gw_ns}/{} has no such listener",
                    parent.name
                ),
            ));
            continue;
        }
        let allowed: Vec<&Ready> = named
            .into_iter()
            .filter(|r| allows(snap, r, route.kind, &rkey.namespace))
            .collect();
        if allowed.is_empty() {
            parents.push(refuse(
                "NotAllowedByListeners",
                format!(
                    "{field}: the listeners' allowedRoutes do not admit this {} from namespace {}",
                    route.kind, rkey.namespace
                ),
            ));
            continue;
        }
        let mut matched = 0;
        for r in allowed {
            if let Some(hosts) = intersect(r.listener.hostname.as_deref(), route.hostnames) {
                matched += 1;
                attached.push((r, hosts));
            }
        }
        if matched == 0 {
            parents.push(refuse(
                "NoMatchingListenerHostname",
                format!("{field}: no hostname of the route matches a listener's hostname"),
            ));
            continue;
        }
        parents.push(ParentReport {
            parent: parent.clone(),
            conditions: Vec::new(), // filled in below, once the rules are known
        });
    }
    if parents.is_empty() {
        return None;
    }
    let (routes, accepted, resolved, tls_policies) =
        rules(snap, route, &rkey, &attached, lookups, claims, out);
    for (policy, lost_to) in tls_policies {
        for (listener, _) in &attached {
            reports.tls_uses.insert(TlsUse {
                policy: policy.clone(),
                gateway: (
                    listener.gateway_ns.clone(),
                    listener.gateway.metadata.name.clone().unwrap_or_default(),
                ),
                lost_to: lost_to.clone(),
            });
        }
    }
    for p in parents.iter_mut().filter(|p| p.conditions.is_empty()) {
        p.conditions = vec![accepted.clone(), resolved.clone()];
    }
    if accepted.status {
        out.routes.extend(routes);
        // Only an accepted route counts as attached.
        for (r, _) in &attached {
            if let Some(lr) = reports
                .gateways
                .iter_mut()
                .find(|g| {
                    g.object.namespace == r.gateway_ns
                        && Some(g.object.name.as_str()) == r.gateway.metadata.name.as_deref()
                })
                .and_then(|g| g.listeners.get_mut(r.index))
            {
                lr.attached_routes += 1;
            }
        }
    }
    Some(RouteReport {
        object: rkey,
        generation: route.meta.generation,
        parents,
    })
}

/// Whether a listener admits a route of `kind` from namespace `ns`.
fn allows(snap: &Snapshot, r: &Ready, kind: &str, ns: &str) -> bool {
    if !r.kinds.iter().any(|k| k.kind == kind) {
        return false;
    }
    let namespaces = r
        .listener
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match namespaces.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Selector" => {
            let empty = BTreeMap::new();
            let labels = snap.gateway.namespaces.get(ns).unwrap_or(&empty);
            namespaces
                .and_then(|n| n.selector.as_ref())
                .is_some_and(|s| selects(s, labels))
        }
        _ => ns == r.gateway_ns,
    }
}

/// The routes of every rule on every attached listener and host, with the route's `Accepted`
/// and `ResolvedRefs` conditions. A field the table cannot serve makes the whole route
/// unserved (Accepted false, naming the field), as an Ingress with a bad annotation is.
fn rules(
    snap: &Snapshot,
    route: &RouteInput,
    rkey: &ObjectKey,
    attached: &[(&Ready, Vec<HostPattern>)],
    lookups: &Lookups<'_>,
    claims: &mut HashMap<(HostPattern, String), String>,
    out: &mut Translation,
) -> (Vec<Route>, Cond, Cond, Vec<TargetedBy>) {
    let mut resolved = Cond::new(
        "ResolvedRefs",
        true,
        "ResolvedRefs",
        "all references resolved",
    );
    let mut problems = Vec::new();
    let mut built = Vec::new();
    let mut tls_policies = Vec::new();
    let owner = format!("{} {}/{}", route.kind, rkey.namespace, rkey.name);
    let mut origin = owner.clone();
    if let Some(g) = route.meta.generation {
        origin.push_str(&format!(" generation {g}"));
    }
    for (ri, rule) in route.rules.iter().enumerate() {
        let field = format!("spec.rules[{ri}]");
        let mut options = RouteOptions::default();
        let mut named = Vec::new();
        let mut policy_missing = None;
        for (fi, f) in rule.filters.iter().enumerate() {
            let at = format!("{field}.filters[{fi}]");
            match filter(f, &at, &mut options, &mut named) {
                Ok(()) => {}
                Err(e) => problems.push(e),
            }
        }
        if let Some(t) = rule.timeouts {
            match rule_timeout(t, &format!("{field}.timeouts")) {
                Ok(d) => options.timeout = d,
                Err(e) => problems.push(e),
            }
        }
        let mut parts = Vec::new();
        for name in &named {
            match lookups
                .policies
                .get(&(rkey.namespace.clone(), name.clone()))
            {
                Some(Ok(p)) => parts.push(p.clone()),
                Some(Err(_)) => {
                    policy_missing = Some((
                        "PolicyInvalid",
                        format!(
                            "{field}: Policy {}/{name} is not accepted (see its status): the rule denies every request",
                            rkey.namespace
                        ),
                    ))
                }
                None => {
                    policy_missing = Some((
                        "PolicyNotFound",
                        format!(
                            "{field}: Policy {}/{name} does not exist: the rule denies every request",
                            rkey.namespace
                        ),
                    ))
                }
            }
        }
        // A named Policy that cannot be used denies everything rather than serving the rule
        // with a weaker policy than asked.
        let policy = if policy_missing.is_some() || parts.is_empty() {
            combine_none()
        } else {
            Policy::merge(parts)
        };
        if let Some((reason, message)) = policy_missing {
            resolved = Cond::new("ResolvedRefs", false, reason, message);
        }
        let Backends {
            to,
            failure,
            tls_policies: used,
        } = backends(snap, lookups, route.kind, rkey, &field, rule.backends);
        tls_policies.extend(used);
        if let Some((reason, message)) = failure {
            // As the specification says: requests that only invalid backends could take get
            // a 500 (once the policy allows them). With some valid backends left, the invalid
            // ones' share goes to those.
            if to.is_empty() && options.direct.is_none() {
                options.direct = Some(Direct::Respond {
                    status: 500,
                    body: "The backend of this route is not available.".into(),
                });
            }
            resolved = Cond::new("ResolvedRefs", false, reason, message);
        }
        // A rule without backends (and no redirect) is served with none: its requests get 503.
        for (mi, m) in rule.matches.iter().enumerate() {
            let (path, conditions) = match m {
                Ok(m) => m.clone(),
                Err(e) => {
                    problems.push(e.clone());
                    continue;
                }
            };
            let mut options = options.clone();
            options.request_match = conditions;
            let options = options.shared();
            for (listener, hosts) in attached {
                for host in hosts {
                    // Routes with no conditions claim as Ingress paths do, so the two conflict.
                    let claim = match options.request_match.is_empty() {
                        true => (host.clone(), format!("{path:?}")),
                        false => (
                            host.clone(),
                            format!("{path:?} {:?}", options.request_match),
                        ),
                    };
                    match claims.get(&claim) {
                        Some(winner) if *winner != owner => {
                            // Ingresses claim as `NS/NAME`, routes as `KIND NS/NAME`.
                            let winner = match winner.contains(' ') {
                                true => winner.clone(),
                                false => format!("Ingress {winner}"),
                            };
                            out.diagnostics.push(Diagnostic {
                                object: rkey.clone(),
                                reason: "Conflict",
                                message: format!("host {host} path {path} is already served by the older {winner}: not served by this route"),
                            });
                            continue;
                        }
                        Some(_) => continue,
                        None => {}
                    }
                    claims.insert(claim, owner.clone());
                    built.push(Route {
                        name: format!(
                            "{}/{}/{}/rules[{ri}].matches[{mi}]",
                            route.kind.to_ascii_lowercase(),
                            rkey.namespace,
                            rkey.name
                        ),
                        scheme: if listener.https { "https" } else { "http" }.to_string(),
                        host: host.clone(),
                        port: None,
                        path: path.clone(),
                        to: if options.direct.is_some() {
                            Vec::new()
                        } else {
                            to.clone()
                        },
                        policy: policy.clone(),
                        options: options.clone(),
                        origin: origin.clone(),
                    });
                }
            }
        }
    }
    let accepted = if problems.is_empty() {
        Cond::new("Accepted", true, "Accepted", "served by Portcullis")
    } else {
        Cond::new(
            "Accepted",
            false,
            "UnsupportedValue",
            format!("{}: the route is not served", problems.join("; ")),
        )
    };
    if !accepted.status {
        out.diagnostics.push(Diagnostic {
            object: rkey.clone(),
            reason: "UnsupportedValue",
            message: accepted.message.clone(),
        });
    }
    (built, accepted, resolved, tls_policies)
}

/// A policy that denies every request: what a rule without a Policy gets.
fn combine_none() -> Policy {
    crate::config::combine_policy(None, &LegacyOptions::default())
}

/// A header modifier's `set`, `add` and `remove` lists, names lower case.
fn modify(
    m: &types::HeaderModifier,
    at: &str,
    set: &mut BTreeMap<String, String>,
    add: &mut Vec<(String, String)>,
    remove: &mut Vec<String>,
) -> Result<(), String> {
    // A header that cannot be sent refuses the route here rather than failing its requests.
    let named = m
        .set
        .iter()
        .map(|h| ("set", &h.name, Some(h.value.as_str())));
    let named = named.chain(
        m.add
            .iter()
            .map(|h| ("add", &h.name, Some(h.value.as_str()))),
    );
    let named = named.chain(m.remove.iter().map(|h| ("remove", h, None)));
    for (field, name, value) in named {
        if let Some(problem) = crate::config::header_problem(name, value) {
            return Err(format!("{at}.{field}: {name:?} {problem}"));
        }
    }
    for h in &m.set {
        set.insert(h.name.to_ascii_lowercase(), h.value.clone());
    }
    add.extend(
        m.add
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.clone())),
    );
    remove.extend(m.remove.iter().map(|h| h.to_ascii_lowercase()));
    Ok(())
}

/// A Gateway API duration (GEP-2257): one to four parts of up to five digits and a unit `h`,
/// `m`, `s` or `ms`, e.g. `1h30m` or `500ms`.
fn gateway_duration(text: &str, at: &str) -> Result<Duration, String> {
    let bad =
        || format!("{at}: {text:?} is not a Gateway API duration (such as 10s, 1m30s or 500ms)");
    let mut rest = text;
    let mut total = Duration::ZERO;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 || digits > 5 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(n), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(n * 3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(n * 60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(n), 1)
        } else {
            return Err(bad());
        };
        total += unit;
        rest = &rest[len..];
        parts += 1;
    }
    if parts == 0 || parts > 4 {
        return Err(bad());
    }
    Ok(total)
}

/// A rule's `timeouts` as the route's `timeout` (a deadline from the first request upstream;
/// zero: none). With both set, the shorter non-zero one: neither limit is exceeded.
fn rule_timeout(t: &types::HttpRouteTimeouts, at: &str) -> Result<Option<Duration>, String> {
    let request = t
        .request
        .as_deref()
        .map(|s| gateway_duration(s, &format!("{at}.request")))
        .transpose()?;
    let backend = t
        .backend_request
        .as_deref()
        .map(|s| gateway_duration(s, &format!("{at}.backendRequest")))
        .transpose()?;
    if let (Some(r), Some(b)) = (request, backend)
        && !r.is_zero()
        && b > r
    {
        return Err(format!(
            "{at}: backendRequest ({}) is longer than request ({})",
            t.backend_request.as_deref().unwrap_or_default(),
            t.request.as_deref().unwrap_or_default()
        ));
    }
    Ok(match (request, backend) {
        (Some(r), Some(b)) if b.is_zero() => Some(r),
        (Some(r), Some(b)) if r.is_zero() => Some(b),
        (Some(r), Some(b)) => Some(r.min(b)),
        (r, b) => r.or(b),
    })
}

/// Apply one filter to the rule's options; `ExtensionRef`s to Policies add to `policies`.
fn filter(
    f: &HttpFilter,
    at: &str,
    options: &mut RouteOptions,
    policies: &mut Vec<String>,
) -> Result<(), String> {
    let missing = |what: &str| format!("{at}: type {} needs {what}", f.type_);
    match f.type_.as_str() {
        "RequestHeaderModifier" => {
            let m = f
                .request_header_modifier
                .as_ref()
                .ok_or_else(|| missing("requestHeaderModifier"))?;
            modify(
                m,
                &format!("{at}.requestHeaderModifier"),
                &mut options.set_request_headers,
                &mut options.add_request_headers,
                &mut options.remove_request_headers,
            )?;
        }
        "ResponseHeaderModifier" => {
            let m = f
                .response_header_modifier
                .as_ref()
                .ok_or_else(|| missing("responseHeaderModifier"))?;
            modify(
                m,
                &format!("{at}.responseHeaderModifier"),
                &mut options.set_response_headers,
                &mut options.add_response_headers,
                &mut options.remove_response_headers,
            )?;
        }
        "RequestRedirect" => {
            let r = f
                .request_redirect
                .as_ref()
                .ok_or_else(|| missing("requestRedirect"))?;
            let mut redirect = Redirect {
                scheme: r.scheme.clone(),
                host: r.hostname.clone(),
                port: match r.port {
                    Some(p) => Some(
                        u16::try_from(p)
                            .map_err(|_| format!("{at}.requestRedirect.port: out of range"))?,
                    ),
                    None => None,
                },
                status: match r.status_code {
                    None => 302,
                    Some(c @ (301 | 302 | 303 | 307 | 308)) => c as u16,
                    Some(c) => {
                        return Err(format!(
                            "{at}.requestRedirect.statusCode: {c} is not a redirect status"
                        ));
                    }
                },
                ..Redirect::default()
            };
            if let Some(p) = &r.path {
                match p.type_.as_str() {
                    "ReplaceFullPath" => redirect.path = p.replace_full_path.clone(),
                    "ReplacePrefixMatch" => {
                        redirect.prefix_rewrite = p.replace_prefix_match.clone()
                    }
                    other => {
                        return Err(format!(
                            "{at}.requestRedirect.path.type: {other:?} is not supported"
                        ));
                    }
                }
            }
            options.direct = Some(Direct::Redirect(redirect));
        }
        "URLRewrite" => {
            let r = f
                .url_rewrite
                .as_ref()
                .ok_or_else(|| missing("urlRewrite"))?;
            if let Some(h) = &r.hostname {
                if let Some(problem) = crate::config::header_problem("host", Some(h)) {
                    return Err(format!("{at}.urlRewrite.hostname: {h:?} {problem}"));
                }
                options.host_rewrite = Some(h.clone());
            }
            if let Some(p) = &r.path {
                match p.type_.as_str() {
                    "ReplacePrefixMatch" => {
                        options.prefix_rewrite =
                            Some(p.replace_prefix_match.clone().unwrap_or_else(|| "/".into()))
                    }
                    "ReplaceFullPath" => {
                        let full = p.replace_full_path.clone().unwrap_or_else(|| "/".into());
                        let any = regex::Regex::new("^.*$").map_err(|e| format!("{at}: {e}"))?;
                        options.regex_rewrite = Some((any, full.replace('$', "$$")));
                    }
                    other => {
                        return Err(format!(
                            "{at}.urlRewrite.path.type: {other:?} is not supported"
                        ));
                    }
                }
            }
        }
        "ExtensionRef" => {
            let r = f
                .extension_ref
                .as_ref()
                .ok_or_else(|| missing("extensionRef"))?;
            if r.group != POLICY_GROUP || r.kind != POLICY_KIND {
                return Err(format!(
                    "{at}.extensionRef: {}/{} is not supported (only {POLICY_GROUP}/{POLICY_KIND})",
                    r.group, r.kind
                ));
            }
            policies.push(r.name.clone());
        }
        other => return Err(format!("{at}.type: {other:?} is not supported")),
    }
    Ok(())
}

/// The upstreams of a rule's backends.
fn backends(
    snap: &Snapshot,
    lookups: &Lookups<'_>,
    kind: &str,
    rkey: &ObjectKey,
    field: &str,
    refs: &[BackendRef],
) -> Backends {
    let mut failure = None;
    let mut tls_policies = Vec::new();
    let mut groups: Vec<(u32, Vec<Upstream>)> = Vec::new();
    for (bi, b) in refs.iter().enumerate() {
        let at = format!("{field}.backendRefs[{bi}]");
        let group = b.group.as_deref().unwrap_or("");
        let bkind = b.kind.as_deref().unwrap_or("Service");
        if !group.is_empty() || bkind != "Service" {
            failure.get_or_insert((
                "InvalidKind",
                format!("{at}: {group}/{bkind} is not a Service"),
            ));
            continue;
        }
        if !b.filters.is_empty() {
            failure.get_or_insert((
                "UnsupportedValue",
                format!("{at}.filters: backend filters are not supported"),
            ));
            continue;
        }
        let ns = b
            .namespace
            .clone()
            .unwrap_or_else(|| rkey.namespace.clone());
        if ns != rkey.namespace
            && !granted(
                &snap.gateway.grants,
                kind,
                &rkey.namespace,
                "",
                "Service",
                &ns,
                &b.name,
            )
        {
            failure.get_or_insert((
                "RefNotPermitted",
                format!(
                    "{at}: Service {ns}/{} is in another namespace and no ReferenceGrant allows it",
                    b.name
                ),
            ));
            continue;
        }
        let Some(port) = b.port else {
            failure.get_or_insert((
                "UnsupportedValue",
                format!("{at}.port: a Service backend needs a port"),
            ));
            continue;
        };
        // The backend's BackendTLSPolicy, if one targets it: TLS as it says, or the backend
        // is not used (never reached in plain text, or verified less than asked).
        let port_name = lookups
            .index
            .service(&ns, &b.name)
            .and_then(|s| s.spec.as_ref()?.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| p.port == port))
            .and_then(|p| p.name.clone());
        let candidates = backend_tls::applying(snap, &ns, &b.name, port_name.as_deref());
        let tls = match candidates.first() {
            None => None,
            Some(policy) => {
                let pname = policy.metadata.name.clone().unwrap_or_default();
                tls_policies.push(((ns.clone(), pname.clone()), None));
                for other in &candidates[1..] {
                    let oname = other.metadata.name.clone().unwrap_or_default();
                    tls_policies.push(((ns.clone(), oname), Some(pname.clone())));
                }
                let verdict = lookups.tls.of(snap, policy);
                match &verdict.tls {
                    Some(tls) => Some(tls.clone()),
                    None => {
                        let why = if verdict.resolved.status {
                            &verdict.accepted.message
                        } else {
                            &verdict.resolved.message
                        };
                        failure.get_or_insert((
                            "InvalidBackendTLSPolicy",
                            format!(
                                "{at}: BackendTLSPolicy {ns}/{pname} of Service {} cannot be honoured ({why}): the backend is not used",
                                b.name
                            ),
                        ));
                        continue;
                    }
                }
            }
        };
        let backend = IngressBackend {
            service: Some(IngressServiceBackend {
                name: b.name.clone(),
                port: Some(ServiceBackendPort {
                    number: Some(port),
                    name: None,
                }),
            }),
            resource: None,
        };
        let weight = u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0);
        match upstreams(lookups.index, &ns, &backend, tls.is_some(), false) {
            Ok(mut ups) => {
                if let Some(tls) = &tls {
                    for u in &mut ups {
                        u.backend_tls = Some(tls.clone());
                    }
                } else if kind == "GRPCRoute" {
                    // gRPC is HTTP/2: plain-text backends are reached with prior knowledge.
                    for u in &mut ups {
                        if u.url.scheme() == "http"
                            && let (Some(host), Some(port)) =
                                (u.url.host_str(), u.url.port_or_known_default())
                            && let Ok(url) = url::Url::parse(&format!("h2c://{host}:{port}"))
                        {
                            u.url = url;
                        }
                    }
                }
                if weight > 0 {
                    groups.push((weight, ups));
                }
            }
            Err((reason, message)) => {
                let reason = match reason {
                    "ServiceNotFound" | "PortNotFound" => "BackendNotFound",
                    _ => "UnsupportedValue",
                };
                failure.get_or_insert((reason, format!("{at}: {message}")));
            }
        }
    }
    Backends {
        to: weighted(groups),
        failure,
        tls_policies,
    }
}

/// Endpoint weights that give each group its share: weight × (L / endpoints), L the least
/// common multiple of the groups' endpoint counts.
pub fn weighted(groups: Vec<(u32, Vec<Upstream>)>) -> Vec<Upstream> {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    // Endpoint counts' least common multiple; `None` when it does not fit (many backends with
    // coprime counts), and then each endpoint's weight is scaled instead (nearly exact).
    let lcm = groups
        .iter()
        .map(|(_, u)| u.len() as u64)
        .filter(|n| *n > 0)
        .try_fold(1u64, |l, n| (l / gcd(l, n)).checked_mul(n));
    let single = groups.len() <= 1;
    let mut out = Vec::new();
    for (weight, ups) in groups {
        let n = (ups.len() as u64).max(1);
        let each = lcm
            .and_then(|l| u64::from(weight).checked_mul(l / n))
            .unwrap_or_else(|| (u64::from(weight) << 20) / n)
            .max(u64::from(weight > 0));
        for mut u in ups {
            u.weight = if single {
                1
            } else {
                u32::try_from(each).unwrap_or(u32::MAX)
            };
            out.push(u);
        }
    }
    out
}

#[cfg(test)]
mod tests;
