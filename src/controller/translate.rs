//! Cluster objects → routes and certificates. Pure: a [`Snapshot`] of plain k8s-openapi values
//! in, a [`Translation`] out, so every rule is testable without an API server.
//!
//! Ingress semantics: `Exact` paths; `Prefix` by path element (trailing slash ignored);
//! `ImplementationSpecific` = `Prefix`, or an anchored regex with the `path_regex` annotation; a
//! rule without `host` serves every host (tried after the hosts' own rules), and so does
//! `spec.defaultBackend` (for paths nothing else matches). Two Ingresses claiming the same host
//! and path: the older keeps it, the newer gets a Warning.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, Ingress, IngressBackend, IngressClass, IngressServiceBackend,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use regex::Regex;
use url::Url;

use super::crd::Policy as PolicyObject;
use crate::config::pomerium::{self, Unimplemented};
use crate::config::{
    CertificatePair, HostPattern, Parser, PathMatch, ROUTE_KEYS, Route, RouteOptions, Upstream,
    apply_option, combine_policy,
};
use crate::ppl::{LegacyOptions, Policy, PolicyError};
use crate::source::{Node, Pos, Value};

/// Annotation prefixes for route options; the second is Pomerium's, accepted as an alias.
pub const ANNOTATION_PREFIXES: [&str; 2] = ["portcullis.dev/", "ingress.pomerium.io/"];
/// The deprecated class annotation.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Marks the cluster's default IngressClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The label EndpointSlices carry with their Service's name.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Annotations of ours that are not route options.
const EXTRA_KEYS: &[&str] = &[
    "policy",
    "policies",
    "path_regex",
    "secure_upstream",
    "service_proxy_upstream",
    "regex_rewrite_pattern",
    "regex_rewrite_substitution",
];
/// Annotations naming a Secret in the Ingress's namespace (Pomerium's names).
const SECRET_REFERENCES: &[&str] = &[
    "set_request_headers_secret",
    "set_response_headers_secret",
    "tls_custom_ca_secret",
    "tls_client_secret",
    "tls_downstream_client_ca_secret",
    "kubernetes_service_account_token_secret",
];
/// Route options the Ingress itself provides (`name` is accepted: there it is the name the
/// routes portal shows).
const INGRESS_PROVIDED: &[&str] = &["from", "to", "prefix", "path", "regex"];
/// The reason of a notice: a Pomerium annotation accepted with no effect (a Normal Event).
pub const IGNORED_ANNOTATION: &str = "IgnoredAnnotation";

/// What the controller is and which Ingresses it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// IngressClass name (`portcullis`).
    pub ingress_class: String,
    /// `spec.controller` of our IngressClasses.
    pub controller: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ingress_class: "portcullis".to_string(),
            controller: "portcullis.dev/ingress-controller".to_string(),
        }
    }
}

/// Everything the translation reads.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub ingresses: Vec<Arc<Ingress>>,
    pub classes: Vec<Arc<IngressClass>>,
    pub services: Vec<Arc<Service>>,
    pub slices: Vec<Arc<EndpointSlice>>,
    pub secrets: Vec<Arc<Secret>>,
    pub policies: Vec<Arc<PolicyObject>>,
    /// Gateway API objects (none when their CRDs are not installed).
    pub gateway: super::gateway::Objects,
    pub options: Options,
}

/// Which object a diagnostic is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// `Ingress`, `Policy`, `Gateway`, `HTTPRoute` or `GRPCRoute`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A problem found while translating (becomes a Warning Event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub object: ObjectKey,
    /// A CamelCase reason: `InvalidAnnotation`, `UnknownAnnotation`, `UnsupportedAnnotation`,
    /// `PolicyNotFound`,
    /// `PolicyInvalid`, `ServiceNotFound`, `PortNotFound`, `SecretNotFound`, `SecretInvalid`,
    /// `InvalidPath`, `InvalidHost`, `UnsupportedBackend`, `Conflict`.
    pub reason: &'static str,
    pub message: String,
}

/// What the controller made of one Policy object (its status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyResult {
    pub object: ObjectKey,
    pub generation: Option<i64>,
    /// `None` when it compiled; else every error, with the field path and position.
    pub error: Option<String>,
}

/// The outcome of a translation.
#[derive(Debug, Default)]
pub struct Translation {
    pub routes: Vec<Route>,
    /// Certificates of `kubernetes.io/tls` Secrets, loaded; `origin` is `namespace/secret`.
    pub certs: Vec<CertificatePair>,
    pub diagnostics: Vec<Diagnostic>,
    /// Pomerium annotations accepted with no effect (Normal Events, reason
    /// [`IGNORED_ANNOTATION`]); they do not stop an Ingress from being served.
    pub notices: Vec<Diagnostic>,
    /// Every Ingress of our class (whether or not it produced routes), for status and Events.
    pub owned: Vec<ObjectKey>,
    pub policies: Vec<PolicyResult>,
    /// The status of the Gateway API objects of ours.
    pub gateway: super::gateway::Reports,
}

