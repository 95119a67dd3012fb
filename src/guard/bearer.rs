//! Identity provider tokens carried by API clients, in the forms Pomerium reads.
//!
//! Always recognised, whatever the route says:
//!
//! - `X-Pomerium-IDP-Access-Token: T` and `X-Pomerium-IDP-Identity-Token: T`;
//! - `Authorization: Pomerium-IDP-Access-Token T` and `Authorization: Pomerium-IDP-Identity-Token T`;
//! - `Authorization: Bearer Pomerium-IDP-Access-Token-T` and `… Bearer Pomerium-IDP-Identity-Token-T`.
//!
//! Prefixes are matched without regard to case. A plain `Authorization: Bearer T` is an identity
//! provider token only when the route's `bearer_token_format` says which kind it is.

use std::fmt;

/// Pomerium's `bearer_token_format`: what a plain `Authorization: Bearer` token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BearerFormat {
    /// Not an identity provider token (left for the upstream).
    #[default]
    Default,
    IdpAccessToken,
    IdpIdentityToken,
}

impl BearerFormat {
    /// The configuration value (`default`, `idp_access_token`, `idp_identity_token`).
    pub fn parse(text: &str) -> Option<BearerFormat> {
        Some(match text.trim() {
            "default" | "" => BearerFormat::Default,
            "idp_access_token" => BearerFormat::IdpAccessToken,
            "idp_identity_token" => BearerFormat::IdpIdentityToken,
            _ => return None,
        })
    }

    pub const VALUES: &'static str = "default, idp_access_token, idp_identity_token";
}

/// Which token an API client presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// An OAuth access token (accepted when it is a JWT for an allowed audience).
    Access,
    /// An OpenID Connect ID token (its audience is our client id).
    Identity,
}

/// A token found in a request. Its value is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct IdpToken {
    pub kind: TokenKind,
    pub value: String,
    /// Whether it came from the `Authorization` header (which then must not reach the upstream).
    pub in_authorization: bool,
}

impl fmt::Debug for IdpToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdpToken")
            .field("kind", &self.kind)
            .field("in_authorization", &self.in_authorization)
            .finish_non_exhaustive()
    }
}

// Names, not text, so that looking them up in a request's headers does not parse them.
pub const ACCESS_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-pomerium-idp-access-token");
pub const IDENTITY_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-pomerium-idp-identity-token");

/// `Authorization` schemes naming the token kind (`Pomerium-IDP-Access-Token T`).
const SCHEMES: [(&str, TokenKind); 2] = [
    ("pomerium-idp-access-token ", TokenKind::Access),
    ("pomerium-idp-identity-token ", TokenKind::Identity),
];
/// Bearer values naming the token kind (`Bearer Pomerium-IDP-Access-Token-T`).
const BEARER_PREFIXES: [(&str, TokenKind); 2] = [
    ("bearer pomerium-idp-access-token-", TokenKind::Access),
    ("bearer pomerium-idp-identity-token-", TokenKind::Identity),
];

/// `text` without `prefix`, compared without regard to ASCII case.
fn strip_prefix_folded<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn token(kind: TokenKind, value: &str, in_authorization: bool) -> Option<IdpToken> {
    let value = value.trim();
    (!value.is_empty()).then(|| IdpToken {
        kind,
        value: value.to_string(),
        in_authorization,
    })
}

/// Whether an `Authorization` value is one of Pomerium's explicit token forms.
pub fn is_pomerium_authorization(value: &str) -> bool {
    explicit_authorization(value).is_some()
}

fn explicit_authorization(value: &str) -> Option<IdpToken> {
    SCHEMES
        .iter()
        .chain(BEARER_PREFIXES.iter())
        .find_map(|(prefix, kind)| {
            strip_prefix_folded(value.trim_start(), prefix).and_then(|t| token(*kind, t, true))
        })
}

/// The headers that carry a token of their own kind, in the order [`explicit_token`] reads them.
const TOKEN_HEADERS: [(http::HeaderName, TokenKind); 2] = [
    (ACCESS_HEADER, TokenKind::Access),
    (IDENTITY_HEADER, TokenKind::Identity),
];

/// Whether [`explicit_token`] reads a header of this name: a request with none of them carries
/// no explicit token, and need not be searched for one.
pub fn carries_token(name: &http::HeaderName) -> bool {
    *name == http::header::AUTHORIZATION || TOKEN_HEADERS.iter().any(|(n, _)| n == name)
}

/// The token an explicit form carries: the `X-Pomerium-IDP-*-Token` headers first, then the
/// `Authorization` forms. `header` looks a header up by its name.
pub fn explicit_token<'a>(
    header: impl Fn(&http::HeaderName) -> Option<&'a str>,
) -> Option<IdpToken> {
    TOKEN_HEADERS
        .iter()
        .find_map(|(name, kind)| header(name).and_then(|v| token(*kind, v, false)))
        .or_else(|| header(&http::header::AUTHORIZATION).and_then(explicit_authorization))
}

/// A plain `Authorization: Bearer T` read as the kind `format` names (none for `default`).
pub fn plain_bearer(authorization: Option<&str>, format: BearerFormat) -> Option<IdpToken> {
    let kind = match format {
        BearerFormat::Default => return None,
        BearerFormat::IdpAccessToken => TokenKind::Access,
        BearerFormat::IdpIdentityToken => TokenKind::Identity,
    };
    let rest = strip_prefix_folded(authorization?.trim_start(), "bearer ")?;
    token(kind, rest, true)
}

