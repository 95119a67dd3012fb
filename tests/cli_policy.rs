//! `portcullis policy check` and `portcullis policy eval`, run as the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn portcullis(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run portcullis")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const POLICY: &str = "\
allow:
  and:
    - domain: {is: example.com}
deny:
  or:
    - email: {is: contractor@example.com}
    - http_method: {in: [DELETE, PUT]}
";

const MANIFESTS: &str = "\
apiVersion: portcullis.dev/v1alpha1
kind: Policy
metadata: {name: admins}
spec:
  allow:
    and:
      - claim/https://example.com/roles: admin
---
apiVersion: portcullis.dev/v1alpha1
kind: Policy
metadata: {name: open}
spec:
  allow: {or: [accept: true]}
";

fn alice(method: &str) -> Value {
    json!({
        "time": "2026-11-28T10:00:00Z",
        "http": {"method": method, "host": "app.example.com", "path": "/admin",
                 "headers": {"Origin": "https://x"}, "ip": "203.0.113.7"},
        "session": {"user": "auth0|123", "email": "alice@example.com",
                    "claims": {"https://example.com/roles": ["admin"], "email_verified": [true]},
                    "groups": ["admin", "rol_X1"]},
        "client_certificate": {"presented": false}
    })
}

#[test]
fn check_valid_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", POLICY);
    write(dir.path(), "m.yaml", MANIFESTS);
    write(
        dir.path(),
        "p.json",
        r#"{"allow": {"or": [{"accept": true}]}}"#,
    );
    let o = portcullis(
        &["policy", "check", "p.yaml", "m.yaml", "p.json"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "p.yaml: ok\nm.yaml: ok\np.json: ok\n");
    assert_eq!(stderr(&o), "");
}

#[test]
fn check_reports_every_error_as_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.yaml", POLICY);
    write(
        dir.path(),
        "bad.yaml",
        "allow:\n  and:\n    - emial: a\n    - time_of_day: {after: '9:00'}\n  xor: []\n",
    );
    let o = portcullis(&["policy", "check", "good.yaml", "bad.yaml"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stdout(&o), "good.yaml: ok\n");
    assert_eq!(
        stderr(&o),
        "bad.yaml:3:7: unknown criterion \"emial\" (did you mean \"email\"?)\n\
         bad.yaml:4:7: \"time_of_day\" needs \"timezone\" (an IANA name such as \"Europe/Paris\")\n\
         bad.yaml:5:3: unsupported operator \"xor\" in \"allow\" (expected and, or, not or nor)\n"
    );
}

#[test]
fn check_manifest_errors_name_the_document_positions() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{MANIFESTS}---\napiVersion: portcullis.dev/v1alpha1\nkind: Policy\nspec:\n  allow:\n    and:\n      - http_method: {{is: [GET]}}\n"
    );
    write(dir.path(), "m.yaml", &text);
    let o = portcullis(&["policy", "check", "m.yaml"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "m.yaml:20:27: \"http_method\": \"is\" needs a string, found a list\n"
    );
}

#[test]
fn check_unreadable_and_syntax_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "broken.yaml", "allow:\n  and: [\n");
    let o = portcullis(
        &["policy", "check", "missing.yaml", "broken.yaml"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("missing.yaml: cannot read: "), "{err}");
    let rest = lines[1].strip_prefix("broken.yaml:").expect(&err);
    let mut parts = rest.splitn(3, ':');
    let line: usize = parts.next().unwrap().parse().expect(&err);
    let _col: usize = parts.next().unwrap().parse().expect(&err);
    assert!(line >= 2, "{err}");
    assert_eq!(stdout(&o), "");
}

