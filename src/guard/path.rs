//! The canonical request path.
//!
//! Routing and policy must look at the same path the upstream will act on,
//! otherwise `/%61dmin` or `/x/../admin` can slip past a rule written for
//! `/admin`. [`canonical_path`] turns the raw path of a request (the part
//! before `?`) into one canonical spelling, or refuses it, following what
//! Pomerium configures in Envoy: `normalize_path: true`, `merge_slashes: true`
//! and `path_with_escaped_slashes_action: reject_request` by default.
//!
//! Decisions worth knowing:
//!
//! * Raw bytes that are not allowed: control characters (below 0x20 and
//!   0x7F), the space, every non-ASCII byte, the backslash, and `?` and `#`
//!   (the query must already be split off, and a fragment is never sent by a
//!   real client). Other printable ASCII characters such as `{`, `|` or `"`
//!   are accepted, as Envoy accepts them.
//! * With `normalize` on, escapes of unreserved characters (letters, digits,
//!   `-`, `.`, `_`, `~`) are decoded and the hex digits of every other escape
//!   are upper-cased. Escapes of other characters, `%00` and `%25` included,
//!   stay encoded: nothing is ever decoded twice.
//! * Dot segments are removed as RFC 3986 §5.2.4 says, after decoding, and
//!   slashes are merged afterwards (Envoy's order), so `/a//..` becomes `/a/`.
//! * Under [`EscapedSlashes::UnescapeAndForward`] both `%2F` and `%5C` become
//!   `/` before dot segments are removed, so no backslash ever reaches the
//!   upstream.
//! * With `normalize` off nothing is decoded, no case changes and dot
//!   segments stay; the checks on characters and escapes, the escaped-slash
//!   action and slash merging still apply. That is the operator's choice, and
//!   policy then sees the same bytes the upstream gets.
//! * Pomerium's `unescape_and_redirect` is not supported: it needs a redirect
//!   outcome that this module does not have, so [`EscapedSlashes::parse`]
//!   returns `None` for it and the configuration layer must refuse it or map
//!   it to another action on purpose.

use std::borrow::Cow;

/// What to do with an encoded slash (`%2F`) or backslash (`%5C`) in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// Refuse the request (Pomerium's `reject_request`, the default).
    #[default]
    Reject,
    /// Forward the escape as it is, with upper-case hex digits when
    /// normalising (Pomerium's `keep_unchanged`).
    KeepUnchanged,
    /// Decode both `%2F` and `%5C` to `/` and then normalise
    /// (Pomerium's `unescape_and_forward`).
    UnescapeAndForward,
}

impl EscapedSlashes {
    const NAMES: [(&'static str, EscapedSlashes); 3] = [
        ("reject_request", EscapedSlashes::Reject),
        ("keep_unchanged", EscapedSlashes::KeepUnchanged),
        ("unescape_and_forward", EscapedSlashes::UnescapeAndForward),
    ];

    /// Reads Pomerium's spelling of the action, ignoring ASCII case.
    /// Returns `None` for anything else, `unescape_and_redirect` included.
    pub fn parse(value: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(value))
            .map(|&(_, action)| action)
    }

    /// Pomerium's spelling of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            EscapedSlashes::Reject => "reject_request",
            EscapedSlashes::KeepUnchanged => "keep_unchanged",
            EscapedSlashes::UnescapeAndForward => "unescape_and_forward",
        }
    }
}

/// How a path is made canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathOptions {
    /// Decode unreserved escapes, upper-case the others, remove dot segments.
    pub normalize: bool,
    /// Turn every run of `/` into a single `/`.
    pub merge_slashes: bool,
    /// What to do with `%2F` and `%5C`.
    pub escaped_slashes: EscapedSlashes,
}

impl Default for PathOptions {
    /// Pomerium's defaults: normalise, merge slashes, reject escaped slashes.
    fn default() -> Self {
        PathOptions {
            normalize: true,
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Reject,
        }
    }
}

/// Why a path was refused. Offsets count bytes from the start of the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty or does not begin with `/` (`*` included).
    #[error("the path does not start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("the path contains a malformed percent-escape at byte {offset}")]
    MalformedEscape {
        /// Where the `%` is.
        offset: usize,
    },
    /// `%2F` or `%5C` while the action is [`EscapedSlashes::Reject`].
    #[error("the path contains an encoded slash (%2F) or backslash (%5C) at byte {offset}")]
    EscapedSlash {
        /// Where the `%` is.
        offset: usize,
    },
    /// A raw `\`, which some servers treat as a slash.
    #[error("the path contains a backslash at byte {offset}")]
    Backslash {
        /// Where the backslash is.
        offset: usize,
    },
    /// A control character, space, non-ASCII byte, `?` or `#`.
    #[error("the path contains a byte that is not allowed (0x{byte:02X}) at byte {offset}")]
    InvalidByte {
        /// The refused byte.
        byte: u8,
        /// Where it is.
        offset: usize,
    },
}

