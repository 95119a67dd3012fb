//! Counters and a histogram that a request records into without an atomic read-modify-write.
//!
//! Prometheus's own counter adds with one atomic addition, and its histogram with four (the
//! count that picks the hot half, the bucket, the sum and the half's count). On x86 each is a
//! locked instruction, which costs tens of cycles however short it is. Here every thread that
//! records gets cells of its own, made on its first record, which only that thread writes: a
//! load and a store, no lock. A scrape adds the threads' cells up. Threads after the first
//! [`OWNED`] share one more set of cells and add to it atomically, so any number of threads
//! counts correctly.
//!
//! Both plug into the `prometheus` crate's own vectors (labels, registration, the text format):
//! [`ShardedU64`] as the value of a `GenericCounterVec`, [`ShardedHistogram`] as the metric of a
//! `MetricVec`.
//!
//! What it costs: memory, per series and per thread that records into it. A series holds room
//! for [`SHARDS`] sets of cells (16 bytes each) and makes a set for each thread on its first
//! record: 8 bytes for a counter, 8 for each bucket and the sum for a histogram (the duration
//! histogram's 15 counts and sum: 128 bytes, with the allocator's rounding about 160). Only series
//! that get traffic have them (a route's series are made on its first request), and at most
//! [`SHARDS`] sets each: a busy route's three counters and histogram take at most about 4.5 KiB,
//! against about 2 KiB with prometheus's own. With more than [`OWNED`] threads recording (a node
//! with more processors than that, one worker each), the later ones share the last set and add
//! to it atomically, as prometheus's own metrics do.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use prometheus::HistogramOpts;
use prometheus::core::{Atomic, Describer, Metric, MetricVec, MetricVecBuilder};
use prometheus::proto;

/// Threads with cells of their own.
const OWNED: usize = 15;
/// Their cells, and the one set every later thread shares.
const SHARDS: usize = OWNED + 1;

/// The next thread's shard.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard, given on its first record (`usize::MAX` before).
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The calling thread's shard: below [`OWNED`] its own, else the shared one.
#[inline]
fn shard() -> usize {
    SHARD.with(|s| {
        let i = s.get();
        if i != usize::MAX {
            return i;
        }
        let i = NEXT_THREAD.fetch_add(1, Relaxed).min(OWNED);
        s.set(i);
        i
    })
}

/// Adds `n` to a cell of `shard`: a load and a store in a thread's own cell (no other thread
/// writes it), an atomic addition in the shared one.
#[inline]
fn add(cell: &AtomicU64, n: u64, shard: usize) {
    if shard < OWNED {
        cell.store(cell.load(Relaxed).wrapping_add(n), Relaxed);
    } else {
        cell.fetch_add(n, Relaxed);
    }
}

/// Adds `v` to a sum kept as an `f64`'s bits, as [`add`] does.
#[inline]
fn add_f64(cell: &AtomicU64, v: f64, shard: usize) {
    let plus = |bits: u64| (f64::from_bits(bits) + v).to_bits();
    if shard < OWNED {
        cell.store(plus(cell.load(Relaxed)), Relaxed);
    } else {
        // The closure always gives a value, so the update cannot fail.
        let _ = cell.fetch_update(Relaxed, Relaxed, |bits| Some(plus(bits)));
    }
}

/// One set of cells per shard, each made when its thread first records.
struct Shards<T>([OnceLock<Box<T>>; SHARDS]);

impl<T> Shards<T> {
    fn new() -> Shards<T> {
        Shards(std::array::from_fn(|_| OnceLock::new()))
    }

    /// The cells of `shard`, made by `make` on first use.
    #[inline]
    fn get_or(&self, shard: usize, make: impl FnOnce() -> T) -> &T {
        self.0[shard].get_or_init(|| Box::new(make()))
    }

    /// The cells made so far.
    fn made(&self) -> impl Iterator<Item = &T> {
        self.0.iter().filter_map(|c| c.get().map(|b| &**b))
    }
}

impl<T: Default> Shards<T> {
    /// The cells of `shard`.
    #[inline]
    fn get(&self, shard: usize) -> &T {
        self.get_or(shard, T::default)
    }
}

