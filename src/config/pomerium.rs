//! Every Pomerium configuration key and Ingress annotation, and what Portcullis does with it.
//!
//! The parsers consult this list for any key they do not implement themselves, so a Pomerium
//! configuration never fails with "unknown key" on a key Pomerium documents:
//!
//! - [`Support::Ignored`] keys are cosmetic or operational: accepted, reported once as a
//!   notice, and never part of a decision about who gets in.
//! - [`Support::Refused`] keys would change who gets in or what is trusted; Portcullis does not
//!   implement them, so the file (or the Ingress) is refused with an error naming the key.
//! - [`Support::Same`] and [`Support::Differs`] keys are implemented; a unit test checks that
//!   the parsers really accept each of them.
//!
//! `docs/pomerium-compatibility.md` is generated from this list (see [`markdown_table`]).

/// What Portcullis does with one Pomerium key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Implemented as Pomerium does.
    Same,
    /// Implemented; the note says how it differs.
    Differs(&'static str),
    /// Accepted with no effect (the note says why that is safe); reported once.
    Ignored(&'static str),
    /// Refused with an error: it would decide who gets in or what is trusted, and is not
    /// implemented. The note says why.
    Refused(&'static str),
}

/// Where a key can be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A top-level key of the configuration file (and its environment variable).
    Global,
    /// A key of one route in the configuration file, and the Ingress annotation of that name.
    Route,
    /// A key of one route in the configuration file only.
    RouteFileOnly,
    /// An Ingress annotation only (`ingress.pomerium.io/<name>`).
    Annotation,
}

/// One Pomerium key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub scope: Scope,
    pub support: Support,
}

const fn key(name: &'static str, scope: Scope, support: Support) -> Key {
    Key {
        name,
        scope,
        support,
    }
}

use Scope::{Annotation, Global, Route, RouteFileOnly};
use Support::{Differs, Ignored, Refused, Same};

const ONE_PROCESS: &str =
    "Portcullis runs every service in one process, so there is nothing to address or split";
const NO_ENVOY: &str = "there is no Envoy in Portcullis";
const NO_TRACING: &str = "tracing export is not implemented; logs and metrics are";
const LOAD_BALANCING: &str =
    "circuit breakers are not implemented; requests are not limited per upstream";
const PER_ROUTE_IDP: &str =
    "one identity provider serves every route; a route's own provider would change who signs in";
const AUDIENCES: &str = "an access token is accepted only as a JWT signed by the identity provider (its JWKS, the sign-in issuer, expiry) whose aud is listed here; opaque access tokens are not checked at UserInfo, and with no audiences listed every access token is refused";
const SERVICE_ACCOUNT: &str = "sent only with a known user, impersonated with one Impersonate-Group header per group (Pomerium also sends it for anonymous requests and joins the groups with commas)";
const NOT_ROUTED: &str = "only HTTP routes proxied to an upstream are implemented; this kind of route would not be served as written";

