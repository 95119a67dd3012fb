//! Choosing a route's upstream: the load-balancing policy, passive health (ejection after
//! consecutive failures) and active health (probe results), with Envoy's panic mode when too
//! few upstreams are healthy.
//!
//! Health lives in an [`EndpointState`] per route and upstream. A new route table takes the
//! states of the previous one for the same route, URL and address, so a reload or an
//! EndpointSlice change neither forgets an ejection nor resets the requests in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::balancing::{LbPolicy, OutlierDetection};

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Milliseconds since the process started using this clock.
pub fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

/// What is known about one upstream of one route.
#[derive(Debug, Default)]
pub struct EndpointState {
    /// Requests sent to it and not finished, counted only on routes whose balancer reads the
    /// count ([`Balancer::in_flight`]); 0 on the others.
    active: AtomicU32,
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    /// Ejections so far (the n-th lasts n × the base time).
    ejections: AtomicU32,
    /// Ejected until this time ([`now_ms`]); 0 when never ejected.
    ejected_until: AtomicU64,
    /// Active health: marked down by probes.
    unhealthy: AtomicBool,
    probe_failures: AtomicU32,
    probe_passes: AtomicU32,
    /// When the next probe is due ([`now_ms`]).
    pub next_probe: AtomicU64,
}

impl EndpointState {
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self, now: u64) -> bool {
        now < self.ejected_until.load(Ordering::Relaxed)
    }

    pub fn is_unhealthy(&self) -> bool {
        self.unhealthy.load(Ordering::Relaxed)
    }

    fn is_healthy(&self, now: u64) -> bool {
        !self.is_unhealthy() && !self.is_ejected(now)
    }

    /// Count a request as in flight until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// A probe's result; `true` when this flipped the upstream's health.
    pub fn probed(&self, passed: bool, unhealthy_threshold: u32, healthy_threshold: u32) -> bool {
        if passed {
            self.probe_failures.store(0, Ordering::Relaxed);
            let passes = self.probe_passes.fetch_add(1, Ordering::Relaxed) + 1;
            passes >= healthy_threshold && self.unhealthy.swap(false, Ordering::Relaxed)
        } else {
            self.probe_passes.store(0, Ordering::Relaxed);
            let failures = self.probe_failures.fetch_add(1, Ordering::Relaxed) + 1;
            failures >= unhealthy_threshold && !self.unhealthy.swap(true, Ordering::Relaxed)
        }
    }
}

/// A request in flight to an upstream: counted for `LEAST_REQUEST` until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<EndpointState>);

impl InFlight {
    pub fn state(&self) -> &Arc<EndpointState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Upstreams already tried by one request (indexes below 64; a route with more upstreams may
/// retry one of the others twice, which is harmless).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tried(u64);

impl Tried {
    pub fn contains(self, i: usize) -> bool {
        i < 64 && self.0 & (1 << i) != 0
    }
    pub fn add(&mut self, i: usize) {
        if i < 64 {
            self.0 |= 1 << i;
        }
    }
}

/// How a route balances, prepared when the table is compiled.
pub struct Balancer {
    pub policy: LbPolicy,
    pub outlier: Option<OutlierDetection>,
    /// Percent of healthy upstreams below which all are used.
    pub panic_threshold: u8,
    /// Whether any health is tracked (outlier detection or probes): without, selection skips
    /// the health checks entirely.
    pub tracks_health: bool,
    /// The consistent-hash ring of sticky policies, and which upstream each address is.
    pub ring: Option<(pingora_ketama::Continuum, Vec<(SocketAddr, usize)>)>,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("policy", &self.policy)
            .field("outlier", &self.outlier)
            .field("panic_threshold", &self.panic_threshold)
            .finish_non_exhaustive()
    }
}

/// An upstream as selection sees it.
pub struct Candidate<'a> {
    pub weight: u32,
    pub addr: Option<SocketAddr>,
    pub state: &'a EndpointState,
}

impl Balancer {
    /// Whether selection reads the requests in flight (`LEAST_REQUEST`).
    pub fn counts_in_flight(&self) -> bool {
        self.policy == LbPolicy::LeastRequest
    }

