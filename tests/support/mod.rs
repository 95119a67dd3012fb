//! Test support: real processes and sockets. Every port is ephemeral, every file lives in a
//! temporary directory, and every process is stopped when its handle drops.
#![allow(dead_code)]

pub mod cluster;
pub mod controller;
pub mod idp;
pub mod signin;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Read a request or response head (up to and including the empty line) from `stream`; `None`
/// when the peer closes or fails before the head is complete.
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}

/// One whole HTTP/1.1 answer from `stream`: its head ([`read_head`]), then as many bytes as its
/// Content-Length says, within five seconds. The test fails, naming `what`, when the answer has
/// no Content-Length, the connection closes or fails first, or it takes longer.
pub async fn read_answer(stream: &mut tokio::net::TcpStream, what: &str) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        let mut got = read_head(stream)
            .await
            .unwrap_or_else(|| panic!("{what}: closed before the whole head"));
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        let head = text.find("\r\n\r\n").unwrap_or(text.len());
        let length = text[..head]
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("{what}: no Content-Length: {text}"));
        let mut buf = vec![0u8; 65536];
        while got.len() < head + 4 + length {
            match stream.read(&mut buf).await {
                Ok(0) => panic!("{what}: closed before the whole answer"),
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(e) => panic!("{what}: {e}"),
            }
        }
        got
    })
    .await;
    answer.unwrap_or_else(|_| panic!("{what}: no whole answer within 5 s"))
}

/// Everything `stream` sends until it closes, within ten seconds (the test fails otherwise).
pub async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("answer in time")
        .expect("read");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A port nobody listens on right now.
/// The port is chosen outside the kernel's ephemeral range (32768–60999 here) and outside the
/// test control plane's (20000–31999), so that no socket bound to port 0 meanwhile (an upstream,
/// the identity provider, an outgoing connection) can take it before the process we start
/// binds it; and never twice in one test process.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = 10_000 + rand::random::<u16>() % 10_000;
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
        {
            given.push(port);
            return port;
        }
    }
    panic!("no free port between 10000 and 19999");
}

/// An HTTP upstream that answers every request with a JSON echo of what it received, tagged
/// with its name. `/delay/MS` waits MS milliseconds first; `/status/N` answers N;
/// `/redirect/REST` answers 302 to `http://internal.example/REST`.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        Upstream::start_on("127.0.0.1", name).await
    }

    /// An upstream on `ip` (an ephemeral port), e.g. a non-loopback address an EndpointSlice
    /// may name.
    pub async fn start_on(ip: &str, name: &str) -> Upstream {
        Upstream::start_at(ip, 0, name).await
    }

    /// An upstream on `ip:port` (0: any), e.g. one started again where a stopped one was: a
    /// stopped upstream's listener closes when the runtime drops its aborted task, a moment
    /// after the stop, so binding a given port is tried again for up to a second.
    pub async fn start_at(ip: &str, port: u16, name: &str) -> Upstream {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind((ip, port)).await {
                Ok(l) => break l,
                Err(e) if port != 0 && e.kind() == std::io::ErrorKind::AddrInUse && tries < 20 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("bind upstream {ip}:{port}: {e}"),
            }
        };
        let addr = listener.local_addr().expect("upstream address");
        let tag = name.to_string();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let tag = tag.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| echo(tag.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            name: name.to_string(),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn echo(name: String, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if let Some(ms) = path
        .strip_prefix("/delay/")
        .and_then(|s| s.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = path
        .strip_prefix("/status/")
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(200);
    // A name sent more than once shows every value, joined by a line break (which no header
    // value can hold): a header that went upstream twice fails a test comparing it to one.
    let mut headers = BTreeMap::<String, String>::new();
    for (k, v) in req.headers() {
        let v = v.to_str().unwrap_or("");
        headers
            .entry(k.as_str().to_string())
            .and_modify(|seen| {
                seen.push('\n');
                seen.push_str(v);
            })
            .or_insert_with(|| v.to_string());
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let body = read_body(req.into_body()).await;
    let json = serde_json::json!({
        "upstream": name,
        "method": method,
        "uri": uri,
        "path": path,
        "headers": headers,
        "body_len": body.len(),
    });
    // `/redirect/REST` answers 302 to `http://internal.example/REST` (an upstream that names
    // itself in Location, for rewrite tests).
    let (status, location) = match path.strip_prefix("/redirect/") {
        Some(rest) => (302, Some(format!("http://internal.example/{rest}"))),
        None => (status, None),
    };
    let mut resp = Response::builder().status(status);
    if let Some(l) = location {
        resp = resp.header("location", l);
    }
    let resp = resp
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json.to_string())))
        .expect("valid response");
    Ok(resp)
}

