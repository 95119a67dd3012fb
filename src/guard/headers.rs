//! Header names that matter to the proxy, in every spelling.
//!
//! A client that sends `X_Pomerium_Jwt_Assertion` or `X-FORWARDED-FOR` must
//! not get past a filter written for `x-pomerium-jwt-assertion` or
//! `x-forwarded-for`: many servers and frameworks (CGI, WSGI, Rack, PHP) fold
//! case and treat `_` as `-`. The helpers here compare names that way, byte by
//! byte, without allocating.
//!
//! [`trusted_client_ip`] picks the client address from `X-Forwarded-For` the
//! way Envoy's `xff_num_trusted_hops` does.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// A header name compared the way a lenient server reads it: ASCII case is
/// ignored and `_` equals `-`. Made by [`canonical_name`].
#[derive(Debug, Clone, Copy)]
pub struct CanonicalName<'a>(&'a str);

/// Wraps `name` for comparison in canonical form; nothing is copied.
pub fn canonical_name(name: &str) -> CanonicalName<'_> {
    CanonicalName(name)
}

impl<'a> CanonicalName<'a> {
    /// The name as it was written.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// Whether the canonical form begins with the canonical form of `prefix`.
    pub fn starts_with(&self, prefix: &str) -> bool {
        self.0
            .as_bytes()
            .get(..prefix.len())
            .is_some_and(|head| same(head, prefix.as_bytes()))
    }
}

impl PartialEq<CanonicalName<'_>> for CanonicalName<'_> {
    fn eq(&self, other: &CanonicalName<'_>) -> bool {
        same(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for CanonicalName<'_> {}

impl PartialEq<str> for CanonicalName<'_> {
    fn eq(&self, other: &str) -> bool {
        same(self.0.as_bytes(), other.as_bytes())
    }
}

impl PartialEq<&str> for CanonicalName<'_> {
    fn eq(&self, other: &&str) -> bool {
        same(self.0.as_bytes(), other.as_bytes())
    }
}

impl Hash for CanonicalName<'_> {
    /// Hashes the canonical form, so equal names hash alike.
    fn hash<H: Hasher>(&self, state: &mut H) {
        for &byte in self.0.as_bytes() {
            state.write_u8(fold(byte));
        }
        state.write_usize(self.0.len());
    }
}

impl fmt::Display for CanonicalName<'_> {
    /// Writes the canonical form: lower case, `-` for `_`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.chars().try_for_each(|c| match c {
            '_' => f.write_str("-"),
            other => fmt::Write::write_char(f, other.to_ascii_lowercase()),
        })
    }
}

/// One byte in canonical form.
fn fold(byte: u8) -> u8 {
    match byte {
        b'_' => b'-',
        other => other.to_ascii_lowercase(),
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| fold(x) == fold(y))
}

/// The prefix of every header Pomerium sets for the upstream.
const IDENTITY_PREFIX: &str = "x-pomerium-";

/// The fields that frame an HTTP/1 message or belong to one connection (the hop-by-hop fields
/// of RFC 9110 §7.6.1 with the obsolete `Keep-Alive` and `Proxy-Connection`, and
/// `Content-Length`): Pingora sets or strips them on each side itself.
pub const FRAMING_HEADERS: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Headers the proxy writes on upstream requests itself, besides `Impersonate-*` and the
/// [`FRAMING_HEADERS`].
const PROXY_WRITTEN_HEADERS: [&str; 10] = [
    "host",
    "authorization",
    "proxy-authorization",
    "expect",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "x-pomerium-jwt-assertion",
];

/// Whether `name` (in any spelling) is a header the proxy writes on upstream requests itself
/// or one that frames the message: a claim header (`jwt_claims_headers`) may not be one.
pub fn is_proxy_own_header(name: &str) -> bool {
    let canonical = canonical_name(name);
    proxy_own_headers().any(|own| canonical == own) || is_impersonation_header(name)
}

/// The names [`is_proxy_own_header`] refuses, besides `Impersonate-*`: the headers the proxy
/// writes itself, then the [`FRAMING_HEADERS`].
pub fn proxy_own_headers() -> impl Iterator<Item = &'static str> {
    PROXY_WRITTEN_HEADERS
        .iter()
        .chain(&FRAMING_HEADERS)
        .copied()
}