/// A counter's value, kept per thread ([`GenericCounterVec<ShardedU64>`]).
///
/// [`GenericCounterVec<ShardedU64>`]: prometheus::core::GenericCounterVec
pub struct ShardedU64(Shards<AtomicU64>);

impl Atomic for ShardedU64 {
    type T = u64;

    fn new(val: u64) -> ShardedU64 {
        let s = ShardedU64(Shards::new());
        s.0.get(OWNED).store(val, Relaxed);
        s
    }

    /// Only for a reset (a counter never goes back otherwise): exact when nothing records at
    /// the same time.
    fn set(&self, val: u64) {
        for cell in self.0.made() {
            cell.store(0, Relaxed);
        }
        self.0.get(OWNED).store(val, Relaxed);
    }

    fn get(&self) -> u64 {
        self.0
            .made()
            .fold(0u64, |sum, cell| sum.wrapping_add(cell.load(Relaxed)))
    }

    #[inline]
    fn inc_by(&self, delta: u64) {
        let shard = shard();
        add(self.0.get(shard), delta, shard);
    }

    fn dec_by(&self, delta: u64) {
        let shard = shard();
        add(self.0.get(shard), delta.wrapping_neg(), shard);
    }
}

impl std::fmt::Debug for ShardedU64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ShardedU64").field(&self.get()).finish()
    }
}

/// Counters by label whose value is kept per thread.
pub type ShardedCounterVec = prometheus::core::GenericCounterVec<ShardedU64>;
/// One series of a [`ShardedCounterVec`].
pub type ShardedCounter = prometheus::core::GenericCounter<ShardedU64>;

/// A shard's cells of a histogram: a count per bucket (the last for values above every
/// bound) and the sum's bits.
struct HistogramCells {
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

/// A histogram whose counts and sum are kept per thread: one series of a
/// [`ShardedHistogramVec`].
#[derive(Clone)]
pub struct ShardedHistogram(Arc<HistogramInner>);

struct HistogramInner {
    bounds: Arc<[f64]>,
    labels: Vec<proto::LabelPair>,
    shards: Shards<HistogramCells>,
}

impl ShardedHistogram {
    fn new(bounds: Arc<[f64]>, labels: Vec<proto::LabelPair>) -> ShardedHistogram {
        ShardedHistogram(Arc::new(HistogramInner {
            bounds,
            labels,
            shards: Shards::new(),
        }))
    }

    /// The cells of `shard`, made on first use.
    #[inline]
    fn cells(&self, shard: usize) -> &HistogramCells {
        self.0.shards.get_or(shard, || HistogramCells {
            counts: (0..=self.0.bounds.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum: AtomicU64::new(0),
        })
    }

    /// Records `v`.
    #[inline]
    pub fn observe(&self, v: f64) {
        let bounds = &self.0.bounds;
        // The first bucket whose bound `v` does not pass; the last cell when it passes all.
        let bucket = bounds.iter().position(|&b| v <= b).unwrap_or(bounds.len());
        let shard = shard();
        let cells = self.cells(shard);
        if let Some(count) = cells.counts.get(bucket) {
            add(count, 1, shard);
        }
        add_f64(&cells.sum, v, shard);
    }

    /// The counts of every bucket (not cumulative; the last for values above every bound) and
    /// the sum, over all threads.
    fn totals(&self) -> (Vec<u64>, f64) {
        let mut counts = vec![0u64; self.0.bounds.len() + 1];
        let mut sum = 0.0;
        for cells in self.0.shards.made() {
            for (total, c) in counts.iter_mut().zip(cells.counts.iter()) {
                *total = total.wrapping_add(c.load(Relaxed));
            }
            sum += f64::from_bits(cells.sum.load(Relaxed));
        }
        (counts, sum)
    }

    /// How many values were recorded.
    pub fn sample_count(&self) -> u64 {
        self.totals().0.iter().fold(0, |a, c| a.wrapping_add(*c))
    }
}

impl std::fmt::Debug for ShardedHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedHistogram")
            .field("bounds", &self.0.bounds)
            .field("count", &self.sample_count())
            .finish()
    }
}

