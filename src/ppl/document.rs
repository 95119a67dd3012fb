//! Files of policies: a PPL document, or a stream of Policy manifests (or PPL documents)
//! separated by `---`.

use super::{Policy, PolicyError};
use crate::source::{Node, Pos};

/// The API version of the Policy manifest.
pub const API_VERSION: &str = "portcullis.dev/v1alpha1";

/// One policy found in a file.
#[derive(Clone, Debug)]
pub struct PolicyDocument {
    /// Where the document starts.
    pub pos: Pos,
    /// `metadata.name` of a manifest; `None` for plain PPL.
    pub name: Option<String>,
    pub policy: Policy,
}

/// Every policy of a file: plain PPL documents and `kind: Policy` manifests (with
/// `spec.allow`/`spec.deny`), `---` separated. Errors of all documents are collected. Empty
/// documents are skipped; a file with none is an error.
pub fn parse_file(text: &str) -> Result<Vec<PolicyDocument>, Vec<PolicyError>> {
    let docs = Node::parse_stream(text).map_err(|e| vec![PolicyError::new(e.pos, e.message)])?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for doc in docs.iter().filter(|d| !d.is_null()) {
        let is_manifest = doc.get("apiVersion").is_some() || doc.get("kind").is_some();
        let result = if is_manifest {
            manifest(doc)
        } else {
            Policy::from_node(doc).map(|policy| PolicyDocument {
                pos: doc.pos,
                name: None,
                policy,
            })
        };
        match result {
            Ok(d) => out.push(d),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        super::compile::sort_errors(&mut errors);
        return Err(errors);
    }
    if out.is_empty() {
        return Err(vec![PolicyError::new(
            Pos::new(1, 1),
            "no policy in this file (it is empty)",
        )]);
    }
    Ok(out)
}

fn manifest(doc: &Node) -> Result<PolicyDocument, Vec<PolicyError>> {
    let mut errors = Vec::new();
    let mut spec = None;
    let mut name = None;
    let (mut has_api, mut has_kind) = (false, false);
    for (key, value) in doc.as_map().unwrap_or_default() {
        let field = key.key_text();
        match field.as_str() {
            "apiVersion" => {
                has_api = true;
                if value.as_str() != Some(API_VERSION) {
                    errors.push(PolicyError::new(
                        value.pos,
                        format!(
                            "unsupported apiVersion {} (expected {API_VERSION})",
                            quoted(value)
                        ),
                    ));
                }
            }
            "kind" => {
                has_kind = true;
                if value.as_str() != Some("Policy") {
                    errors.push(PolicyError::new(
                        value.pos,
                        format!("unsupported kind {} (expected Policy)", quoted(value)),
                    ));
                }
            }
            "metadata" => name = value.get("name").and_then(Node::as_str).map(str::to_string),
            "spec" => spec = Some(value),
            "status" => {}
            _ => errors.push(PolicyError::new(
                key.pos,
                format!(
                    "unknown field {field:?} in a Policy manifest (expected apiVersion, kind, metadata, spec)"
                ),
            )),
        }
    }
    if !has_api {
        errors.push(PolicyError::new(
            doc.pos,
            format!("missing apiVersion (expected {API_VERSION})"),
        ));
    }
    if !has_kind {
        errors.push(PolicyError::new(doc.pos, "missing kind (expected Policy)"));
    }
    let policy = match spec {
        None => {
            errors.push(PolicyError::new(
                doc.pos,
                "missing spec (with allow and/or deny)",
            ));
            None
        }
        Some(spec) if spec.as_map().is_none() => {
            errors.push(PolicyError::new(
                spec.pos,
                format!(
                    "spec must be a map with allow and/or deny, found {}",
                    spec.kind()
                ),
            ));
            None
        }
        Some(spec) => match Policy::from_rule_node(spec) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.extend(e);
                None
            }
        },
    };
    match policy {
        Some(policy) if errors.is_empty() => Ok(PolicyDocument {
            pos: doc.pos,
            name,
            policy,
        }),
        _ => Err(errors),
    }
}

fn quoted(node: &Node) -> String {
    match node.as_str() {
        Some(s) => format!("{s:?}"),
        None => node.kind().to_string(),
    }
}