/// Whether `name` is a header the proxy alone may set for the upstream: any
/// `x-pomerium-*` header, or one of the `configured` claim headers (such as
/// `X-Email`), in any spelling. A client's copy must be removed.
pub fn is_identity_header<C>(name: &str, configured: C) -> bool
where
    C: IntoIterator,
    C::Item: AsRef<str>,
{
    let name = canonical_name(name);
    name.starts_with(IDENTITY_PREFIX)
        || configured
            .into_iter()
            .any(|c| name == canonical_name(c.as_ref()))
}

/// Whether `name` is a Kubernetes impersonation header (`Impersonate-User`, `-Group`, `-Uid`,
/// `-Extra-*`) in any spelling: only the proxy may set them, for an upstream it gives a
/// service account token (`kubernetes_service_account_token`).
pub fn is_impersonation_header(name: &str) -> bool {
    canonical_name(name).starts_with("impersonate-")
}

/// Headers that carry the client's address or the original request's
/// scheme and host, which a client can forge.
const FORWARDING_HEADERS: [&str; 5] = [
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-original-forwarded-for",
];

/// Whether `name` is a forwarding header in any spelling: every
/// `x-forwarded-*`, `forwarded`, `x-real-ip`, `x-client-ip`,
/// `true-client-ip` and `x-original-forwarded-for`.
pub fn is_forwarding_header(name: &str) -> bool {
    let name = canonical_name(name);
    name.starts_with("x-forwarded-") || FORWARDING_HEADERS.iter().any(|&h| name == h)
}

/// The client address to trust, given the connection's `peer` address, the
/// values of every `X-Forwarded-For` header in order, and how many proxies in
/// front of this one are trusted (Envoy's `xff_num_trusted_hops`).
///
/// With 0 hops the peer is returned. With N hops the Nth address from the
/// right of the combined list is returned, because each trusted proxy appends
/// the address it saw and everything further left may be forged. The peer is
/// returned when the list has fewer than N entries or that entry is not a
/// bare IP address (a port, brackets or an empty entry do not parse).
pub fn trusted_client_ip(peer: IpAddr, xff_values: &[&str], trusted_hops: usize) -> IpAddr {
    if trusted_hops == 0 {
        return peer;
    }
    let mut remaining = trusted_hops;
    for value in xff_values.iter().rev() {
        for entry in value.rsplit(',') {
            remaining -= 1;
            if remaining == 0 {
                return entry.trim_matches([' ', '\t']).parse().unwrap_or(peer);
            }
        }
    }
    peer
}

