//! Policy evaluation speed. The target: a typical route policy (a claim, a domain and a
//! method, with a deny) against a signed-in request in well under 1 µs.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::ppl::{Claims, Identity, Policy, Request};
use serde_json::json;

const TYPICAL: &str = "\
allow:
  and:
    - claim/https://example.com/roles: admin
    - domain: {is: example.com}
    - http_method: {in: [GET, HEAD, POST]}
deny:
  or:
    - email: {is: contractor@example.com}
";

const TIMED: &str = "\
allow:
  and:
    - groups: {has: staff}
    - day_of_week: mon-fri
    - time_of_day: {timezone: Europe/Paris, after: '8:30 AM', before: '7 PM'}
    - source_ip: [10.0.0.0/8, 203.0.113.0/24, '2001:db8::/32']
";

fn bench(c: &mut Criterion) {
    let identity = Identity {
        user: "auth0|123".to_string(),
        email: "alice@example.com".to_string(),
        claims: Claims::from_json(&json!({
            "sub": "auth0|123",
            "email": "alice@example.com",
            "email_verified": true,
            "https://example.com/roles": ["dev", "admin"],
            "name": "Alice",
            "nickname": "alice",
            "picture": "https://example.com/alice.png",
            "updated_at": "2026-11-01T00:00:00Z",
        })),
        groups: vec!["staff".to_string(), "rol_X1".to_string()],
    };
    let headers = http::HeaderMap::new();
    let time: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default();
    let req = Request {
        time,
        method: "GET",
        host: "app.example.com",
        path: "/dashboard",
        headers: &headers,
        ip: "203.0.113.7".parse().ok(),
        session: Some(&identity),
        client_certificate: None,
    };
    let typical = Policy::parse(TYPICAL).unwrap_or_else(|e| panic!("{e:?}"));
    let timed = Policy::parse(TIMED).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        typical.evaluate(&req).decision,
        portcullis::ppl::Decision::Allow
    );
    assert_eq!(
        timed.evaluate(&req).decision,
        portcullis::ppl::Decision::Allow
    );

    c.bench_function("evaluate typical route policy (signed in)", |b| {
        b.iter(|| black_box(&typical).evaluate(black_box(&req)))
    });
    let anonymous = Request {
        session: None,
        ..req
    };
    c.bench_function("evaluate typical route policy (anonymous)", |b| {
        b.iter(|| black_box(&typical).evaluate(black_box(&anonymous)))
    });
    c.bench_function("evaluate groups + day + time zone + CIDR", |b| {
        b.iter(|| black_box(&timed).evaluate(black_box(&req)))
    });
    c.bench_function("parse and compile typical route policy", |b| {
        b.iter(|| Policy::parse(black_box(TYPICAL)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
