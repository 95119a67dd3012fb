//! Pomerium Policy Language. TEMPORARY STUB in the main branch while the engine is built on the
//! `ppl` branch; replaced wholesale by that merge.
#![allow(dead_code, unused_variables)]
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::source::{Node, Pos};

#[derive(Debug, Clone)]
pub struct Policy(Arc<bool>);

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyError {
    pub pos: Pos,
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

#[derive(Default, Clone, Debug, serde::Deserialize)]
pub struct LegacyOptions {
    pub allow_public_unauthenticated_access: bool,
    pub allow_any_authenticated_user: bool,
    pub cors_allow_preflight: bool,
    pub allowed_domains: Vec<String>,
    pub allowed_users: Vec<String>,
    pub allowed_idp_claims: BTreeMap<String, Vec<serde_json::Value>>,
}

pub trait Headers {
    fn header(&self, name: &str) -> Option<&str>;
}

impl Headers for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct Request<'a> {
    pub time: chrono::DateTime<chrono::Utc>,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub headers: &'a dyn Headers,
    pub ip: Option<std::net::IpAddr>,
    pub session: Option<&'a Identity>,
    pub client_certificate: Option<&'a ClientCertificate>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Identity {
    pub user: String,
    pub email: String,
    pub claims: Claims,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Claims(BTreeMap<String, Vec<serde_json::Value>>);

pub struct ClientCertificate;

#[derive(serde::Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
    Login,
}

#[derive(serde::Serialize, Debug, Clone)]
pub struct Outcome {
    pub value: bool,
    pub reasons: Reasons,
}
#[derive(serde::Serialize, Debug, Clone, Default)]
pub struct Reasons(Vec<&'static str>);
impl Reasons {
    pub fn iter(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().copied()
    }
}

#[derive(serde::Serialize, Debug, Clone)]
pub struct Evaluation {
    pub decision: Decision,
    pub allow: Outcome,
    pub deny: Outcome,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, Vec<PolicyError>> {
        Ok(Policy(Arc::new(text.contains("accept"))))
    }
    pub fn from_node(node: &Node) -> Result<Policy, Vec<PolicyError>> {
        Ok(Policy(Arc::new(
            node.to_json().to_string().contains("accept"),
        )))
    }
    pub fn from_legacy(opts: &LegacyOptions) -> Option<Policy> {
        opts.allow_public_unauthenticated_access
            .then(|| Policy(Arc::new(true)))
    }
    pub fn merge(policies: impl IntoIterator<Item = Policy>) -> Policy {
        Policy(Arc::new(policies.into_iter().any(|p| *p.0)))
    }
    pub fn deny_all() -> Policy {
        Policy(Arc::new(false))
    }
    pub fn needs_session(&self) -> bool {
        !*self.0
    }
    pub fn evaluate(&self, req: &Request<'_>) -> Evaluation {
        let ok = *self.0;
        Evaluation {
            decision: if ok { Decision::Allow } else { Decision::Deny },
            allow: Outcome {
                value: ok,
                reasons: Reasons::default(),
            },
            deny: Outcome {
                value: false,
                reasons: Reasons::default(),
            },
        }
    }
}
