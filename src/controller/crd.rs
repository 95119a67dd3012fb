//! The `Policy` custom resource (`portcullis.dev/v1alpha1`): a PPL rule object in `spec`
//! (`allow` and/or `deny`), its status written by the controller.
//!
//! The schema is strict where PPL's shape is fixed (only `and`/`or`/`not`/`nor` under an action,
//! each a list of single-key criterion objects), so the API server refuses malformed objects at
//! `kubectl apply`; criterion values are free-form and checked by the controller, which reports
//! the result in `status.conditions`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use kube::core::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A named, reusable policy: Ingresses refer to it with the `portcullis.dev/policies`
/// annotation.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "Policy",
    namespaced,
    shortname = "ppl",
    doc = "A Portcullis policy (PPL rule object) that Ingresses name in portcullis.dev/policies.",
    status = "PolicyStatus",
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct PolicySpec {
    /// Operators whose criteria allow a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "action_schema")]
    pub allow: Option<serde_json::Value>,
    /// Operators whose criteria deny a request (deny wins over allow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "action_schema")]
    pub deny: Option<serde_json::Value>,
}

/// What the controller made of a Policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// `Accepted`: `True` when the policy compiled, `False` with the reason and the position
    /// of each error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// `allow`/`deny`: a map of operators, each a list of single-key criterion objects.
fn action_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let criteria = schemars::json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "x-kubernetes-preserve-unknown-fields": true,
            "description": "One criterion (or a nested and/or/not/nor), e.g. {email: {is: a@b.c}}."
        }
    });
    schemars::json_schema!({
        "type": "object",
        "description": "PPL operators: and, or, not, nor.",
        "properties": {
            "and": criteria,
            "or": criteria,
            "not": criteria,
            "nor": criteria
        },
        "additionalProperties": false
    })
}

/// The CustomResourceDefinition as YAML (what `portcullis crd` prints and `crds/` holds).
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let crd = Policy::crd();
    serde_saphyr::to_string(&crd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crds_are_current() {
        let generated = crd_yaml().unwrap();
        for (path, committed) in [
            (
                "crds/policies.portcullis.dev.yaml",
                include_str!("../../crds/policies.portcullis.dev.yaml"),
            ),
            (
                "charts/portcullis/crds/policies.portcullis.dev.yaml",
                include_str!("../../charts/portcullis/crds/policies.portcullis.dev.yaml"),
            ),
        ] {
            assert!(
                committed == generated,
                "{path} is stale: regenerate it with scripts/generate and commit the result"
            );
        }
    }

    #[test]
    fn spec_round_trips() {
        let json = serde_json::json!({"allow": {"or": [{"email": {"is": "a@b.c"}}]}});
        let spec: PolicySpec = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&spec).unwrap(), json);
    }
}
