//! Operations: Prometheus metrics, `/healthz` and `/readyz` on `metrics_address`, and the
//! plain-HTTP listener that redirects to HTTPS.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use super::Shared;

/// Every metric Portcullis exports.
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub decisions: IntCounterVec,
    pub reloads: IntCounterVec,
    pub routes: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("portcullis".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "Requests by route and response status",
            ),
            &["route", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from request to response",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["route"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "upstream_errors_total",
                "Failed upstream requests by route and kind",
            ),
            &["route", "kind"],
        )?;
        let decisions = IntCounterVec::new(
            Opts::new("policy_decisions_total", "Policy decisions by outcome"),
            &["decision"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("config_reloads_total", "Configuration reloads by result"),
            &["result"],
        )?;
        let routes = IntGauge::new("routes", "Routes in the table being served")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(routes.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            upstream_errors,
            decisions,
            reloads,
            routes,
        })
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

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
    pub shared: Arc<Shared>,
}

#[async_trait]
impl ServeHttp for OpsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/metrics" => text(
                200,
                "text/plain; version=0.0.4",
                self.shared.metrics.render(),
            ),
            "/healthz" => text(200, "text/plain", b"ok\n".to_vec()),
            "/readyz" => {
                if self.shared.ready.load(Ordering::Acquire) {
                    text(200, "text/plain", b"ready\n".to_vec())
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
        let host = super::request_host(req).map(|(h, _)| h.to_string());
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
