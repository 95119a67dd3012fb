//! From a positioned document tree to the compiled form, collecting every error of the
//! document (not only the first), each with the position of the offending key or value.
//!
//! Convention: an error about a key (unknown action, operator, criterion, matcher operator)
//! points at the key; an error about a value (wrong type, bad format) points at the value and
//! names the key it belongs to; a missing key points at the key of the object that lacks it.

use serde_json::Value as Json;

use super::PolicyError;
use super::eval::{CertMatch, Crit, Expr, ListMatch, ListOp, Op, Operand, StrMatch, StrOp};
use super::values;
use crate::source::{Node, Pos, Value};

/// Every criterion name, for messages and suggestions.
pub(crate) const CRITERIA: &[&str] = &[
    "accept",
    "reject",
    "authenticated_user",
    "user",
    "email",
    "domain",
    "claim",
    "groups",
    "http_method",
    "http_path",
    "cors_preflight",
    "source_ip",
    "client_certificate",
    "invalid_client_certificate",
    "date",
    "day_of_week",
    "time_of_day",
];

const STRING_OPS: &str = "is, not, starts_with, ends_with, contains, in, not_in";
const LIST_OPS: &str = "has, is, exclude";

#[derive(Default)]
pub(crate) struct Compiler {
    pub(crate) errors: Vec<PolicyError>,
}

/// The compiled actions of one document.
#[derive(Default)]
pub(crate) struct Actions {
    pub(crate) allow: Vec<Expr>,
    pub(crate) deny: Vec<Expr>,
}