    /// A request sent to `state`'s upstream, counted in flight until the guard is dropped when
    /// selection reads the count ([`Self::counts_in_flight`]); else nothing, which spares every
    /// request two atomic operations and a reference count.
    pub fn in_flight(&self, state: &Arc<EndpointState>) -> Option<InFlight> {
        self.counts_in_flight().then(|| state.start())
    }

    pub fn new(
        policy: LbPolicy,
        outlier: Option<OutlierDetection>,
        probes: bool,
        panic_threshold: Option<u8>,
        upstreams: &[(Option<SocketAddr>, u32)],
    ) -> Balancer {
        let ring = policy.is_sticky().then(|| {
            let mut buckets = Vec::new();
            let mut index = Vec::new();
            for (i, (addr, weight)) in upstreams.iter().enumerate() {
                if let Some(addr) = addr
                    && !index.iter().any(|(a, _)| a == addr)
                {
                    buckets.push(pingora_ketama::Bucket::new(*addr, (*weight).max(1)));
                    index.push((*addr, i));
                }
            }
            (pingora_ketama::Continuum::new(&buckets), index)
        });
        Balancer {
            policy,
            tracks_health: outlier.is_some() || probes,
            outlier,
            panic_threshold: panic_threshold.unwrap_or(50),
            ring,
        }
    }

