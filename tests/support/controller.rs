//! `portcullis controller` against the shared test control plane (tests/cluster): a namespace of
//! its own per test, a ServiceAccount bound to exactly the RBAC the Helm chart grants, and the
//! controller run as a process with that account's token. Shared by the controller and fault
//! tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::free_port;

pub const KUBECTL: &str = "kubectl-v1.37.2";
/// The ServiceAccount the chart's RBAC templates name for the release `portcullis-controller`.
pub const SERVICE_ACCOUNT: &str = "portcullis-controller";

/// Tests take it shared; the API server restart test takes it exclusively.
pub static APISERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

pub struct Cluster {
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    pub host_ip: String,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn script(name: &str, args: &[&str]) -> String {
    let out = Command::new(repo().join("tests/cluster").join(name))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run tests/cluster/{name}: {e}"));
    assert!(out.status.success(), "tests/cluster/{name} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Start (or find) the control plane once per test binary; install the CRD and ClusterRole.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let out = script("start", &[]);
        let kubeconfig = PathBuf::from(out.lines().last().unwrap_or_default());
        let cache = std::env::var("PORTCULLIS_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/portcullis")
            });
        let c = Cluster {
            kubeconfig,
            kubectl: cache.join("bin").join(KUBECTL),
            host_ip: script("host-ip", &[]),
        };
        c.apply_file(&repo().join("crds/policies.portcullis.dev.yaml"));
        // The chart's ClusterRole, named portcullis-controller (release name = full name).
        c.kubectl_in(
            &["apply", "-f", "-"],
            Some(&chart_rbac("templates/clusterrole.yaml", "default")),
        )
        .expect("apply the chart's ClusterRole");
        c.wait_established("crd/policies.portcullis.dev");
        c
    })
}

/// Install the Gateway API project's published standard-channel CRDs (fetched and cached by
/// tests/cluster/gateway-api-crds) once per test binary, and wait until they are served.
pub fn gateway_api(c: &Cluster) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        gateway_api_kinds(
            c,
            &[
                "gatewayclasses",
                "gateways",
                "httproutes",
                "grpcroutes",
                "referencegrants",
                "backendtlspolicies",
            ],
        )
    });
}

/// Install the Gateway API CRDs of these kinds (plural names) and wait until they are served.
pub fn gateway_api_kinds(c: &Cluster, kinds: &[&str]) {
    let dir = PathBuf::from(script("gateway-api-crds", &[]));
    for kind in kinds {
        let file = dir.join(format!("gateway.networking.k8s.io_{kind}.yaml"));
        let path = file.display().to_string();
        // Server-side: these CRDs are too large for the last-applied annotation.
        c.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &path])
            .unwrap_or_else(|e| panic!("kubectl apply {path}: {e}"));
        c.wait_established(&format!("crd/{kind}.gateway.networking.k8s.io"));
    }
}

