//! Writing the Gateway API status the translation decided (leader only): GatewayClass and
//! Gateway conditions, listener status and addresses, and each route's entry per parent.
//! A status is written only when it differs from what the object has (transition times
//! ignored), and a condition keeps its `lastTransitionTime` while its status stays the same.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::gateway::types::{
    BackendTLSPolicy, ClassStatus, GRPCRoute, Gateway, GatewayAddress, GatewayClass, GatewayStatus,
    HTTPRoute, ListenerStatus, PolicyAncestorStatus, PolicyStatus, RouteParentStatus, RouteStatus,
};
use super::gateway::{CONTROLLER_NAME, Cond, Reports};
use super::translate::{ByName, Snapshot};

/// Conditions as written: `wanted` with the transition times of `existing` kept where the
/// status did not change.
pub fn conditions(
    existing: &[Condition],
    wanted: &[Cond],
    generation: Option<i64>,
) -> Vec<Condition> {
    wanted
        .iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let since = existing
                .iter()
                .find(|e| e.type_ == c.type_ && e.status == status)
                .map(|e| e.last_transition_time.clone())
                .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
            Condition {
                type_: c.type_.to_string(),
                status: status.to_string(),
                reason: c.reason.to_string(),
                message: at_most(&c.message, MAX_MESSAGE_BYTES).to_string(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// Whether two condition lists say the same, transition times aside.
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    let strip = |c: &[Condition]| -> Vec<(String, String, String, String, Option<i64>)> {
        c.iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                    c.observed_generation,
                )
            })
            .collect()
    };
    strip(a) == strip(b)
}

