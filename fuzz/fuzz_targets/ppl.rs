#![no_main]
//! PPL: parse and compile any text; when it compiles, evaluate it against one fixed request
//! (signed in, with headers, an address and claims) and check the decision is coherent.

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use portcullis::ppl::{Claims, Decision, HeaderList, Identity, Policy, Request};

fuzz_target!(|text: &str| {
    let Ok(policy) = Policy::parse(text) else {
        return;
    };
    let mut claims = Claims::new();
    claims.insert("groups", vec!["admin".into(), "dev".into()]);
    claims.insert("email_verified", vec![true.into()]);
    let identity = Identity {
        user: "auth0|alice".into(),
        email: "alice@example.com".into(),
        claims,
        groups: vec!["admin".into()],
    };
    let headers = HeaderList::new()
        .with("Origin", "https://app.example.com")
        .with("Access-Control-Request-Method", "GET")
        .with("Authorization", "Bearer x");
    let time = Utc.with_ymd_and_hms(2026, 3, 4, 10, 30, 0).unwrap();
    let signed_in = Request {
        method: "OPTIONS",
        host: "app.example.com",
        path: "/admin/users?x=1",
        headers: &headers,
        ip: Some("10.1.2.3".parse().unwrap()),
        session: Some(&identity),
        ..Request::new(time)
    };
    let anonymous = Request::new(time);
    for req in [signed_in, anonymous] {
        let eval = policy.evaluate(&req);
        // The same request decides the same way twice.
        assert_eq!(eval, policy.evaluate(&req));
        match eval.decision {
            Decision::Allow => assert!(eval.allow.value && !eval.deny.value),
            Decision::Deny => assert!(eval.deny.value || !eval.allow.value),
            Decision::Login => {}
        }
        if !policy.has_allow() {
            assert_ne!(eval.decision, Decision::Allow);
        }
        let _ = eval.reasons();
    }
});
