//! Table-driven tests of PPL evaluation: every criterion, every matcher operator, every logical
//! operator, the decision order, claims, time zones, and the examples of the reference.

use chrono::{DateTime, Utc};
use portcullis::ppl::{
    Decision, Evaluation, Identity, LegacyOptions, Outcome, Policy, RequestContext,
};
use serde_json::{Value, json};

/// A Wednesday, 10:00 UTC (11:00 in Paris, 05:00 in New York).
const BASE_TIME: &str = "2026-11-25T10:00:00Z";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(BASE_TIME)
        .unwrap()
        .with_timezone(&Utc)
}

/// The base request context: Alice, signed in, `GET /admin?x=1` from 203.0.113.7.
fn base() -> Value {
    json!({
        "time": BASE_TIME,
        "http": {"method": "GET", "host": "app.example.com", "path": "/admin?x=1",
                 "headers": {}, "ip": "203.0.113.7"},
        "session": {
            "user": "auth0|123",
            "email": "alice@example.com",
            "claims": {
                "https://example.com/roles": ["admin", "dev"],
                "email_verified": true,
                "address": {"country": "FR"},
                "groups": ["claimgroup"],
                "level": 3,
                "pomerium.io/groups": ["ops"]
            },
            "groups": ["admin", "rol_X1"]
        }
    })
}

/// `base` with `overlay` merged in (objects deeply; `null` removes a key).
fn with(overlay: Value) -> Value {
    let mut v = base();
    merge(&mut v, overlay);
    v
}

fn merge(target: &mut Value, overlay: Value) {
    match (target, overlay) {
        (Value::Object(t), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (t, o) => *t = o,
    }
}

fn context(req: &Value) -> RequestContext {
    RequestContext::parse(&req.to_string(), now()).unwrap_or_else(|e| panic!("{e:?}"))
}

fn policy(yaml: &str) -> Policy {
    Policy::parse(yaml).unwrap_or_else(|e| panic!("{yaml}\n{e:?}"))
}

fn evaluate(yaml: &str, req: &Value) -> Evaluation {
    policy(yaml).evaluate(&context(req).request())
}

/// The outcome of one criterion (as the only item of an `and`).
fn criterion(crit: &str, req: &Value) -> Outcome {
    evaluate(&format!("allow:\n  and:\n    - {crit}\n"), req).allow
}

fn codes(o: &Outcome) -> Vec<&'static str> {
    o.reasons.codes().collect()
}

