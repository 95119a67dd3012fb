//! The Management API roles client against the Auth0 stand-in (`tests/idp/server.mjs`).
//!
//! Needs Node.js and `npm ci --prefix tests/idp`; fails (never skips) without them.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use portcullis::auth::{ManagementClient, ManagementError};
use portcullis::config::Secret;
use url::Url;

/// A running stand-in, stopped on drop.
struct Idp {
    child: Child,
    issuer: Url,
    _dir: tempfile::TempDir,
    stderr_path: PathBuf,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    fn start() -> Idp {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/idp");
        assert!(
            root.join("node_modules/oidc-provider").is_dir(),
            "tests/idp/node_modules is missing: run `npm ci --prefix tests/idp` first"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tenant.json");
        let roles = ["admin", "dev", "ops", "billing", "support"];
        let tenant = serde_json::json!({
            "clients": [{
                "client_id": "web",
                "client_secret": "web-secret",
                "redirect_uris": ["https://authenticate.example.com/oauth2/callback"]
            }],
            "machineClient": { "client_id": "m2m", "client_secret": "m2m-secret" },
            "roles": roles.iter().enumerate().map(|(i, name)| serde_json::json!({
                "id": format!("rol_{i:016}"), "name": name, "description": format!("{name} people")
            })).collect::<Vec<_>>(),
            "users": [
                { "sub": "auth0|alice", "email": "alice@example.com", "roles": roles },
                { "sub": "auth0|bob", "email": "bob@example.com", "roles": [] }
            ],
            "managementApi": { "pageSize": 2, "maxPageSize": 2, "retryAfter": 1 }
        });
        std::fs::write(&config, tenant.to_string()).unwrap();
        let stderr_path = dir.path().join("idp.stderr");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new("node")
            .arg(root.join("server.mjs"))
            .args(["--port", "0", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("cannot start `node` (Node.js 20+ is needed for tests/idp)");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let ready: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "the IdP did not start: {line:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            )
        });
        assert_eq!(ready["ready"], true);
        let issuer = Url::parse(ready["issuer"].as_str().unwrap()).unwrap();
        Idp {
            child,
            issuer,
            _dir: dir,
            stderr_path,
        }
    }

    fn url(&self, path: &str) -> Url {
        self.issuer.join(path).unwrap()
    }

    async fn stats(&self) -> serde_json::Value {
        reqwest::get(self.url("__test/stats"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn roles_fail(&self, body: serde_json::Value) {
        let answer = reqwest::Client::new()
            .post(self.url("__test/roles-fail"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
    }

    async fn roles_work(&self) {
        let answer = reqwest::Client::new()
            .delete(self.url("__test/roles-fail"))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
    }

    fn client(&self) -> ManagementClient {
        let account = base64::engine::general_purpose::STANDARD
            .encode(r#"{"client_id":"m2m","client_secret":"m2m-secret"}"#);
        ManagementClient::new(&Secret::from(account), &self.issuer)
            .unwrap()
            .with_page_size(2)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

#[tokio::test]
async fn roles_are_paginated_and_the_token_is_cached() {
    let idp = Idp::start();
    let client = idp.client();
    assert_eq!(client.audience(), idp.url("api/v2/").as_str());

    let roles = client
        .user_roles("auth0|alice")
        .await
        .unwrap_or_else(|e| panic!("{e}; IdP stderr:\n{}", idp.stderr()));
    let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["admin", "dev", "ops", "billing", "support"]);
    assert_eq!(roles[0].id, "rol_0000000000000000");

    let again = client.user_roles("auth0|alice").await.unwrap();
    assert_eq!(again, roles);
    assert!(client.user_roles("auth0|bob").await.unwrap().is_empty());

    let stats = idp.stats().await;
    assert_eq!(stats["tokenByGrant"]["client_credentials"], 1, "{stats}");
    // Five roles two by two: three pages per call; bob: one page.
    assert_eq!(stats["roles"], 3 + 3 + 1, "{stats}");

    match client.user_roles("auth0|nobody").await {
        Err(ManagementError::Status { status: 404, .. }) => {}
        other => panic!("expected a 404, got {other:?}"),
    }
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_typed() {
    let idp = Idp::start();
    let client = idp.client();

    idp.roles_fail(serde_json::json!({ "status": 429, "retryAfter": 1 }))
        .await;
    match client.user_roles("auth0|alice").await {
        Err(ManagementError::RateLimited { retry_after }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(1)))
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    idp.roles_fail(serde_json::json!({ "status": 503 })).await;
    let err = client.user_roles("auth0|alice").await.unwrap_err();
    assert!(
        matches!(err, ManagementError::Unavailable { status: 503 }),
        "{err:?}"
    );
    assert!(err.is_transient());

    idp.roles_work().await;
    assert_eq!(client.user_roles("auth0|alice").await.unwrap().len(), 5);
}

#[tokio::test]
async fn wrong_credentials_are_a_token_error() {
    let idp = Idp::start();
    let account = base64::engine::general_purpose::STANDARD
        .encode(r#"{"client_id":"m2m","client_secret":"wrong"}"#);
    let client = ManagementClient::new(&Secret::from(account), &idp.issuer).unwrap();
    match client.user_roles("auth0|alice").await {
        Err(ManagementError::Token { status, .. }) => assert!((400..500).contains(&status)),
        other => panic!("expected a token error, got {other:?}"),
    }
}
