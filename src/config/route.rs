//! The route model shared by every source (config file, Kubernetes), and reading routes from the
//! configuration file.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use regex::Regex;
use url::Url;

use super::balancing::{self, HealthCheck, LbPolicy, OutlierDetection};
use super::values::{Parser, Secret};
use crate::ppl::{LegacyOptions, Policy};
use crate::source::{Node, Value};

/// Which hosts a route serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// One host name, lower case.
    Exact(String),
    /// `*.example.com`, stored as `example.com`: matches exactly one more label.
    Wildcard(String),
    /// Every host: an Ingress rule without `host` (and `spec.defaultBackend`). Tried after the
    /// exact and wildcard hosts had no matching path. Not expressible in a `from` URL.
    Any,
}

impl HostPattern {
    pub fn parse(host: &str) -> Result<HostPattern, String> {
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return Err("empty host".to_string());
        }
        if let Some(rest) = host.strip_prefix("*.") {
            if rest.is_empty() || rest.contains('*') {
                return Err(format!("invalid wildcard host {host:?}"));
            }
            return Ok(HostPattern::Wildcard(rest.to_string()));
        }
        if host.contains('*') {
            return Err(format!(
                "invalid host {host:?}: a wildcard must be the whole first label (*.example.com)"
            ));
        }
        Ok(HostPattern::Exact(host))
    }

    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            HostPattern::Any => true,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

/// Which paths a route serves, with the Ingress specification's semantics.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// Every path (a route without `prefix`, `path` or `regex`).
    Any,
    /// By path element: `/foo` matches `/foo` and `/foo/bar`, not `/foobar`. Stored without a
    /// trailing slash (`/` stays `/`).
    Prefix(String),
    /// The path exactly.
    Exact(String),
    /// A regular expression over the whole path (anchored).
    Regex(Regex),
}

impl PathMatch {
    pub fn prefix(p: &str) -> PathMatch {
        let trimmed = p.trim_end_matches('/');
        if trimmed.is_empty() {
            PathMatch::Any
        } else {
            PathMatch::Prefix(trimmed.to_string())
        }
    }

    pub fn regex(pattern: &str) -> Result<PathMatch, String> {
        Regex::new(&format!("^(?:{pattern})$"))
            .map(PathMatch::Regex)
            .map_err(|e| format!("invalid regex {pattern:?}: {e}"))
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => {
                path.starts_with(p.as_str())
                    && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
            }
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

impl PartialEq for PathMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PathMatch::Any, PathMatch::Any) => true,
            (PathMatch::Prefix(a), PathMatch::Prefix(b))
            | (PathMatch::Exact(a), PathMatch::Exact(b)) => a == b,
            (PathMatch::Regex(a), PathMatch::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl fmt::Display for PathMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathMatch::Any => f.write_str("/*"),
            PathMatch::Prefix(p) => write!(f, "{p}/*"),
            PathMatch::Exact(p) => f.write_str(p),
            PathMatch::Regex(r) => write!(f, "~{}", r.as_str()),
        }
    }
}

/// Where allowed requests go.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub url: Url,
    /// Share of requests relative to the route's other upstreams (Pomerium's `URL,WEIGHT`).
    pub weight: u32,
    /// TLS settings of this upstream alone, in place of the route's (a Gateway API
    /// BackendTLSPolicy); only for `https` upstreams.
    pub backend_tls: Option<std::sync::Arc<UpstreamTls>>,
}

/// How one `https` upstream is verified, whatever the route's TLS options say.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    /// Sent as SNI, and the name the certificate must hold.
    pub server_name: String,
    /// DER certificates to trust; `None`: the roots the system trusts.
    pub ca: Option<Vec<Vec<u8>>>,
}

impl Upstream {
    /// HTTP/2 without TLS, with prior knowledge (`h2c://`), e.g. a gRPC server.
    pub fn h2c(&self) -> bool {
        self.url.scheme() == "h2c"
    }

    /// An upstream of weight 1.
    pub fn new(url: Url) -> Upstream {
        Upstream {
            url,
            weight: 1,
            backend_tls: None,
        }
    }

    pub fn tls(&self) -> bool {
        self.url.scheme() == "https"
    }
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }
    pub fn port(&self) -> u16 {
        self.url
            .port_or_known_default()
            .unwrap_or(if self.tls() { 443 } else { 80 })
    }
    /// `host:port` as the upstream's own Host header (port omitted when it is the default).
    pub fn authority(&self) -> String {
        match self.url.port() {
            Some(p) => format!("{}:{p}", self.url.host_str().unwrap_or_default()),
            None => self.url.host_str().unwrap_or_default().to_string(),
        }
    }
}