/// Returns the canonical form of `raw`, a request path without its query.
///
/// The result is borrowed from `raw` when `raw` is already canonical, so the
/// common case costs one scan and no allocation. When `normalize` is on, the
/// result has no `.` or `..` segment; when `merge_slashes` is on, it has no
/// `//`; it always starts with `/`.
pub fn canonical_path<'a>(raw: &'a str, opts: &PathOptions) -> Result<Cow<'a, str>, PathError> {
    if needs_rewrite(raw, opts)? {
        Ok(Cow::Owned(rewrite(raw, opts)))
    } else {
        Ok(Cow::Borrowed(raw))
    }
}

/// Checks every byte of `raw` and tells whether the canonical form differs
/// from it. It allocates nothing.
fn needs_rewrite(raw: &str, opts: &PathOptions) -> Result<bool, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut change = false;
    // Index of the first byte of the segment being scanned.
    let mut segment_start = 1;
    let mut i = 1;
    while i < bytes.len() {
        let byte = bytes[i];
        match byte {
            b'/' => {
                if opts.normalize && is_dot_segment(&bytes[segment_start..i]) {
                    change = true;
                }
                if opts.merge_slashes && i == segment_start {
                    change = true;
                }
                segment_start = i + 1;
                i += 1;
            }
            b'%' => {
                let value = escape_at(bytes, i).ok_or(PathError::MalformedEscape { offset: i })?;
                if value == b'/' || value == b'\\' {
                    match opts.escaped_slashes {
                        EscapedSlashes::Reject => {
                            return Err(PathError::EscapedSlash { offset: i });
                        }
                        EscapedSlashes::UnescapeAndForward => change = true,
                        EscapedSlashes::KeepUnchanged => {}
                    }
                }
                if opts.normalize && (is_unreserved(value) || has_lower_hex(bytes, i)) {
                    change = true;
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash { offset: i }),
            _ if is_allowed_raw(byte) => i += 1,
            _ => return Err(PathError::InvalidByte { byte, offset: i }),
        }
    }
    if opts.normalize && is_dot_segment(&bytes[segment_start..]) {
        change = true;
    }
    Ok(change)
}

/// Builds the canonical form of a path that [`needs_rewrite`] accepted.
fn rewrite(raw: &str, opts: &PathOptions) -> String {
    let decoded = decode(raw, opts);
    let body = decoded.strip_prefix('/').unwrap_or(&decoded);

    let mut segments: Vec<&str> = Vec::new();
    if opts.normalize {
        let mut parts = body.split('/').peekable();
        while let Some(segment) = parts.next() {
            let last = parts.peek().is_none();
            match segment {
                "." => {}
                ".." => {
                    segments.pop();
                }
                other => {
                    segments.push(other);
                    continue;
                }
            }
            // A final dot segment leaves a trailing slash behind.
            if last {
                segments.push("");
            }
        }
    } else {
        segments.extend(body.split('/'));
    }

    let mut out = String::with_capacity(decoded.len());
    for segment in segments {
        if !(opts.merge_slashes && out.ends_with('/')) {
            out.push('/');
        }
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Applies the escape rules of `opts` to an already validated path.
fn decode(raw: &str, opts: &PathOptions) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let escaped = if byte == b'%' {
            escape_at(bytes, i)
        } else {
            None
        };
        if let Some(value) = escaped {
            let slash = value == b'/' || value == b'\\';
            if slash && opts.escaped_slashes == EscapedSlashes::UnescapeAndForward {
                out.push('/');
            } else if opts.normalize && is_unreserved(value) {
                out.push(char::from(value));
            } else if opts.normalize {
                out.push('%');
                out.push(char::from(HEX[usize::from(value >> 4)]));
                out.push(char::from(HEX[usize::from(value & 0x0F)]));
            } else {
                out.push_str(raw.get(i..i + 3).unwrap_or_default());
            }
            i += 3;
            continue;
        }
        // Validation allowed only ASCII bytes, so each byte is one char.
        out.push(char::from(byte));
        i += 1;
    }
    out
}

