//! `portcullis routes --from URL`: the live route table of a running Portcullis (its metrics
//! listener's `/routes`) as a table in the terminal.

use anyhow::{Context, bail};
use openidconnect::reqwest;
use serde_json::Value;

/// Fetch `/routes` from `from` (a metrics listener's URL; `/routes` is added when the URL has
/// no path) and render it.
pub fn routes(from: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(from).with_context(|| format!("{from:?} is not a URL"))?;
    if url.path() == "/" || url.path().is_empty() {
        url.set_path("/routes");
    }
    let table: Value = super::block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .context("cannot build an HTTP client")?;
        let resp = client
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        if !resp.status().is_success() {
            bail!("{url} answered {}", resp.status());
        }
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("cannot read {url}"))?;
        serde_json::from_slice::<Value>(&body)
            .with_context(|| format!("{url} did not answer a route table"))
    })??;
    Ok(render(&table))
}

/// The table: one line per route, then each route's policy.
pub fn render(table: &Value) -> String {
    let routes = table["routes"].as_array().cloned().unwrap_or_default();
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let list = |v: &Value, f: &dyn Fn(&Value) -> String| {
        v.as_array()
            .map(|a| a.iter().map(f).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let header = ["NAME", "HOST", "PATH", "UPSTREAMS", "ORIGIN", "DIAGNOSTICS"];
    let mut rows: Vec<[String; 6]> = vec![header.map(String::from)];
    for r in &routes {
        rows.push([
            text(&r["name"]),
            text(&r["host"]),
            text(&r["path"]),
            list(&r["upstreams"], &|u| match u["address"].as_str() {
                Some(a) => format!("{} ({a})", text(&u["url"])),
                None => text(&u["url"]),
            }),
            text(&r["origin"]),
            list(&r["diagnostics"], &text),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "\n{} routes, ready: {}\n",
        routes.len(),
        text(&table["ready"])
    ));
    for r in &routes {
        out.push_str(&format!("\n{} policy: {}\n", text(&r["name"]), r["policy"]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_with_aligned_columns_then_the_policies() {
        let table = serde_json::json!({"ready": true, "routes": [{
            "name": "routes[0]", "host": "app.test", "path": "/*",
            "upstreams": [{"url": "http://10.0.0.1:80/", "address": "10.0.0.1:80"}],
            "policy": [{"allow": {"or": [{"accept": true}]}}],
            "origin": "config.yaml:3:5", "diagnostics": ["no ready backend: requests get 503"],
        }]});
        let out = render(&table);
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with("NAME       HOST      PATH  UPSTREAMS"),
            "{out}"
        );
        assert!(
            lines[1].contains("http://10.0.0.1:80/ (10.0.0.1:80)  config.yaml:3:5"),
            "{out}"
        );
        assert!(out.contains("routes[0] policy: [{\"allow\":{\"or\":[{\"accept\":true}]}}]"));
    }
}
