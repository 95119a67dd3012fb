//! Property tests: the algebra of the operators, merging, time windows, and a parser that
//! never panics.

use std::net::{IpAddr, Ipv4Addr};

use chrono::{DateTime, TimeZone, Utc};
use portcullis::ppl::{Claims, HeaderList, Identity, Outcome, Policy, Request};
use proptest::prelude::*;
use serde_json::json;

/// Criteria whose results vary with the request below.
const POOL: &[&str] = &[
    "{accept: 1}",
    "{reject: 1}",
    "{authenticated_user: 1}",
    "{http_method: GET}",
    "{http_method: {in: [PUT, DELETE]}}",
    "{http_path: {starts_with: /api}}",
    "{email: {ends_with: '@example.com'}}",
    "{domain: example.org}",
    "{claim/roles: admin}",
    "{groups: {exclude: admin}}",
    "{source_ip: 10.0.0.0/8}",
    "{day_of_week: mon-fri}",
    "{time_of_day: {timezone: Europe/Paris, after: '22:00', before: '6:00'}}",
    "{date: {after: '2026-06-01'}}",
    "{cors_preflight: 1}",
    "{invalid_client_certificate: 1}",
];

#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    path: &'static str,
    ip: Option<u32>,
    time: i64,
    session: Option<Identity>,
    preflight: bool,
}

fn request() -> impl Strategy<Value = Req> {
    let identity = (
        prop::sample::select(vec![
            "alice@example.com",
            "bob@example.org",
            "eve@other.net",
        ]),
        prop::collection::vec(prop::sample::select(vec!["admin", "dev"]), 0..3),
        prop::collection::vec(prop::sample::select(vec!["admin", "ops"]), 0..3),
    )
        .prop_map(|(email, roles, groups)| Identity {
            user: format!("auth0|{email}"),
            email: email.to_string(),
            claims: Claims::from_json(&json!({ "roles": roles })),
            groups: groups.into_iter().map(str::to_string).collect(),
        });
    (
        prop::sample::select(vec!["GET", "PUT", "DELETE", "OPTIONS"]),
        prop::sample::select(vec!["/", "/api/x", "/admin"]),
        prop::option::of(prop::sample::select(vec![
            0x0a00_0001u32,
            0xcb00_7107,
            0x0aff_ffff,
        ])),
        1_767_225_600i64..1_798_761_600, // 2026
        prop::option::of(identity),
        any::<bool>(),
    )
        .prop_map(|(method, path, ip, time, session, preflight)| Req {
            method,
            path,
            ip,
            time,
            session,
            preflight,
        })
}

fn run(policy: &Policy, r: &Req) -> (Outcome, Outcome) {
    let headers = if r.preflight {
        HeaderList::new()
            .with("Origin", "https://o")
            .with("Access-Control-Request-Method", "PUT")
    } else {
        HeaderList::new()
    };
    let req = Request {
        time: Utc.timestamp_opt(r.time, 0).single().unwrap_or_default(),
        method: r.method,
        host: "app.example.com",
        path: r.path,
        headers: &headers,
        ip: r.ip.map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        session: r.session.as_ref(),
        client_certificate: None,
    };
    let e = policy.evaluate(&req);
    (e.allow, e.deny)
}

fn allow(op: &str, items: &[String]) -> Policy {
    Policy::parse(&format!("allow: {{{op}: [{}]}}", items.join(", "))).unwrap()
}

fn criteria() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(POOL).prop_map(str::to_string), 0..6)
}

fn negated(items: &[String]) -> Vec<String> {
    items.iter().map(|c| format!("{{not: [{c}]}}")).collect()
}

