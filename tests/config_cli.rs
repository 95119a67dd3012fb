//! `portcullis serve` refuses a bad configuration with errors that name the file, line and key.

use std::process::Command;

fn serve(config: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("serve").arg("--config").arg(&path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "FILE");
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn unknown_keys_bad_values_and_policies_are_refused_with_positions() {
    let (code, err) = serve(
        "address: 127.0.0.1:1
adress: 127.0.0.1:2
timeout: 5x
routes:
  - from: https://a.test
    to: http://127.0.0.1:1
    prefx: /api
  - from: not a url
    to: http://127.0.0.1:1
",
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("FILE:2:1: adress: unknown key \"adress\" (did you mean \"address\"?)"),
        "{err}"
    );
    assert!(
        err.contains("FILE:3:10: timeout: invalid duration \"5x\""),
        "{err}"
    );
    assert!(
        err.contains(
            "FILE:7:5: routes[0].prefx: unknown route option \"prefx\" (did you mean \"prefix\"?)"
        ),
        "{err}"
    );
    assert!(
        err.contains("FILE:8:11: routes[1].from: invalid URL"),
        "{err}"
    );
}

#[test]
fn environment_variables_override_the_file_and_are_checked_too() {
    let (code, err) = serve("routes: []\n", &[("COOKIE_SECRET", "dG9vIHNob3J0")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("environment variable COOKIE_SECRET: cookie_secret: must decode to 32 bytes"),
        "{err}"
    );
    assert!(
        !err.contains("dG9vIHNob3J0"),
        "secrets never appear in messages: {err}"
    );
}

#[test]
fn yaml_syntax_errors_have_positions() {
    let (code, err) = serve("routes:\n  - from: [\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("FILE:"), "{err}");
    assert!(err.contains("invalid YAML"), "{err}");
}

#[test]
fn gen_secrets_prints_keys_that_the_configuration_accepts() {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("gen-secrets")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut config = String::from("routes: []\n");
    for line in text.lines() {
        let (k, v) = line.split_once('=').expect("key=value");
        config.push_str(&format!("{k}: \"{v}\"\n"));
    }
    assert!(
        config.contains("cookie_secret")
            && config.contains("shared_secret")
            && config.contains("signing_key")
    );
    let settings = portcullis::config::Settings::parse(&config, "generated", |_| None)
        .expect("generated secrets are valid");
    assert_eq!(settings.cookie_secret.map(|s| s.as_bytes().len()), Some(32));
    assert!(
        settings
            .signing_key
            .unwrap()
            .as_str()
            .contains("BEGIN PRIVATE KEY")
    );
    // Fresh every time.
    let again = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("gen-secrets")
        .output()
        .unwrap();
    assert_ne!(String::from_utf8(again.stdout).unwrap(), text);
}

#[test]
fn a_busy_address_is_an_error_naming_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, err) = serve(
        &format!("address: 127.0.0.1:{port}\ninsecure_server: true\nroutes: []\n"),
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("address: cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn pomerium_keys_that_decide_access_and_are_not_implemented_refuse_the_file() {
    let (code, err) = serve(
        "address: 127.0.0.1:1
services: all
routes:
  - from: https://a.test
    to: http://127.0.0.1:1
    description: accepted, no effect
    idp_client_secret: route-secret
",
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("FILE:7:5: routes[0].idp_client_secret: Pomerium's idp_client_secret is not supported by Portcullis: one identity provider serves every route"),
        "{err}"
    );
    assert!(
        !err.contains("services") && !err.contains("description"),
        "accepted keys are no error: {err}"
    );
}