/// Every key, globals first, in the order of Pomerium's documentation groups.
#[rustfmt::skip]
pub const KEYS: &[Key] = &[
    // --- global: listeners and services ---
    key("address", Global, Same),
    key("http_redirect_addr", Global, Same),
    key("insecure_server", Global, Same),
    key("metrics_address", Global, Differs("also serves /healthz and /readyz")),
    key("services", Global, Ignored(ONE_PROCESS)),
    key("authenticate_internal_service_url", Global, Ignored(ONE_PROCESS)),
    key("authorize_service_url", Global, Ignored(ONE_PROCESS)),
    key("authorize_service_urls", Global, Ignored(ONE_PROCESS)),
    key("authorize_internal_service_url", Global, Ignored(ONE_PROCESS)),
    key("databroker_service_url", Global, Ignored(ONE_PROCESS)),
    key("databroker_service_urls", Global, Ignored(ONE_PROCESS)),
    key("databroker_internal_service_url", Global, Ignored(ONE_PROCESS)),
    key("databroker_storage_type", Global, Ignored("sessions live in encrypted cookies; there is no databroker")),
    key("databroker_storage_connection_string", Global, Ignored("sessions live in encrypted cookies; there is no databroker")),
    key("databroker_storage_connection_string_file", Global, Ignored("sessions live in encrypted cookies; there is no databroker")),
    key("grpc_address", Global, Ignored(ONE_PROCESS)),
    key("grpc_insecure", Global, Ignored(ONE_PROCESS)),
    key("grpc_client_timeout", Global, Ignored(ONE_PROCESS)),
    key("debug_address", Global, Ignored("no debug listener; metrics_address serves metrics and health")),
    key("health_check_addr", Global, Ignored("metrics_address serves /healthz and /readyz")),
    key("health_check_systemd_disabled", Global, Ignored("no systemd notification")),
    key("envoy_admin_address", Global, Ignored(NO_ENVOY)),
    key("envoy_admin_access_log_path", Global, Ignored(NO_ENVOY)),
    key("envoy_admin_profile_path", Global, Ignored(NO_ENVOY)),
    key("envoy_bind_config_freebind", Global, Ignored(NO_ENVOY)),
    key("envoy_bind_config_source_address", Global, Ignored(NO_ENVOY)),
    key("codec_type", Global, Ignored("HTTP/1.1 and HTTP/2 are both offered on TLS listeners")),
    key("installation_id", Global, Ignored("no telemetry is sent")),
    key("runtime_flags", Global, Ignored("Pomerium's feature flags do not apply")),
    key("use_proxy_protocol", Global, Refused("the PROXY protocol is not implemented; connections would be misread and client addresses wrong")),
    key("timeout_read", Global, Differs("bounds each read of a request body from a client (HTTP/1), not the whole request")),
    key("timeout_write", Global, Differs("bounds each write to a client, not the whole response")),
    key("timeout_idle", Global, Differs("how long a kept-alive HTTP/1 connection waits for its next request")),
    key("default_upstream_timeout", Global, Same),
    key("dns_lookup_family", Global, Ignored("the system resolver is used")),
    key("dns_query_timeout", Global, Ignored("the system resolver is used")),
    key("dns_query_tries", Global, Ignored("the system resolver is used")),
    key("dns_failure_refresh_rate", Global, Ignored("the system resolver is used")),
    key("dns_refresh_rate", Global, Ignored("the system resolver is used")),
    key("dns_resolvers", Global, Ignored("the system resolver is used")),
    key("dns_udp_max_queries", Global, Ignored("the system resolver is used")),
    key("dns_use_tcp", Global, Ignored("the system resolver is used")),
    key("circuit_breaker_thresholds", Global, Ignored(LOAD_BALANCING)),
    key("log_level", Global, Differs("read at start; RUST_LOG, when set, wins")),
    key("proxy_log_level", Global, Ignored("RUST_LOG sets the log level")),
    key("access_log_fields", Global, Ignored("the access log has a fixed set of fields")),
    key("authorize_log_fields", Global, Ignored("the access log has a fixed set of fields")),
    key("otel_traces_exporter", Global, Ignored(NO_TRACING)),
    key("otel_traces_sampler_arg", Global, Ignored(NO_TRACING)),
    key("otel_resource_attributes", Global, Ignored(NO_TRACING)),
    key("otel_log_level", Global, Ignored(NO_TRACING)),
    key("otel_attribute_value_length_limit", Global, Ignored(NO_TRACING)),
    key("otel_exporter_otlp_endpoint", Global, Ignored(NO_TRACING)),
    key("otel_exporter_otlp_traces_endpoint", Global, Ignored(NO_TRACING)),
    key("otel_exporter_otlp_protocol", Global, Ignored(NO_TRACING)),
    key("otel_exporter_otlp_traces_protocol", Global, Ignored(NO_TRACING)),
    key("otel_exporter_otlp_headers", Global, Ignored(NO_TRACING)),
    key("otel_exporter_otlp_traces_headers", Global, Ignored(NO_TRACING)),
    key("otel_exporter_otlp_timeout", Global, Ignored(NO_TRACING)),
    key("otel_exporter_otlp_traces_timeout", Global, Ignored(NO_TRACING)),
    key("otel_bsp_schedule_delay", Global, Ignored(NO_TRACING)),
    key("otel_bsp_max_export_batch_size", Global, Ignored(NO_TRACING)),
    key("metrics_basic_auth", Global, Refused("the metrics listener has no authentication; bind metrics_address to a private address")),
    key("metrics_certificate", Global, Refused("the metrics listener serves plain HTTP only")),
    key("metrics_certificate_file", Global, Refused("the metrics listener serves plain HTTP only")),
    key("metrics_certificate_key", Global, Refused("the metrics listener serves plain HTTP only")),
    key("metrics_certificate_key_file", Global, Refused("the metrics listener serves plain HTTP only")),
    key("metrics_client_ca", Global, Refused("the metrics listener does not verify client certificates")),
    key("metrics_client_ca_file", Global, Refused("the metrics listener does not verify client certificates")),
    // --- global: certificates and keys ---
    key("certificates", Global, Same),
    key("certificate", Global, Same),
    key("certificate_key", Global, Same),
    key("certificate_file", Global, Same),
    key("certificate_key_file", Global, Same),
    key("certificate_authority", Global, Refused("a global upstream CA is not implemented; use a route's tls_custom_ca")),
    key("certificate_authority_file", Global, Refused("a global upstream CA is not implemented; use a route's tls_custom_ca_file")),
    key("override_certificate_name", Global, Ignored("routes are matched by SNI and Host; no certificate name is overridden")),
    key("autocert", Global, Refused("ACME is not built in; use cert-manager with the Ingress's tls section or certificates")),
    key("autocert_ca", Global, Refused("ACME is not built in")),
    key("autocert_dir", Global, Refused("ACME is not built in")),
    key("autocert_eab_key_id", Global, Refused("ACME is not built in")),
    key("autocert_eab_mac_key", Global, Refused("ACME is not built in")),
    key("autocert_email", Global, Refused("ACME is not built in")),
    key("autocert_must_staple", Global, Refused("ACME is not built in")),
    key("autocert_trusted_ca", Global, Refused("ACME is not built in")),
    key("autocert_trusted_ca_file", Global, Refused("ACME is not built in")),
    key("autocert_use_staging", Global, Refused("ACME is not built in")),
    key("tls_derive", Global, Refused("certificates derived from the shared secret are not implemented")),
    key("downstream_mtls", Global, Differs("ca, ca_file and the three enforcement modes; crl, match_subject_alt_names and max_verify_depth are refused; with reject_connection the chain is still checked per request")),
    key("shared_secret", Global, Same),
    key("shared_secret_file", Global, Same),
    key("signing_key", Global, Differs("an ES256 (P-256) key; the assertion is signed with it")),
    key("signing_key_file", Global, Differs("an ES256 (P-256) key, read from the file")),
    // --- global: sign-in ---
    key("authenticate_service_url", Global, Same),
    key("idp_provider", Global, Differs("auth0 and oidc only")),
    key("idp_provider_url", Global, Same),
    key("idp_client_id", Global, Same),
    key("idp_client_secret", Global, Same),
    key("idp_client_secret_file", Global, Same),
    key("idp_scopes", Global, Same),
    key("idp_service_account", Global, Differs("Auth0 Management API client credentials, used to read roles (fail closed)")),
    key("idp_request_params", Global, Differs("parameters that carry the sign-in's own protections (state, nonce, PKCE, client and redirect) are refused")),
    key("idp_access_token_allowed_audiences", Global, Differs(AUDIENCES)),
    key("bearer_token_format", Global, Same),
    key("identity_providers", Global, Refused(PER_ROUTE_IDP)),
    key("signout_redirect_url", Global, Same),
    key("programmatic_redirect_domain_whitelist", Global, Refused("programmatic sign-in is not implemented")),
    key("cookie_name", Global, Differs("a name that is not an HTTP token (RFC 6265) is refused with its line")),
    key("cookie_secret", Global, Same),
    key("cookie_secret_file", Global, Same),
    key("cookie_domain", Global, Same),
    key("cookie_expire", Global, Same),
    key("cookie_same_site", Global, Same),
    key("cookie_http_only", Global, Differs("only true: session cookies are always HttpOnly, and false is refused")),
    key("jwt_claims_headers", Global, Same),
    key("jwt_issuer_format", Global, Ignored("the assertion's issuer is the route's host, Pomerium's default")),
    key("pass_identity_headers", Global, Same),
    key("set_response_headers", Global, Same),
    key("primary_color", Global, Same),
    key("secondary_color", Global, Same),
    key("logo_url", Global, Same),
    key("favicon_url", Global, Same),
    key("error_message_first_paragraph", Global, Same),
    key("xff_num_trusted_hops", Global, Same),
    key("skip_xff_append", Global, Ignored("X-Forwarded-For is passed upstream only when xff_num_trusted_hops is set")),
    key("headers_with_underscores_action", Global, Ignored("identity headers are stripped in every spelling, underscores included; other headers pass")),
    key("normalize_path", Global, Same),
    key("merge_slashes", Global, Same),
    key("path_with_escaped_slashes_action", Global, Same),
    key("routes", Global, Same),
    key("policy", Global, Same),
    key("policy_file", Global, Refused("a separate policy file is not read; put the routes in routes")),
    key("blob_storage", Global, Ignored("nothing is uploaded")),
    key("session_recording", Global, Ignored("sessions are not recorded")),
    key("session_recording_concurrency", Global, Ignored("sessions are not recorded")),
    key("ssh_address", Global, Refused("SSH is not implemented")),
    key("ssh_host_keys", Global, Refused("SSH is not implemented")),
    key("ssh_host_key_files", Global, Refused("SSH is not implemented")),
    key("ssh_user_ca_key", Global, Refused("SSH is not implemented")),
    key("ssh_user_ca_key_file", Global, Refused("SSH is not implemented")),
    key("ssh_rls_enabled", Global, Refused("SSH is not implemented")),
    key("ssh_rls_additional_entries", Global, Refused("SSH is not implemented")),
    key("mcp_allowed_as_metadata_domains", Global, Refused("MCP is not implemented")),
    key("mcp_allowed_client_id_domains", Global, Refused("MCP is not implemented")),
    // --- routes (file) and Ingress annotations ---
    key("from", RouteFileOnly, Same),
    key("to", RouteFileOnly, Differs("http, https and h2c URLs, with Pomerium's URL,WEIGHT; Ingress backends are h2c when their Service port has appProtocol kubernetes.io/h2c")),
    key("prefix", RouteFileOnly, Same),
    key("path", RouteFileOnly, Same),
    key("regex", RouteFileOnly, Same),
    key("name", Route, Differs("on an Ingress it is the name the routes portal shows; routes keep their stable names")),
    key("id", RouteFileOnly, Ignored("routes are named by name or their position")),
    key("description", Route, Same),
    key("logo_url", Route, Same),
    key("depends_on", Route, Ignored("sign-in is per host already; no extra hosts are visited")),
    key("policy", Route, Same),
    key("allow_public_unauthenticated_access", Route, Same),
    key("allow_any_authenticated_user", Route, Same),
    key("allowed_domains", Route, Same),
    key("allowed_users", Route, Same),
    key("allowed_idp_claims", Route, Same),
    key("allowed_groups", Route, Refused("groups are no longer a route option in Pomerium either; use a claim rule in policy")),
    key("cors_allow_preflight", Route, Same),
    key("pass_identity_headers", Route, Same),
    key("preserve_host_header", Route, Same),
    key("host_rewrite", Route, Same),
    key("host_rewrite_header", Route, Same),
    key("host_path_regex_rewrite_pattern", Route, Same),
    key("host_path_regex_rewrite_substitution", Route, Same),
    key("prefix_rewrite", Route, Same),
    key("regex_rewrite_pattern", Route, Same),
    key("regex_rewrite_substitution", Route, Differs("`\\1` (Pomerium's) and `$1` both name a group")),
    key("regex_priority_order", Route, Differs("regexes without it are tried in definition order (Pomerium sorts them by their text)")),
    key("set_request_headers", Route, Same),
    key("remove_request_headers", Route, Same),
    key("set_response_headers", Route, Same),
    key("rewrite_response_headers", Route, Same),
    key("timeout", Route, Differs("the deadline runs from when the request is sent upstream and is checked between response chunks; a stalled read ends at most one read timeout later")),
    key("idle_timeout", Route, Same),
    key("allow_websockets", Route, Same),
    key("allow_upgrades", Route, Same),
    key("allow_spdy", Route, Same),
    key("tls_skip_verify", Route, Same),
    key("tls_server_name", Route, Same),
    key("tls_upstream_server_name", Route, Same),
    key("tls_downstream_server_name", Route, Ignored("routes are chosen by Host whatever name the TLS handshake used, so clients may already connect with this name; its certificate is picked by SNI as for any name")),
    key("tls_custom_ca", Route, Same),
    key("tls_custom_ca_file", RouteFileOnly, Same),
    key("tls_client_cert", RouteFileOnly, Same),
    key("tls_client_key", RouteFileOnly, Same),
    key("tls_client_cert_file", RouteFileOnly, Same),
    key("tls_client_key_file", RouteFileOnly, Same),
    key("tls_downstream_client_ca", RouteFileOnly, Same),
    key("tls_downstream_client_ca_file", RouteFileOnly, Same),
    key("tls_upstream_allow_renegotiation", Route, Ignored("TLS renegotiation is never allowed")),
    key("load_balancing_policy", Route, Differs("RING_HASH and MAGLEV are one consistent-hash ring (ketama) keyed like Pomerium's: the session, else the client address")),
    key("outlier_detection", Route, Differs("consecutive 5xx and gateway-failure ejection with Envoy's defaults; success-rate and failure-percentage fields are refused")),
    key("health_checks", Route, Differs("one HTTP or TCP check per route; gRPC checks are refused")),
    key("healthy_panic_threshold", Route, Same),
    key("circuit_breaker_thresholds", Route, Ignored(LOAD_BALANCING)),
    key("show_error_details", Route, Ignored("error pages always show the request id and no upstream details")),
    key("redirect", RouteFileOnly, Same),
    key("response", RouteFileOnly, Same),
    key("idp_client_id", RouteFileOnly, Refused(PER_ROUTE_IDP)),
    key("idp_client_secret", RouteFileOnly, Refused(PER_ROUTE_IDP)),
    key("identity_providers", RouteFileOnly, Refused(PER_ROUTE_IDP)),
    key("idp_access_token_allowed_audiences", Route, Differs(AUDIENCES)),
    key("bearer_token_format", Route, Same),
    key("kubernetes_service_account_token", RouteFileOnly, Differs(SERVICE_ACCOUNT)),
    key("kubernetes_service_account_token_file", RouteFileOnly, Differs(SERVICE_ACCOUNT)),
    key("enable_google_cloud_serverless_authentication", Route, Refused("Google Cloud serverless authentication is not implemented")),
    key("mcp", RouteFileOnly, Refused("MCP is not implemented")),
    key("upstream_tunnel", RouteFileOnly, Refused(NOT_ROUTED)),
    key("ssh_policy", RouteFileOnly, Refused("SSH is not implemented")),
    // --- annotations only ---
    key("path_regex", Annotation, Same),
    key("secure_upstream", Annotation, Same),
    key("subtle_allow_empty_host", Annotation, Ignored("rules without a host are served as catch-all routes anyway")),
    key("service_proxy_upstream", Annotation, Differs("requests go to the Service's cluster IP and port (Pomerium names the Service's DNS name, which resolves to it); a headless Service is refused")),
    key("tls_custom_ca_secret", Annotation, Same),
    key("tls_client_secret", Annotation, Same),
    key("tls_downstream_client_ca_secret", Annotation, Same),
    key("set_request_headers_secret", Annotation, Same),
    key("set_response_headers_secret", Annotation, Same),
    key("kubernetes_service_account_token_secret", Annotation, Differs("a Secret of type kubernetes.io/service-account-token or Opaque, its key token; otherwise as kubernetes_service_account_token")),
    key("identity_provider_secret", Annotation, Refused(PER_ROUTE_IDP)),
    key("tcp_upstream", Annotation, Refused(NOT_ROUTED)),
    key("udp_upstream", Annotation, Refused(NOT_ROUTED)),
    key("ssh_upstream", Annotation, Refused("SSH is not implemented")),
    key("upstream_tunnel", Annotation, Refused(NOT_ROUTED)),
    key("upstream_tunnel_ssh_policy", Annotation, Refused("SSH is not implemented")),
    key("mcp_server", Annotation, Refused("MCP is not implemented")),
    key("mcp_client", Annotation, Refused("MCP is not implemented")),
];