/// Entry point for a `cargo fuzz` target.
#[doc(hidden)]
pub mod fuzzing {
    use super::{
        canonical_name, fold, is_forwarding_header, is_identity_header, trusted_client_ip,
    };
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};
    use std::net::{IpAddr, Ipv4Addr};

    /// Reads arbitrary bytes as lines: two header names, then
    /// `X-Forwarded-For` values. Checks that comparisons agree with a plain
    /// folded copy, that respelling a name never changes how it is classified,
    /// and that the trusted address is the peer or one of the listed ones.
    pub fn fuzz_one(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let mut lines = text.split('\n');
        let a = lines.next().unwrap_or_default();
        let b = lines.next().unwrap_or_default();
        let xff: Vec<&str> = lines.collect();

        let folded = |s: &str| -> Vec<u8> { s.bytes().map(fold).collect() };
        let equal = canonical_name(a) == canonical_name(b);
        assert_eq!(equal, folded(a) == folded(b));
        if equal {
            assert_eq!(hash_of(a), hash_of(b));
        }
        assert_eq!(canonical_name(a).to_string().into_bytes(), folded(a));

        let respelled: String = a
            .chars()
            .map(|c| match c {
                '-' => '_',
                other => other.to_ascii_uppercase(),
            })
            .collect();
        assert_eq!(is_forwarding_header(a), is_forwarding_header(&respelled));
        assert_eq!(
            is_identity_header(a, &[b]),
            is_identity_header(&respelled, &[b])
        );
        assert!(is_identity_header(b, &[a]) || !equal);

        let peer = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let hops = data.first().map_or(0, |&n| usize::from(n % 5));
        let chosen = trusted_client_ip(peer, &xff, hops);
        let listed = xff
            .iter()
            .flat_map(|v| v.split(','))
            .any(|e| e.trim_matches([' ', '\t']).parse() == Ok(chosen));
        assert!(chosen == peer || listed);
    }

    fn hash_of(name: &str) -> u64 {
        let mut hasher = DefaultHasher::new();
        canonical_name(name).hash(&mut hasher);
        hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No configured claim headers.
    const NO_CLAIMS: [&str; 0] = [];
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));

    fn ip(text: &str) -> IpAddr {
        match text.parse() {
            Ok(addr) => addr,
            Err(err) => panic!("{text:?}: {err}"),
        }
    }

    #[test]
    fn jwt_assertion_spellings_compare_equal() {
        let names = [
            "X_Pomerium_Jwt_Assertion",
            "x-pomerium-jwt-assertion",
            "X-POMERIUM-JWT-ASSERTION",
            "x_pomerium-JWT_assertion",
        ];
        for a in names {
            for b in names {
                assert_eq!(canonical_name(a), canonical_name(b), "{a} vs {b}");
            }
        }
        assert_eq!(canonical_name(names[0]), "x-pomerium-jwt-assertion");
    }

    #[test]
    fn different_names_compare_unequal() {
        assert_ne!(
            canonical_name("x-pomerium-jwt"),
            canonical_name("x-pomerium-jwt-assertion")
        );
        assert_ne!(canonical_name("x.pomerium"), canonical_name("x-pomerium"));
        assert_ne!(canonical_name("x pomerium"), canonical_name("x_pomerium"));
    }

    #[test]
    fn equal_spellings_share_one_hash_set_slot() {
        let set: HashSet<CanonicalName<'_>> = ["X-Email", "x_email", "X_EMAIL", "x-email"]
            .into_iter()
            .map(canonical_name)
            .collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn display_shows_canonical_form() {
        assert_eq!(
            canonical_name("X_Forwarded-FOR").to_string(),
            "x-forwarded-for"
        );
        assert_eq!(
            canonical_name("X_Forwarded-FOR").as_str(),
            "X_Forwarded-FOR"
        );
    }

    #[test]
    fn identity_header_with_underscores_is_recognised() {
        assert!(is_identity_header("X_Pomerium_Jwt_Assertion", NO_CLAIMS));
        assert!(is_identity_header("x_pomerium_claim_email", NO_CLAIMS));
    }

    #[test]
    fn identity_header_in_any_case_is_recognised() {
        assert!(is_identity_header("X-POMERIUM-JWT-ASSERTION", NO_CLAIMS));
        assert!(is_identity_header("x-Pomerium-Claim-Groups", NO_CLAIMS));
    }

    #[test]
    fn configured_claim_header_is_recognised_in_any_spelling() {
        let configured = ["X-Email", "x-user_id"];
        assert!(is_identity_header("x_email", &configured));
        assert!(is_identity_header("X-USER-ID", &configured));
        assert!(!is_identity_header("x-emails", &configured));
    }

    #[test]
    fn ordinary_header_is_not_an_identity_header() {
        for name in [
            "x-pomerium",
            "x-pomeriumjwt",
            "pomerium-jwt",
            "authorization",
            "",
        ] {
            assert!(!is_identity_header(name, &["x-email"]), "{name:?}");
        }
    }

    #[test]
    fn forwarding_headers_are_recognised_in_every_spelling() {
        for name in [
            "X-Forwarded-For",
            "x_forwarded_for",
            "X-FORWARDED-HOST",
            "x-forwarded-proto",
            "X_Forwarded_Client_Cert",
            "Forwarded",
            "X-Real-IP",
            "x_real_ip",
            "X-Client-IP",
            "True-Client-IP",
            "true_client_ip",
            "X-Original-Forwarded-For",
        ] {
            assert!(is_forwarding_header(name), "{name}");
        }
    }

    #[test]
    fn lookalike_names_are_not_forwarding_headers() {
        for name in [
            "x-forwarded",
            "x-forwardedfor",
            "forwarded-for",
            "x-real-ips",
            "real-ip",
            "",
        ] {
            assert!(!is_forwarding_header(name), "{name:?}");
        }
    }

    #[test]
    fn zero_trusted_hops_ignores_forged_xff() {
        assert_eq!(trusted_client_ip(PEER, &["6.6.6.6"], 0), PEER);
    }

    #[test]
    fn forged_xff_prefix_is_ignored_behind_one_trusted_proxy() {
        // The client sent "6.6.6.6"; the trusted proxy appended what it saw.
        let xff = ["6.6.6.6, 203.0.113.7"];
        assert_eq!(trusted_client_ip(PEER, &xff, 1), ip("203.0.113.7"));
    }

    #[test]
    fn nth_address_from_the_right_spans_several_headers() {
        let xff = ["6.6.6.6, 198.51.100.1", "203.0.113.7,2001:db8::5"];
        assert_eq!(trusted_client_ip(PEER, &xff, 1), ip("2001:db8::5"));
        assert_eq!(trusted_client_ip(PEER, &xff, 2), ip("203.0.113.7"));
        assert_eq!(trusted_client_ip(PEER, &xff, 3), ip("198.51.100.1"));
    }

    #[test]
    fn short_xff_list_falls_back_to_peer() {
        assert_eq!(trusted_client_ip(PEER, &["203.0.113.7"], 2), PEER);
        assert_eq!(trusted_client_ip(PEER, &[], 1), PEER);
    }

    #[test]
    fn unparsable_entry_falls_back_to_peer() {
        for entry in [
            "not-an-ip",
            "203.0.113.7:8080",
            "[2001:db8::1]",
            "",
            "unknown",
            "1.2.3.4 x",
        ] {
            assert_eq!(trusted_client_ip(PEER, &[entry], 1), PEER, "{entry:?}");
        }
        assert_eq!(
            trusted_client_ip(PEER, &["1.2.3.4,"], 1),
            PEER,
            "trailing comma"
        );
    }

    #[test]
    fn entry_whitespace_is_trimmed() {
        assert_eq!(
            trusted_client_ip(PEER, &["\t203.0.113.7 "], 1),
            ip("203.0.113.7")
        );
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(trusted_client_ip(PEER, &[" ::1"], 1), v6);
    }

    #[test]
    fn fuzz_entry_point_survives_hostile_bytes() {
        for data in [
            &b""[..],
            b"\n",
            b"X_A\nx-a\n1.2.3.4",
            b"\x02a\nb\n::1,1.1.1.1",
            b"\xff\n\xfe",
        ] {
            fuzzing::fuzz_one(data);
        }
    }

    proptest! {
        #[test]
        fn respelled_names_compare_equal(name in "[A-Za-z0-9_-]{0,24}", flips in any::<u64>()) {
            let respelled: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    let flip = (flips >> (i % 64)) & 1 == 1;
                    match c {
                        '-' if flip => '_',
                        '_' if flip => '-',
                        c if flip => c.to_ascii_uppercase(),
                        c => c.to_ascii_lowercase(),
                    }
                })
                .collect();
            prop_assert_eq!(canonical_name(&name), canonical_name(&respelled));
            prop_assert_eq!(is_forwarding_header(&name), is_forwarding_header(&respelled));
            prop_assert_eq!(is_identity_header(&name, NO_CLAIMS), is_identity_header(&respelled, NO_CLAIMS));
        }

        #[test]
        fn trusted_ip_matches_reference_list(
            addrs in prop::collection::vec(any::<Ipv4Addr>(), 0..6),
            split in 0usize..6,
            hops in 0usize..8,
        ) {
            let strings: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            let split = split.min(strings.len());
            let first = strings[..split].join(", ");
            let second = strings[split..].join(",");
            let values: Vec<&str> = [first.as_str(), second.as_str()]
                .into_iter()
                .filter(|v| !v.is_empty())
                .collect();
            let expected = match hops {
                0 => PEER,
                n if n <= addrs.len() => IpAddr::V4(addrs[addrs.len() - n]),
                _ => PEER,
            };
            prop_assert_eq!(trusted_client_ip(PEER, &values, hops), expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..96)) {
            fuzzing::fuzz_one(&data);
        }
    }
}