/// Translate a snapshot.
/// The snapshot's Services, EndpointSlices and Secrets by namespace and name, made once per
/// translation, so that each backend and each Secret an object names is a hash lookup rather
/// than a scan of every object (with a Service per Ingress, scanning made a pass quadratic in
/// the number of Ingresses: 2.5 s of CPU for 10,000).
pub(super) struct Index<'a> {
    services: ByName<'a, Service>,
    /// By namespace and the Service they belong to (their `kubernetes.io/service-name` label):
    /// the position of the Service's list in `slice_lists`.
    slices: HashMap<(&'a str, &'a str), usize>,
    slice_lists: Vec<Vec<&'a EndpointSlice>>,
    secrets: ByName<'a, Secret>,
}

/// Objects of one kind by namespace and name; where two have one name (never in a real
/// cluster), the first is kept, as a scan would find it.
pub(super) struct ByName<'a, K>(HashMap<(&'a str, &'a str), &'a K>);

impl<'a, K: kube::Resource> ByName<'a, K> {
    pub(super) fn new(objects: &'a [Arc<K>]) -> ByName<'a, K> {
        let mut map = HashMap::with_capacity(objects.len());
        for o in objects {
            map.entry(ns_name(o.meta())).or_insert(&**o);
        }
        ByName(map)
    }

    /// The object `ns/name`.
    pub(super) fn get(&self, ns: &str, name: &str) -> Option<&'a K> {
        self.0.get(&(ns, name)).copied()
    }
}

/// The namespace and name of an object (empty when unset).
fn ns_name(meta: &ObjectMeta) -> (&str, &str) {
    (
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

impl<'a> Index<'a> {
    pub(super) fn new(snap: &'a Snapshot) -> Index<'a> {
        let mut slices = HashMap::new();
        let mut slice_lists: Vec<Vec<&EndpointSlice>> = Vec::new();
        for s in &snap.slices {
            let Some(service) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            let ns = s.metadata.namespace.as_deref().unwrap_or_default();
            let list = *slices.entry((ns, service.as_str())).or_insert_with(|| {
                slice_lists.push(Vec::new());
                slice_lists.len() - 1
            });
            slice_lists[list].push(&**s);
        }
        Index {
            services: ByName::new(&snap.services),
            slices,
            slice_lists,
            secrets: ByName::new(&snap.secrets),
        }
    }

    /// The Service `ns/name`.
    pub(super) fn service(&self, ns: &str, name: &str) -> Option<&'a Service> {
        self.services.get(ns, name)
    }

    /// The EndpointSlices of the Service `ns/name`.
    fn slices(&self, ns: &str, service: &str) -> &[&'a EndpointSlice] {
        match self.slices.get(&(ns, service)) {
            Some(&list) => &self.slice_lists[list],
            None => &[],
        }
    }

    /// The Secret `ns/name`.
    pub(super) fn secret(&self, ns: &str, name: &str) -> Option<&'a Secret> {
        self.secrets.get(ns, name)
    }
}

pub fn translate(snap: &Snapshot) -> Translation {
    let index = Index::new(snap);
    let mut out = Translation::default();
    let mut compiled: HashMap<(String, String), Result<Policy, String>> = HashMap::new();
    for p in &snap.policies {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let result = compile_policy_spec(&p.spec);
        out.policies.push(PolicyResult {
            object: ObjectKey {
                kind: "Policy",
                namespace: ns.clone(),
                name: name.clone(),
            },
            generation: p.metadata.generation,
            error: result.as_ref().err().cloned(),
        });
        compiled.insert((ns, name), result);
    }

    let mut ours: Vec<&Ingress> = snap
        .ingresses
        .iter()
        .filter(|i| is_ours(i, &snap.classes, &snap.options))
        .map(|i| &**i)
        .collect();
    // Older first: the first claim of a host and path wins.
    ours.sort_by(|a, b| {
        let key = |i: &Ingress| {
            (
                i.metadata.creation_timestamp.as_ref().map(|t| t.0),
                i.metadata.namespace.clone().unwrap_or_default(),
                i.metadata.name.clone().unwrap_or_default(),
            )
        };
        key(a).cmp(&key(b))
    });

    let mut claims: HashMap<(HostPattern, String), String> = HashMap::new();
    let mut cert_origins = BTreeSet::new();
    for ing in ours {
        let key = ObjectKey {
            kind: "Ingress",
            namespace: ing.metadata.namespace.clone().unwrap_or_default(),
            name: ing.metadata.name.clone().unwrap_or_default(),
        };
        out.owned.push(key.clone());
        let mut diags = Vec::new();
        let routes = ingress_routes(&index, ing, &key, &compiled, &mut claims, &mut diags);
        for cert in ingress_certs(&index, ing, &key, &mut diags) {
            if cert_origins.insert(cert.origin.clone()) {
                out.certs.push(cert);
            }
        }
        out.routes.extend(routes);
        let (notices, problems): (Vec<_>, Vec<_>) = diags
            .into_iter()
            .partition(|d| d.reason == IGNORED_ANNOTATION);
        out.diagnostics.extend(problems);
        // One Event per Ingress (Events of one reason on one object are aggregated).
        if !notices.is_empty() {
            let message: Vec<String> = notices.into_iter().map(|n| n.message).collect();
            out.notices.push(Diagnostic {
                object: key.clone(),
                reason: IGNORED_ANNOTATION,
                message: message.join("; "),
            });
        }
    }
    super::gateway::translate(snap, &index, &compiled, &mut claims, &mut out);
    out
}

/// Whether an Ingress is of our class: it names our class (`spec.ingressClassName` or the
/// deprecated annotation), or names none while our IngressClass is the cluster's default. Other
/// IngressClasses are never ours, even when they name our controller: two installations with
/// different classes must not serve each other's Ingresses.
pub fn is_ours(ing: &Ingress, classes: &[Arc<IngressClass>], opts: &Options) -> bool {
    if let Some(name) = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        return name == opts.ingress_class;
    }
    if let Some(name) = annotation(ing, CLASS_ANNOTATION) {
        return name == opts.ingress_class;
    }
    classes.iter().any(|c| {
        c.metadata.name.as_deref() == Some(opts.ingress_class.as_str())
            && c.spec.as_ref().and_then(|s| s.controller.as_deref())
                == Some(opts.controller.as_str())
            && c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true")
    })
}

