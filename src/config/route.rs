//! The route model shared by every source (config file, Kubernetes), and reading routes from the
//! configuration file.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use regex::Regex;
use url::Url;

use super::values::Parser;
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
}

impl Upstream {
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
    pub set_request_headers: BTreeMap<String, String>,
    pub remove_request_headers: Vec<String>,
    pub set_response_headers: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub allow_websockets: bool,
    pub tls_skip_verify: bool,
    pub tls_server_name: Option<String>,
    /// DER certificates to trust for an https upstream.
    pub tls_custom_ca: Option<Vec<Vec<u8>>>,
    /// Cosmetic, for the routes portal: the name shown (an Ingress's `name` annotation; a
    /// file route's `name` is its `Route::name`), a description and a logo.
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub logo_url: Option<Url>,
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
            set_request_headers,
            remove_request_headers,
            set_response_headers,
            timeout,
            idle_timeout,
            allow_websockets,
            tls_skip_verify,
            tls_server_name,
            tls_custom_ca,
            display_name,
            description,
            logo_url,
        } = self;
        let same_rewrite = match (regex_rewrite, &other.regex_rewrite) {
            (None, None) => true,
            (Some((a, s)), Some((b, t))) => a.as_str() == b.as_str() && s == t,
            _ => false,
        };
        same_rewrite
            && *pass_identity_headers == other.pass_identity_headers
            && *preserve_host_header == other.preserve_host_header
            && *host_rewrite == other.host_rewrite
            && *prefix_rewrite == other.prefix_rewrite
            && *set_request_headers == other.set_request_headers
            && *remove_request_headers == other.remove_request_headers
            && *set_response_headers == other.set_response_headers
            && *timeout == other.timeout
            && *idle_timeout == other.idle_timeout
            && *allow_websockets == other.allow_websockets
            && *tls_skip_verify == other.tls_skip_verify
            && *tls_server_name == other.tls_server_name
            && *tls_custom_ca == other.tls_custom_ca
            && *display_name == other.display_name
            && *description == other.description
            && *logo_url == other.logo_url
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
    pub options: RouteOptions,
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
    "timeout",
    "idle_timeout",
    "allow_websockets",
    "tls_skip_verify",
    "tls_server_name",
    "tls_custom_ca",
    "name",
    "description",
    "logo_url",
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
        "host_rewrite" => opts.host_rewrite = p.opt(node, |p| p.string(node, path)),
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
        "tls_skip_verify" => opts.tls_skip_verify = p.boolean(node, path).unwrap_or(false),
        "tls_server_name" => opts.tls_server_name = p.opt(node, |p| p.string(node, path)),
        "name" => opts.display_name = p.opt(node, |p| p.string(node, path)),
        "description" => opts.description = p.opt(node, |p| p.string(node, path)),
        "logo_url" => opts.logo_url = p.opt(node, |p| p.http_url(node, path)),
        "tls_custom_ca" => {
            opts.tls_custom_ca = p.opt(node, |p| {
                let pem = p.pem_or_base64(node, path)?;
                match crate::tls::parse_cert_chain(pem.as_str()) {
                    Ok(ders) if !ders.is_empty() => Some(ders),
                    Ok(_) => {
                        p.error(node.pos, path, "holds no certificate");
                        None
                    }
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

fn header_map(p: &mut Parser, node: &Node, path: &str) -> BTreeMap<String, String> {
    let map = p.string_map(node, path);
    let mut out = BTreeMap::new();
    for (k, v) in map {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            p.error(
                node.pos,
                &format!("{path}.{k}"),
                "is not a valid header name",
            );
        } else if http::HeaderValue::from_str(&v).is_err() {
            p.error(
                node.pos,
                &format!("{path}.{k}"),
                "is not a valid header value",
            );
        } else {
            out.insert(k.to_ascii_lowercase(), v);
        }
    }
    out
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

pub(super) fn parse_routes(p: &mut Parser, node: &Node) -> Vec<Route> {
    let Some(items) = node.as_seq() else {
        if !node.is_null() {
            p.error(
                node.pos,
                "routes",
                format!("expected a list of routes, found {}", node.kind()),
            );
        }
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| parse_route(p, item, i))
        .collect()
}

fn parse_route(p: &mut Parser, node: &Node, index: usize) -> Option<Route> {
    let base = format!("routes[{index}]");
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
                let urls: Vec<Url> = match &v.value {
                    Value::Seq(items) => items
                        .iter()
                        .enumerate()
                        .filter_map(|(i, item)| p.http_url(item, &format!("{path}[{i}]")))
                        .collect(),
                    _ => p.http_url(v, &path).into_iter().collect(),
                };
                to = urls.into_iter().map(|url| Upstream { url }).collect();
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
            "regex_rewrite_substitution" => rewrite_subst = p.string(v, &path),
            other => {
                if !apply_option(p, &mut opts, &mut legacy, other, &path, v) {
                    let hint = match super::values::closest(other, ROUTE_KEYS) {
                        Some(s) => format!("unknown route option {other:?} (did you mean {s:?}?)"),
                        None => format!("unknown route option {other:?}"),
                    };
                    p.error(k.pos, &path, hint);
                }
            }
        }
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
    if to.is_empty() && !entries.iter().any(|(k, _)| k.as_str() == Some("to")) {
        p.error(node.pos, &base, "missing to");
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
        options: opts,
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
}
