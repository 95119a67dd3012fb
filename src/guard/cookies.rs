//! `Cookie` headers, parsed once with bounded work.
//!
//! A request can carry many `Cookie` headers with thousands of pairs. The
//! proxy reads its session cookie (possibly split into chunks `_pomerium`,
//! `_pomerium_1`, `_pomerium_2`, …) and strips its own cookies before
//! forwarding. [`Cookies::parse`] does one linear pass, refuses input over
//! [`CookieLimits`], and indexes the pairs so every later lookup is cheap.
//!
//! Decisions worth knowing:
//!
//! * Pairs are split on `;`; each pair, and the name and value within it, are
//!   trimmed of spaces and tabs. Empty pairs (`a=1;;b=2`) are skipped and do
//!   not count towards the limit.
//! * Values are returned as sent: surrounding double quotes are not removed.
//! * A pair without `=` is a cookie with an empty name, as browsers treat
//!   it. Empty names are never found by [`Cookies::get`], but the pair is kept
//!   when rebuilding the header with [`Cookies::without`], which passes `""`
//!   as its name to the predicate.
//! * When a name appears more than once the first occurrence wins for
//!   lookups; every occurrence is kept by [`Cookies::without`].
//! * Names are case-sensitive, as in browsers.

use std::borrow::Cow;
use std::collections::HashMap;

/// Bounds on the work spent on the `Cookie` headers of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieLimits {
    /// Most pairs accepted over all headers (default 256).
    pub max_pairs: usize,
    /// Most bytes accepted over all header values together (default 16 KiB).
    pub max_bytes: usize,
    /// Most pieces of a chunked cookie, the unnumbered one included
    /// (default 16).
    pub max_chunks: usize,
}

impl Default for CookieLimits {
    fn default() -> Self {
        CookieLimits {
            max_pairs: 256,
            max_bytes: 16 * 1024,
            max_chunks: 16,
        }
    }
}

/// Why the `Cookie` headers were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// More pairs than [`CookieLimits::max_pairs`].
    #[error("the request has more than {limit} cookies")]
    TooMany {
        /// The limit that was passed.
        limit: usize,
    },
    /// More bytes than [`CookieLimits::max_bytes`].
    #[error("the cookie headers are longer than {limit} bytes")]
    TooLarge {
        /// The limit that was passed.
        limit: usize,
    },
}

/// One `name=value` pair as it appeared in the header.
#[derive(Debug, Clone, Copy)]
struct Pair<'a> {
    /// The trimmed pair, kept verbatim for rebuilding the header.
    text: &'a str,
    /// The trimmed name, empty when the pair has no `=`.
    name: &'a str,
}

/// The cookies of one request, borrowed from its `Cookie` header values.
#[derive(Debug, Clone)]
pub struct Cookies<'a> {
    /// Every pair, in order.
    pairs: Vec<Pair<'a>>,
    /// The value of the first occurrence of each non-empty name.
    first: HashMap<&'a str, &'a str>,
    /// Copied from the limits, for [`Cookies::chunked`].
    max_chunks: usize,
}