/// A request body read whole (empty when it cannot be read).
async fn read_body(body: Incoming) -> Bytes {
    body.collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

/// A WebSocket echo server.
pub struct WsEcho {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WsEcho {
    pub async fn start() -> WsEcho {
        use futures::{SinkExt, StreamExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind ws");
        let addr = listener.local_addr().expect("ws address");
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_text() || msg.is_binary() {
                            if ws.send(msg).await.is_err() {
                                break;
                            }
                        } else if msg.is_close() {
                            break;
                        }
                    }
                });
            }
        });
        WsEcho { addr, task }
    }
}

/// A running `portcullis serve`.
pub struct Proxy {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub port: u16,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The settings every test proxy gets; `{PORT}` and `{METRICS}` are filled in.
pub fn base_config(port: u16, metrics: u16, insecure: bool) -> String {
    format!(
        "address: 127.0.0.1:{port}\nmetrics_address: 127.0.0.1:{metrics}\ninsecure_server: {insecure}\n"
    )
}

impl Proxy {
    /// Start with `config` (YAML without address/metrics keys: they are added).
    pub async fn start(config: &str, insecure: bool) -> Proxy {
        Proxy::start_with_env(config, insecure, &[]).await
    }

    pub async fn start_with_env(config: &str, insecure: bool, env: &[(&str, &str)]) -> Proxy {
        Proxy::start_on(free_port(), config, insecure, env).await
    }

    /// Start on a port chosen beforehand (when the configuration must name it, e.g. in
    /// `authenticate_service_url`).
    pub async fn start_on(port: u16, config: &str, insecure: bool, env: &[(&str, &str)]) -> Proxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let metrics_port = free_port();
        let path = dir.path().join("config.yaml");
        std::fs::write(
            &path,
            format!("{}{config}", base_config(port, metrics_port, insecure)),
        )
        .expect("write config");
        let log = dir.path().join("portcullis.log");
        let child = spawn_serve(&path, &log, env);
        let proxy = Proxy {
            child,
            dir,
            config: path,
            port,
            metrics_port,
            log,
        };
        proxy.wait_ready(insecure).await;
        proxy
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it contains `fragment` (logs are written by a background thread, so a
    /// line can land a moment after the request that caused it); the log as it is after 5 s
    /// otherwise, for the caller's assertion to show.
    pub async fn log_with(&self, fragment: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let logs = self.logs();
            if logs.contains(fragment) || std::time::Instant::now() > deadline {
                return logs;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The access-log line of the request with this id (fails the test when it is missing).
    pub async fn access_line(&self, request_id: &str) -> String {
        let log = self.log_with(request_id).await;
        log.lines()
            .find(|l| l.contains(request_id) && l.contains("access"))
            .unwrap_or_else(|| panic!("no access-log line for {request_id}:\n{log}"))
            .to_string()
    }

    async fn wait_ready(&self, insecure: bool) {
        let url = format!("http://127.0.0.1:{}/readyz", self.metrics_port);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        // Ready when the metrics listener says so and the proxy port answers: in plain HTTP as
        // Portcullis does (every answer carries an X-Request-Id), not merely by accepting.
        let probe = format!("http://127.0.0.1:{}/", self.port);
        loop {
            let ready = match client.get(&url).send().await {
                Ok(r) if r.status() == 200 => r.text().await.is_ok_and(|b| b == "ready\n"),
                _ => false,
            };
            let answering = if insecure {
                client
                    .get(&probe)
                    .header("host", "readiness-probe.invalid")
                    .send()
                    .await
                    .is_ok_and(|r| r.headers().contains_key("x-request-id"))
            } else {
                tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok()
            };
            if ready && answering {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "portcullis did not become ready; its log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Rewrite the configuration file (the same address and metrics keys are kept).
    pub fn rewrite(&self, config: &str, insecure: bool) {
        let tmp = self.dir.path().join("config.yaml.tmp");
        std::fs::write(
            &tmp,
            format!(
                "{}{config}",
                base_config(self.port, self.metrics_port, insecure)
            ),
        )
        .expect("write config");
        std::fs::rename(&tmp, &self.config).expect("replace config");
    }

    pub async fn metrics(&self) -> String {
        metrics_page(self.metrics_port).await
    }

    /// An HTTP client that sends every host name to this proxy.
    pub fn client_for(&self, hosts: &[&str], builder: reqwest::ClientBuilder) -> reqwest::Client {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let mut b = builder.redirect(reqwest::redirect::Policy::none());
        for h in hosts {
            b = b.resolve(h, addr);
        }
        b.build().expect("client")
    }

    /// A client for `hosts` that trusts `server_ca` and presents `identity` (certificate and
    /// key PEM) when asked.
    pub fn tls_client(
        &self,
        hosts: &[&str],
        server_ca: &TestCa,
        identity: Option<(&str, &str)>,
    ) -> reqwest::Client {
        let mut b = reqwest::Client::builder().add_root_certificate(
            reqwest::Certificate::from_pem(server_ca.pem().as_bytes()).expect("CA PEM"),
        );
        if let Some((cert, key)) = identity {
            b = b.identity(
                reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity"),
            );
        }
        self.client_for(hosts, b)
    }

    pub fn https(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port)
    }

    pub fn http(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }
}

pub fn spawn_serve(config: &std::path::Path, log: &std::path::Path, env: &[(&str, &str)]) -> Child {
    let log_file = std::fs::File::create(log).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start portcullis")
}

/// A test certificate authority that issues server certificates.
pub struct TestCa {
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
    pub issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Portcullis Test CA");
        let key = rcgen::KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        let issuer_key = rcgen::KeyPair::from_pem(&key.serialize_pem()).expect("ca key copy");
        let issuer = rcgen::Issuer::new(params, issuer_key);
        TestCa { cert, key, issuer }
    }

    /// A leaf certificate for `names`: (cert PEM, key PEM).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }
}

/// A test server task on a local address, stopped when dropped.
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accept connections on an ephemeral loopback port and hand each to `serve` in a task.
pub async fn serve_each<F, Fut>(serve: F) -> Server
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    serve_each_on("127.0.0.1", serve).await
}

/// The same on an ephemeral port of `ip`.
async fn serve_each_on<F, Fut>(ip: &str, serve: F) -> Server
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        loop {
            if let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp));
            }
        }
    });
    Server { addr, task }
}

