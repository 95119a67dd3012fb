//! Every metric Portcullis exports, registered once at start and handed to whoever records
//! into it (the proxy, the route sink, the producers).

use std::sync::{Mutex, OnceLock};

use prometheus::{
    Encoder, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

mod sharded;
pub use sharded::{ShardedCounter, ShardedCounterVec, ShardedHistogram, ShardedHistogramVec};

/// Reads how many log lines the non-blocking log writer has dropped so far.
type DroppedLines = Box<dyn Fn() -> u64 + Send + Sync>;
static DROPPED_LOG_LINES: OnceLock<DroppedLines> = OnceLock::new();

/// Tell the metrics where the log writer counts the lines it dropped (set once, at start).
pub fn count_dropped_log_lines(read: DroppedLines) {
    let _ = DROPPED_LOG_LINES.set(read);
}

/// The runtimes whose tasks `portcullis_runtime_alive_tasks` counts, by the service they run.
static RUNTIMES: Mutex<Vec<(&'static str, tokio::runtime::Handle)>> = Mutex::new(Vec::new());

/// Count the tasks alive on the runtime the caller runs on as `service`'s. Each background
/// service calls it when it starts: its own tasks and every task it spawns run there.
pub fn count_tasks_of(service: &'static str) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let mut runtimes = RUNTIMES.lock().unwrap_or_else(|e| e.into_inner());
        runtimes.retain(|(s, _)| *s != service);
        runtimes.push((service, handle));
    }
}

/// Every metric Portcullis exports.
pub struct Metrics {
    pub registry: Registry,
    /// The three series every request records into are kept per thread (`sharded`): recording
    /// takes no atomic read-modify-write.
    pub requests: ShardedCounterVec,
    pub duration: ShardedHistogramVec,
    pub upstream_errors: IntCounterVec,
    pub decisions: ShardedCounterVec,
    pub reloads: IntCounterVec,
    pub routes: IntGauge,
    /// Sign-ins that reached the callback, by result (`completed`, `failed`).
    pub sign_ins: IntCounterVec,
    /// Time to build and swap in a new route table.
    pub publish_seconds: prometheus::Histogram,
    /// Failed attempts of the controller's watches, by kind: while it grows, the API server
    /// cannot be reached and the routes served may be stale.
    pub watch_errors: IntCounterVec,
    /// Log lines the non-blocking writer dropped because its buffer was full.
    pub log_lines_dropped: IntCounter,
    /// Tasks alive on each background service's runtime, read when the metrics are rendered.
    runtime_tasks: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("portcullis".into()), None)?;
        let requests = ShardedCounterVec::new(
            Opts::new(
                "http_requests_total",
                "Requests by route and response status",
            ),
            &["route", "status"],
        )?;
        let duration = sharded::histogram_vec(
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
        let decisions = ShardedCounterVec::new(
            Opts::new(
                "policy_decisions_total",
                "Policy decisions by route and outcome",
            ),
            &["route", "decision"],
        )?;
        let sign_ins = IntCounterVec::new(
            Opts::new(
                "sign_ins_total",
                "Sign-ins that came back from the identity provider, by result (completed: a session was issued; failed: an error page)",
            ),
            &["result"],
        )?;
        let publish_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "config_publish_seconds",
                "Time to build and swap in a new route table",
            )
            .buckets(vec![0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
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
        registry.register(Box::new(sign_ins.clone()))?;
        registry.register(Box::new(publish_seconds.clone()))?;
        let watch_errors = IntCounterVec::new(
            Opts::new(
                "controller_watch_errors_total",
                "Failed attempts of the controller's watches of the API server, by kind (while it grows, the routes served may be stale)",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(watch_errors.clone()))?;
        let log_lines_dropped = IntCounter::new(
            "log_lines_dropped_total",
            "Log lines dropped because the log writer's buffer was full",
        )?;
        registry.register(Box::new(log_lines_dropped.clone()))?;
        let runtime_tasks = IntGaugeVec::new(
            Opts::new(
                "runtime_alive_tasks",
                "Tasks alive on the runtime of each background service (the Kubernetes controller, the configuration reload, health checks, identity provider discovery); a count that keeps growing is a leak",
            ),
            &["service"],
        )?;
        registry.register(Box::new(runtime_tasks.clone()))?;
        // Exported from the start (at zero), so dashboards and alerts see them before the
        // first sign-in or watch failure.
        for result in ["completed", "failed"] {
            sign_ins.with_label_values(&[result]);
        }
        for kind in [
            "Ingress",
            "IngressClass",
            "Service",
            "EndpointSlice",
            "Secret",
            "Policy",
        ] {
            watch_errors.with_label_values(&[kind]);
        }
        Ok(Metrics {
            registry,
            requests,
            duration,
            upstream_errors,
            decisions,
            reloads,
            routes,
            sign_ins,
            publish_seconds,
            watch_errors,
            log_lines_dropped,
            runtime_tasks,
        })
    }

    pub fn render(&self) -> Vec<u8> {
        if let Some(read) = DROPPED_LOG_LINES.get() {
            let (now, seen) = (read(), self.log_lines_dropped.get());
            if now > seen {
                self.log_lines_dropped.inc_by(now - seen);
            }
        }
        for (service, handle) in RUNTIMES.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let alive = handle.metrics().num_alive_tasks();
            self.runtime_tasks
                .with_label_values(&[service])
                .set(i64::try_from(alive).unwrap_or(i64::MAX));
        }
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Statuses whose request counter a route keeps a handle for; others are looked up by label.
const COMMON_STATUSES: [u16; 24] = [
    200, 201, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 413, 429, 431, 495,
    499, 500, 502, 503, 504,
];

/// Policy outcomes counted per route, in [`RouteMetrics::decision`]'s order.
pub const DECISIONS: [&str; 3] = ["allow", "deny", "login"];

/// One route's metric series, resolved on first use and then reused: the request path hashes
/// no label and formats no status for them. Held by the compiled route, so a route that is
/// never requested costs only empty slots.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    duration: OnceLock<ShardedHistogram>,
    decisions: [OnceLock<ShardedCounter>; DECISIONS.len()],
    statuses: [OnceLock<ShardedCounter>; COMMON_STATUSES.len()],
}

impl RouteMetrics {
    /// Count a response with `status` for `route`.
    pub fn request(&self, m: &Metrics, route: &str, status: u16) {
        let series = || m.requests.with_label_values(&[route, &status.to_string()]);
        match COMMON_STATUSES.iter().position(|&s| s == status) {
            Some(i) => self.statuses[i].get_or_init(series).inc(),
            None => series().inc(),
        }
    }

    pub fn duration(&self, m: &Metrics, route: &str, seconds: f64) {
        self.duration
            .get_or_init(|| m.duration.with_label_values(&[route]))
            .observe(seconds);
    }

    /// Count a policy decision (`decision` one of [`DECISIONS`]).
    pub fn decision(&self, m: &Metrics, route: &str, decision: &str) {
        let series = || m.decisions.with_label_values(&[route, decision]);
        match DECISIONS.iter().position(|&d| d == decision) {
            Some(i) => self.decisions[i].get_or_init(series).inc(),
            None => series().inc(),
        }
    }
}

#[cfg(test)]
mod route_metrics_tests {
    use super::*;

    #[test]
    fn route_handles_count_into_the_labelled_series() {
        let m = Metrics::new().unwrap();
        let r = RouteMetrics::default();
        r.request(&m, "a", 200);
        r.request(&m, "a", 200);
        r.request(&m, "a", 418);
        r.decision(&m, "a", "deny");
        r.duration(&m, "a", 0.002);
        assert_eq!(m.requests.with_label_values(&["a", "200"]).get(), 2);
        assert_eq!(m.requests.with_label_values(&["a", "418"]).get(), 1);
        assert_eq!(m.decisions.with_label_values(&["a", "deny"]).get(), 1);
        assert_eq!(m.duration.with_label_values(&["a"]).sample_count(), 1);
    }
}
