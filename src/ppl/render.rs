//! A compiled policy written back as PPL (in JSON syntax, which PPL accepts), for operators:
//! one rule object per top-level operator, so merged policies and legacy options show as what
//! they became. Parsing the text again gives an equal policy (tested).

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::Policy;
use super::eval::{CertMatch, Crit, Expr, ListMatch, ListOp, Op, Operand, StrMatch, StrOp};

impl Policy {
    /// The policy as PPL rule objects (`[{"allow": {"and": [...]}}, ...]`).
    pub fn to_ppl(&self) -> Value {
        let mut rules = Vec::new();
        for (action, exprs) in [("allow", &self.0.allow), ("deny", &self.0.deny)] {
            for e in exprs.iter() {
                let (op, items) = match e {
                    Expr::Op(op, items) => (op_name(*op), items.iter().map(expr).collect()),
                    crit => ("or", vec![expr(crit)]),
                };
                rules.push(json!({ action: { op: items } }));
            }
        }
        Value::Array(rules)
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::And => "and",
        Op::Or => "or",
        Op::Not => "not",
        Op::Nor => "nor",
    }
}

fn one(key: impl Into<String>, value: Value) -> Value {
    let mut m = Map::new();
    m.insert(key.into(), value);
    Value::Object(m)
}

fn expr(e: &Expr) -> Value {
    match e {
        Expr::Op(op, items) => one(op_name(*op), items.iter().map(expr).collect()),
        Expr::Crit(c) => crit(c),
    }
}

fn crit(c: &Crit) -> Value {
    match c {
        Crit::Accept => one("accept", true.into()),
        Crit::Reject => one("reject", true.into()),
        Crit::AuthenticatedUser => one("authenticated_user", true.into()),
        Crit::User(m) => one("user", str_match(m)),
        Crit::Email(m) => one("email", str_match(m)),
        Crit::Domain(m) => one("domain", str_match(m)),
        Crit::Claim {
            literal, matcher, ..
        } => one(format!("claim/{literal}"), list_match(matcher)),
        Crit::Groups(m) => one("groups", list_match(m)),
        Crit::HttpMethod(m) => one("http_method", str_match(m)),
        Crit::HttpPath(m) => one("http_path", str_match(m)),
        Crit::CorsPreflight => one("cors_preflight", true.into()),
        Crit::SourceIp(nets) => one(
            "source_ip",
            nets.iter().map(|n| Value::from(n.to_string())).collect(),
        ),
        Crit::ClientCertificate(m) => one("client_certificate", cert_match(m)),
        Crit::InvalidClientCertificate => one("invalid_client_certificate", true.into()),
        Crit::Date { after, before } => {
            let mut m = Map::new();
            if let Some(a) = after {
                m.insert("after".into(), a.to_rfc3339().into());
            }
            if let Some(b) = before {
                m.insert("before".into(), b.to_rfc3339().into());
            }
            one("date", Value::Object(m))
        }
        Crit::DayOfWeek(days) => one("day_of_week", day_names(*days).join(",").into()),
        Crit::TimeOfDay { tz, after, before } => {
            let clock = |n: u64| {
                let s = n / 1_000_000_000;
                format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
            };
            let mut m = Map::new();
            m.insert("timezone".into(), tz.name().into());
            if let Some(a) = after {
                m.insert("after".into(), clock(*a).into());
            }
            if let Some(b) = before {
                m.insert("before".into(), clock(*b).into());
            }
            one("time_of_day", Value::Object(m))
        }
    }
}

/// The days of a day set (bit 0 = Monday), as PPL spells them.
pub(super) fn day_names(days: u8) -> Vec<&'static str> {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    (0..7)
        .filter(|d| days & (1 << d) != 0)
        .map(|d| NAMES[d])
        .collect()
}

fn str_match(m: &StrMatch) -> Value {
    let list = |xs: &[Box<str>]| xs.iter().map(|x| Value::from(&**x)).collect();
    let mut out = Map::new();
    for op in m.0.iter() {
        let (k, v) = match op {
            StrOp::Is(x) => ("is", Value::from(&**x)),
            StrOp::Not(x) => ("not", Value::from(&**x)),
            StrOp::StartsWith(x) => ("starts_with", Value::from(&**x)),
            StrOp::EndsWith(x) => ("ends_with", Value::from(&**x)),
            StrOp::Contains(x) => ("contains", Value::from(&**x)),
            StrOp::In(xs) => ("in", list(xs)),
            StrOp::NotIn(xs) => ("not_in", list(xs)),
        };
        out.insert(k.into(), v);
    }
    Value::Object(out)
}

fn list_match(m: &ListMatch) -> Value {
    let operand = |o: &Operand| match o {
        Operand::Str(s) => Value::from(&**s),
        Operand::Json(v) => v.clone(),
    };
    let mut out = Map::new();
    for op in m.0.iter() {
        let (k, v) = match op {
            ListOp::Has(x) => ("has", operand(x)),
            ListOp::Is(x) => ("is", operand(x)),
            ListOp::Exclude(x) => ("exclude", operand(x)),
        };
        out.insert(k.into(), v);
    }
    Value::Object(out)
}

fn cert_match(m: &CertMatch) -> Value {
    let mut out = Map::new();
    if let Some(fps) = &m.fingerprint {
        out.insert(
            "fingerprint".into(),
            fps.iter().map(|f| Value::from(hex::encode(f))).collect(),
        );
    }
    if let Some(hs) = &m.spki_hash {
        let b64 = base64::engine::general_purpose::STANDARD;
        out.insert(
            "spki_hash".into(),
            hs.iter().map(|h| Value::from(b64.encode(h))).collect(),
        );
    }
    for (k, v) in [
        ("san_email", &m.san_email),
        ("san_dns", &m.san_dns),
        ("san_uri", &m.san_uri),
    ] {
        if let Some(v) = v {
            out.insert(k.into(), str_match(v));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_and_parsing_again_gives_the_same_policy() {
        let text = r#"
- allow:
    and:
      - claim/https://example.com/roles: admin
      - email: {ends_with: "@example.com", not: "x@example.com"}
      - or:
          - groups: {has: ops}
          - domain: {in: [a.test, b.test]}
      - not:
          - http_method: {in: [DELETE]}
      - source_ip: [10.0.0.0/8]
      - day_of_week: mon-fri
      - time_of_day: {timezone: Europe/Berlin, after: "08:00", before: "18:30:15"}
      - date: {after: "2026-01-01T00:00:00Z"}
  deny:
    or:
      - http_path: {starts_with: /admin}
      - reject: true
- allow:
    or:
      - accept: true
      - authenticated_user: true
      - cors_preflight: true
"#;
        let p = Policy::parse(text).unwrap();
        let ppl = p.to_ppl().to_string();
        let again = Policy::parse(&ppl).unwrap_or_else(|e| panic!("{ppl}: {e:?}"));
        assert!(again == p, "{ppl}");
    }
}