/// A gRPC-shaped upstream over h2c (HTTP/2 with prior knowledge): every request is answered
/// with `x-upstream-version` (the HTTP version it arrived in), `x-upstream-saw-NAME` for each
/// forwarding header and `X-Request-Id` it got (every value, joined by `|`) and, as gRPC does, a body of
/// data frames followed by trailers `grpc-status: 0` and `grpc-message: done`. Paths ending
/// in `/Stream` get three frames 150 ms apart; others one frame echoing the request body.
pub async fn grpc_upstream() -> Server {
    grpc_upstream_on("127.0.0.1").await
}

/// [`grpc_upstream`] on an ephemeral port of `ip` (e.g. one an EndpointSlice may name).
pub async fn grpc_upstream_on(ip: &str) -> Server {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    serve_each_on(ip, |tcp| async move {
        let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
            let version = format!("{:?}", req.version());
            let saw: Vec<(String, String)> = [
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "x-request-id",
            ]
            .into_iter()
            .map(|name| {
                let values: Vec<&str> = req
                    .headers()
                    .get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap_or("?"))
                    .collect();
                (format!("x-upstream-saw-{name}"), values.join("|"))
            })
            .collect();
            let streaming = req.uri().path().ends_with("/Stream");
            let body = read_body(req.into_body()).await;
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                if streaming {
                    for i in 0..3u8 {
                        let _ = tx.send(Ok(Frame::data(Bytes::from(vec![b'0' + i])))).await;
                        tokio::time::sleep(Duration::from_millis(150)).await;
                    }
                } else {
                    let _ = tx.send(Ok(Frame::data(body))).await;
                }
                let mut trailers = hyper::HeaderMap::new();
                trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
                trailers.insert(
                    "grpc-message",
                    hyper::header::HeaderValue::from_static("done"),
                );
                let _ = tx.send(Ok(Frame::trailers(trailers))).await;
            });
            let stream = tokio_stream_from(rx);
            let mut resp = Response::builder()
                .header("content-type", "application/grpc")
                .header("x-upstream-version", version);
            for (name, values) in saw {
                resp = resp.header(name, values);
            }
            let resp = resp.body(StreamBody::new(stream)).expect("response");
            Ok::<_, Infallible>(resp)
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(tcp), service)
            .await;
    })
    .await
}

/// A receiver as a stream (without another crate).
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A gRPC-shaped call over h2c with prior knowledge to `addr` for `authority`: the response
/// status, its headers, the data frames with when each arrived, and the trailers.
pub struct GrpcReply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub frames: Vec<(Bytes, Instant)>,
    pub trailers: Option<hyper::HeaderMap>,
}