/// The byte encoded by the escape whose `%` is at `at`, if well formed.
fn escape_at(bytes: &[u8], at: usize) -> Option<u8> {
    let high = hex_value(*bytes.get(at + 1)?)?;
    let low = hex_value(*bytes.get(at + 2)?)?;
    Some((high << 4) | low)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Whether the escape at `at` uses a lower-case hex digit.
fn has_lower_hex(bytes: &[u8], at: usize) -> bool {
    bytes
        .get(at + 1..at + 3)
        .is_some_and(|digits| digits.iter().any(u8::is_ascii_lowercase))
}

/// RFC 3986 unreserved characters.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Bytes that may appear unescaped (other than `/`, `%` and `\`).
fn is_allowed_raw(byte: u8) -> bool {
    matches!(byte, 0x21..=0x7E) && !matches!(byte, b'?' | b'#' | b'\\' | b'%')
}

fn is_dot_segment(segment: &[u8]) -> bool {
    segment == b"." || segment == b".."
}

/// Entry point for a `cargo fuzz` target.
#[doc(hidden)]
pub mod fuzzing {
    use super::{EscapedSlashes, PathOptions, canonical_path, is_dot_segment};
    use std::borrow::Cow;

    /// Canonicalises arbitrary bytes and checks the invariants of the output.
    /// The first byte picks the options; the rest is the path.
    pub fn fuzz_one(data: &[u8]) {
        let Some((&selector, rest)) = data.split_first() else {
            return;
        };
        let opts = PathOptions {
            normalize: selector & 1 != 0,
            merge_slashes: selector & 2 != 0,
            escaped_slashes: match (selector >> 2) % 3 {
                0 => EscapedSlashes::Reject,
                1 => EscapedSlashes::KeepUnchanged,
                _ => EscapedSlashes::UnescapeAndForward,
            },
        };
        let raw = String::from_utf8_lossy(rest);
        check(&raw, &opts);
    }

    /// Asserts the invariants of [`canonical_path`] for one input.
    pub(super) fn check(raw: &str, opts: &PathOptions) {
        let Ok(out) = canonical_path(raw, opts) else {
            return;
        };
        if let Cow::Owned(owned) = &out {
            assert_ne!(owned, raw, "allocated for an already canonical path");
        }
        assert!(out.starts_with('/'), "{out:?} does not start with '/'");
        assert!(out.is_ascii(), "{out:?} is not ASCII");
        if opts.merge_slashes {
            assert!(!out.contains("//"), "{out:?} has '//'");
        }
        if opts.normalize {
            assert!(
                !out.split('/').any(|s| is_dot_segment(s.as_bytes())),
                "{out:?} has a dot segment"
            );
        }
        match canonical_path(&out, opts) {
            Ok(Cow::Borrowed(again)) => assert_eq!(again, &*out),
            other => panic!("{out:?} is not a fixed point: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(raw: &str) -> Result<Cow<'_, str>, PathError> {
        canonical_path(raw, &PathOptions::default())
    }

    fn canon_with(raw: &str, escaped_slashes: EscapedSlashes) -> Result<Cow<'_, str>, PathError> {
        let opts = PathOptions {
            escaped_slashes,
            ..PathOptions::default()
        };
        canonical_path(raw, &opts)
    }

    fn assert_canon(raw: &str, expected: &str) {
        assert_eq!(canon(raw).as_deref(), Ok(expected), "input {raw:?}");
    }

    fn assert_borrowed(raw: &str, opts: &PathOptions) {
        let out = canonical_path(raw, opts);
        assert!(matches!(out, Ok(Cow::Borrowed(_))), "{raw:?} gave {out:?}");
    }

    #[test]
    fn encoded_letter_is_decoded_so_admin_rules_match() {
        assert_canon("/%61dmin/x", "/admin/x");
        assert_canon("/%41DMIN", "/ADMIN");
        assert_canon("/%7euser/%2D%5F", "/~user/-_");
    }

    #[test]
    fn leading_double_slash_is_merged() {
        assert_canon("//admin/x", "/admin/x");
        assert_canon("/a///b//", "/a/b/");
        assert_canon("//", "/");
    }

    #[test]
    fn parent_segment_is_removed() {
        assert_canon("/x/../admin/x", "/admin/x");
        assert_canon("/x/y/../../admin", "/admin");
    }

    #[test]
    fn current_segment_is_removed() {
        assert_canon("/./admin/x", "/admin/x");
        assert_canon("/admin/./x/.", "/admin/x/");
    }

    #[test]
    fn encoded_current_segment_is_removed() {
        assert_canon("/%2e/admin/x", "/admin/x");
        assert_canon("/%2E/admin/x", "/admin/x");
    }

    #[test]
    fn encoded_parent_segment_is_removed() {
        assert_canon("/%2e%2e/admin", "/admin");
        assert_canon("/a/%2E%2E/admin", "/admin");
    }

    #[test]
    fn half_encoded_parent_segment_is_removed() {
        assert_canon("/a/.%2e/admin", "/admin");
        assert_canon("/a/%2E./admin", "/admin");
    }

    #[test]
    fn parent_segment_above_root_clamps_to_root() {
        assert_canon("/..", "/");
        assert_canon("/../../admin", "/admin");
        assert_canon("/a/../../..", "/");
    }

    #[test]
    fn encoded_slash_is_rejected_by_default() {
        assert_eq!(
            canon("/admin%2Fx"),
            Err(PathError::EscapedSlash { offset: 6 })
        );
        assert_eq!(
            canon("/admin%2fx"),
            Err(PathError::EscapedSlash { offset: 6 })
        );
    }

    #[test]
    fn encoded_backslash_is_rejected_by_default() {
        assert_eq!(
            canon("/admin%5cx"),
            Err(PathError::EscapedSlash { offset: 6 })
        );
        assert_eq!(
            canon("/admin%5Cx"),
            Err(PathError::EscapedSlash { offset: 6 })
        );
    }

    #[test]
    fn escaped_slash_error_names_the_escape() {
        let message = PathError::EscapedSlash { offset: 6 }.to_string();
        assert!(message.contains("encoded slash (%2F)"), "{message}");
    }

    #[test]
    fn raw_backslash_is_rejected() {
        assert_eq!(canon("/a\\b"), Err(PathError::Backslash { offset: 2 }));
        assert_eq!(canon("/..\\admin"), Err(PathError::Backslash { offset: 3 }));
    }

    #[test]
    fn malformed_escape_is_rejected() {
        assert_eq!(canon("/%zz"), Err(PathError::MalformedEscape { offset: 1 }));
        assert_eq!(canon("/%4"), Err(PathError::MalformedEscape { offset: 1 }));
        assert_eq!(canon("/a%"), Err(PathError::MalformedEscape { offset: 2 }));
        assert_eq!(canon("/%4g"), Err(PathError::MalformedEscape { offset: 1 }));
    }

    #[test]
    fn malformed_escape_is_rejected_even_without_normalisation() {
        let opts = PathOptions {
            normalize: false,
            merge_slashes: false,
            escaped_slashes: EscapedSlashes::KeepUnchanged,
        };
        assert!(canonical_path("/%zz", &opts).is_err());
    }

    #[test]
    fn control_characters_are_rejected() {
        for raw in ["/a\0b", "/a\tb", "/a\r\nx-evil: 1", "/a\x7f", "/\x1b[31m"] {
            assert!(
                matches!(canon(raw), Err(PathError::InvalidByte { .. })),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn raw_non_ascii_is_rejected() {
        assert_eq!(
            canon("/caf\u{e9}"),
            Err(PathError::InvalidByte {
                byte: 0xC3,
                offset: 4
            })
        );
        assert!(canon("/\u{ff0f}admin").is_err(), "fullwidth solidus");
    }

    #[test]
    fn space_query_and_fragment_are_rejected() {
        for raw in ["/a b", "/a?b=c", "/a#frag"] {
            assert!(
                matches!(canon(raw), Err(PathError::InvalidByte { .. })),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn path_must_start_with_slash() {
        for raw in ["", "*", "admin", "http://evil/admin", "%2Fadmin"] {
            assert_eq!(canon(raw), Err(PathError::NotAbsolute), "{raw:?}");
        }
    }

    #[test]
    fn trailing_slash_is_preserved() {
        assert_borrowed("/a/", &PathOptions::default());
        assert_canon("/a/b/..", "/a/");
        assert_canon("/a/.", "/a/");
        assert_canon("/a/b/../", "/a/");
    }

    #[test]
    fn canonical_path_is_borrowed() {
        let opts = PathOptions::default();
        for raw in [
            "/",
            "/admin/x",
            "/a/",
            "/a%20b",
            "/%3F",
            "/~user/a-b_c.d",
            "/.well-known/acme",
            "/a/.../b",
            "/a/..b/c.",
            "/%C3%A9",
            "/{id}|\"x\"",
        ] {
            assert_borrowed(raw, &opts);
        }
    }

    #[test]
    fn reserved_escapes_are_kept_with_upper_case_hex() {
        assert_canon("/a%3fb", "/a%3Fb");
        assert_canon("/a%20b", "/a%20b");
        assert_canon("/%c3%a9", "/%C3%A9");
        assert_canon("/%00", "/%00");
    }

    #[test]
    fn encoded_percent_is_not_decoded_twice() {
        assert_borrowed("/%252e%252e/admin", &PathOptions::default());
        assert_borrowed("/%2561dmin", &PathOptions::default());
    }

    #[test]
    fn keep_unchanged_forwards_escaped_slash_upper_cased() {
        let keep = EscapedSlashes::KeepUnchanged;
        assert_eq!(canon_with("/admin%2fx", keep).as_deref(), Ok("/admin%2Fx"));
        assert_eq!(canon_with("/a%5cb", keep).as_deref(), Ok("/a%5Cb"));
        let opts = PathOptions {
            escaped_slashes: keep,
            ..PathOptions::default()
        };
        assert_borrowed("/admin%2Fx", &opts);
        // The escaped slash is not a separator, so it cannot hide a dot segment.
        assert_eq!(canon_with("/a%2F..", keep).as_deref(), Ok("/a%2F.."));
    }

    #[test]
    fn unescape_and_forward_decodes_slash_and_backslash_then_normalises() {
        let fwd = EscapedSlashes::UnescapeAndForward;
        assert_eq!(canon_with("/admin%2Fx", fwd).as_deref(), Ok("/admin/x"));
        assert_eq!(canon_with("/a%5Cb", fwd).as_deref(), Ok("/a/b"));
        assert_eq!(canon_with("/a%2F..%2Fadmin", fwd).as_deref(), Ok("/admin"));
        assert_eq!(
            canon_with("/a%5c%2e%2e%5cadmin", fwd).as_deref(),
            Ok("/admin")
        );
        assert_eq!(canon_with("/a%2F%2Fb", fwd).as_deref(), Ok("/a/b"));
    }

    #[test]
    fn slashes_are_merged_after_dot_segments_like_envoy() {
        assert_canon("/a//..", "/a/");
        assert_canon("/a/..//b", "/b");
    }

    #[test]
    fn merge_disabled_keeps_double_slashes() {
        let opts = PathOptions {
            merge_slashes: false,
            ..PathOptions::default()
        };
        assert_borrowed("//a", &opts);
        assert_borrowed("/a//b/", &opts);
        assert_eq!(canonical_path("/a//../b", &opts).as_deref(), Ok("/a/b"));
        assert_eq!(canonical_path("/a/..//b", &opts).as_deref(), Ok("//b"));
    }

    #[test]
    fn normalise_disabled_keeps_escapes_and_dots() {
        let opts = PathOptions {
            normalize: false,
            ..PathOptions::default()
        };
        assert_borrowed("/%61/./../%2e", &opts);
        assert_eq!(canonical_path("//a/./b", &opts).as_deref(), Ok("/a/./b"));
        assert!(canonical_path("/a%2Fb", &opts).is_err());
    }

    #[test]
    fn escaped_slashes_names_round_trip() {
        for action in [
            EscapedSlashes::Reject,
            EscapedSlashes::KeepUnchanged,
            EscapedSlashes::UnescapeAndForward,
        ] {
            assert_eq!(EscapedSlashes::parse(action.as_str()), Some(action));
        }
        assert_eq!(
            EscapedSlashes::parse("REJECT_REQUEST"),
            Some(EscapedSlashes::Reject)
        );
        assert_eq!(EscapedSlashes::parse("unescape_and_redirect"), None);
        assert_eq!(EscapedSlashes::parse(""), None);
        assert_eq!(EscapedSlashes::default(), EscapedSlashes::Reject);
    }

    #[test]
    fn defaults_match_pomerium() {
        let opts = PathOptions::default();
        assert!(opts.normalize && opts.merge_slashes);
        assert_eq!(opts.escaped_slashes, EscapedSlashes::Reject);
    }

    #[test]
    fn fuzz_entry_point_survives_hostile_bytes() {
        for data in [
            &b""[..],
            b"\x00",
            b"\x01/%2e%2e/%2F",
            b"\x0b/a%5C..%5Cb//",
            b"\x03/\xff\xfe",
            b"\x08/%",
        ] {
            fuzzing::fuzz_one(data);
        }
    }

    // ----- Reference model for the property tests -----

    /// RFC 3986 §5.2.4, transcribed literally on strings.
    fn rfc_remove_dot_segments(path: &str) -> String {
        fn pop_last(output: &mut String) {
            let cut = output.rfind('/').unwrap_or(0);
            output.truncate(cut);
        }
        let mut input = path.to_string();
        let mut output = String::new();
        while !input.is_empty() {
            if let Some(rest) = input.strip_prefix("../") {
                input = rest.to_string();
            } else if let Some(rest) = input.strip_prefix("./") {
                input = rest.to_string();
            } else if let Some(rest) = input.strip_prefix("/./") {
                input = format!("/{rest}");
            } else if input == "/." {
                input = "/".to_string();
            } else if let Some(rest) = input.strip_prefix("/../") {
                input = format!("/{rest}");
                pop_last(&mut output);
            } else if input == "/.." {
                input = "/".to_string();
                pop_last(&mut output);
            } else if input == "." || input == ".." {
                input.clear();
            } else {
                let start = usize::from(input.starts_with('/'));
                let end = input[start..].find('/').map_or(input.len(), |i| i + start);
                output.push_str(&input[..end]);
                input = input[end..].to_string();
            }
        }
        output
    }

    fn collapse_slashes(path: &str) -> String {
        let mut out = String::new();
        for c in path.chars() {
            if !(c == '/' && out.ends_with('/')) {
                out.push(c);
            }
        }
        out
    }

    /// Segments as sent, paired with their meaning after decoding.
    const SEGMENTS: &[(&str, &str)] = &[
        ("", ""),
        (".", "."),
        ("..", ".."),
        ("%2e", "."),
        ("%2E", "."),
        (".%2e", ".."),
        ("%2E.", ".."),
        ("%2e%2E", ".."),
        ("...", "..."),
        ("a", "a"),
        ("%61b", "ab"),
        ("c%3fd", "c%3Fd"),
        ("%7E", "~"),
        ("%25", "%25"),
    ];

    fn options() -> impl Strategy<Value = PathOptions> {
        (any::<bool>(), any::<bool>(), 0u8..3).prop_map(|(normalize, merge_slashes, action)| {
            PathOptions {
                normalize,
                merge_slashes,
                escaped_slashes: match action {
                    0 => EscapedSlashes::Reject,
                    1 => EscapedSlashes::KeepUnchanged,
                    _ => EscapedSlashes::UnescapeAndForward,
                },
            }
        })
    }

    /// Paths built from troublesome pieces, valid or not.
    fn hostile_path() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "/", "/", "a", "b", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%61", "%3f", "%20",
            "%25", "~", "-", "%", "%z", "\\", "?", "\u{e9}", "\t",
        ]);
        prop::collection::vec(pieces, 0..16).prop_map(|p| format!("/{}", p.concat()))
    }

    proptest! {
        #[test]
        fn canonical_output_is_a_fixed_point(raw in hostile_path(), opts in options()) {
            fuzzing::check(&raw, &opts);
        }

        #[test]
        fn arbitrary_text_never_panics_and_keeps_invariants(raw in "/?\\PC{0,40}", opts in options()) {
            fuzzing::check(&raw, &opts);
        }

        #[test]
        fn scan_and_rewrite_agree(raw in hostile_path(), opts in options()) {
            if let Ok(change) = needs_rewrite(&raw, &opts) {
                prop_assert_eq!(change, rewrite(&raw, &opts) != raw);
            }
        }

        #[test]
        fn output_matches_rfc_reference_model(
            segments in prop::collection::vec(prop::sample::select(SEGMENTS), 0..10),
            merge_slashes in any::<bool>(),
        ) {
            let raw: Vec<&str> = segments.iter().map(|(raw, _)| *raw).collect();
            let meaning: Vec<&str> = segments.iter().map(|(_, decoded)| *decoded).collect();
            let raw = format!("/{}", raw.join("/"));
            let mut expected = rfc_remove_dot_segments(&format!("/{}", meaning.join("/")));
            if expected.is_empty() {
                expected.push('/');
            }
            if merge_slashes {
                expected = collapse_slashes(&expected);
            }
            let opts = PathOptions { merge_slashes, ..PathOptions::default() };
            let actual = canonical_path(&raw, &opts);
            prop_assert_eq!(actual.as_deref(), Ok(expected.as_str()));
        }

        #[test]
        fn fuzz_entry_point_accepts_any_bytes(data in prop::collection::vec(any::<u8>(), 0..48)) {
            fuzzing::fuzz_one(&data);
        }
    }
}