fn annotation<'a>(ing: &'a Ingress, key: &str) -> Option<&'a str> {
    ing.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Route settings shared by every path of one Ingress, read from its annotations.
struct IngressSettings {
    options: Arc<RouteOptions>,
    policy: Policy,
    path_regex: bool,
    secure_upstream: bool,
    /// Send to the Service's cluster IP instead of its endpoints.
    service_proxy: bool,
}

fn read_annotations(
    ing: &Ingress,
    key: &ObjectKey,
    policies: &HashMap<(String, String), Result<Policy, String>>,
    index: &Index<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<IngressSettings> {
    let mut p = Parser::new(&key.to_string());
    let mut options = RouteOptions::default();
    let mut legacy = LegacyOptions::default();
    let mut inline = None;
    let mut named: Vec<String> = Vec::new();
    let mut path_regex = false;
    let mut secure_upstream = false;
    let mut service_proxy = false;
    let mut rewrite_pattern = None;
    let mut rewrite_subst = None;
    let mut unknown = Vec::new();
    let mut unsupported = Vec::new();
    let mut secret_refs: Vec<(&str, &String, &str)> = Vec::new();
    let empty = BTreeMap::new();
    for (full, raw) in ing.metadata.annotations.as_ref().unwrap_or(&empty) {
        let Some(option) = ANNOTATION_PREFIXES
            .iter()
            .find_map(|prefix| full.strip_prefix(prefix))
        else {
            continue;
        };
        if option == "policy" {
            match Policy::parse(raw) {
                Ok(pol) => inline = Some(pol),
                Err(errors) => p.error(Pos::NONE, full, join_errors(&errors)),
            }
            continue;
        }
        if option == "policies" {
            named.extend(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
            continue;
        }
        // Values are strings: read them as YAML so `true`, `5s`, lists and maps work as in the
        // configuration file. A value that is not valid YAML is taken as a plain string.
        let node =
            Node::parse(raw).unwrap_or_else(|_| Node::new(Pos::NONE, Value::String(raw.clone())));
        match option {
            "path_regex" => path_regex = p.boolean(&node, full).unwrap_or(false),
            "secure_upstream" => secure_upstream = p.boolean(&node, full).unwrap_or(false),
            "service_proxy_upstream" => service_proxy = p.boolean(&node, full).unwrap_or(false),
            "regex_rewrite_pattern" => {
                if let Some(s) = p.string(&node, full) {
                    match Regex::new(&s) {
                        Ok(r) => rewrite_pattern = Some(r),
                        Err(e) => p.error(Pos::NONE, full, format!("invalid regex: {e}")),
                    }
                }
            }
            "regex_rewrite_substitution" => {
                rewrite_subst = p
                    .string(&node, full)
                    .map(|s| crate::config::substitution(&s))
            }
            o if SECRET_REFERENCES.contains(&o) => secret_refs.push((o, full, raw.trim())),
            o if INGRESS_PROVIDED.contains(&o) => p.error(
                Pos::NONE,
                full,
                "is set by the Ingress itself (rules, paths, backends), not by an annotation",
            ),
            o => {
                if !apply_option(&mut p, &mut options, &mut legacy, o, full, &node) {
                    match pomerium::unimplemented(pomerium::annotation(o)) {
                        Some(Unimplemented::Notice(text)) => diags.push(Diagnostic {
                            object: key.clone(),
                            reason: IGNORED_ANNOTATION,
                            message: format!("{full}: {text}"),
                        }),
                        Some(Unimplemented::Refuse(text)) => {
                            unsupported.push(format!("{full}: {text}"))
                        }
                        None => unknown.push(full.clone()),
                    }
                }
            }
        }
    }
    if !unsupported.is_empty() {
        diags.push(Diagnostic {
            object: key.clone(),
            reason: "UnsupportedAnnotation",
            message: format!("{}; the Ingress is not served", unsupported.join("; ")),
        });
        return None;
    }
    if !unknown.is_empty() {
        let known: Vec<&str> = ROUTE_KEYS
            .iter()
            .chain(EXTRA_KEYS)
            .filter(|k| !INGRESS_PROVIDED.contains(k))
            .copied()
            .collect();
        let names: Vec<String> = unknown
            .iter()
            .map(|u| {
                let option = ANNOTATION_PREFIXES
                    .iter()
                    .find_map(|prefix| u.strip_prefix(prefix))
                    .unwrap_or(u);
                match crate::config::closest(option, &known) {
                    Some(s) => format!("{u:?} (did you mean {s:?}?)"),
                    None => format!("{u:?}"),
                }
            })
            .collect();
        diags.push(Diagnostic {
            object: key.clone(),
            reason: "UnknownAnnotation",
            message: format!(
                "unknown annotation {}: the Ingress is not served",
                names.join(", ")
            ),
        });
        return None;
    }
    match (rewrite_pattern, rewrite_subst) {
        (Some(r), Some(s)) => options.regex_rewrite = Some((r, s)),
        (Some(_), None) => p.error(
            Pos::NONE,
            "regex_rewrite_pattern",
            "needs regex_rewrite_substitution",
        ),
        (None, Some(_)) => p.error(
            Pos::NONE,
            "regex_rewrite_substitution",
            "needs regex_rewrite_pattern",
        ),
        (None, None) => {}
    }
    for (option, full, name) in secret_refs {
        if let Err((reason, message)) = secret_option(&mut options, index, key, option, name) {
            diags.push(Diagnostic {
                object: key.clone(),
                reason,
                message: format!("{full}: {message}: the Ingress is not served"),
            });
            return None;
        }
    }
    crate::config::check_host_path_rewrite(&mut p, &options, "annotations", Pos::NONE);
    if !p.errors.is_empty() {
        let messages: Vec<String> = p
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.key, e.message))
            .collect();
        diags.push(Diagnostic {
            object: key.clone(),
            reason: "InvalidAnnotation",
            message: format!("{}: the Ingress is not served", messages.join("; ")),
        });
        return None;
    }
    let mut parts: Vec<Policy> = inline.into_iter().collect();
    for name in named {
        match policies.get(&(key.namespace.clone(), name.clone())) {
            Some(Ok(pol)) => parts.push(pol.clone()),
            Some(Err(_)) => {
                diags.push(Diagnostic {
                    object: key.clone(),
                    reason: "PolicyInvalid",
                    message: format!(
                        "Policy {}/{name} is not accepted (see its status): the Ingress is not served",
                        key.namespace
                    ),
                });
                return None;
            }
            None => {
                diags.push(Diagnostic {
                    object: key.clone(),
                    reason: "PolicyNotFound",
                    message: format!(
                        "Policy {}/{name} does not exist: the Ingress is not served",
                        key.namespace
                    ),
                });
                return None;
            }
        }
    }
    let policy = if parts.is_empty() {
        None
    } else {
        Some(Policy::merge(parts))
    };
    Some(IngressSettings {
        options: options.shared(),
        policy: combine_policy(policy, &legacy),
        path_regex,
        secure_upstream,
        service_proxy,
    })
}

