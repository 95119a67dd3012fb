//! The compiled form of a policy and its evaluation.
//!
//! Everything that can be prepared when the policy is parsed is prepared then: strings are
//! boxed, CIDRs, timestamps, times of day, day sets, time zones and fingerprints are parsed.
//! Evaluation is comparisons and bit operations only; it never allocates.

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use ipnet::IpNet;
use serde_json::Value;

use super::cert::ClientCertificate;
use super::claims::json_eq;
use super::reason::{Reason, Reasons};
use super::request::{Identity, Request};
use super::values::{canonical_ip, nanos_of_day};
use super::{Outcome, Policy};

/// A logical operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    And,
    Or,
    Not,
    Nor,
}

impl Op {
    pub(crate) fn from_name(name: &str) -> Option<Op> {
        match name {
            "and" => Some(Op::And),
            "or" => Some(Op::Or),
            "not" => Some(Op::Not),
            "nor" => Some(Op::Nor),
            _ => None,
        }
    }
}

/// An operator over sub-expressions, or one criterion.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Op(Op, Box<[Expr]>),
    Crit(Crit),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Crit {
    Accept,
    Reject,
    AuthenticatedUser,
    User(StrMatch),
    Email(StrMatch),
    Domain(StrMatch),
    Claim {
        /// The sub-path as written (a literal key).
        literal: Box<str>,
        /// The sub-path with `/` read as nesting, when it has a `/`.
        dotted: Option<Box<str>>,
        matcher: ListMatch,
    },
    Groups(ListMatch),
    HttpMethod(StrMatch),
    HttpPath(StrMatch),
    CorsPreflight,
    SourceIp(Box<[IpNet]>),
    ClientCertificate(Box<CertMatch>),
    InvalidClientCertificate,
    Date {
        after: Option<DateTime<Utc>>,
        before: Option<DateTime<Utc>>,
    },
    /// Bit 0 = Monday.
    DayOfWeek(u8),
    TimeOfDay {
        tz: Tz,
        /// Nanoseconds since local midnight.
        after: Option<u64>,
        before: Option<u64>,
    },
}

/// String matcher: all operators must hold.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StrMatch(pub(crate) Box<[StrOp]>);

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum StrOp {
    Is(Box<str>),
    Not(Box<str>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Contains(Box<str>),
    In(Box<[Box<str>]>),
    NotIn(Box<[Box<str>]>),
}

/// String-list matcher: all operators must hold.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ListMatch(pub(crate) Box<[ListOp]>);

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ListOp {
    Has(Operand),
    Is(Operand),
    Exclude(Operand),
}

/// A value a list element is compared with: strings kept apart so that comparing with group
/// names or string claims is a plain `&str` comparison.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Operand {
    Str(Box<str>),
    Json(Value),
}

impl Operand {
    pub(crate) fn from_json(value: Value) -> Operand {
        match value {
            Value::String(s) => Operand::Str(s.into_boxed_str()),
            other => Operand::Json(other),
        }
    }
}

/// Certificate matcher: every given part must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct CertMatch {
    pub(crate) fingerprint: Option<Box<[[u8; 32]]>>,
    pub(crate) spki_hash: Option<Box<[[u8; 32]]>>,
    pub(crate) san_email: Option<StrMatch>,
    pub(crate) san_dns: Option<StrMatch>,
    pub(crate) san_uri: Option<StrMatch>,
}

impl StrMatch {
    pub(crate) fn is(value: &str) -> StrMatch {
        StrMatch(Box::new([StrOp::Is(value.into())]))
    }

    pub(crate) fn matches(&self, s: &str) -> bool {
        self.0.iter().all(|op| match op {
            StrOp::Is(x) => s == &**x,
            StrOp::Not(x) => s != &**x,
            StrOp::StartsWith(x) => s.starts_with(&**x),
            StrOp::EndsWith(x) => s.ends_with(&**x),
            StrOp::Contains(x) => s.contains(&**x),
            StrOp::In(xs) => xs.iter().any(|x| s == &**x),
            StrOp::NotIn(xs) => !xs.iter().any(|x| s == &**x),
        })
    }
}

/// An element of a list a [`ListMatch`] looks at: a claim value or a group name.
trait Element {
    fn equals(&self, operand: &Operand) -> bool;
}

impl Element for Value {
    fn equals(&self, operand: &Operand) -> bool {
        match (self, operand) {
            (Value::String(s), Operand::Str(x)) => s.as_str() == &**x,
            (_, Operand::Str(_)) => false,
            (v, Operand::Json(x)) => json_eq(v, x),
        }
    }
}

