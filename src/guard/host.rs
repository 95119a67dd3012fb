//! The request authority (`Host` header or `:authority`).
//!
//! [`parse_authority`] splits an authority into a host and an optional port
//! and refuses anything a hostile client could use to confuse route matching:
//! userinfo (`evil@good`), whitespace, control bytes, over-long names, stray
//! text after an IPv6 literal, ports out of range.
//!
//! Decisions worth knowing:
//!
//! * Host names may contain ASCII letters, digits, `-`, `.` and also `_`,
//!   which is not valid in a host name but appears in real internal names and
//!   is accepted by Envoy. Labels may begin or end with `-`. Non-ASCII names
//!   must arrive in their punycode (`xn--`) form.
//! * The host is returned in lower case with one trailing dot removed, so
//!   `Example.COM.` and `example.com` are the same route.
//! * A name whose last label is numeric (`1.2.3.4`, `0x7f.1`, `10.1`) must be
//!   a plain dotted-quad IPv4 address: the shorthand, octal and hex forms that
//!   some resolvers accept are refused, so `017.0.0.1` cannot mean something
//!   else to the upstream.
//! * IPv6 literals are returned in brackets, in the canonical form of
//!   RFC 5952 (`[0:0::1]` becomes `[::1]`). Zone identifiers are refused.
//! * A port is 1 to 5 ASCII digits with a value from 1 to 65535; leading
//!   zeros are accepted (`080` is port 80).

use std::net::{Ipv4Addr, Ipv6Addr};

use compact_str::{CompactString, format_compact};

/// A host in lower case, as [`parse_authority`] returns it: kept inline, without an allocation,
/// when it is at most 24 bytes long on a 64-bit target (most route hosts are), on the heap
/// otherwise.
pub type HostName = CompactString;

/// The longest host name accepted, without its trailing dot.
const MAX_HOST_LEN: usize = 253;
/// The longest label accepted.
const MAX_LABEL_LEN: usize = 63;

/// Why an authority was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Nothing before the port, or nothing at all.
    #[error("the host is empty")]
    Empty,
    /// The host name is longer than 253 characters.
    #[error("the host name is longer than 253 characters")]
    TooLong,
    /// Two dots in a row, or a leading dot.
    #[error("the host name has an empty label")]
    EmptyLabel,
    /// A label longer than 63 characters.
    #[error("a label of the host name is longer than 63 characters")]
    LabelTooLong,
    /// A byte outside letters, digits, `-`, `_` and `.`.
    #[error("the host contains a character that is not allowed (0x{byte:02X})")]
    InvalidCharacter {
        /// The refused byte (the first byte of a non-ASCII character).
        byte: u8,
    },
    /// An `@`, meaning userinfo, which has no place in a request authority.
    #[error("the authority contains userinfo ('@')")]
    Userinfo,
    /// A port that is empty, not all digits, zero or above 65535.
    #[error("the port is not a number from 1 to 65535")]
    InvalidPort,
    /// The text between `[` and `]` is not an IPv6 address, or `]` is missing.
    #[error("the IPv6 address is not valid")]
    InvalidIpv6,
    /// Text after `]` other than `:port`.
    #[error("unexpected text after the IPv6 address")]
    TextAfterIpv6,
    /// More than one `:` outside brackets.
    #[error("an IPv6 address must be enclosed in brackets")]
    UnbracketedIpv6,
    /// A name ending in a numeric label that is not a dotted-quad IPv4 address.
    #[error("the host looks like an IPv4 address but is not a valid one")]
    InvalidIpv4,
}

/// Splits `raw` into a lower-case host without trailing dot and an optional
/// port. The host is the only allocation, and only when it is longer than 24 bytes.
pub fn parse_authority(raw: &str) -> Result<(HostName, Option<u16>), HostError> {
    match parse_usual(raw) {
        Some(parsed) => Ok(parsed),
        None => parse_checked(raw),
    }
}