    /// The upstream for the next attempt of a request: by policy among the healthy ones not
    /// tried yet; all untried ones when too few are healthy (panic mode) or none is left.
    /// `round_robin` gives the weighted round-robin order's next pick, `key` the sticky key.
    pub fn pick(
        &self,
        upstreams: &[Candidate<'_>],
        tried: Tried,
        key: Option<&[u8]>,
        mut round_robin: impl FnMut() -> usize,
    ) -> Option<usize> {
        let n = upstreams.len();
        if n == 0 {
            return None;
        }
        let now = if self.tracks_health { now_ms() } else { 0 };
        let healthy = |i: usize| !self.tracks_health || upstreams[i].state.is_healthy(now);
        let panic = self.tracks_health && {
            let up = (0..n).filter(|&i| healthy(i)).count();
            up * 100 < usize::from(self.panic_threshold) * n
        };
        let usable = |i: usize| !tried.contains(i) && (panic || healthy(i));
        let chosen = match self.policy {
            LbPolicy::RoundRobin => (0..n.max(16)).map(|_| round_robin()).find(|&i| usable(i)),
            LbPolicy::LeastRequest => least_request(upstreams, &usable, round_robin()),
            LbPolicy::Random => weighted_random(upstreams, &usable),
            LbPolicy::RingHash | LbPolicy::Maglev => match (key, &self.ring) {
                (Some(key), Some((ring, index))) => ring
                    .node_iter(key)
                    .take(n * 2 + 16)
                    .filter_map(|addr| index.iter().find(|(a, _)| a == addr).map(|(_, i)| *i))
                    .find(|&i| usable(i)),
                _ => weighted_random(upstreams, &usable),
            },
        };
        // Nothing healthy left to try: any upstream not tried yet, in order.
        chosen.or_else(|| (0..n).find(|&i| !tried.contains(i)))
    }

    /// Count an upstream's answer (its status; a failed connect counts as 503) towards
    /// ejection. `siblings` are the route's upstreams (to keep `max_ejection_percent`).
    pub fn record(&self, state: &EndpointState, status: u16, siblings: &[Candidate<'_>]) {
        let Some(o) = &self.outlier else {
            return;
        };
        if status < 500 {
            state.consecutive_5xx.store(0, Ordering::Relaxed);
            state.consecutive_gateway.store(0, Ordering::Relaxed);
            return;
        }
        let c5 = state.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        let gateway = matches!(status, 502..=504);
        let cg = if gateway {
            state.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            state.consecutive_gateway.store(0, Ordering::Relaxed);
            0
        };
        let enforce =
            |percent: u32| percent >= 100 || (percent > 0 && rand::random_range(0..100) < percent);
        let eject = (c5 >= o.consecutive_5xx && enforce(o.enforcing_consecutive_5xx))
            || (gateway
                && cg >= o.consecutive_gateway_failure
                && enforce(o.enforcing_consecutive_gateway_failure));
        if !eject {
            return;
        }
        let now = now_ms();
        if state.is_ejected(now) {
            return;
        }
        let ejected = siblings.iter().filter(|c| c.state.is_ejected(now)).count();
        let allowed = (siblings.len() * o.max_ejection_percent as usize / 100).max(1);
        if ejected >= allowed {
            return;
        }
        // An upstream that stayed in for longer than the longest ejection starts over.
        let until = state.ejected_until.load(Ordering::Relaxed);
        if until > 0 && now.saturating_sub(until) > millis(o.max_ejection_time) {
            state.ejections.store(0, Ordering::Relaxed);
        }
        let times = state.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let length = o
            .base_ejection_time
            .saturating_mul(times)
            .min(o.max_ejection_time.max(o.base_ejection_time));
        state
            .ejected_until
            .store(now.saturating_add(millis(length)), Ordering::Relaxed);
        state.consecutive_5xx.store(0, Ordering::Relaxed);
        state.consecutive_gateway.store(0, Ordering::Relaxed);
        tracing::warn!(
            ejected_for = ?length,
            consecutive_failures = c5,
            "upstream ejected after consecutive failures"
        );
    }
}

/// The usable upstream with the fewest requests in flight for its weight; ties go to the one
/// after `start` in order.
fn least_request(
    upstreams: &[Candidate<'_>],
    usable: &dyn Fn(usize) -> bool,
    start: usize,
) -> Option<usize> {
    let n = upstreams.len();
    let mut best: Option<(usize, u64, u64)> = None;
    for k in 0..n {
        let i = (start + k) % n;
        if !usable(i) {
            continue;
        }
        let load = u64::from(upstreams[i].state.active()) + 1;
        let weight = u64::from(upstreams[i].weight.max(1));
        // load_i / weight_i < load_b / weight_b, without division.
        if best.is_none_or(|(_, bl, bw)| load * bw < bl * weight) {
            best = Some((i, load, weight));
        }
    }
    best.map(|(i, _, _)| i)
}

fn weighted_random(upstreams: &[Candidate<'_>], usable: &dyn Fn(usize) -> bool) -> Option<usize> {
    let total: u64 = (0..upstreams.len())
        .filter(|&i| usable(i))
        .map(|i| u64::from(upstreams[i].weight.max(1)))
        .sum();
    if total == 0 {
        return None;
    }
    let mut slot = rand::random_range(0..total);
    for (i, u) in upstreams.iter().enumerate() {
        if !usable(i) {
            continue;
        }
        let w = u64::from(u.weight.max(1));
        if slot < w {
            return Some(i);
        }
        slot -= w;
    }
    None
}

/// A duration in whole milliseconds, saturating (configured durations are not bounded).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(n: usize) -> Vec<Arc<EndpointState>> {
        (0..n).map(|_| Arc::new(EndpointState::default())).collect()
    }

    fn candidates(states: &[Arc<EndpointState>]) -> Vec<Candidate<'_>> {
        states
            .iter()
            .enumerate()
            .map(|(i, s)| Candidate {
                weight: 1,
                addr: Some(SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16))),
                state: s,
            })
            .collect()
    }

    fn balancer(policy: LbPolicy, outlier: Option<OutlierDetection>, n: usize) -> Balancer {
        let ups: Vec<_> = (0..n)
            .map(|i| (Some(SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16))), 1))
            .collect();
        Balancer::new(policy, outlier, false, None, &ups)
    }

    #[test]
    fn only_least_request_counts_requests_in_flight() {
        for policy in [
            LbPolicy::RoundRobin,
            LbPolicy::LeastRequest,
            LbPolicy::Random,
            LbPolicy::RingHash,
            LbPolicy::Maglev,
        ] {
            let s = states(2);
            let b = balancer(policy, None, 2);
            let counted = policy == LbPolicy::LeastRequest;
            let guard = b.in_flight(&s[1]);
            assert_eq!(guard.is_some(), counted, "{policy:?}");
            assert_eq!(s[1].active(), u32::from(counted), "{policy:?}");
            drop(guard);
            assert_eq!(s[1].active(), 0, "{policy:?}");
        }
    }

    #[test]
    fn least_request_goes_to_the_idle_upstream() {
        let s = states(3);
        let b = balancer(LbPolicy::LeastRequest, None, 3);
        let _busy: Vec<InFlight> = vec![s[0].start(), s[0].start(), s[2].start()];
        let c = candidates(&s);
        for start in 0..3 {
            assert_eq!(b.pick(&c, Tried::default(), None, || start), Some(1));
        }
        drop(_busy);
        assert_eq!(s[0].active(), 0);
    }

    #[test]
    fn sticky_keys_keep_their_upstream_and_spread() {
        let s = states(4);
        let b = balancer(LbPolicy::RingHash, None, 4);
        let c = candidates(&s);
        let mut seen = std::collections::HashSet::new();
        for user in 0..64 {
            let key = format!("session-{user}");
            let first = b.pick(&c, Tried::default(), Some(key.as_bytes()), || 0);
            for _ in 0..5 {
                assert_eq!(
                    b.pick(&c, Tried::default(), Some(key.as_bytes()), || 0),
                    first
                );
            }
            seen.insert(first);
        }
        assert_eq!(
            seen.len(),
            4,
            "64 users all land on some of 4 upstreams: {seen:?}"
        );
    }

    #[test]
    fn consecutive_failures_eject_for_the_base_time_and_the_rest_take_over() {
        let s = states(2);
        let outlier = OutlierDetection {
            consecutive_5xx: 3,
            base_ejection_time: Duration::from_millis(300),
            ..OutlierDetection::default()
        };
        let b = balancer(LbPolicy::RoundRobin, Some(outlier), 2);
        let c = candidates(&s);
        b.record(&s[0], 500, &c);
        b.record(&s[0], 200, &c);
        b.record(&s[0], 500, &c);
        b.record(&s[0], 503, &c);
        assert!(
            !s[0].is_ejected(now_ms()),
            "a success in between resets the count"
        );
        b.record(&s[0], 502, &c);
        assert!(s[0].is_ejected(now_ms()));
        // Round robin would alternate; the ejected one is skipped.
        let mut rr = 0usize;
        for _ in 0..6 {
            let pick = b.pick(&c, Tried::default(), None, || {
                rr += 1;
                rr % 2
            });
            assert_eq!(pick, Some(1));
        }
        // The other may not be ejected too (at least one may always be; 10 % of 2 is 0).
        for _ in 0..5 {
            b.record(&s[1], 500, &c);
        }
        assert!(!s[1].is_ejected(now_ms()));
        std::thread::sleep(Duration::from_millis(350));
        assert!(!s[0].is_ejected(now_ms()), "back after the ejection time");
    }

    #[test]
    fn too_few_healthy_upstreams_means_all_are_used() {
        let s = states(3);
        let b = Balancer::new(LbPolicy::RoundRobin, None, true, Some(50), &[(None, 1); 3]);
        let c = candidates(&s);
        assert!(s[0].probed(false, 1, 1));
        assert!(s[1].probed(false, 1, 1));
        // One of three healthy is below 50 %: panic mode, round robin over all.
        let mut rr = 0usize;
        let picks: Vec<_> = (0..3)
            .map(|_| {
                b.pick(&c, Tried::default(), None, || {
                    rr += 1;
                    rr % 3
                })
            })
            .collect();
        assert_eq!(picks, vec![Some(1), Some(2), Some(0)]);
        assert!(s[1].probed(true, 1, 1));
        // Two of three healthy: the unhealthy one is skipped.
        for _ in 0..6 {
            let pick = b.pick(&c, Tried::default(), None, || {
                rr += 1;
                rr % 3
            });
            assert_ne!(pick, Some(0));
        }
    }

    #[test]
    fn a_retry_never_goes_to_an_upstream_already_tried() {
        let s = states(3);
        let b = balancer(LbPolicy::LeastRequest, None, 3);
        let c = candidates(&s);
        let mut tried = Tried::default();
        let mut got = Vec::new();
        for _ in 0..3 {
            let i = b.pick(&c, tried, None, || 0).unwrap();
            tried.add(i);
            got.push(i);
        }
        got.sort();
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(b.pick(&c, tried, None, || 0), None);
    }
}