fn join_errors(errors: &[PolicyError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn ingress_routes(
    index: &Index<'_>,
    ing: &Ingress,
    key: &ObjectKey,
    policies: &HashMap<(String, String), Result<Policy, String>>,
    claims: &mut HashMap<(HostPattern, String), String>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Route> {
    let Some(settings) = read_annotations(ing, key, policies, index, diags) else {
        return Vec::new();
    };
    let mut origin = format!("Ingress {}/{}", key.namespace, key.name);
    if let Some(g) = ing.metadata.generation {
        origin.push_str(&format!(" generation {g}"));
    }
    let policy_names = ing.metadata.annotations.as_ref().and_then(|a| {
        a.get("portcullis.dev/policies")
            .or_else(|| a.get("ingress.pomerium.io/policies"))
    });
    if let Some(names) = policy_names {
        origin.push_str(&format!(", Policy {names}"));
    }
    let Some(spec) = ing.spec.as_ref() else {
        return Vec::new();
    };
    let tls_hosts: Vec<HostPattern> = spec
        .tls
        .iter()
        .flatten()
        .flat_map(|t| t.hosts.iter().flatten())
        .filter_map(|h| HostPattern::parse(h).ok())
        .collect();
    let owner = format!("{}/{}", key.namespace, key.name);
    let mut routes = Vec::new();
    let mut add = |host: HostPattern,
                   path: PathMatch,
                   backend: &IngressBackend,
                   name: String,
                   diags: &mut Vec<Diagnostic>| {
        let claim = (host.clone(), format!("{path:?}"));
        match claims.get(&claim) {
            Some(winner) if *winner != owner => {
                diags.push(Diagnostic {
                    object: key.clone(),
                    reason: "Conflict",
                    message: format!(
                        "host {host} path {path} is already served by the older Ingress {winner}: not served by this one"
                    ),
                });
                return;
            }
            Some(_) => return, // the same Ingress twice: the first path wins
            None => {}
        }
        let to = match upstreams(
            index,
            &key.namespace,
            backend,
            settings.secure_upstream,
            settings.service_proxy,
        ) {
            Ok(to) => to,
            Err((reason, message)) => {
                diags.push(Diagnostic {
                    object: key.clone(),
                    reason,
                    message: format!("{name}: {message}: path not served"),
                });
                return;
            }
        };
        claims.insert(claim, owner.clone());
        let scheme = if tls_hosts.contains(&host) {
            "https"
        } else {
            "http"
        };
        let mut options = settings.options.clone();
        // As Pomerium does: an https upstream reached by endpoint address is verified as the
        // Service's cluster DNS name (SNI and certificate), unless tls_server_name says
        // otherwise. ExternalName upstreams are reached by name already.
        if settings.secure_upstream
            && options.tls_server_name.is_none()
            && let Some(service) = &backend.service
            && to
                .iter()
                .all(|u| matches!(u.url.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_))))
        {
            Arc::make_mut(&mut options).tls_server_name = Some(format!(
                "{}.{}.svc.cluster.local",
                service.name, key.namespace
            ));
        }
        routes.push(Route {
            name,
            scheme: scheme.to_string(),
            host,
            port: None,
            path,
            to,
            policy: settings.policy.clone(),
            options,
            origin: origin.clone(),
        });
    };
    for (ri, rule) in spec.rules.iter().flatten().enumerate() {
        let host = match rule.host.as_deref() {
            None | Some("") => HostPattern::Any,
            Some(h) => match HostPattern::parse(h) {
                Ok(h) => h,
                Err(e) => {
                    diags.push(Diagnostic {
                        object: key.clone(),
                        reason: "InvalidHost",
                        message: format!("rules[{ri}]: {e}: rule not served"),
                    });
                    continue;
                }
            },
        };
        for (pi, path) in rule.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
            let name = format!("{owner}/rules[{ri}].paths[{pi}]");
            match path_match(path, settings.path_regex) {
                Ok(m) => add(host.clone(), m, &path.backend, name, diags),
                Err(e) => diags.push(Diagnostic {
                    object: key.clone(),
                    reason: "InvalidPath",
                    message: format!("{name}: {e}: path not served"),
                }),
            }
        }
    }
    if let Some(backend) = &spec.default_backend {
        add(
            HostPattern::Any,
            PathMatch::Any,
            backend,
            format!("{owner}/defaultBackend"),
            diags,
        );
    }
    routes
}