#[test]
fn eval_prints_one_json_line() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", POLICY);
    write(dir.path(), "alice.json", &alice("GET").to_string());
    let o = portcullis(
        &["policy", "eval", "p.yaml", "--input", "alice.json"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "{\"decision\":\"allow\",\"allow\":{\"value\":true,\"reasons\":[\"domain-ok\"]},\"deny\":{\"value\":false,\"reasons\":[\"email-unauthorized\",\"http-method-unauthorized\"]}}\n"
    );

    write(dir.path(), "delete.json", &alice("DELETE").to_string());
    let o = portcullis(
        &["policy", "eval", "p.yaml", "--input", "delete.json"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["decision"], "deny");
    assert_eq!(
        v["deny"],
        json!({"value": true, "reasons": ["http-method-ok"]})
    );

    let mut anon = alice("GET");
    anon["session"] = Value::Null;
    write(dir.path(), "anon.json", &anon.to_string());
    let o = portcullis(
        &["policy", "eval", "p.yaml", "--input", "anon.json"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["decision"], "login");
    assert_eq!(
        v["allow"],
        json!({"value": false, "reasons": ["user-unauthenticated"]})
    );
}

#[test]
fn eval_a_manifest_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "m.yaml",
        "apiVersion: portcullis.dev/v1alpha1\nkind: Policy\nspec:\n  allow: {or: [accept: true]}\n",
    );
    // Everything optional: no time (now), no http, no session.
    write(dir.path(), "empty.json", "{}");
    let o = portcullis(
        &["policy", "eval", "m.yaml", "--input", "empty.json"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "{\"decision\":\"allow\",\"allow\":{\"value\":true,\"reasons\":[\"accept\"]},\"deny\":{\"value\":false,\"reasons\":[]}}\n"
    );
    // Several policies in one file: eval takes one.
    write(dir.path(), "two.yaml", MANIFESTS);
    let o = portcullis(
        &["policy", "eval", "two.yaml", "--input", "empty.json"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "two.yaml:9:1: policy eval takes one policy, but this file holds 2\n"
    );
}

#[test]
fn eval_rejects_bad_input_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", POLICY);
    let rows: &[(&str, &str)] = &[
        (
            "{\"time\": \"2026-11-28T10:00:00Z\",\n \"sesion\": {}}",
            "in.json:2:2: unknown field \"sesion\" (expected time, http, session, client_certificate)",
        ),
        (
            "{\"http\": {\"method\": \"GET\",\n  \"ip\": \"1.2.3\"}}",
            "in.json:2:9: http.ip: invalid IP address \"1.2.3\"",
        ),
        (
            "{\"http\": {\"metod\": \"GET\"}}",
            "in.json:1:11: unknown field \"http.metod\" (expected method, host, path, headers, ip)",
        ),
        (
            "{\"time\": \"yesterday\"}",
            "in.json:1:10: time: invalid RFC 3339 timestamp \"yesterday\" (e.g. \"2026-11-28T10:00:00Z\")",
        ),
        (
            "{\"session\": {\"email\": \"a@b.c\", \"claims\": [1]}}",
            "in.json:1:42: session.claims: expected an object, found a list",
        ),
        (
            "{\"session\": {\"groups\": [\"a\", 2]}}",
            "in.json:1:30: session.groups[1]: expected a string, found an integer",
        ),
        (
            "{\"session\": {\"emails\": \"a@b.c\"}}",
            "in.json:1:14: unknown field \"session.emails\" (expected user, email, claims, groups)",
        ),
        (
            "{\"client_certificate\": {\"presented\": true, \"valid\": true, \"leaf\": \"junk\"}}",
            "in.json:1:67: client_certificate.leaf: no CERTIFICATE block in the PEM text",
        ),
        (
            "{\"client_certificate\": {\"presented\": \"yes\"}}",
            "in.json:1:38: client_certificate.presented: expected true or false, found a string",
        ),
        (
            "{\"http\": {\"headers\": {\"Origin\": 5}}}",
            "in.json:1:33: http.headers.Origin: expected a string, found an integer",
        ),
    ];
    for (input, want) in rows {
        write(dir.path(), "in.json", input);
        let o = portcullis(
            &["policy", "eval", "p.yaml", "--input", "in.json"],
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(2), "{input}");
        assert_eq!(stderr(&o), format!("{want}\n"), "{input}");
        assert_eq!(stdout(&o), "");
    }
}

#[test]
fn eval_rejects_a_bad_policy_or_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad.yaml",
        "allow:\n  and:\n    - source_ip: 10.0.0.0/40\n",
    );
    write(dir.path(), "in.json", &alice("GET").to_string());
    let o = portcullis(
        &["policy", "eval", "bad.yaml", "--input", "in.json"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with(
            "bad.yaml:3:18: \"source_ip\": invalid IP address or CIDR \"10.0.0.0/40\""
        ),
        "{}",
        stderr(&o)
    );
    let o = portcullis(
        &["policy", "eval", "bad.yaml", "--input", "nope.json"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("nope.json: cannot read: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn examples_directory() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policies: Vec<String> = std::fs::read_dir(root.join("examples/policies"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    assert!(!policies.is_empty());
    let mut args = vec!["policy", "check"];
    args.extend(policies.iter().map(String::as_str));
    let o = portcullis(&args, root);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = portcullis(
        &[
            "policy",
            "eval",
            "examples/policies/admin.yaml",
            "--input",
            "examples/requests/alice.json",
        ],
        root,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["decision"], "allow");
}