/// The usual authority, in one pass: a name already in lower case (letters, digits, `-`, `_`)
/// in labels of 1 to 63 bytes, at most 253 bytes in all, no trailing dot, a last label that is
/// not numeric, and an optional port. `None` for anything else, which [`parse_checked`] then
/// accepts or refuses, with the reason; what this accepts, that accepts alike.
fn parse_usual(raw: &str) -> Option<(HostName, Option<u16>)> {
    let bytes = raw.as_bytes();
    let (mut label_start, mut end) = (0, bytes.len());
    for (i, &byte) in bytes.iter().enumerate() {
        match BYTE_CLASSES[usize::from(byte)] {
            NAME_LOWER => {}
            DOT if label_fault(i - label_start).is_none() => label_start = i + 1,
            COLON => {
                end = i;
                break;
            }
            _ => return None,
        }
    }
    let name = &raw[..end];
    let last = &name[label_start..];
    if label_fault(last.len()).is_some() || end > MAX_HOST_LEN || is_numeric_label(last) {
        return None;
    }
    let port = match raw.get(end + 1..) {
        Some(digits) => Some(parse_port(digits).ok()?),
        None => None,
    };
    Some((HostName::new(name), port))
}

/// [`parse_authority`] for every authority, each check in turn: the reason for a refusal.
fn parse_checked(raw: &str) -> Result<(HostName, Option<u16>), HostError> {
    let Some(&first) = raw.as_bytes().first() else {
        return Err(HostError::Empty);
    };
    // One pass over the bytes finds an `@` anywhere, the first `:` and whether another follows
    // (a plain loop: `contains` and `split_once` each set up a searcher for a few bytes).
    let (mut colon, mut colons) = (None, 0);
    for (i, &byte) in raw.as_bytes().iter().enumerate() {
        match byte {
            b'@' => return Err(HostError::Userinfo),
            b':' => {
                colon = colon.or(Some(i));
                colons += 1;
            }
            _ => {}
        }
    }
    if first == b'[' {
        return parse_ipv6(&raw[1..]);
    }
    let (host, port) = match colon {
        Some(_) if colons > 1 => return Err(HostError::UnbracketedIpv6),
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    check_name(name)?;
    let port = port.map(parse_port).transpose()?;
    let mut host = HostName::new(name);
    host.make_ascii_lowercase();
    Ok((host, port))
}

/// Parses what follows the `[` of an IPv6 literal.
fn parse_ipv6(rest: &str) -> Result<(HostName, Option<u16>), HostError> {
    let (inner, after) = rest.split_once(']').ok_or(HostError::InvalidIpv6)?;
    let addr: Ipv6Addr = inner.parse().map_err(|_| HostError::InvalidIpv6)?;
    let port = match after {
        "" => None,
        _ => {
            let digits = after.strip_prefix(':').ok_or(HostError::TextAfterIpv6)?;
            Some(parse_port(digits)?)
        }
    };
    Ok((format_compact!("[{addr}]"), port))
}

/// Checks a host name (trailing dot already removed) without allocating, in one pass. Of
/// several faults the first reported is a bad character (the first), then a name too long, then
/// the first bad label, then a numeric last label that is not an IPv4 address.
fn check_name(name: &str) -> Result<(), HostError> {
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    let bytes = name.as_bytes();
    let (mut label_start, mut bad_label) = (0, None);
    for (i, &byte) in bytes.iter().enumerate() {
        if !is_name_byte(byte) {
            return Err(HostError::InvalidCharacter { byte });
        }
        if byte == b'.' {
            bad_label = bad_label.or_else(|| label_fault(i - label_start));
            label_start = i + 1;
        }
    }
    if bytes.len() > MAX_HOST_LEN {
        return Err(HostError::TooLong);
    }
    if let Some(fault) = bad_label.or_else(|| label_fault(bytes.len() - label_start)) {
        return Err(fault);
    }
    if is_numeric_label(&name[label_start..]) && name.parse::<Ipv4Addr>().is_err() {
        return Err(HostError::InvalidIpv4);
    }
    Ok(())
}

/// What is wrong with a label of `len` bytes, if anything.
fn label_fault(len: usize) -> Option<HostError> {
    match len {
        0 => Some(HostError::EmptyLabel),
        n if n > MAX_LABEL_LEN => Some(HostError::LabelTooLong),
        _ => None,
    }
}

/// Whether a host name may hold `byte`: ASCII letters, digits, `-`, `_` and `.`.
fn is_name_byte(byte: u8) -> bool {
    matches!(
        BYTE_CLASSES[usize::from(byte)],
        NAME_LOWER | NAME_UPPER | DOT
    )
}

/// Each byte's class, one lookup a byte where the tests take several comparisons: a byte of a
/// name in lower case (letters, digits, `-`, `_`), an upper-case letter, a dot, a colon, or
/// anything else. [`parse_usual`] takes the first and the dot; [`is_name_byte`] all three.
const BYTE_CLASSES: [u8; 256] = {
    let mut table = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => NAME_LOWER,
            b'A'..=b'Z' => NAME_UPPER,
            b'.' => DOT,
            b':' => COLON,
            _ => OTHER,
        };
        b += 1;
    }
    table
};
const OTHER: u8 = 0;
const NAME_LOWER: u8 = 1;
const NAME_UPPER: u8 = 2;
const DOT: u8 = 3;
const COLON: u8 = 4;