impl Metric for ShardedHistogram {
    fn metric(&self) -> proto::Metric {
        let (counts, sum) = self.totals();
        let mut h = proto::Histogram::default();
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(self.0.bounds.len());
        for (bound, count) in self.0.bounds.iter().zip(&counts) {
            cumulative = cumulative.wrapping_add(*count);
            let mut b = proto::Bucket::default();
            b.set_cumulative_count(cumulative);
            b.set_upper_bound(*bound);
            buckets.push(b);
        }
        // The count is every bucket's and the values above them all: it never falls behind the
        // buckets a scrape read.
        let above = counts.last().copied().unwrap_or(0);
        h.set_sample_count(cumulative.wrapping_add(above));
        h.set_sample_sum(sum);
        h.set_bucket(buckets);
        let mut m = proto::Metric::default();
        m.set_label(self.0.labels.clone());
        m.set_histogram(h);
        m
    }
}

/// Builds the series of a [`ShardedHistogramVec`].
#[derive(Clone)]
pub struct ShardedHistogramBuilder {
    bounds: Arc<[f64]>,
}

impl MetricVecBuilder for ShardedHistogramBuilder {
    type M = ShardedHistogram;
    type P = HistogramOpts;

    fn build<V: AsRef<str>>(
        &self,
        opts: &HistogramOpts,
        values: &[V],
    ) -> prometheus::Result<ShardedHistogram> {
        let desc = opts.describe()?;
        if desc.variable_labels.len() != values.len() {
            return Err(prometheus::Error::InconsistentCardinality {
                expect: desc.variable_labels.len(),
                got: values.len(),
            });
        }
        let mut labels = desc.const_label_pairs.clone();
        for (name, value) in desc.variable_labels.iter().zip(values) {
            let mut pair = proto::LabelPair::default();
            pair.set_name(name.clone());
            pair.set_value(value.as_ref().to_owned());
            labels.push(pair);
        }
        labels.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(ShardedHistogram::new(self.bounds.clone(), labels))
    }
}

/// Histograms by label whose counts are kept per thread.
pub type ShardedHistogramVec = MetricVec<ShardedHistogramBuilder>;