/// Options of a route beyond matching and policy.
#[derive(Debug, Clone, Default)]
pub struct RouteOptions {
    pub pass_identity_headers: Option<bool>,
    pub preserve_host_header: bool,
    pub host_rewrite: Option<String>,
    pub prefix_rewrite: Option<String>,
    pub regex_rewrite: Option<(Regex, String)>,
    /// The upstream's `Host` is this regex's substitution applied to the request path
    /// (Pomerium's `host_path_regex_rewrite_pattern` / `_substitution`; both must be set).
    pub host_path_regex_rewrite: Option<Regex>,
    pub host_path_regex_substitution: Option<String>,
    pub set_request_headers: BTreeMap<String, String>,
    pub remove_request_headers: Vec<String>,
    pub set_response_headers: BTreeMap<String, String>,
    /// Values appended to a request header (after a comma when it has one already), after
    /// the headers set (a Gateway API `RequestHeaderModifier`'s `add`).
    pub add_request_headers: Vec<(String, String)>,
    /// The same for the response, and response headers removed last (`ResponseHeaderModifier`).
    pub add_response_headers: Vec<(String, String)>,
    pub remove_response_headers: Vec<String>,
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub allow_websockets: bool,
    /// `Upgrade: SPDY/3.1` (e.g. `kubectl exec` through the proxy).
    pub allow_spdy: bool,
    /// Any `Upgrade`.
    pub allow_upgrades: bool,
    pub tls_skip_verify: bool,
    pub tls_server_name: Option<String>,
    /// DER certificates to trust for an https upstream.
    pub tls_custom_ca: Option<Vec<Vec<u8>>>,
    /// DER CA certificates a client certificate must chain to before the route's policy
    /// runs (`tls_downstream_client_ca`); the policy's `client_certificate` sees it.
    pub tls_downstream_client_ca: Option<Vec<Vec<u8>>>,
    /// Headers whose values come from a Kubernetes Secret (`set_request_headers_secret`): set
    /// after `set_request_headers`, never printed.
    pub secret_request_headers: BTreeMap<String, Secret>,
    /// The same for responses (`set_response_headers_secret`).
    pub secret_response_headers: BTreeMap<String, Secret>,
    /// The certificate presented to an https upstream that asks for one (`tls_client_cert` and
    /// `tls_client_key`, their `_file` forms, or the annotation `tls_client_secret`).
    pub tls_client_cert: Option<crate::tls::ClientCert>,
    /// The upstream's `Host` is the value of this request header when the request has it
    /// (Pomerium's `host_rewrite_header`).
    pub host_rewrite_header: Option<String>,
    /// Response headers whose value starts with `prefix` get it replaced by `value`
    /// (Pomerium's `rewrite_response_headers`, e.g. for `Location`).
    pub rewrite_response_headers: Vec<RewriteHeader>,
    /// Answer allowed requests here instead of proxying them (Pomerium's `redirect` and
    /// `response` routes, which have no `to`).
    pub direct: Option<Direct>,
    /// Among regex routes of one host, higher is tried first (Pomerium's
    /// `regex_priority_order`); unset ones come after, in definition order.
    pub regex_priority_order: Option<i64>,
    /// Cosmetic, for the routes portal: the name shown (an Ingress's `name` annotation; a
    /// file route's `name` is its `Route::name`), a description and a logo.
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub logo_url: Option<Url>,
    /// What a plain `Authorization: Bearer` token is on this route (`bearer_token_format`);
    /// `None`: the global setting.
    pub bearer_token_format: Option<crate::guard::bearer::BearerFormat>,
    /// Audiences an access token may be for on this route; `None`: the global list.
    pub idp_access_token_allowed_audiences: Option<Vec<String>>,
    /// Sent as `Authorization: Bearer` to the upstream, with the user impersonated
    /// (`kubernetes_service_account_token`, its `_file` form, or the `_secret` annotation).
    pub kubernetes_service_account_token: Option<Secret>,
    /// Which upstream serves the next request (Pomerium's `load_balancing_policy`).
    pub load_balancing_policy: LbPolicy,
    /// Passive health (Pomerium's `outlier_detection`).
    pub outlier_detection: Option<OutlierDetection>,
    /// Active health (Pomerium's `health_checks`; one check per route).
    pub health_check: Option<HealthCheck>,
    /// Below this share of healthy upstreams (percent), all are used (Envoy's panic mode;
    /// default 50).
    pub healthy_panic_threshold: Option<u8>,
    /// Method, header and query conditions the request must also meet (Gateway API matches).
    pub request_match: super::RequestMatch,
}

/// What a route without upstreams answers once its policy allows the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direct {
    Redirect(Redirect),
    /// A fixed status and text body.
    Respond {
        status: u16,
        body: String,
    },
}

/// Pomerium's `redirect`: every part not given is the request's own.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Redirect {
    pub https: bool,
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    /// Replaces the part of the path the route's `prefix` matched.
    pub prefix_rewrite: Option<String>,
    pub strip_query: bool,
    pub status: u16,
}

