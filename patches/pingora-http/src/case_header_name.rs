// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

use crate::*;
use bytes::Bytes;
use http::header;

#[derive(Debug, Clone)]
pub struct CaseHeaderName(Bytes);

impl CaseHeaderName {
    pub fn new(name: String) -> Self {
        CaseHeaderName(name.into())
    }
}

impl CaseHeaderName {
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub fn from_slice(buf: &[u8]) -> Self {
        CaseHeaderName(Bytes::copy_from_slice(buf))
    }
}

/// A trait that converts into case-sensitive header names.
pub trait IntoCaseHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName;

    /// The [HeaderName] that keys the header maps, with the case-sensitive name written on the
    /// wire.
    ///
    /// The default parses the case-sensitive name. Types that already hold a [HeaderName]
    /// ([HeaderName] itself and [CasedHeaderName]) return it as it is instead of writing it out
    /// and parsing it back.
    ///
    /// An implementation must return a wire name that names the returned header (the same
    /// bytes but for ASCII case): the header is stored under the one and written as the other.
    /// Debug builds check it on every insert.
    fn into_header_names(self) -> Result<HeaderNames>
    where
        Self: Sized,
    {
        let case = self.into_case_header_name();
        let name = HeaderName::from_bytes(case.as_slice())
            .or_err(InvalidHTTPHeader, "invalid header name")?;
        Ok(HeaderNames {
            name,
            case,
            usual: false,
        })
    }
}

/// What [IntoCaseHeaderName::into_header_names] gives: the name that keys the maps, the name
/// written on the wire and whether that is known to be the name's usual spelling.
#[derive(Debug, Clone)]
pub struct HeaderNames {
    /// The name that keys the header maps.
    pub name: HeaderName,
    /// The name as it is written on the wire.
    pub case: CaseHeaderName,
    /// `true` only when `case` is known to be the spelling a header that keeps no spellings
    /// writes for `name` (title case for some thirty common names, lower case for the rest),
    /// so that an insert need not compare the two; `false` when it is not known (an insert then
    /// compares them, as it always did). Debug builds check a `true` on every insert.
    pub usual: bool,
}

/// A header name together with the case it is written in on the wire, both made once (at
/// startup, say) so that inserting the header neither parses the name nor allocates.
#[derive(Debug, Clone)]
pub struct CasedHeaderName {
    name: HeaderName,
    case: CaseHeaderName,
    /// Whether `case` is the usual spelling of `name` ([written_header_name_str()]), found out
    /// once here rather than on every insert.
    usual: bool,
}

impl CasedHeaderName {
    /// The header named `case`, written on the wire exactly as `case` is spelled.
    pub fn new(case: impl Into<Bytes>) -> Result<Self> {
        let case = case.into();
        let name =
            HeaderName::from_bytes(&case).or_err(InvalidHTTPHeader, "invalid header name")?;
        Ok(CasedHeaderName::of(name, CaseHeaderName(case)))
    }

    fn of(name: HeaderName, case: CaseHeaderName) -> Self {
        let usual = case.as_slice() == written_header_name_str(&name).as_bytes();
        CasedHeaderName { name, case, usual }
    }

    /// [Self::new] for a name known when compiling; its spelling is not copied, and when it is
    /// in lower case neither is the name that keys the maps ([HeaderName::from_static]): a clone
    /// then counts no reference that several threads would share.
    ///
    /// # Panics
    ///
    /// When `case` is not a valid header name, as [HeaderName::from_static] does.
    pub fn from_static(case: &'static str) -> Self {
        match Self::new(Bytes::from_static(case.as_bytes())) {
            Ok(made) if case.bytes().any(|b| b.is_ascii_uppercase()) => made,
            // Valid and in lower case: the literal is the key itself.
            Ok(made) => CasedHeaderName {
                name: HeaderName::from_static(case),
                ..made
            },
            Err(_) => panic!("invalid header name {case:?}"),
        }
    }

