#![no_main]
//! Authority (Host header) parsing and header-name comparison / X-Forwarded-For handling.
//! Both `fuzz_one`s assert their own invariants; the same bytes feed both.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portcullis::guard::host::fuzzing::fuzz_one(data);
    portcullis::guard::headers::fuzzing::fuzz_one(data);
});
