//! Operations: Prometheus metrics, `/healthz`, `/readyz` and the live route table (`/routes`)
//! on `metrics_address`, and the plain-HTTP listener that redirects to HTTPS.

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::routes::RouteSink;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

fn text(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = resp.body().len();
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    resp
}

/// `/metrics`, `/healthz`, `/readyz`, `/routes`.
pub struct OpsApp {
    pub metrics: Arc<Metrics>,
    pub sink: Arc<RouteSink>,
}

#[async_trait]
impl ServeHttp for OpsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/metrics" => text(200, "text/plain; version=0.0.4", self.metrics.render()),
            "/healthz" => text(200, "text/plain", b"ok\n".to_vec()),
            "/readyz" => {
                if self.sink.is_ready() {
                    text(200, "text/plain", b"ready\n".to_vec())
                } else if self.sink.is_draining() {
                    text(503, "text/plain", b"not ready: shutting down\n".to_vec())
                } else {
                    text(
                        503,
                        "text/plain",
                        b"not ready: no route table yet\n".to_vec(),
                    )
                }
            }
            "/routes" => {
                let table = route_table(&self.sink);
                if super::request::preferred(&session.req_header().headers)
                    == super::request::Preferred::Html
                {
                    text(
                        200,
                        "text/html; charset=utf-8",
                        route_table_html(&table).into(),
                    )
                } else {
                    text(200, "application/json", table.to_string().into())
                }
            }
            _ => text(404, "text/plain", b"not found\n".to_vec()),
        }
    }
}

/// The published route table, as operators read it: each route's host, path, upstreams
/// (with the address each resolved to), policy in PPL, origin and current diagnostics.
pub fn route_table(sink: &RouteSink) -> serde_json::Value {
    let snapshot = sink.load();
    let routes: Vec<serde_json::Value> = snapshot
        .table
        .routes
        .iter()
        .map(|r| {
            let route = &r.route;
            let mut diagnostics = Vec::new();
            if r.backends.is_empty() {
                diagnostics.push("no ready backend: requests get 503".to_string());
            }
            let upstreams: Vec<serde_json::Value> = r
                .backends
                .iter()
                .map(|b| {
                    if b.addr.is_none() {
                        diagnostics.push(format!(
                            "{} did not resolve: requests to it get 502",
                            b.upstream.url
                        ));
                    }
                    serde_json::json!({
                        "url": b.upstream.url.as_str(),
                        "address": b.addr.map(|a| a.to_string()),
                    })
                })
                .collect();
            let mut host = route.host.to_string();
            if let Some(port) = route.port {
                host.push_str(&format!(":{port}"));
            }
            serde_json::json!({
                "name": route.name,
                "host": host,
                "path": route.path.to_string(),
                "upstreams": upstreams,
                "policy": route.policy.to_ppl(),
                "origin": route.origin,
                "diagnostics": diagnostics,
            })
        })
        .collect();
    serde_json::json!({ "ready": sink.is_ready(), "routes": routes })
}

/// A small HTML view of [`route_table`] (every value escaped).
fn route_table_html(table: &serde_json::Value) -> String {
    use super::reply::escape;
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    };
    let mut rows = String::new();
    for r in table["routes"].as_array().into_iter().flatten() {
        let upstreams: Vec<String> = r["upstreams"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| match u["address"].as_str() {
                Some(a) => format!("{} ({})", cell(&u["url"]), escape(a)),
                None => cell(&u["url"]),
            })
            .collect();
        let diagnostics: Vec<String> = r["diagnostics"]
            .as_array()
            .into_iter()
            .flatten()
            .map(cell)
            .collect();
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            cell(&r["name"]),
            cell(&r["host"]),
            cell(&r["path"]),
            upstreams.join("<br>"),
            cell(&r["policy"]),
            cell(&r["origin"]),
            diagnostics.join("<br>"),
        ));
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Routes</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2em;color:#1e293b}}\
         table{{border-collapse:collapse}}th,td{{border:1px solid #cbd5e1;padding:.3em .6em;\
         text-align:left;vertical-align:top}}th{{background:#f1f5f9}}code{{font-size:.85em}}</style>\
         </head><body><h1>Routes</h1><p>{} routes; ready: {}. JSON: <code>Accept: application/json</code>.</p>\
         <table><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Host</th><th scope=\"col\">Path</th>\
         <th scope=\"col\">Upstreams</th><th scope=\"col\">Policy (PPL)</th><th scope=\"col\">Origin</th>\
         <th scope=\"col\">Diagnostics</th></tr></thead><tbody>{rows}</tbody></table></body></html>\n",
        table["routes"].as_array().map_or(0, Vec::len),
        table["ready"],
    )
}

/// Answers plain HTTP with a redirect to the same URL over HTTPS.
pub struct RedirectApp {
    /// The HTTPS port (omitted from URLs when 443).
    pub https_port: u16,
}

#[async_trait]
impl ServeHttp for RedirectApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = req
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        let host = super::request::host(req).map(|(h, _)| h.to_string());
        // cert-manager's HTTP-01 challenges must not be redirected; standalone mode has no
        // solver to send them to.
        if path.starts_with("/.well-known/acme-challenge/") {
            return text(
                404,
                "text/plain",
                b"no ACME challenge solver configured\n".to_vec(),
            );
        }
        let Some(host) = host else {
            return text(400, "text/plain", b"missing Host header\n".to_vec());
        };
        let port = if self.https_port == 443 {
            String::new()
        } else {
            format!(":{}", self.https_port)
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let location = format!("https://{host}{port}{path}");
        let status = if matches!(req.method, http::Method::GET | http::Method::HEAD) {
            301
        } else {
            308
        };
        let mut resp = text(
            status,
            "text/plain",
            format!("moved to {location}\n").into_bytes(),
        );
        if let Ok(v) = http::HeaderValue::from_str(&location) {
            resp.headers_mut().insert(http::header::LOCATION, v);
        }
        resp
    }
}