    /// The name that keys the header maps (lower case).
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The name as it is written on the wire.
    pub fn case(&self) -> &CaseHeaderName {
        &self.case
    }
}

/// The header spelled as Pingora writes a [HeaderName]: title case for the most common headers
/// (`Host`, `Content-Length`, ...), else lower case.
impl From<HeaderName> for CasedHeaderName {
    fn from(name: HeaderName) -> Self {
        let (case, _) = titled_header_names(&name);
        CasedHeaderName::of(name, case)
    }
}

/// Two are equal when they name the same header in the same spelling.
impl PartialEq for CasedHeaderName {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.case.as_slice() == other.case.as_slice()
    }
}

impl Eq for CasedHeaderName {}

impl IntoCaseHeaderName for CasedHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        self.case
    }

    fn into_header_names(self) -> Result<HeaderNames> {
        Ok(HeaderNames {
            name: self.name,
            case: self.case,
            usual: self.usual,
        })
    }
}

impl IntoCaseHeaderName for &CasedHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        self.case.clone()
    }

    fn into_header_names(self) -> Result<HeaderNames> {
        Ok(HeaderNames {
            name: self.name.clone(),
            case: self.case.clone(),
            usual: self.usual,
        })
    }
}

impl IntoCaseHeaderName for CaseHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        self
    }
}

impl IntoCaseHeaderName for String {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(self.into())
    }
}

impl IntoCaseHeaderName for &'static str {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(self.into())
    }
}

impl IntoCaseHeaderName for HeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        titled_header_names(&self).0
    }

    fn into_header_names(self) -> Result<HeaderNames> {
        let (case, usual) = titled_header_names(&self);
        Ok(HeaderNames {
            name: self,
            case,
            usual,
        })
    }
}

impl IntoCaseHeaderName for &HeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        titled_header_names(self).0
    }

    fn into_header_names(self) -> Result<HeaderNames> {
        let (case, usual) = titled_header_names(self);
        Ok(HeaderNames {
            name: self.clone(),
            case,
            usual,
        })
    }
}

impl IntoCaseHeaderName for Bytes {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(self)
    }
}

/// The name as Pingora spells a [HeaderName] (title case for a dozen common names, else lower
/// case), and whether that is known to be its usual spelling: it is when the name has a
/// title-case spelling, since [common_header_name_str()] gives that one first; a name spelled in
/// lower case may have another usual spelling (`Cookie`), which is not looked up here.
fn titled_header_names(header_name: &HeaderName) -> (CaseHeaderName, bool) {
    let titled = titled_header_name_str(header_name);
    (
        CaseHeaderName(spelled(header_name, titled)),
        titled.is_some(),
    )
}

/// `spelling` when there is one (not copied), else the name in lower case.
fn spelled(header_name: &HeaderName, spelling: Option<&'static str>) -> Bytes {
    spelling.map_or_else(
        || Bytes::copy_from_slice(header_name.as_str().as_bytes()),
        |s| Bytes::from_static(s.as_bytes()),
    )
}

/// How a header that preserves case but keeps no spelling for `name` writes it: as
/// [titled_header_name_str()] does, and in the spelling clients and servers commonly use for
/// some more names (`Cookie`, `User-Agent`, `Sec-Fetch-Mode`, `ETag`, ...); other names in lower
/// case. Used only while every name of a header is spelled this way, so it changes nothing that
/// is written: a header that needs another spelling keeps it.
pub(crate) fn written_header_name_str(header_name: &HeaderName) -> &str {
    common_header_name_str(header_name).unwrap_or(header_name.as_str())
}

/// [written_header_name_str()] as a [CaseHeaderName] (not copied when it is a common one).
pub(crate) fn written_case_header_name(header_name: &HeaderName) -> CaseHeaderName {
    CaseHeaderName(spelled(header_name, common_header_name_str(header_name)))
}

