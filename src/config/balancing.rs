//! How a route spreads requests over its upstreams and tells healthy ones from failing ones:
//! Pomerium's `load_balancing_policy`, `outlier_detection`, `health_checks` and
//! `healthy_panic_threshold`.
//!
//! Pomerium hands the last three to Envoy as its protocol-buffer messages, so the fields are
//! Envoy's and both spellings protobuf JSON accepts work (`base_ejection_time` and
//! `baseEjectionTime`). Fields that change nothing here are refused with their position rather
//! than accepted and left unused.

use std::time::Duration;

use super::route::map_of as map;
use super::values::Parser;
use crate::source::{Node, Value};

/// Which upstream serves the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LbPolicy {
    /// In turn, weighted by each upstream's weight.
    #[default]
    RoundRobin,
    /// The upstream with the fewest requests in flight (relative to its weight).
    LeastRequest,
    /// Any upstream, weighted.
    Random,
    /// Sticky: the same user (session, else client address) keeps the same upstream while it
    /// is up. Pomerium's `RING_HASH` and `MAGLEV` both map to one consistent-hash ring.
    RingHash,
    Maglev,
}

impl LbPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            LbPolicy::RoundRobin => "ROUND_ROBIN",
            LbPolicy::LeastRequest => "LEAST_REQUEST",
            LbPolicy::Random => "RANDOM",
            LbPolicy::RingHash => "RING_HASH",
            LbPolicy::Maglev => "MAGLEV",
        }
    }

    /// Whether requests of one user stick to one upstream.
    pub fn is_sticky(self) -> bool {
        matches!(self, LbPolicy::RingHash | LbPolicy::Maglev)
    }
}

/// Passive health: an upstream that fails several requests in a row is left out for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Consecutive 5xx answers (connect failures count as 503) that eject.
    pub consecutive_5xx: u32,
    /// The share of those ejections carried out, in percent.
    pub enforcing_consecutive_5xx: u32,
    /// Consecutive 502, 503 and 504 answers (and connect failures) that eject.
    pub consecutive_gateway_failure: u32,
    pub enforcing_consecutive_gateway_failure: u32,
    /// How long the first ejection lasts; the n-th lasts n times as long, up to
    /// `max_ejection_time`.
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    /// At most this share of a route's upstreams is ejected at once (at least one always may
    /// be).
    pub max_ejection_percent: u32,
}