/// One RBAC template of the Helm chart, rendered for the release `portcullis-controller` in
/// `namespace` (its ServiceAccount is then `portcullis-controller`).
pub fn chart_rbac(template: &str, namespace: &str) -> String {
    let helm = super::cluster::tool("helm");
    let out = Command::new(helm)
        .args([
            "template",
            "portcullis-controller",
            "charts/portcullis",
            "--namespace",
            namespace,
            "-s",
            template,
        ])
        .current_dir(repo())
        .output()
        .expect("run helm template");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

impl Cluster {
    /// Run kubectl as admin; stdout on success, stderr on failure.
    pub fn kubectl_in(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        if let Some(text) = stdin {
            use std::io::Write;
            let mut input = child.stdin.take().ok_or("no stdin")?;
            input
                .write_all(text.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// Wait up to 30 s until the CRD `crd` (`crd/NAME`) is served
    /// ([`super::cluster::wait_established`]).
    pub fn wait_established(&self, crd: &str) {
        super::cluster::wait_established(&self.kubectl, &self.kubeconfig, crd);
    }

    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        self.kubectl_in(args, None)
    }

    pub fn apply_file(&self, path: &Path) {
        let p = path.display().to_string();
        self.kubectl(&["apply", "-f", &p])
            .unwrap_or_else(|e| panic!("kubectl apply -f {p}: {e}"));
    }
}

/// One test's namespace and controller.
pub struct Env {
    pub ns: String,
    pub cluster: &'static Cluster,
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub metrics: u16,
    pub insecure: bool,
    pub extra_args: Vec<String>,
    /// Settings added to every replica's configuration file.
    pub extra_config: String,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop();
        let _ = self
            .cluster
            .kubectl(&["delete", "namespace", &self.ns, "--wait=false"]);
        let _ = self.cluster.kubectl(&[
            "delete",
            "clusterrolebinding",
            &format!("portcullis-{}", self.ns),
            "--wait=false",
        ]);
    }
}

impl Env {
    /// A fresh namespace `ctl-NAME-RANDOM`, the controller's ServiceAccount bound to its
    /// ClusterRole, and the controller running with that account.
    pub async fn start(name: &str, insecure: bool, extra_args: &[&str]) -> Env {
        Env::start_on(name, insecure, extra_args, free_port(), "").await
    }

    /// The same on a port chosen beforehand, with `extra_config` in the configuration file
    /// (e.g. sign-in settings that name the port).
    pub async fn start_on(
        name: &str,
        insecure: bool,
        extra_args: &[&str],
        port: u16,
        extra_config: &str,
    ) -> Env {
        let cluster = cluster();
        let ns = format!("ctl-{name}-{:06x}", rand::random::<u32>() & 0xffffff);
        cluster
            .kubectl(&["create", "namespace", &ns])
            .expect("namespace");
        cluster
            .kubectl(&["-n", &ns, "create", "serviceaccount", SERVICE_ACCOUNT])
            .expect("service account");
        cluster
            .kubectl(&[
                "create",
                "clusterrolebinding",
                &format!("portcullis-{ns}"),
                "--clusterrole=portcullis-controller",
                &format!("--serviceaccount={ns}:{SERVICE_ACCOUNT}"),
            ])
            .expect("binding");
        // The chart's Role and RoleBinding for the Lease, in this namespace.
        cluster
            .kubectl_in(
                &["apply", "-f", "-"],
                Some(&chart_rbac("templates/role.yaml", &ns)),
            )
            .expect("the chart's leader-election Role");
        let mut env = Env {
            ns,
            cluster,
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
            port,
            metrics: free_port(),
            insecure,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            extra_config: extra_config.to_string(),
        };
        let kubeconfig = env.dir.path().join("sa-kubeconfig");
        script(
            "sa-kubeconfig",
            &[&env.ns, SERVICE_ACCOUNT, &kubeconfig.display().to_string()],
        );
        env.spawn();
        env.wait_ready().await;
        env
    }

    pub fn spawn(&mut self) {
        let child = self.replica("main", self.port, self.metrics, &self.extra_args.clone());
        self.child = Some(child);
    }

    /// Start a controller process with its own ports; its log is `NAME.log` in the temp dir.
    pub fn replica(&self, name: &str, port: u16, metrics: u16, args: &[String]) -> Child {
        let config = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "{}{}",
                super::base_config(port, metrics, self.insecure),
                self.extra_config
            ),
        )
        .expect("config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .expect("log");
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("controller")
            .arg("--config")
            .arg(&config)
            .arg("--kubeconfig")
            .arg(self.dir.path().join("sa-kubeconfig"))
            .arg("--namespace")
            .arg(&self.ns)
            .args(args)
            .env("POD_NAMESPACE", &self.ns)
            .env("RUST_LOG", "info,portcullis=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start portcullis controller")
    }

    /// Another replica (`NAME.log`) with `args`, once its `/readyz` says ready: the process and
    /// its proxy port.
    pub async fn ready_replica(&self, name: &str, args: &[&str]) -> (Child, u16) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (port, metrics) = (free_port(), free_port());
        let child = self.replica(name, port, metrics, &args);
        let ready = format!("http://127.0.0.1:{metrics}/readyz");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
            assert!(
                Instant::now() < deadline,
                "replica {name} never became ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (child, port)
    }

    /// SIGTERM the main controller and wait for it to exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("main.log")
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub async fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.metrics);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status() == 200
                && tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the controller did not become ready; its log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kubectl apply` of YAML in this namespace.
    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        self.cluster
            .kubectl_in(&["-n", &self.ns, "apply", "-f", "-"], Some(yaml))
    }

    pub fn must_apply(&self, yaml: &str) {
        if let Err(e) = self.apply(yaml) {
            panic!("kubectl apply failed: {e}\n{yaml}");
        }
    }

    /// A client of the test API server (the kubeconfig kubectl uses), for changes faster than
    /// a `kubectl` process can make them.
    pub async fn kube(&self) -> kube::Client {
        // The process's TLS provider, as the binary installs it (the test client's first).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.cluster.kubeconfig)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.cluster.kubeconfig.display()));
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .unwrap_or_else(|e| panic!("kubeconfig: {e}"));
        kube::Client::try_from(config).unwrap_or_else(|e| panic!("kube client: {e}"))
    }

    pub fn k(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        self.cluster.kubectl(&all)
    }

    pub fn client(&self, hosts: &[&str]) -> reqwest::Client {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5));
        for h in hosts {
            b = b.resolve(h, addr);
        }
        b.build().expect("client")
    }

    /// GET http://HOST/PATH through the proxy: (status, body).
    pub async fn get(&self, host: &str, path: &str) -> (u16, String) {
        let url = format!("http://{host}:{}{path}", self.port);
        match self.client(&[host]).get(&url).send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                (s, r.text().await.unwrap_or_default())
            }
            Err(e) => (0, e.to_string()),
        }
    }

    /// Wait until `check` holds for GET host/path (the controller converges asynchronously).
    pub async fn until<F: Fn(u16, &str) -> bool>(
        &self,
        host: &str,
        path: &str,
        what: &str,
        check: F,
    ) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get(host, path).await;
            if check(status, &body) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: GET {host}{path} last gave {status} {body}\ncontroller log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait for a kubectl query to satisfy `check`.
    pub async fn until_kubectl<F: Fn(&str) -> bool>(
        &self,
        args: &[&str],
        what: &str,
        check: F,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.k(args).unwrap_or_else(|e| e);
            if check(&out) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: kubectl {args:?} last gave {out}\ncontroller log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Events of this namespace as `TYPE REASON OBJECT MESSAGE` lines.
    pub async fn until_event(&self, type_: &str, reason: &str, fragment: &str) -> String {
        let template = "{range .items[*]}{.type} {.reason} {.regarding.name} {.note}{\"\\n\"}{end}";
        self.until_kubectl(
            &[
                "get",
                "events.events.k8s.io",
                "-o",
                &format!("jsonpath={template}"),
            ],
            &format!("{type_} Event {reason}"),
            |out| {
                out.lines()
                    .any(|l| l.starts_with(&format!("{type_} {reason} ")) && l.contains(fragment))
            },
        )
        .await
    }
}

pub fn service_yaml(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"
    )
}

/// An EndpointSlice of Service `svc` for `port` (all its endpoints share it), named
/// `{svc}-{port}`: each endpoint an address and whether it is ready. As JSON, which `kubectl
/// apply` takes as YAML.
pub fn slice_yaml(svc: &str, port: u16, endpoints: &[(&str, bool)]) -> String {
    slice_json(svc, port, endpoints).to_string()
}

/// [`slice_yaml`] as the API's type, for a [`kube::Api`].
pub fn slice(
    svc: &str,
    port: u16,
    endpoints: &[(&str, bool)],
) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    serde_json::from_value(slice_json(svc, port, endpoints))
        .unwrap_or_else(|e| panic!("an EndpointSlice: {e}"))
}