fn common_header_name_str(header_name: &HeaderName) -> Option<&'static str> {
    if let Some(titled) = titled_header_name_str(header_name) {
        return Some(titled);
    }
    Some(match *header_name {
        header::ACCEPT => "Accept",
        header::ACCEPT_CHARSET => "Accept-Charset",
        header::ACCEPT_ENCODING => "Accept-Encoding",
        header::ACCEPT_LANGUAGE => "Accept-Language",
        header::AUTHORIZATION => "Authorization",
        header::COOKIE => "Cookie",
        header::ETAG => "ETag",
        header::EXPIRES => "Expires",
        header::IF_MODIFIED_SINCE => "If-Modified-Since",
        header::IF_NONE_MATCH => "If-None-Match",
        header::LAST_MODIFIED => "Last-Modified",
        header::LOCATION => "Location",
        header::ORIGIN => "Origin",
        header::PRAGMA => "Pragma",
        header::REFERER => "Referer",
        header::UPGRADE => "Upgrade",
        header::UPGRADE_INSECURE_REQUESTS => "Upgrade-Insecure-Requests",
        header::USER_AGENT => "User-Agent",
        header::VARY => "Vary",
        _ => match header_name.as_str() {
            "sec-fetch-dest" => "Sec-Fetch-Dest",
            "sec-fetch-mode" => "Sec-Fetch-Mode",
            "sec-fetch-site" => "Sec-Fetch-Site",
            "sec-fetch-user" => "Sec-Fetch-User",
            "priority" => "Priority",
            _ => return None,
        },
    })
}