/// Write every status of `reports` that changed. `addresses`: the Gateways' addresses (from
/// `--publish-service` / `--publish-address`), when known.
pub async fn write(
    client: &Client,
    snap: &Snapshot,
    reports: &Reports,
    addresses: Option<Vec<GatewayAddress>>,
) {
    for c in &reports.classes {
        let Some(obj) = snap
            .gateway
            .classes
            .iter()
            .find(|o| o.metadata.name.as_deref() == Some(c.name.as_str()))
        else {
            continue;
        };
        let existing = obj.status.clone().unwrap_or_default();
        let status = ClassStatus {
            conditions: conditions(&existing.conditions, &c.conditions, c.generation),
        };
        if !same(&existing.conditions, &status.conditions) {
            let api: Api<GatewayClass> = Api::all(client.clone());
            patch(&api, &c.name, &status).await;
        }
    }
    // Looked up by name: one scan per report would make a pass quadratic in the routes.
    let gateways = ByName::new(&snap.gateway.gateways);
    let http_routes = ByName::new(&snap.gateway.http_routes);
    let grpc_routes = ByName::new(&snap.gateway.grpc_routes);
    let tls_policies = ByName::new(&snap.gateway.backend_tls);
    for g in &reports.gateways {
        let Some(obj) = gateways.get(&g.object.namespace, &g.object.name) else {
            continue;
        };
        let existing = obj.status.clone().unwrap_or_default();
        let listeners: Vec<ListenerStatus> = g
            .listeners
            .iter()
            .map(|l| {
                let before = existing.listeners.iter().find(|e| e.name == l.name);
                ListenerStatus {
                    name: l.name.clone(),
                    supported_kinds: l.supported_kinds.clone(),
                    attached_routes: l.attached_routes,
                    conditions: conditions(
                        before.map(|b| b.conditions.as_slice()).unwrap_or_default(),
                        &l.conditions,
                        g.generation,
                    ),
                }
            })
            .collect();
        let status = GatewayStatus {
            addresses: addresses
                .clone()
                .unwrap_or_else(|| existing.addresses.clone()),
            conditions: conditions(&existing.conditions, &g.conditions, g.generation),
            listeners,
        };
        let listeners_same = existing.listeners.len() == status.listeners.len()
            && existing
                .listeners
                .iter()
                .zip(&status.listeners)
                .all(|(a, b)| {
                    a.name == b.name
                        && a.attached_routes == b.attached_routes
                        && a.supported_kinds == b.supported_kinds
                        && same(&a.conditions, &b.conditions)
                });
        if !(listeners_same
            && existing.addresses == status.addresses
            && same(&existing.conditions, &status.conditions))
        {
            let api: Api<Gateway> = Api::namespaced(client.clone(), &g.object.namespace);
            patch(&api, &g.object.name, &status).await;
        }
    }
    for r in &reports.routes {
        let existing = match r.object.kind {
            "HTTPRoute" => http_routes
                .get(&r.object.namespace, &r.object.name)
                .map(|o| o.status.clone().unwrap_or_default()),
            _ => grpc_routes
                .get(&r.object.namespace, &r.object.name)
                .map(|o| o.status.clone().unwrap_or_default()),
        };
        let Some(existing) = existing else { continue };
        // Other controllers' entries are kept as they are.
        let mut parents: Vec<RouteParentStatus> = existing
            .parents
            .iter()
            .filter(|p| p.controller_name != CONTROLLER_NAME)
            .cloned()
            .collect();
        let mut changed = false;
        for p in &r.parents {
            let before = existing
                .parents
                .iter()
                .find(|e| e.controller_name == CONTROLLER_NAME && e.parent_ref == p.parent);
            let entry = RouteParentStatus {
                parent_ref: p.parent.clone(),
                controller_name: CONTROLLER_NAME.to_string(),
                conditions: conditions(
                    before.map(|b| b.conditions.as_slice()).unwrap_or_default(),
                    &p.conditions,
                    r.generation,
                ),
            };
            changed |= before.is_none_or(|b| !same(&b.conditions, &entry.conditions));
            parents.push(entry);
        }
        let ours_before = existing
            .parents
            .iter()
            .filter(|p| p.controller_name == CONTROLLER_NAME)
            .count();
        changed |= ours_before != r.parents.len();
        if !changed {
            continue;
        }
        let status = RouteStatus { parents };
        if r.object.kind == "HTTPRoute" {
            let api: Api<HTTPRoute> = Api::namespaced(client.clone(), &r.object.namespace);
            patch(&api, &r.object.name, &status).await;
        } else {
            let api: Api<GRPCRoute> = Api::namespaced(client.clone(), &r.object.namespace);
            patch(&api, &r.object.name, &status).await;
        }
    }
    for p in &reports.backend_tls {
        let Some(obj) = tls_policies.get(&p.object.namespace, &p.object.name) else {
            continue;
        };
        let existing = obj.status.clone().unwrap_or_default();
        // Other controllers' entries are kept as they are.
        let mut ancestors: Vec<PolicyAncestorStatus> = existing
            .ancestors
            .iter()
            .filter(|a| a.controller_name != CONTROLLER_NAME)
            .cloned()
            .collect();
        let mut changed = false;
        // The API server takes at most 16 entries.
        let room = MAX_ANCESTORS.saturating_sub(ancestors.len());
        for (ancestor, wanted) in p.ancestors.iter().take(room) {
            let before = existing.ancestors.iter().find(|e| {
                e.controller_name == CONTROLLER_NAME
                    && e.ancestor_ref.name == ancestor.name
                    && e.ancestor_ref.namespace == ancestor.namespace
            });
            let entry = PolicyAncestorStatus {
                ancestor_ref: ancestor.clone(),
                controller_name: CONTROLLER_NAME.to_string(),
                conditions: conditions(
                    before.map(|b| b.conditions.as_slice()).unwrap_or_default(),
                    wanted,
                    p.generation,
                ),
            };
            changed |= before.is_none_or(|b| !same(&b.conditions, &entry.conditions));
            ancestors.push(entry);
        }
        changed |= existing
            .ancestors
            .iter()
            .filter(|a| a.controller_name == CONTROLLER_NAME)
            .count()
            != p.ancestors.len().min(room);
        if changed {
            let api: Api<BackendTLSPolicy> = Api::namespaced(client.clone(), &p.object.namespace);
            patch(&api, &p.object.name, &PolicyStatus { ancestors }).await;
        }
    }
}

async fn patch<K, S>(api: &Api<K>, name: &str, status: &S)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
    S: Serialize,
{
    let body = serde_json::json!({ "status": status });
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        tracing::warn!(kind = %K::kind(&Default::default()), name, error = %e, "cannot write status");
    }
}

/// The most entries a policy's `status.ancestors` may hold.
const MAX_ANCESTORS: usize = 16;

/// The API server's limit on a condition message, in bytes.
const MAX_MESSAGE_BYTES: usize = 32_768;

/// `text` cut to at most `max` bytes at a character boundary.
fn at_most(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_are_cut_to_the_byte_limit_at_a_character() {
        let text = "é".repeat(20_000); // 40,000 bytes
        let cut = super::at_most(&text, super::MAX_MESSAGE_BYTES);
        assert!(
            cut.len() <= super::MAX_MESSAGE_BYTES && cut.len() > 32_760,
            "{}",
            cut.len()
        );
        assert_eq!(super::at_most("short", 10), "short");
    }
}
