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
    let release = "pc";
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
        ("deployment", "pc-portcullis"),
        ("service", "pc-portcullis"),
        ("service", "pc-portcullis-metrics"),
        ("serviceaccount", "pc-portcullis"),
        ("configmap", "pc-portcullis"),
        ("secret", "pc-portcullis-secrets"),
        ("role", "pc-portcullis"),
        ("rolebinding", "pc-portcullis"),
        ("poddisruptionbudget", "pc-portcullis"),
    ] {
        ok(&kubectl, &kc, &["-n", &ns, "get", kind, name]);
    }
    ok(&kubectl, &kc, &["get", "ingressclass", &class]);
    ok(&kubectl, &kc, &["get", "clusterrole", "pc-portcullis"]);
    let secret = |key: &str| {
        ok(
            &kubectl,
            &kc,
            &[
                "-n",
                &ns,
                "get",
                "secret",
                "pc-portcullis-secrets",
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
            "pc-portcullis",
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
