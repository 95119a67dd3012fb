//! The Helm chart and the plain manifests, against a real API server.

mod support;

use support::cluster::{kubeconfig, ok, run, tool, unique, wait_established};

fn chart() -> &'static str {
    "charts/portcullis"
}

#[test]
fn chart_lints_and_renders_for_several_value_sets() {
    let helm = tool("helm");
    let kc = kubeconfig();
    ok(&helm, &kc, &["lint", chart(), "--strict"]);
    let sets: &[&[&str]] = &[
        &[],
        &[
            "--set",
            "ingressClass.default=true",
            "--set",
            "replicaCount=3",
        ],
        &[
            "--set",
            "authenticateServiceUrl=https://authenticate.example.com",
            "--set",
            "idp.url=https://tenant.auth0.com/",
            "--set",
            "idp.clientId=abc",
            "--set",
            "idp.clientSecret=s3cr3t",
            "--set",
            "idp.serviceAccount.clientId=m2m",
            "--set",
            "idp.serviceAccount.clientSecret=m2m-secret",
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.grafanaDashboard.enabled=true",
            "--set",
            "watchNamespaces={a,b}",
        ],
        &[
            "--set",
            "secrets.existingSecret=mine",
            "--set",
            "podDisruptionBudget.enabled=false",
        ],
    ];
    for set in sets {
        let mut args = vec!["template", "t", chart(), "--namespace", "ns"];
        args.extend_from_slice(set);
        let out = ok(&helm, &kc, &args);
        assert!(out.contains("kind: Deployment"), "{out}");
        assert!(out.contains("runAsNonRoot: true"));
        assert!(out.contains("readOnlyRootFilesystem: true"));
        assert!(
            out.contains("--publish-service=ns/t-portcullis"),
            "publish-service wired: {out}"
        );
        let has = |s: &str| out.contains(s);
        if set.contains(&"ingressClass.default=true") {
            assert!(has("ingressclass.kubernetes.io/is-default-class: \"true\""));
        }
        if set.contains(&"metrics.serviceMonitor.enabled=true") {
            assert!(has("kind: ServiceMonitor"));
            assert!(has("grafana_dashboard: \"1\""));
            assert!(has("portcullis.json: |-") && has("portcullis_http_requests_total"));
            assert!(has("name: IDP_SERVICE_ACCOUNT"));
            assert!(has("--namespace=a") && has("--namespace=b"));
            assert!(has(
                "authenticate_service_url: https://authenticate.example.com"
            ));
        }
        if !set.contains(&"metrics.grafanaDashboard.enabled=true") {
            assert!(!has("grafana_dashboard"), "the dashboard is off by default");
        }
        if set.contains(&"podDisruptionBudget.enabled=false") {
            assert!(!has("kind: PodDisruptionBudget"));
            assert!(
                !has("kind: Secret\n"),
                "no secret generated when an existing one is named"
            );
            assert!(has("name: mine"));
        }
    }
}