impl Default for OutlierDetection {
    /// Envoy's defaults.
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx: 5,
            enforcing_consecutive_5xx: 100,
            consecutive_gateway_failure: 5,
            enforcing_consecutive_gateway_failure: 0,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

/// Active health: each upstream is probed on a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub timeout: Duration,
    pub interval: Duration,
    /// Failed probes in a row that mark an upstream unhealthy.
    pub unhealthy_threshold: u32,
    /// Passed probes in a row that mark it healthy again.
    pub healthy_threshold: u32,
    pub probe: Probe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A GET of `path`; healthy when the status is in one of the ranges (start inclusive, end
    /// exclusive; 200 alone when none are given).
    Http {
        path: String,
        host: Option<String>,
        expected: Vec<(u16, u16)>,
    },
    /// A TCP connect (and TLS handshake for https upstreams).
    Tcp,
}

/// Field names as protobuf JSON allows them: `base_ejection_time` and `baseEjectionTime` are
/// the same field.
fn field(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

pub fn lb_policy(p: &mut Parser, node: &Node, key: &str) -> Option<LbPolicy> {
    let text = p.string(node, key)?;
    match text.trim().to_ascii_uppercase().as_str() {
        "ROUND_ROBIN" => Some(LbPolicy::RoundRobin),
        "LEAST_REQUEST" => Some(LbPolicy::LeastRequest),
        "RANDOM" => Some(LbPolicy::Random),
        "RING_HASH" => Some(LbPolicy::RingHash),
        "MAGLEV" => Some(LbPolicy::Maglev),
        _ => {
            p.error(
                node.pos,
                key,
                format!(
                    "{text:?} is not one of ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH, MAGLEV"
                ),
            );
            None
        }
    }
}

fn u32_of(p: &mut Parser, node: &Node, key: &str, max: u64) -> Option<u32> {
    p.count(node, key, max).and_then(|n| u32::try_from(n).ok())
}

pub fn outlier_detection(p: &mut Parser, node: &Node, key: &str) -> Option<OutlierDetection> {
    let entries = map(p, node, key)?;
    let mut o = OutlierDetection::default();
    let before = p.errors.len();
    for (k, v) in entries {
        let name = k.key_text();
        let sub = format!("{key}.{name}");
        let slot = match field(&name).as_str() {
            "consecutive5xx" => &mut o.consecutive_5xx,
            "enforcingconsecutive5xx" => &mut o.enforcing_consecutive_5xx,
            "consecutivegatewayfailure" => &mut o.consecutive_gateway_failure,
            "enforcingconsecutivegatewayfailure" => &mut o.enforcing_consecutive_gateway_failure,
            "maxejectionpercent" => &mut o.max_ejection_percent,
            "baseejectiontime" => {
                o.base_ejection_time = p.duration(v, &sub).unwrap_or(o.base_ejection_time);
                continue;
            }
            "maxejectiontime" => {
                o.max_ejection_time = p.duration(v, &sub).unwrap_or(o.max_ejection_time);
                continue;
            }
            // How often Envoy sweeps; ejections here end exactly on time instead.
            "interval" => {
                p.duration(v, &sub);
                continue;
            }
            _ => {
                p.error(
                    k.pos,
                    &sub,
                    format!(
                        "{name:?} is not implemented (implemented: consecutive_5xx, \
                         enforcing_consecutive_5xx, consecutive_gateway_failure, \
                         enforcing_consecutive_gateway_failure, base_ejection_time, \
                         max_ejection_time, max_ejection_percent, interval)"
                    ),
                );
                continue;
            }
        };
        let percent = field(&name).starts_with("enforcing") || field(&name) == "maxejectionpercent";
        if let Some(n) = u32_of(p, v, &sub, if percent { 100 } else { u64::from(u32::MAX) }) {
            *slot = n;
        }
    }
    if o.base_ejection_time.is_zero() {
        p.error(node.pos, key, "base_ejection_time must be more than 0");
    }
    (p.errors.len() == before).then_some(o)
}

pub fn health_checks(p: &mut Parser, node: &Node, key: &str) -> Option<Vec<HealthCheck>> {
    let items: Vec<&Node> = match &node.value {
        Value::Seq(items) => items.iter().collect(),
        Value::Map(_) => vec![node],
        _ => {
            p.error(
                node.pos,
                key,
                format!("expected a list of health checks, found {}", node.kind()),
            );
            return None;
        }
    };
    if items.len() > 1 {
        p.error(
            node.pos,
            key,
            "only one health check per route is implemented",
        );
        return None;
    }
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        out.push(health_check(p, item, &format!("{key}[{i}]"))?);
    }
    Some(out)
}

fn health_check(p: &mut Parser, node: &Node, key: &str) -> Option<HealthCheck> {
    let entries = map(p, node, key)?;
    let before = p.errors.len();
    let (mut timeout, mut interval, mut unhealthy, mut healthy) = (None, None, None, None);
    let mut probe = None;
    for (k, v) in entries {
        let name = k.key_text();
        let sub = format!("{key}.{name}");
        match field(&name).as_str() {
            "timeout" => timeout = p.duration(v, &sub),
            "interval" => interval = p.duration(v, &sub),
            "unhealthythreshold" => unhealthy = u32_of(p, v, &sub, 1000),
            "healthythreshold" => healthy = u32_of(p, v, &sub, 1000),
            "httphealthcheck" => probe = http_probe(p, v, &sub),
            "tcphealthcheck" => probe = Some(Probe::Tcp),
            "grpchealthcheck" | "customhealthcheck" => p.error(
                k.pos,
                &sub,
                "only http_health_check and tcp_health_check are implemented",
            ),
            _ => p.error(
                k.pos,
                &sub,
                format!(
                    "{name:?} is not implemented (implemented: timeout, interval, \
                     unhealthy_threshold, healthy_threshold, http_health_check, tcp_health_check)"
                ),
            ),
        }
    }
    let missing: Vec<&str> = [
        (timeout.is_none(), "timeout"),
        (interval.is_none(), "interval"),
        (unhealthy.is_none(), "unhealthy_threshold"),
        (healthy.is_none(), "healthy_threshold"),
        (probe.is_none(), "http_health_check or tcp_health_check"),
    ]
    .into_iter()
    .filter_map(|(absent, name)| absent.then_some(name))
    .collect();
    if p.errors.len() != before {
        return None;
    }
    if !missing.is_empty() {
        for name in missing {
            p.error(node.pos, key, format!("{name} is required"));
        }
        return None;
    }
    let check = HealthCheck {
        timeout: timeout?,
        interval: interval?,
        unhealthy_threshold: unhealthy?.max(1),
        healthy_threshold: healthy?.max(1),
        probe: probe?,
    };
    if check.interval.is_zero() || check.timeout.is_zero() {
        p.error(node.pos, key, "timeout and interval must be more than 0");
        return None;
    }
    Some(check)
}

fn http_probe(p: &mut Parser, node: &Node, key: &str) -> Option<Probe> {
    let entries = map(p, node, key)?;
    let (mut path, mut host, mut expected) = (None, None, Vec::new());
    for (k, v) in entries {
        let name = k.key_text();
        let sub = format!("{key}.{name}");
        match field(&name).as_str() {
            "path" => {
                path = p.string(v, &sub);
                if path.as_deref().is_some_and(|s| !s.starts_with('/')) {
                    p.error(v.pos, &sub, "must start with /");
                }
            }
            "host" => host = p.string(v, &sub),
            "expectedstatuses" => {
                let Some(ranges) = v.as_seq() else {
                    p.error(v.pos, &sub, "expected a list of {start, end} ranges");
                    continue;
                };
                for (i, r) in ranges.iter().enumerate() {
                    let rk = format!("{sub}[{i}]");
                    let Some(fields) = map(p, r, &rk) else {
                        continue;
                    };
                    let (mut start, mut end) = (None, None);
                    for (fk, fv) in fields {
                        match fk.key_text().as_str() {
                            "start" => start = p.count(fv, &format!("{rk}.start"), 600),
                            "end" => end = p.count(fv, &format!("{rk}.end"), 600),
                            other => {
                                p.error(fk.pos, &format!("{rk}.{other}"), "expected start or end")
                            }
                        }
                    }
                    match (start, end) {
                        (Some(s), Some(e)) if s >= 100 && s < e => {
                            expected.push((s as u16, e as u16))
                        }
                        _ => p.error(
                            r.pos,
                            &rk,
                            "needs start and end (end exclusive, start at least 100)",
                        ),
                    }
                }
            }
            _ => p.error(
                k.pos,
                &sub,
                format!("{name:?} is not implemented (implemented: path, host, expected_statuses)"),
            ),
        }
    }
    let Some(path) = path else {
        p.error(node.pos, key, "path is required");
        return None;
    };
    if expected.is_empty() {
        expected.push((200, 201));
    }
    Some(Probe::Http {
        path,
        host,
        expected,
    })
}

pub fn panic_threshold(p: &mut Parser, node: &Node, key: &str) -> Option<u8> {
    p.count(node, key, 100).map(|n| n as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T>(
        yaml: &str,
        f: fn(&mut Parser, &Node, &str) -> Option<T>,
    ) -> (Option<T>, Vec<String>) {
        let node = Node::parse(yaml).unwrap();
        let mut p = Parser::new("test.yaml");
        let out = f(&mut p, &node, "k");
        (out, p.errors.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn policies_by_envoy_name_any_case() {
        assert_eq!(
            parse("least_request", lb_policy).0,
            Some(LbPolicy::LeastRequest)
        );
        assert_eq!(parse("MAGLEV", lb_policy).0, Some(LbPolicy::Maglev));
        let (out, errors) = parse("LEAST_CONN", lb_policy);
        assert_eq!(out, None);
        assert!(errors[0].contains("LEAST_REQUEST"), "{errors:?}");
    }

    #[test]
    fn outlier_detection_in_both_spellings_with_envoy_defaults() {
        let (o, errors) = parse(
            "{consecutive_5xx: 2, baseEjectionTime: 3s, maxEjectionPercent: 50}",
            outlier_detection,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let o = o.unwrap();
        assert_eq!(o.consecutive_5xx, 2);
        assert_eq!(o.base_ejection_time, Duration::from_secs(3));
        assert_eq!(o.max_ejection_percent, 50);
        assert_eq!(o.enforcing_consecutive_5xx, 100);
        assert_eq!(o.enforcing_consecutive_gateway_failure, 0);
    }

    #[test]
    fn outlier_fields_we_do_not_use_are_refused_with_their_position() {
        let (o, errors) = parse(
            "{consecutive_5xx: 2,\n success_rate_minimum_hosts: 3}",
            outlier_detection,
        );
        assert!(o.is_none());
        assert!(
            errors[0].contains("success_rate_minimum_hosts"),
            "{errors:?}"
        );
        assert!(errors[0].contains(":2:"), "{errors:?}");
        let (o, errors) = parse("{max_ejection_percent: 150}", outlier_detection);
        assert!(o.is_none() && !errors.is_empty());
    }

    #[test]
    fn http_health_check_with_required_fields() {
        let (hc, errors) = parse(
            "- timeout: 1s\n  interval: 2s\n  unhealthy_threshold: 2\n  healthy_threshold: 1\n  \
             http_health_check: {path: /healthz, expected_statuses: [{start: 200, end: 300}]}",
            health_checks,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let hc = &hc.unwrap()[0];
        assert_eq!(hc.interval, Duration::from_secs(2));
        assert_eq!(
            hc.probe,
            Probe::Http {
                path: "/healthz".into(),
                host: None,
                expected: vec![(200, 300)]
            }
        );
        let (hc, errors) = parse("- interval: 2s\n  tcp_health_check: {}", health_checks);
        assert!(hc.is_none());
        assert!(
            errors.iter().any(|e| e.contains("timeout is required")),
            "{errors:?}"
        );
        let (hc, errors) = parse(
            "- {timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, grpc_health_check: {}}",
            health_checks,
        );
        assert!(hc.is_none());
        assert!(errors[0].contains("grpc_health_check"), "{errors:?}");
    }
}
