//! Every kind of invalid document is rejected with the position of the offending key or
//! value and a message naming it; all errors of a document are reported.

use portcullis::ppl::{Policy, PolicyError, parse_file};
use portcullis::source::{Node, Pos};

/// The 1-based position of the first occurrence of `marker` in `text`.
fn pos_of(text: &str, marker: &str) -> Pos {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("marker {marker:?} not in {text:?}"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = at - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    Pos::new(line, col)
}

fn errors(text: &str) -> Vec<PolicyError> {
    match Policy::parse(text) {
        Ok(_) => panic!("accepted an invalid policy:\n{text}"),
        Err(e) => e,
    }
}

/// `crit` as the only criterion of `allow: and:`.
fn in_and(crit: &str) -> String {
    format!("allow:\n  and:\n    - {crit}\n")
}

#[test]
fn every_error_kind_names_the_key_and_its_position() {
    // (document, marker of the expected position, words the message must contain)
    let rows: Vec<(String, &str, &[&str])> = vec![
        (
            in_and("emial: a"),
            "emial",
            &["unknown criterion", "\"emial\"", "did you mean \"email\""],
        ),
        (
            in_and("frobnicate: 1"),
            "frobnicate",
            &["unknown criterion", "\"frobnicate\""],
        ),
        (in_and("5: a"), "5", &["unknown criterion", "\"5\""]),
        (
            "permit:\n  and: []\n".into(),
            "permit",
            &["unsupported action", "\"permit\""],
        ),
        (
            "allow:\n  xor: []\n".into(),
            "xor",
            &["unsupported operator", "\"xor\""],
        ),
        (
            "deny:\n  and: []\n  nand: []\n".into(),
            "nand",
            &["unsupported operator", "\"nand\""],
        ),
        (
            in_and("email: a\n      domain: b"),
            "domain",
            &["\"domain\"", "\"email\"", "exactly one key"],
        ),
        (in_and("{}"), "{}", &["exactly one key", "none"]),
        (
            in_and("email"),
            "email",
            &["criterion must be a map", "found a string"],
        ),
        (
            in_and("claim/roles: {starts_with: a}"),
            "starts_with",
            &[
                "unknown operator \"starts_with\"",
                "\"claim/roles\"",
                "string-list matcher",
            ],
        ),
        (
            in_and("groups: {not_in: [a]}"),
            "not_in",
            &["unknown operator \"not_in\"", "\"groups\""],
        ),
        (
            in_and("email: {has: a}"),
            "has",
            &["unknown operator \"has\"", "\"email\"", "string matcher"],
        ),
        (
            in_and("http_path: {matches: '^/a'}"),
            "matches",
            &["unknown operator \"matches\"", "\"http_path\""],
        ),
        (
            in_and("groups: {like: a}"),
            "like",
            &["unknown operator \"like\"", "\"groups\""],
        ),
        (
            in_and("http_method: {in: GET}"),
            "GET",
            &["\"http_method\"", "\"in\" needs an array", "found a string"],
        ),
        (
            in_and("user: {not_in: x}"),
            "x}",
            &["\"user\"", "\"not_in\" needs an array"],
        ),
        (
            in_and("email: {in: [[a]]}"),
            "[a]",
            &["\"email\"", "items of \"in\" must be strings"],
        ),
        (
            in_and("email: {is: [a]}"),
            "[a]",
            &["\"email\"", "\"is\" needs a string", "found a list"],
        ),
        (in_and("email: {}"), "{}", &["\"email\"", "empty matcher"]),
        (in_and("email: null"), "null", &["\"email\"", "found null"]),
        (
            in_and("groups: {has: {a: b}}"),
            "{a: b}",
            &["\"groups\"", "\"has\"", "found a map"],
        ),
        (
            in_and("claim/x: [a, b]"),
            "[a, b]",
            &["\"claim/x\"", "found a list"],
        ),
        (
            in_and("time_of_day: {after: '9:00'}"),
            "time_of_day",
            &["\"time_of_day\" needs \"timezone\""],
        ),
        (
            in_and("time_of_day: {timezone: Mars/Olympus, after: '9:00'}"),
            "Mars/Olympus",
            &["\"time_of_day\"", "unknown time zone \"Mars/Olympus\""],
        ),
        (
            in_and("time_of_day: {timezone: UTC, after: '25:00'}"),
            "'25:00'",
            &["\"time_of_day\"", "\"after\"", "invalid", "\"25:00\""],
        ),
        (
            in_and("time_of_day: {timezone: UTC, before: 9am-ish}"),
            "9am-ish",
            &["\"before\"", "\"9am-ish\""],
        ),
        (
            in_and("time_of_day: {timezone: UTC, before: 900}"),
            "900",
            &["\"before\"", "an integer"],
        ),
        (
            in_and("time_of_day: {timezone: UTC}"),
            "time_of_day",
            &["\"time_of_day\"", "after, before or both"],
        ),
        (
            in_and("time_of_day: {timezone: UTC, after: '9:00', until: '10:00'}"),
            "until",
            &["unknown key \"until\"", "\"time_of_day\""],
        ),
        (
            in_and("time_of_day: '9:00-17:00'"),
            "'9:00",
            &["\"time_of_day\" needs a map"],
        ),
        (
            in_and("source_ip: 10.0.0.0/33"),
            "10.0.0.0/33",
            &[
                "\"source_ip\"",
                "invalid IP address or CIDR \"10.0.0.0/33\"",
            ],
        ),
        (
            in_and("source_ip: [10.0.0.0/8, 1.2.3]"),
            "1.2.3]",
            &["\"source_ip\"", "\"1.2.3\""],
        ),
        (
            in_and("source_ip: 'fe80::/129'"),
            "'fe80",
            &["\"source_ip\"", "\"fe80::/129\""],
        ),
        (
            in_and("source_ip: 5"),
            "5",
            &["\"source_ip\"", "found an integer"],
        ),
        (
            in_and("source_ip: []"),
            "[]",
            &["\"source_ip\"", "at least one"],
        ),
        (
            in_and("date: {after: yesterday}"),
            "yesterday",
            &["\"date\"", "\"after\"", "\"yesterday\""],
        ),
        (
            in_and("date: {before: '2026-02-30'}"),
            "'2026-02-30'",
            &["\"date\"", "\"before\"", "\"2026-02-30\""],
        ),
        (
            in_and("date: {since: '2026-01-01'}"),
            "since",
            &["unknown key \"since\"", "\"date\""],
        ),
        (
            in_and("date: {}"),
            "date",
            &["\"date\"", "after, before or both"],
        ),
        (
            in_and("day_of_week: mon-funday"),
            "mon-funday",
            &["\"day_of_week\"", "unknown day \"funday\""],
        ),
        (
            in_and("day_of_week: 'mon,,fri'"),
            "'mon",
            &["\"day_of_week\"", "empty day"],
        ),
        (
            in_and("day_of_week: [mon]"),
            "[mon]",
            &["\"day_of_week\"", "found a list"],
        ),
        (
            in_and("claim: admin"),
            "claim",
            &["\"claim\"", "claim/NAME"],
        ),
        (
            in_and("claim/: admin"),
            "claim/",
            &["\"claim/\"", "claim/NAME"],
        ),
        (
            in_and("email/x: a"),
            "email/x",
            &["\"email\"", "no sub-path", "\"email/x\""],
        ),
        (in_and("and/x: []"), "and/x", &["\"and\"", "no sub-path"]),
        (
            in_and("or: {email: a}"),
            "{email",
            &["operator \"or\" needs an array of criteria", "found a map"],
        ),
        (
            in_and("client_certificate: {fingerprint: abc}"),
            "abc",
            &[
                "\"client_certificate.fingerprint\"",
                "invalid SHA-256 fingerprint \"abc\"",
            ],
        ),
        (
            in_and("client_certificate: {fingerprint: [AB12]}"),
            "AB12",
            &["\"client_certificate.fingerprint\"", "\"AB12\""],
        ),
        (
            in_and("client_certificate: {spki_hash: 'not base64!'}"),
            "'not",
            &["\"client_certificate.spki_hash\"", "\"not base64!\""],
        ),
        (
            in_and("client_certificate: {spki_hash: aGVsbG8=}"),
            "aGVsbG8=",
            &["\"client_certificate.spki_hash\"", "\"aGVsbG8=\""],
        ),
        (
            in_and("client_certificate: {serial: 1}"),
            "serial",
            &["unknown key \"serial\"", "\"client_certificate\""],
        ),
        (
            in_and("client_certificate: {}"),
            "client_certificate",
            &["\"client_certificate\"", "at least one"],
        ),
        (
            in_and("client_certificate: {san_dns: {like: x}}"),
            "like",
            &["unknown operator \"like\"", "san_dns"],
        ),
        (
            in_and("client_certificate: yes"),
            "yes",
            &["\"client_certificate\" needs a map"],
        ),
        (
            "allow:\n  and:\n    email: a\n".into(),
            "email",
            &["operator \"and\" needs an array of criteria", "found a map"],
        ),
        (
            "allow:\n  or: accept\n".into(),
            "accept",
            &[
                "operator \"or\" needs an array of criteria",
                "found a string",
            ],
        ),
        (
            "allow:\n  - or: []\n".into(),
            "- or",
            &["\"allow\" needs a map of operators", "found a list"],
        ),
        (
            "deny: true\n".into(),
            "true",
            &["\"deny\" needs a map of operators", "found a boolean"],
        ),
        (
            "hello\n".into(),
            "hello",
            &["a policy must be a rule", "found a string"],
        ),
        ("".into(), "", &["a policy must be a rule", "found null"]),
        (
            "- allow: {and: []}\n- 5\n".into(),
            "5",
            &["a rule must be a map", "found an integer"],
        ),
        (
            r#"{"allow": {"and": [{"emial": "a"}]}}"#.into(),
            "\"emial\"",
            &["unknown criterion \"emial\""],
        ),
        (
            r#"{"allow": {"and": [{"source_ip": "1.2.3.4/40"}]}}"#.into(),
            "\"1.2.3.4/40\"",
            &["\"source_ip\"", "\"1.2.3.4/40\""],
        ),
    ];
    let mut failures = Vec::new();
    for (doc, marker, words) in &rows {
        let errs = errors(doc);
        let want = if doc.is_empty() {
            Pos::new(1, 1)
        } else {
            pos_of(doc, marker)
        };
        let ok = errs.len() == 1
            && errs[0].pos == want
            && words.iter().all(|w| errs[0].message.contains(w))
            && errs[0].to_string() == format!("{}: {}", want, errs[0].message);
        if !ok {
            failures.push(format!(
                "{doc:?}\n  want {want} with {words:?}\n  got  {errs:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn all_errors_of_a_document_are_collected_in_order() {
    let doc = "\
allow:
  and:
    - domian: example.com
    - http_method: {in: GET}
  or:
    - time_of_day: {after: '9:00'}
  xor: []
deny:
  or:
    - source_ip: 10.0.0.0/33
    - day_of_week: funday
permit: {}
";
    let errs = errors(doc);
    let got: Vec<String> = errs.iter().map(|e| e.pos.to_string()).collect();
    let want: Vec<String> = [
        "domian",
        "GET",
        "time_of_day",
        "xor",
        "10.0.0.0/33",
        "funday",
        "permit",
    ]
    .iter()
    .map(|m| pos_of(doc, m).to_string())
    .collect();
    assert_eq!(got, want, "{errs:#?}");
    assert_eq!(
        errs[0].in_file("p.yaml"),
        "p.yaml:3:7: unknown criterion \"domian\" (did you mean \"domain\"?)"
    );
}

#[test]
fn syntax_errors_have_positions() {
    let errs = errors("allow:\n  and: [\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].pos.line >= 2, "{errs:?}");
    let errs = errors("allow:\n  and: []\nallow:\n  or: []\n");
    assert_eq!(errs[0].pos, Pos::new(3, 1), "{errs:?}");
    assert!(errs[0].message.contains("duplicated key"), "{errs:?}");
}

#[test]
fn embedded_documents_keep_the_file_positions() {
    let file = "\
routes:
  - from: https://app.example.com
    policy:
      allow:
        and:
          - emial: x
";
    let root = Node::parse(file).unwrap();
    let policy = root.get("routes").unwrap().as_seq().unwrap()[0]
        .get("policy")
        .unwrap();
    let errs = Policy::from_node(policy).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].pos, pos_of(file, "emial"));
    assert_eq!(
        errs[0].in_file("config.yaml"),
        "config.yaml:6:13: unknown criterion \"emial\" (did you mean \"email\"?)"
    );
    // From JSON without positions: just the message.
    let json = serde_json::json!({"allow": {"and": [{"emial": "x"}]}});
    let errs = Policy::from_node(&Node::from_json(&json)).unwrap_err();
    assert_eq!(
        errs[0].to_string(),
        "unknown criterion \"emial\" (did you mean \"email\"?)"
    );
    assert_eq!(
        errs[0].in_file("object"),
        "object: unknown criterion \"emial\" (did you mean \"email\"?)"
    );
}

#[test]
fn valid_documents_of_every_criterion_parse() {
    let doc = "\
- allow:
    and:
      - accept: true
      - reject: true
      - authenticated_user: true
      - user: {is: auth0|1}
      - email: {not: a@b.c, starts_with: a, ends_with: .c, contains: '@', in: [a@b.c], not_in: [x]}
      - domain: example.com
      - claim/https://example.com/roles: {has: admin, is: admin, exclude: root}
      - groups: admin
      - http_method: GET
      - http_path: {starts_with: /}
      - cors_preflight: true
      - source_ip: [10.0.0.0/8, 192.168.1.1, '2001:db8::/32', '::1']
      - client_certificate:
          fingerprint: 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
          spki_hash: ABEiM0RVZneImaq7zN3u/wARIjNEVWZ3iJmqu8zd7v8=
          san_email: a@b.c
          san_dns: {ends_with: .example.com}
          san_uri: {starts_with: 'spiffe://'}
      - invalid_client_certificate: true
      - date: {after: '2026-01-01T00:00:00Z', before: '2027-01-01'}
      - day_of_week: mon-fri
      - time_of_day: {timezone: Europe/Paris, after: '9:00 AM', before: '5PM'}
      - nor: [{not: [{or: [{and: [accept: 1]}]}]}]
- deny:
    or: []
    not: []
    nor: []
";
    Policy::parse(doc).unwrap();
}

#[test]
fn manifests() {
    let good = "\
apiVersion: portcullis.dev/v1alpha1
kind: Policy
metadata: {name: admins, namespace: default}
spec:
  allow:
    and:
      - claim/https://example.com/roles: admin
  deny:
    or:
      - http_method: DELETE
---
---
apiVersion: portcullis.dev/v1alpha1
kind: Policy
metadata: {name: open}
spec:
  allow: {or: [accept: true]}
";
    let docs = parse_file(good).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].name.as_deref(), Some("admins"));
    assert_eq!(
        docs[1].pos,
        pos_of(
            good,
            "apiVersion: portcullis.dev/v1alpha1\nkind: Policy\nmetadata: {name: open}"
        )
    );

    let bad = "\
apiVersion: portcullis.dev/v1
kind: Policies
metadata: {name: x}
extra: 1
spec:
  allow:
    and:
      - emial: a
  permit: {}
---
apiVersion: portcullis.dev/v1alpha1
kind: Policy
spec: [allow]
";
    let errs = parse_file(bad).unwrap_err();
    let got: Vec<(Pos, &str)> = errs.iter().map(|e| (e.pos, e.message.as_str())).collect();
    let expect = [
        (
            "portcullis.dev/v1\n",
            "unsupported apiVersion \"portcullis.dev/v1\"",
        ),
        ("Policies", "unsupported kind \"Policies\""),
        ("extra", "unknown field \"extra\""),
        ("emial", "unknown criterion \"emial\""),
        ("permit", "unsupported action \"permit\""),
        ("[allow]", "spec must be a map"),
    ];
    assert_eq!(got.len(), expect.len(), "{errs:#?}");
    for ((pos, message), (marker, words)) in got.iter().zip(expect) {
        assert_eq!(*pos, pos_of(bad, marker), "{message}");
        assert!(message.contains(words), "{message:?} lacks {words:?}");
    }

    let errs = parse_file("kind: Policy\n").unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.message.contains("missing apiVersion")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.message.contains("missing spec")),
        "{errs:?}"
    );
    let errs = parse_file("---\n---\n").unwrap_err();
    assert!(errs[0].message.contains("no policy"), "{errs:?}");
    // Plain PPL documents may be streamed too.
    assert_eq!(
        parse_file("allow: {or: [accept: 1]}\n---\ndeny: {or: [reject: 1]}\n")
            .unwrap()
            .len(),
        2
    );
}