/// A [`ShardedHistogramVec`] with `opts`' buckets and these labels. The buckets are taken as
/// prometheus's own histogram takes them: none means its default buckets, they must increase,
/// and a last bound of `+Inf` is dropped (that bucket is always there).
pub fn histogram_vec(
    opts: HistogramOpts,
    labels: &[&str],
) -> prometheus::Result<ShardedHistogramVec> {
    let mut bounds = opts.buckets.clone();
    if bounds.is_empty() {
        bounds = prometheus::DEFAULT_BUCKETS.to_vec();
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(prometheus::Error::Msg(
            "histogram buckets must be in increasing order".into(),
        ));
    }
    if bounds.last() == Some(&f64::INFINITY) {
        bounds.pop();
    }
    let bounds: Arc<[f64]> = bounds.into();
    let opts = opts.variable_labels(labels.iter().map(|l| (*l).to_owned()).collect());
    MetricVec::create(
        proto::MetricType::HISTOGRAM,
        ShardedHistogramBuilder { bounds },
        opts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Opts;
    use prometheus::core::Collector;

    /// Ours and prometheus's own histogram by `route`, with these buckets.
    fn both(buckets: Vec<f64>) -> (ShardedHistogramVec, prometheus::HistogramVec) {
        let opts = HistogramOpts::new("d", "help").buckets(buckets);
        (
            histogram_vec(opts.clone(), &["route"]).unwrap(),
            prometheus::HistogramVec::new(opts, &["route"]).unwrap(),
        )
    }

    fn registry_text(c: impl Collector + 'static) -> String {
        let r = prometheus::Registry::new();
        r.register(Box::new(c)).unwrap();
        let mut out = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &r.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn counts_from_many_threads_add_up() {
        // More threads than own cells, so the shared cells (atomic additions) count too.
        let v = ShardedCounterVec::new(Opts::new("c", "help"), &["route"]).unwrap();
        std::thread::scope(|s| {
            for _ in 0..(OWNED + 9) {
                s.spawn(|| {
                    let c = v.with_label_values(&["a"]);
                    for _ in 0..1000 {
                        c.inc();
                    }
                });
            }
        });
        let expected = (OWNED as u64 + 9) * 1000;
        assert_eq!(v.with_label_values(&["a"]).get(), expected);
        assert!(registry_text(v).contains(&format!("c{{route=\"a\"}} {expected}")));
    }

    #[test]
    fn a_counter_resets_and_counts_on() {
        let c = ShardedCounter::new("c", "help").unwrap();
        c.inc_by(5);
        c.reset();
        assert_eq!(c.get(), 0);
        c.inc();
        assert_eq!(c.get(), 1);
    }

    #[test]
    fn the_histogram_writes_what_prometheus_own_writes() {
        // The same observations, from several threads, into ours and into the crate's own
        // histogram: the text format must be the same, line for line.
        let (ours, theirs) = both(vec![0.001, 0.01, 0.1, 1.0]);
        let values = [0.0005, 0.001, 0.002, 0.05, 0.5, 1.0, 7.0];
        std::thread::scope(|s| {
            for t in 0..4 {
                let (ours, theirs) = (&ours, &theirs);
                s.spawn(move || {
                    for (i, v) in values.iter().enumerate() {
                        let route = if (i + t) % 2 == 0 { "a" } else { "b" };
                        ours.with_label_values(&[route]).observe(*v);
                        theirs.with_label_values(&[route]).observe(*v);
                    }
                });
            }
        });
        assert_eq!(
            ours.with_label_values(&["a"]).sample_count()
                + ours.with_label_values(&["b"]).sample_count(),
            4 * values.len() as u64
        );
        let (ours, theirs) = (registry_text(ours), registry_text(theirs));
        assert!(ours.contains("d_bucket{route=\"a\",le=\"+Inf\"}"), "{ours}");
        // The sums are added in another order, so they may differ in the last bits.
        let split = |text: &str| {
            let (sums, rest): (Vec<&str>, Vec<&str>) =
                text.lines().partition(|l| l.starts_with("d_sum"));
            let sums: Vec<f64> = sums
                .iter()
                .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
                .collect();
            (sums, rest.join("\n"))
        };
        let ((our_sums, our_rest), (their_sums, their_rest)) = (split(&ours), split(&theirs));
        assert_eq!(our_rest, their_rest);
        assert_eq!(our_sums.len(), 2);
        for (a, b) in our_sums.iter().zip(&their_sums) {
            assert!((a - b).abs() < 1e-9, "{a} against {b}");
        }
    }

    #[test]
    fn buckets_are_taken_as_prometheus_takes_them() {
        let opts = HistogramOpts::new("d", "help").buckets(vec![1.0, 0.5]);
        assert!(histogram_vec(opts, &["route"]).is_err());
        // None: the default buckets; a last `+Inf`: dropped (the text has its own).
        for buckets in [vec![], vec![0.5, 1.0, f64::INFINITY]] {
            let (ours, theirs) = both(buckets);
            ours.with_label_values(&["a"]).observe(0.75);
            theirs.with_label_values(&["a"]).observe(0.75);
            assert_eq!(registry_text(ours), registry_text(theirs));
        }
    }

    #[test]
    fn own_cells_and_shared_cells_add_alike() {
        // Whichever cells a thread gets (other tests in this process may have taken every own
        // set already), both ways of adding must give the same sums.
        for shard in [0, OWNED] {
            let cell = AtomicU64::new(0);
            add(&cell, 3, shard);
            add(&cell, 4, shard);
            assert_eq!(cell.load(Relaxed), 7, "shard {shard}");
            let sum = AtomicU64::new(0.0f64.to_bits());
            add_f64(&sum, 0.25, shard);
            add_f64(&sum, 0.5, shard);
            assert_eq!(f64::from_bits(sum.load(Relaxed)), 0.75, "shard {shard}");
        }
    }

    #[test]
    fn a_histogram_needs_its_labels() {
        let v = histogram_vec(HistogramOpts::new("d", "help"), &["route"]).unwrap();
        assert!(v.get_metric_with_label_values(&["a", "b"]).is_err());
    }
}
