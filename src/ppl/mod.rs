//! Pomerium Policy Language (PPL): parsing with positions, a compiled form, evaluation.
//!
//! The contract is Pomerium's policy language (rules, criteria, matchers and the decision
//! order); the choices it leaves open are listed in `docs/ARCHITECTURE.md`. A policy is parsed once ([`Policy::parse`],
//! [`Policy::from_node`]) into a compiled form in which every matcher, CIDR, timestamp, time
//! zone, day set and fingerprint is already parsed; [`Policy::evaluate`] then decides a
//! [`Request`] without allocating. See `docs/ARCHITECTURE.md`, section "Policy engine".
//!
//! This module depends on nothing of ours except [`crate::source`].

mod cert;
mod claims;
mod compile;
mod context;
mod document;
mod eval;
mod explain;
mod reason;
mod render;
mod request;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use cert::ClientCertificate;
pub use claims::{Claims, json_eq};
pub use context::RequestContext;
pub use document::{PolicyDocument, parse_file};
pub use reason::{Reason, Reasons};
pub use request::{HeaderList, Headers, Identity, NoHeaders, Request};

use crate::source::{Node, Pos};
use compile::{Actions, Compiler};
use eval::{Crit, Expr, Op, StrMatch};

/// A compiled policy. Cheap to clone (shared), `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Policy(Arc<Compiled>);

/// Two policies are equal when their compiled forms are (so a republished, unchanged route is
/// recognised without comparing text).
impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

#[derive(Debug, PartialEq)]
struct Compiled {
    /// Operators of every `allow` (across rule objects), OR-ed.
    allow: Vec<Expr>,
    /// Operators of every `deny`, OR-ed.
    deny: Vec<Expr>,
    needs_session: bool,
    /// Whether any criterion looks at the request's time (`date`, `day_of_week`,
    /// `time_of_day`).
    reads_time: bool,
}

/// An error in a policy (or a request context), with the position of the offending node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.pos, .message))]
pub struct PolicyError {
    pub pos: Pos,
    pub message: String,
}

fn render(pos: &Pos, message: &str) -> String {
    if pos.is_known() {
        format!("{pos}: {message}")
    } else {
        message.to_string()
    }
}

impl PolicyError {
    pub fn new(pos: Pos, message: impl Into<String>) -> PolicyError {
        PolicyError {
            pos,
            message: message.into(),
        }
    }

    /// `FILE:LINE:COL: message` (or `FILE: message` when the position is unknown).
    pub fn in_file(&self, file: &str) -> String {
        if self.pos.is_known() {
            format!("{file}:{}: {}", self.pos, self.message)
        } else {
            format!("{file}: {}", self.message)
        }
    }
}

/// The route options that become policy (one extra `allow: or: [...]` block).
#[derive(Default, Clone, Debug, serde::Deserialize)]
#[serde(default)]
pub struct LegacyOptions {
    pub allow_public_unauthenticated_access: bool,
    pub allow_any_authenticated_user: bool,
    pub cors_allow_preflight: bool,
    pub allowed_domains: Vec<String>,
    pub allowed_users: Vec<String>,
    pub allowed_idp_claims: BTreeMap<String, Vec<serde_json::Value>>,
}

/// The decision.
#[derive(serde::Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Proxy the request.
    Allow,
    /// 403.
    Deny,
    /// Not signed in but the policy needs it: redirect to sign-in (browser) or 401 (API).
    Login,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Login => "login",
        })
    }
}

/// The value of an action (or of any sub-expression) and why.
#[derive(serde::Serialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Outcome {
    pub value: bool,
    pub reasons: Reasons,
}

/// The result of evaluating a policy; serialises to the `policy eval` output.
#[derive(serde::Serialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct Evaluation {
    pub decision: Decision,
    pub allow: Outcome,
    pub deny: Outcome,
}

impl Evaluation {
    /// The reasons behind the decision: deny's when denied by a deny rule, allow's otherwise
    /// (for login, both).
    pub fn reasons(&self) -> Reasons {
        match self.decision {
            Decision::Login => self.allow.reasons | self.deny.reasons,
            Decision::Deny if self.deny.value => self.deny.reasons,
            _ => self.allow.reasons,
        }
    }
}

