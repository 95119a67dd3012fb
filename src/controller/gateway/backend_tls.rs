//! `BackendTLSPolicy`: which TLS a backend Service is reached with, and the policy's status.
//!
//! A policy targets Services of its own namespace (a whole Service, or one port by its name
//! with `sectionName`). For one backend (Service and port) the policy that applies is the one
//! naming that port, else one naming the whole Service; among several, the oldest (then the
//! first by name) wins and the others are `Conflicted`. The winner must be valid for the
//! backend to be used at all: a policy that cannot be honoured (a CA that does not resolve, a
//! field Portcullis does not implement) makes the backend refused, never reached in plain text
//! or with weaker verification than asked.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;

use super::types::{BackendTLSPolicy, ParentRef};
use super::{Cond, ObjectKey, Snapshot};
use crate::config::{HostPattern, UpstreamTls};

/// What one policy means, and the conditions its status carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub accepted: Cond,
    pub resolved: Cond,
    /// The TLS settings to use; `None` when the policy cannot be honoured (the backend is
    /// then refused).
    pub tls: Option<Arc<UpstreamTls>>,
}

/// The status of one BackendTLSPolicy: its conditions under each Gateway whose routes use a
/// Service it targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyReport {
    pub object: ObjectKey,
    pub generation: Option<i64>,
    pub ancestors: Vec<(ParentRef, Vec<Cond>)>,
}

fn targets(p: &BackendTLSPolicy, service: &str, section: Option<&str>) -> bool {
    p.spec.target_refs.iter().any(|t| {
        t.group.is_empty()
            && t.kind == "Service"
            && t.name == service
            && t.section_name.as_deref().filter(|s| !s.is_empty()) == section
    })
}

/// The policies for port `port_name` of Service `ns/service`, the one that applies first:
/// those naming the port if any, else those naming the whole Service; oldest first, then by
/// name. The others are `Conflicted` with it.
pub fn applying<'a>(
    snap: &'a Snapshot,
    ns: &str,
    service: &str,
    port_name: Option<&str>,
) -> Vec<&'a BackendTLSPolicy> {
    let of = |section: Option<&str>| {
        let mut found: Vec<&BackendTLSPolicy> = snap
            .gateway
            .backend_tls
            .iter()
            .map(|p| &**p)
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns) && targets(p, service, section))
            .collect();
        found.sort_by_key(|p| super::age(&p.metadata));
        found
    };
    let for_port = port_name.filter(|n| !n.is_empty()).map(|n| of(Some(n)));
    match for_port {
        Some(found) if !found.is_empty() => found,
        _ => of(None),
    }
}

/// Every BackendTLSPolicy of a snapshot judged once: a policy's CA certificates are parsed
/// once per translation, not once per backend that uses it, and the backends under one policy
/// share its TLS settings (and so its parsed CA and connection pool in the route table). Kept
/// by the policy's address in the snapshot, which holds each policy for the translation.
pub struct Verdicts(HashMap<*const BackendTLSPolicy, Verdict>);

impl Verdicts {
    pub fn new(snap: &Snapshot) -> Verdicts {
        Verdicts(
            snap.gateway
                .backend_tls
                .iter()
                .map(|p| (Arc::as_ptr(p), verdict(snap, p)))
                .collect(),
        )
    }

    /// The verdict on `p` (judged now if `p` is not one of the snapshot's).
    pub fn of(&self, snap: &Snapshot, p: &BackendTLSPolicy) -> Cow<'_, Verdict> {
        match self.0.get(&std::ptr::from_ref(p)) {
            Some(v) => Cow::Borrowed(v),
            None => Cow::Owned(verdict(snap, p)),
        }
    }
}