pub(crate) fn titled_header_name_str(header_name: &HeaderName) -> Option<&'static str> {
    Some(match *header_name {
        header::ACCEPT_RANGES => "Accept-Ranges",
        header::AGE => "Age",
        header::CACHE_CONTROL => "Cache-Control",
        header::CONNECTION => "Connection",
        header::CONTENT_TYPE => "Content-Type",
        header::CONTENT_ENCODING => "Content-Encoding",
        header::CONTENT_LENGTH => "Content-Length",
        header::DATE => "Date",
        header::TRANSFER_ENCODING => "Transfer-Encoding",
        header::HOST => "Host",
        header::SERVER => "Server",
        header::SET_COOKIE => "Set-Cookie",
        // TODO: add more const header here to map to their titled case
        // TODO: automatically upper case the first letter?
        _ => {
            return None;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_case_header_name() {
        assert_eq!("FoO".into_case_header_name().as_slice(), b"FoO");
        assert_eq!("FoO".to_string().into_case_header_name().as_slice(), b"FoO");
        assert_eq!(header::SERVER.into_case_header_name().as_slice(), b"Server");
    }

    /// A [HeaderName] gives the same pair of names without being parsed again as the default
    /// (parsing its case-sensitive name) does.
    #[test]
    fn header_names_of_a_header_name_are_those_of_its_case_name() {
        let custom = HeaderName::from_static("x-forwarded-for");
        for name in [header::SERVER, header::HOST, custom] {
            let case = name.clone().into_case_header_name();
            let parsed = case.clone().into_header_names().unwrap();
            let owned = name.clone().into_header_names().unwrap();
            let borrowed = (&name).into_header_names().unwrap();
            assert_eq!(owned.name, parsed.name);
            assert_eq!(borrowed.name, parsed.name);
            assert_eq!(owned.case.as_slice(), parsed.case.as_slice());
            assert_eq!(borrowed.case.as_slice(), parsed.case.as_slice());
        }
    }

    #[test]
    fn cased_header_name_keeps_its_spelling_and_keys_in_lower_case() {
        let name = CasedHeaderName::from_static("X-Forwarded-For");
        assert_eq!(name.name(), &HeaderName::from_static("x-forwarded-for"));
        assert_eq!(name.case().as_slice(), b"X-Forwarded-For");
        let names = (&name).into_header_names().unwrap();
        assert_eq!(names.name, "x-forwarded-for");
        assert_eq!(names.case.as_slice(), b"X-Forwarded-For");
        assert!(CasedHeaderName::new("not a name").is_err());
        let lower = CasedHeaderName::new(String::from("x-forwarded-for")).unwrap();
        assert_eq!(lower.name(), name.name());
        assert_ne!(lower, name);
        assert_eq!(lower, CasedHeaderName::from_static("x-forwarded-for"));
        let from = CasedHeaderName::from(HeaderName::from_static("x-forwarded-for"));
        assert_eq!(from, lower);
        let host = CasedHeaderName::from(header::HOST);
        assert_eq!(host.case().as_slice(), b"Host");
    }

    /// `usual` is set exactly when the spelling is the usual one for a [CasedHeaderName] (found
    /// out when it is made), and for a [HeaderName] when it has a title-case spelling; it is
    /// never set for a name parsed from its spelling.
    #[test]
    fn names_are_said_to_be_usual_only_when_they_are() {
        let flag = |n: HeaderNames| n.usual;
        let cased = [
            ("X-Forwarded-For", false),
            ("x-forwarded-for", true),
            ("Cookie", true),
            ("cookie", false),
            ("COOKIE", false),
            ("Host", true),
            ("host", false),
            ("Sec-Fetch-Mode", true),
            ("sec-fetch-mode", false),
            ("x-frame-options", true),
        ];
        for (spelling, usual) in cased {
            let name = CasedHeaderName::from_static(spelling);
            let written = written_header_name_str(name.name()).as_bytes();
            assert_eq!(usual, name.case().as_slice() == written, "{spelling}");
            assert_eq!(
                flag((&name).into_header_names().unwrap()),
                usual,
                "{spelling}"
            );
            assert_eq!(flag(name.into_header_names().unwrap()), usual, "{spelling}");
        }
        // A HeaderName is spelled as Pingora writes it: known to be usual when that is title
        // case; a lower-case one is not known (`cookie` is not usual, `x-frame-options` is).
        // Made into a CasedHeaderName, its spelling is compared once: `x-frame-options` is usual.
        for (name, known, cased) in [
            (header::HOST, true, true),
            (header::CONTENT_LENGTH, true, true),
            (header::COOKIE, false, false),
            (HeaderName::from_static("x-frame-options"), false, true),
        ] {
            assert_eq!(flag((&name).into_header_names().unwrap()), known, "{name}");
            assert_eq!(flag(name.clone().into_header_names().unwrap()), known);
            assert_eq!(CasedHeaderName::from(name.clone()).usual, cased, "{name}");
        }
        // Parsed from its spelling, a name is never said to be usual: it is compared.
        assert!(!flag("Host".into_header_names().unwrap()));
    }

    /// A lower-case literal is the key itself (not a copy, so its clones count no shared
    /// reference); a spelling with capitals keys a lower-case copy. Both equal the name made from
    /// the same spelling by [CasedHeaderName::new].
    #[test]
    fn from_static_keys_a_lower_case_literal_itself() {
        const LOWER: &str = "x-pomerium-jwt-assertion";
        let lower = CasedHeaderName::from_static(LOWER);
        assert_eq!(lower.name().as_str().as_ptr(), LOWER.as_ptr());
        assert_eq!(lower, CasedHeaderName::new(LOWER).unwrap());
        assert!(lower.usual);
        let titled = CasedHeaderName::from_static("X-Forwarded-For");
        assert_eq!(titled.name(), &HeaderName::from_static("x-forwarded-for"));
        assert_eq!(titled, CasedHeaderName::new("X-Forwarded-For").unwrap());
        assert!(!titled.usual);
        // A standard name keys as the standard header, however it was made.
        assert_eq!(CasedHeaderName::from_static("host").name(), &header::HOST);
        assert_eq!(
            CasedHeaderName::from_static("host"),
            CasedHeaderName::new("host").unwrap()
        );
    }

    #[test]
    #[should_panic(expected = "invalid header name")]
    fn cased_header_name_from_static_refuses_what_is_no_name() {
        CasedHeaderName::from_static("not a name");
    }
}
