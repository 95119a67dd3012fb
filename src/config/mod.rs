//! Settings: Pomerium-compatible configuration keys, read from a YAML file and overridden by
//! upper-case environment variables, and the [`Route`] model that both the file and the
//! Kubernetes controller produce.

pub mod balancing;
pub mod pomerium;
mod request_match;
mod route;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use request_match::{RequestMatch, ValueMatch};
pub use route::{
    Direct, HostPattern, PathMatch, ROUTE_KEYS, Redirect, RewriteHeader, Route, RouteOptions,
    Upstream, UpstreamTls, apply_option, check_host_path_rewrite, combine_policy, header_problem,
    substitution,
};
use url::Url;
pub use values::{Parser, Secret, closest};

pub use crate::guard::bearer::BearerFormat;
use crate::guard::path::{EscapedSlashes, PathOptions};
use crate::source::{Node, Pos, Value};

/// One problem in a configuration: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// The file (or `environment variable NAME`, or an object name) the value came from.
    pub origin: String,
    pub pos: Pos,
    /// The key path, e.g. `routes[2].timeout`.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn render(&self) -> String {
        let mut out = self.origin.clone();
        if self.pos.is_known() {
            out.push_str(&format!(":{}", self.pos));
        }
        if !self.key.is_empty() {
            out.push_str(&format!(": {}", self.key));
        }
        out.push_str(&format!(": {}", self.message));
        out
    }
}

/// All the problems found in one configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A certificate and its key, loaded (parsed and checked to belong together) once, when the
/// configuration or the Secret is read.
#[derive(Clone, PartialEq)]
pub struct CertificatePair {
    pub cert: crate::tls::LoadedCert,
    /// Where it came from, for messages.
    pub origin: String,
}

impl fmt::Debug for CertificatePair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificatePair")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpProvider {
    Auth0,
    Oidc,
}

/// Every setting of the process. Defaults follow Pomerium's where it has one.
#[derive(Debug, Clone)]
pub struct Settings {
    pub address: SocketAddr,
    pub http_redirect_addr: Option<SocketAddr>,
    pub insecure_server: bool,
    pub metrics_address: Option<SocketAddr>,
    pub authenticate_service_url: Option<Url>,
    pub idp_provider: Option<IdpProvider>,
    pub idp_provider_url: Option<Url>,
    pub idp_client_id: Option<String>,
    pub idp_client_secret: Option<Secret>,
    pub idp_scopes: Vec<String>,
    /// `log_level` (applied at start unless `RUST_LOG` is set).
    pub log_level: Option<LogLevel>,
    /// `set_response_headers` at the top level; `None` when not set (Pomerium's defaults apply).
    pub set_response_headers: Option<BTreeMap<String, String>>,
    /// Where the browser goes after signing out (the identity provider must allow it).
    pub signout_redirect_url: Option<Url>,
    /// Extra parameters of the authorization request (`idp_request_params`).
    pub idp_request_params: BTreeMap<String, String>,
    pub idp_service_account: Option<Secret>,
    /// What a plain `Authorization: Bearer` token is (`bearer_token_format`); a route's wins.
    pub bearer_token_format: BearerFormat,
    /// Audiences an identity provider access token may be for
    /// (`idp_access_token_allowed_audiences`); a route's list wins. Empty: none accepted.
    pub idp_access_token_allowed_audiences: Vec<String>,
    pub cookie_name: String,
    pub cookie_secret: Option<Secret>,
    pub cookie_expire: Duration,
    pub cookie_domain: Option<String>,
    pub cookie_same_site: SameSite,
    pub shared_secret: Option<Secret>,
    pub signing_key: Option<Secret>,
    pub certificates: Vec<CertificatePair>,
    /// Header name → claim name.
    pub jwt_claims_headers: BTreeMap<String, String>,
    pub pass_identity_headers: bool,
    pub timeout: Duration,
    /// Pomerium's `timeout_read`: how long a read from a client may wait (0: no limit).
    pub timeout_read: Duration,
    /// `timeout_write`: how long a write to a client may wait (0, the default: no limit).
    pub timeout_write: Duration,
    /// `timeout_idle`: how long a kept-alive client connection may wait for its next request.
    pub timeout_idle: Duration,
    /// Pomerium's `downstream_mtls`: client certificates for every route without its own
    /// `tls_downstream_client_ca`.
    pub downstream_mtls: Option<DownstreamMtls>,
    /// How request paths are made canonical before routing (Pomerium's `normalize_path`,
    /// `merge_slashes`, `path_with_escaped_slashes_action`).
    pub path: PathOptions,
    /// How many proxies in front of us may be trusted with `X-Forwarded-For`
    /// (Pomerium's `xff_num_trusted_hops`); 0 drops forwarding headers from clients.
    pub xff_num_trusted_hops: usize,
    /// How our own pages look.
    pub branding: Branding,
    pub routes: Vec<Route>,
    /// Pomerium keys that were accepted with no effect, each with why (logged once per load).
    pub notices: Vec<ConfigError>,
}