impl Element for String {
    fn equals(&self, operand: &Operand) -> bool {
        matches!(operand, Operand::Str(x) if self.as_str() == &**x)
    }
}

impl ListMatch {
    fn matches<E: Element>(&self, list: &[E]) -> bool {
        self.0.iter().all(|op| match op {
            ListOp::Has(x) => list.iter().any(|e| e.equals(x)),
            ListOp::Is(x) => list.len() == 1 && list[0].equals(x),
            ListOp::Exclude(x) => !list.iter().any(|e| e.equals(x)),
        })
    }
}

impl CertMatch {
    fn matches(&self, cert: &ClientCertificate) -> bool {
        let any = |m: &Option<StrMatch>, names: &[String]| match m {
            None => true,
            Some(m) => names.iter().any(|n| m.matches(n)),
        };
        self.fingerprint
            .as_ref()
            .is_none_or(|fps| fps.contains(&cert.fingerprint))
            && self
                .spki_hash
                .as_ref()
                .is_none_or(|hs| hs.contains(&cert.spki_hash))
            && any(&self.san_email, &cert.san_email)
            && any(&self.san_dns, &cert.san_dns)
            && any(&self.san_uri, &cert.san_uri)
    }
}

#[inline]
fn outcome(value: bool, ok: Reason, fail: Reason) -> Outcome {
    Outcome {
        value,
        reasons: Reasons::one(if value { ok } else { fail }),
    }
}

/// A criterion about the signed-in user: `user-unauthenticated` without a session.
#[inline]
fn about_user(
    req: &Request<'_>,
    ok: Reason,
    fail: Reason,
    test: impl FnOnce(&Identity) -> bool,
) -> Outcome {
    match req.session {
        None => Outcome {
            value: false,
            reasons: Reasons::one(Reason::UserUnauthenticated),
        },
        Some(id) => outcome(test(id), ok, fail),
    }
}

fn trusted_certificate<'a>(req: &Request<'a>) -> Option<&'a ClientCertificate> {
    req.client_certificate.filter(|c| c.is_trusted())
}

impl Crit {
    pub(crate) fn needs_session(&self) -> bool {
        matches!(
            self,
            Crit::AuthenticatedUser
                | Crit::User(_)
                | Crit::Email(_)
                | Crit::Domain(_)
                | Crit::Claim { .. }
                | Crit::Groups(_)
        )
    }

    /// Whether the criterion looks at the request's time. Every variant is named (no `_`), so
    /// that a new criterion has to say whether it does: a policy that does not is evaluated
    /// without reading the clock.
    pub(crate) fn reads_time(&self) -> bool {
        match self {
            Crit::Date { .. } | Crit::DayOfWeek(_) | Crit::TimeOfDay { .. } => true,
            Crit::Accept
            | Crit::Reject
            | Crit::AuthenticatedUser
            | Crit::User(_)
            | Crit::Email(_)
            | Crit::Domain(_)
            | Crit::Claim { .. }
            | Crit::Groups(_)
            | Crit::HttpMethod(_)
            | Crit::HttpPath(_)
            | Crit::CorsPreflight
            | Crit::SourceIp(_)
            | Crit::ClientCertificate(_)
            | Crit::InvalidClientCertificate => false,
        }
    }

