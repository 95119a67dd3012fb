//! The Grafana dashboard shipped in the chart: valid JSON, well-formed panels, and every metric
//! it queries is one a running Portcullis exports (scraped from its `/metrics` after traffic
//! that makes every metric appear).

mod support;

use std::collections::BTreeSet;

use support::{Proxy, Upstream};

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/portcullis/dashboards/portcullis.json"
);

/// Every `expr` in the dashboard.
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| exprs(i, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_dashboard_is_valid_and_queries_only_exported_metrics() {
    let text = std::fs::read_to_string(DASHBOARD).expect("dashboard file");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    let ids: BTreeSet<i64> = panels.iter().filter_map(|p| p["id"].as_i64()).collect();
    assert_eq!(ids.len(), panels.len(), "every panel has its own id");
    for p in panels {
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{p}");
        assert!(
            targets
                .iter()
                .all(|t| t["expr"].is_string() && t["refId"].is_string()),
            "{p}"
        );
    }
    let mut all = Vec::new();
    exprs(&dash, &mut all);
    let name = regex::Regex::new(r"portcullis_[a-z0-9_]+").expect("regex");
    let queried: BTreeSet<String> = all
        .iter()
        .flat_map(|e| name.find_iter(e).map(|m| m.as_str().to_string()))
        .collect();
    assert!(queried.len() >= 6, "{queried:?}");

    // A running binary, with traffic for every labelled metric: an allowed request, a denied
    // one and an upstream failure.
    let up = Upstream::start("up").await;
    let dead = support::free_port();
    let config = format!(
        "routes:
  - from: http://ok.test
    to: {u}
    allow_public_unauthenticated_access: true
  - from: http://no.test
    to: {u}
  - from: http://dead.test
    to: http://127.0.0.1:{dead}
    allow_public_unauthenticated_access: true
",
        u = up.url()
    );
    let proxy = Proxy::start(&config, true).await;
    let c = proxy.client_for(
        &["ok.test", "no.test", "dead.test"],
        reqwest::Client::builder(),
    );
    for (host, status) in [("ok.test", 200), ("no.test", 403), ("dead.test", 502)] {
        let r = c.get(proxy.http(host, "/")).send().await.expect("request");
        assert_eq!(r.status(), status, "{host}");
    }
    let scraped = proxy.metrics().await;
    // Names and types from the exposition's TYPE lines.
    let exported: Vec<(String, String)> = scraped
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    for q in &queried {
        let found = exported.iter().any(|(n, t)| {
            n == q
                || (t == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| q.strip_suffix(s) == Some(n.as_str())))
        });
        assert!(
            found,
            "{q} is queried by the dashboard but not exported:\n{scraped}"
        );
    }
}
