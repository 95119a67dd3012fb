//! Real-browser tests: headless Chromium driven through WebDriver (chromedriver, `fantoccini`)
//! against the proxy and the local identity provider, so cookies, redirects, forms and pages
//! are handled by a browser. On failure a screenshot of the page is saved under
//! `target/browser-screenshots/`. With `PORTCULLIS_SCREENSHOTS=1` the run also writes the
//! README's pictures: `docs/deny-page.png`, `docs/routes-portal.png`, `docs/operator-view.png`.
//!
//! Chromium and chromedriver are required (Debian: `chromium`, `chromium-driver`, installed by
//! `scripts/setup`); without them the test fails saying so.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use support::Proxy;
use support::idp::{Idp, VerifyingUpstream, idp_config, sign_in_yaml};

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

impl Driver {
    async fn start() -> (Driver, Client) {
        let (Some(driver), Some(_)) = (which("chromedriver"), which("chromium")) else {
            panic!(
                "the browser tests need Chromium and its WebDriver: install the Debian packages \
                 `chromium` and `chromium-driver` (scripts/setup does)"
            );
        };
        let port = support::free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let driver = Driver {
            child,
            port,
            _profile: profile,
        };
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=900,700",
                    // Every host name to this machine; the ports say which server.
                    "--host-resolver-rules=MAP * 127.0.0.1",
                    format!("--user-data-dir={}", driver._profile.path().display()),
                ]
            }
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{}", driver.port);
        // Two rustls providers are compiled in (ours is ring); say which one the client uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        for _ in 0..100 {
            match ClientBuilder::rustls()
                .expect("rustls")
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => return (driver, client),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        panic!("chromedriver did not start a session on {url}");
    }
}

fn proxy_yaml(port: u16, issuer: &str, up: &str) -> String {
    format!(
        "{sign_in}product_name: Example Corp Access
routes:
  - from: http://app.test
    to: {up}
    name: App
    description: The team's admin app
    pass_identity_headers: true
    policy:
      allow:
        and:
          - claim/https://example.com/roles: admin
  - from: http://wiki.test
    to: {up}
    name: Wiki
    description: Notes for everyone signed in
    allow_any_authenticated_user: true
  - from: http://billing.test
    to: {up}
    name: Billing
    policy:
      allow:
        and:
          - claim/https://example.com/roles: finance
  - from: http://status.test
    to: {up}
    name: Status
    description: Public status page
    allow_public_unauthenticated_access: true
",
        sign_in = sign_in_yaml(port, "auth0", issuer)
    )
}

/// Save what the browser shows as PNG.
async fn screenshot(c: &Client, path: &Path) {
    if let Ok(png) = c.screenshot().await {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(path, png);
    }
}

async fn text(c: &Client) -> String {
    c.find(Locator::Css("body"))
        .await
        .expect("body")
        .text()
        .await
        .expect("text")
}