impl<'a> Cookies<'a> {
    /// Parses the values of every `Cookie` header of a request, in order.
    ///
    /// Work is linear in the input, and stops as soon as a limit is crossed.
    pub fn parse(
        values: impl IntoIterator<Item = &'a str>,
        limits: &CookieLimits,
    ) -> Result<Cookies<'a>, CookieError> {
        let mut cookies = Cookies {
            pairs: Vec::new(),
            first: HashMap::new(),
            max_chunks: limits.max_chunks,
        };
        for_each_pair(values, limits, |text| {
            let (name, value) = match split_pair(text) {
                Some((name, value)) => (trim(name), trim(value)),
                None => ("", text),
            };
            cookies.pairs.push(Pair { text, name });
            if !name.is_empty() {
                cookies.first.entry(name).or_insert(value);
            }
        })?;
        Ok(cookies)
    }

    /// The value of the first cookie called `name`.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.first.get(name).copied()
    }

    /// The value of `name` followed by the values of `name_1`, `name_2`, …
    /// up to the first one missing.
    ///
    /// Returns `None` when `name` is missing, or when there would be more than
    /// `max_chunks` pieces (the unnumbered one included): a value cut short
    /// could be mistaken for a whole one, so an over-long chain counts as
    /// absent. Costs at most `max_chunks` hash look-ups.
    /// A value in one piece (nearly every one) is the header's own text, not a copy.
    pub fn chunked(&self, name: &str) -> Option<Cow<'a, str>> {
        if self.max_chunks == 0 {
            return None;
        }
        let mut value = Cow::Borrowed(self.get(name)?);
        let mut key = String::with_capacity(name.len() + 4);
        key.push_str(name);
        key.push('_');
        let prefix_len = key.len();
        let mut digits = itoa::Buffer::new();
        for number in 1..=self.max_chunks {
            key.truncate(prefix_len);
            key.push_str(digits.format(number));
            match self.get(&key) {
                None => return Some(value),
                // One piece more than allowed: refuse the whole value.
                Some(_) if number == self.max_chunks => return None,
                Some(chunk) => value.to_mut().push_str(chunk),
            }
        }
        Some(value)
    }

    /// The header rebuilt, `; `-separated, without the pairs whose name
    /// matches `pred`; `None` when no pair is left.
    pub fn without(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        let mut out = String::new();
        for pair in self.pairs.iter().filter(|pair| !pred(pair.name)) {
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(pair.text);
        }
        (!out.is_empty()).then_some(out)
    }
}

/// What [`Cookies::parse`] and then [`Cookies::chunked`] give for `name`, read in one pass
/// without indexing every pair: the same limits (checked over the whole input), the same
/// trimming, the first occurrence of each piece, the pieces joined up to the first one missing
/// and `None` for a chain of more than `max_chunks` pieces. A signed-in user's every request
/// reads its session cookie, and the index [`Cookies`] builds (a hash map) cost more than the
/// read itself.
pub fn chunked_value<'a>(
    values: impl IntoIterator<Item = &'a str>,
    limits: &CookieLimits,
    name: &str,
) -> Result<Option<Cow<'a, str>>, CookieError> {
    let mut first: Option<&'a str> = None;
    // The first value of `name_N` at index N - 1, for N from 1 to `max_chunks`; allocated only
    // when a chunk is present (a cookie over one piece is rare).
    let mut chunks: Vec<Option<&'a str>> = Vec::new();
    // Piece N of a chain follows N other pairs, so with at most `max_pairs` pairs no piece past
    // `max_pairs - 1` can be reached: ignoring those keeps `chunks` as short as the header is
    // long, whatever `max_chunks` says.
    let reachable = limits.max_chunks.min(limits.max_pairs.saturating_sub(1));
    for_each_pair(values, limits, |text| {
        let Some((pair_name, pair_value)) = split_pair(text) else {
            return;
        };
        let Some(rest) = trim(pair_name).strip_prefix(name) else {
            return;
        };
        if rest.is_empty() {
            first.get_or_insert(trim(pair_value));
        } else if let Some(number) = chunk_number(rest, reachable) {
            if chunks.len() < number {
                chunks.resize(number, None);
            }
            chunks[number - 1].get_or_insert(trim(pair_value));
        }
    })?;
    if limits.max_chunks == 0 || name.is_empty() {
        return Ok(None);
    }
    let Some(first) = first else {
        return Ok(None);
    };
    let mut value = Cow::Borrowed(first);
    for number in 1..=limits.max_chunks {
        match chunks.get(number - 1).copied().flatten() {
            None => return Ok(Some(value)),
            // One piece more than allowed: refuse the whole value.
            Some(_) if number == limits.max_chunks => return Ok(None),
            Some(chunk) => value.to_mut().push_str(chunk),
        }
    }
    Ok(Some(value))
}