impl Compiler {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(PolicyError {
            pos,
            message: message.into(),
        });
    }

    /// The policy, or every error sorted by position.
    pub(crate) fn finish(mut self, actions: Actions) -> Result<super::Policy, Vec<PolicyError>> {
        if self.errors.is_empty() {
            return Ok(super::Policy::new(actions));
        }
        sort_errors(&mut self.errors);
        Err(self.errors)
    }

    /// A document: one rule object or a list of them.
    pub(crate) fn document(&mut self, node: &Node, out: &mut Actions) {
        match &node.value {
            Value::Map(_) => self.rule(node, out),
            Value::Seq(rules) => {
                for rule in rules {
                    if rule.as_map().is_some() {
                        self.rule(rule, out);
                    } else {
                        self.error(
                            rule.pos,
                            format!(
                                "a rule must be a map of actions (allow, deny), found {}",
                                rule.kind()
                            ),
                        );
                    }
                }
            }
            _ => self.error(
                node.pos,
                format!(
                    "a policy must be a rule (a map of allow/deny) or a list of rules, found {}",
                    node.kind()
                ),
            ),
        }
    }

    /// A rule object: keys are actions.
    pub(crate) fn rule(&mut self, node: &Node, out: &mut Actions) {
        let Some(entries) = node.as_map() else {
            self.error(
                node.pos,
                format!(
                    "a rule must be a map of actions (allow, deny), found {}",
                    node.kind()
                ),
            );
            return;
        };
        for (key, value) in entries {
            let name = key.key_text();
            match name.as_str() {
                "allow" => self.action("allow", value, &mut out.allow),
                "deny" => self.action("deny", value, &mut out.deny),
                _ => self.error(
                    key.pos,
                    format!("unsupported action {name:?} (expected allow or deny)"),
                ),
            }
        }
    }

    /// An action body: keys are logical operators.
    fn action(&mut self, action: &str, node: &Node, out: &mut Vec<Expr>) {
        let Some(entries) = node.as_map() else {
            self.error(
                node.pos,
                format!(
                    "{action:?} needs a map of operators (and, or, not, nor), found {}",
                    node.kind()
                ),
            );
            return;
        };
        for (key, value) in entries {
            let name = key.key_text();
            match Op::from_name(&name) {
                Some(op) => {
                    if let Some(items) = self.criteria(&name, value) {
                        out.push(Expr::Op(op, items));
                    }
                }
                None => self.error(
                    key.pos,
                    format!(
                        "unsupported operator {name:?} in {action:?} (expected and, or, not or nor)"
                    ),
                ),
            }
        }
    }

    /// An operator's value: an array of criteria.
    fn criteria(&mut self, op: &str, node: &Node) -> Option<Box<[Expr]>> {
        let Some(items) = node.as_seq() else {
            self.error(
                node.pos,
                format!(
                    "operator {op:?} needs an array of criteria, found {}",
                    node.kind()
                ),
            );
            return None;
        };
        let before = self.errors.len();
        let compiled: Vec<Expr> = items.iter().filter_map(|c| self.criterion(c)).collect();
        (self.errors.len() == before).then(|| compiled.into_boxed_slice())
    }

    /// One criterion: a map with exactly one key, `NAME` or `NAME/SUBPATH`; or a nested
    /// operator.
    fn criterion(&mut self, node: &Node) -> Option<Expr> {
        let Some(entries) = node.as_map() else {
            self.error(
                node.pos,
                format!(
                    "a criterion must be a map with one key (such as `email: {{is: ...}}`), found {}",
                    node.kind()
                ),
            );
            return None;
        };
        match entries {
            [] => {
                self.error(
                    node.pos,
                    "a criterion must have exactly one key, found none",
                );
                None
            }
            [(key, value)] => self.criterion_entry(key, value),
            [(first, _), rest @ ..] => {
                let first = first.key_text();
                for (key, _) in rest {
                    self.error(
                        key.pos,
                        format!(
                            "criterion {:?} is in the same item as {first:?}: a criterion has exactly one key; give each its own list item",
                            key.key_text()
                        ),
                    );
                }
                // Still look inside every entry, so that all errors show at once.
                for (key, value) in entries {
                    self.criterion_entry(key, value);
                }
                None
            }
        }
    }

    fn criterion_entry(&mut self, key: &Node, value: &Node) -> Option<Expr> {
        let full = key.key_text();
        let (name, sub) = match full.split_once('/') {
            Some((n, s)) => (n, Some(s)),
            None => (full.as_str(), None),
        };
        if let Some(op) = Op::from_name(name) {
            if sub.is_some() {
                self.error(
                    key.pos,
                    format!("operator {name:?} takes no sub-path (found {full:?})"),
                );
                return None;
            }
            return self.criteria(name, value).map(|items| Expr::Op(op, items));
        }
        if !CRITERIA.contains(&name) {
            let hint = suggestion(name)
                .map(|s| format!(" (did you mean {s:?}?)"))
                .unwrap_or_default();
            self.error(key.pos, format!("unknown criterion {name:?}{hint}"));
            return None;
        }
        if name == "claim" {
            let Some(path) = sub.filter(|s| !s.is_empty()) else {
                self.error(
                    key.pos,
                    format!("criterion {full:?} needs a claim name: claim/NAME"),
                );
                return None;
            };
            let matcher = self.list_matcher(&full, value)?;
            return Some(Expr::Crit(Crit::Claim {
                literal: path.into(),
                dotted: path.contains('/').then(|| path.replace('/', ".").into()),
                matcher,
            }));
        }
        if sub.is_some() {
            self.error(
                key.pos,
                format!("criterion {name:?} takes no sub-path (found {full:?})"),
            );
            return None;
        }
        let crit = match name {
            "accept" => Crit::Accept,
            "reject" => Crit::Reject,
            "authenticated_user" => Crit::AuthenticatedUser,
            "cors_preflight" => Crit::CorsPreflight,
            "invalid_client_certificate" => Crit::InvalidClientCertificate,
            "user" => Crit::User(self.string_matcher(name, value)?),
            "email" => Crit::Email(self.string_matcher(name, value)?),
            "domain" => Crit::Domain(self.string_matcher(name, value)?),
            "http_method" => Crit::HttpMethod(self.string_matcher(name, value)?),
            "http_path" => Crit::HttpPath(self.string_matcher(name, value)?),
            "groups" => Crit::Groups(self.list_matcher(name, value)?),
            "source_ip" => Crit::SourceIp(self.source_ip(value)?),
            "client_certificate" => {
                Crit::ClientCertificate(Box::new(self.cert_matcher(key, value)?))
            }
            "date" => self.date(key, value)?,
            "day_of_week" => self.day_of_week(value)?,
            "time_of_day" => self.time_of_day(key, value)?,
            _ => {
                self.error(key.pos, format!("unknown criterion {name:?}"));
                return None;
            }
        };
        Some(Expr::Crit(crit))
    }

    /// The text of a scalar operand (string, number or boolean).
    fn scalar_text(node: &Node) -> Option<String> {
        match node.value {
            Value::String(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                Some(node.key_text())
            }
            _ => None,
        }
    }

    pub(crate) fn string_matcher(&mut self, crit: &str, node: &Node) -> Option<StrMatch> {
        if let Some(text) = Self::scalar_text(node) {
            return Some(StrMatch::is(&text));
        }
        let Some(entries) = node.as_map() else {
            self.error(
                node.pos,
                format!(
                    "{crit:?} needs a string or a map of operators ({STRING_OPS}), found {}",
                    node.kind()
                ),
            );
            return None;
        };
        if entries.is_empty() {
            self.error(
                node.pos,
                format!("{crit:?} has an empty matcher: give at least one of {STRING_OPS}"),
            );
            return None;
        }
        let before = self.errors.len();
        let mut ops = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let op = key.key_text();
            match op.as_str() {
                "is" | "not" | "starts_with" | "ends_with" | "contains" => {
                    let Some(text) = Self::scalar_text(value) else {
                        self.error(
                            value.pos,
                            format!("{crit:?}: {op:?} needs a string, found {}", value.kind()),
                        );
                        continue;
                    };
                    let text: Box<str> = text.into();
                    ops.push(match op.as_str() {
                        "is" => StrOp::Is(text),
                        "not" => StrOp::Not(text),
                        "starts_with" => StrOp::StartsWith(text),
                        "ends_with" => StrOp::EndsWith(text),
                        _ => StrOp::Contains(text),
                    });
                }
                "in" | "not_in" => {
                    let Some(items) = value.as_seq() else {
                        self.error(
                            value.pos,
                            format!("{crit:?}: {op:?} needs an array, found {}", value.kind()),
                        );
                        continue;
                    };
                    let mut list = Vec::with_capacity(items.len());
                    for item in items {
                        match Self::scalar_text(item) {
                            Some(text) => list.push(text.into_boxed_str()),
                            None => self.error(
                                item.pos,
                                format!(
                                    "{crit:?}: the items of {op:?} must be strings, found {}",
                                    item.kind()
                                ),
                            ),
                        }
                    }
                    let list = list.into_boxed_slice();
                    ops.push(if op == "in" {
                        StrOp::In(list)
                    } else {
                        StrOp::NotIn(list)
                    });
                }
                _ => {
                    let hint = if LIST_OPS.split(", ").any(|o| o == op) {
                        format!(" ({crit:?} is a string matcher: {STRING_OPS})")
                    } else {
                        format!(" (expected {STRING_OPS})")
                    };
                    self.error(
                        key.pos,
                        format!("unknown operator {op:?} for {crit:?}{hint}"),
                    );
                }
            }
        }
        (self.errors.len() == before).then(|| StrMatch(ops.into_boxed_slice()))
    }

    fn list_operand(node: &Node) -> Option<Operand> {
        match node.value {
            Value::String(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                Some(Operand::from_json(node.to_json()))
            }
            _ => None,
        }
    }

    fn list_matcher(&mut self, crit: &str, node: &Node) -> Option<ListMatch> {
        if let Some(operand) = Self::list_operand(node) {
            return Some(ListMatch(Box::new([ListOp::Has(operand)])));
        }
        let Some(entries) = node.as_map() else {
            self.error(
                node.pos,
                format!(
                    "{crit:?} needs a value or a map of operators ({LIST_OPS}), found {}",
                    node.kind()
                ),
            );
            return None;
        };
        if entries.is_empty() {
            self.error(
                node.pos,
                format!("{crit:?} has an empty matcher: give at least one of {LIST_OPS}"),
            );
            return None;
        }
        let before = self.errors.len();
        let mut ops = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let op = key.key_text();
            if !matches!(op.as_str(), "has" | "is" | "exclude") {
                let hint = if STRING_OPS.split(", ").any(|o| o == op) {
                    format!(" ({crit:?} is a string-list matcher: {LIST_OPS})")
                } else {
                    format!(" (expected {LIST_OPS})")
                };
                self.error(
                    key.pos,
                    format!("unknown operator {op:?} for {crit:?}{hint}"),
                );
                continue;
            }
            let Some(operand) = Self::list_operand(value) else {
                self.error(
                    value.pos,
                    format!(
                        "{crit:?}: {op:?} needs a string, number or boolean, found {}",
                        value.kind()
                    ),
                );
                continue;
            };
            ops.push(match op.as_str() {
                "has" => ListOp::Has(operand),
                "is" => ListOp::Is(operand),
                _ => ListOp::Exclude(operand),
            });
        }
        (self.errors.len() == before).then(|| ListMatch(ops.into_boxed_slice()))
    }

    /// A string or a non-empty list of strings, each checked by `parse`.
    fn string_list<T>(
        &mut self,
        what: &str,
        node: &Node,
        parse: impl Fn(&str) -> Option<T>,
        (explain, hint): (&str, &str),
    ) -> Option<Box<[T]>> {
        let items: Vec<&Node> = match &node.value {
            Value::String(_) => vec![node],
            Value::Seq(items) if !items.is_empty() => items.iter().collect(),
            Value::Seq(_) => {
                self.error(node.pos, format!("{what} needs at least one value"));
                return None;
            }
            _ => {
                self.error(
                    node.pos,
                    format!(
                        "{what} needs a string or a list of strings, found {}",
                        node.kind()
                    ),
                );
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match item.as_str() {
                Some(text) => match parse(text) {
                    Some(v) => out.push(v),
                    None => {
                        ok = false;
                        self.error(
                            item.pos,
                            format!("{what}: invalid {explain} {text:?}{hint}"),
                        );
                    }
                },
                None => {
                    ok = false;
                    let quote = if matches!(item.value, Value::Int(_) | Value::Float(_)) {
                        " (YAML read it as a number: put it in quotes)"
                    } else {
                        ""
                    };
                    self.error(
                        item.pos,
                        format!("{what}: expected a string, found {}{quote}", item.kind()),
                    );
                }
            }
        }
        ok.then(|| out.into_boxed_slice())
    }

    fn source_ip(&mut self, node: &Node) -> Option<Box<[ipnet::IpNet]>> {
        self.string_list(
            "\"source_ip\"",
            node,
            values::parse_net,
            (
                "IP address or CIDR",
                " (e.g. \"10.0.0.0/8\", \"2001:db8::/32\" or \"203.0.113.7\")",
            ),
        )
    }

    fn cert_matcher(&mut self, key: &Node, node: &Node) -> Option<CertMatch> {
        const KEYS: &str = "fingerprint, spki_hash, san_email, san_dns, san_uri";
        let Some(entries) = node.as_map() else {
            self.error(
                node.pos,
                format!(
                    "\"client_certificate\" needs a map of {KEYS}, found {}",
                    node.kind()
                ),
            );
            return None;
        };
        if entries.is_empty() {
            self.error(
                key.pos,
                format!("\"client_certificate\" needs at least one of {KEYS}"),
            );
            return None;
        }
        let before = self.errors.len();
        let mut m = CertMatch::default();
        for (k, v) in entries {
            let name = k.key_text();
            let what = format!("\"client_certificate.{name}\"");
            match name.as_str() {
                "fingerprint" => m.fingerprint = self.string_list(
                    &what,
                    v,
                    values::parse_fingerprint,
                    (
                        "SHA-256 fingerprint",
                        " (expected 64 lowercase hex digits or 32 colon-separated uppercase pairs)",
                    ),
                ),
                "spki_hash" => {
                    m.spki_hash = self.string_list(
                        &what,
                        v,
                        values::parse_spki_hash,
                        ("SPKI hash", " (expected the base64 of a SHA-256 digest)"),
                    )
                }
                "san_email" => m.san_email = self.string_matcher("client_certificate.san_email", v),
                "san_dns" => m.san_dns = self.string_matcher("client_certificate.san_dns", v),
                "san_uri" => m.san_uri = self.string_matcher("client_certificate.san_uri", v),
                _ => self.error(
                    k.pos,
                    format!("unknown key {name:?} in \"client_certificate\" (expected {KEYS})"),
                ),
            }
        }
        (self.errors.len() == before).then_some(m)
    }

    fn date(&mut self, key: &Node, node: &Node) -> Option<Crit> {
        let Some(entries) = node.as_map() else {
            self.error(
                node.pos,
                format!(
                    "\"date\" needs a map with after and/or before, found {}",
                    node.kind()
                ),
            );
            return None;
        };
        let before_count = self.errors.len();
        let (mut after, mut before) = (None, None);
        for (k, v) in entries {
            let name = k.key_text();
            let slot = match name.as_str() {
                "after" => &mut after,
                "before" => &mut before,
                _ => {
                    self.error(
                        k.pos,
                        format!("unknown key {name:?} in \"date\" (expected after, before)"),
                    );
                    continue;
                }
            };
            match v.as_str().and_then(values::parse_timestamp) {
                Some(t) => *slot = Some(t),
                None => self.error(
                    v.pos,
                    format!(
                        "\"date\": invalid {name:?} timestamp {} (expected RFC 3339, e.g. \"2026-01-31T09:00:00Z\")",
                        describe(v)
                    ),
                ),
            }
        }
        if self.errors.len() != before_count {
            return None;
        }
        if after.is_none() && before.is_none() {
            self.error(key.pos, "\"date\" needs after, before or both");
            return None;
        }
        Some(Crit::Date { after, before })
    }

    fn day_of_week(&mut self, node: &Node) -> Option<Crit> {
        let Some(text) = node.as_str() else {
            self.error(
                node.pos,
                format!(
                    "\"day_of_week\" needs a string such as \"mon-fri\" or \"mon,wed,fri\", found {}",
                    node.kind()
                ),
            );
            return None;
        };
        match values::parse_days(text) {
            Ok(days) => Some(Crit::DayOfWeek(days)),
            Err(e) => {
                self.error(node.pos, format!("\"day_of_week\": {e}"));
                None
            }
        }
    }

    fn time_of_day(&mut self, key: &Node, node: &Node) -> Option<Crit> {
        let Some(entries) = node.as_map() else {
            self.error(
                node.pos,
                format!(
                    "\"time_of_day\" needs a map with timezone, after and/or before, found {}",
                    node.kind()
                ),
            );
            return None;
        };
        let before_count = self.errors.len();
        let (mut tz, mut after, mut before) = (None, None, None);
        for (k, v) in entries {
            let name = k.key_text();
            match name.as_str() {
                "timezone" => match v.as_str().map(|s| s.parse::<chrono_tz::Tz>()) {
                    Some(Ok(zone)) => tz = Some(zone),
                    _ => self.error(
                        v.pos,
                        format!(
                            "\"time_of_day\": unknown time zone {} (expected an IANA name such as \"Europe/Paris\" or \"UTC\")",
                            describe(v)
                        ),
                    ),
                },
                "after" | "before" => {
                    let parsed = match v.value {
                        Value::String(ref s) => values::parse_time_of_day(s),
                        _ => None,
                    };
                    match parsed {
                        Some(t) if name == "after" => after = Some(t),
                        Some(t) => before = Some(t),
                        None => self.error(
                            v.pos,
                            format!(
                                "\"time_of_day\": invalid {name:?} time {} (expected e.g. \"3:04 PM\", \"3PM\", \"15:04\" or \"15:04:05\")",
                                describe(v)
                            ),
                        ),
                    }
                }
                _ => self.error(
                    k.pos,
                    format!(
                        "unknown key {name:?} in \"time_of_day\" (expected timezone, after, before)"
                    ),
                ),
            }
        }
        let has_tz = entries.iter().any(|(k, _)| k.as_str() == Some("timezone"));
        if !has_tz {
            self.error(
                key.pos,
                "\"time_of_day\" needs \"timezone\" (an IANA name such as \"Europe/Paris\")",
            );
        }
        let has_bound = entries
            .iter()
            .any(|(k, _)| matches!(k.as_str(), Some("after" | "before")));
        if !has_bound {
            self.error(key.pos, "\"time_of_day\" needs after, before or both");
        }
        if self.errors.len() != before_count {
            return None;
        }
        Some(Crit::TimeOfDay {
            tz: tz?,
            after,
            before,
        })
    }
}

/// A value quoted for a message: strings as `"text"`, other nodes by kind.
fn describe(node: &Node) -> String {
    match &node.value {
        Value::String(s) => format!("{s:?}"),
        _ => node.kind().to_string(),
    }
}

/// The known criterion closest to a misspelt one, if it is close.
fn suggestion(name: &str) -> Option<&'static str> {
    CRITERIA
        .iter()
        .map(|c| (distance(name, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance (short ASCII-ish strings only).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Legacy `allowed_idp_claims` values compare as JSON, whatever their shape.
pub(crate) fn claim_has(path: &str, value: &Json) -> Crit {
    Crit::Claim {
        literal: path.into(),
        dotted: path.contains('/').then(|| path.replace('/', ".").into()),
        matcher: ListMatch(Box::new([ListOp::Has(Operand::from_json(value.clone()))])),
    }
}

/// Sort errors by position (stable: errors at one position keep their order).
pub(crate) fn sort_errors(errors: &mut [PolicyError]) {
    errors.sort_by_key(|e| (e.pos.line, e.pos.col));
}