/// How the pages Portcullis writes look: Pomerium's branding keys (`primary_color`,
/// `secondary_color`, `logo_url`, `favicon_url`, `error_message_first_paragraph`) and our
/// `product_name`. Colours are checked (`#rgb` or `#rrggbb`), so a value cannot carry CSS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Branding {
    pub product_name: Option<String>,
    pub primary_color: Option<String>,
    pub secondary_color: Option<String>,
    pub logo_url: Option<Url>,
    pub favicon_url: Option<Url>,
    pub error_message_first_paragraph: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            address: SocketAddr::from(([0, 0, 0, 0], 443)),
            http_redirect_addr: None,
            insecure_server: false,
            metrics_address: None,
            authenticate_service_url: None,
            idp_provider: None,
            idp_provider_url: None,
            idp_client_id: None,
            idp_client_secret: None,
            idp_scopes: Vec::new(),
            idp_request_params: BTreeMap::new(),
            signout_redirect_url: None,
            set_response_headers: None,
            log_level: None,
            idp_service_account: None,
            bearer_token_format: BearerFormat::Default,
            idp_access_token_allowed_audiences: Vec::new(),
            cookie_name: "_pomerium".to_string(),
            cookie_secret: None,
            cookie_expire: Duration::from_secs(14 * 3600),
            cookie_domain: None,
            cookie_same_site: SameSite::Lax,
            shared_secret: None,
            signing_key: None,
            certificates: Vec::new(),
            jwt_claims_headers: BTreeMap::new(),
            pass_identity_headers: false,
            timeout: Duration::from_secs(30),
            timeout_read: Duration::from_secs(30),
            timeout_write: Duration::ZERO,
            timeout_idle: Duration::from_secs(300),
            downstream_mtls: None,
            path: PathOptions::default(),
            xff_num_trusted_hops: 0,
            branding: Branding::default(),
            routes: Vec::new(),
            notices: Vec::new(),
        }
    }
}

/// The top-level keys, in the order they are documented.
pub const KEYS: &[&str] = &[
    "address",
    "http_redirect_addr",
    "insecure_server",
    "metrics_address",
    "authenticate_service_url",
    "idp_provider",
    "idp_provider_url",
    "idp_client_id",
    "idp_client_secret",
    "idp_scopes",
    "idp_request_params",
    "signout_redirect_url",
    "set_response_headers",
    "log_level",
    "idp_service_account",
    "bearer_token_format",
    "idp_access_token_allowed_audiences",
    "cookie_name",
    "cookie_secret",
    "cookie_expire",
    "cookie_domain",
    "cookie_same_site",
    "cookie_http_only",
    "shared_secret",
    "signing_key",
    "certificates",
    "certificate",
    "certificate_key",
    "jwt_claims_headers",
    "pass_identity_headers",
    "timeout",
    "default_upstream_timeout",
    "timeout_read",
    "timeout_write",
    "timeout_idle",
    "downstream_mtls",
    "normalize_path",
    "merge_slashes",
    "path_with_escaped_slashes_action",
    "xff_num_trusted_hops",
    "product_name",
    "primary_color",
    "secondary_color",
    "logo_url",
    "favicon_url",
    "error_message_first_paragraph",
    "routes",
    "policy",
    // Secrets and certificates read from files (Pomerium's `*_file` keys).
    "idp_client_secret_file",
    "cookie_secret_file",
    "shared_secret_file",
    "signing_key_file",
    "certificate_file",
    "certificate_key_file",
];

/// Authorization request parameters `idp_request_params` may not set: they carry the
/// sign-in's own protections (state, nonce, PKCE) or identify the client.
const RESERVED_AUTHORIZE_PARAMS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "request",
    "request_uri",
];

/// Keys whose value may instead be read from a file named by `<key>_file`.
const FILE_VARIANTS: &[(&str, &str)] = &[
    ("idp_client_secret", "idp_client_secret_file"),
    ("cookie_secret", "cookie_secret_file"),
    ("shared_secret", "shared_secret_file"),
    ("signing_key", "signing_key_file"),
    ("certificate", "certificate_file"),
    ("certificate_key", "certificate_key_file"),
];

/// Pomerium's `log_level` values (`warning` is read as `warn`; `fatal` and `panic` as `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn parse(text: &str) -> Option<LogLevel> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" | "fatal" | "panic" => LogLevel::Error,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// A `set_response_headers` key that turns every header set that way off (Pomerium's).
pub const DISABLE_HEADERS: &str = "disable";

/// Pomerium's default response headers, set when `set_response_headers` is not: these two on
/// every response, [`DEFAULT_HSTS`] as well when TLS is served with certificates.
pub const DEFAULT_RESPONSE_HEADERS: [(&str, &str); 2] = [
    ("x-frame-options", "SAMEORIGIN"),
    ("x-xss-protection", "1; mode=block"),
];

/// The default `Strict-Transport-Security`.
pub const DEFAULT_HSTS: (&str, &str) = (
    "strict-transport-security",
    "max-age=31536000; includeSubDomains; preload",
);

impl Settings {
    /// The headers every proxied response gets: `set_response_headers` as written, or when it
    /// is not set Pomerium's defaults (`Strict-Transport-Security` only when certificates are
    /// configured and TLS is served); none when it holds `disable`.
    pub fn response_headers(&self) -> BTreeMap<String, String> {
        let mut out = match &self.set_response_headers {
            Some(h) => h.clone(),
            None => {
                let hsts = !self.insecure_server && !self.certificates.is_empty();
                DEFAULT_RESPONSE_HEADERS
                    .into_iter()
                    .chain(hsts.then_some(DEFAULT_HSTS))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }
        };
        if out.contains_key(DISABLE_HEADERS) {
            out.clear();
        }
        out
    }

    /// Read a configuration file, then apply environment overrides from the process.
    pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                origin: origin.clone(),
                pos: Pos::NONE,
                key: String::new(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        Settings::parse(&text, &origin, |name| std::env::var(name).ok())
    }