pub async fn grpc_call(
    addr: SocketAddr,
    authority: &str,
    path: &str,
    body: &'static [u8],
) -> GrpcReply {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .method("POST")
        .uri(format!("http://{authority}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(body)))
        .expect("request");
    let resp = send.send_request(req).await.expect("call");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = resp.into_body();
    let (mut frames, mut trailers) = (Vec::new(), None);
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("frame");
        match frame.into_data() {
            Ok(d) => frames.push((d, Instant::now())),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    GrpcReply {
        status,
        headers,
        frames,
        trailers,
    }
}

/// An HTTPS upstream that requires a client certificate issued by `client_ca` (PEM) and
/// answers every request with `{"upstream": "mtls", "client": NAME}`, NAME being the first DNS
/// name of the certificate the client presented.
pub async fn mtls_upstream(cert_pem: &str, key_pem: &str, client_ca: &str) -> Server {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = |pem: &str| -> Vec<CertificateDer<'static>> {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("PEM certificates")
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(client_ca) {
        roots.add(c).expect("client CA");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .expect("client verifier");
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .expect("key PEM")
        .expect("a key");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(cert_pem), key)
        .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    serve_each(move |tcp| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return; // no or an untrusted client certificate
            };
            let client = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|der| {
                    portcullis::ppl::ClientCertificate::from_der(der.as_ref(), true).ok()
                })
                .and_then(|c| c.san_dns.into_iter().next())
                .unwrap_or_default();
            let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                let body = serde_json::json!({"upstream": "mtls", "client": client});
                async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body.to_string()))))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        }
    })
    .await
}

/// An HTTPS upstream on an ephemeral port of `ip` with this certificate, offering HTTP/2 and
/// HTTP/1.1 by ALPN. Every request gets, gRPC-shaped, headers `x-upstream-version` (the HTTP
/// version it arrived in) and `x-upstream-sni` (the name the client sent), the request body
/// echoed as one data frame, and trailers `grpc-status: 0`.
pub async fn tls_upstream_on(ip: &str, cert_pem: &str, key_pem: &str) -> Server {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM certificates");
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .expect("key PEM")
        .expect("a key");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    serve_each_on(ip, move |tcp| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let sni = tls
                .get_ref()
                .1
                .server_name()
                .unwrap_or_default()
                .to_string();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let sni = sni.clone();
                async move {
                    let version = format!("{:?}", req.version());
                    let body = read_body(req.into_body()).await;
                    let mut trailers = hyper::HeaderMap::new();
                    trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
                    let frames: Vec<Result<hyper::body::Frame<Bytes>, Infallible>> = vec![
                        Ok(hyper::body::Frame::data(body)),
                        Ok(hyper::body::Frame::trailers(trailers)),
                    ];
                    let resp = Response::builder()
                        .header("x-upstream-version", version)
                        .header("x-upstream-sni", sni)
                        .body(http_body_util::StreamBody::new(futures::stream::iter(
                            frames,
                        )))
                        .expect("response");
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        }
    })
    .await
}

/// YAML for a `certificates:` entry, as an indented block scalar.
pub fn cert_entry(cert: &str, key: &str) -> String {
    let indent = |s: &str| {
        s.lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    };
    format!("  - cert: |\n{}    key: |\n{}", indent(cert), indent(key))
}

/// An HTTP/1.1 upstream whose answer can be changed while it runs: every request gets the
/// status in `status` with a JSON body naming the upstream, and `hits` counts them (health
/// probes, whose User-Agent says so, are counted in `probes` instead).
pub struct Switchable {
    pub server: Server,
    pub status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    pub hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub probes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Switchable {
    pub async fn start(name: &str, status: u16) -> Switchable {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
        let code = Arc::new(AtomicU16::new(status));
        let hits = Arc::new(AtomicUsize::new(0));
        let probes = Arc::new(AtomicUsize::new(0));
        let (c, h, p, tag) = (code.clone(), hits.clone(), probes.clone(), name.to_string());
        let server = serve_each(move |tcp| {
            let (c, h, p, tag) = (c.clone(), h.clone(), p.clone(), tag.clone());
            async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let probe = req
                        .headers()
                        .get("user-agent")
                        .is_some_and(|v| v.as_bytes().starts_with(b"portcullis-health-check"));
                    if probe { &p } else { &h }.fetch_add(1, Ordering::SeqCst);
                    let status = c.load(Ordering::SeqCst);
                    let body = serde_json::json!({"upstream": tag}).to_string();
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            }
        })
        .await;
        Switchable {
            server,
            status: code,
            hits,
            probes,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn set(&self, status: u16) {
        self.status
            .store(status, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn probes(&self) -> usize {
        self.probes.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An HTTP/1.1 upstream whose every response is `chunks` body chunks of one byte each, sent
/// `gap` apart after the headers.
pub async fn trickle_upstream(chunks: usize, gap: Duration) -> Server {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    serve_each(move |tcp| async move {
        let service = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
            tokio::spawn(async move {
                for _ in 0..chunks {
                    if tx
                        .send(Ok(Frame::data(Bytes::from_static(b"x"))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(gap).await;
                }
            });
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "text/plain")
                    .body(StreamBody::new(tokio_stream_from(rx)))
                    .expect("response"),
            )
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .await;
    })
    .await
}

/// The `/metrics` page of a Portcullis whose `metrics_address` is on `port`.
pub async fn metrics_page(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body")
}