impl Redirect {
    /// The Location for a request to `scheme://host[:port]path?query`.
    pub fn location(
        &self,
        scheme: &str,
        host: &str,
        port: Option<u16>,
        path: &str,
        query: Option<&str>,
        matched_prefix: Option<&str>,
    ) -> String {
        let new_scheme = if self.https {
            "https"
        } else {
            self.scheme.as_deref().unwrap_or(scheme)
        };
        let host = self.host.as_deref().unwrap_or(host);
        // A scheme change drops the request's port, as it belonged to the old scheme.
        let port = self
            .port
            .or(if new_scheme == scheme { port } else { None })
            .filter(|p| !matches!((new_scheme, p), ("https", 443) | ("http", 80)));
        let mut path = match (&self.path, &self.prefix_rewrite, matched_prefix) {
            (Some(p), _, _) => p.clone(),
            (None, Some(new), Some(old)) => {
                let rest = path.strip_prefix(old.trim_end_matches('/')).unwrap_or(path);
                format!("{}{}", new.trim_end_matches('/'), rest)
            }
            _ => path.to_string(),
        };
        if path.is_empty() {
            path.push('/');
        }
        let mut out = format!("{new_scheme}://{host}");
        if let Some(p) = port {
            out.push_str(&format!(":{p}"));
        }
        out.push_str(&path);
        if let Some(q) = query.filter(|q| !self.strip_query && !q.is_empty() && !path.contains('?'))
        {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

/// One entry of `rewrite_response_headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteHeader {
    /// Lower-case header name.
    pub header: String,
    pub prefix: String,
    pub value: String,
}

/// The options of every route that sets none.
static DEFAULT_OPTIONS: LazyLock<Arc<RouteOptions>> = LazyLock::new(Arc::default);

impl RouteOptions {
    /// These options as a route holds them: the one shared copy when they equal the defaults
    /// (a `RouteOptions` is over a kilobyte, and most routes set nothing), else their own.
    pub fn shared(self) -> Arc<RouteOptions> {
        if self == **DEFAULT_OPTIONS {
            DEFAULT_OPTIONS.clone()
        } else {
            Arc::new(self)
        }
    }

    /// Whether a request asking to switch to `protocol` (its `Upgrade` header) may: WebSocket
    /// with `allow_websockets`, SPDY/3.1 with `allow_spdy`, anything with `allow_upgrades`.
    pub fn allows_upgrade(&self, protocol: &str) -> bool {
        let p = protocol.trim();
        self.allow_upgrades
            || (self.allow_websockets && p.eq_ignore_ascii_case("websocket"))
            || (self.allow_spdy && p.eq_ignore_ascii_case("SPDY/3.1"))
    }
}

impl RewriteHeader {
    /// The rewritten value, or `None` when the prefix does not match.
    pub fn apply(&self, current: &str) -> Option<String> {
        current
            .strip_prefix(self.prefix.as_str())
            .map(|rest| format!("{}{rest}", self.value))
    }
}

/// Compared field by field (a regular expression by its pattern). The destructuring is
/// exhaustive, so a new option cannot be forgotten here.
impl PartialEq for RouteOptions {
    fn eq(&self, other: &Self) -> bool {
        let RouteOptions {
            pass_identity_headers,
            preserve_host_header,
            host_rewrite,
            prefix_rewrite,
            regex_rewrite,
            host_path_regex_rewrite,
            host_path_regex_substitution,
            set_request_headers,
            remove_request_headers,
            set_response_headers,
            add_request_headers,
            add_response_headers,
            remove_response_headers,
            timeout,
            idle_timeout,
            allow_websockets,
            allow_spdy,
            allow_upgrades,
            tls_skip_verify,
            tls_server_name,
            tls_custom_ca,
            tls_downstream_client_ca,
            secret_request_headers,
            secret_response_headers,
            tls_client_cert,
            host_rewrite_header,
            rewrite_response_headers,
            direct,
            regex_priority_order,
            display_name,
            description,
            logo_url,
            bearer_token_format,
            idp_access_token_allowed_audiences,
            kubernetes_service_account_token,
            load_balancing_policy,
            outlier_detection,
            health_check,
            healthy_panic_threshold,
            request_match,
        } = self;
        let same_rewrite = match (regex_rewrite, &other.regex_rewrite) {
            (None, None) => true,
            (Some((a, s)), Some((b, t))) => a.as_str() == b.as_str() && s == t,
            _ => false,
        };
        same_rewrite
            && host_path_regex_rewrite.as_ref().map(Regex::as_str)
                == other.host_path_regex_rewrite.as_ref().map(Regex::as_str)
            && *host_path_regex_substitution == other.host_path_regex_substitution
            && *pass_identity_headers == other.pass_identity_headers
            && *preserve_host_header == other.preserve_host_header
            && *host_rewrite == other.host_rewrite
            && *prefix_rewrite == other.prefix_rewrite
            && *set_request_headers == other.set_request_headers
            && *remove_request_headers == other.remove_request_headers
            && *set_response_headers == other.set_response_headers
            && *add_request_headers == other.add_request_headers
            && *add_response_headers == other.add_response_headers
            && *remove_response_headers == other.remove_response_headers
            && *timeout == other.timeout
            && *idle_timeout == other.idle_timeout
            && *allow_websockets == other.allow_websockets
            && *allow_spdy == other.allow_spdy
            && *allow_upgrades == other.allow_upgrades
            && *tls_skip_verify == other.tls_skip_verify
            && *tls_server_name == other.tls_server_name
            && *tls_custom_ca == other.tls_custom_ca
            && *tls_downstream_client_ca == other.tls_downstream_client_ca
            && *secret_request_headers == other.secret_request_headers
            && *secret_response_headers == other.secret_response_headers
            && *tls_client_cert == other.tls_client_cert
            && *host_rewrite_header == other.host_rewrite_header
            && *rewrite_response_headers == other.rewrite_response_headers
            && *direct == other.direct
            && *regex_priority_order == other.regex_priority_order
            && *display_name == other.display_name
            && *description == other.description
            && *logo_url == other.logo_url
            && *bearer_token_format == other.bearer_token_format
            && *idp_access_token_allowed_audiences == other.idp_access_token_allowed_audiences
            && *kubernetes_service_account_token == other.kubernetes_service_account_token
            && *load_balancing_policy == other.load_balancing_policy
            && *outlier_detection == other.outlier_detection
            && *health_check == other.health_check
            && *healthy_panic_threshold == other.healthy_panic_threshold
            && *request_match == other.request_match
    }
}

/// One route: which requests, what policy, where to.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// A stable name for logs and metrics: `routes[3]` in a file, `ns/ingress` from Kubernetes.
    pub name: String,
    /// `https` or `http`, from `from`.
    pub scheme: String,
    pub host: HostPattern,
    /// A port given in `from`; requests must then name it.
    pub port: Option<u16>,
    pub path: PathMatch,
    /// Upstreams, used round-robin. Empty means "no backend available" (503).
    pub to: Vec<Upstream>,
    /// The route's policy with the legacy options folded in; deny-all when nothing allows.
    pub policy: Policy,
    /// Shared: routes whose options are all defaults (most Ingress paths) hold one copy
    /// ([`RouteOptions::shared`]); a route that changes its options gets its own
    /// (`Arc::make_mut`).
    pub options: Arc<RouteOptions>,
    /// Where it was defined, for operators: `FILE:LINE:COL`, or `Ingress NS/NAME generation N`
    /// (plus the named Policy objects, when there are).
    pub origin: String,
}

/// Route option keys a user can set (config file keys; annotation names in Kubernetes).
pub const ROUTE_KEYS: &[&str] = &[
    "from",
    "to",
    "prefix",
    "path",
    "regex",
    "policy",
    "allow_public_unauthenticated_access",
    "allow_any_authenticated_user",
    "cors_allow_preflight",
    "allowed_domains",
    "allowed_users",
    "allowed_idp_claims",
    "pass_identity_headers",
    "preserve_host_header",
    "set_request_headers",
    "remove_request_headers",
    "set_response_headers",
    "prefix_rewrite",
    "regex_rewrite_pattern",
    "regex_rewrite_substitution",
    "host_rewrite",
    "host_rewrite_header",
    "host_path_regex_rewrite_pattern",
    "host_path_regex_rewrite_substitution",
    "regex_priority_order",
    "rewrite_response_headers",
    "redirect",
    "response",
    "timeout",
    "idle_timeout",
    "allow_websockets",
    "allow_spdy",
    "allow_upgrades",
    "tls_skip_verify",
    "tls_server_name",
    "tls_upstream_server_name",
    "tls_custom_ca",
    "tls_custom_ca_file",
    "tls_downstream_client_ca",
    "tls_downstream_client_ca_file",
    "tls_client_cert",
    "tls_client_key",
    "tls_client_cert_file",
    "tls_client_key_file",
    "name",
    "description",
    "logo_url",
    "bearer_token_format",
    "idp_access_token_allowed_audiences",
    "kubernetes_service_account_token",
    "kubernetes_service_account_token_file",
    "load_balancing_policy",
    "outlier_detection",
    "health_checks",
    "healthy_panic_threshold",
];

/// Options a source provides by key; used by the config file and by Kubernetes annotations so
/// both read every option the same way.
pub fn apply_option(
    p: &mut Parser,
    opts: &mut RouteOptions,
    legacy: &mut LegacyOptions,
    key: &str,
    path: &str,
    node: &Node,
) -> bool {
    match key {
        "allow_public_unauthenticated_access" => {
            legacy.allow_public_unauthenticated_access = p.boolean(node, path).unwrap_or(false)
        }
        "allow_any_authenticated_user" => {
            legacy.allow_any_authenticated_user = p.boolean(node, path).unwrap_or(false)
        }
        "cors_allow_preflight" => {
            legacy.cors_allow_preflight = p.boolean(node, path).unwrap_or(false)
        }
        "allowed_domains" => legacy.allowed_domains = p.string_list(node, path).unwrap_or_default(),
        "allowed_users" => legacy.allowed_users = p.string_list(node, path).unwrap_or_default(),
        "allowed_idp_claims" => match node.as_map() {
            Some(entries) => {
                for (k, v) in entries {
                    let values = match &v.value {
                        Value::Seq(items) => items.iter().map(Node::to_json).collect(),
                        _ => vec![v.to_json()],
                    };
                    legacy.allowed_idp_claims.insert(k.key_text(), values);
                }
            }
            None => p.error(
                node.pos,
                path,
                format!("expected a map of claim to values, found {}", node.kind()),
            ),
        },
        "pass_identity_headers" => opts.pass_identity_headers = p.boolean(node, path),
        "preserve_host_header" => {
            opts.preserve_host_header = p.boolean(node, path).unwrap_or(false)
        }
        "host_rewrite" => {
            opts.host_rewrite = p.opt(node, |p| {
                let host = p.string(node, path)?;
                // Sent as the upstream's `Host`: refused here rather than failing each request.
                match header_problem("host", Some(&host)) {
                    Some(problem) => {
                        p.error(node.pos, path, problem);
                        None
                    }
                    None => Some(host),
                }
            })
        }
        "host_path_regex_rewrite_pattern" => {
            opts.host_path_regex_rewrite = p.opt(node, |p| {
                let text = p.string(node, path)?;
                match Regex::new(&text) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        p.error(node.pos, path, format!("invalid regex: {e}"));
                        None
                    }
                }
            })
        }
        "host_path_regex_rewrite_substitution" => {
            opts.host_path_regex_substitution = p
                .opt(node, |p| p.string(node, path))
                .map(|s| substitution(&s))
        }
        "regex_priority_order" => {
            opts.regex_priority_order = p.opt(node, |p| match &node.value {
                Value::Int(n) => Some(*n),
                _ => {
                    p.error(
                        node.pos,
                        path,
                        format!("expected a whole number, found {}", node.kind()),
                    );
                    None
                }
            })
        }
        "host_rewrite_header" => {
            opts.host_rewrite_header = p.opt(node, |p| {
                let name = p.string(node, path)?;
                match http::HeaderName::from_bytes(name.as_bytes()) {
                    Ok(h) => Some(h.as_str().to_string()),
                    Err(_) => {
                        p.error(
                            node.pos,
                            path,
                            format!("{name:?} is not a valid header name"),
                        );
                        None
                    }
                }
            })
        }
        "rewrite_response_headers" => {
            opts.rewrite_response_headers = rewrite_headers(p, node, path)
        }
        "prefix_rewrite" => opts.prefix_rewrite = p.opt(node, |p| p.string(node, path)),
        "set_request_headers" => opts.set_request_headers = header_map(p, node, path),
        "remove_request_headers" => {
            opts.remove_request_headers = p
                .string_list(node, path)
                .unwrap_or_default()
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect()
        }
        "set_response_headers" => opts.set_response_headers = header_map(p, node, path),
        "timeout" => opts.timeout = p.opt(node, |p| p.duration(node, path)),
        "idle_timeout" => opts.idle_timeout = p.opt(node, |p| p.duration(node, path)),
        "allow_websockets" => opts.allow_websockets = p.boolean(node, path).unwrap_or(false),
        "allow_spdy" => opts.allow_spdy = p.boolean(node, path).unwrap_or(false),
        "allow_upgrades" => opts.allow_upgrades = p.boolean(node, path).unwrap_or(false),
        "tls_skip_verify" => opts.tls_skip_verify = p.boolean(node, path).unwrap_or(false),
        // Pomerium's newer name for tls_server_name.
        "tls_server_name" | "tls_upstream_server_name" => {
            opts.tls_server_name = p.opt(node, |p| p.string(node, path))
        }
        "bearer_token_format" => {
            opts.bearer_token_format = p.opt(node, |p| p.bearer_format(node, path))
        }
        "idp_access_token_allowed_audiences" => {
            opts.idp_access_token_allowed_audiences = p.opt(node, |p| p.string_list(node, path))
        }
        "name" => opts.display_name = p.opt(node, |p| p.string(node, path)),
        "description" => opts.description = p.opt(node, |p| p.string(node, path)),
        "logo_url" => opts.logo_url = p.opt(node, |p| p.http_url(node, path)),
        "load_balancing_policy" => {
            opts.load_balancing_policy = p
                .opt(node, |p| balancing::lb_policy(p, node, path))
                .unwrap_or_default()
        }
        "outlier_detection" => {
            opts.outlier_detection = p.opt(node, |p| balancing::outlier_detection(p, node, path))
        }
        "health_checks" => {
            opts.health_check = p
                .opt(node, |p| balancing::health_checks(p, node, path))
                .and_then(|mut checks| checks.pop())
        }
        "healthy_panic_threshold" => {
            opts.healthy_panic_threshold =
                p.opt(node, |p| balancing::panic_threshold(p, node, path))
        }
        "tls_custom_ca" => opts.tls_custom_ca = p.opt(node, |p| ca_certificates(p, node, path)),
        "tls_downstream_client_ca" => {
            opts.tls_downstream_client_ca = p.opt(node, |p| {
                let ders = ca_certificates(p, node, path)?;
                match crate::tls::client_ca_verifier(&ders) {
                    Ok(_) => Some(ders),
                    Err(e) => {
                        p.error(node.pos, path, e.to_string());
                        None
                    }
                }
            })
        }
        _ => return false,
    }
    true
}

