//! Active health checks (`health_checks`): every backend of a route with a check is probed on
//! the check's interval, over the same kind of connection the proxy opens to it (TLS with the
//! route's CA and client certificate, h2c, …), and marked unhealthy or healthy again after the
//! configured number of results in a row. Selection then leaves unhealthy backends out
//! (see [`crate::routes::balance`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::connectors::TransportConnector;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::upstream;
use crate::config::balancing::{HealthCheck, Probe};
use crate::routes::balance::now_ms;
use crate::routes::{CompiledRoute, RouteSink};

/// How often due probes are looked for.
const TICK: Duration = Duration::from_millis(100);

/// The background service that runs the probes.
pub struct Prober {
    pub sink: Arc<RouteSink>,
}

impl Prober {
    /// Its service name: Pingora's, and the `service` label of `portcullis_runtime_alive_tasks`.
    pub const NAME: &'static str = "health checks";
}

#[async_trait]
impl BackgroundService for Prober {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        crate::metrics::count_tasks_of(Self::NAME);
        let connectors = Arc::new((Connector::new(None), TransportConnector::new(None)));
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let snapshot = self.sink.load();
            let now = now_ms();
            for route in &snapshot.table.routes {
                let Some(check) = &route.route.options.health_check else {
                    continue;
                };
                for (index, backend) in route.backends.iter().enumerate() {
                    if backend.addr.is_none()
                        || backend
                            .state
                            .next_probe
                            .load(std::sync::atomic::Ordering::Relaxed)
                            > now
                    {
                        continue;
                    }
                    backend.state.next_probe.store(
                        now.saturating_add(crate::routes::balance::millis(check.interval)),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    let route = route.clone();
                    let check = check.clone();
                    let connectors = connectors.clone();
                    tokio::spawn(async move {
                        let result = tokio::time::timeout(
                            check.timeout,
                            probe(&route, index, &check, &connectors),
                        )
                        .await
                        .unwrap_or_else(|_| Err("timed out".to_string()));
                        let backend = &route.backends[index];
                        let passed = result.is_ok();
                        if backend.state.probed(
                            passed,
                            check.unhealthy_threshold,
                            check.healthy_threshold,
                        ) {
                            if passed {
                                tracing::info!(route = %route.route.name, upstream = %backend.upstream.url, "health check passes again: upstream back in use");
                            } else {
                                tracing::warn!(route = %route.route.name, upstream = %backend.upstream.url, error = %result.err().unwrap_or_default(), "health check fails: upstream left out");
                            }
                        }
                    });
                }
            }
        }
    }
}

/// One probe of backend `index` of `route`: `Err` says why it failed.
async fn probe(
    route: &CompiledRoute,
    index: usize,
    check: &HealthCheck,
    connectors: &(Connector, TransportConnector),
) -> Result<(), String> {
    let backend = &route.backends[index];
    let addr = backend.addr.ok_or("the upstream's name did not resolve")?;
    let peer = upstream::peer(route, backend, addr, Some(check.timeout));
    match &check.probe {
        Probe::Tcp => connectors
            .1
            .new_stream(&*peer)
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        Probe::Http {
            path,
            host,
            expected,
        } => {
            let (mut session, _) = connectors
                .0
                .get_http_session(&*peer)
                .await
                .map_err(|e| e.to_string())?;
            let mut req =
                RequestHeader::build("GET", path.as_bytes(), None).map_err(|e| e.to_string())?;
            let host = host.clone().unwrap_or_else(|| backend.upstream.authority());
            req.insert_header(http::header::HOST, host)
                .map_err(|e| e.to_string())?;
            req.insert_header("user-agent", "portcullis-health-check")
                .map_err(|e| e.to_string())?;
            session
                .write_request_header(Box::new(req))
                .await
                .map_err(|e| e.to_string())?;
            session
                .finish_request_body()
                .await
                .map_err(|e| e.to_string())?;
            session
                .read_response_header()
                .await
                .map_err(|e| e.to_string())?;
            let status = session
                .response_header()
                .map(|r| r.status.as_u16())
                .ok_or("no response")?;
            if expected.iter().any(|(s, e)| (*s..*e).contains(&status)) {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        }
    }
}