/// Calls `f` with each pair of the `Cookie` header `values`, trimmed, empty ones skipped, in
/// order; stops with an error as soon as the bytes seen so far or the pairs pass `limits`.
fn for_each_pair<'a>(
    values: impl IntoIterator<Item = &'a str>,
    limits: &CookieLimits,
    mut f: impl FnMut(&'a str),
) -> Result<(), CookieError> {
    let (mut total, mut pairs) = (0usize, 0usize);
    for value in values {
        total = total.saturating_add(value.len());
        if total > limits.max_bytes {
            return Err(CookieError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        for piece in split_semicolons(value) {
            let text = trim(piece);
            if text.is_empty() {
                continue;
            }
            if pairs >= limits.max_pairs {
                return Err(CookieError::TooMany {
                    limit: limits.max_pairs,
                });
            }
            pairs += 1;
            f(text);
        }
    }
    Ok(())
}

/// N when `rest` (what follows a cookie's base name) is `_N` written as
/// [`Cookies::chunked`] looks it up (decimal, no sign, no leading zero) and 1 ≤ N ≤ `max`.
fn chunk_number(rest: &str, max: usize) -> Option<usize> {
    let digits = rest.strip_prefix('_')?;
    if digits.starts_with('0') || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More digits than `max` has cannot name a chunk up to `max`; a number too large for a
    // `usize` fails to parse, and is no chunk either.
    if digits.len() > max.checked_ilog10().map_or(1, |d| d as usize + 1) {
        return None;
    }
    digits
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
}

/// `text` split at every `;`, as `text.split(';')` splits it, the `;`s found with SIMD (a
/// session cookie runs to kilobytes and is split on every request).
pub fn split_semicolons(text: &str) -> impl Iterator<Item = &str> {
    // `;` is ASCII: both sides of it are on character boundaries.
    semicolon_ranges(text.as_bytes()).map(move |r| &text[r])
}

/// [`split_semicolons`] for a header's bytes, which need not be UTF-8.
pub fn split_semicolon_bytes(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    semicolon_ranges(bytes).map(move |r| &bytes[r])
}

/// Where the pieces between `;`s lie in `bytes`.
fn semicolon_ranges(bytes: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> {
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        match memchr::memchr(b';', &bytes[from..]) {
            Some(at) => {
                start = Some(from + at + 1);
                Some(from..from + at)
            }
            None => {
                start = None;
                Some(from..bytes.len())
            }
        }
    })
}

/// Whether `name` is `base` itself or one of its numbered chunks `base_N`,
/// where `N` is one or more ASCII digits with a value of at least 1
/// (`base_01` counts, `base_0` does not).
pub fn is_chunk_of(name: &str, base: &str) -> bool {
    is_chunk_of_bytes(name.as_bytes(), base)
}

/// [`is_chunk_of`] for a name's bytes, which need not be UTF-8 (a name that is not cannot be a
/// chunk of `base`).
pub fn is_chunk_of_bytes(name: &[u8], base: &str) -> bool {
    let Some(rest) = name.strip_prefix(base.as_bytes()) else {
        return false;
    };
    match rest {
        [] => true,
        [b'_', digits @ ..] => {
            !digits.is_empty()
                && digits.iter().all(u8::is_ascii_digit)
                && digits.iter().any(|&b| b != b'0')
        }
        _ => false,
    }
}

/// `text` without the spaces and tabs at either end, as `text.trim_matches([' ', '\t'])` gives
/// it, a byte at a time (the pattern-based trim costs more than the few bytes it looks at).
pub fn trim(text: &str) -> &str {
    // Both ends are next to an ASCII byte or the end of `text`: character boundaries.
    &text[trimmed(text.as_bytes())]
}

/// [`trim`] for bytes that need not be UTF-8.
pub fn trim_bytes(bytes: &[u8]) -> &[u8] {
    &bytes[trimmed(bytes)]
}

/// Where `bytes` lie without the spaces and tabs at either end.
fn trimmed(bytes: &[u8]) -> std::ops::Range<usize> {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    start..end
}

/// `text` split at its first `=`, as `text.split_once('=')` splits it, the `=` found with
/// `memchr`.
pub fn split_pair(text: &str) -> Option<(&str, &str)> {
    let at = memchr::memchr(b'=', text.as_bytes())?;
    // `=` is ASCII: both sides of it are on character boundaries.
    Some((&text[..at], &text[at + 1..]))
}

/// Entry point for a `cargo fuzz` target.
#[doc(hidden)]
pub mod fuzzing {
    use super::{CookieLimits, Cookies, is_chunk_of};

    /// Parses arbitrary bytes (one header value per line) under small limits
    /// and checks that lookups, chunks and rebuilding agree with each other.
    pub fn fuzz_one(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let limits = CookieLimits {
            max_pairs: 64,
            max_bytes: 4096,
            max_chunks: 4,
        };
        let parsed = Cookies::parse(text.split('\n'), &limits);
        // The one-pass reader refuses what the parser refuses and reads what it reads.
        for name in ["a", "a_1", ""] {
            let one_pass = super::chunked_value(text.split('\n'), &limits, name);
            match &parsed {
                Ok(cookies) => assert_eq!(one_pass, Ok(cookies.chunked(name))),
                Err(e) => assert_eq!(one_pass.as_ref().err(), Some(e)),
            }
        }
        let Ok(cookies) = parsed else {
            return;
        };
        assert!(cookies.pairs.len() <= limits.max_pairs);
        for pair in &cookies.pairs {
            if !pair.name.is_empty() {
                assert!(cookies.get(pair.name).is_some());
            }
        }
        if let Some(chunked) = cookies.chunked("a") {
            assert!(chunked.starts_with(cookies.get("a").unwrap_or_default()));
        }
        assert_eq!(cookies.without(|_| true), None);
        if let Some(kept) = cookies.without(|_| false) {
            let again = Cookies::parse([kept.as_str()], &CookieLimits::default());
            let Ok(again) = again else {
                panic!("rebuilt header {kept:?} was refused");
            };
            assert_eq!(again.pairs.len(), cookies.pairs.len());
        }
        if let Some(stripped) = cookies.without(|name| is_chunk_of(name, "a")) {
            let Ok(again) = Cookies::parse([stripped.as_str()], &CookieLimits::default()) else {
                panic!("stripped header {stripped:?} was refused");
            };
            assert!(again.pairs.iter().all(|pair| !is_chunk_of(pair.name, "a")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    fn parse<'a>(values: &[&'a str]) -> Cookies<'a> {
        match Cookies::parse(values.iter().copied(), &CookieLimits::default()) {
            Ok(cookies) => cookies,
            Err(err) => panic!("{values:?} was refused: {err}"),
        }
    }

    #[test]
    fn pairs_are_split_and_trimmed() {
        let cookies = parse(&[" a=1 ;b = 2;\tc=3\t", "d=4"]);
        assert_eq!(cookies.get("a"), Some("1"));
        assert_eq!(cookies.get("b"), Some("2"));
        assert_eq!(cookies.get("c"), Some("3"));
        assert_eq!(cookies.get("d"), Some("4"));
        assert_eq!(cookies.get("e"), None);
    }

    #[test]
    fn first_duplicate_wins_so_a_later_header_cannot_override_the_session() {
        let cookies = parse(&["_pomerium=real", "_pomerium=forged; _pomerium=again"]);
        assert_eq!(cookies.get("_pomerium"), Some("real"));
    }

    #[test]
    fn empty_values_are_kept() {
        let cookies = parse(&["a=; b=;c"]);
        assert_eq!(cookies.get("a"), Some(""));
        assert_eq!(cookies.get("b"), Some(""));
    }

    #[test]
    fn pair_without_equals_has_no_name() {
        let cookies = parse(&["lonely; a=1"]);
        assert_eq!(cookies.get("lonely"), None);
        assert_eq!(cookies.get(""), None);
        assert_eq!(
            cookies.without(|name| name == "a").as_deref(),
            Some("lonely")
        );
        assert_eq!(cookies.without(str::is_empty).as_deref(), Some("a=1"));
    }

    #[test]
    fn empty_pairs_are_skipped() {
        let cookies = parse(&[";; a=1 ;;; ", ""]);
        assert_eq!(cookies.pairs.len(), 1);
        assert_eq!(cookies.without(|_| false).as_deref(), Some("a=1"));
    }

    #[test]
    fn value_keeps_equals_signs_and_quotes() {
        let cookies = parse(&["t=YWJj==; q=\"x\""]);
        assert_eq!(cookies.get("t"), Some("YWJj=="));
        assert_eq!(cookies.get("q"), Some("\"x\""));
    }

    #[test]
    fn names_are_case_sensitive() {
        let cookies = parse(&["_Pomerium=x"]);
        assert_eq!(cookies.get("_pomerium"), None);
    }

    #[test]
    fn too_many_pairs_are_refused() {
        let header = "a=b;".repeat(10_000);
        let limits = CookieLimits {
            max_bytes: usize::MAX,
            ..CookieLimits::default()
        };
        let refused = Cookies::parse([header.as_str()], &limits);
        assert_eq!(refused.err(), Some(CookieError::TooMany { limit: 256 }));
        // With the default limits the size check refuses it first.
        let refused = Cookies::parse([header.as_str()], &CookieLimits::default());
        assert_eq!(
            refused.err(),
            Some(CookieError::TooLarge { limit: 16 * 1024 })
        );
    }

    #[test]
    fn too_many_bytes_across_headers_are_refused() {
        let value = "x".repeat(6 * 1024);
        let values = [value.as_str(), value.as_str(), value.as_str()];
        let refused = Cookies::parse(values, &CookieLimits::default());
        assert_eq!(
            refused.err(),
            Some(CookieError::TooLarge { limit: 16 * 1024 })
        );
        assert!(Cookies::parse(values[..2].iter().copied(), &CookieLimits::default()).is_ok());
    }

    #[test]
    fn many_pomerium_chunks_cost_linear_time() {
        let header: String = (1..=100_000).map(|n| format!("_pomerium_{n}=x;")).collect();
        let limits = CookieLimits {
            max_pairs: usize::MAX,
            max_bytes: usize::MAX,
            max_chunks: 16,
        };
        let started = Instant::now();
        let Ok(cookies) = Cookies::parse([header.as_str(), "_pomerium=y"], &limits) else {
            panic!("refused");
        };
        assert_eq!(cookies.chunked("_pomerium"), None);
        let stripped = cookies.without(|name| is_chunk_of(name, "_pomerium"));
        assert_eq!(stripped, None);
        // A quadratic parser would need around 10^10 steps here.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn two_hundred_chunks_count_as_absent() {
        let header: String = (1..200).map(|n| format!("s_{n}=x; ")).collect();
        let cookies = parse(&[header.as_str(), "s=x"]);
        assert_eq!(cookies.chunked("s"), None);
    }

    #[test]
    fn chunks_up_to_the_limit_are_joined() {
        let header: String = (1..16).map(|n| format!("s_{n}={n};")).collect();
        let cookies = parse(&["s=0", header.as_str()]);
        let expected: String = (0..16).map(|n| n.to_string()).collect();
        assert_eq!(cookies.chunked("s").as_deref(), Some(expected.as_str()));
        let header: String = (1..17).map(|n| format!("s_{n}={n};")).collect();
        let cookies = parse(&["s=0", header.as_str()]);
        assert_eq!(cookies.chunked("s"), None, "17 pieces exceed max_chunks");
    }

    #[test]
    fn chunk_order_in_the_header_does_not_matter() {
        let forward = parse(&["s=a; s_1=b; s_2=c"]);
        let backward = parse(&["s_2=c", "s_1=b; s=a"]);
        assert_eq!(forward.chunked("s").as_deref(), Some("abc"));
        assert_eq!(backward.chunked("s").as_deref(), Some("abc"));
    }

    #[test]
    fn chunks_stop_at_the_first_gap() {
        let cookies = parse(&["s=a; s_1=b; s_3=d"]);
        assert_eq!(cookies.chunked("s").as_deref(), Some("ab"));
    }

    #[test]
    fn chunks_without_base_are_absent() {
        let cookies = parse(&["s_1=b; s_2=c"]);
        assert_eq!(cookies.chunked("s"), None);
    }

    #[test]
    fn duplicate_chunk_uses_first_occurrence() {
        let cookies = parse(&["s=a; s_1=b; s_1=evil"]);
        assert_eq!(cookies.chunked("s").as_deref(), Some("ab"));
    }

    #[test]
    fn zero_max_chunks_allows_nothing() {
        let limits = CookieLimits {
            max_chunks: 0,
            ..CookieLimits::default()
        };
        let Ok(cookies) = Cookies::parse(["s=a"], &limits) else {
            panic!("refused");
        };
        assert_eq!(cookies.chunked("s"), None);
    }

    #[test]
    fn without_strips_pomerium_cookies_including_duplicates() {
        let cookies = parse(&[
            "_pomerium=a; app=1; _pomerium_1=b",
            "_pomerium=c; app=2; x=3",
        ]);
        let kept = cookies.without(|name| is_chunk_of(name, "_pomerium"));
        assert_eq!(kept.as_deref(), Some("app=1; app=2; x=3"));
        assert_eq!(cookies.without(|_| true), None);
    }

    /// The session cookie as a signed-in user's requests carry it, read in one pass: one piece,
    /// pieces out of order with a gap, a chain one piece too long, and a header over the limits.
    #[test]
    fn the_one_pass_reader_reads_the_session_as_parsing_does() {
        let limits = CookieLimits {
            max_pairs: 8,
            max_bytes: 200,
            max_chunks: 3,
        };
        let read = |header: &'static str| chunked_value([header], &limits, "_pomerium");
        assert_eq!(
            read("a=1; _pomerium=abc; b=2"),
            Ok(Some(Cow::Borrowed("abc")))
        );
        assert_eq!(
            read("_pomerium_1=d; _pomerium=abc; _pomerium_1=x; _pomerium_3=z"),
            Ok(Some(Cow::Owned("abcd".to_string())))
        );
        assert_eq!(
            read("_pomerium=a; _pomerium_1=b; _pomerium_2=c"),
            Ok(Some(Cow::Owned("abc".to_string())))
        );
        assert_eq!(
            read("_pomerium=a; _pomerium_1=b; _pomerium_2=c; _pomerium_3=d"),
            Ok(None)
        );
        assert_eq!(read("_pomerium_1=b"), Ok(None));
        assert_eq!(read("_pomeriumx=1; _pomerium_01=2"), Ok(None));
        assert_eq!(
            read("a;b;c;d;e;f;g;h;_pomerium=abc"),
            Err(CookieError::TooMany { limit: 8 })
        );
        let long = format!("_pomerium={}", "v".repeat(200));
        assert_eq!(
            chunked_value([long.as_str()], &limits, "_pomerium"),
            Err(CookieError::TooLarge { limit: 200 })
        );
    }

    /// A chunk number the client writes does not size anything: with limits that allow any
    /// number of pieces, the largest number there is reads as parsing reads it (no piece), and
    /// does not make the reader allocate room for that many.
    #[test]
    fn a_huge_chunk_number_sizes_nothing() {
        let limits = CookieLimits {
            max_pairs: 8,
            max_bytes: 1024,
            max_chunks: usize::MAX,
        };
        let header = format!(
            "s=a; s_1=b; s_{}=x; s_99999999999999999999999=y",
            usize::MAX
        );
        let expected = Cookies::parse([header.as_str()], &limits).map(|c| c.chunked("s"));
        assert_eq!(expected, Ok(Some(Cow::Owned("ab".to_string()))));
        assert_eq!(chunked_value([header.as_str()], &limits, "s"), expected);
    }

    #[test]
    fn is_chunk_of_accepts_base_and_numbered_chunks_only() {
        assert!(is_chunk_of("_pomerium", "_pomerium"));
        assert!(is_chunk_of("_pomerium_1", "_pomerium"));
        assert!(is_chunk_of("_pomerium_42", "_pomerium"));
        assert!(is_chunk_of("_pomerium_01", "_pomerium"));
        assert!(!is_chunk_of("_pomerium_0", "_pomerium"));
        assert!(!is_chunk_of("_pomerium_", "_pomerium"));
        assert!(!is_chunk_of("_pomerium_x", "_pomerium"));
        assert!(!is_chunk_of("_pomerium_1a", "_pomerium"));
        assert!(!is_chunk_of("_pomeriumx", "_pomerium"));
        assert!(!is_chunk_of("_pomerium_csrf", "_pomerium"));
        assert!(!is_chunk_of("x_pomerium", "_pomerium"));
        assert!(is_chunk_of_bytes(b"_pomerium_2", "_pomerium"));
        assert!(!is_chunk_of_bytes(b"_pomerium_\xff", "_pomerium"));
        assert!(!is_chunk_of_bytes(b"_pomerium\xe9", "_pomerium"));
    }

    #[test]
    fn semicolons_split_at_the_ends_and_in_a_row() {
        for text in ["", ";", ";;", "a", "a;", ";a", "a;;b", "é;ü=1; x"] {
            let ours: Vec<&str> = split_semicolons(text).collect();
            assert_eq!(ours, text.split(';').collect::<Vec<_>>(), "{text:?}");
        }
    }

    #[test]
    fn fuzz_entry_point_survives_hostile_bytes() {
        for data in [
            &b""[..],
            b";;;",
            b"a=1\na_1=2\na_2=3\na_3=4\na_4=5",
            b"=\n=;=",
            b"\xff=\xfe",
        ] {
            fuzzing::fuzz_one(data);
        }
    }

    proptest! {
        #[test]
        fn chunked_equals_concatenation_in_any_order(
            parts in prop::collection::vec("[A-Za-z0-9+/=]{0,8}", 1..16),
            seed in any::<u64>(),
        ) {
            let mut pairs: Vec<String> = parts
                .iter()
                .enumerate()
                .map(|(i, v)| if i == 0 { format!("s={v}") } else { format!("s_{i}={v}") })
                .collect();
            // A cheap deterministic shuffle.
            let len = pairs.len();
            for i in 0..len {
                pairs.swap(i, (seed as usize).wrapping_mul(i + 7) % len);
            }
            let header = pairs.join("; ");
            let cookies = parse(&[header.as_str()]);
            prop_assert_eq!(cookies.chunked("s").map(Cow::into_owned), Some(parts.concat()));
        }

        /// Headers made of the pieces that matter (the base name, chunk names written every way,
        /// other names, pairs without `=`, spaces, duplicates), under limits small enough to be
        /// crossed: the one-pass reader gives what parsing and then reading the chunks gives.
        #[test]
        fn the_one_pass_reader_agrees_with_parse_then_chunked(
            pieces in prop::collection::vec(
                prop_oneof![
                    Just("s"), Just("s_1"), Just("s_2"), Just("s_3"), Just("s_4"), Just("s_01"),
                    Just("s_0"), Just("s_"), Just("s_+2"), Just("s_99999999999999999999999"),
                    Just("t"), Just("s1"), Just(""), Just(" s "), Just("\ts_2"),
                ],
                0..24,
            ),
            values in prop::collection::vec("[a-z=]{0,3}", 24),
            // Mostly one header, sometimes several.
            shape in prop::collection::vec(prop_oneof![4 => 0u8..3, 1 => Just(3u8)], 24),
            max_chunks in prop_oneof![0usize..6, Just(12)],
            max_pairs in 1usize..40,
            max_bytes in prop_oneof![Just(24usize), Just(1000)],
        ) {
            let mut headers = vec![String::new()];
            for (i, name) in pieces.iter().enumerate() {
                let header = headers.last_mut().unwrap_or_else(|| unreachable!());
                match shape[i] {
                    0 => header.push_str(&format!("{name}={};", values[i])),
                    1 => header.push_str(&format!(" {name} = {} ;;", values[i])),
                    2 => header.push_str(name),
                    _ => headers.push(format!("{name}={}", values[i])),
                }
            }
            let limits = CookieLimits { max_pairs, max_bytes, max_chunks };
            let values = || headers.iter().map(String::as_str);
            for name in ["s", "s_1", "t", ""] {
                let expected = Cookies::parse(values(), &limits).map(|c| c.chunked(name));
                prop_assert_eq!(chunked_value(values(), &limits, name), expected);
            }
        }

        #[test]
        fn trim_and_split_pair_agree_with_std(text in "([ \\t=]|[a-z]|\\PC){0,24}") {
            prop_assert_eq!(trim(&text), text.trim_matches([' ', '\t']));
            prop_assert_eq!(trim_bytes(text.as_bytes()), trim(&text).as_bytes());
            prop_assert_eq!(split_pair(&text), text.split_once('='));
        }

        #[test]
        fn semicolons_split_as_str_split_splits(text in "(;|[a-z=]|\\PC){0,40}") {
            let ours: Vec<&str> = split_semicolons(&text).collect();
            let std: Vec<&str> = text.split(';').collect();
            prop_assert_eq!(&ours, &std);
            let bytes: Vec<&[u8]> = split_semicolon_bytes(text.as_bytes()).collect();
            let std: Vec<&[u8]> = std.iter().map(|s| s.as_bytes()).collect();
            prop_assert_eq!(bytes, std);
        }

        #[test]
        fn arbitrary_headers_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
            fuzzing::fuzz_one(&data);
        }
    }
}