fn set_direct(
    p: &mut Parser,
    slot: &mut Option<Direct>,
    d: Direct,
    pos: crate::source::Pos,
    path: &str,
) {
    if slot.is_some() {
        p.error(pos, path, "set only one of to, redirect and response");
    }
    *slot = Some(d);
}

/// The entries of a map, or an error at `path`.
pub(super) fn map_of<'a>(p: &mut Parser, node: &'a Node, path: &str) -> Option<&'a [(Node, Node)]> {
    let entries = node.as_map();
    if entries.is_none() {
        p.error(
            node.pos,
            path,
            format!("expected a map, found {}", node.kind()),
        );
    }
    entries
}

/// Pomerium's `redirect` map.
fn parse_redirect(p: &mut Parser, node: &Node, path: &str) -> Option<Redirect> {
    let entries = map_of(p, node, path)?;
    let mut r = Redirect {
        status: 301,
        ..Redirect::default()
    };
    let before = p.errors.len();
    for (k, v) in entries {
        let name = k.key_text();
        let sub = format!("{path}.{name}");
        match name.as_str() {
            "https_redirect" => r.https = p.boolean(v, &sub).unwrap_or(false),
            "scheme_redirect" => {
                r.scheme = p.string(v, &sub).map(|s| s.to_ascii_lowercase());
                if let Some(s) = &r.scheme
                    && s != "http"
                    && s != "https"
                {
                    p.error(v.pos, &sub, format!("{s:?} is not http or https"));
                }
            }
            "host_redirect" => {
                r.host = p.string(v, &sub);
                if let Some(h) = &r.host
                    && !matches!(crate::guard::host::parse_authority(h), Ok((_, None)))
                {
                    p.error(v.pos, &sub, format!("{h:?} is not a host name"));
                }
            }
            "port_redirect" => r.port = p.count(v, &sub, 65535).map(|n| n as u16),
            "path_redirect" => r.path = p.string(v, &sub),
            "prefix_rewrite" => r.prefix_rewrite = p.string(v, &sub),
            "strip_query" => r.strip_query = p.boolean(v, &sub).unwrap_or(false),
            "response_code" => {
                let code = p.string(v, &sub).unwrap_or_default();
                r.status = match code.to_ascii_uppercase().as_str() {
                    "MOVED_PERMANENTLY" | "301" => 301,
                    "FOUND" | "302" => 302,
                    "SEE_OTHER" | "303" => 303,
                    "TEMPORARY_REDIRECT" | "307" => 307,
                    "PERMANENT_REDIRECT" | "308" => 308,
                    _ => {
                        p.error(v.pos, &sub, format!("{code:?} is not one of MOVED_PERMANENTLY, FOUND, SEE_OTHER, TEMPORARY_REDIRECT, PERMANENT_REDIRECT"));
                        301
                    }
                }
            }
            _ => p.error(k.pos, &sub, format!("unknown key {name:?} (expected https_redirect, scheme_redirect, host_redirect, port_redirect, path_redirect, prefix_rewrite, response_code, strip_query)")),
        }
    }
    if let Some(path_value) = &r.path
        && !path_value.starts_with('/')
    {
        p.error(
            node.pos,
            &format!("{path}.path_redirect"),
            format!("{path_value:?} must start with /"),
        );
    }
    (p.errors.len() == before).then_some(r)
}

