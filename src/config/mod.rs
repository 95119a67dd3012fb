//! Settings: Pomerium-compatible configuration keys, read from a YAML file and overridden by
//! upper-case environment variables, and the [`Route`] model that both the file and the
//! Kubernetes controller produce.

mod route;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use route::{
    HostPattern, PathMatch, ROUTE_KEYS, Route, RouteOptions, Upstream, apply_option, combine_policy,
};
use url::Url;
pub use values::{Parser, Secret, closest};

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
    pub idp_service_account: Option<Secret>,
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
    /// How request paths are made canonical before routing (Pomerium's `normalize_path`,
    /// `merge_slashes`, `path_with_escaped_slashes_action`).
    pub path: PathOptions,
    /// How many proxies in front of us may be trusted with `X-Forwarded-For`
    /// (Pomerium's `xff_num_trusted_hops`); 0 drops forwarding headers from clients.
    pub xff_num_trusted_hops: usize,
    /// How our own pages look.
    pub branding: Branding,
    pub routes: Vec<Route>,
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
            idp_service_account: None,
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
            path: PathOptions::default(),
            xff_num_trusted_hops: 0,
            branding: Branding::default(),
            routes: Vec::new(),
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
    "idp_service_account",
    "cookie_name",
    "cookie_secret",
    "cookie_expire",
    "cookie_domain",
    "cookie_same_site",
    "shared_secret",
    "signing_key",
    "certificates",
    "jwt_claims_headers",
    "pass_identity_headers",
    "timeout",
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
];

impl Settings {
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
                        None => p.error(k.pos, &name, unknown_key_message(&name, KEYS)),
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

        let mut s = Settings::default();
        for (key, node) in &entries {
            let key: &str = key;
            p.origin = env_origin
                .get(key)
                .cloned()
                .unwrap_or_else(|| origin.to_string());
            let p = &mut p;
            match key {
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
                "idp_service_account" => {
                    s.idp_service_account = p.opt(node, |p| p.string(node, key).map(Secret::from))
                }
                "cookie_name" => {
                    if let Some(n) = p.string(node, key) {
                        s.cookie_name = n
                    }
                }
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
                "timeout" => {
                    if let Some(d) = p.duration(node, key) {
                        s.timeout = d
                    }
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
                "routes" => s.routes = route::parse_routes(p, node),
                _ => {}
            }
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
}