/// An Ingress path as a [`PathMatch`].
pub fn path_match(path: &HTTPIngressPath, regex: bool) -> Result<PathMatch, String> {
    let text = path.path.as_deref().unwrap_or("/");
    match path.path_type.as_str() {
        "Exact" | "Prefix" if !text.starts_with('/') => {
            Err(format!("path {text:?} must start with /"))
        }
        "Exact" => Ok(PathMatch::Exact(text.to_string())),
        "Prefix" => Ok(PathMatch::prefix(text)),
        "ImplementationSpecific" if regex => PathMatch::regex(text),
        "ImplementationSpecific" if text.starts_with('/') => Ok(PathMatch::prefix(text)),
        "ImplementationSpecific" => Err(format!("path {text:?} must start with /")),
        other => Err(format!("unknown pathType {other:?}")),
    }
}

pub(super) type Failure = (&'static str, String);

/// The upstreams of a backend: ready endpoints of its Service, or an ExternalName's DNS name.
pub(super) fn upstreams(
    index: &Index<'_>,
    ns: &str,
    backend: &IngressBackend,
    https: bool,
    service_proxy: bool,
) -> Result<Vec<Upstream>, Failure> {
    let Some(svc_backend) = &backend.service else {
        return Err((
            "UnsupportedBackend",
            "only Service backends are supported".to_string(),
        ));
    };
    let svc = index.service(ns, &svc_backend.name).ok_or_else(|| {
        (
            "ServiceNotFound",
            format!("Service {ns}/{} does not exist", svc_backend.name),
        )
    })?;
    let spec = svc.spec.clone().unwrap_or_default();
    let port = service_port(&spec.ports.clone().unwrap_or_default(), svc_backend);
    // A Service port that says it speaks HTTP/2 without TLS (gRPC servers, typically).
    let h2c = port.as_ref().and_then(|p| p.app_protocol.as_deref()) == Some("kubernetes.io/h2c");
    let scheme = match (https, h2c) {
        (true, _) => "https",
        (false, true) => "h2c",
        (false, false) => "http",
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        let host = spec.external_name.clone().unwrap_or_default();
        let number = port
            .as_ref()
            .map(|p| p.port)
            .or_else(|| svc_backend.port.as_ref().and_then(|p| p.number))
            .ok_or_else(|| {
                (
                    "PortNotFound",
                    format!(
                        "ExternalName Service {ns}/{} needs a port number",
                        svc_backend.name
                    ),
                )
            })?;
        let url = Url::parse(&format!("{scheme}://{host}:{number}")).map_err(|e| {
            (
                "UnsupportedBackend",
                format!("ExternalName {host:?} is not a host name: {e}"),
            )
        })?;
        return Ok(vec![Upstream::new(url)]);
    }
    let Some(port) = port else {
        return Err((
            "PortNotFound",
            format!(
                "Service {ns}/{} has no port {}",
                svc_backend.name,
                describe_port(svc_backend)
            ),
        ));
    };
    // `service_proxy_upstream`: the Service's cluster IP and port (kube-proxy or the CNI then
    // picks the endpoint), as Pomerium sends to the Service's DNS name.
    if service_proxy {
        let ip = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None")
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
            .ok_or_else(|| {
                (
                    "UnsupportedBackend",
                    format!(
                        "service_proxy_upstream needs a cluster IP, and Service {ns}/{} has none (headless)",
                        svc_backend.name
                    ),
                )
            })?;
        let port_number = u16::try_from(port.port).map_err(|_| {
            (
                "PortNotFound",
                format!(
                    "Service {ns}/{} port {} is out of range",
                    svc_backend.name, port.port
                ),
            )
        })?;
        let addr = std::net::SocketAddr::new(ip, port_number);
        return Url::parse(&format!("{scheme}://{addr}"))
            .map(|u| vec![Upstream::new(u)])
            .map_err(|e| ("UnsupportedBackend", e.to_string()));
    }
    let port_name = port.name.clone().unwrap_or_default();
    let mut addrs = BTreeSet::new();
    for slice in index.slices(ns, &svc_backend.name) {
        let slice_port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.clone().unwrap_or_default() == port_name)
            .and_then(|p| p.port);
        let number = match (slice_port, &port.target_port) {
            (Some(n), _) => n,
            (None, Some(IntOrString::Int(n))) => *n,
            (None, None) => port.port,
            (None, Some(IntOrString::String(_))) => continue,
        };
        let Ok(number) = u16::try_from(number) else {
            continue;
        };
        for ep in slice.endpoints.iter().flatten() {
            // A missing `ready` means ready (EndpointSlice API).
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &ep.addresses {
                if let Ok(ip) = a.parse::<std::net::IpAddr>() {
                    addrs.insert(std::net::SocketAddr::new(ip, number));
                }
            }
        }
    }
    Ok(addrs
        .into_iter()
        .filter_map(|a| Url::parse(&format!("{scheme}://{a}")).ok())
        .map(Upstream::new)
        .collect())
}