    /// Parse configuration text; `env` looks up environment variables (a parameter so tests
    /// need not touch the process environment).
    pub fn parse(
        text: &str,
        origin: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigErrors> {
        let root = Node::parse(text).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                origin: origin.to_string(),
                pos: e.pos,
                key: String::new(),
                message: format!("invalid YAML: {}", e.message),
            }])
        })?;
        let mut p = values::Parser::new(origin);
        let mut entries: BTreeMap<&'static str, Node> = BTreeMap::new();
        match &root.value {
            Value::Null => {}
            Value::Map(map) => {
                for (k, v) in map {
                    let name = k.key_text();
                    match KEYS.iter().find(|key| **key == name) {
                        Some(key) => {
                            entries.insert(key, v.clone());
                        }
                        None => match pomerium::unimplemented(pomerium::global(&name)) {
                            Some(pomerium::Unimplemented::Notice(text)) => {
                                p.notice(k.pos, &name, text)
                            }
                            Some(pomerium::Unimplemented::Refuse(text)) => {
                                p.error(k.pos, &name, text)
                            }
                            None => p.error(k.pos, &name, unknown_key_message(&name, KEYS)),
                        },
                    }
                }
            }
            _ => p.error(
                root.pos,
                "",
                format!("expected a map of settings, found {}", root.kind()),
            ),
        }
        // Environment variables win over the file, as in Pomerium.
        let mut env_origin: BTreeMap<&'static str, String> = BTreeMap::new();
        for key in KEYS {
            let var = key.to_ascii_uppercase();
            if let Some(raw) = env(&var) {
                let node = values::env_node(&raw);
                entries.insert(key, node);
                env_origin.insert(key, format!("environment variable {var}"));
            }
        }

        // `<key>_file`: the value is the file's content, read now and then parsed as `<key>`
        // (errors still name `<key>_file`); setting both is an error.
        let mut read_from: BTreeMap<&str, &str> = BTreeMap::new();
        for (plain, file_key) in FILE_VARIANTS {
            let Some(node) = entries.get(file_key) else {
                continue;
            };
            p.origin = env_origin
                .get(file_key)
                .cloned()
                .unwrap_or_else(|| origin.to_string());
            if entries.contains_key(plain) {
                p.error(
                    node.pos,
                    file_key,
                    format!("set only one of {plain} and {file_key}"),
                );
            } else if let Some(content) = p.file_content(node, file_key) {
                entries.insert(plain, content);
                if let Some(o) = env_origin.get(file_key).cloned() {
                    env_origin.insert(plain, o);
                }
                read_from.insert(plain, file_key);
            }
        }
        if entries.contains_key("timeout")
            && let Some(node) = entries.get("default_upstream_timeout")
        {
            p.error(
                node.pos,
                "default_upstream_timeout",
                "set only one of timeout and default_upstream_timeout",
            );
        }

        let mut s = Settings::default();
        let mut certificate: Option<(Secret, Pos)> = None;
        let mut certificate_key: Option<(Secret, Pos)> = None;
        for (name, node) in &entries {
            let name: &str = name;
            p.origin = env_origin
                .get(name)
                .cloned()
                .unwrap_or_else(|| origin.to_string());
            let key = read_from.get(name).copied().unwrap_or(name);
            let p = &mut p;
            match name {
                "address" => {
                    if let Some(a) = p.socket_addr(node, key) {
                        s.address = a
                    }
                }
                "http_redirect_addr" => {
                    s.http_redirect_addr = p.opt(node, |p| p.socket_addr(node, key))
                }
                "insecure_server" => {
                    if let Some(b) = p.boolean(node, key) {
                        s.insecure_server = b
                    }
                }
                "metrics_address" => s.metrics_address = p.opt(node, |p| p.socket_addr(node, key)),
                "authenticate_service_url" => {
                    s.authenticate_service_url = p.opt(node, |p| p.http_url(node, key))
                }
                "idp_provider" => {
                    s.idp_provider = p.opt(node, |p| match p.string(node, key)?.as_str() {
                        "auth0" => Some(IdpProvider::Auth0),
                        "oidc" => Some(IdpProvider::Oidc),
                        other => {
                            p.error(
                                node.pos,
                                key,
                                format!(
                                    "unsupported provider {other:?}: use \"auth0\" or \"oidc\""
                                ),
                            );
                            None
                        }
                    })
                }
                "idp_provider_url" => s.idp_provider_url = p.opt(node, |p| p.http_url(node, key)),
                "idp_client_id" => s.idp_client_id = p.opt(node, |p| p.string(node, key)),
                "idp_client_secret" => {
                    s.idp_client_secret = p.opt(node, |p| p.string(node, key).map(Secret::from))
                }
                "idp_scopes" => s.idp_scopes = p.string_list(node, key).unwrap_or_default(),
                "log_level" => {
                    s.log_level = p.opt(node, |p| {
                        p.choice(
                            node,
                            key,
                            LogLevel::parse,
                            "trace, debug, info, warn, error",
                        )
                    })
                }
                "set_response_headers" => {
                    s.set_response_headers = Some(route::header_map(p, node, key))
                }
                "signout_redirect_url" => {
                    s.signout_redirect_url = p.opt(node, |p| p.http_url(node, key))
                }
                "idp_request_params" => {
                    let params = p.string_map(node, key);
                    for name in params.keys() {
                        if RESERVED_AUTHORIZE_PARAMS.contains(&name.as_str()) {
                            p.error(
                                node.pos,
                                &format!("{key}.{name}"),
                                "is set by Portcullis itself (it protects the sign-in)",
                            );
                        }
                    }
                    s.idp_request_params = params;
                }
                "idp_service_account" => {
                    s.idp_service_account = p.opt(node, |p| p.string(node, key).map(Secret::from))
                }
                "bearer_token_format" => {
                    if let Some(f) = p.bearer_format(node, key) {
                        s.bearer_token_format = f
                    }
                }
                "idp_access_token_allowed_audiences" => {
                    s.idp_access_token_allowed_audiences =
                        p.string_list(node, key).unwrap_or_default()
                }
                "cookie_name" => match p.string(node, key) {
                    // The session is found in a `Cookie` header read as text and taken out of its
                    // bytes: both see a token's bytes alike.
                    Some(n) if is_cookie_name(&n) => s.cookie_name = n,
                    Some(_) => p.error(
                        node.pos,
                        key,
                        "is not a cookie name: use letters, digits and !#$%&'*+-.^_`|~ (a token, \
                         RFC 6265)",
                    ),
                    None => {}
                },
                "cookie_secret" => s.cookie_secret = p.opt(node, |p| p.key_bytes(node, key, 32)),
                "cookie_expire" => {
                    if let Some(d) = p.duration(node, key) {
                        s.cookie_expire = d
                    }
                }
                "cookie_domain" => s.cookie_domain = p.opt(node, |p| p.string(node, key)),
                "cookie_same_site" => {
                    if let Some(v) = p.string(node, key) {
                        match v.to_ascii_lowercase().as_str() {
                            "lax" => s.cookie_same_site = SameSite::Lax,
                            "strict" => s.cookie_same_site = SameSite::Strict,
                            "none" => s.cookie_same_site = SameSite::None,
                            _ => p.error(
                                node.pos,
                                key,
                                format!("{v:?} is not one of lax, strict, none"),
                            ),
                        }
                    }
                }
                "shared_secret" => s.shared_secret = p.opt(node, |p| p.key_bytes(node, key, 32)),
                "signing_key" => s.signing_key = p.opt(node, |p| p.pem_or_base64(node, key)),
                "certificates" => s.certificates = p.certificates(node, key),
                "jwt_claims_headers" => s.jwt_claims_headers = p.claims_headers(node, key),
                "pass_identity_headers" => {
                    if let Some(b) = p.boolean(node, key) {
                        s.pass_identity_headers = b
                    }
                }
                "timeout" | "default_upstream_timeout" => {
                    if let Some(d) = p.duration(node, key) {
                        s.timeout = d
                    }
                }
                "downstream_mtls" => {
                    s.downstream_mtls = p.opt(node, |p| downstream_mtls(p, node, key))
                }
                "timeout_read" => s.timeout_read = p.duration(node, key).unwrap_or(s.timeout_read),
                "timeout_write" => {
                    s.timeout_write = p.duration(node, key).unwrap_or(s.timeout_write)
                }
                "timeout_idle" => s.timeout_idle = p.duration(node, key).unwrap_or(s.timeout_idle),
                "cookie_http_only" if p.boolean(node, key) == Some(false) => p.error(
                    node.pos,
                    key,
                    "session cookies are always HttpOnly: only true is accepted",
                ),
                "certificate" => {
                    certificate = p.opt(node, |p| p.pem_or_base64(node, key).map(|c| (c, node.pos)))
                }
                "certificate_key" => {
                    certificate_key =
                        p.opt(node, |p| p.pem_or_base64(node, key).map(|c| (c, node.pos)))
                }
                "normalize_path" => {
                    if let Some(b) = p.boolean(node, key) {
                        s.path.normalize = b
                    }
                }
                "merge_slashes" => {
                    if let Some(b) = p.boolean(node, key) {
                        s.path.merge_slashes = b
                    }
                }
                "path_with_escaped_slashes_action" => {
                    if let Some(v) = p.string(node, key) {
                        match EscapedSlashes::parse(&v) {
                            Some(action) => s.path.escaped_slashes = action,
                            None => p.error(
                                node.pos,
                                key,
                                format!(
                                    "{v:?} is not one of reject_request, keep_unchanged, unescape_and_forward"
                                ),
                            ),
                        }
                    }
                }
                "xff_num_trusted_hops" => {
                    if let Some(n) = p.count(node, key, 16) {
                        s.xff_num_trusted_hops = n as usize
                    }
                }
                "product_name" => s.branding.product_name = p.opt(node, |p| p.string(node, key)),
                "primary_color" => s.branding.primary_color = p.opt(node, |p| p.color(node, key)),
                "secondary_color" => {
                    s.branding.secondary_color = p.opt(node, |p| p.color(node, key))
                }
                "logo_url" => s.branding.logo_url = p.opt(node, |p| p.http_url(node, key)),
                "favicon_url" => s.branding.favicon_url = p.opt(node, |p| p.http_url(node, key)),
                "error_message_first_paragraph" => {
                    s.branding.error_message_first_paragraph = p.opt(node, |p| p.string(node, key))
                }
                // Pomerium reads both; `policy` is the older name.
                "routes" | "policy" => s.routes.extend(route::parse_routes(p, node, key)),
                _ => {}
            }
        }
        match (certificate, certificate_key) {
            (Some((cert, pos)), Some((key, _))) => {
                p.origin = env_origin
                    .get("certificate")
                    .cloned()
                    .unwrap_or_else(|| origin.to_string());
                match crate::tls::load_pem(cert.as_str(), key.as_str()) {
                    Ok(cert) => s.certificates.push(CertificatePair {
                        cert,
                        origin: format!("{}: certificate", p.origin),
                    }),
                    Err(e) => p.error(pos, "certificate", e.to_string()),
                }
            }
            (Some((_, pos)), None) => p.error(pos, "certificate", "needs certificate_key"),
            (None, Some((_, pos))) => p.error(pos, "certificate_key", "needs certificate"),
            (None, None) => {}
        }
        // Sign-in needs its identity provider: say so at the key that turns sign-in on.
        if s.authenticate_service_url.is_some()
            && let Some(node) = entries.get("authenticate_service_url")
        {
            p.origin = env_origin
                .get("authenticate_service_url")
                .cloned()
                .unwrap_or_else(|| origin.to_string());
            for (required, missing) in [
                ("idp_provider_url", s.idp_provider_url.is_none()),
                ("idp_client_id", s.idp_client_id.is_none()),
                ("idp_client_secret", s.idp_client_secret.is_none()),
            ] {
                if missing {
                    p.error(
                        node.pos,
                        "authenticate_service_url",
                        format!("sign-in is turned on here, so {required} is required"),
                    );
                }
            }
        }
        if p.errors.is_empty() {
            s.notices = std::mem::take(&mut p.notices);
            Ok(s)
        } else {
            Err(ConfigErrors(p.errors))
        }
    }
}