/// The Pomerium key of that name written at the top level of a configuration file.
pub fn global(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name && k.scope == Global)
}

/// The Pomerium key of that name written in a route of a configuration file.
pub fn route(name: &str) -> Option<&'static Key> {
    KEYS.iter()
        .find(|k| k.name == name && matches!(k.scope, Route | RouteFileOnly))
}

/// The Pomerium key of that name written as an Ingress annotation.
pub fn annotation(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| {
        k.name == name && matches!(k.scope, Route | Annotation)
            || (name.starts_with("mcp_server") && k.name == "mcp_server")
    })
}

/// What a parser does with a Pomerium key it does not implement itself.
pub enum Unimplemented {
    /// Accept it and say so once (the text names the key and why it has no effect).
    Notice(String),
    /// Refuse the configuration (the text names the key and why).
    Refuse(String),
}

/// The outcome for a key the parser did not recognise itself: `None` when Pomerium has no such
/// key either (a typo; the caller reports it as unknown).
pub fn unimplemented(found: Option<&'static Key>) -> Option<Unimplemented> {
    let k = found?;
    match k.support {
        Ignored(why) => Some(Unimplemented::Notice(format!(
            "Pomerium's {} is accepted and has no effect: {why}",
            k.name
        ))),
        Refused(why) => Some(Unimplemented::Refuse(format!(
            "Pomerium's {} is not supported by Portcullis: {why}",
            k.name
        ))),
        // Implemented keys reach here only if a parser forgot one; refuse rather than drop it.
        Same | Differs(_) => Some(Unimplemented::Refuse(format!(
            "{} is not handled here",
            k.name
        ))),
    }
}