fn service_port(ports: &[ServicePort], backend: &IngressServiceBackend) -> Option<ServicePort> {
    let want = backend.port.as_ref()?;
    ports
        .iter()
        .find(|p| match (&want.name, want.number) {
            (Some(name), _) if !name.is_empty() => p.name.as_deref() == Some(name.as_str()),
            (_, Some(n)) => p.port == n,
            _ => false,
        })
        .cloned()
}

fn describe_port(backend: &IngressServiceBackend) -> String {
    match &backend.port {
        Some(p) => match (&p.name, p.number) {
            (Some(n), _) if !n.is_empty() => format!("named {n:?}"),
            (_, Some(n)) => n.to_string(),
            _ => "(none given)".to_string(),
        },
        None => "(none given)".to_string(),
    }
}

/// Drop from a watched Service what no translation reads, before the reflector stores it: a
/// store holds every Service of the watched namespaces, and keeps each for as long as it exists.
/// Kept: name and namespace, and of the spec the ports, the type, the ExternalName and the
/// cluster IP ([`upstreams`], and the Gateway API backends' port names). The status is never
/// read from the store (`--publish-service` reads its one Service from the API server).
pub fn trim_service(s: &mut Service) {
    keep_name_only(&mut s.metadata);
    s.status = None;
    if let Some(spec) = s.spec.take() {
        s.spec = Some(k8s_openapi::api::core::v1::ServiceSpec {
            ports: spec.ports.map(|ports| {
                ports
                    .into_iter()
                    .map(|p| ServicePort {
                        name: p.name,
                        port: p.port,
                        target_port: p.target_port,
                        app_protocol: p.app_protocol,
                        ..ServicePort::default()
                    })
                    .collect()
            }),
            type_: spec.type_,
            external_name: spec.external_name,
            cluster_ip: spec.cluster_ip,
            ..Default::default()
        });
    }
}