/// Pomerium's `response` map: `status` and `body`.
fn parse_response(p: &mut Parser, node: &Node, path: &str) -> Option<Direct> {
    let entries = map_of(p, node, path)?;
    let (mut status, mut body) = (None, String::new());
    for (k, v) in entries {
        let name = k.key_text();
        let sub = format!("{path}.{name}");
        match name.as_str() {
            "status" => {
                status = p.count(v, &sub, 599).map(|n| n as u16);
                if status.is_some_and(|s| s < 200) {
                    p.error(v.pos, &sub, "must be between 200 and 599");
                    status = None;
                }
            }
            "body" => body = p.string(v, &sub).unwrap_or_default(),
            _ => p.error(
                k.pos,
                &sub,
                format!("unknown key {name:?} (expected status, body)"),
            ),
        }
    }
    match status {
        Some(status) => Some(Direct::Respond { status, body }),
        None => {
            if !entries.iter().any(|(k, _)| k.as_str() == Some("status")) {
                p.error(node.pos, path, "missing status");
            }
            None
        }
    }
}

/// A bearer token for the upstream: one line of text that can follow `Bearer ` in a header
/// (never echoed in errors).
fn service_account_token(p: &mut Parser, node: &Node, path: &str) -> Option<Secret> {
    let token = p.string(node, path)?.trim().to_string();
    if token.is_empty() {
        p.error(node.pos, path, "is empty");
        return None;
    }
    if http::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
        p.error(
            node.pos,
            path,
            "is not a token that can be sent in a header",
        );
        return None;
    }
    Some(Secret::from(token))
}

/// PEM (or base64 PEM) holding one or more certificates, as DER.
pub(super) fn ca_certificates(p: &mut Parser, node: &Node, path: &str) -> Option<Vec<Vec<u8>>> {
    let pem = p.pem_or_base64(node, path)?;
    match crate::tls::parse_ca_certificates(pem.as_str()) {
        Ok(ders) => Some(ders),
        Err(e) => {
            p.error(node.pos, path, e.to_string());
            None
        }
    }
}

