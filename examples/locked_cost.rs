//! What one locked instruction (an atomic read-modify-write) costs on this processor, against
//! the same counting done with a plain load and store: the figure `docs/performance.md` uses
//! to turn bench/instructions.sh's `LOCKED=1` counts into time.
//!
//!   cargo run --release --example locked_cost
//!
//! Each loop also stores into a small array, as real code has stores in flight when it takes
//! a reference count; the counter's cache line is never shared, so this is the cheapest case
//! (no other processor holds the line).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const ROUNDS: u64 = 50_000_000;

fn time(name: &str, mut step: impl FnMut(u64)) -> f64 {
    // Once to warm up, then timed.
    for i in 0..ROUNDS / 10 {
        step(i);
    }
    let start = Instant::now();
    for i in 0..ROUNDS {
        step(i);
    }
    let ns = start.elapsed().as_nanos() as f64 / ROUNDS as f64;
    println!("{name:48} {ns:6.2} ns");
    ns
}

fn main() {
    let mut stores = [0u64; 64];
    let counter = AtomicU64::new(0);
    let plain = time("a load and a store (no locked instruction)", |i| {
        stores[(i & 63) as usize] = i;
        let c = black_box(&counter);
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    });
    let locked = time("fetch_add (one locked instruction)", |i| {
        stores[(i & 63) as usize] = i;
        black_box(&counter).fetch_add(1, Ordering::Relaxed);
    });
    let shared = Arc::new(0u8);
    let arc = time("Arc clone and drop (two locked instructions)", |i| {
        stores[(i & 63) as usize] = i;
        drop(black_box(&shared).clone());
    });
    black_box(&stores);
    println!(
        "one locked instruction: about {:.1} ns more than the plain counting ({:.1} ns each in \
         an Arc's clone and drop)",
        locked - plain,
        (arc - plain) / 2.0
    );
}