/// Drop from a watched EndpointSlice what no translation reads (see [`trim_service`]). Kept:
/// name, namespace and the `kubernetes.io/service-name` label; each port's name and number; each
/// endpoint's addresses and `ready` condition. Dropped, among the rest: the endpoints' target
/// references, node names, zones and hints, which are most of a large slice.
pub fn trim_slice(s: &mut EndpointSlice) {
    let service = s
        .metadata
        .labels
        .as_mut()
        .and_then(|l| l.remove_entry(SERVICE_NAME_LABEL));
    keep_name_only(&mut s.metadata);
    s.metadata.labels = service.map(|(k, v)| BTreeMap::from([(k, v)]));
    if let Some(ports) = s.ports.as_mut() {
        for p in ports.iter_mut() {
            p.protocol = None;
            p.app_protocol = None;
        }
    }
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
    s.endpoints = s.endpoints.take().map(|endpoints| {
        endpoints
            .into_iter()
            .map(|e| Endpoint {
                addresses: e.addresses,
                conditions: e.conditions.map(|c| EndpointConditions {
                    ready: c.ready,
                    ..EndpointConditions::default()
                }),
                ..Endpoint::default()
            })
            .collect()
    });
}

/// Keep an object's name and namespace, nothing else of its metadata.
fn keep_name_only(meta: &mut ObjectMeta) {
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        ..Default::default()
    };
}

fn ingress_certs(
    index: &Index<'_>,
    ing: &Ingress,
    key: &ObjectKey,
    diags: &mut Vec<Diagnostic>,
) -> Vec<CertificatePair> {
    let mut out = Vec::new();
    let tls = ing.spec.as_ref().and_then(|s| s.tls.as_ref());
    for (i, entry) in tls.into_iter().flatten().enumerate() {
        let Some(secret_name) = entry.secret_name.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let origin = format!("{}/{secret_name}", key.namespace);
        let secret = index.secret(&key.namespace, secret_name);
        let Some(secret) = secret else {
            diags.push(Diagnostic {
                object: key.clone(),
                reason: "SecretNotFound",
                message: format!(
                    "tls[{i}]: no kubernetes.io/tls Secret {origin}: its hosts get the default certificate"
                ),
            });
            continue;
        };
        match tls_pair(secret) {
            Ok(cert) => out.push(CertificatePair { origin, cert }),
            Err(e) => diags.push(Diagnostic {
                object: key.clone(),
                reason: "SecretInvalid",
                message: format!(
                    "tls[{i}]: Secret {origin}: {e}: its hosts get the default certificate"
                ),
            }),
        }
    }
    out
}

