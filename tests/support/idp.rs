//! The Auth0 stand-in (`tests/idp/server.mjs`) as a child process, an upstream that verifies
//! the identity assertion with the proxy's JWKS, and a browser-like client that follows
//! redirects by hand and fills in the stand-in's login form.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// A running stand-in IdP.
pub struct Idp {
    child: Child,
    pub issuer: String,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Idp {
    /// Starts `node tests/idp/server.mjs --port 0 --config <config>` and waits for its ready line.
    pub fn start(config: &serde_json::Value) -> Idp {
        Idp::start_on(0, config)
    }

    /// The same on a given port (0: any). A restart on the same port is a key rotation: the
    /// stand-in makes a new signing key every time it starts.
    pub fn start_on(port: u16, config: &serde_json::Value) -> Idp {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp");
        assert!(
            root.join("node_modules").is_dir(),
            "the IdP stand-in's modules are missing: run npm ci --prefix tests/idp"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("idp.json");
        std::fs::write(&path, config.to_string()).expect("write idp config");
        let stderr = std::fs::File::create(dir.path().join("idp.log")).expect("idp log");
        let mut child = Command::new("node")
            .arg(root.join("server.mjs"))
            .arg("--port")
            .arg(port.to_string())
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("start node (is Node.js installed?)");
        let stdout = child.stdout.take().expect("idp stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("idp ready line");
        let ready: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_else(|_| {
            let log = std::fs::read_to_string(dir.path().join("idp.log")).unwrap_or_default();
            panic!("the IdP did not start: {line:?}\n{log}")
        });
        Idp {
            child,
            issuer: ready["issuer"].as_str().expect("issuer").to_string(),
            port: ready["port"].as_u64().expect("port") as u16,
            _dir: dir,
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn stats(&self) -> serde_json::Value {
        reqwest::get(self.url("/__test/stats"))
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json")
    }

    pub async fn post(&self, path: &str, body: Option<serde_json::Value>) {
        let c = reqwest::Client::new();
        let mut r = c.post(self.url(path));
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.expect("idp control");
    }
}

/// The stand-in's configuration for one client whose authenticate host is `authenticate`
/// (e.g. `http://authenticate.test:1234`). Users: `auth0|alice` (admin), `auth0|bob` (viewer).
/// Fixed, public test secrets.
pub const COOKIE_SECRET: &str = "q1ZC9bdnkS3cgLYq1pAIjZzvTcdIpWk1u3ZOCc6Q8nA=";
pub const SHARED_SECRET: &str = "Yx0cZz3P1v0m7m0Gk5Qm2I4c0nAq9yHk8Qy0vW2bQ1E=";

/// The sign-in settings of a proxy on `port` whose authenticate host is `authenticate.test`,
/// signing in at `issuer` as the client of [`idp_config`] (YAML lines, ending in a newline).
pub fn sign_in_yaml(port: u16, provider: &str, issuer: &str) -> String {
    format!(
        "authenticate_service_url: http://authenticate.test:{port}
idp_provider: {provider}
idp_provider_url: {issuer}
idp_client_id: portcullis-test
idp_client_secret: test-secret
cookie_secret: {COOKIE_SECRET}
shared_secret: {SHARED_SECRET}
"
    )
}

pub fn idp_config(authenticate: &str) -> serde_json::Value {
    serde_json::json!({
        "clients": [{
            "client_id": "portcullis-test",
            "client_secret": "test-secret",
            "redirect_uris": [format!("{authenticate}/oauth2/callback")],
            "post_logout_redirect_uris": [format!("{authenticate}/.pomerium/signed_out")]
        }],
        "machineClient": { "client_id": "portcullis-m2m", "client_secret": "m2m-secret" },
        "rolesClaim": "https://example.com/roles",
        "roles": [
            { "id": "rol_admin0000000001", "name": "admin" },
            { "id": "rol_viewer000000001", "name": "viewer" }
        ],
        "users": [
            { "sub": "auth0|alice", "email": "alice@example.com", "name": "Alice Example", "roles": ["admin"] },
            { "sub": "auth0|bob", "email": "bob@example.com", "name": "Bob Example", "roles": ["viewer"] }
        ]
    })
}

/// An upstream that verifies `X-Pomerium-Jwt-Assertion` with the JWKS it fetches from the
/// proxy (`/.well-known/pomerium/jwks.json` on the route host) and answers JSON:
/// `{"assertion": {"valid": bool, "claims"|"error": ...}, "headers": {...}, "path": ...}`.
pub struct VerifyingUpstream {
    pub addr: SocketAddr,
    /// Where to fetch the JWKS: (proxy address, route host with port). Set after the proxy starts.
    pub jwks_from: Arc<Mutex<Option<(SocketAddr, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for VerifyingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl VerifyingUpstream {
    pub async fn start() -> VerifyingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let jwks_from: Arc<Mutex<Option<(SocketAddr, String)>>> = Arc::new(Mutex::new(None));
        let from = jwks_from.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let from = from.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(from.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        VerifyingUpstream {
            addr,
            jwks_from,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn answer(
    from: Arc<Mutex<Option<(SocketAddr, String)>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // Every value of a name sent more than once, joined by a line break (as the echo upstream
    // in `support` does).
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes());
        match headers.get_mut(k.as_str()) {
            Some(serde_json::Value::String(seen)) => {
                seen.push('\n');
                seen.push_str(&v);
            }
            _ => {
                headers.insert(k.as_str().into(), v.into_owned().into());
            }
        }
    }
    let host = req
        .headers()
        .get("x-forwarded-host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let assertion = match req
        .headers()
        .get("x-pomerium-jwt-assertion")
        .and_then(|v| v.to_str().ok())
    {
        None => serde_json::json!({"valid": false, "error": "missing"}),
        Some(token) => {
            let source = from.lock().expect("lock").clone();
            match source {
                None => serde_json::json!({"valid": false, "error": "no JWKS source"}),
                Some((proxy, _)) => match verify(proxy, &host, token).await {
                    Ok(claims) => serde_json::json!({"valid": true, "claims": claims}),
                    Err(e) => serde_json::json!({"valid": false, "error": e}),
                },
            }
        }
    };
    let body = serde_json::json!({
        "path": req.uri().path(),
        "headers": headers,
        "assertion": assertion,
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response"))
}

/// Verifies an assertion as an upstream would: JWKS from the route host, `iss` = `aud` = host.
async fn verify(proxy: SocketAddr, host: &str, token: &str) -> Result<serde_json::Value, String> {
    let bare = host.split(':').next().unwrap_or(host).to_string();
    let client = reqwest::Client::builder()
        .resolve(&bare, proxy)
        .build()
        .map_err(|e| e.to_string())?;
    let jwks: jsonwebtoken::jwk::JwkSet = client
        .get(format!("http://{host}/.well-known/pomerium/jwks.json"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks.find(&kid).ok_or("unknown kid")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[host]);
    validation.set_issuer(&[host]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

/// One hop of a navigation.
#[derive(Debug, Clone)]
pub struct Hop {
    pub status: u16,
    pub url: String,
    pub location: Option<String>,
}

/// Where a navigation ended.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub url: String,
    pub body: String,
    pub hops: Vec<Hop>,
    /// The last answer's `Retry-After`.
    pub retry_after: Option<String>,
}

impl Page {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.body))
    }

    /// The login form's action, when this is the stand-in's login page.
    pub fn login_action(&self) -> Option<String> {
        let start = self.body.find("action=\"")? + "action=\"".len();
        let end = self.body[start..].find('"')? + start;
        let action = &self.body[start..end];
        if !action.contains("/u/login/") {
            return None;
        }
        let base = url::Url::parse(&self.url).ok()?;
        Some(base.join(action).ok()?.to_string())
    }
}

/// A browser: cookie jar, `Accept: text/html`, redirects followed by hand, every route host
/// sent to the proxy.
pub struct Browser {
    pub client: reqwest::Client,
    pub jar: Arc<reqwest::cookie::Jar>,
}

impl Browser {
    pub fn new(proxy_port: u16, hosts: &[&str]) -> Browser {
        let addr: SocketAddr = ([127, 0, 0, 1], proxy_port).into();
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let mut b = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none());
        for h in hosts {
            b = b.resolve(h, addr);
        }
        Browser {
            client: b.build().expect("client"),
            jar,
        }
    }

    /// The `Cookie` header this browser would send to `url`.
    pub fn cookies(&self, url: &str) -> String {
        use reqwest::cookie::CookieStore;
        self.jar
            .cookies(&url::Url::parse(url).expect("url"))
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    /// GET `url` and follow redirects (up to 20).
    pub async fn get(&self, url: &str) -> Page {
        let resp = self
            .client
            .get(url)
            .header("accept", "text/html,application/xhtml+xml")
            .send()
            .await
            .expect("request");
        self.follow(resp, Vec::new()).await
    }

    /// GET without following redirects.
    pub async fn get_once(&self, url: &str) -> reqwest::Response {
        self.client
            .get(url)
            .header("accept", "text/html")
            .send()
            .await
            .expect("request")
    }

    pub async fn follow(&self, mut resp: reqwest::Response, mut hops: Vec<Hop>) -> Page {
        loop {
            let status = resp.status().as_u16();
            let url = resp.url().to_string();
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            hops.push(Hop {
                status,
                url: url.clone(),
                location: location.clone(),
            });
            match (status, location) {
                (300..=399, Some(loc)) => {
                    assert!(hops.len() < 20, "redirect loop: {hops:#?}");
                    let next = url::Url::parse(&url)
                        .and_then(|u| u.join(&loc))
                        .expect("location");
                    resp = self
                        .client
                        .get(next)
                        .header("accept", "text/html,application/xhtml+xml")
                        .send()
                        .await
                        .expect("request");
                }
                _ => {
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = resp.text().await.unwrap_or_default();
                    return Page {
                        status,
                        url,
                        body,
                        hops,
                        retry_after,
                    };
                }
            }
        }
    }

    /// Submits the login form on `page` as `login` and follows the redirects.
    pub async fn log_in(&self, page: &Page, login: &str) -> Page {
        let action = page.login_action().unwrap_or_else(|| {
            panic!(
                "no login form at {} ({}): {}",
                page.url, page.status, page.body
            )
        });
        let resp = self
            .client
            .post(action)
            .form(&[("login", login), ("password", "x")])
            .send()
            .await
            .expect("login");
        self.follow(resp, page.hops.clone()).await
    }

    /// Opens `url`, logs in as `login` when the form shows, and returns where it ended.
    pub async fn visit_as(&self, url: &str, login: &str) -> Page {
        let page = self.get(url).await;
        if page.login_action().is_some() {
            self.log_in(&page, login).await
        } else {
            page
        }
    }
}
