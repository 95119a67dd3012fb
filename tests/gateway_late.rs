//! Gateway API CRDs installed while the controller runs are picked up without a restart: the
//! core kinds first, then an optional one (BackendTLSPolicy) after those are watched.
//!
//! This test runs on a control plane of its own (tests/cluster with `PORTCULLIS_CLUSTER_DIR` in
//! a temporary directory, stopped and deleted at the end): it needs an API server without the
//! Gateway API CRDs, and the shared one has them once any Gateway test ran; taking them away
//! there would pull them from under the other tests.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Upstream;
use support::controller::{
    Env, cluster, gateway_api_kinds, repo, service_yaml, slice_yaml, upstream_of,
};

/// Stops the private control plane and deletes its directory, also when the test fails.
struct PrivateControlPlane(Option<tempfile::TempDir>);

impl Drop for PrivateControlPlane {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = Command::new(repo().join("tests/cluster/stop"))
                .arg("--purge")
                .env("PORTCULLIS_CLUSTER_DIR", dir.path())
                .stdout(Stdio::null())
                .status();
        }
    }
}

#[test]
fn gateway_api_crds_installed_after_the_start_are_picked_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    // SAFETY: this binary holds this one test, and nothing else of it runs yet (the runtime is
    // built below), so no other thread reads the environment while it changes. Every script
    // of tests/cluster started from here on works on the private control plane.
    unsafe { std::env::set_var("PORTCULLIS_CLUSTER_DIR", dir.path()) };
    let _private = PrivateControlPlane(Some(dir));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let c = cluster();
        let env = Env::start("late", true, &[]).await;
        assert!(
            env.logs().contains("are not installed"),
            "the controller should have started without the Gateway API:\n{}",
            env.logs()
        );

        gateway_api_kinds(c, &["gatewayclasses", "gateways", "httproutes"]);
        let ip = env.cluster.host_ip.clone();
        let up = Upstream::start_on(&ip, "late").await;
        env.must_apply(&service_yaml("late"));
        env.must_apply(&slice_yaml("late", up.addr.port(), &[(&ip, true)]));
        c.kubectl_in(
            &["apply", "-f", "-"],
            Some(
                "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: late}
spec: {controllerName: portcullis.dev/gateway-controller}
",
            ),
        )
        .expect("GatewayClass");
        env.must_apply(
            "apiVersion: portcullis.dev/v1alpha1
kind: Policy
metadata: {name: open}
spec: {allow: {or: [{accept: true}]}}
",
        );
        env.must_apply(
            "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: late
  listeners: [{name: web, port: 80, protocol: HTTP}]
",
        );
        env.must_apply(
            "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  hostnames: [late.test]
  rules:
  - filters: [{type: ExtensionRef, extensionRef: {group: portcullis.dev, kind: Policy, name: open}}]
    backendRefs: [{name: late, port: 80}]
",
        );

        // Discovery is asked again every 30 s while the CRDs are missing.
        let start = Instant::now();
        loop {
            let (status, body) = env.get("late.test", "/").await;
            if status == 200 && upstream_of(&body) == "late" {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(75),
                "the HTTPRoute was not served within 75 s of installing the CRDs \
                 (last answer {status} {body}):\n{}",
                env.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(
            env.logs().contains("are installed now"),
            "the controller should say it found the CRDs:\n{}",
            env.logs()
        );
        // An optional kind installed later still counts: a BackendTLSPolicy for the (plain
        // text) backend makes the gateway insist on TLS, so its requests now fail with a 502.
        gateway_api_kinds(c, &["backendtlspolicies"]);
        env.must_apply(
            "apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: late-tls}
spec:
  targetRefs: [{group: '', kind: Service, name: late}]
  validation: {hostname: late.example, wellKnownCACertificates: System}
",
        );
        let start = Instant::now();
        loop {
            let (status, body) = env.get("late.test", "/").await;
            if status == 502 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(75),
                "the BackendTLSPolicy was not applied within 75 s of installing its CRD \
                 (last answer {status} {body}):\n{}",
                env.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(
            env.logs()
                .contains("more Gateway API CRDs are installed now"),
            "the controller should say it found the CRD:\n{}",
            env.logs()
        );
        // The same process served it: no restart.
        assert_eq!(
            env.logs()
                .matches("waiting for the first list of Ingresses")
                .count(),
            1,
            "{}",
            env.logs()
        );
    });
}