/// The page's text once it contains `needle` (a navigation the browser makes by itself, such
/// as a form's redirects, has finished), or what it shows after 10 s. Elements of a page that
/// is being replaced go stale while they are read: such reads are tried again.
async fn text_containing(c: &Client, needle: &str) -> String {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body = match c.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if body.contains(needle) || std::time::Instant::now() > until {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sign_in_single_sign_on_deny_page_portal_and_sign_out_in_chromium() {
    let (driver, c) = Driver::start().await;
    let port = support::free_port();
    let idp = Idp::start(&idp_config(&format!("http://authenticate.test:{port}")));
    let upstream = VerifyingUpstream::start().await;
    let proxy = Proxy::start_on(
        port,
        &proxy_yaml(port, &idp.issuer, &upstream.url()),
        true,
        &[],
    )
    .await;
    *upstream.jwks_from.lock().expect("lock") =
        Some((([127, 0, 0, 1], port).into(), format!("app.test:{port}")));
    let url = |host: &str, path: &str| format!("http://{host}:{port}{path}");
    let ops = format!("http://127.0.0.1:{}/routes", proxy.metrics_port);
    let pictures = std::env::var_os("PORTCULLIS_SCREENSHOTS").is_some();
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");

    let run = async {
        // Sign in: the IdP's form, filled and sent by the browser.
        c.goto(&url("app.test", "/hello")).await.expect("goto app");
        let login = c
            .wait()
            .for_element(Locator::Css("input[name=login]"))
            .await
            .expect("login form");
        login.send_keys("auth0|alice").await.expect("type");
        c.find(Locator::Css("input[name=password]"))
            .await
            .expect("pw")
            .send_keys("x")
            .await
            .expect("type");
        c.find(Locator::Css("button[type=submit]"))
            .await
            .expect("button")
            .click()
            .await
            .expect("submit");
        c.wait()
            .for_url(&url::Url::parse(&url("app.test", "/hello")).expect("url"))
            .await
            .expect("back on app");
        let cookies = c.get_all_cookies().await.expect("cookies");
        let session = cookies
            .iter()
            .find(|k| k.name() == "_pomerium")
            .expect("session cookie");
        assert_eq!(session.http_only(), Some(true), "{session:?}");
        assert!(
            text(&c).await.contains("\"valid\":true"),
            "the upstream verified the assertion"
        );

        // Single sign-on: another host, no form.
        c.goto(&url("wiki.test", "/")).await.expect("goto wiki");
        c.wait()
            .for_url(&url::Url::parse(&url("wiki.test", "/")).expect("url"))
            .await
            .expect("wiki without a form");
        assert!(c.find(Locator::Css("input[name=login]")).await.is_err());

        // The routes portal: what alice may open, and nothing else.
        c.goto(&url("app.test", "/.pomerium/routes"))
            .await
            .expect("portal");
        let body = text(&c).await;
        for name in [
            "App",
            "Wiki",
            "Status",
            "The team's admin app",
            "Example Corp Access",
        ] {
            assert!(body.contains(name), "{name}: {body}");
        }
        assert!(!body.contains("Billing"), "{body}");
        if pictures {
            screenshot(&c, &docs.join("routes-portal.png")).await;
        }

        // The deny page: the rule in plain words, who, and a sign-out button.
        c.goto(&url("billing.test", "/")).await.expect("billing");
        c.wait()
            .for_element(Locator::Css("h1"))
            .await
            .expect("page");
        let body = text(&c).await;
        for expected in [
            "Forbidden",
            "You need: claim https://example.com/roles includes finance. You have: admin.",
            "You are signed in as alice@example.com",
            "Billing",
        ] {
            assert!(body.contains(expected), "{expected}: {body}");
        }
        if pictures {
            screenshot(&c, &docs.join("deny-page.png")).await;
        }

        // Sign out from the deny page's button (a same-origin form POST by the browser).
        c.find(Locator::Css("form[method=post] button"))
            .await
            .expect("sign-out button")
            .click()
            .await
            .expect("click");
        // The deny page has an `h1` too: wait for the signed-out page's words, not an element.
        let body = text_containing(&c, "You are signed out").await;
        assert!(body.contains("You are signed out"), "{body}");
        // Signed out on this host and at the authenticate host: the next visit needs the form
        // (route cookies are per host, so other hosts keep theirs until they expire).
        c.goto(&url("billing.test", "/"))
            .await
            .expect("billing again");
        c.wait()
            .for_element(Locator::Css("input[name=login]"))
            .await
            .expect("the login form again");

        // The operator view on the metrics listener.
        c.goto(&ops).await.expect("operator view");
        let body = text(&c).await;
        assert!(
            body.contains("Policy (PPL)") && body.contains("billing.test"),
            "{body}"
        );
        if pictures {
            screenshot(&c, &docs.join("operator-view.png")).await;
        }
    };
    let outcome = std::panic::AssertUnwindSafe(run).catch_unwind().await;
    if let Err(panic) = outcome {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
        let shot = dir.join(format!("failure-{}.png", std::process::id()));
        screenshot(&c, &shot).await;
        eprintln!(
            "screenshot: {}\nproxy log:\n{}",
            shot.display(),
            proxy.logs()
        );
        let _ = c.close().await;
        drop(driver);
        std::panic::resume_unwind(panic);
    }
    c.close().await.expect("close the browser");
    drop(driver);
}
