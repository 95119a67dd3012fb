//! The shared test control plane (tests/cluster/): start it once (idempotent), find its tools,
//! and run them. Each test works in namespaces and cluster-scoped names of its own.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_script(script: &str, args: &[&str]) -> String {
    let out = Command::new(repo().join("tests/cluster").join(script))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run tests/cluster/{script}: {e}"));
    assert!(
        out.status.success(),
        "tests/cluster/{script} failed (it needs Go to build the control plane; see tests/cluster/README.md):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Start the control plane if needed; the admin kubeconfig.
pub fn kubeconfig() -> PathBuf {
    let out = run_script("start", &[]);
    let last = out.lines().last().unwrap_or_default().trim().to_string();
    let path = PathBuf::from(&last);
    assert!(
        path.exists(),
        "tests/cluster/start printed no kubeconfig path: {out}"
    );
    path
}

/// The path of a control-plane tool (kubectl, helm, …), built if needed.
pub fn tool(name: &str) -> PathBuf {
    let out = run_script("build", &[name]);
    let prefix = format!("{name}=");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("tests/cluster/build printed no path for {name}: {out}"))
}

/// A name unique to this run, for namespaces and cluster-scoped objects.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// Run a tool with a kubeconfig; returns the output whatever the exit status.
pub fn run(tool: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("portcullis-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("portcullis-helm-config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("portcullis-helm-data"),
        )
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()))
}

/// Wait until the API server serves `crd` (`crd/<name>`). A CRD created a moment ago may have no
/// status yet, and `kubectl wait` then fails at once (".status.conditions accessor error: <nil>")
/// instead of waiting: ask again every 200 ms until 30 s have passed.
pub fn wait_established(kubectl: &Path, kubeconfig: &Path, crd: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = run(
            kubectl,
            kubeconfig,
            &["wait", "--for=condition=Established", crd, "--timeout=30s"],
        );
        if out.status.success() {
            return;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            std::time::Instant::now() < deadline,
            "{crd} not established within 30 s: {err}"
        );
        eprintln!("{crd} not established yet ({}); asking again", err.trim());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Run a tool and insist that it succeeds; its stdout.
pub fn ok(tool: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let out = run(tool, kubeconfig, args);
    assert!(
        out.status.success(),
        "{} {} failed:\n{}{}",
        tool.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}
