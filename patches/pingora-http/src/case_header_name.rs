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
    fn into_header_names(self) -> Result<(HeaderName, CaseHeaderName)>
    where
        Self: Sized,
    {
        let case_header_name = self.into_case_header_name();
        let header_name = HeaderName::from_bytes(case_header_name.as_slice())
            .or_err(InvalidHTTPHeader, "invalid header name")?;
        Ok((header_name, case_header_name))
    }
}

/// A header name together with the case it is written in on the wire, both made once (at
/// startup, say) so that inserting the header neither parses the name nor allocates.
#[derive(Debug, Clone)]
pub struct CasedHeaderName {
    name: HeaderName,
    case: CaseHeaderName,
}

impl CasedHeaderName {
    /// The header named `case`, written on the wire exactly as `case` is spelled.
    pub fn new(case: impl Into<Bytes>) -> Result<Self> {
        let case = case.into();
        let name =
            HeaderName::from_bytes(&case).or_err(InvalidHTTPHeader, "invalid header name")?;
        Ok(CasedHeaderName {
            name,
            case: CaseHeaderName(case),
        })
    }

    /// [Self::new] for a name known when compiling; it is not copied.
    ///
    /// # Panics
    ///
    /// When `case` is not a valid header name, as [HeaderName::from_static] does.
    pub fn from_static(case: &'static str) -> Self {
        match Self::new(Bytes::from_static(case.as_bytes())) {
            Ok(name) => name,
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
        let case = CaseHeaderName(titled_header_name(&name));
        CasedHeaderName { name, case }
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

    fn into_header_names(self) -> Result<(HeaderName, CaseHeaderName)> {
        Ok((self.name, self.case))
    }
}

impl IntoCaseHeaderName for &CasedHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        self.case.clone()
    }

    fn into_header_names(self) -> Result<(HeaderName, CaseHeaderName)> {
        Ok((self.name.clone(), self.case.clone()))
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
        CaseHeaderName(titled_header_name(&self))
    }

    fn into_header_names(self) -> Result<(HeaderName, CaseHeaderName)> {
        let case_header_name = CaseHeaderName(titled_header_name(&self));
        Ok((self, case_header_name))
    }
}

impl IntoCaseHeaderName for &HeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(titled_header_name(self))
    }

    fn into_header_names(self) -> Result<(HeaderName, CaseHeaderName)> {
        Ok((self.clone(), CaseHeaderName(titled_header_name(self))))
    }
}

impl IntoCaseHeaderName for Bytes {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(self)
    }
}

fn titled_header_name(header_name: &HeaderName) -> Bytes {
    spelled(header_name, titled_header_name_str(header_name))
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
            let (parsed, parsed_case) = case.clone().into_header_names().unwrap();
            let (owned, owned_case) = name.clone().into_header_names().unwrap();
            let (borrowed, borrowed_case) = (&name).into_header_names().unwrap();
            assert_eq!(owned, parsed);
            assert_eq!(borrowed, parsed);
            assert_eq!(owned_case.as_slice(), parsed_case.as_slice());
            assert_eq!(borrowed_case.as_slice(), parsed_case.as_slice());
        }
    }

    #[test]
    fn cased_header_name_keeps_its_spelling_and_keys_in_lower_case() {
        let name = CasedHeaderName::from_static("X-Forwarded-For");
        assert_eq!(name.name(), &HeaderName::from_static("x-forwarded-for"));
        assert_eq!(name.case().as_slice(), b"X-Forwarded-For");
        let (key, case) = (&name).into_header_names().unwrap();
        assert_eq!(key, "x-forwarded-for");
        assert_eq!(case.as_slice(), b"X-Forwarded-For");
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

    #[test]
    #[should_panic(expected = "invalid header name")]
    fn cased_header_name_from_static_refuses_what_is_no_name() {
        CasedHeaderName::from_static("not a name");
    }
}
