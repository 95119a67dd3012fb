//! Client certificate matching on certificates generated here with rcgen: SANs of each type,
//! the fingerprint in both notations, the SPKI hash, and presented/valid states.

use base64::Engine;
use chrono::{DateTime, Utc};
use portcullis::ppl::{ClientCertificate, Decision, Outcome, Policy, Request};
use rcgen::{CertificateParams, KeyPair, PublicKeyData, SanType};
use sha2::{Digest, Sha256};

struct Generated {
    pem: String,
    der: Vec<u8>,
    spki_der: Vec<u8>,
}

fn generate() -> Generated {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![
        SanType::Rfc822Name("alice@example.com".try_into().unwrap()),
        SanType::DnsName("device-1.corp.example.com".try_into().unwrap()),
        SanType::URI("spiffe://example.com/ns/prod/sa/web".try_into().unwrap()),
        SanType::DnsName("backup.example.net".try_into().unwrap()),
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Generated {
        pem: cert.pem(),
        der: cert.der().to_vec(),
        spki_der: key.subject_public_key_info(),
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
        .unwrap()
        .to_utc()
}

fn outcome(crit: &str, cert: Option<&ClientCertificate>) -> Outcome {
    let policy = Policy::parse(&format!("allow:\n  and:\n    - {crit}\n"))
        .unwrap_or_else(|e| panic!("{crit}: {e:?}"));
    let req = Request {
        client_certificate: cert,
        ..Request::new(now())
    };
    policy.evaluate(&req).allow
}

fn codes(o: Outcome) -> (bool, Vec<&'static str>) {
    (o.value, o.reasons.codes().collect())
}

#[test]
fn parsed_certificate_has_the_expected_facts() {
    let g = generate();
    let c = ClientCertificate::from_pem(&g.pem, true).unwrap();
    assert!(c.presented && c.valid && c.is_trusted());
    assert_eq!(c.fingerprint_hex(), hex::encode(Sha256::digest(&g.der)));
    assert_eq!(c.spki_hash, <[u8; 32]>::from(Sha256::digest(&g.spki_der)));
    assert_eq!(c.san_email, ["alice@example.com"]);
    assert_eq!(
        c.san_dns,
        ["device-1.corp.example.com", "backup.example.net"]
    );
    assert_eq!(c.san_uri, ["spiffe://example.com/ns/prod/sa/web"]);
    assert_eq!(ClientCertificate::from_der(&g.der, true).unwrap(), c);
    // A chain: the first certificate is the leaf.
    let other = generate();
    let chain = format!("{}{}", g.pem, other.pem);
    assert_eq!(ClientCertificate::from_pem(&chain, true).unwrap(), c);
    assert!(ClientCertificate::from_pem("not a certificate", true).is_err());
    assert!(ClientCertificate::from_der(b"\x30\x03abc", true).is_err());
}

#[test]
fn certificate_matchers() {
    let g = generate();
    let cert = ClientCertificate::from_pem(&g.pem, true).unwrap();
    let fp = hex::encode(Sha256::digest(&g.der));
    let fp_colons = fp
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let spki = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&g.spki_der));
    let spki_no_pad = spki.trim_end_matches('=');
    let other_fp = "00".repeat(32);
    let ok = (true, vec!["client-certificate-ok"]);
    let fail = (false, vec!["client-certificate-unauthorized"]);
    let rows: Vec<(String, (bool, Vec<&str>))> = vec![
        (
            format!("client_certificate: {{fingerprint: {fp}}}"),
            ok.clone(),
        ),
        (
            format!("client_certificate: {{fingerprint: '{fp_colons}'}}"),
            ok.clone(),
        ),
        (
            format!("client_certificate: {{fingerprint: ['{other_fp}', '{fp_colons}']}}"),
            ok.clone(),
        ),
        (
            format!("client_certificate: {{fingerprint: '{other_fp}'}}"),
            fail.clone(),
        ),
        (
            format!("client_certificate: {{spki_hash: '{spki}'}}"),
            ok.clone(),
        ),
        (
            format!("client_certificate: {{spki_hash: ['{spki_no_pad}']}}"),
            ok.clone(),
        ),
        (
            "client_certificate: {spki_hash: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=}".into(),
            fail.clone(),
        ),
        (
            "client_certificate: {san_email: alice@example.com}".into(),
            ok.clone(),
        ),
        (
            "client_certificate: {san_email: {ends_with: '@example.org'}}".into(),
            fail.clone(),
        ),
        (
            "client_certificate: {san_dns: {ends_with: .corp.example.com}}".into(),
            ok.clone(),
        ),
        // Any SAN of the type may match.
        (
            "client_certificate: {san_dns: backup.example.net}".into(),
            ok.clone(),
        ),
        (
            "client_certificate: {san_dns: alice@example.com}".into(),
            fail.clone(),
        ),
        (
            "client_certificate: {san_uri: {starts_with: 'spiffe://example.com/'}}".into(),
            ok.clone(),
        ),
        (
            "client_certificate: {san_uri: {is: 'spiffe://other/'}}".into(),
            fail.clone(),
        ),
        // Every given key must hold.
        (
            format!(
                "client_certificate: {{fingerprint: {fp}, san_email: alice@example.com, san_uri: {{contains: prod}}}}"
            ),
            ok.clone(),
        ),
        (
            format!("client_certificate: {{fingerprint: {fp}, san_email: bob@example.com}}"),
            fail.clone(),
        ),
        (
            "invalid_client_certificate: true".into(),
            (false, vec!["valid-client-certificate"]),
        ),
    ];
    for (crit, want) in &rows {
        assert_eq!(codes(outcome(crit, Some(&cert))), *want, "{crit}");
    }

    // Presented but not trusted: never matches; invalid_client_certificate says why.
    let untrusted = ClientCertificate::from_pem(&g.pem, false).unwrap();
    let by_fp = format!("client_certificate: {{fingerprint: {fp}}}");
    assert_eq!(codes(outcome(&by_fp, Some(&untrusted))), fail);
    assert_eq!(
        codes(outcome(
            "invalid_client_certificate: true",
            Some(&untrusted)
        )),
        (true, vec!["invalid-client-certificate"])
    );
    // Not presented.
    for none in [None, Some(&ClientCertificate::not_presented())] {
        assert_eq!(codes(outcome(&by_fp, none)), fail);
        assert_eq!(
            codes(outcome("invalid_client_certificate: true", none)),
            (true, vec!["client-certificate-required"])
        );
    }
}

#[test]
fn mtls_policy_decisions() {
    let g = generate();
    let cert = ClientCertificate::from_pem(&g.pem, true).unwrap();
    let policy = Policy::parse(
        "allow:\n  and:\n    - client_certificate: {san_dns: {ends_with: .corp.example.com}}\ndeny:\n  or:\n    - invalid_client_certificate: true\n",
    )
    .unwrap();
    let decide = |c: Option<&ClientCertificate>| {
        policy
            .evaluate(&Request {
                client_certificate: c,
                ..Request::new(now())
            })
            .decision
    };
    assert_eq!(decide(Some(&cert)), Decision::Allow);
    assert_eq!(decide(None), Decision::Deny);
    let untrusted = ClientCertificate::from_pem(&g.pem, false).unwrap();
    assert_eq!(decide(Some(&untrusted)), Decision::Deny);
}
