#![no_main]
//! Session cookies. The same input is used four ways:
//! - its first line as a sealed session value, opened with a fixed key (`CookieSealer::open_at`);
//! - the whole input as a `Cookie` header, from which the chunked session cookie is read
//!   (`CookieOptions::read`), then opened;
//! - the input sealed as plaintext under the fixed key and opened again, which drives the
//!   session JSON decoder past the authentication check (random bytes never pass it);
//! - the guard's bounded Cookie-header parser (`guard::cookies::fuzzing::fuzz_one`).

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use portcullis::auth::{CookieOptions, CookieSealer, SealError, SealKey};
use portcullis::config::SameSite;

/// The fixed key the seed corpus was sealed with (tests only: 32 bytes of 0x42).
const KEY: [u8; 32] = [0x42; 32];
/// 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let sealer = CookieSealer::new(&KEY, "_portcullis");
    let first = text.split('\n').next().unwrap_or_default();
    if let Ok(session) = sealer.open_at(first, NOW) {
        assert!(NOW < session.expires_at);
    }

    let options = CookieOptions {
        name: "_portcullis".to_string(),
        secure: true,
        same_site: SameSite::Lax,
        domain: None,
        max_age: Duration::from_secs(3600),
    };
    if let Some(value) = options.read(&text) {
        let _ = sealer.open_at(&value, NOW);
        // What was read, written back (chunked) and sent again, reads the same, as long as it
        // has nothing the Cookie syntax would split or trim.
        // Within the limits a Cookie header is read under (a longer one is no session).
        if !value.contains(|c: char| c == ';' || c.is_whitespace()) && value.len() <= 40_000 {
            let header = options
                .set_cookie_headers(&value, Some(&text))
                .iter()
                .filter_map(|h| h.split("; Path=/").next().map(str::to_string))
                // Leave out the clearing of stale chunks (`NAME_i=` with no value).
                .filter(|pair| {
                    pair.split_once('=')
                        .is_some_and(|(n, v)| n == "_portcullis" || !v.is_empty())
                })
                .collect::<Vec<_>>()
                .join("; ");
            assert_eq!(options.read(&header).as_deref(), Some(&*value));
        }
    }

    // Authenticated plaintext: the payload decoder sees arbitrary bytes.
    let key = SealKey::new(&KEY);
    let sealed = key.seal("cookie:_portcullis", data);
    assert_eq!(key.open("cookie:_portcullis", &sealed).as_deref(), Ok(data));
    assert_eq!(
        key.open("cookie:other", &sealed),
        Err(SealError::Authentication)
    );
    let _ = sealer.open_at(&sealed, NOW);

    portcullis::guard::cookies::fuzzing::fuzz_one(data);
});
