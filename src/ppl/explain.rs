//! Plain-language explanations of a decision, for the pages people read.
//!
//! The walk follows [`combine`](super::eval::combine): under each operator it keeps the
//! sub-expressions that agree with the operator's result, down to the criteria, and says what
//! each criterion asks for (in the words and values the policy's author wrote) and, for a
//! criterion about the user that failed, what this user has. It only runs for refusals, so it
//! may allocate; it never mentions anything but the policy and the requesting user's own data.

use serde_json::Value;

use super::eval::{Crit, Expr, ListMatch, ListOp, Op, Operand, StrMatch, StrOp};
use super::request::{Identity, Request};
use super::{Decision, Policy};

/// At most this many sentences: a page is for reading.
const MAX_LINES: usize = 6;

impl Policy {
    /// Sentences saying why `req` is not allowed (empty when it is).
    pub fn explain(&self, req: &Request<'_>) -> Vec<String> {
        let eval = self.evaluate(req);
        // The action whose value decided: deny's when a deny rule matched, else allow's.
        let (exprs, by_deny) = match eval.decision {
            Decision::Allow => return Vec::new(),
            Decision::Deny if eval.deny.value => (&self.0.deny, true),
            _ if self.0.allow.is_empty() => {
                return vec!["The route's policy allows nobody: it has no allow rule.".into()];
            }
            _ => (&self.0.allow, false),
        };
        let mut crits = Vec::new();
        for e in exprs.iter().filter(|e| e.evaluate(req).value == by_deny) {
            leaves(e, req, false, &mut crits);
        }
        let mut out: Vec<String> = Vec::new();
        for (crit, negated) in crits {
            let line = sentence(crit, negated, by_deny, req.session);
            if !out.contains(&line) {
                out.push(line);
            }
        }
        out.truncate(MAX_LINES);
        out
    }
}

/// One criterion as a sentence: `by_deny` when a deny rule matched (the criterion held, or
/// failed under `not`), else as what the allow rule needs.
fn sentence(crit: &Crit, negated: bool, by_deny: bool, session: Option<&Identity>) -> String {
    let cond = condition(crit);
    match (by_deny, negated) {
        (true, false) => format!("A deny rule matched: {cond}."),
        (true, true) => format!("A deny rule matched: it is not the case that {cond}."),
        (false, true) => format!("The allow rule excludes requests where {cond}."),
        (false, false) => match (session, crit.needs_session()) {
            (None, true) => format!("You need to be signed in: {cond}."),
            (Some(id), true) => match have(crit, id) {
                Some(h) => format!("You need: {cond}. You have: {h}."),
                None => format!("You need: {cond}."),
            },
            _ => format!("You need: {cond}."),
        },
    }
}

/// Collect every criterion that made `e` come out as it did, with whether it sits under an
/// odd number of `not`/`nor`.
fn leaves<'p>(e: &'p Expr, req: &Request<'_>, negated: bool, out: &mut Vec<(&'p Crit, bool)>) {
    match e {
        Expr::Crit(c) => out.push((c, negated)),
        Expr::Op(op, items) => {
            let invert = matches!(op, Op::Not | Op::Nor);
            let value = e.evaluate(req).value;
            for item in items.iter() {
                // The item's value as the operator counts it (flipped under not/nor) agrees
                // with the operator's result: it is part of the reason.
                if (item.evaluate(req).value != invert) == value {
                    leaves(item, req, negated != invert, out);
                }
            }
        }
    }
}