/// The table in `docs/pomerium-compatibility.md`.
pub fn markdown_table() -> String {
    let mut out = String::new();
    for (title, scopes) in [
        ("Global keys", &[Global][..]),
        (
            "Route keys and Ingress annotations",
            &[Route, RouteFileOnly, Annotation][..],
        ),
    ] {
        out.push_str(&format!(
            "### {title}\n\n| key | where | Portcullis |\n|---|---|---|\n"
        ));
        for k in KEYS.iter().filter(|k| scopes.contains(&k.scope)) {
            let implemented = matches!(k.support, Same | Differs(_));
            let place = match k.scope {
                Global if implemented => "file, environment",
                Global => "file",
                Route => "route, annotation",
                RouteFileOnly => "route",
                Annotation => "annotation",
            };
            let what = match k.support {
                Same => "same".to_string(),
                Differs(how) => format!("differs: {how}"),
                Ignored(why) => format!("accepted, no effect: {why}"),
                Refused(why) => format!("refused: {why}"),
            };
            out.push_str(&format!("| `{}` | {place} | {what} |\n", k.name));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_listed_once_per_place() {
        for (place, scopes) in [
            ("global", &[Global][..]),
            ("route", &[Route, RouteFileOnly][..]),
            ("annotation", &[Route, Annotation][..]),
        ] {
            let mut seen = std::collections::HashSet::new();
            for k in KEYS.iter().filter(|k| scopes.contains(&k.scope)) {
                assert!(
                    seen.insert(k.name),
                    "{} listed twice as a {place} key",
                    k.name
                );
            }
        }
    }

    #[test]
    fn implemented_global_keys_are_parsed() {
        for k in KEYS.iter().filter(|k| k.scope == Global) {
            let implemented = matches!(k.support, Same | Differs(_));
            assert_eq!(
                super::super::KEYS.contains(&k.name),
                implemented,
                "{}: the table says {:?}, the parser disagrees",
                k.name,
                k.support
            );
        }
    }

    #[test]
    fn implemented_route_keys_are_parsed() {
        for k in KEYS
            .iter()
            .filter(|k| matches!(k.scope, Route | RouteFileOnly))
        {
            let implemented = matches!(k.support, Same | Differs(_));
            assert_eq!(
                super::super::ROUTE_KEYS.contains(&k.name),
                implemented,
                "{}: the table says {:?}, the route parser disagrees",
                k.name,
                k.support
            );
        }
    }

    /// `docs/pomerium-compatibility.md` carries the table between two markers; regenerate it
    /// with `scripts/generate` (which runs this test with `PORTCULLIS_BLESS=1`).
    #[test]
    fn compatibility_document_is_current() {
        crate::testing::generated_table_is_current("pomerium-compatibility.md", &markdown_table());
    }
}