fn slice_json(svc: &str, port: u16, endpoints: &[(&str, bool)]) -> serde_json::Value {
    let endpoints: Vec<serde_json::Value> = endpoints
        .iter()
        .map(|(a, ready)| serde_json::json!({"addresses": [a], "conditions": {"ready": ready}}))
        .collect();
    serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-{port}"), "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port}],
        "endpoints": endpoints,
    })
}

pub fn ingress_yaml(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    // Several lines (PPL, as Pomerium's documentation writes it) as a literal block.
    let ann: String = annotations
        .iter()
        .map(|(k, v)| match v.contains('\n') {
            true => format!(
                "    {k}: |\n{}",
                v.lines()
                    .map(|l| format!("      {l}\n"))
                    .collect::<String>()
            ),
            false => format!("    {k}: '{v}'\n"),
        })
        .collect();
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  annotations:
{ann}    test/ignored: x
spec:
  ingressClassName: portcullis
  rules:
  - host: {host}
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {{service: {{name: {svc}, port: {{name: http}}}}}}
"
    )
}

/// A `kubernetes.io/tls` Secret holding `cert` and `key` (PEM).
pub fn tls_secret_yaml(name: &str, cert: &str, key: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: {name}}}
type: kubernetes.io/tls
data:
  tls.crt: {}
  tls.key: {}
",
        b64(cert),
        b64(key)
    )
}

pub fn upstream_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["upstream"].as_str().map(String::from))
        .unwrap_or_default()
}