fn unknown_key_message(name: &str, known: &[&str]) -> String {
    match values::closest(name, known) {
        Some(s) => format!("unknown key {name:?} (did you mean {s:?}?)"),
        None => format!("unknown key {name:?}"),
    }
}

/// How `downstream_mtls` is enforced (Pomerium's `enforcement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsEnforcement {
    /// A request without a certificate the CA trusts is refused (495) before any policy runs
    /// (Pomerium's default).
    PolicyWithDefaultDeny,
    /// Only the policy decides: a trusted certificate is shown to `client_certificate`
    /// criteria; none, or an untrusted one, is shown as none.
    Policy,
    /// Connections without a client certificate are refused in the TLS handshake; requests
    /// are then checked as with the default.
    RejectConnection,
}

/// Pomerium's global `downstream_mtls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownstreamMtls {
    /// DER CA certificates.
    pub ca: Vec<Vec<u8>>,
    pub enforcement: MtlsEnforcement,
}

fn downstream_mtls(p: &mut Parser, node: &Node, key: &str) -> Option<DownstreamMtls> {
    let entries = route::map_of(p, node, key)?;
    let before = p.errors.len();
    let (mut ca, mut enforcement) = (None, MtlsEnforcement::PolicyWithDefaultDeny);
    for (k, v) in entries {
        let name = k.key_text();
        let sub = format!("{key}.{name}");
        match name.as_str() {
            "ca" => ca = route::ca_certificates(p, v, &sub),
            "ca_file" => {
                ca = p
                    .file_content(v, &sub)
                    .and_then(|content| route::ca_certificates(p, &content, &sub))
            }
            "enforcement" => {
                let text = p.string(v, &sub).unwrap_or_default();
                enforcement = match text.to_ascii_lowercase().as_str() {
                    "policy_with_default_deny" => MtlsEnforcement::PolicyWithDefaultDeny,
                    "policy" => MtlsEnforcement::Policy,
                    "reject_connection" => MtlsEnforcement::RejectConnection,
                    _ => {
                        p.error(v.pos, &sub, format!("{text:?} is not one of policy_with_default_deny, policy, reject_connection"));
                        continue;
                    }
                }
            }
            "crl" | "crl_file" | "match_subject_alt_names" | "max_verify_depth" => p.error(
                k.pos,
                &sub,
                "is not implemented, and it would change which clients get in: remove it or check the certificate in policy (client_certificate)",
            ),
            _ => p.error(
                k.pos,
                &sub,
                format!("unknown key {name:?} (expected ca, ca_file, enforcement)"),
            ),
        }
    }
    if p.errors.len() != before {
        return None;
    }
    let Some(ca) = ca else {
        p.error(node.pos, key, "needs ca or ca_file");
        return None;
    };
    if let Err(e) = crate::tls::client_ca_verifier(&ca) {
        p.error(node.pos, key, e.to_string());
        return None;
    }
    Some(DownstreamMtls { ca, enforcement })
}

