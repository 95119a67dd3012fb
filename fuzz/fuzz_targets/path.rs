#![no_main]
//! Request path canonicalisation: the first byte picks the options, the rest is the path.
//! `fuzz_one` asserts the output's invariants (no dot segments, idempotent, ...).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portcullis::guard::path::fuzzing::fuzz_one(data);
});
