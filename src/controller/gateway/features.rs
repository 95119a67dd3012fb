//! What of the Gateway API Portcullis implements, one row per feature with the support level
//! the specification gives it. `docs/gateway-api.md`'s table is generated from this list
//! (`scripts/generate`), and a test runs each row's probe against the translation, so the
//! table cannot claim what the code refuses, or the other way round.

use serde_json::json;

use super::types::{GrpcMatch, HttpFilter, HttpMatch};
use crate::config::RouteOptions;

/// How far a feature is implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Yes,
    /// Implemented with the limits the note gives.
    Partial,
    No,
}

pub struct Feature {
    /// The feature's name (the conformance feature name where the specification has one).
    pub name: &'static str,
    /// `Core`, `Extended` or `Implementation-specific`, as the specification lists it.
    pub level: &'static str,
    pub support: Support,
    pub note: &'static str,
    /// Whether the translation accepts an object using the feature; `None` for features not
    /// shaped by one field (checked by the unit and end-to-end tests instead).
    pub probe: Option<fn() -> bool>,
}

fn accepts_match(m: serde_json::Value) -> bool {
    serde_json::from_value::<HttpMatch>(m).is_ok_and(|m| super::http_match(&m, "m").is_ok())
}

fn accepts_grpc(m: serde_json::Value) -> bool {
    serde_json::from_value::<GrpcMatch>(m).is_ok_and(|m| super::grpc_match(&m, "m").is_ok())
}

/// Whether a BackendTLSPolicy with this `validation` (and `options`, if given) is honoured.
fn probe_backend_tls(mut validation: serde_json::Value) -> bool {
    let options = validation
        .as_object_mut()
        .and_then(|v| v.remove("options"))
        .unwrap_or(json!({}));
    let policy = json!({
        "metadata": {"namespace": "a", "name": "p"},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "s"}],
                 "validation": validation, "options": options},
    });
    serde_json::from_value::<super::types::BackendTLSPolicy>(policy).is_ok_and(|p| {
        super::backend_tls::verdict(&crate::controller::translate::Snapshot::default(), &p)
            .tls
            .is_some()
    })
}

fn accepts_filter(f: serde_json::Value) -> bool {
    serde_json::from_value::<HttpFilter>(f).is_ok_and(|f| {
        super::filter(&f, "f", &mut RouteOptions::default(), &mut Vec::new()).is_ok()
    })
}