/// `tls.crt` and `tls.key` of a `kubernetes.io/tls` Secret, loaded.
/// Apply one Secret-reference annotation (Pomerium's rules: header Secrets are `Opaque`, each
/// key a header; a CA Secret holds `ca.crt`; a client certificate is a `kubernetes.io/tls`
/// Secret). A Secret that is missing or does not hold what the
/// option needs is an error (reason, message): the Ingress is then not served rather than
/// served without the headers or trust it asks for. Messages never include Secret values.
fn secret_option(
    options: &mut RouteOptions,
    index: &Index<'_>,
    key: &ObjectKey,
    option: &str,
    name: &str,
) -> Result<(), (&'static str, String)> {
    let secret = index.secret(&key.namespace, name).ok_or_else(|| {
        (
            "SecretNotFound",
            format!("no Secret {}/{name}", key.namespace),
        )
    })?;
    let invalid = |what: String| {
        (
            "SecretInvalid",
            format!("Secret {}/{name}: {what}", key.namespace),
        )
    };
    let data = secret.data.clone().unwrap_or_default();
    let field = |field: &str| {
        data.get(field)
            .map(|b| b.0.clone())
            .ok_or_else(|| invalid(format!("has no key {field:?}")))
    };
    let header =
        |k: &str, v: Vec<u8>| -> Result<(String, crate::config::Secret), (&'static str, String)> {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                return Err(invalid(format!("key {k:?} is not a valid header name")));
            }
            if http::HeaderValue::from_bytes(&v).is_err() {
                return Err(invalid(format!(
                    "the value of {k:?} is not a valid header value"
                )));
            }
            Ok((k.to_ascii_lowercase(), crate::config::Secret::new(v)))
        };
    match option {
        "set_request_headers_secret" | "set_response_headers_secret" => {
            if secret.type_.as_deref().unwrap_or("Opaque") != "Opaque" {
                return Err(invalid(format!(
                    "type is {:?}, not \"Opaque\"",
                    secret.type_.as_deref().unwrap_or("")
                )));
            }
            let target = if option == "set_request_headers_secret" {
                &mut options.secret_request_headers
            } else {
                &mut options.secret_response_headers
            };
            for (k, v) in &data {
                let (k, v) = header(k, v.0.clone())?;
                target.insert(k, v);
            }
        }
        "tls_custom_ca_secret" | "tls_downstream_client_ca_secret" => {
            let pem = field("ca.crt")?;
            let text =
                String::from_utf8(pem).map_err(|_| invalid("ca.crt is not PEM text".into()))?;
            let ders = crate::tls::parse_ca_certificates(&text)
                .map_err(|e| invalid(format!("ca.crt: {e}")))?;
            if option == "tls_custom_ca_secret" {
                options.tls_custom_ca = Some(ders);
            } else {
                crate::tls::client_ca_verifier(&ders)
                    .map_err(|e| invalid(format!("ca.crt: {e}")))?;
                options.tls_downstream_client_ca = Some(ders);
            }
        }
        "kubernetes_service_account_token_secret" => {
            let kind = secret.type_.as_deref().unwrap_or("Opaque");
            if kind != "kubernetes.io/service-account-token" && kind != "Opaque" {
                return Err(invalid(format!(
                    "type is {kind:?}, not \"kubernetes.io/service-account-token\" or \"Opaque\""
                )));
            }
            let token = String::from_utf8(field("token")?)
                .map_err(|_| invalid("token is not text".into()))?;
            let token = token.trim();
            if token.is_empty() || http::HeaderValue::from_str(&format!("Bearer {token}")).is_err()
            {
                return Err(invalid(
                    "token is not a token that can be sent in a header".into(),
                ));
            }
            options.kubernetes_service_account_token =
                Some(crate::config::Secret::from(token.to_string()));
        }
        "tls_client_secret" => match tls_pair(secret) {
            Ok(_) => {
                let text = |f: &str| {
                    field(f).and_then(|b| {
                        String::from_utf8(b).map_err(|_| invalid(format!("{f} is not PEM text")))
                    })
                };
                let cert = crate::tls::load_client_cert(&text("tls.crt")?, &text("tls.key")?)
                    .map_err(|e| invalid(e.to_string()))?;
                options.tls_client_cert = Some(cert);
            }
            Err(e) => return Err(invalid(e)),
        },
        _ => {}
    }
    Ok(())
}

pub(super) fn tls_pair(secret: &Secret) -> Result<crate::tls::LoadedCert, String> {
    if secret.type_.as_deref() != Some("kubernetes.io/tls") {
        return Err(format!(
            "type is {:?}, not \"kubernetes.io/tls\"",
            secret.type_.as_deref().unwrap_or("")
        ));
    }
    let field = |name: &str| -> Result<String, String> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(name))
            .ok_or_else(|| format!("no {name}"))?;
        String::from_utf8(bytes.0.clone()).map_err(|_| format!("{name} is not PEM text"))
    };
    let cert = field("tls.crt")?;
    let key = field("tls.key")?;
    crate::tls::load_pem(&cert, &key).map_err(|e| e.to_string())
}

/// Compile a Policy's spec. Errors name the field path and its position in the spec as YAML.
pub fn compile_policy_spec(spec: &super::crd::PolicySpec) -> Result<Policy, String> {
    let json = serde_json::to_value(spec).map_err(|e| e.to_string())?;
    // Render as YAML and parse back, so the compiler's errors carry positions; the field paths
    // we map them to are what a user finds in `kubectl get ppl -o yaml`.
    let node = serde_saphyr::to_string(&json)
        .ok()
        .and_then(|text| Node::parse(&text).ok())
        .unwrap_or_else(|| Node::from_json(&json));
    let mut paths = HashMap::new();
    field_paths(&node, "spec", &mut paths);
    Policy::from_rule_node(&node).map_err(|errors| {
        errors
            .iter()
            .map(|e| match paths.get(&e.pos) {
                Some(path) => format!(
                    "{path} (line {}, column {} of spec): {}",
                    e.pos.line, e.pos.col, e.message
                ),
                None => e.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    })
}

fn field_paths(node: &Node, path: &str, out: &mut HashMap<Pos, String>) {
    if node.pos.is_known() {
        out.entry(node.pos).or_insert_with(|| path.to_string());
    }
    match &node.value {
        Value::Map(entries) => {
            for (k, v) in entries {
                let p = format!("{path}.{}", k.key_text());
                if k.pos.is_known() {
                    // A key is more specific than the map or item starting at the same place.
                    out.insert(k.pos, p.clone());
                }
                field_paths(v, &p, out);
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                field_paths(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