/// A cookie name as RFC 6265 allows it: an HTTP token, at least one of its characters.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigErrors> {
        Settings::parse(text, "test.yaml", |name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    /// A `cookie_name` that is not a token is refused with its line: the session cookie must be
    /// found and taken out by the same name.
    #[test]
    fn a_cookie_name_that_is_not_a_token_is_refused_with_its_line() {
        for name in ["\"a b\"", "\"a;b\"", "\"s\u{e9}ssion\"", "\"a=b\"", "\"\""] {
            let err = parse(&format!("timeout: 10s\ncookie_name: {name}\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("test.yaml:2:") && err.contains("cookie_name: is not a cookie name"),
                "{name}: {err}"
            );
        }
        let s = parse("cookie_name: _my-app.session\n", &[]).unwrap();
        assert_eq!(s.cookie_name, "_my-app.session");
    }

    #[test]
    fn defaults_and_environment_overrides() {
        let s = parse(
            "timeout: 10s\ncookie_name: _file\n",
            &[("TIMEOUT", "1m"), ("INSECURE_SERVER", "true")],
        )
        .unwrap();
        assert_eq!(s.timeout, Duration::from_secs(60));
        assert!(s.insecure_server);
        assert_eq!(s.cookie_name, "_file");
        assert_eq!(s.cookie_expire, Duration::from_secs(14 * 3600));
        assert_eq!(s.address, "0.0.0.0:443".parse().unwrap());
    }

    #[test]
    fn routes_with_options() {
        let s = parse(
            "routes:
  - from: https://*.example.com:8443
    to: [http://10.0.0.1:80, https://backend.internal]
    prefix: /api/
    timeout: 5s
    set_request_headers: {X-A: b}
    remove_request_headers: [X-Secret]
    allowed_domains: [example.com]
jwt_claims_headers: [email, groups]
",
            &[],
        )
        .unwrap();
        let r = &s.routes[0];
        assert_eq!(r.host, HostPattern::Wildcard("example.com".into()));
        assert_eq!(r.port, Some(8443));
        assert_eq!(r.path, PathMatch::Prefix("/api".into()));
        assert_eq!(r.to.len(), 2);
        assert!(r.to[1].tls());
        assert_eq!(r.options.timeout, Some(Duration::from_secs(5)));
        assert_eq!(r.options.set_request_headers["x-a"], "b");
        assert_eq!(
            r.options.remove_request_headers,
            vec!["x-secret".to_string()]
        );
        assert_eq!(s.jwt_claims_headers["x-pomerium-claim-email"], "email");
    }

    #[test]
    fn branding_keys_are_read_and_bad_colours_and_urls_are_positioned_errors() {
        let s = parse(
            "product_name: Acme Access\nprimary_color: '#0a5'\nlogo_url: https://cdn.test/l.png\n",
            &[("SECONDARY_COLOR", "#112233")],
        )
        .unwrap();
        assert_eq!(s.branding.product_name.as_deref(), Some("Acme Access"));
        assert_eq!(s.branding.primary_color.as_deref(), Some("#0a5"));
        assert_eq!(s.branding.secondary_color.as_deref(), Some("#112233"));
        assert_eq!(
            s.branding.logo_url.as_ref().map(Url::as_str),
            Some("https://cdn.test/l.png")
        );
        let err = parse(
            "primary_color: 'red;} body{display:none'\nfavicon_url: javascript:alert(1)\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "test.yaml:1:16: primary_color: \"red;} body{display:none\" is not a colour"
            ),
            "{err}"
        );
        assert!(err.contains("test.yaml:2:14: favicon_url:"), "{err}");
    }

    /// A claim header may not take the name of a header the proxy writes itself or one that
    /// frames the request, in any spelling: the claim would be sent beside it, or in its place.
    #[test]
    fn a_claim_header_named_like_one_the_proxy_writes_is_refused_with_its_line() {
        for name in [
            "Host",
            "authorization",
            "X_Forwarded_For",
            "Impersonate-User",
            "te",
            "Keep-Alive",
            "Content-Length",
            "X-Request-Id",
            "Proxy-Authorization",
        ] {
            let err = parse(
                &format!(
                    "idp_provider: auth0\njwt_claims_headers:\n  X-Email: email\n  {name}: sub\n"
                ),
                &[],
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(&format!(
                    "test.yaml:4:3: jwt_claims_headers.{name}: is a header the proxy writes itself"
                )),
                "{name}: {err}"
            );
        }
        // Other `X-Forwarded-*` names are a claim header's to take.
        let s = parse(
            "jwt_claims_headers:\n  X-Email: email\n  X-Forwarded-User: sub\n",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.jwt_claims_headers["x-email"], "email");
        assert_eq!(s.jwt_claims_headers["x-forwarded-user"], "sub");
    }

    #[test]
    fn every_error_is_reported_with_its_line() {
        let err = parse(
            "routes:
  - from: https://a.test
    prefix: /a
    path: /b
  - to: http://x
cookie_same_site: sideways
",
            &[],
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("test.yaml:4:5: routes[0].path: only one of prefix, path and regex"),
            "{text}"
        );
        assert!(text.contains("routes[0]: missing to"), "{text}");
        assert!(
            text.contains("test.yaml:5:5: routes[1]: missing from"),
            "{text}"
        );
        assert!(text.contains("test.yaml:6:19: cookie_same_site"), "{text}");
    }

    /// A `host_rewrite` that cannot be a `Host` value is refused with its line, not sent as an
    /// internal error on every request.
    #[test]
    fn a_host_rewrite_that_is_no_host_value_is_refused() {
        let err = parse(
            "routes:\n  - from: https://a.test\n    to: http://x\n    host_rewrite: \"in.test\\r\\nx: y\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("test.yaml:4:19: routes[0].host_rewrite: is not a valid header value"),
            "{err}"
        );
    }

    #[test]
    fn sign_in_requires_its_identity_provider_settings() {
        let err = parse("authenticate_service_url: https://auth.example.com\n", &[]).unwrap_err();
        let text = err.to_string();
        for key in ["idp_provider_url", "idp_client_id", "idp_client_secret"] {
            assert!(
                text.contains(&format!(
                    "test.yaml:1:27: authenticate_service_url: sign-in is turned on here, so {key} is required"
                )),
                "{text}"
            );
        }
    }

    #[test]
    fn pomerium_keys_without_effect_are_accepted_with_a_notice() {
        let s = parse(
            "services: all
grpc_insecure: true
routes:
  - from: https://app.example.com
    to: http://10.0.0.1
    depends_on: [auth.example.com]
    circuit_breaker_thresholds: {max_connections: 10}
    allow_public_unauthenticated_access: true
",
            &[],
        )
        .unwrap();
        assert_eq!(s.routes.len(), 1);
        let noticed: Vec<String> = s.notices.iter().map(|n| n.to_string()).collect();
        assert_eq!(noticed.len(), 4, "{noticed:?}");
        assert!(
            noticed[0].starts_with(
                "test.yaml:1:1: services: Pomerium's services is accepted and has no effect"
            ),
            "{noticed:?}"
        );
        assert!(
            noticed[3].contains("routes[0].circuit_breaker_thresholds"),
            "{noticed:?}"
        );
    }

    #[test]
    fn pomerium_keys_that_would_decide_access_are_refused_at_their_line() {
        let e = parse(
            "use_proxy_protocol: true
routes:
  - from: https://app.example.com
    to: http://10.0.0.1
    enable_google_cloud_serverless_authentication: true
    allowed_groups: [admins]
",
            &[],
        )
        .unwrap_err()
        .to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 3, "{e}");
        assert!(lines[0].starts_with("test.yaml:1:1: use_proxy_protocol: Pomerium's use_proxy_protocol is not supported by Portcullis"), "{e}");
        assert!(
            lines[1].starts_with(
                "test.yaml:5:5: routes[0].enable_google_cloud_serverless_authentication: Pomerium's"
            ),
            "{e}"
        );
        assert!(
            lines[2].contains("test.yaml:6:5: routes[0].allowed_groups"),
            "{e}"
        );
        // A typo is still a typo, not a Pomerium key.
        let e = parse("cookie_secert: x\n", &[]).unwrap_err().to_string();
        assert!(e.contains("did you mean \"cookie_secret\""), "{e}");
    }

    #[test]
    fn downstream_mtls_needs_a_ca_and_refuses_checks_it_does_not_make() {
        let e = parse("downstream_mtls: {enforcement: reject_connection}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("test.yaml:1:18: downstream_mtls: needs ca or ca_file"),
            "{e}"
        );
        let e = parse(
            "downstream_mtls:\n  ca_file: /nonexistent/ca.pem\n  match_subject_alt_names: {dns: x}\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("test.yaml:2:12: downstream_mtls.ca_file: cannot read"),
            "{e}"
        );
        assert!(
            e.contains(
                "test.yaml:3:3: downstream_mtls.match_subject_alt_names: is not implemented"
            ),
            "{e}"
        );
        let e = parse("downstream_mtls: {ca: x, enforcement: strict}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"strict\" is not one of"), "{e}");
    }

    #[test]
    fn secrets_and_certificates_are_read_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let ck = rcgen::generate_simple_self_signed(vec!["files.example.com".to_string()]).unwrap();
        let cert = (ck.cert.pem(), ck.signing_key.serialize_pem());
        let secret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let text = format!(
            "cookie_secret_file: {}
shared_secret_file: {}
idp_client_secret_file: {}
certificate_file: {}
certificate_key_file: {}
routes:
  - from: https://app.example.com
    to: https://10.0.0.1
    tls_custom_ca_file: {}
",
            write("cookie", &format!("{secret}\n")),
            write("shared", secret),
            write("client", "client-secret\n"),
            write("cert.pem", &cert.0),
            write("key.pem", &cert.1),
            write("ca.pem", &cert.0),
        );
        let s = parse(&text, &[]).unwrap();
        assert_eq!(
            s.cookie_secret.as_ref().map(|c| c.as_bytes().len()),
            Some(32)
        );
        assert!(s.shared_secret.is_some());
        assert_eq!(
            s.idp_client_secret.as_ref().map(Secret::as_str),
            Some("client-secret")
        );
        assert_eq!(s.certificates.len(), 1);
        assert!(s.certificates[0].origin.contains("certificate"));
        assert!(s.routes[0].options.tls_custom_ca.is_some());

        // Both forms at once, a missing file, and a file with the wrong content.
        let e = parse(
            &format!(
                "cookie_secret: {secret}\ncookie_secret_file: {}\nshared_secret_file: /nonexistent/portcullis\nsigning_key_file: {}\n",
                write("c2", secret),
                write("junk", "not a key"),
            ),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("test.yaml:2:21: cookie_secret_file: set only one of cookie_secret and cookie_secret_file"), "{e}");
        assert!(
            e.contains(
                "test.yaml:3:21: shared_secret_file: cannot read \"/nonexistent/portcullis\""
            ),
            "{e}"
        );
        assert!(
            e.contains("test.yaml:4:19: signing_key_file: is neither PEM nor base64-encoded PEM"),
            "{e}"
        );
        assert!(
            !e.contains("not a key"),
            "file content is never echoed: {e}"
        );
    }

    #[test]
    fn bearer_tokens_and_service_account_tokens_are_read_globally_and_per_route() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "sa-token-value\n").unwrap();
        let s = parse(
            &format!(
                "bearer_token_format: idp_identity_token
idp_access_token_allowed_audiences: [https://api.example.com]
routes:
  - from: https://a.example.com
    to: http://10.0.0.1
    bearer_token_format: idp_access_token
    idp_access_token_allowed_audiences: [one, two]
    kubernetes_service_account_token_file: {}
  - from: https://b.example.com
    to: http://10.0.0.1
    kubernetes_service_account_token: inline-token
",
                token_file.display()
            ),
            &[],
        )
        .unwrap();
        assert_eq!(s.bearer_token_format, BearerFormat::IdpIdentityToken);
        assert_eq!(
            s.idp_access_token_allowed_audiences,
            vec!["https://api.example.com".to_string()]
        );
        let a = &s.routes[0].options;
        assert_eq!(a.bearer_token_format, Some(BearerFormat::IdpAccessToken));
        assert_eq!(
            a.idp_access_token_allowed_audiences.as_deref(),
            Some(&["one".to_string(), "two".to_string()][..])
        );
        assert_eq!(
            a.kubernetes_service_account_token
                .as_ref()
                .map(Secret::as_str),
            Some("sa-token-value")
        );
        assert_eq!(
            s.routes[1]
                .options
                .kubernetes_service_account_token
                .as_ref()
                .map(Secret::as_str),
            Some("inline-token")
        );
        assert!(
            !format!("{:?}", s.routes).contains("sa-token-value"),
            "tokens never print"
        );
        let e = parse(
            "bearer_token_format: jwt
routes:
  - from: https://a.example.com
    to: http://10.0.0.1
    kubernetes_service_account_token: \"bad\\ntoken\"
    kubernetes_service_account_token_file: /nonexistent/portcullis-token
",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("test.yaml:1:22: bearer_token_format: \"jwt\" is not one of default, idp_access_token, idp_identity_token"),
            "{e}"
        );
        assert!(
            e.contains("test.yaml:5:39: routes[0].kubernetes_service_account_token: is not a token that can be sent in a header"),
            "{e}"
        );
        assert!(
            e.contains("routes[0].kubernetes_service_account_token_file: cannot read"),
            "{e}"
        );
        assert!(!e.contains("bad"), "tokens are never echoed: {e}");
    }

    #[test]
    fn policy_is_the_older_name_of_routes_and_default_upstream_timeout_of_timeout() {
        let s = parse(
            "default_upstream_timeout: 7s
policy:
  - from: https://a.example.com
    to: http://10.0.0.1
routes:
  - from: https://b.example.com
    to: http://10.0.0.2
",
            &[],
        )
        .unwrap();
        assert_eq!(s.timeout, Duration::from_secs(7));
        assert_eq!(s.routes.len(), 2);
        let e = parse("policy: [{from: https://a.example.com}]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("policy[0]: missing to"), "{e}");
        let e = parse("cookie_http_only: false\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cookie_http_only: session cookies are always HttpOnly"),
            "{e}"
        );
        assert!(parse("cookie_http_only: true\n", &[]).is_ok());
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_they_must_match() {
        let a = rcgen::generate_simple_self_signed(vec!["a.client".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.client".to_string()]).unwrap();
        let block =
            |pem: String| -> String { pem.lines().map(|l| format!("      {l}\n")).collect() };
        let route = |extra: String| {
            format!("routes:\n  - from: https://app.example.com\n    to: https://10.0.0.1\n{extra}")
        };
        let e = parse(
            &route(format!("    tls_client_cert: |\n{}", block(a.cert.pem()))),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("test.yaml:4:5: routes[0].tls_client_cert: needs tls_client_key"),
            "{e}"
        );
        let mismatched = format!(
            "    tls_client_cert: |\n{}    tls_client_key: |\n{}",
            block(a.cert.pem()),
            block(b.signing_key.serialize_pem())
        );
        let e = parse(&route(mismatched), &[]).unwrap_err().to_string();
        assert!(
            e.contains("the private key does not belong to the certificate"),
            "{e}"
        );
        assert!(!e.contains("PRIVATE KEY"), "no key material in errors: {e}");
    }

    #[test]
    fn upstreams_may_carry_pomerium_weights() {
        let s = parse(
            "routes:\n  - from: https://a.example.com\n    to: [\"http://10.0.0.1,3\", http://10.0.0.2]\n",
            &[],
        )
        .unwrap();
        let weights: Vec<(String, u32)> = s.routes[0]
            .to
            .iter()
            .map(|u| (u.url.to_string(), u.weight))
            .collect();
        assert_eq!(
            weights,
            vec![
                ("http://10.0.0.1/".into(), 3),
                ("http://10.0.0.2/".into(), 1)
            ]
        );
        let e = parse(
            "routes:\n  - from: https://a.example.com\n    to: \"http://10.0.0.1,0\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("test.yaml:3:9: routes[0].to: \"0\" is not a weight"),
            "{e}"
        );
    }

    #[test]
    fn redirect_and_response_routes_have_no_upstream() {
        let s = parse(
            "routes:
  - from: https://old.example.com
    redirect: {host_redirect: new.example.com, response_code: PERMANENT_REDIRECT}
  - from: https://teapot.example.com
    response: {status: 418, body: short and stout}
",
            &[],
        )
        .unwrap();
        assert!(s.routes.iter().all(|r| r.to.is_empty()));
        assert!(
            matches!(&s.routes[0].options.direct, Some(Direct::Redirect(r)) if r.status == 308)
        );
        assert_eq!(
            s.routes[1].options.direct,
            Some(Direct::Respond {
                status: 418,
                body: "short and stout".into()
            })
        );
        let e = parse(
            "routes:
  - from: https://a.example.com
    to: http://10.0.0.1
    redirect: {https_redirect: true}
  - from: https://b.example.com
    redirect: {response_code: SOMETIMES, host_redirect: \"a b\"}
  - from: https://c.example.com
    response: {body: x}
",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("test.yaml:2:5: routes[0]: set only one of to, redirect and response"),
            "{e}"
        );
        assert!(
            e.contains("routes[1].redirect.response_code: \"SOMETIMES\" is not one of"),
            "{e}"
        );
        assert!(
            e.contains("routes[1].redirect.host_redirect: \"a b\" is not a host name"),
            "{e}"
        );
        assert!(
            e.contains("test.yaml:8:15: routes[2].response: missing status"),
            "{e}"
        );
    }

    #[test]
    fn idp_request_params_cannot_replace_state_or_nonce() {
        let e = parse(
            "idp_request_params: {connection: corp, state: fixed, nonce: n}\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("idp_request_params.state: is set by Portcullis itself"),
            "{e}"
        );
        assert!(
            e.contains("idp_request_params.nonce: is set by Portcullis itself"),
            "{e}"
        );
        assert!(!e.contains("connection"), "{e}");
        let s = parse("idp_request_params: {connection: corp}\n", &[]).unwrap();
        assert_eq!(s.idp_request_params["connection"], "corp");
    }

    #[test]
    fn response_headers_default_as_pomerium_and_can_be_disabled() {
        let plain = parse("insecure_server: true\n", &[])
            .unwrap()
            .response_headers();
        assert_eq!(plain["x-frame-options"], "SAMEORIGIN");
        assert!(
            !plain.contains_key("strict-transport-security"),
            "no HSTS without TLS"
        );
        let own = parse("set_response_headers: {X-Frame-Options: DENY}\n", &[])
            .unwrap()
            .response_headers();
        assert_eq!(own.len(), 1, "a set map replaces the defaults: {own:?}");
        assert_eq!(own["x-frame-options"], "DENY");
        let off = parse("set_response_headers: {disable: \"true\", X-A: b}\n", &[])
            .unwrap()
            .response_headers();
        assert!(off.is_empty(), "{off:?}");
    }
}