/// Judge one policy by itself: the fields Portcullis implements, and its CA references.
/// (Whether it is the one that applies to a backend is [`applying`]'s business.)
pub fn verdict(snap: &Snapshot, p: &BackendTLSPolicy) -> Verdict {
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let v = &p.spec.validation;
    let resolved_ok = || {
        Cond::new(
            "ResolvedRefs",
            true,
            "ResolvedRefs",
            "all references resolved",
        )
    };
    let refuse = |accepted: Cond, resolved: Cond| Verdict {
        accepted,
        resolved,
        tls: None,
    };
    let invalid = |message: String| {
        refuse(
            Cond::new(
                "Accepted",
                false,
                "Invalid",
                format!("{message}: the Services it targets are not used"),
            ),
            resolved_ok(),
        )
    };
    if !p.spec.options.is_empty() {
        let keys: Vec<&str> = p.spec.options.keys().map(String::as_str).collect();
        return invalid(format!(
            "spec.options: Portcullis implements no option ({})",
            keys.join(", ")
        ));
    }
    if !v.subject_alt_names.is_empty() {
        return invalid(
            "spec.validation.subjectAltNames: checking the certificate against other names than the hostname is not supported"
                .into(),
        );
    }
    // RFC 1123 names only, exactly as written (the SNI sent is this text).
    let dns_name = |h: &str| {
        h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    };
    if v.hostname.is_empty()
        || v.hostname.len() > 253
        || !dns_name(&v.hostname)
        || v.hostname.parse::<std::net::IpAddr>().is_ok()
        || HostPattern::parse(&v.hostname).is_err()
    {
        return invalid(format!(
            "spec.validation.hostname: {:?} is not a DNS name",
            v.hostname
        ));
    }
    let well_known = v.well_known_ca_certificates.as_deref().unwrap_or_default();
    let ca = match (well_known, v.ca_certificate_refs.is_empty()) {
        ("System", true) => None,
        ("", false) if snap.gateway.config_maps_pending => {
            let message = "the ConfigMaps holding CA certificates have not been listed (yet): is the controller allowed to list configmaps?";
            return refuse(
                Cond::new("Accepted", false, "NoValidCACertificate", message),
                Cond::new("ResolvedRefs", false, "InvalidCACertificateRef", message),
            );
        }
        ("", false) => {
            let mut ders = Vec::new();
            let mut problems: Vec<(&'static str, String)> = Vec::new();
            for (i, r) in v.ca_certificate_refs.iter().enumerate() {
                let at = format!("spec.validation.caCertificateRefs[{i}]");
                if !r.group.is_empty() || r.kind != "ConfigMap" {
                    problems.push((
                        "InvalidKind",
                        format!("{at}: {}/{} is not a ConfigMap", r.group, r.kind),
                    ));
                    continue;
                }
                match ca_of(&snap.gateway.config_maps, &ns, &r.name) {
                    Ok(mut certs) => ders.append(&mut certs),
                    Err(e) => problems.push((
                        "InvalidCACertificateRef",
                        format!("{at}: ConfigMap {ns}/{}: {e}", r.name),
                    )),
                }
            }
            if let Some((reason, _)) = problems.first() {
                let message = problems
                    .iter()
                    .map(|(_, m)| m.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                let resolved = Cond::new("ResolvedRefs", false, reason, message.clone());
                let accepted = if ders.is_empty() {
                    Cond::new(
                        "Accepted",
                        false,
                        "NoValidCACertificate",
                        format!("no CA certificate reference is valid: {message}"),
                    )
                } else {
                    Cond::new(
                        "Accepted",
                        true,
                        "Accepted",
                        "accepted, but connections fail while a CA certificate reference is invalid",
                    )
                };
                // Connections that would use an invalid reference fail: the backend is
                // refused rather than verified against only some of the CAs asked for.
                return refuse(accepted, resolved);
            }
            Some(ders)
        }
        ("", true) => {
            return invalid(
                "spec.validation: neither caCertificateRefs nor wellKnownCACertificates is set"
                    .into(),
            );
        }
        (other, true) => {
            return invalid(format!(
                "spec.validation.wellKnownCACertificates: {other:?} is not supported (System)"
            ));
        }
        (_, false) => {
            return invalid(
                "spec.validation: caCertificateRefs and wellKnownCACertificates are both set"
                    .into(),
            );
        }
    };
    Verdict {
        accepted: Cond::new("Accepted", true, "Accepted", "accepted"),
        resolved: resolved_ok(),
        tls: Some(Arc::new(UpstreamTls {
            server_name: v.hostname.to_ascii_lowercase(),
            ca,
        })),
    }
}

/// The CA certificates (DER) in the `ca.crt` key of ConfigMap `ns/name`.
fn ca_of(config_maps: &[Arc<ConfigMap>], ns: &str, name: &str) -> Result<Vec<Vec<u8>>, String> {
    let cm = config_maps
        .iter()
        .find(|c| {
            c.metadata.namespace.as_deref() == Some(ns) && c.metadata.name.as_deref() == Some(name)
        })
        .ok_or("does not exist")?;
    let pem = cm
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .ok_or("has no key ca.crt")?;
    crate::tls::parse_ca_certificates(pem).map_err(|e| format!("ca.crt: {e}"))
}

/// The status of every BackendTLSPolicy: one entry per Gateway whose routes reach a backend
/// it targets (none when no route of ours does, which removes earlier entries); `Conflicted`
/// under a Gateway where another policy took precedence for such a backend.
pub fn reports(snap: &Snapshot, verdicts: &Verdicts, uses: &super::TlsUses) -> Vec<PolicyReport> {
    let mut out = Vec::new();
    for p in &snap.gateway.backend_tls {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let mine: Vec<&super::TlsUse> = uses
            .iter()
            .filter(|u| u.policy.0 == ns && u.policy.1 == name)
            .collect();
        let verdict = (!mine.is_empty()).then(|| verdicts.of(snap, p));
        let mut ancestors: Vec<(ParentRef, Vec<Cond>)> = Vec::new();
        for u in &mine {
            if ancestors
                .iter()
                .any(|(a, _)| a.namespace.as_ref() == Some(&u.gateway.0) && a.name == u.gateway.1)
            {
                continue;
            }
            let lost = mine
                .iter()
                .filter(|o| o.gateway == u.gateway)
                .find_map(|o| o.lost_to.as_ref());
            let Some(v) = verdict.as_ref() else { continue };
            let accepted = match lost {
                Some(winner) => Cond::new(
                    "Accepted",
                    false,
                    "Conflicted",
                    format!(
                        "BackendTLSPolicy {winner} targets the same Service (port) and takes precedence (older, or first by name)"
                    ),
                ),
                None => v.accepted.clone(),
            };
            ancestors.push((
                ParentRef {
                    group: Some(super::types::GROUP.to_string()),
                    kind: Some("Gateway".to_string()),
                    namespace: Some(u.gateway.0.clone()),
                    name: u.gateway.1.clone(),
                    section_name: None,
                    port: None,
                },
                vec![accepted, v.resolved.clone()],
            ));
        }
        out.push(PolicyReport {
            object: ObjectKey {
                kind: "BackendTLSPolicy",
                namespace: ns,
                name,
            },
            generation: p.metadata.generation,
            ancestors,
        });
    }
    out
}