/// A list of `{header, prefix, value}` maps (`prefix` and `value` may be left out: empty).
fn rewrite_headers(p: &mut Parser, node: &Node, path: &str) -> Vec<RewriteHeader> {
    let Some(items) = node.as_seq() else {
        if !node.is_null() {
            p.error(
                node.pos,
                path,
                format!(
                    "expected a list of {{header, prefix, value}}, found {}",
                    node.kind()
                ),
            );
        }
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(entries) = item.as_map() else {
            p.error(
                item.pos,
                &at,
                format!("expected a map, found {}", item.kind()),
            );
            continue;
        };
        let (mut header, mut prefix, mut value) = (None, String::new(), String::new());
        for (k, v) in entries {
            let name = k.key_text();
            let sub = format!("{at}.{name}");
            match name.as_str() {
                "header" => header = p.string(v, &sub),
                "prefix" => prefix = p.string(v, &sub).unwrap_or_default(),
                "value" => value = p.string(v, &sub).unwrap_or_default(),
                _ => p.error(
                    k.pos,
                    &sub,
                    format!("unknown key {name:?} (expected header, prefix, value)"),
                ),
            }
        }
        match header.map(|h| (http::HeaderName::from_bytes(h.as_bytes()), h)) {
            Some((Ok(name), _)) if http::HeaderValue::from_str(&value).is_ok() => {
                out.push(RewriteHeader {
                    header: name.as_str().to_string(),
                    prefix,
                    value,
                })
            }
            Some((Ok(_), _)) => p.error(item.pos, &at, "value is not a valid header value"),
            Some((Err(_), h)) => {
                p.error(item.pos, &at, format!("{h:?} is not a valid header name"))
            }
            None => p.error(item.pos, &at, "missing header"),
        }
    }
    out
}

/// A regex substitution as Pomerium writes it (`\\1` for the first group, as in Envoy) in the
/// form the regex crate reads (`${1}`); `$1` works as well.
pub fn substitution(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(d)) if d.is_ascii_digit() => {
                out.push_str(&format!("${{{d}}}"));
                chars.next();
            }
            ('\\', Some('\\')) => {
                out.push('\\');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Both halves of a pattern/substitution pair, or neither (an error at the one that is set).
pub fn check_host_path_rewrite(
    p: &mut Parser,
    opts: &RouteOptions,
    base: &str,
    pos: crate::source::Pos,
) {
    match (
        &opts.host_path_regex_rewrite,
        &opts.host_path_regex_substitution,
    ) {
        (Some(_), None) => p.error(
            pos,
            base,
            "host_path_regex_rewrite_pattern needs host_path_regex_rewrite_substitution",
        ),
        (None, Some(_)) => p.error(
            pos,
            base,
            "host_path_regex_rewrite_substitution needs host_path_regex_rewrite_pattern",
        ),
        _ => {}
    }
}

/// `URL` or Pomerium's `URL,WEIGHT` (a weight of 1 or more).
fn weighted_upstream(p: &mut Parser, node: &Node, path: &str) -> Option<Upstream> {
    let text = p.string(node, path)?;
    let (url, weight) = match text.rsplit_once(',') {
        Some((url, w)) => match w.trim().parse::<u32>() {
            Ok(w) if w > 0 => (url.trim().to_string(), w),
            _ => {
                p.error(
                    node.pos,
                    path,
                    format!("{w:?} is not a weight (a whole number of 1 or more)"),
                );
                return None;
            }
        },
        None => (text, 1),
    };
    // `h2c://` (HTTP/2 without TLS) is read as `http://` for the URL parser's sake: a
    // special scheme gets the default port and host checks, then is named h2c again.
    let (url, h2c) = match url.strip_prefix("h2c://") {
        Some(rest) => (format!("http://{rest}"), true),
        None => (url, false),
    };
    let mut url = p.http_url(&Node::new(node.pos, Value::String(url)), path)?;
    if h2c {
        match Url::parse(&url.as_str().replacen("http://", "h2c://", 1)) {
            Ok(u) => url = u,
            Err(e) => {
                p.error(node.pos, path, format!("invalid h2c URL: {e}"));
                return None;
            }
        }
    }
    Some(Upstream {
        url,
        weight,
        backend_tls: None,
    })
}

pub(super) fn header_map(p: &mut Parser, node: &Node, path: &str) -> BTreeMap<String, String> {
    let map = p.string_map(node, path);
    let mut out = BTreeMap::new();
    for (k, v) in map {
        match header_problem(&k, Some(&v)) {
            Some(problem) => p.error(node.pos, &format!("{path}.{k}"), problem),
            None => {
                out.insert(k.to_ascii_lowercase(), v);
            }
        }
    }
    out
}

/// Why a header name (and value, when given) cannot be sent, if it cannot: checked when the
/// configuration is read, so that no request fails on it later.
pub fn header_problem(name: &str, value: Option<&str>) -> Option<&'static str> {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        Some("is not a valid header name")
    } else if value.is_some_and(|v| http::HeaderValue::from_str(v).is_err()) {
        Some("is not a valid header value")
    } else {
        None
    }
}

/// Fold the legacy options into the route's policy.
pub fn combine_policy(policy: Option<Policy>, legacy: &LegacyOptions) -> Policy {
    let parts: Vec<Policy> = policy
        .into_iter()
        .chain(Policy::from_legacy(legacy))
        .collect();
    if parts.is_empty() {
        Policy::deny_all()
    } else {
        Policy::merge(parts)
    }
}

