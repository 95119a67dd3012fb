//! The Helm chart and the plain manifests, against a real API server.

mod support;

use support::cluster::{kubeconfig, ok, run, tool, unique};

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
            assert!(has("name: IDP_SERVICE_ACCOUNT"));
            assert!(has("--namespace=a") && has("--namespace=b"));
            assert!(has(
                "authenticate_service_url: https://authenticate.example.com"
            ));
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
    ok(
        &kubectl,
        &kc,
        &[
            "wait",
            "--for=condition=Established",
            "crd/policies.portcullis.dev",
            "--timeout=30s",
        ],
    );
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
---
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
            port = upstream.addr.port()
        ),
    );

    let port = support::free_port();
    let metrics = support::free_port();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, support::base_config(port, metrics, true)).unwrap();
    let log = dir.path().join("controller.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "controller",
            "--config",
            &config.display().to_string(),
            "--kubeconfig",
            &sa_kubeconfig.display().to_string(),
        ])
        .args([
            "--ingress-class",
            &class,
            "--lease-namespace",
            &ns,
            "--publish-service",
            &format!("{ns}/{full}"),
        ])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut child);
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
    let cluster_ip = ok(
        &kubectl,
        &kc,
        &[
            "-n",
            &ns,
            "get",
            "service",
            &full,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = ok(
            &kubectl,
            &kc,
            &[
                "-n",
                &ns,
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
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    // Only refusals of our ServiceAccount's permissions count (Events for Ingresses in
    // namespaces being deleted are refused too, for another reason).
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    let denied: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("forbidden") && l.contains("system:serviceaccount"))
        .collect();
    assert!(
        denied.is_empty(),
        "the chart's RBAC was not enough:\n{}",
        denied.join("\n")
    );
    ok(&helm, &kc, &["uninstall", &release, "--namespace", &ns]);
}