/// What a criterion asks for, in words.
fn condition(c: &Crit) -> String {
    match c {
        Crit::Accept => "every request is accepted".into(),
        Crit::Reject => "no request is accepted (reject)".into(),
        Crit::AuthenticatedUser => "any signed-in user".into(),
        // User ids and email addresses a policy names are other people's: not shown (patterns
        // such as "ends with @example.com" are).
        Crit::User(m) => format!("your user id {}", str_match(m, true)),
        Crit::Email(m) => format!("your email {}", str_match(m, true)),
        Crit::Domain(m) => format!("your email's domain {}", str_match(m, false)),
        Crit::Claim {
            literal, matcher, ..
        } => format!("claim {literal} {}", list_match(matcher)),
        Crit::Groups(m) => format!("your groups {}", list_match(m)),
        Crit::HttpMethod(m) => format!("the method {}", str_match(m, false)),
        Crit::HttpPath(m) => format!("the path {}", str_match(m, false)),
        Crit::CorsPreflight => "the request is a CORS preflight".into(),
        Crit::SourceIp(nets) => format!(
            "your address is in {}",
            nets.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Crit::ClientCertificate(_) => "a client certificate the policy names".into(),
        Crit::InvalidClientCertificate => "a missing or invalid client certificate".into(),
        Crit::Date { after, before } => {
            let mut parts = Vec::new();
            if let Some(a) = after {
                parts.push(format!("after {}", a.to_rfc3339()));
            }
            if let Some(b) = before {
                parts.push(format!("before {}", b.to_rfc3339()));
            }
            format!("the date is {}", parts.join(" and "))
        }
        Crit::DayOfWeek(days) => format!(
            "the day is one of {}",
            super::render::day_names(*days).join(", ")
        ),
        Crit::TimeOfDay { tz, after, before } => {
            let clock = |n: u64| {
                let minutes = n / 60_000_000_000;
                format!("{:02}:{:02}", minutes / 60, minutes % 60)
            };
            let mut parts = Vec::new();
            if let Some(a) = after {
                parts.push(format!("from {}", clock(*a)));
            }
            if let Some(b) = before {
                parts.push(format!("until {}", clock(*b)));
            }
            format!("the time ({tz}) is {}", parts.join(" "))
        }
    }
}

/// A string matcher in words; `people`: exact values are people's ids or addresses, so they
/// are not written out.
fn str_match(m: &StrMatch, people: bool) -> String {
    let list = |xs: &[Box<str>]| xs.iter().map(|x| &**x).collect::<Vec<_>>().join(", ");
    m.0.iter()
        .map(|op| match op {
            StrOp::Is(_) | StrOp::In(_) if people => "is one the policy names (not shown)".into(),
            StrOp::Not(_) | StrOp::NotIn(_) if people => {
                "is not one the policy excludes (not shown)".into()
            }
            StrOp::Is(x) => format!("is {x}"),
            StrOp::Not(x) => format!("is not {x}"),
            StrOp::StartsWith(x) => format!("starts with {x}"),
            StrOp::EndsWith(x) => format!("ends with {x}"),
            StrOp::Contains(x) => format!("contains {x}"),
            StrOp::In(xs) => format!("is one of {}", list(xs)),
            StrOp::NotIn(xs) => format!("is none of {}", list(xs)),
        })
        .collect::<Vec<_>>()
        .join(" and ")
}

fn operand(o: &Operand) -> String {
    match o {
        Operand::Str(s) => s.to_string(),
        Operand::Json(v) => v.to_string(),
    }
}

fn list_match(m: &ListMatch) -> String {
    m.0.iter()
        .map(|op| match op {
            ListOp::Has(x) => format!("includes {}", operand(x)),
            ListOp::Is(x) => format!("is exactly {}", operand(x)),
            ListOp::Exclude(x) => format!("does not include {}", operand(x)),
        })
        .collect::<Vec<_>>()
        .join(" and ")
}

/// What the signed-in user has for a criterion about the user (their own data only).
fn have(c: &Crit, id: &Identity) -> Option<String> {
    let or_none = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    match c {
        Crit::User(_) => Some(id.user.clone()),
        Crit::Email(_) => Some(id.email.clone()),
        Crit::Domain(_) => Some(id.email.rsplit_once('@').map_or("", |(_, d)| d).to_string()),
        Crit::Claim {
            literal, dotted, ..
        } => {
            let values = id.claims.lookup_prepared(literal, dotted.as_deref());
            Some(or_none(
                values
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
            ))
        }
        Crit::Groups(_) => Some(or_none(id.groups.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppl::{Claims, NoHeaders};

    fn request<'a>(path: &'a str, session: Option<&'a Identity>) -> Request<'a> {
        Request {
            time: chrono::Utc::now(),
            method: "GET",
            host: "app.test",
            path,
            headers: &NoHeaders,
            ip: None,
            session,
            client_certificate: None,
        }
    }

    fn identity(roles: &[&str]) -> Identity {
        let claims = serde_json::json!({"https://example.com/roles": roles});
        Identity {
            user: "u1".into(),
            email: "v@example.com".into(),
            claims: Claims::from_json(&claims),
            groups: Vec::new(),
        }
    }

    #[test]
    fn a_deny_rule_is_named_by_what_it_matched() {
        let p = Policy::parse(
            "allow: {or: [{accept: true}]}\ndeny: {or: [{http_path: {starts_with: /admin}}]}",
        )
        .unwrap();
        assert_eq!(
            p.explain(&request("/admin/x", None)),
            vec!["A deny rule matched: the path starts with /admin."]
        );
        assert!(p.explain(&request("/ok", None)).is_empty());
    }

    #[test]
    fn a_failed_claim_says_what_is_needed_and_what_the_user_has() {
        let p = Policy::parse("allow: {and: [{claim/https://example.com/roles: admin}]}").unwrap();
        let id = identity(&["viewer"]);
        assert_eq!(
            p.explain(&request("/", Some(&id))),
            vec!["You need: claim https://example.com/roles includes admin. You have: viewer."]
        );
    }

    #[test]
    fn under_not_the_sentence_says_so() {
        let p = Policy::parse(
            "allow: {or: [{accept: true}]}\ndeny: {not: [{email: {ends_with: \"@example.com\"}}]}",
        )
        .unwrap();
        let mut id = identity(&[]);
        id.email = "x@other.test".into();
        assert_eq!(
            p.explain(&request("/", Some(&id))),
            vec!["A deny rule matched: it is not the case that your email ends with @example.com."]
        );
    }

    #[test]
    fn users_and_emails_named_in_the_policy_are_not_shown() {
        let p = Policy::parse(
            "allow: {or: [{email: {is: alice@example.com}}, {user: {in: [auth0|carol]}}]}",
        )
        .unwrap();
        let id = identity(&[]);
        let lines = p.explain(&request("/", Some(&id))).join("\n");
        assert!(
            !lines.contains("alice") && !lines.contains("carol"),
            "{lines}"
        );
        assert!(lines.contains("You have: v@example.com."), "{lines}");
    }

    #[test]
    fn no_allow_rule_says_nobody_is_allowed() {
        let p = Policy::deny_all();
        assert_eq!(
            p.explain(&request("/", None)),
            vec!["The route's policy allows nobody: it has no allow rule."]
        );
    }
}