    fn evaluate(&self, req: &Request<'_>) -> Outcome {
        use Reason as R;
        match self {
            Crit::Accept => Outcome {
                value: true,
                reasons: Reasons::one(R::Accept),
            },
            Crit::Reject => Outcome {
                value: false,
                reasons: Reasons::one(R::Reject),
            },
            Crit::AuthenticatedUser => about_user(req, R::UserOk, R::UserUnauthorized, |_| true),
            Crit::User(m) => about_user(req, R::UserOk, R::UserUnauthorized, |id| {
                m.matches(&id.user)
            }),
            Crit::Email(m) => about_user(req, R::EmailOk, R::EmailUnauthorized, |id| {
                m.matches(&id.email)
            }),
            Crit::Domain(m) => about_user(req, R::DomainOk, R::DomainUnauthorized, |id| {
                let domain = id.email.rsplit_once('@').map_or("", |(_, d)| d);
                m.matches(domain)
            }),
            Crit::Claim {
                literal,
                dotted,
                matcher,
            } => about_user(req, R::ClaimOk, R::ClaimUnauthorized, |id| {
                matcher.matches(id.claims.lookup_prepared(literal, dotted.as_deref()))
            }),
            Crit::Groups(m) => about_user(req, R::GroupsOk, R::GroupsUnauthorized, |id| {
                if id.groups.is_empty() {
                    m.matches(id.claims.lookup_prepared("groups", None))
                } else {
                    m.matches(&id.groups)
                }
            }),
            Crit::HttpMethod(m) => outcome(
                m.matches(req.method),
                R::HttpMethodOk,
                R::HttpMethodUnauthorized,
            ),
            Crit::HttpPath(m) => {
                let path = req.path.split_once('?').map_or(req.path, |(p, _)| p);
                outcome(m.matches(path), R::HttpPathOk, R::HttpPathUnauthorized)
            }
            Crit::CorsPreflight => {
                let yes = req.method == "OPTIONS"
                    && req
                        .headers
                        .header("Access-Control-Request-Method")
                        .is_some()
                    && req.headers.header("Origin").is_some();
                outcome(yes, R::CorsRequest, R::NonCorsRequest)
            }
            Crit::SourceIp(nets) => {
                let yes = req
                    .ip
                    .map(canonical_ip)
                    .is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)));
                outcome(yes, R::SourceIpOk, R::SourceIpUnauthorized)
            }
            Crit::ClientCertificate(m) => {
                let yes = trusted_certificate(req).is_some_and(|c| m.matches(c));
                outcome(
                    yes,
                    R::ClientCertificateOk,
                    R::ClientCertificateUnauthorized,
                )
            }
            Crit::InvalidClientCertificate => match req.client_certificate {
                Some(c) if c.presented && c.valid => Outcome {
                    value: false,
                    reasons: Reasons::one(R::ValidClientCertificate),
                },
                Some(c) if c.presented => Outcome {
                    value: true,
                    reasons: Reasons::one(R::InvalidClientCertificate),
                },
                _ => Outcome {
                    value: true,
                    reasons: Reasons::one(R::ClientCertificateRequired),
                },
            },
            Crit::Date { after, before } => {
                let yes = after.is_none_or(|a| req.time > a) && before.is_none_or(|b| req.time < b);
                outcome(yes, R::DateOk, R::DateUnauthorized)
            }
            Crit::DayOfWeek(days) => {
                let day = req.time.weekday().num_days_from_monday();
                outcome(
                    days & (1 << day) != 0,
                    R::DayOfWeekOk,
                    R::DayOfWeekUnauthorized,
                )
            }
            Crit::TimeOfDay { tz, after, before } => {
                let now = nanos_of_day(req.time.with_timezone(tz).time());
                let yes = match (after, before) {
                    (Some(a), Some(b)) if a <= b => *a <= now && now < *b,
                    (Some(a), Some(b)) => now >= *a || now < *b,
                    (Some(a), None) => now >= *a,
                    (None, Some(b)) => now < *b,
                    (None, None) => true,
                };
                outcome(yes, R::TimeOfDayOk, R::TimeOfDayUnauthorized)
            }
        }
    }
}

impl Expr {
    /// Whether any criterion of the expression, however deep, satisfies `f`.
    pub(crate) fn any_crit(&self, f: &impl Fn(&Crit) -> bool) -> bool {
        match self {
            Expr::Op(_, items) => items.iter().any(|e| e.any_crit(f)),
            Expr::Crit(c) => f(c),
        }
    }

    pub(crate) fn evaluate(&self, req: &Request<'_>) -> Outcome {
        match self {
            Expr::Op(op, items) => combine(*op, items.iter().map(|e| e.evaluate(req))),
            Expr::Crit(c) => c.evaluate(req),
        }
    }
}

/// Merge sub-results with an operator. `and`/`or` keep the reasons of the sub-results whose
/// value equals the merged value; `not`/`nor` are `and`/`or` over inverted sub-results
/// (value flipped, reasons kept). Every sub-result is computed, so reasons are complete.
pub(crate) fn combine(op: Op, results: impl Iterator<Item = Outcome>) -> Outcome {
    let invert = matches!(op, Op::Not | Op::Nor);
    let all = matches!(op, Op::And | Op::Not);
    let (mut when_true, mut when_false) = (Reasons::EMPTY, Reasons::EMPTY);
    let (mut any_true, mut any_false) = (false, false);
    for r in results {
        if r.value != invert {
            any_true = true;
            when_true |= r.reasons;
        } else {
            any_false = true;
            when_false |= r.reasons;
        }
    }
    let value = if all { !any_false } else { any_true };
    Outcome {
        value,
        reasons: if value { when_true } else { when_false },
    }
}

impl Policy {
    /// An action: its operators (across all rule objects) OR-ed.
    pub(crate) fn action(exprs: &[Expr], req: &Request<'_>) -> Outcome {
        combine(Op::Or, exprs.iter().map(|e| e.evaluate(req)))
    }
}