/// Parse `from`: `https://host`, `https://*.host`, optionally with a port.
pub fn parse_from(text: &str) -> Result<(String, HostPattern, Option<u16>), String> {
    // `*` is not a valid URL host character: swap it for a placeholder label to parse.
    let placeholder = "wildcard---label";
    let url = Url::parse(&text.replacen("*.", &format!("{placeholder}."), 1))
        .map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(format!("{text:?} must be an http or https URL"));
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(format!(
            "{text:?} must not have a path: use prefix, path or regex to match paths"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?} must not have a query or fragment"));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("{text:?} has no host"))?;
    let host = host.replacen(placeholder, "*", 1);
    let pattern = HostPattern::parse(&host)?;
    Ok((url.scheme().to_string(), pattern, url.port()))
}

/// The routes under `key` (`routes`, or Pomerium's older name `policy`).
pub(super) fn parse_routes(p: &mut Parser, node: &Node, key: &str) -> Vec<Route> {
    let Some(items) = node.as_seq() else {
        if !node.is_null() {
            p.error(
                node.pos,
                key,
                format!("expected a list of routes, found {}", node.kind()),
            );
        }
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| parse_route(p, item, &format!("{key}[{i}]")))
        .collect()
}

fn parse_route(p: &mut Parser, node: &Node, base: &str) -> Option<Route> {
    let base = base.to_string();
    let errors_before = p.errors.len();
    let Some(entries) = node.as_map() else {
        p.error(
            node.pos,
            &base,
            format!("expected a map, found {}", node.kind()),
        );
        return None;
    };
    let mut name = base.clone();
    let mut from = None;
    let mut to = Vec::new();
    let mut path_match: Option<PathMatch> = None;
    let mut policy = None;
    let mut opts = RouteOptions::default();
    let mut legacy = LegacyOptions::default();
    let mut rewrite_pattern: Option<(Regex, crate::source::Pos)> = None;
    let mut rewrite_subst: Option<String> = None;
    let mut client_cert: Option<(Secret, crate::source::Pos)> = None;
    let mut client_key: Option<(Secret, crate::source::Pos)> = None;
    for (k, v) in entries {
        let key = k.key_text();
        let path = format!("{base}.{key}");
        let mut set_path = |p: &mut Parser, m: PathMatch| {
            if path_match.is_some() {
                p.error(
                    k.pos,
                    &path,
                    "only one of prefix, path and regex may be set",
                );
            }
            path_match = Some(m);
        };
        match key.as_str() {
            "name" => {
                if let Some(n) = p.string(v, &path) {
                    name = n
                }
            }
            "from" => {
                if let Some(text) = p.string(v, &path) {
                    match parse_from(&text) {
                        Ok(f) => from = Some(f),
                        Err(e) => p.error(v.pos, &path, e),
                    }
                }
            }
            "to" => {
                to = match &v.value {
                    Value::Seq(items) => items
                        .iter()
                        .enumerate()
                        .filter_map(|(i, item)| weighted_upstream(p, item, &format!("{path}[{i}]")))
                        .collect(),
                    _ => weighted_upstream(p, v, &path).into_iter().collect(),
                };
            }
            "prefix" => {
                if let Some(s) = p.string(v, &path) {
                    if !s.starts_with('/') {
                        p.error(v.pos, &path, format!("{s:?} must start with /"));
                    }
                    set_path(p, PathMatch::prefix(&s));
                }
            }
            "path" => {
                if let Some(s) = p.string(v, &path) {
                    if !s.starts_with('/') {
                        p.error(v.pos, &path, format!("{s:?} must start with /"));
                    }
                    set_path(p, PathMatch::Exact(s));
                }
            }
            "regex" => {
                if let Some(s) = p.string(v, &path) {
                    match PathMatch::regex(&s) {
                        Ok(m) => set_path(p, m),
                        Err(e) => p.error(v.pos, &path, e),
                    }
                }
            }
            "policy" => match Policy::from_node(v) {
                Ok(pol) => policy = Some(pol),
                Err(errors) => {
                    for e in errors {
                        let pos = if e.pos.is_known() { e.pos } else { v.pos };
                        p.error(pos, &path, e.message);
                    }
                }
            },
            "regex_rewrite_pattern" => {
                if let Some(s) = p.string(v, &path) {
                    match Regex::new(&s) {
                        Ok(r) => rewrite_pattern = Some((r, v.pos)),
                        Err(e) => p.error(v.pos, &path, format!("invalid regex: {e}")),
                    }
                }
            }
            "regex_rewrite_substitution" => {
                rewrite_subst = p.string(v, &path).map(|s| substitution(&s))
            }
            "tls_client_cert"
            | "tls_client_key"
            | "tls_client_cert_file"
            | "tls_client_key_file" => {
                let text = if key.ends_with("_file") {
                    p.file_content(v, &path)
                } else {
                    Some(v.clone())
                };
                if let Some(pem) = text.and_then(|n| p.pem_or_base64(&n, &path)) {
                    let slot = if key.starts_with("tls_client_cert") {
                        &mut client_cert
                    } else {
                        &mut client_key
                    };
                    if slot.is_some() {
                        p.error(
                            k.pos,
                            &path,
                            format!(
                                "set only one of {} and its _file form",
                                key.trim_end_matches("_file")
                            ),
                        );
                    }
                    *slot = Some((pem, k.pos));
                }
            }
            "redirect" => {
                if let Some(r) = parse_redirect(p, v, &path) {
                    set_direct(p, &mut opts.direct, Direct::Redirect(r), k.pos, &path);
                }
            }
            "response" => {
                if let Some(r) = parse_response(p, v, &path) {
                    set_direct(p, &mut opts.direct, r, k.pos, &path);
                }
            }
            "kubernetes_service_account_token" | "kubernetes_service_account_token_file" => {
                let text = if key.ends_with("_file") {
                    p.file_content(v, &path)
                } else {
                    Some(v.clone())
                };
                if let Some(token) = text.and_then(|n| service_account_token(p, &n, &path)) {
                    if opts.kubernetes_service_account_token.is_some() {
                        p.error(
                            k.pos,
                            &path,
                            "set only one of kubernetes_service_account_token and its _file form",
                        );
                    }
                    opts.kubernetes_service_account_token = Some(token);
                }
            }
            "tls_custom_ca_file" | "tls_downstream_client_ca_file" => {
                if let Some(content) = p.file_content(v, &path) {
                    let inline = key.trim_end_matches("_file");
                    apply_option(p, &mut opts, &mut legacy, inline, &path, &content);
                }
            }
            other => {
                if !apply_option(p, &mut opts, &mut legacy, other, &path, v) {
                    match super::pomerium::unimplemented(super::pomerium::route(other)) {
                        Some(super::pomerium::Unimplemented::Notice(text)) => {
                            p.notice(k.pos, &path, text)
                        }
                        Some(super::pomerium::Unimplemented::Refuse(text)) => {
                            p.error(k.pos, &path, text)
                        }
                        None => {
                            let hint = match super::values::closest(other, ROUTE_KEYS) {
                                Some(s) => {
                                    format!("unknown route option {other:?} (did you mean {s:?}?)")
                                }
                                None => format!("unknown route option {other:?}"),
                            };
                            p.error(k.pos, &path, hint);
                        }
                    }
                }
            }
        }
    }
    check_host_path_rewrite(p, &opts, &base, node.pos);
    match (client_cert, client_key) {
        (Some((cert, pos)), Some((key, _))) => {
            match crate::tls::load_client_cert(cert.as_str(), key.as_str()) {
                Ok(c) => opts.tls_client_cert = Some(c),
                Err(e) => p.error(pos, &format!("{base}.tls_client_cert"), e.to_string()),
            }
        }
        (Some((_, pos)), None) => p.error(
            pos,
            &format!("{base}.tls_client_cert"),
            "needs tls_client_key",
        ),
        (None, Some((_, pos))) => p.error(
            pos,
            &format!("{base}.tls_client_key"),
            "needs tls_client_cert",
        ),
        (None, None) => {}
    }
    match (rewrite_pattern, rewrite_subst) {
        (Some((r, _)), Some(s)) => opts.regex_rewrite = Some((r, s)),
        (Some((_, pos)), None) => p.error(
            pos,
            &base,
            "regex_rewrite_pattern needs regex_rewrite_substitution",
        ),
        (None, Some(_)) => p.error(
            node.pos,
            &base,
            "regex_rewrite_substitution needs regex_rewrite_pattern",
        ),
        (None, None) => {}
    }
    if from.is_none() && !entries.iter().any(|(k, _)| k.as_str() == Some("from")) {
        p.error(node.pos, &base, "missing from");
    }
    let has = |name: &str| entries.iter().any(|(k, _)| k.as_str() == Some(name));
    let directs = has("redirect") as usize + has("response") as usize;
    if !has("to") && directs == 0 {
        p.error(node.pos, &base, "missing to (or redirect, or response)");
    } else if has("to") && directs > 0 {
        p.error(node.pos, &base, "set only one of to, redirect and response");
    }
    if p.errors.len() > errors_before {
        return None;
    }
    let (scheme, host, port) = from?;
    Some(Route {
        name,
        scheme,
        host,
        port,
        path: path_match.unwrap_or(PathMatch::Any),
        to,
        policy: combine_policy(policy, &legacy),
        options: opts.shared(),
        origin: format!("{}:{}", p.origin, node.pos),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_by_element() {
        let m = PathMatch::prefix("/foo");
        assert!(m.matches("/foo"));
        assert!(m.matches("/foo/"));
        assert!(m.matches("/foo/bar"));
        assert!(!m.matches("/foobar"));
        assert!(!m.matches("/fo"));
        let m = PathMatch::prefix("/foo/");
        assert!(m.matches("/foo"));
        assert!(m.matches("/foo/bar"));
        assert!(PathMatch::prefix("/").matches("/anything"));
        assert!(
            !PathMatch::prefix("/Foo").matches("/foo"),
            "paths are case sensitive"
        );
    }

    #[test]
    fn wildcard_is_one_label() {
        let w = HostPattern::parse("*.example.com").unwrap();
        assert!(w.matches("a.example.com"));
        assert!(!w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert!(HostPattern::parse("a.*.com").is_err());
    }

    #[test]
    fn from_urls() {
        let (scheme, host, port) = parse_from("https://*.example.com:8443").unwrap();
        assert_eq!(scheme, "https");
        assert_eq!(host, HostPattern::Wildcard("example.com".into()));
        assert_eq!(port, Some(8443));
        assert!(parse_from("https://example.com/path").is_err());
        assert!(parse_from("ftp://example.com").is_err());
    }

    #[test]
    fn redirect_locations_keep_what_is_not_replaced() {
        let r = |f: fn(&mut Redirect)| {
            let mut r = Redirect {
                status: 301,
                ..Redirect::default()
            };
            f(&mut r);
            r
        };
        let loc = |r: &Redirect| {
            r.location(
                "http",
                "a.test",
                Some(8000),
                "/old/x",
                Some("q=1"),
                Some("/old/"),
            )
        };
        assert_eq!(loc(&r(|_| {})), "http://a.test:8000/old/x?q=1");
        assert_eq!(
            loc(&r(|r| r.https = true)),
            "https://a.test/old/x?q=1",
            "the old port belonged to http"
        );
        assert_eq!(
            loc(&r(|r| {
                r.host = Some("b.test".into());
                r.port = Some(9443);
                r.scheme = Some("https".into());
            })),
            "https://b.test:9443/old/x?q=1"
        );
        assert_eq!(
            loc(&r(|r| r.prefix_rewrite = Some("/new/".into()))),
            "http://a.test:8000/new/x?q=1"
        );
        assert_eq!(
            loc(&r(|r| {
                r.path = Some("/fixed".into());
                r.strip_query = true;
            })),
            "http://a.test:8000/fixed"
        );
    }

    #[test]
    fn substitutions_as_pomerium_writes_them() {
        assert_eq!(substitution(r"\2/instance/\1"), "${2}/instance/${1}");
        assert_eq!(substitution("/new/$1"), "/new/$1");
        assert_eq!(substitution(r"a\\b"), r"a\b");
        let re = Regex::new("^/service/([^/]+)(/.*)$").unwrap();
        assert_eq!(
            re.replace_all(
                "/service/foo/v1/api",
                substitution(r"\2/instance/\1").as_str()
            ),
            "/v1/api/instance/foo"
        );
    }

    #[test]
    fn upgrades_by_protocol() {
        let mut o = RouteOptions::default();
        assert!(!o.allows_upgrade("websocket"));
        o.allow_websockets = true;
        assert!(o.allows_upgrade("WebSocket") && !o.allows_upgrade("SPDY/3.1"));
        o.allow_spdy = true;
        assert!(o.allows_upgrade("SPDY/3.1") && !o.allows_upgrade("h2c"));
        o.allow_upgrades = true;
        assert!(o.allows_upgrade("h2c"));
    }
}