#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Reads arbitrary text as an `Authorization` value in every format; never panics, and a
    /// token found is never empty.
    pub fn fuzz_one(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        for format in [
            BearerFormat::Default,
            BearerFormat::IdpAccessToken,
            BearerFormat::IdpIdentityToken,
        ] {
            if let Some(t) = plain_bearer(Some(&text), format) {
                assert!(!t.value.is_empty());
            }
        }
        if let Some(t) = explicit_token(|n| (n == http::header::AUTHORIZATION).then_some(&*text)) {
            assert!(!t.value.is_empty() && t.in_authorization);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `carries_token` names every header `explicit_token` reads: offered a token under every
    /// other name, it finds none.
    #[test]
    fn explicit_tokens_come_only_from_headers_that_carry_them() {
        let read = std::cell::RefCell::new(Vec::new());
        let found = explicit_token(|name| {
            read.borrow_mut().push(name.clone());
            (!carries_token(name)).then_some("Pomerium-IDP-Access-Token t")
        });
        assert!(found.is_none());
        let read = read.into_inner();
        assert_eq!(read.len(), 3, "{read:?}");
        assert!(read.iter().all(carries_token), "{read:?}");
        assert!(!carries_token(&http::header::COOKIE));
    }

    /// Request headers, and the token (kind, value, from `Authorization`) they carry.
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<(TokenKind, &'a str, bool)>);

    fn explicit(headers: &[(&str, &str)]) -> Option<(TokenKind, String, bool)> {
        explicit_token(|name| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name.as_str()))
                .map(|(_, v)| *v)
        })
        .map(|t| (t.kind, t.value, t.in_authorization))
    }

    #[test]
    fn pomerium_forms_are_read_in_any_case() {
        use TokenKind::{Access, Identity};
        let cases: &[Case] = &[
            (&[], None),
            (
                &[("X-Pomerium-IDP-Access-Token", "a1")],
                Some((Access, "a1", false)),
            ),
            (
                &[("x-pomerium-idp-identity-token", "i1")],
                Some((Identity, "i1", false)),
            ),
            (
                &[("authorization", "Pomerium-IDP-Access-Token a2")],
                Some((Access, "a2", true)),
            ),
            (
                &[("authorization", "pomerium-idp-identity-token i2")],
                Some((Identity, "i2", true)),
            ),
            (
                &[("authorization", "Bearer Pomerium-IDP-Access-Token-a3")],
                Some((Access, "a3", true)),
            ),
            (
                &[("authorization", "BEARER POMERIUM-IDP-IDENTITY-TOKEN-i3")],
                Some((Identity, "i3", true)),
            ),
            // The custom header wins over Authorization.
            (
                &[
                    ("authorization", "Pomerium-IDP-Identity-Token i4"),
                    ("x-pomerium-idp-access-token", "a4"),
                ],
                Some((Access, "a4", false)),
            ),
            // A plain bearer is not an explicit form; empty tokens are none.
            (&[("authorization", "Bearer abc")], None),
            (&[("authorization", "Pomerium-IDP-Access-Token ")], None),
            (&[("x-pomerium-idp-access-token", " ")], None),
            (
                &[("authorization", "Basic Pomerium-IDP-Access-Token-x")],
                None,
            ),
        ];
        for (headers, want) in cases {
            let want = want.map(|(k, v, a)| (k, v.to_string(), a));
            assert_eq!(explicit(headers), want, "{headers:?}");
        }
    }

    #[test]
    fn a_plain_bearer_is_a_token_only_when_the_format_says_which() {
        let read =
            |auth: &str, f: BearerFormat| plain_bearer(Some(auth), f).map(|t| (t.kind, t.value));
        assert_eq!(read("Bearer t", BearerFormat::Default), None);
        assert_eq!(
            read("Bearer t", BearerFormat::IdpAccessToken),
            Some((TokenKind::Access, "t".into()))
        );
        assert_eq!(
            read("bearer  t ", BearerFormat::IdpIdentityToken),
            Some((TokenKind::Identity, "t".into()))
        );
        assert_eq!(read("Basic dTpw", BearerFormat::IdpAccessToken), None);
        assert_eq!(read("Bearer", BearerFormat::IdpAccessToken), None);
        assert_eq!(plain_bearer(None, BearerFormat::IdpAccessToken), None);
        assert!(is_pomerium_authorization("Pomerium-Idp-Access-Token x"));
        assert!(!is_pomerium_authorization("Bearer x"));
    }

    #[test]
    fn formats_parse_and_tokens_never_print() {
        assert_eq!(
            BearerFormat::parse("idp_access_token"),
            Some(BearerFormat::IdpAccessToken)
        );
        assert_eq!(BearerFormat::parse("default"), Some(BearerFormat::Default));
        assert_eq!(BearerFormat::parse("jwt"), None);
        let t = plain_bearer(Some("Bearer s3cr3t"), BearerFormat::IdpAccessToken).unwrap();
        assert!(!format!("{t:?}").contains("s3cr3t"));
        fuzzing::fuzz_one("Bearer Pomerium-IDP-Access-Token-".as_bytes());
        fuzzing::fuzz_one("ǅ\u{0}bearer ü".as_bytes());
    }
}