#[test]
fn a_typo_in_values_is_refused_with_its_name() {
    let helm = tool("helm");
    let kc = kubeconfig();
    let out = run(
        &helm,
        &kc,
        &["template", "t", chart(), "--set", "replicaCunt=2"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("replicaCunt"), "{err}");
    let out = run(
        &helm,
        &kc,
        &["template", "t", chart(), "--set", "idp.provider=okta"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth0"));
}

#[test]
fn install_creates_everything_and_upgrade_keeps_the_generated_secrets() {
    let helm = tool("helm");
    let kubectl = tool("kubectl");
    let kc = kubeconfig();
    let ns = unique("pkg");
    let class = unique("pc");
    let release = &unique("pc");
    let full = format!("{release}-portcullis");
    let secret_name = format!("{full}-secrets");
    let metrics_name = format!("{full}-metrics");
    ok(
        &helm,
        &kc,
        &[
            "install",
            release,
            chart(),
            "--namespace",
            &ns,
            "--create-namespace",
            "--set",
            &format!("ingressClass.name={class}"),
        ],
    );
    // Every object was accepted by the API server.
    for (kind, name) in [
        ("deployment", &full),
        ("service", &full),
        ("service", &metrics_name),
        ("serviceaccount", &full),
        ("configmap", &full),
        ("secret", &secret_name),
        ("role", &full),
        ("rolebinding", &full),
        ("poddisruptionbudget", &full),
    ] {
        ok(&kubectl, &kc, &["-n", &ns, "get", kind, name]);
    }
    ok(&kubectl, &kc, &["get", "ingressclass", &class]);
    wait_established(&kubectl, &kc, "crd/policies.portcullis.dev");
    ok(&kubectl, &kc, &["get", "clusterrole", &full]);
    let secret = |key: &str| {
        ok(
            &kubectl,
            &kc,
            &[
                "-n",
                &ns,
                "get",
                "secret",
                &secret_name,
                "-o",
                &format!("jsonpath={{.data.{key}}}"),
            ],
        )
    };
    let before = (
        secret("cookie_secret"),
        secret("shared_secret"),
        secret("signing_key"),
    );
    assert!(!before.0.is_empty() && !before.1.is_empty() && !before.2.is_empty());
    ok(
        &helm,
        &kc,
        &[
            "upgrade",
            release,
            chart(),
            "--namespace",
            &ns,
            "--set",
            &format!("ingressClass.name={class}"),
            "--set",
            "replicaCount=3",
        ],
    );
    let after = (
        secret("cookie_secret"),
        secret("shared_secret"),
        secret("signing_key"),
    );
    assert_eq!(
        before, after,
        "helm upgrade must keep the generated secrets"
    );
    let replicas = ok(
        &kubectl,
        &kc,
        &[
            "-n",
            &ns,
            "get",
            "deployment",
            &full,
            "-o",
            "jsonpath={.spec.replicas}",
        ],
    );
    assert_eq!(replicas, "3");
    // A bad value is refused by install too, and nothing is created.
    let bad_ns = unique("pkg-bad");
    let out = run(
        &helm,
        &kc,
        &[
            "install",
            "bad",
            chart(),
            "--namespace",
            &bad_ns,
            "--create-namespace",
            "--set",
            "service.type=Bogus",
        ],
    );
    assert!(!out.status.success());
    ok(&helm, &kc, &["uninstall", release, "--namespace", &ns]);
    let _ = run(
        &kubectl,
        &kc,
        &["delete", "ingressclass", &class, "--ignore-not-found"],
    );
}

#[test]
fn manifests_are_current_and_apply() {
    let helm = tool("helm");
    let kubectl = tool("kubectl");
    let kc = kubeconfig();
    let rendered = std::process::Command::new("scripts/render-manifests")
        .arg(&helm)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/portcullis.yaml"
    ))
    .unwrap();
    assert!(
        String::from_utf8_lossy(&rendered.stdout) == committed,
        "manifests/portcullis.yaml is stale: run scripts/generate and commit the result"
    );
    // The documented steps: namespace, secrets from gen-secrets, then the manifests.
    let _ = run(&kubectl, &kc, &["create", "namespace", "portcullis"]);
    let env_file = tempfile::NamedTempFile::new().unwrap();
    let secrets = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("gen-secrets")
        .output()
        .unwrap();
    std::fs::write(env_file.path(), &secrets.stdout).unwrap();
    let _ = run(
        &kubectl,
        &kc,
        &[
            "-n",
            "portcullis",
            "delete",
            "secret",
            "portcullis-secrets",
            "--ignore-not-found",
        ],
    );
    ok(
        &kubectl,
        &kc,
        &[
            "-n",
            "portcullis",
            "create",
            "secret",
            "generic",
            "portcullis-secrets",
            &format!("--from-env-file={}", env_file.path().display()),
        ],
    );
    let out = ok(&kubectl, &kc, &["apply", "-f", "manifests/"]);
    assert!(out.contains("deployment.apps/portcullis"), "{out}");
    ok(
        &kubectl,
        &kc,
        &["-n", "portcullis", "get", "deployment", "portcullis"],
    );
}

/// Apply YAML from stdin as admin.
fn apply(kubectl: &std::path::Path, kc: &std::path::Path, ns: &str, yaml: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(kubectl)
        .args([
            "--kubeconfig",
            &kc.display().to_string(),
            "-n",
            ns,
            "apply",
            "-f",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_controller_serves_with_the_charts_service_account() {
    let helm = tool("helm");
    let kubectl = tool("kubectl");
    let kc = kubeconfig();
    let ns = unique("pkg-run");
    let class = unique("pc");
    let release = unique("pc");
    let full = format!("{release}-portcullis");
    ok(
        &helm,
        &kc,
        &[
            "install",
            &release,
            chart(),
            "--namespace",
            &ns,
            "--create-namespace",
            "--set",
            &format!("ingressClass.name={class}"),
        ],
    );
    // The controller runs with the token of the ServiceAccount the chart created: nothing more.
    let dir = tempfile::tempdir().unwrap();
    let sa_kubeconfig = dir.path().join("sa-kubeconfig");
    let out = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cluster/sa-kubeconfig"
    ))
    .args([&ns, &full, &sa_kubeconfig.display().to_string()])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let host_ip = String::from_utf8(
        std::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/cluster/host-ip"
        ))
        .output()
        .unwrap()
        .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let upstream = support::Upstream::start_on(&host_ip, "chart-backend").await;
    apply(
        &kubectl,
        &kc,
        &ns,
        &format!(
            "{backend}---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: app
  annotations:
    portcullis.dev/allow_public_unauthenticated_access: \"true\"
spec:
  ingressClassName: {class}
  rules:
    - host: chart.test
      http:
        paths:
          - path: /
            pathType: Prefix
            backend: {{service: {{name: web, port: {{number: 80}}}}}}
",
            backend = web_backend(&host_ip, upstream.addr.port())
        ),
    );

    let controller = Controller::run(
        dir.path(),
        &sa_kubeconfig,
        true,
        &[
            "--ingress-class",
            &class,
            "--lease-namespace",
            &ns,
            "--publish-service",
            &format!("{ns}/{full}"),
        ],
    );
    let (port, log) = (controller.port, controller.log.clone());
    let client = reqwest::Client::builder()
        .resolve("chart.test", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = client
            .get(format!("http://chart.test:{port}/"))
            .send()
            .await
            && r.status() == 200
        {
            let body = r.text().await.unwrap();
            assert!(body.contains("chart-backend"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the Ingress never served (upstream on {}); controller log:\n{}",
            upstream.addr,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // As leader (its Lease in the release namespace), it wrote the Service's address into the
    // Ingress status; a permission missing from the chart would show up here or in the log.
    status_written_without_refusals(&kubectl, &kc, &ns, &full, &ns, &controller).await;
    ok(&helm, &kc, &["uninstall", &release, "--namespace", &ns]);
}

/// The objects of `helm template` output.
fn documents(rendered: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple::<serde_json::Value>(rendered)
        .unwrap_or_else(|e| panic!("helm template output is not YAML: {e}\n{rendered}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// With `watchNamespaces`, the chart's ServiceAccount may read Secrets in those namespaces only:
/// the controller running with its token serves a TLS Ingress of a watched namespace, and the
/// API server refuses that same token a Secret of another namespace.
#[tokio::test]
async fn watch_namespaces_confine_secret_reads_to_those_namespaces() {
    let helm = tool("helm");
    let kubectl = tool("kubectl");
    let kc = kubeconfig();
    let ns = unique("pkg-wns");
    let watched = unique("pkg-wns-a");
    let other = unique("pkg-wns-b");
    let class = unique("pc");
    let release = unique("pc");
    let full = format!("{release}-portcullis");
    let values = [
        "--set".to_string(),
        format!("watchNamespaces={{{watched}}}"),
        "--set".to_string(),
        format!("ingressClass.name={class}"),
    ];
    let values: Vec<&str> = values.iter().map(String::as_str).collect();

    // Rendered: the only ClusterRole reads cluster-scoped objects (IngressClasses,
    // GatewayClasses) and the ones a Gateway reads across namespaces (ReferenceGrants,
    // Namespace labels), writes GatewayClass status, and nothing else (no Secrets); the
    // namespaced rules are a Role in the watched namespace, bound to the ServiceAccount.
    let mut args = vec!["template", &release, chart(), "--namespace", &ns];
    args.extend_from_slice(&values);
    let docs = documents(&ok(&helm, &kc, &args));
    let kind =
        |k: &str| -> Vec<&serde_json::Value> { docs.iter().filter(|d| d["kind"] == k).collect() };
    let cluster_roles = kind("ClusterRole");
    assert_eq!(cluster_roles.len(), 1, "{cluster_roles:?}");
    assert_eq!(
        cluster_roles[0]["rules"],
        serde_json::json!([
            {
                "apiGroups": ["networking.k8s.io"],
                "resources": ["ingressclasses"],
                "verbs": ["get", "list", "watch"],
            },
            {
                "apiGroups": ["gateway.networking.k8s.io"],
                "resources": ["gatewayclasses", "referencegrants"],
                "verbs": ["get", "list", "watch"],
            },
            {
                "apiGroups": ["gateway.networking.k8s.io"],
                "resources": ["gatewayclasses/status"],
                "verbs": ["get", "patch", "update"],
            },
            {
                "apiGroups": [""],
                "resources": ["namespaces"],
                "verbs": ["get", "list", "watch"],
            },
        ]),
        "with watchNamespaces the ClusterRole must grant only cluster-scoped reads and GatewayClass status"
    );
    let grants_secrets = |role: &serde_json::Value| {
        role["rules"].as_array().into_iter().flatten().any(|r| {
            r["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| x == "secrets" || x == "*")
        })
    };
    let secret_roles: Vec<&str> = kind("Role")
        .into_iter()
        .filter(|r| grants_secrets(r))
        .filter_map(|r| r["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(
        secret_roles,
        [watched.as_str()],
        "Secrets only in {watched}"
    );
    let deployment = &kind("Deployment")[0];
    let container_args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        container_args
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(format!("--namespace={watched}"))),
        "{container_args}"
    );

    // Installed: the watched and the other namespace exist first (Helm creates only the
    // release's); the other one holds a TLS Secret the controller must not be able to read.
    for n in [&watched, &other] {
        ok(&kubectl, &kc, &["create", "namespace", n]);
    }
    // Uninstalled and deleted when the test ends, passed or failed.
    struct Cleanup<'a> {
        helm: &'a std::path::Path,
        kubectl: &'a std::path::Path,
        kc: &'a std::path::Path,
        release: &'a str,
        namespaces: [&'a str; 3],
    }
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let ns = self.namespaces[0];
            let _ = run(self.helm, self.kc, &["uninstall", self.release, "-n", ns]);
            for n in self.namespaces {
                let _ = run(
                    self.kubectl,
                    self.kc,
                    &["delete", "namespace", n, "--wait=false"],
                );
            }
        }
    }
    let _cleanup = Cleanup {
        helm: &helm,
        kubectl: &kubectl,
        kc: &kc,
        release: &release,
        namespaces: [&ns, &watched, &other],
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = support::TestCa::new();
    let tls_secret = |n: &str, name: &str, host: &str| {
        let (cert, key) = ca.issue(&[host]);
        let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert_file, cert).unwrap();
        std::fs::write(&key_file, key).unwrap();
        ok(
            &kubectl,
            &kc,
            &[
                "-n",
                n,
                "create",
                "secret",
                "tls",
                name,
                &format!("--cert={}", cert_file.display()),
                &format!("--key={}", key_file.display()),
            ],
        );
    };
    tls_secret(&other, "elsewhere-tls", "elsewhere.test");
    let mut args = vec![
        "install",
        &release,
        chart(),
        "--namespace",
        &ns,
        "--create-namespace",
    ];
    args.extend_from_slice(&values);
    ok(&helm, &kc, &args);
    ok(&kubectl, &kc, &["get", "clusterrole", &full]);
    let sa_kubeconfig = dir.path().join("sa-kubeconfig");
    let out = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cluster/sa-kubeconfig"
    ))
    .args([&ns, &full, &sa_kubeconfig.display().to_string()])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // (b) The API server refuses this ServiceAccount's token any Secret outside the watched
    // namespace: in the other namespace, across namespaces, and in the release namespace.
    let as_sa = |args: &[&str]| run(&kubectl, &sa_kubeconfig, args);
    let can_i = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&as_sa(&all).stdout)
            .trim()
            .to_string()
    };
    assert_eq!(can_i(&["get", "secrets", "-n", &watched]), "yes");
    assert_eq!(can_i(&["get", "secrets", "-n", &other]), "no");
    assert_eq!(can_i(&["list", "secrets", "-n", &other]), "no");
    assert_eq!(can_i(&["list", "secrets", "--all-namespaces"]), "no");
    assert_eq!(can_i(&["get", "secrets", "-n", &ns]), "no");
    assert_eq!(can_i(&["list", "ingresses", "-n", &other]), "no");
    assert_eq!(can_i(&["list", "ingressclasses"]), "yes");
    let refused = as_sa(&["-n", &other, "get", "secret", "elsewhere-tls"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && err.contains("Forbidden")
            && err.contains(&format!(
                "User \"system:serviceaccount:{ns}:{full}\" cannot get resource \"secrets\""
            ))
            && err.contains(&format!("in the namespace \"{other}\"")),
        "reading a Secret of {other} must be forbidden: {err}"
    );
    let refused = as_sa(&["get", "secrets", "--all-namespaces"]);
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("Forbidden"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // (a) With that token and `--namespace` of the watched namespace, the controller serves a
    // TLS Ingress there, certificate from its Secret included.
    let host_ip = String::from_utf8(
        std::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/cluster/host-ip"
        ))
        .output()
        .unwrap()
        .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let upstream = support::Upstream::start_on(&host_ip, "watched-backend").await;
    tls_secret(&watched, "watched-tls", "watched.test");
    apply(
        &kubectl,
        &kc,
        &watched,
        &format!(
            "{backend}---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: app
  annotations:
    portcullis.dev/allow_public_unauthenticated_access: \"true\"
spec:
  ingressClassName: {class}
  tls:
    - hosts: [watched.test]
      secretName: watched-tls
  rules:
    - host: watched.test
      http:
        paths:
          - path: /
            pathType: Prefix
            backend: {{service: {{name: web, port: {{number: 80}}}}}}
",
            backend = web_backend(&host_ip, upstream.addr.port())
        ),
    );
    let controller = Controller::run(
        dir.path(),
        &sa_kubeconfig,
        false,
        &[
            "--namespace",
            &watched,
            "--ingress-class",
            &class,
            "--lease-namespace",
            &ns,
            "--publish-service",
            &format!("{ns}/{full}"),
        ],
    );
    let port = controller.port;
    let logs = || controller.logs();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .resolve("watched.test", ([127, 0, 0, 1], port).into())
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = client
            .get(format!("https://watched.test:{port}/"))
            .send()
            .await
            && r.status() == 200
        {
            let body = r.text().await.unwrap();
            assert!(body.contains("watched-backend"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the watched namespace's TLS Ingress never served; controller log:\n{}",
            logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // As leader (Lease in the release namespace) it read the publish Service there and wrote
    // the Ingress status, with no permission refused along the way.
    status_written_without_refusals(&kubectl, &kc, &ns, &full, &watched, &controller).await;
}

/// Waits until Ingress `app` in `ingress_ns` carries the cluster IP of Service `service` (in
/// `ns`) in its status, then asserts that the controller's log shows no refused permission of
/// its ServiceAccount (refusals for other reasons, e.g. Events in namespaces being deleted, do
/// not count).
async fn status_written_without_refusals(
    kubectl: &std::path::Path,
    kc: &std::path::Path,
    ns: &str,
    service: &str,
    ingress_ns: &str,
    controller: &Controller,
) {
    let cluster_ip = ok(
        kubectl,
        kc,
        &[
            "-n",
            ns,
            "get",
            "service",
            service,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = ok(
            kubectl,
            kc,
            &[
                "-n",
                ingress_ns,
                "get",
                "ingress",
                "app",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[*].ip}",
            ],
        );
        if !cluster_ip.is_empty() && status.contains(&cluster_ip) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status never written (got {status:?}, want {cluster_ip}); controller log:\n{}",
            controller.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let logs = controller.logs();
    let denied: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("forbidden") && l.contains("system:serviceaccount"))
        .collect();
    assert!(
        denied.is_empty(),
        "the chart's RBAC was not enough:\n{}",
        denied.join("\n")
    );
}

/// `portcullis controller` run as a ServiceAccount (its kubeconfig) with `args`, on a port of
/// its own; its log is `controller.log` in `dir`. Killed when dropped.
struct Controller {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Controller {
    fn run(
        dir: &std::path::Path,
        sa_kubeconfig: &std::path::Path,
        insecure: bool,
        args: &[&str],
    ) -> Controller {
        let port = support::free_port();
        let metrics = support::free_port();
        let config = dir.join("config.yaml");
        std::fs::write(&config, support::base_config(port, metrics, insecure)).unwrap();
        let log = dir.join("controller.log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("controller")
            .arg("--config")
            .arg(&config)
            .arg("--kubeconfig")
            .arg(sa_kubeconfig)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Controller { child, port, log }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Service `web` (port 80) and its EndpointSlice pointing at `host_ip:port`, as YAML.
fn web_backend(host_ip: &str, port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  ports: [{{name: http, port: 80, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: http, port: {port}, protocol: TCP}}]
endpoints:
  - addresses: [\"{host_ip}\"]
    conditions: {{ready: true}}
"
    )
}