impl Policy {
    pub(crate) fn new(actions: Actions) -> Policy {
        let any = |f: fn(&Crit) -> bool| {
            (actions.allow.iter())
                .chain(&actions.deny)
                .any(|e| e.any_crit(&f))
        };
        let (needs_session, reads_time) = (any(Crit::needs_session), any(Crit::reads_time));
        Policy(Arc::new(Compiled {
            allow: actions.allow,
            deny: actions.deny,
            needs_session,
            reads_time,
        }))
    }

    /// Parse PPL text (YAML or JSON, one document).
    pub fn parse(text: &str) -> Result<Policy, Vec<PolicyError>> {
        let node = Node::parse(text).map_err(|e| vec![PolicyError::new(e.pos, e.message)])?;
        Policy::from_node(&node)
    }

    /// Compile a PPL document that is part of a bigger tree (a route's `policy:`, a Policy
    /// manifest's `spec`); errors carry that tree's positions.
    pub fn from_node(node: &Node) -> Result<Policy, Vec<PolicyError>> {
        let mut compiler = Compiler::default();
        let mut actions = Actions::default();
        compiler.document(node, &mut actions);
        compiler.finish(actions)
    }

    /// Compile one rule object (a map of `allow`/`deny`), e.g. a Policy manifest's `spec`.
    pub fn from_rule_node(node: &Node) -> Result<Policy, Vec<PolicyError>> {
        let mut compiler = Compiler::default();
        let mut actions = Actions::default();
        compiler.rule(node, &mut actions);
        compiler.finish(actions)
    }

    /// The policy the legacy route options stand for: `allow: or: [...]` with one criterion
    /// per option value. `None` when no option is set.
    pub fn from_legacy(opts: &LegacyOptions) -> Option<Policy> {
        let mut crits = Vec::new();
        if opts.allow_public_unauthenticated_access {
            crits.push(Crit::Accept);
        }
        if opts.allow_any_authenticated_user {
            crits.push(Crit::AuthenticatedUser);
        }
        if opts.cors_allow_preflight {
            crits.push(Crit::CorsPreflight);
        }
        for domain in &opts.allowed_domains {
            crits.push(Crit::Domain(StrMatch::is(domain)));
        }
        for user in &opts.allowed_users {
            crits.push(Crit::User(StrMatch::is(user)));
            crits.push(Crit::Email(StrMatch::is(user)));
        }
        for (claim, values) in &opts.allowed_idp_claims {
            for value in values {
                crits.push(compile::claim_has(claim, value));
            }
        }
        if crits.is_empty() {
            return None;
        }
        let items = crits.into_iter().map(Expr::Crit).collect();
        Some(Policy::new(Actions {
            allow: vec![Expr::Op(Op::Or, items)],
            deny: Vec::new(),
        }))
    }

    /// One policy from several: allows OR-ed, denies OR-ed.
    pub fn merge(policies: impl IntoIterator<Item = Policy>) -> Policy {
        let mut actions = Actions::default();
        for p in policies {
            actions.allow.extend(p.0.allow.iter().cloned());
            actions.deny.extend(p.0.deny.iter().cloned());
        }
        Policy::new(actions)
    }

    /// A policy with no allow at all: it denies everything.
    pub fn deny_all() -> Policy {
        Policy::new(Actions::default())
    }

    /// Decide a request (see the reference for the order: login, deny, allow, deny).
    pub fn evaluate(&self, req: &Request<'_>) -> Evaluation {
        let allow = Policy::action(&self.0.allow, req);
        let deny = Policy::action(&self.0.deny, req);
        let decision = if (allow.reasons | deny.reasons).contains(Reason::UserUnauthenticated) {
            Decision::Login
        } else if deny.value {
            Decision::Deny
        } else if allow.value {
            Decision::Allow
        } else {
            Decision::Deny
        };
        Evaluation {
            decision,
            allow,
            deny,
        }
    }

    /// True if some criterion looks at the signed-in user (a hint: load the session first).
    pub fn needs_session(&self) -> bool {
        self.0.needs_session
    }

    /// True if some criterion looks at the request's time (`date`, `day_of_week`,
    /// `time_of_day`): evaluating any other policy does not read the request's `time`.
    pub fn reads_time(&self) -> bool {
        self.0.reads_time
    }

    /// True if the policy has at least one `allow` operator (without one it denies everything).
    pub fn has_allow(&self) -> bool {
        !self.0.allow.is_empty()
    }
}