fn check_table(rows: &[(&str, Value, bool, &[&str])]) {
    let mut failures = Vec::new();
    for (i, (crit, req, value, reasons)) in rows.iter().enumerate() {
        let got = criterion(crit, req);
        if got.value != *value || codes(&got) != *reasons {
            failures.push(format!(
                "row {i}: `{crit}`: expected ({value}, {reasons:?}), got ({}, {:?})",
                got.value,
                codes(&got)
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn anonymous() -> Value {
    with(json!({"session": null}))
}

#[test]
fn simple_criteria() {
    let b = base;
    check_table(&[
        ("accept: true", b(), true, &["accept"]),
        ("accept: false", anonymous(), true, &["accept"]),
        ("reject: true", b(), false, &["reject"]),
        ("authenticated_user: true", b(), true, &["user-ok"]),
        (
            "authenticated_user: true",
            anonymous(),
            false,
            &["user-unauthenticated"],
        ),
        ("user: auth0|123", b(), true, &["user-ok"]),
        ("user: {is: auth0|999}", b(), false, &["user-unauthorized"]),
        (
            "user: auth0|123",
            anonymous(),
            false,
            &["user-unauthenticated"],
        ),
        ("domain: {is: example.com}", b(), true, &["domain-ok"]),
        ("domain: example.org", b(), false, &["domain-unauthorized"]),
        ("domain: {ends_with: .com}", b(), true, &["domain-ok"]),
        (
            "domain: example.com",
            anonymous(),
            false,
            &["user-unauthenticated"],
        ),
        ("http_method: GET", b(), true, &["http-method-ok"]),
        (
            "http_method: {in: [DELETE, PUT]}",
            b(),
            false,
            &["http-method-unauthorized"],
        ),
        ("http_method: GET", anonymous(), true, &["http-method-ok"]),
        ("http_path: /admin", b(), true, &["http-path-ok"]),
        (
            "http_path: {starts_with: /adm}",
            b(),
            true,
            &["http-path-ok"],
        ),
        (
            "http_path: {is: /admin?x=1}",
            b(),
            false,
            &["http-path-unauthorized"],
        ),
        ("http_path: /other", b(), false, &["http-path-unauthorized"]),
    ]);
}

#[test]
fn string_matcher_operators() {
    let b = base;
    check_table(&[
        ("email: alice@example.com", b(), true, &["email-ok"]),
        ("email: {is: alice@example.com}", b(), true, &["email-ok"]),
        (
            "email: {is: ALICE@example.com}",
            b(),
            false,
            &["email-unauthorized"],
        ),
        (
            "email: {not: alice@example.com}",
            b(),
            false,
            &["email-unauthorized"],
        ),
        ("email: {not: bob@example.com}", b(), true, &["email-ok"]),
        ("email: {starts_with: alice}", b(), true, &["email-ok"]),
        (
            "email: {starts_with: bob}",
            b(),
            false,
            &["email-unauthorized"],
        ),
        (
            "email: {ends_with: '@example.com'}",
            b(),
            true,
            &["email-ok"],
        ),
        (
            "email: {ends_with: '@example.org'}",
            b(),
            false,
            &["email-unauthorized"],
        ),
        ("email: {contains: 'ce@ex'}", b(), true, &["email-ok"]),
        (
            "email: {contains: 'bob'}",
            b(),
            false,
            &["email-unauthorized"],
        ),
        (
            "email: {in: [x@y.z, alice@example.com]}",
            b(),
            true,
            &["email-ok"],
        ),
        ("email: {in: [x@y.z]}", b(), false, &["email-unauthorized"]),
        ("email: {in: []}", b(), false, &["email-unauthorized"]),
        ("email: {not_in: [x@y.z]}", b(), true, &["email-ok"]),
        (
            "email: {not_in: [alice@example.com]}",
            b(),
            false,
            &["email-unauthorized"],
        ),
        // All operators of one matcher must hold.
        (
            "email: {starts_with: alice, ends_with: .com}",
            b(),
            true,
            &["email-ok"],
        ),
        (
            "email: {starts_with: alice, ends_with: .org}",
            b(),
            false,
            &["email-unauthorized"],
        ),
        // Bare numbers and booleans mean `is` on their text.
        (
            "http_path: 5",
            with(json!({"http": {"path": "5"}})),
            true,
            &["http-path-ok"],
        ),
        (
            "http_path: true",
            with(json!({"http": {"path": "true"}})),
            true,
            &["http-path-ok"],
        ),
    ]);
}

#[test]
fn claims_and_string_list_matcher() {
    let b = base;
    check_table(&[
        // Literal key with slashes (the Auth0 namespaced claim).
        (
            "claim/https://example.com/roles: admin",
            b(),
            true,
            &["claim-ok"],
        ),
        (
            "claim/https://example.com/roles: {has: dev}",
            b(),
            true,
            &["claim-ok"],
        ),
        (
            "claim/https://example.com/roles: {has: ops}",
            b(),
            false,
            &["claim-unauthorized"],
        ),
        // `is`: exactly one element, equal.
        (
            "claim/https://example.com/roles: {is: admin}",
            b(),
            false,
            &["claim-unauthorized"],
        ),
        ("claim/address/country: {is: FR}", b(), true, &["claim-ok"]),
        (
            "claim/address/country: {is: DE}",
            b(),
            false,
            &["claim-unauthorized"],
        ),
        (
            "claim/https://example.com/roles: {exclude: ops}",
            b(),
            true,
            &["claim-ok"],
        ),
        (
            "claim/https://example.com/roles: {exclude: dev}",
            b(),
            false,
            &["claim-unauthorized"],
        ),
        (
            "claim/https://example.com/roles: {has: admin, exclude: dev}",
            b(),
            false,
            &["claim-unauthorized"],
        ),
        ("claim/pomerium.io/groups: ops", b(), true, &["claim-ok"]),
        // Nesting read through `/` when no literal key exists.
        ("claim/address/country: FR", b(), true, &["claim-ok"]),
        ("claim/address.country: FR", b(), true, &["claim-ok"]),
        // JSON comparison: a boolean is not its text.
        ("claim/email_verified: true", b(), true, &["claim-ok"]),
        (
            "claim/email_verified: 'true'",
            b(),
            false,
            &["claim-unauthorized"],
        ),
        ("claim/level: 3", b(), true, &["claim-ok"]),
        ("claim/level: 3.0", b(), true, &["claim-ok"]),
        ("claim/level: '3'", b(), false, &["claim-unauthorized"]),
        // A missing claim is an empty list.
        ("claim/missing: x", b(), false, &["claim-unauthorized"]),
        ("claim/missing: {exclude: x}", b(), true, &["claim-ok"]),
        (
            "claim/missing: {is: x}",
            b(),
            false,
            &["claim-unauthorized"],
        ),
        (
            "claim/https://example.com/roles: admin",
            anonymous(),
            false,
            &["user-unauthenticated"],
        ),
        // Groups: the directory's, else the `groups` claim.
        ("groups: admin", b(), true, &["groups-ok"]),
        ("groups: {has: rol_X1}", b(), true, &["groups-ok"]),
        ("groups: claimgroup", b(), false, &["groups-unauthorized"]),
        (
            "groups: {exclude: admin}",
            b(),
            false,
            &["groups-unauthorized"],
        ),
        (
            "groups: claimgroup",
            with(json!({"session": {"groups": []}})),
            true,
            &["groups-ok"],
        ),
        (
            "groups: {is: claimgroup}",
            with(json!({"session": {"groups": []}})),
            true,
            &["groups-ok"],
        ),
        (
            "groups: admin",
            anonymous(),
            false,
            &["user-unauthenticated"],
        ),
    ]);
}

#[test]
fn literal_claim_key_wins_over_nesting() {
    let req = with(json!({"session": {"claims": {"a/b": "literal", "a": {"b": "nested"}}}}));
    assert!(criterion("claim/a/b: literal", &req).value);
    assert!(!criterion("claim/a/b: nested", &req).value);
    assert!(criterion("claim/a.b: nested", &req).value);
}

#[test]
fn request_criteria() {
    let preflight = json!({"http": {"method": "OPTIONS", "headers": {
        "access-control-request-method": "POST", "ORIGIN": "https://x.example"}}});
    check_table(&[
        (
            "cors_preflight: true",
            with(preflight.clone()),
            true,
            &["cors-request"],
        ),
        (
            "cors_preflight: true",
            with(json!({"http": {"method": "OPTIONS", "headers": {"Origin": "https://x"}}})),
            false,
            &["non-cors-request"],
        ),
        (
            "cors_preflight: true",
            with(
                json!({"http": {"method": "OPTIONS", "headers": {"Access-Control-Request-Method": "GET"}}}),
            ),
            false,
            &["non-cors-request"],
        ),
        (
            "cors_preflight: true",
            with(
                json!({"http": {"headers": {"Origin": "a", "Access-Control-Request-Method": "GET"}}}),
            ),
            false,
            &["non-cors-request"],
        ),
        ("source_ip: 203.0.113.0/24", base(), true, &["source-ip-ok"]),
        ("source_ip: 203.0.113.7", base(), true, &["source-ip-ok"]),
        (
            "source_ip: [10.0.0.0/8, 203.0.113.7/32]",
            base(),
            true,
            &["source-ip-ok"],
        ),
        (
            "source_ip: 10.0.0.0/8",
            base(),
            false,
            &["source-ip-unauthorized"],
        ),
        (
            "source_ip: 203.0.113.8",
            base(),
            false,
            &["source-ip-unauthorized"],
        ),
        (
            "source_ip: 0.0.0.0/0",
            with(json!({"http": {"ip": null}})),
            false,
            &["source-ip-unauthorized"],
        ),
        (
            "source_ip: 2001:db8::/32",
            with(json!({"http": {"ip": "2001:db8::1"}})),
            true,
            &["source-ip-ok"],
        ),
        (
            "source_ip: 2001:db8::1",
            with(json!({"http": {"ip": "2001:db8::1"}})),
            true,
            &["source-ip-ok"],
        ),
        (
            "source_ip: 2001:db9::/32",
            with(json!({"http": {"ip": "2001:db8::1"}})),
            false,
            &["source-ip-unauthorized"],
        ),
        (
            "source_ip: 203.0.113.0/24",
            with(json!({"http": {"ip": "2001:db8::1"}})),
            false,
            &["source-ip-unauthorized"],
        ),
        (
            "source_ip: 192.0.2.0/24",
            with(json!({"http": {"ip": "::ffff:192.0.2.9"}})),
            true,
            &["source-ip-ok"],
        ),
        (
            "client_certificate: {san_dns: x}",
            base(),
            false,
            &["client-certificate-unauthorized"],
        ),
        (
            "invalid_client_certificate: true",
            base(),
            true,
            &["client-certificate-required"],
        ),
        (
            "invalid_client_certificate: true",
            with(json!({"client_certificate": {"presented": false}})),
            true,
            &["client-certificate-required"],
        ),
    ]);
}

fn at(time: &str) -> Value {
    with(json!({ "time": time }))
}

#[test]
fn date_criterion() {
    check_table(&[
        (
            "date: {after: 2026-01-01T00:00:00Z}",
            base(),
            true,
            &["date-ok"],
        ),
        ("date: {after: '2026-01-01'}", base(), true, &["date-ok"]),
        (
            "date: {after: 2027-01-01T00:00:00Z}",
            base(),
            false,
            &["date-unauthorized"],
        ),
        (
            "date: {before: 2027-01-01T00:00:00Z}",
            base(),
            true,
            &["date-ok"],
        ),
        (
            "date: {before: 2026-01-01T00:00:00Z}",
            base(),
            false,
            &["date-unauthorized"],
        ),
        // `after` is strictly after, `before` strictly before.
        (
            "date: {after: 2026-11-25T10:00:00Z}",
            base(),
            false,
            &["date-unauthorized"],
        ),
        (
            "date: {after: 2026-11-25T09:59:59Z}",
            base(),
            true,
            &["date-ok"],
        ),
        (
            "date: {before: 2026-11-25T10:00:00Z}",
            base(),
            false,
            &["date-unauthorized"],
        ),
        (
            "date: {after: 2026-11-01T00:00:00Z, before: 2026-12-01T00:00:00Z}",
            base(),
            true,
            &["date-ok"],
        ),
        (
            "date: {after: 2026-11-26T00:00:00Z, before: 2026-12-01T00:00:00Z}",
            base(),
            false,
            &["date-unauthorized"],
        ),
        // Offsets; no offset is UTC.
        (
            "date: {after: '2026-11-25T11:30:00+02:00'}",
            base(),
            true,
            &["date-ok"],
        ),
        (
            "date: {after: '2026-11-25T10:30:00'}",
            base(),
            false,
            &["date-unauthorized"],
        ),
        (
            "date: {after: '2026-11-25T09:30:00'}",
            base(),
            true,
            &["date-ok"],
        ),
        (
            "date: {after: 2026-01-01T00:00:00Z}",
            anonymous(),
            true,
            &["date-ok"],
        ),
    ]);
}

#[test]
fn day_of_week_criterion() {
    // 2026-11-25 is a Wednesday; 2026-11-29 a Sunday; 2026-11-27 a Friday.
    check_table(&[
        ("day_of_week: '*'", base(), true, &["day-of-week-ok"]),
        ("day_of_week: wed", base(), true, &["day-of-week-ok"]),
        ("day_of_week: Wednesday", base(), true, &["day-of-week-ok"]),
        ("day_of_week: WED", base(), true, &["day-of-week-ok"]),
        (
            "day_of_week: thu",
            base(),
            false,
            &["day-of-week-unauthorized"],
        ),
        (
            "day_of_week: mon,wed,fri",
            base(),
            true,
            &["day-of-week-ok"],
        ),
        (
            "day_of_week: mon,tue,thu",
            base(),
            false,
            &["day-of-week-unauthorized"],
        ),
        ("day_of_week: mon-fri", base(), true, &["day-of-week-ok"]),
        (
            "day_of_week: mon-fri",
            at("2026-11-29T10:00:00Z"),
            false,
            &["day-of-week-unauthorized"],
        ),
        // Ranges wrap around the week end.
        (
            "day_of_week: fri-mon",
            at("2026-11-29T10:00:00Z"),
            true,
            &["day-of-week-ok"],
        ),
        (
            "day_of_week: fri-mon",
            at("2026-11-27T10:00:00Z"),
            true,
            &["day-of-week-ok"],
        ),
        (
            "day_of_week: fri-mon",
            at("2026-11-30T10:00:00Z"),
            true,
            &["day-of-week-ok"],
        ),
        (
            "day_of_week: fri-mon",
            base(),
            false,
            &["day-of-week-unauthorized"],
        ),
        (
            "day_of_week: sat-sun",
            at("2026-11-29T23:59:59Z"),
            true,
            &["day-of-week-ok"],
        ),
        // Evaluated in UTC: 23:30 UTC on Wednesday is Wednesday.
        (
            "day_of_week: wed",
            at("2026-11-25T23:30:00Z"),
            true,
            &["day-of-week-ok"],
        ),
    ]);
}

#[test]
fn time_of_day_criterion() {
    check_table(&[
        // 10:00 UTC is 11:00 in Paris (CET) and 05:00 in New York (EST).
        (
            "time_of_day: {timezone: Europe/Paris, after: '10:30', before: '12:00'}",
            base(),
            true,
            &["time-of-day-ok"],
        ),
        (
            "time_of_day: {timezone: UTC, after: '10:30', before: '12:00'}",
            base(),
            false,
            &["time-of-day-unauthorized"],
        ),
        (
            "time_of_day: {timezone: America/New_York, after: '9 AM', before: '5:00 PM'}",
            base(),
            false,
            &["time-of-day-unauthorized"],
        ),
        (
            "time_of_day: {timezone: America/New_York, after: '4AM', before: '5:30AM'}",
            base(),
            true,
            &["time-of-day-ok"],
        ),
        // Daylight saving: 13:30 UTC is 9:30 EDT in July, 8:30 EST in December.
        (
            "time_of_day: {timezone: America/New_York, after: '9:00', before: '17:00'}",
            at("2026-07-01T13:30:00Z"),
            true,
            &["time-of-day-ok"],
        ),
        (
            "time_of_day: {timezone: America/New_York, after: '9:00', before: '17:00'}",
            at("2026-12-01T13:30:00Z"),
            false,
            &["time-of-day-unauthorized"],
        ),
        // Half-hour zone: 10:00 UTC is 15:30 in Kolkata.
        (
            "time_of_day: {timezone: Asia/Kolkata, after: '15:30:00', before: '15:30:01'}",
            base(),
            true,
            &["time-of-day-ok"],
        ),
        // `after` inclusive, `before` exclusive.
        (
            "time_of_day: {timezone: UTC, after: '10:00'}",
            base(),
            true,
            &["time-of-day-ok"],
        ),
        (
            "time_of_day: {timezone: UTC, before: '10:00'}",
            base(),
            false,
            &["time-of-day-unauthorized"],
        ),
        (
            "time_of_day: {timezone: UTC, before: '10:00:00.000000001'}",
            base(),
            true,
            &["time-of-day-ok"],
        ),
        // Across midnight.
        (
            "time_of_day: {timezone: UTC, after: '22:00', before: '6:00'}",
            at("2026-11-25T23:00:00Z"),
            true,
            &["time-of-day-ok"],
        ),
        (
            "time_of_day: {timezone: UTC, after: '22:00', before: '6:00'}",
            at("2026-11-25T05:59:59Z"),
            true,
            &["time-of-day-ok"],
        ),
        (
            "time_of_day: {timezone: UTC, after: '22:00', before: '6:00'}",
            at("2026-11-25T00:00:00Z"),
            true,
            &["time-of-day-ok"],
        ),
        (
            "time_of_day: {timezone: UTC, after: '22:00', before: '6:00'}",
            at("2026-11-25T06:00:00Z"),
            false,
            &["time-of-day-unauthorized"],
        ),
        (
            "time_of_day: {timezone: UTC, after: '10 PM', before: '6 AM'}",
            base(),
            false,
            &["time-of-day-unauthorized"],
        ),
        // Across midnight in a zone: 23:30 Tokyo = 14:30 UTC.
        (
            "time_of_day: {timezone: Asia/Tokyo, after: '23:00', before: '1:00'}",
            at("2026-11-25T14:30:00Z"),
            true,
            &["time-of-day-ok"],
        ),
        (
            "time_of_day: {timezone: Asia/Tokyo, after: '23:00', before: '1:00'}",
            at("2026-11-25T16:30:00Z"),
            false,
            &["time-of-day-unauthorized"],
        ),
        (
            "time_of_day: {timezone: UTC, after: '12 AM', before: '12 PM'}",
            base(),
            true,
            &["time-of-day-ok"],
        ),
        (
            "time_of_day: {timezone: UTC, after: '12 PM', before: '11:59 PM'}",
            base(),
            false,
            &["time-of-day-unauthorized"],
        ),
    ]);
}

fn accept_reject(op: &str, items: &[&str]) -> Outcome {
    let list: String = items.iter().map(|c| format!("\n    - {c}")).collect();
    evaluate(
        &format!(
            "allow:\n  {op}:{}{}",
            if items.is_empty() { " []" } else { "" },
            list
        ),
        &base(),
    )
    .allow
}

#[test]
fn logical_operators() {
    const A: &str = "accept: 1";
    const R: &str = "reject: 1";
    const GET: &str = "http_method: GET";
    const PUT: &str = "http_method: PUT";
    let rows: &[(&str, &[&str], bool, &[&str])] = &[
        ("and", &[A, GET], true, &["accept", "http-method-ok"]),
        ("and", &[A, R], false, &["reject"]),
        (
            "and",
            &[R, PUT],
            false,
            &["http-method-unauthorized", "reject"],
        ),
        ("and", &[], true, &[]),
        ("or", &[R, A], true, &["accept"]),
        ("or", &[A, GET], true, &["accept", "http-method-ok"]),
        (
            "or",
            &[R, PUT],
            false,
            &["http-method-unauthorized", "reject"],
        ),
        ("or", &[], false, &[]),
        // not: none is true; reasons kept from the inverted sub-results.
        (
            "not",
            &[R, PUT],
            true,
            &["http-method-unauthorized", "reject"],
        ),
        ("not", &[A, R], false, &["accept"]),
        ("not", &[A, GET], false, &["accept", "http-method-ok"]),
        ("not", &[], true, &[]),
        // nor: at least one is false.
        ("nor", &[A, R], true, &["reject"]),
        (
            "nor",
            &[R, PUT],
            true,
            &["http-method-unauthorized", "reject"],
        ),
        ("nor", &[A, GET], false, &["accept", "http-method-ok"]),
        ("nor", &[], false, &[]),
    ];
    for (op, items, value, reasons) in rows {
        let got = accept_reject(op, items);
        assert_eq!(
            (got.value, codes(&got)),
            (*value, reasons.to_vec()),
            "{op} {items:?}"
        );
    }
}

#[test]
fn nested_operators() {
    let p = "allow:\n  or:\n    - reject: 1\n    - and:\n        - accept: 1\n        - not:\n            - http_method: PUT\n";
    let e = evaluate(p, &base());
    assert_eq!(e.decision, Decision::Allow);
    assert_eq!(codes(&e.allow), ["accept", "http-method-unauthorized"]);
    let p =
        "allow:\n  and:\n    - nor:\n        - accept: 1\n        - or:\n            - reject: 1\n";
    let e = evaluate(p, &base());
    assert!(e.allow.value);
    assert_eq!(codes(&e.allow), ["reject"]);
}

#[test]
fn operators_and_rules_are_ored() {
    // Several operators under one action.
    let e = evaluate(
        "allow:\n  and: [reject: 1]\n  or: [http_method: GET]\n",
        &base(),
    );
    assert_eq!(e.decision, Decision::Allow);
    assert_eq!(codes(&e.allow), ["http-method-ok"]);
    // Several rule objects.
    let p = "- allow: {and: [reject: 1]}\n- allow: {or: [domain: example.com]}\n- deny: {or: [http_method: PUT]}\n";
    let e = evaluate(p, &base());
    assert_eq!(e.decision, Decision::Allow);
    assert_eq!(codes(&e.allow), ["domain-ok"]);
    assert_eq!(codes(&e.deny), ["http-method-unauthorized"]);
    let e = evaluate(p, &with(json!({"http": {"method": "PUT"}})));
    assert_eq!(e.decision, Decision::Deny);
    assert_eq!(codes(&e.deny), ["http-method-ok"]);
    assert_eq!(e.reasons().codes().collect::<Vec<_>>(), ["http-method-ok"]);
}

#[test]
fn decision_order() {
    let rows: &[(&str, Value, Decision)] = &[
        // 1. user-unauthenticated anywhere forces a login...
        (
            "allow: {and: [domain: example.com]}",
            anonymous(),
            Decision::Login,
        ),
        (
            "allow: {or: [accept: 1]}\ndeny: {or: [email: x@y.z]}",
            anonymous(),
            Decision::Login,
        ),
        (
            "allow: {and: [accept: 1, email: x@y.z]}",
            anonymous(),
            Decision::Login,
        ),
        // ...but not when the criterion needing a session did not decide.
        (
            "allow: {or: [accept: 1, email: x@y.z]}",
            anonymous(),
            Decision::Allow,
        ),
        (
            "allow: {or: [http_method: GET]}\ndeny: {or: [http_method: PUT, email: x@y.z]}",
            with(json!({"session": null, "http": {"method": "PUT"}})),
            Decision::Deny,
        ),
        // A false `and` keeps the reasons of every false item, so the session criterion shows.
        (
            "allow: {or: [http_method: GET]}\ndeny: {and: [http_method: PUT, email: x@y.z]}",
            anonymous(),
            Decision::Login,
        ),
        (
            "allow: {and: [reject: 1, email: x@y.z]}",
            anonymous(),
            Decision::Login,
        ),
        ("allow: {not: [email: x@y.z]}", anonymous(), Decision::Login),
        // 2. deny wins over allow.
        (
            "allow: {or: [accept: 1]}\ndeny: {or: [http_method: GET]}",
            base(),
            Decision::Deny,
        ),
        // 3. allow.
        (
            "allow: {or: [accept: 1]}\ndeny: {or: [http_method: PUT]}",
            base(),
            Decision::Allow,
        ),
        // 4. neither: deny.
        ("allow: {or: [reject: 1]}", base(), Decision::Deny),
        ("deny: {or: [reject: 1]}", base(), Decision::Deny),
        ("[]", base(), Decision::Deny),
        ("allow: {}", base(), Decision::Deny),
    ];
    for (p, req, decision) in rows {
        assert_eq!(evaluate(p, req).decision, *decision, "{p}");
    }
    // Deny by allow's reasons when nothing allowed.
    let e = evaluate("allow: {or: [domain: example.org]}", &base());
    assert_eq!(e.decision, Decision::Deny);
    assert_eq!(
        e.reasons().codes().collect::<Vec<_>>(),
        ["domain-unauthorized"]
    );
}

#[test]
fn output_shape() {
    let e = evaluate("allow:\n  and:\n    - domain: {is: example.com}\n", &base());
    assert_eq!(
        serde_json::to_string(&e).unwrap(),
        r#"{"decision":"allow","allow":{"value":true,"reasons":["domain-ok"]},"deny":{"value":false,"reasons":[]}}"#
    );
}

#[test]
fn reference_examples() {
    let roles = "allow:\n  and:\n    - claim/https://example.com/roles: admin\n";
    assert_eq!(evaluate(roles, &base()).decision, Decision::Allow);
    let not_admin = with(json!({"session": {"claims": {"https://example.com/roles": ["dev"]}}}));
    assert_eq!(evaluate(roles, &not_admin).decision, Decision::Deny);
    assert_eq!(evaluate(roles, &anonymous()).decision, Decision::Login);

    let domain = "allow:\n  and:\n    - domain: {is: example.com}\ndeny:\n  or:\n    - email: {is: contractor@example.com}\n    - http_method: {in: [DELETE, PUT]}\n";
    let rows = [
        (base(), Decision::Allow),
        (with(json!({"http": {"method": "DELETE"}})), Decision::Deny),
        (with(json!({"http": {"method": "PUT"}})), Decision::Deny),
        (
            with(json!({"session": {"email": "contractor@example.com"}})),
            Decision::Deny,
        ),
        (
            with(json!({"session": {"email": "bob@other.org"}})),
            Decision::Deny,
        ),
        (anonymous(), Decision::Login),
    ];
    for (req, decision) in rows {
        assert_eq!(evaluate(domain, &req).decision, decision, "{req}");
    }

    let nested = "allow:\n  or:\n    - groups: {has: admin}\n    - and:\n        - domain: {is: example.com}\n        - http_method: {in: [GET, HEAD]}\n";
    let bob = |method: &str, groups: Value| {
        with(
            json!({"http": {"method": method}, "session": {"email": "bob@example.com", "groups": groups, "claims": {"groups": []}}}),
        )
    };
    assert_eq!(
        evaluate(nested, &bob("POST", json!(["admin"]))).decision,
        Decision::Allow
    );
    assert_eq!(
        evaluate(nested, &bob("HEAD", json!([]))).decision,
        Decision::Allow
    );
    assert_eq!(
        evaluate(nested, &bob("POST", json!([]))).decision,
        Decision::Deny
    );
    let outsider = with(json!({"session": {"email": "eve@other.org", "groups": ["dev"]}}));
    assert_eq!(evaluate(nested, &outsider).decision, Decision::Deny);
}

#[test]
fn json_policies() {
    let p = r#"{"allow": {"and": [{"claim/https://example.com/roles": {"has": "admin"}}]},
               "deny": {"or": [{"http_method": {"in": ["DELETE"]}}]}}"#;
    assert_eq!(evaluate(p, &base()).decision, Decision::Allow);
    assert_eq!(
        evaluate(
            &format!("[{p}]"),
            &with(json!({"http": {"method": "DELETE"}}))
        )
        .decision,
        Decision::Deny
    );
}

#[test]
fn legacy_options() {
    assert!(Policy::from_legacy(&LegacyOptions::default()).is_none());
    let opts = |v: Value| -> LegacyOptions { serde_json::from_value(v).unwrap() };
    let decide = |o: &LegacyOptions, req: &Value| {
        Policy::from_legacy(o)
            .unwrap()
            .evaluate(&context(req).request())
            .decision
    };
    let public = opts(json!({"allow_public_unauthenticated_access": true}));
    assert_eq!(decide(&public, &anonymous()), Decision::Allow);
    let any = opts(json!({"allow_any_authenticated_user": true}));
    assert_eq!(decide(&any, &base()), Decision::Allow);
    assert_eq!(decide(&any, &anonymous()), Decision::Login);
    let cors = opts(json!({"cors_allow_preflight": true}));
    let preflight = with(
        json!({"session": null, "http": {"method": "OPTIONS", "headers": {"Origin": "o", "Access-Control-Request-Method": "GET"}}}),
    );
    assert_eq!(decide(&cors, &preflight), Decision::Allow);
    assert_eq!(decide(&cors, &base()), Decision::Deny);
    let domains = opts(json!({"allowed_domains": ["other.org", "example.com"]}));
    assert_eq!(decide(&domains, &base()), Decision::Allow);
    assert_eq!(
        decide(&domains, &with(json!({"session": {"email": "a@b.c"}}))),
        Decision::Deny
    );
    let by_email = opts(json!({"allowed_users": ["alice@example.com"]}));
    assert_eq!(decide(&by_email, &base()), Decision::Allow);
    let by_id = opts(json!({"allowed_users": ["auth0|123"]}));
    assert_eq!(decide(&by_id, &base()), Decision::Allow);
    assert_eq!(
        decide(&by_id, &with(json!({"session": {"user": "auth0|9"}}))),
        Decision::Deny
    );
    let claims = opts(
        json!({"allowed_idp_claims": {"https://example.com/roles": ["root", "dev"], "email_verified": [true]}}),
    );
    assert_eq!(decide(&claims, &base()), Decision::Allow);
    let claims = opts(json!({"allowed_idp_claims": {"address/country": ["DE"]}}));
    assert_eq!(decide(&claims, &base()), Decision::Deny);
    let claims = opts(json!({"allowed_idp_claims": {"address/country": ["FR"]}}));
    assert_eq!(decide(&claims, &base()), Decision::Allow);
    // Legacy options are OR-ed with the route's policy.
    let route = policy("allow: {and: [domain: example.org]}");
    let merged = Policy::merge([route.clone(), Policy::from_legacy(&by_email).unwrap()]);
    assert_eq!(
        route.evaluate(&context(&base()).request()).decision,
        Decision::Deny
    );
    assert_eq!(
        merged.evaluate(&context(&base()).request()).decision,
        Decision::Allow
    );
}

#[test]
fn merge_deny_all_and_session_hint() {
    let a = policy("allow: {or: [http_method: GET]}");
    let b = policy("deny: {or: [http_path: {starts_with: /admin}]}");
    let m = Policy::merge([a.clone(), b]);
    assert_eq!(
        a.evaluate(&context(&base()).request()).decision,
        Decision::Allow
    );
    assert_eq!(
        m.evaluate(&context(&base()).request()).decision,
        Decision::Deny
    );
    assert_eq!(
        Policy::deny_all()
            .evaluate(&context(&anonymous()).request())
            .decision,
        Decision::Deny
    );
    assert_eq!(
        Policy::merge([])
            .evaluate(&context(&base()).request())
            .decision,
        Decision::Deny
    );
    assert!(!a.needs_session());
    assert!(policy("allow: {or: [accept: 1, {and: [{not: [claim/x: y]}]}]}").needs_session());
    assert!(policy("deny: {or: [groups: a]}").needs_session());
    assert!(!policy("allow: {or: [time_of_day: {timezone: UTC, after: '9:00'}, day_of_week: '*', date: {after: '2020-01-01'}]}").needs_session());
    assert!(!Policy::deny_all().needs_session());
}

/// The data plane reads the clock only for a policy whose `reads_time` says it looks at the
/// time: every time criterion must say so, wherever it sits, and a policy that says it does not
/// must decide the same at any time.
#[test]
fn only_policies_with_time_criteria_read_the_time() {
    let timed = [
        "allow: {or: [date: {after: '2020-01-01'}]}",
        "allow: {or: [day_of_week: mon-fri]}",
        "allow: {or: [time_of_day: {timezone: UTC, after: '9:00'}]}",
        "allow: {and: [accept: 1, {not: [day_of_week: sun]}]}",
        "allow: {or: [accept: 1]}\ndeny: {or: [{nor: [time_of_day: {timezone: UTC, before: '18:00'}]}]}",
    ];
    for yaml in timed {
        assert!(policy(yaml).reads_time(), "{yaml}");
    }
    assert!(Policy::merge([policy(timed[1]), policy("allow: {or: [accept: 1]}")]).reads_time());
    let untimed = [
        "allow: {or: [accept: 1]}",
        "allow: {or: [reject: 1]}",
        "allow: {and: [authenticated_user: 1, claim/https://example.com/roles: admin]}",
        "allow: {or: [email: {ends_with: '@example.com'}, domain: {is: example.com}, user: {is: 'auth0|123'}]}",
        "allow: {or: [groups: {has: admin}, http_method: GET, http_path: {starts_with: /admin}]}",
        "allow: {or: [source_ip: 203.0.113.0/24, cors_preflight: 1, invalid_client_certificate: 1]}",
        "allow: {or: [accept: 1]}\ndeny: {or: [{not: [http_method: GET]}]}",
    ];
    let (signed_in, anon) = (context(&base()), context(&anonymous()));
    for yaml in untimed {
        let p = policy(yaml);
        assert!(!p.reads_time(), "{yaml}");
        for ctx in [&signed_in, &anon] {
            let at = ctx.request();
            let mut epoch = ctx.request();
            epoch.time = DateTime::UNIX_EPOCH;
            let (a, b) = (p.evaluate(&at), p.evaluate(&epoch));
            assert_eq!(
                (a.decision, a.reasons()),
                (b.decision, b.reasons()),
                "{yaml}"
            );
        }
    }
    // The one time criterion's decision does move with the time (the comparison above can fail).
    let p = policy(timed[0]);
    let mut epoch = signed_in.request();
    epoch.time = DateTime::UNIX_EPOCH;
    assert_ne!(
        p.evaluate(&signed_in.request()).decision,
        p.evaluate(&epoch).decision
    );
}

#[test]
fn identity_roundtrips_through_serde() {
    let ctx = context(&base());
    let id: &Identity = ctx.session.as_ref().unwrap();
    let text = serde_json::to_string(id).unwrap();
    let back: Identity = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, id);
    assert_eq!(back.claims.lookup("address/country"), [json!("FR")]);
}

#[test]
fn http_header_map_requests() {
    use portcullis::ppl::Request;
    let mut headers = http::HeaderMap::new();
    headers.insert("origin", "https://x".parse().unwrap());
    headers.insert("access-control-request-method", "PUT".parse().unwrap());
    let req = Request {
        method: "OPTIONS",
        headers: &headers,
        ..Request::new(now())
    };
    let p = policy("allow: {or: [cors_preflight: true]}");
    assert_eq!(p.evaluate(&req).decision, Decision::Allow);
}