/// Whether a label reads as a number: decimal digits, or `0x` and hex digits.
fn is_numeric_label(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// Parses 1 to 5 ASCII digits with a value from 1 to 65535.
fn parse_port(digits: &str) -> Result<u16, HostError> {
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::InvalidPort);
    }
    let value = digits
        .bytes()
        .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'));
    match u16::try_from(value) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(HostError::InvalidPort),
    }
}

/// Entry point for a `cargo fuzz` target.
#[doc(hidden)]
pub mod fuzzing {
    use super::parse_authority;

    /// Parses arbitrary bytes as an authority and checks that whatever is
    /// accepted re-parses to itself, with and without its port.
    pub fn fuzz_one(data: &[u8]) {
        let raw = String::from_utf8_lossy(data);
        check(&raw);
    }

    /// Asserts the invariants of [`parse_authority`] for one input.
    pub(super) fn check(raw: &str) {
        // The one-pass way accepts only what the full checks accept, alike.
        if let Some(usual) = super::parse_usual(raw) {
            assert_eq!(Ok(usual), super::parse_checked(raw), "{raw:?}");
        }
        let Ok((host, port)) = parse_authority(raw) else {
            return;
        };
        assert!(!host.is_empty());
        assert!(!host.ends_with('.'), "{host:?} keeps a trailing dot");
        assert!(
            !host
                .bytes()
                .any(|b| b.is_ascii_uppercase() || b <= b' ' || b == b'@' || b >= 0x7F),
            "{host:?} has a forbidden byte"
        );
        assert_eq!(parse_authority(&host), Ok((host.clone(), None)));
        if let Some(port) = port {
            assert_ne!(port, 0);
            let again = format!("{host}:{port}");
            assert_eq!(parse_authority(&again), Ok((host, Some(port))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// [`super::parse_authority`] with the host as a `String`, as the tests spell what they
    /// expect.
    fn parse_authority(raw: &str) -> Result<(String, Option<u16>), HostError> {
        super::parse_authority(raw).map(|(host, port)| (host.into(), port))
    }

    fn ok(raw: &str) -> (String, Option<u16>) {
        match parse_authority(raw) {
            Ok(parsed) => parsed,
            Err(err) => panic!("{raw:?} was refused: {err}"),
        }
    }

    /// The usual authorities take the one pass (the full checks are for the rest), up to the
    /// limits: a label of 63 bytes, a name of 253.
    #[test]
    fn usual_authorities_take_the_one_pass() {
        let label = "a".repeat(63);
        let name = [&*label, &*label, &*label, &"b".repeat(61)].join(".");
        assert_eq!(name.len(), 253);
        for raw in [
            "a.test".to_string(),
            "a.test:443".to_string(),
            "my_host-1.example.com:8080".to_string(),
            format!("{label}.test"),
            name.clone(),
        ] {
            assert!(super::parse_usual(&raw).is_some(), "{raw:?}");
        }
        for raw in [
            "A.test",
            "a.test.",
            "10.0.0.1",
            "[::1]",
            "a.test:0",
            &format!("{name}b"),
        ] {
            assert!(super::parse_usual(raw).is_none(), "{raw:?}");
        }
    }

    #[test]
    fn name_bytes_are_letters_digits_hyphens_underscores_and_dots() {
        for byte in 0..=u8::MAX {
            let expected = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.');
            assert_eq!(is_name_byte(byte), expected, "byte 0x{byte:02X}");
        }
    }

    #[test]
    fn hosts_up_to_24_bytes_are_kept_without_an_allocation() {
        let Ok((short, _)) = super::parse_authority("App.Example-Corp.TEST:443") else {
            panic!("refused");
        };
        assert_eq!(short, "app.example-corp.test");
        assert!(!short.is_heap_allocated());
        let Ok((long, _)) = super::parse_authority("Grafana.Internal.Example.COM") else {
            panic!("refused");
        };
        assert_eq!(long, "grafana.internal.example.com");
        assert!(long.is_heap_allocated());
        for (len, inline) in [(24, true), (25, false)] {
            let raw = format!("{}.TEST", "A".repeat(len - 5));
            let Ok((host, _)) = super::parse_authority(&raw) else {
                panic!("{raw} refused");
            };
            assert_eq!(host, raw.to_ascii_lowercase());
            assert_eq!(host.is_heap_allocated(), !inline, "{len} bytes");
        }
        let Ok((v6, _)) = super::parse_authority("[::1]:8443") else {
            panic!("refused");
        };
        assert_eq!(v6, "[::1]");
        assert!(!v6.is_heap_allocated());
    }

    #[test]
    fn plain_name_and_port_are_accepted() {
        assert_eq!(ok("a.test"), ("a.test".to_string(), None));
        assert_eq!(ok("a.test:8443"), ("a.test".to_string(), Some(8443)));
        assert_eq!(ok("localhost:1"), ("localhost".to_string(), Some(1)));
        assert_eq!(ok("a.test:65535").1, Some(65535));
    }

    #[test]
    fn upper_case_is_folded() {
        assert_eq!(
            ok("Admin.EXAMPLE.com:443"),
            ("admin.example.com".to_string(), Some(443))
        );
    }

    #[test]
    fn trailing_dot_is_removed() {
        assert_eq!(ok("example.com."), ("example.com".to_string(), None));
        assert_eq!(ok("example.com.:80"), ("example.com".to_string(), Some(80)));
        assert_eq!(parse_authority("example.com.."), Err(HostError::EmptyLabel));
        assert_eq!(parse_authority("."), Err(HostError::Empty));
    }

    #[test]
    fn underscore_is_allowed_for_compatibility() {
        assert_eq!(ok("my_service.internal").0, "my_service.internal");
    }

    #[test]
    fn ipv4_and_ipv6_are_accepted() {
        assert_eq!(ok("10.0.0.1:8080"), ("10.0.0.1".to_string(), Some(8080)));
        assert_eq!(ok("[::1]"), ("[::1]".to_string(), None));
        assert_eq!(ok("[::1]:443"), ("[::1]".to_string(), Some(443)));
        assert_eq!(ok("[2001:DB8:0:0::1]").0, "[2001:db8::1]");
    }

    #[test]
    fn over_long_host_is_refused() {
        let label = "a".repeat(63);
        let host = [label.as_str(); 4].join("."); // 255 characters
        assert_eq!(parse_authority(&host), Err(HostError::TooLong));
        let fits = [
            label.as_str(),
            label.as_str(),
            label.as_str(),
            &"b".repeat(61),
        ]
        .join(".");
        assert_eq!(fits.len(), 253);
        assert_eq!(ok(&fits).0, fits);
        assert_eq!(ok(&format!("{fits}.")).0, fits);
    }

    #[test]
    fn over_long_label_is_refused() {
        let host = format!("{}.test", "a".repeat(64));
        assert_eq!(parse_authority(&host), Err(HostError::LabelTooLong));
    }

    #[test]
    fn empty_label_is_refused() {
        for raw in [".a.test", "a..test", "a..test:80"] {
            assert_eq!(parse_authority(raw), Err(HostError::EmptyLabel), "{raw:?}");
        }
    }

    #[test]
    fn userinfo_is_refused() {
        assert_eq!(
            parse_authority("evil.example@good"),
            Err(HostError::Userinfo)
        );
        assert_eq!(
            parse_authority("user:pass@good.test"),
            Err(HostError::Userinfo)
        );
        assert_eq!(parse_authority("[::1]@good"), Err(HostError::Userinfo));
    }

    #[test]
    fn whitespace_is_refused() {
        refused_as_invalid_characters(&["a b", " a.test", "a.test ", "a.test\t", "a.test\r\nx: y"]);
    }

    fn refused_as_invalid_characters(raws: &[&str]) {
        for raw in raws {
            assert!(
                matches!(
                    parse_authority(raw),
                    Err(HostError::InvalidCharacter { .. })
                ),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn nul_byte_is_refused() {
        assert_eq!(
            parse_authority("good.test\0.evil"),
            Err(HostError::InvalidCharacter { byte: 0 })
        );
    }

    #[test]
    fn non_ascii_and_punctuation_are_refused() {
        refused_as_invalid_characters(&[
            "b\u{fc}cher.test",
            "a/b",
            "a%2eb",
            "a\\b",
            "*.test",
            "a,b",
        ]);
    }

    #[test]
    fn out_of_range_port_is_refused() {
        for raw in ["a.test:99999", "a.test:65536", "a.test:0", "a.test:123456"] {
            assert_eq!(parse_authority(raw), Err(HostError::InvalidPort), "{raw:?}");
        }
    }

    #[test]
    fn empty_or_non_numeric_port_is_refused() {
        for raw in [
            "a.test:",
            "a.test:+80",
            "a.test:8o",
            "a.test: 80",
            "[::1]:",
            "[::1]:x",
        ] {
            assert_eq!(parse_authority(raw), Err(HostError::InvalidPort), "{raw:?}");
        }
    }

    #[test]
    fn port_with_leading_zeros_reads_as_its_value() {
        assert_eq!(ok("a.test:080").1, Some(80));
    }

    #[test]
    fn text_after_ipv6_bracket_is_refused() {
        assert_eq!(parse_authority("[::1]x"), Err(HostError::TextAfterIpv6));
        assert_eq!(parse_authority("[::1]]"), Err(HostError::TextAfterIpv6));
        assert_eq!(
            parse_authority("[::1].evil.test"),
            Err(HostError::TextAfterIpv6)
        );
    }

    #[test]
    fn invalid_ipv6_is_refused() {
        for raw in [
            "[::1",
            "[]",
            "[zz::1]",
            "[fe80::1%25eth0]",
            "[1.2.3.4]",
            "[ ::1]",
        ] {
            assert_eq!(parse_authority(raw), Err(HostError::InvalidIpv6), "{raw:?}");
        }
    }

    #[test]
    fn unbracketed_ipv6_is_refused() {
        assert_eq!(parse_authority("::1"), Err(HostError::UnbracketedIpv6));
        assert_eq!(
            parse_authority("a.test:80:80"),
            Err(HostError::UnbracketedIpv6)
        );
    }

    #[test]
    fn empty_host_is_refused() {
        assert_eq!(parse_authority(""), Err(HostError::Empty));
        assert_eq!(parse_authority(":80"), Err(HostError::Empty));
    }

    #[test]
    fn ambiguous_ipv4_forms_are_refused() {
        for raw in [
            "017.0.0.1",
            "0x7f.0.0.1",
            "127.1",
            "2130706433",
            "1.2.3.256",
            "a.0x10",
        ] {
            assert_eq!(parse_authority(raw), Err(HostError::InvalidIpv4), "{raw:?}");
        }
        assert_eq!(ok("1x.test").0, "1x.test");
        assert_eq!(ok("123.test").0, "123.test");
    }

    #[test]
    fn fuzz_entry_point_survives_hostile_bytes() {
        for data in [
            &b""[..],
            b"[",
            b"]",
            b"[::1]:0",
            b"\xff\xfe",
            b"A.B.:1",
            b"@",
        ] {
            fuzzing::fuzz_one(data);
        }
    }

    // The checks as first written (a search per question): the one-pass versions above must
    // give the same answer, error included, for every input.
    fn reference_parse_authority(raw: &str) -> Result<(String, Option<u16>), HostError> {
        if raw.is_empty() {
            return Err(HostError::Empty);
        }
        if raw.contains('@') {
            return Err(HostError::Userinfo);
        }
        if let Some(rest) = raw.strip_prefix('[') {
            return parse_ipv6(rest).map(|(host, port)| (host.into(), port));
        }
        let (host, port) = match raw.split_once(':') {
            Some((_, port)) if port.contains(':') => return Err(HostError::UnbracketedIpv6),
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        };
        let name = host.strip_suffix('.').unwrap_or(host);
        reference_check_name(name)?;
        let port = port.map(parse_port).transpose()?;
        Ok((name.to_ascii_lowercase(), port))
    }

    /// Checks a host name (trailing dot already removed) without allocating.
    fn reference_check_name(name: &str) -> Result<(), HostError> {
        if name.is_empty() {
            return Err(HostError::Empty);
        }
        if let Some(&byte) = name.as_bytes().iter().find(|&&b| !is_name_byte(b)) {
            return Err(HostError::InvalidCharacter { byte });
        }
        if name.len() > MAX_HOST_LEN {
            return Err(HostError::TooLong);
        }
        let mut last = "";
        for label in name.split('.') {
            if label.is_empty() {
                return Err(HostError::EmptyLabel);
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(HostError::LabelTooLong);
            }
            last = label;
        }
        if is_numeric_label(last) && name.parse::<Ipv4Addr>().is_err() {
            return Err(HostError::InvalidIpv4);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn accepted_host_reparses_to_itself(
            raw in "[a-zA-Z0-9_.-]{1,20}(:[0-9]{1,6})?",
        ) {
            fuzzing::check(&raw);
        }

        #[test]
        fn what_the_usual_way_accepts_the_checks_accept_alike(
            raw in "[a-f0-9x_.-]{0,14}(:[0-9]{0,6})?",
        ) {
            fuzzing::check(&raw);
        }

        /// Labels and names about the limits (63 and 253 bytes).
        #[test]
        fn what_the_usual_way_accepts_the_checks_accept_alike_at_the_limits(
            raw in "[a-z]{60,66}(\\.[a-z0-9]{60,66}){0,4}\\.?(:[0-9]{1,5})?",
        ) {
            fuzzing::check(&raw);
        }

        #[test]
        fn accepted_dns_name_keeps_its_letters(
            labels in prop::collection::vec("[a-zA-Z][a-zA-Z0-9_-]{0,62}", 1..4),
            port in proptest::option::of(1u16..),
        ) {
            let name = labels.join(".");
            let raw = match port {
                Some(port) => format!("{name}:{port}"),
                None => name.clone(),
            };
            prop_assert_eq!(parse_authority(&raw), Ok((name.to_ascii_lowercase(), port)));
        }

        #[test]
        fn accepted_ipv6_reparses_to_itself(addr in any::<Ipv6Addr>(), port in 1u16..) {
            fuzzing::check(&format!("[{addr}]:{port}"));
            let expected = format!("[{addr}]");
            prop_assert_eq!(parse_authority(&format!("[{addr}]")), Ok((expected, None)));
        }

        #[test]
        fn one_pass_answers_as_the_searches_did(
            raw in prop_oneof![
                "[a-zA-Z0-9._@:\\[\\]x-]{0,24}",
                "[0-9.xX:]{0,20}",
                "[a-z.]{40,300}(:[0-9]{0,6})?",
                "\\PC{0,30}",
            ]
        ) {
            prop_assert_eq!(parse_authority(&raw), reference_parse_authority(&raw));
        }

        #[test]
        fn arbitrary_text_never_panics(raw in "\\PC{0,30}") {
            fuzzing::check(&raw);
        }
    }
}