proptest! {
    #[test]
    fn not_is_and_over_negations(items in criteria(), r in request()) {
        let lhs = run(&allow("not", &items), &r).0;
        let rhs = run(&allow("and", &negated(&items)), &r).0;
        prop_assert_eq!(lhs, rhs);
    }

    #[test]
    fn nor_is_or_over_negations(items in criteria(), r in request()) {
        let lhs = run(&allow("nor", &items), &r).0;
        let rhs = run(&allow("or", &negated(&items)), &r).0;
        prop_assert_eq!(lhs, rhs);
    }

    #[test]
    fn not_and_nor_complement_or_and_and(items in criteria(), r in request()) {
        prop_assert_eq!(run(&allow("not", &items), &r).0.value, !run(&allow("or", &items), &r).0.value);
        prop_assert_eq!(run(&allow("nor", &items), &r).0.value, !run(&allow("and", &items), &r).0.value);
    }

    #[test]
    fn single_criteria_keep_their_outcome(item in prop::sample::select(POOL), r in request()) {
        let items = [item.to_string()];
        let and = run(&allow("and", &items), &r).0;
        prop_assert_eq!(and, run(&allow("or", &items), &r).0);
        let not = run(&allow("not", &items), &r).0;
        prop_assert_eq!((not.value, not.reasons), (!and.value, and.reasons));
    }

    #[test]
    fn merging_is_or(a in criteria(), b in criteria(), c in criteria(), r in request()) {
        let p1 = Policy::parse(&format!("allow: {{or: [{}]}}\ndeny: {{and: [{}]}}", a.join(", "), c.join(", "))).unwrap();
        let p2 = Policy::parse(&format!("allow: {{and: [{}]}}", b.join(", "))).unwrap();
        let (a1, d1) = run(&p1, &r);
        let (a2, d2) = run(&p2, &r);
        let (am, dm) = run(&Policy::merge([p1, p2]), &r);
        prop_assert_eq!(am.value, a1.value || a2.value);
        prop_assert_eq!(dm.value, d1.value || d2.value);
        // The reasons are those of the sides that agree with the merged value.
        let expect = |x: Outcome, y: Outcome, v: bool| {
            let mut s = portcullis::ppl::Reasons::EMPTY;
            if x.value == v { s |= x.reasons; }
            if y.value == v { s |= y.reasons; }
            s
        };
        prop_assert_eq!(am.reasons, expect(a1, a2, am.value));
        // The same as one document with two rule objects.
        let doc = Policy::parse(&format!(
            "- allow: {{or: [{}]}}\n  deny: {{and: [{}]}}\n- allow: {{and: [{}]}}",
            a.join(", "), c.join(", "), b.join(", ")
        )).unwrap();
        prop_assert_eq!(run(&doc, &r), (am, dm));
    }

    #[test]
    fn time_windows_partition_the_day(a in 0u32..24 * 60, b in 0u32..24 * 60, r in request()) {
        prop_assume!(a != b);
        let t = |m: u32| format!("'{}:{:02}'", m / 60, m % 60);
        let window = |x: u32, y: u32| Policy::parse(&format!(
            "allow: {{and: [{{time_of_day: {{timezone: America/Sao_Paulo, after: {}, before: {}}}}}]}}",
            t(x), t(y)
        )).unwrap();
        let inside = run(&window(a, b), &r).0.value;
        let outside = run(&window(b, a), &r).0.value;
        prop_assert!(inside != outside);
    }

    #[test]
    fn day_ranges_and_their_complement(from in 0usize..7, to in 0usize..7, r in request()) {
        const D: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        prop_assume!((to + 1) % 7 != from);
        let p = |x: usize, y: usize| Policy::parse(&format!("allow: {{or: [{{day_of_week: {}-{}}}]}}", D[x], D[y])).unwrap();
        let range = run(&p(from, to), &r).0.value;
        let rest = run(&p((to + 1) % 7, (from + 6) % 7), &r).0.value;
        prop_assert!(range != rest);
    }

    #[test]
    fn parser_never_panics(text in "[a-z_/:{}\\[\\], \n'\"0-9.@-]{0,80}") {
        let _ = Policy::parse(&text);
    }

    #[test]
    fn claims_lookup_finds_nested_values(keys in prop::collection::vec("[a-z]{1,5}", 1..4), v in any::<i32>()) {
        let mut value = json!(v);
        for k in keys.iter().rev() {
            value = json!({ k.clone(): value });
        }
        let claims = Claims::from_json(&value);
        prop_assert_eq!(claims.lookup(&keys.join("/")), &[json!(v)][..]);
        prop_assert_eq!(claims.lookup(&keys.join(".")), &[json!(v)][..]);
    }
}

#[test]
fn request_time_helper_is_in_2026() {
    let t: DateTime<Utc> = Utc.timestamp_opt(1_767_225_600, 0).single().unwrap();
    assert_eq!(t.to_rfc3339(), "2026-01-01T00:00:00+00:00");
}
