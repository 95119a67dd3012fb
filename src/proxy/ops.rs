//! Operations: Prometheus metrics, `/healthz` and `/readyz` on `metrics_address`, and the
//! plain-HTTP listener that redirects to HTTPS.

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

/// `/metrics`, `/healthz`, `/readyz`.
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
            _ => text(404, "text/plain", b"not found\n".to_vec()),
        }
    }
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