pub const FEATURES: &[Feature] = &[
    Feature {
        name: "GatewayClass (controllerName portcullis.dev/gateway-controller)",
        level: "Core",
        support: Support::Yes,
        note: "Accepted condition",
        probe: None,
    },
    Feature {
        name: "Gateway: HTTP listeners",
        level: "Core",
        support: Support::Yes,
        note: "served on the proxy's own listeners; Accepted, Programmed, ResolvedRefs and attachedRoutes per listener",
        probe: None,
    },
    Feature {
        name: "Gateway: HTTPS listeners (TLS Terminate, certificateRefs to Secrets, by SNI)",
        level: "Core",
        support: Support::Yes,
        note: "a missing or invalid Secret sets ResolvedRefs False (InvalidCertificateRef); its hosts get the default certificate",
        probe: None,
    },
    Feature {
        name: "Gateway: allowedRoutes namespaces (Same, All, Selector) and kinds",
        level: "Core",
        support: Support::Yes,
        note: "kinds HTTPRoute and GRPCRoute; others set ResolvedRefs False (InvalidRouteKinds)",
        probe: None,
    },
    Feature {
        name: "Gateway: status addresses",
        level: "Core",
        support: Support::Yes,
        note: "from --publish-service or --publish-address",
        probe: None,
    },
    Feature {
        name: "GatewayPort8080 (a listener port of its own)",
        level: "Extended",
        support: Support::No,
        note: "listener ports are not opened: every listener is served on the proxy's listeners",
        probe: None,
    },
    Feature {
        name: "GatewayHTTPListenerIsolation",
        level: "Extended",
        support: Support::No,
        note: "listeners share one route table",
        probe: None,
    },
    Feature {
        name: "GatewayStaticAddresses / GatewayInfrastructurePropagation",
        level: "Extended",
        support: Support::No,
        note: "",
        probe: None,
    },
    Feature {
        name: "TLS Passthrough, TLSRoute, TCPRoute, UDPRoute, ListenerSet",
        level: "Extended",
        support: Support::No,
        note: "",
        probe: None,
    },
    Feature {
        name: "ReferenceGrant (backends and certificates in other namespaces)",
        level: "Core",
        support: Support::Yes,
        note: "without one: ResolvedRefs False (RefNotPermitted)",
        probe: None,
    },
    Feature {
        name: "HTTPRoute: hostnames, parentRefs with sectionName",
        level: "Core",
        support: Support::Yes,
        note: "route and listener hostnames intersected; a wildcard matches one label (as for Ingress)",
        probe: None,
    },
    Feature {
        name: "HTTPRouteParentRefPort",
        level: "Extended",
        support: Support::Yes,
        note: "selects listeners by port",
        probe: None,
    },
    Feature {
        name: "HTTPRoute: path match Exact",
        level: "Core",
        support: Support::Yes,
        note: "",
        probe: Some(|| accepts_match(json!({"path": {"type": "Exact", "value": "/a"}}))),
    },
    Feature {
        name: "HTTPRoute: path match PathPrefix",
        level: "Core",
        support: Support::Yes,
        note: "by path element",
        probe: Some(|| accepts_match(json!({"path": {"type": "PathPrefix", "value": "/a"}}))),
    },
    Feature {
        name: "HTTPRoute: path match RegularExpression",
        level: "Implementation-specific",
        support: Support::Yes,
        note: "Rust regex syntax, anchored at both ends",
        probe: Some(|| {
            accepts_match(json!({"path": {"type": "RegularExpression", "value": "/v[0-9]+"}}))
        }),
    },
    Feature {
        name: "HTTPRoute: header match (Exact)",
        level: "Core",
        support: Support::Yes,
        note: "names without case; a header sent several times matches when one value does",
        probe: Some(|| accepts_match(json!({"headers": [{"name": "a", "value": "b"}]}))),
    },
    Feature {
        name: "HTTPRouteQueryParamMatching",
        level: "Extended",
        support: Support::Yes,
        note: "Exact and RegularExpression; a repeated parameter is read at its first occurrence",
        probe: Some(|| accepts_match(json!({"queryParams": [{"name": "a", "value": "b"}]}))),
    },
    Feature {
        name: "HTTPRoute: header match (RegularExpression)",
        level: "Implementation-specific",
        support: Support::Yes,
        note: "anchored",
        probe: Some(|| {
            accepts_match(
                json!({"headers": [{"type": "RegularExpression", "name": "a", "value": "b.*"}]}),
            )
        }),
    },
    Feature {
        name: "HTTPRoute: match precedence",
        level: "Core",
        support: Support::Yes,
        note: "exact path, then regular expressions, then the longest prefix; on one path: method, then more headers, then more query parameters, then the older route and earlier rule",
        probe: None,
    },
    Feature {
        name: "HTTPRouteMethodMatching",
        level: "Extended",
        support: Support::Yes,
        note: "",
        probe: Some(|| accepts_match(json!({"method": "GET"}))),
    },
    Feature {
        name: "HTTPRoute: RequestHeaderModifier",
        level: "Core",
        support: Support::Yes,
        note: "set, add (appended after a comma) and remove",
        probe: Some(|| {
            accepts_filter(
                json!({"type": "RequestHeaderModifier", "requestHeaderModifier":
                {"set": [{"name": "a", "value": "b"}], "add": [{"name": "c", "value": "d"}], "remove": ["e"]}}),
            )
        }),
    },
    Feature {
        name: "HTTPRouteResponseHeaderModification",
        level: "Extended",
        support: Support::Yes,
        note: "set, add and remove",
        probe: Some(|| {
            accepts_filter(
                json!({"type": "ResponseHeaderModifier", "responseHeaderModifier":
                {"set": [{"name": "a", "value": "b"}], "add": [{"name": "c", "value": "d"}], "remove": ["e"]}}),
            )
        }),
    },
    Feature {
        name: "HTTPRoute: RequestRedirect (hostname, statusCode)",
        level: "Core",
        support: Support::Yes,
        note: "",
        probe: Some(|| {
            accepts_filter(json!({"type": "RequestRedirect", "requestRedirect":
                {"hostname": "a.test", "statusCode": 301}}))
        }),
    },
    Feature {
        name: "HTTPRouteSchemeRedirect / HTTPRoutePortRedirect / HTTPRoutePathRedirect",
        level: "Extended",
        support: Support::Yes,
        note: "",
        probe: Some(|| {
            accepts_filter(json!({"type": "RequestRedirect", "requestRedirect":
                {"scheme": "https", "port": 8443, "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"}}}))
        }),
    },
    Feature {
        name: "HTTPRouteHostRewrite / HTTPRoutePathRewrite (URLRewrite)",
        level: "Extended",
        support: Support::Yes,
        note: "ReplacePrefixMatch and ReplaceFullPath",
        probe: Some(|| {
            accepts_filter(json!({"type": "URLRewrite", "urlRewrite":
                {"hostname": "b.test", "path": {"type": "ReplaceFullPath", "replaceFullPath": "/x"}}}))
        }),
    },
    Feature {
        name: "HTTPRouteRequestMirror",
        level: "Extended",
        support: Support::No,
        note: "refused (UnsupportedValue)",
        probe: Some(|| {
            accepts_filter(json!({"type": "RequestMirror", "requestMirror":
                {"backendRef": {"name": "a", "port": 80}}}))
        }),
    },
    Feature {
        name: "HTTPRoute: CORS filter",
        level: "Extended",
        support: Support::No,
        note: "refused (UnsupportedValue)",
        probe: Some(|| accepts_filter(json!({"type": "CORS", "cors": {}}))),
    },
    Feature {
        name: "HTTPRoute: ExtensionRef to a portcullis.dev Policy",
        level: "Implementation-specific",
        support: Support::Yes,
        note: "the rule's policy; a rule without one denies every request",
        probe: Some(|| {
            accepts_filter(json!({"type": "ExtensionRef", "extensionRef":
                {"group": "portcullis.dev", "kind": "Policy", "name": "p"}}))
        }),
    },
    Feature {
        name: "HTTPRouteRequestTimeout / HTTPRouteBackendTimeout",
        level: "Extended",
        support: Support::Partial,
        note: "the shorter non-zero of request and backendRequest is the route's deadline, counted from the first request upstream (retries included); 0s: none",
        probe: Some(|| {
            super::rule_timeout(
                &super::types::HttpRouteTimeouts {
                    request: Some("10s".into()),
                    backend_request: Some("2s".into()),
                },
                "t",
            ) == Ok(Some(std::time::Duration::from_secs(2)))
        }),
    },
    Feature {
        name: "HTTPRoute: backendRefs to Services, weighted",
        level: "Core",
        support: Support::Yes,
        note: "ready EndpointSlice endpoints; each backend gets its weight's share whatever its endpoint count; an invalid backend's share goes to the valid ones (500 only when none is valid)",
        probe: None,
    },
    Feature {
        name: "HTTPRouteBackendProtocolH2C",
        level: "Extended",
        support: Support::Yes,
        note: "Service port appProtocol kubernetes.io/h2c",
        probe: None,
    },
    Feature {
        name: "HTTPRouteBackendProtocolWebSocket",
        level: "Extended",
        support: Support::No,
        note: "upgrades are not allowed on Gateway routes",
        probe: None,
    },
    Feature {
        name: "HTTPRoute: backendRef filters",
        level: "Extended",
        support: Support::No,
        note: "ResolvedRefs False (UnsupportedValue); that backend gets no share",
        probe: None,
    },
    Feature {
        name: "GRPCRoute: method match Exact (service and/or method)",
        level: "Core",
        support: Support::Yes,
        note: "to h2c backends",
        probe: Some(|| accepts_grpc(json!({"method": {"service": "a.B", "method": "C"}}))),
    },
    Feature {
        name: "GRPCRoute: method match RegularExpression",
        level: "Implementation-specific",
        support: Support::Yes,
        note: "",
        probe: Some(|| {
            accepts_grpc(json!({"method": {"type": "RegularExpression", "service": "a\\..*"}}))
        }),
    },
    Feature {
        name: "GRPCRoute: header match",
        level: "Core",
        support: Support::Yes,
        note: "",
        probe: Some(|| accepts_grpc(json!({"headers": [{"name": "a", "value": "b"}]}))),
    },
    Feature {
        name: "BackendTLSPolicy (TLS to backends of HTTPRoutes and GRPCRoutes)",
        level: "Extended",
        support: Support::Yes,
        note: "targets Services, or one port by name (`sectionName`); CA certificates from ConfigMaps (`ca.crt`, one or more) or `wellKnownCACertificates: System`; `hostname` is the SNI and the name checked; HTTP/2 by ALPN (gRPC); oldest policy wins, others `Conflicted`; status per Gateway",
        probe: Some(|| {
            probe_backend_tls(json!({"hostname": "b.test", "wellKnownCACertificates": "System"}))
        }),
    },
    Feature {
        name: "BackendTLSPolicySANValidation (subjectAltNames)",
        level: "Extended",
        support: Support::No,
        note: "a policy with `subjectAltNames` is not accepted (`Invalid`) and the backends it targets are not used: never reached with weaker verification than asked",
        probe: Some(|| {
            probe_backend_tls(
                json!({"hostname": "b.test", "wellKnownCACertificates": "System",
                                     "subjectAltNames": [{"type": "Hostname", "hostname": "c.test"}]}),
            )
        }),
    },
    Feature {
        name: "BackendTLSPolicy options",
        level: "Implementation-specific",
        support: Support::No,
        note: "Portcullis defines no option: a policy with `options` is not accepted (`Invalid`)",
        probe: Some(|| {
            probe_backend_tls(
                json!({"hostname": "b.test", "wellKnownCACertificates": "System",
                                     "options": {"example.com/x": "y"}}),
            )
        }),
    },
];

/// The table in `docs/gateway-api.md`.
pub fn markdown_table() -> String {
    let mut out = String::from("| feature | level | supported | notes |\n|---|---|---|---|\n");
    for f in FEATURES {
        let support = match f.support {
            Support::Yes => "yes",
            Support::Partial => "partly",
            Support::No => "no",
        };
        out.push_str(&format!(
            "| {} | {} | {support} | {} |\n",
            f.name, f.level, f.note
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_probe_agrees_with_the_table() {
        for f in FEATURES {
            if let Some(probe) = f.probe {
                let accepted = probe();
                assert_eq!(
                    accepted,
                    f.support != Support::No,
                    "{}: the table says {:?}, the translation {}",
                    f.name,
                    f.support,
                    if accepted { "accepts it" } else { "refuses it" }
                );
            }
        }
    }

    /// `docs/gateway-api.md` carries the table between two markers; regenerate it with
    /// `scripts/generate` (which runs this test with `PORTCULLIS_BLESS=1`).
    #[test]
    fn gateway_api_document_is_current() {
        crate::testing::generated_table_is_current("gateway-api.md", &markdown_table());
    }
}
