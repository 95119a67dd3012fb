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

//! HTTP header objects that preserve http header cases
//!
//! Although HTTP header names are supposed to be case-insensitive for compatibility, proxies
//! ideally shouldn't alter the HTTP traffic, especially the headers they don't need to read.
//!
//! This crate provide structs and methods to preserve the headers in order to build a transparent
//! proxy.

#![allow(clippy::new_without_default)]

use bytes::BufMut;
use case_header_name::written_header_name_str as written_name;
use http::header::{AsHeaderName, HeaderName, HeaderValue};
use http::request::Parts as ReqParts;
use http::response::Parts as RespParts;
use http::uri::Uri;
use pingora_error::{Error, ErrorType::*, OrErr, Result};
use std::borrow::Cow;
use std::cell::RefCell;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use http::method::Method;
pub use http::status::StatusCode;
pub use http::version::Version;
pub use http::HeaderMap as HMap;

pub mod authority;
use authority::{raw_target_authority, RawTargetAuthority};

mod case_header_name;
use case_header_name::CaseHeaderName;
pub use case_header_name::{CasedHeaderName, HeaderNames, IntoCaseHeaderName};

pub mod prelude {
    pub use crate::RequestHeader;
    pub use crate::ResponseHeader;
}

/* an ordered header map to store the original case of each header name
HMap({
    "foo": ["Foo", "foO", "FoO"]
})
The order how HeaderMap iter over its items is "arbitrary, but consistent".
Hopefully this property makes sure this map of header names always iterates in the
same order of the map of header values.
This idea is inspaired by hyper @nox
*/
type CaseMap = HMap<CaseHeaderName>;

/// How a header keeps the spelling of its names.
///
/// A header that preserves case starts in [CaseNames::AsWritten]: as long as every name is in
/// its usual spelling (title case for some thirty common names such as `Host`, `Cookie` and
/// `Content-Length`, lower case for the rest: `case_header_name::written_header_name_str`),
/// there is nothing to keep and no second map is built, cloned or dropped. The first name spelled any other way builds the
/// map, with the spellings of the names before it, and from then on the header behaves exactly
/// as one that always had the map. What is written on the wire is the same either way.
#[derive(Debug, Clone)]
enum CaseNames {
    /// Case is not preserved: names are written as Pingora spells a [HeaderName].
    Off,
    /// Case is preserved and every name so far is in its usual spelling.
    AsWritten,
    /// Case is preserved in this map, which follows the order of the header map.
    Kept(CaseMap),
}

impl CaseNames {
    fn preserves_case(&self) -> bool {
        !matches!(self, CaseNames::Off)
    }

    #[cfg(test)]
    fn map(&self) -> Option<&CaseMap> {
        match self {
            CaseNames::Kept(map) => Some(map),
            _ => None,
        }
    }

    fn map_mut(&mut self) -> Option<&mut CaseMap> {
        match self {
            CaseNames::Kept(map) => Some(map),
            _ => None,
        }
    }

    /// The map to store `case` in, for a header stored under `name`: none when case is not
    /// preserved or when `case` is the name's usual spelling (known to be when `usual`, else
    /// compared); otherwise the map, built first (with the names of `value_map` in their usual
    /// spelling) if there was none.
    fn map_for<T>(
        &mut self,
        value_map: &HMap<T>,
        name: &HeaderName,
        case: &CaseHeaderName,
        usual: bool,
    ) -> Result<Option<&mut CaseMap>> {
        debug_assert!(
            !usual || case.as_slice() == written_name(name).as_bytes(),
            "a name said to be in its usual spelling must be"
        );
        if let CaseNames::AsWritten = self {
            if usual || case.as_slice() == written_name(name).as_bytes() {
                return Ok(None);
            }
            *self = CaseNames::Kept(case_map_as_written(value_map)?);
        }
        Ok(self.map_mut())
    }
}

/// A case map holding, for every header of `value_map` in its order, its usual spelling.
fn case_map_as_written<T>(value_map: &HMap<T>) -> Result<CaseMap> {
    let mut map = CaseMap::try_with_capacity(value_map.capacity())
        .or_err(InvalidHTTPHeader, "header name map size overflows MAX_SIZE")?;
    // `iter` visits every value, those of one name together and in order, so appending each
    // one's name rebuilds the header map's order of names and of values under a name.
    for (name, _) in value_map.iter() {
        map.try_append(
            name.clone(),
            case_header_name::written_case_header_name(name),
        )
        .or_err(InvalidHTTPHeader, "header name map size overflows MAX_SIZE")?;
    }
    Ok(map)
}

pub enum HeaderNameVariant<'a> {
    Case(&'a CaseHeaderName),
    Titled(&'a str),
}

/// The HTTP request header type.
///
/// This type is similar to [http::request::Parts] but preserves header name case.
/// It also preserves request path even if it is not UTF-8.
///
/// [RequestHeader] implements [Deref] for [http::request::Parts] so it can be used as it in most
/// places. Mutable access to the underlying parts is intentionally not provided because header and
/// URI mutations must use methods on [RequestHeader] to preserve its internal state.
///
/// ```compile_fail
/// use pingora_http::RequestHeader;
///
/// let mut request = RequestHeader::build("GET", b"/", None).unwrap();
/// request.headers.remove("user-agent");
/// ```
#[derive(Debug)]
pub struct RequestHeader {
    base: ReqParts,
    header_name_map: CaseNames,
    raw_target: RawTarget,
    // whether we send END_STREAM with HEADERS for h2 requests
    send_end_stream: bool,
    // headers written after the map's, never looked up (`append_unindexed`)
    unindexed: Unindexed,
}

/// How a request-target is stored, and how [`RequestHeader::raw_path`] recovers it.
///
/// Whether the target round-trips through the URI and whether it is valid UTF-8 are two
/// separate questions with only three valid combinations, so they are one value rather
/// than two fields that could disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RawTarget {
    /// The URI round-trips the target, so no separate copy is kept: origin-form,
    /// asterisk-form and query-only targets come back out of it byte-identical, and the
    /// empty target, having no bytes to reproduce, resolves to "/".
    FromUri,
    /// The target is kept verbatim for the wire rather than recovered from the URI, because
    /// the URI is not guaranteed to reproduce it: absolute-form contributes only its path
    /// component. Covers every non-origin-form target, including the authority-form CONNECT
    /// target and opaque or unclassifiable ones, whose bytes the URI happens to hold whole.
    Verbatim(Box<[u8]>),
    /// As [`Self::Verbatim`], but the target is not valid UTF-8, so the URI holds a lossy
    /// rendering of it and [`RequestHeader::raw_path_is_utf8`] reports false.
    Lossy(Box<[u8]>),
}

impl RawTarget {
    /// The stored bytes, or `None` when the URI is the source of truth.
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Self::FromUri => None,
            Self::Verbatim(target) | Self::Lossy(target) => Some(target.as_ref()),
        }
    }

    /// Whether the target is valid UTF-8, i.e. the URI is not a lossy rendering of it.
    ///
    /// Matched exhaustively: a new variant must state its encoding rather than inherit a
    /// default, because HTTP/2 egress refuses to forward a target this reports as lossy.
    fn is_utf8(&self) -> bool {
        match self {
            Self::FromUri | Self::Verbatim(_) => true,
            Self::Lossy(_) => false,
        }
    }
}

impl AsRef<ReqParts> for RequestHeader {
    fn as_ref(&self) -> &ReqParts {
        &self.base
    }
}

impl Deref for RequestHeader {
    type Target = ReqParts;

    fn deref(&self) -> &Self::Target {
        &self.base
    }
}

impl RequestHeader {
    /// Create a new [RequestHeader] with the given method and path.
    ///
    /// The `path` can be non UTF-8.
    pub fn build(
        method: impl TryInto<Method>,
        path: &[u8],
        size_hint: Option<usize>,
    ) -> Result<Self> {
        Self::build_with(method, path, size_hint, CaseNames::AsWritten)
    }

    /// Create a new [RequestHeader] with the given method and path without preserving header case.
    ///
    /// A [RequestHeader] created from this type is more space efficient than those from [Self::build()].
    ///
    /// Use this method if reading from or writing to HTTP/2 sessions where header case doesn't matter anyway.
    pub fn build_no_case(
        method: impl TryInto<Method>,
        path: &[u8],
        size_hint: Option<usize>,
    ) -> Result<Self> {
        Self::build_with(method, path, size_hint, CaseNames::Off)
    }

    /// [Self::build] and [Self::build_no_case]: the method and the target are checked first and
    /// the header is made once, in the result, rather than made empty and moved out through
    /// each `?` (a header is a few hundred bytes, and the compiler does not always remove the
    /// copies).
    fn build_with(
        method: impl TryInto<Method>,
        path: &[u8],
        size_hint: Option<usize>,
        header_name_map: CaseNames,
    ) -> Result<Self> {
        let method = method
            .try_into()
            .explain_err(InvalidHTTPHeader, |_| "invalid method")?;
        let target = parse_request_target(path)?;
        let mut base = empty_req_parts();
        base.method = method;
        base.uri = target.uri;
        base.headers.reserve(http_header_map_upper_bound(size_hint));
        Ok(RequestHeader {
            base,
            header_name_map,
            raw_target: target.raw_target,
            send_end_stream: true,
            unindexed: Unindexed::new(),
        })
    }

    /// Append the header name and value to `self`.
    ///
    /// If there are already some headers under the same name, a new value will be added without
    /// any others being removed.
    pub fn append_header(
        &mut self,
        name: impl IntoCaseHeaderName,
        value: impl TryInto<HeaderValue>,
    ) -> Result<bool> {
        let header_value = value
            .try_into()
            .explain_err(InvalidHTTPHeader, |_| "invalid value while append")?;
        append_header_value(
            &mut self.header_name_map,
            &mut self.base.headers,
            name,
            header_value,
        )
    }

    /// Insert the header name and value to `self`.
    ///
    /// Different from [Self::append_header()], this method will replace all other existing headers
    /// under the same name (case-insensitive).
    pub fn insert_header(
        &mut self,
        name: impl IntoCaseHeaderName,
        value: impl TryInto<HeaderValue>,
    ) -> Result<()> {
        let header_value = value
            .try_into()
            .explain_err(InvalidHTTPHeader, |_| "invalid value while insert")?;
        insert_header_value(
            &mut self.header_name_map,
            &mut self.base.headers,
            name,
            header_value,
        )
        .map(|_| ())
    }

    /// [Self::insert_header()] that gives back the value it replaced: the first under the name
    /// (any others are dropped, as [Self::insert_header()] drops them), or `None` when the
    /// header held none. The header afterwards is exactly what [Self::insert_header()] leaves.
    ///
    /// For a caller that needs both: a proxy that sends its upstream another `Host` and the
    /// client's in `X-Forwarded-Host`, say, takes the client's from here instead of looking it up
    /// first.
    pub fn replace_header(
        &mut self,
        name: impl IntoCaseHeaderName,
        value: HeaderValue,
    ) -> Result<Option<HeaderValue>> {
        insert_header_value(
            &mut self.header_name_map,
            &mut self.base.headers,
            name,
            value,
        )
    }

    /// Remove all headers under the name
    pub fn remove_header<'a, N: ?Sized>(&mut self, name: &'a N) -> Option<HeaderValue>
    where
        &'a N: 'a + AsHeaderName,
    {
        remove_header(self.header_name_map.map_mut(), &mut self.base.headers, name)
    }

    /// Make room for at least `additional` more headers in the header map and, when a case map
    /// is kept, in the case map, so that inserting that many does not grow either map (a case
    /// map built later takes the header map's room).
    ///
    /// Fails, changing nothing that matters, when the maps would exceed their maximum size.
    pub fn reserve(&mut self, additional: usize) -> Result<()> {
        reserve(
            self.header_name_map.map_mut(),
            &mut self.base.headers,
            additional,
        )
    }

    /// Add a header that is written after every header of the map without entering it in the
    /// map: it is kept as its HTTP/1 line, nothing is hashed or probed, and lookups,
    /// [Self::insert_header()] and [Self::remove_header()] do not see it. It is meant for a
    /// header that its caller alone sets and nothing reads back, such as a proxy's forwarding
    /// headers or the security headers set on every response; the caller makes sure that the
    /// map holds no header of the same name that must not go out beside it.
    ///
    /// On HTTP/1 the name is spelled as [Self::insert_header()] would spell it; the
    /// conversions to http's parts (and so HTTP/2) append the header to the parts' map. A
    /// sensitive value (never to be indexed by HPACK) is appended to the map itself instead,
    /// where it keeps that mark.
    ///
    /// Fails, adding nothing, when the map and these headers together would exceed the map's
    /// maximum size.
    pub fn append_unindexed(&mut self, name: &CasedHeaderName, value: &HeaderValue) -> Result<()> {
        push_unindexed(
            &mut self.header_name_map,
            &mut self.base.headers,
            &mut self.unindexed,
            name,
            value,
        )
    }

    /// [Self::append_unindexed()] for a value given as bytes, such as one the caller wrote
    /// into a buffer of its own: it is checked as [HeaderValue::from_bytes()] checks a value
    /// and copied into the header's line, so no `HeaderValue` (and no allocation for one) is
    /// made. Such a value is never sensitive.
    ///
    /// Fails, adding nothing, when the value is not a valid header value or the header would
    /// exceed the map's maximum size.
    pub fn append_unindexed_bytes(&mut self, name: &CasedHeaderName, value: &[u8]) -> Result<()> {
        push_unindexed_bytes(
            &self.header_name_map,
            &self.base.headers,
            &mut self.unindexed,
            name,
            value,
        )
    }

    /// [Self::append_unindexed()] of every name and value of `lines`, in order, with one copy.
    ///
    /// Fails, adding nothing, when the header would exceed the map's maximum size.
    pub fn append_unindexed_lines(&mut self, lines: &PreparedLines) -> Result<()> {
        push_prepared(
            &mut self.header_name_map,
            &mut self.base.headers,
            &mut self.unindexed,
            lines,
        )
    }

    /// The headers added with [Self::append_unindexed()], [Self::append_unindexed_bytes()] or
    /// [Self::append_unindexed_lines()] (and not appended to the map), in the order they were
    /// added: each name as it is written on HTTP/1, and its value.
    pub fn unindexed_headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.unindexed.lines()
    }

    /// Write the header to the `buf` in HTTP/1.1 wire format.
    ///
    /// The header case will be preserved.
    ///
    /// The headers added with [Self::append_unindexed()] or [Self::append_unindexed_bytes()]
    /// come after those of the header map.
    pub fn header_to_h1_wire(&self, buf: &mut impl BufMut) {
        header_to_h1_wire(&self.header_name_map, &self.base.headers, buf);
        unindexed_to_h1_wire(&self.unindexed, buf);
    }

    /// If case sensitivity is enabled, returns an iterator to iterate over case-sensitive header names and values.
    /// Otherwise returns an empty iterator.
    ///
    /// Headers of the same name are visited in insertion order. A name in its usual spelling
    /// may not be stored, and is then given as a new `CaseHeaderName` in that spelling.
    pub fn case_header_iter(
        &self,
    ) -> impl Iterator<Item = (Cow<'_, CaseHeaderName>, &HeaderValue)> + '_ {
        case_names_iter(&self.header_name_map, &self.base.headers)
    }

    /// Returns true if the request has case-sensitive headers.
    pub fn has_case(&self) -> bool {
        self.header_name_map.preserves_case()
    }

    pub fn map<F: FnMut(HeaderNameVariant, &HeaderValue) -> Result<()>>(
        &self,
        mut f: F,
    ) -> Result<()> {
        for (name, value) in wire_names(&self.header_name_map, &self.base.headers) {
            f(name, value)?;
        }
        Ok(())
    }

    /// Return mutable access to the request extensions.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.base.extensions
    }

    /// Set the request method
    pub fn set_method(&mut self, method: Method) {
        self.base.method = method;
    }

    /// Set the request URI
    pub fn set_uri(&mut self, uri: http::Uri) {
        self.base.uri = uri;
        // The Uri is now the sole source of the target, so drop any stored bytes: they
        // would otherwise be used when serializing.
        self.raw_target = RawTarget::FromUri;
    }

    /// Set the request target directly via raw bytes.
    ///
    /// Generally prefer [`Self::set_uri()`] to modify the header's URI if able.
    ///
    /// This API is to allow supporting non UTF-8 cases, and request-targets that are not
    /// in origin-form ([RFC 9112 section 3.2]).
    ///
    /// Origin-form and asterisk-form targets round-trip through the URI. Absolute-form and
    /// the authority-form CONNECT target do not, so they are additionally kept verbatim for
    /// [`Self::raw_path()`]. For those two forms the URI carries only the path component,
    /// which means [`http::Uri::path()`] returns a path rather than a whole URL and
    /// [`http::Uri::authority()`] is left unset.
    ///
    /// Any fragment is dropped: it is not part of the request-target and must not be sent
    /// upstream.
    ///
    /// [RFC 9112 section 3.2]: https://www.rfc-editor.org/rfc/rfc9112.html#section-3.2
    pub fn set_raw_path(&mut self, path: &[u8]) -> Result<()> {
        // Everything is computed before anything is stored: a rejected target must
        // leave the existing one intact.
        let parsed = parse_request_target(path)?;
        self.base.uri = parsed.uri;
        // Origin-form and asterisk-form store RawTarget::FromUri, so a reused header
        // (e.g. a CONNECT mutated into a normal request) cannot serialize a stale
        // target.
        self.raw_target = parsed.raw_target;
        Ok(())
    }

    /// Set whether we send an END_STREAM on H2 request HEADERS if body is empty.
    pub fn set_send_end_stream(&mut self, send_end_stream: bool) {
        self.send_end_stream = send_end_stream;
    }

    /// Returns if we support sending an END_STREAM on H2 request HEADERS if body is empty,
    /// returns None if not H2.
    pub fn send_end_stream(&self) -> Option<bool> {
        if self.base.version != Version::HTTP_2 {
            return None;
        }
        Some(self.send_end_stream)
    }

    /// Return the request target in its raw format, as it should appear on the wire.
    ///
    /// For origin-form and asterisk-form this is the path and query. For absolute-form and
    /// the authority-form CONNECT target it is the whole target as received, less any
    /// fragment.
    ///
    /// Non-UTF8 is supported; [`Self::raw_path_is_utf8()`] reports whether these bytes are
    /// valid UTF-8 or were replaced lossily in the URI.
    pub fn raw_path(&self) -> &[u8] {
        self.raw_target.bytes().unwrap_or_else(|| {
            self.base
                .uri
                .path_and_query()
                .map(|path| path.as_str().as_bytes())
                .or_else(|| {
                    self.base
                        .uri
                        .authority()
                        .map(|authority| authority.as_str().as_bytes())
                })
                .unwrap_or_default()
        })
    }

    /// Whether [`Self::raw_path`] is valid UTF-8 without lossy replacement.
    pub fn raw_path_is_utf8(&self) -> bool {
        self.raw_target.is_utf8()
    }

    /// Return the file extension of the path
    pub fn uri_file_extension(&self) -> Option<&str> {
        // get everything after the last '.' in path
        let (_, ext) = self
            .uri
            .path_and_query()
            .and_then(|pq| pq.path().rsplit_once('.'))?;
        Some(ext)
    }

    /// Set http version
    pub fn set_version(&mut self, version: Version) {
        self.base.version = version;
    }

    /// Clone `self` into [http::request::Parts].
    ///
    /// [ReqParts] has nowhere to keep a request-target that does not round-trip through the
    /// URI, so an absolute-form or CONNECT target does not survive the conversion:
    /// rebuilding a [RequestHeader] from the result serializes the URI's origin-form path
    /// instead of the original bytes. [Clone] keeps it; [Self::set_raw_path()] restores it.
    ///
    /// The headers added with [Self::append_unindexed()] are appended to the parts' header map.
    pub fn as_owned_parts(&self) -> ReqParts {
        let mut parts = clone_req_parts(&self.base);
        append_unindexed_to(&mut parts.headers, &self.unindexed);
        parts
    }
}

impl Clone for RequestHeader {
    fn clone(&self) -> Self {
        Self {
            base: clone_req_parts(&self.base),
            header_name_map: self.header_name_map.clone(),
            raw_target: self.raw_target.clone(),
            send_end_stream: self.send_end_stream,
            unindexed: self.unindexed.clone(),
        }
    }
}

/// Header case is not recovered, because [ReqParts] keeps none, and neither is a
/// request-target that does not round-trip through the URI: the target is taken from the
/// URI rather than the absolute-form or CONNECT bytes a [RequestHeader] preserves. Set one
/// with [Self::set_raw_path()].
impl From<ReqParts> for RequestHeader {
    fn from(parts: ReqParts) -> RequestHeader {
        Self {
            base: parts,
            header_name_map: CaseNames::Off,
            // The Uri is the only target available here, so it is the one that serializes.
            raw_target: RawTarget::FromUri,
            send_end_stream: true,
            unindexed: Unindexed::new(),
        }
    }
}

/// The headers added with [RequestHeader::append_unindexed()] are appended to the header map.
impl From<RequestHeader> for ReqParts {
    fn from(req: RequestHeader) -> ReqParts {
        let mut base = req.base;
        append_unindexed_to(&mut base.headers, &req.unindexed);
        base
    }
}

/// The HTTP response header type.
///
/// This type is similar to [http::response::Parts] but preserves header name case.
/// [ResponseHeader] implements [Deref] for [http::response::Parts] so it can be used as it in most
/// places. Mutable access to the underlying parts is intentionally not provided because header
/// mutations must use methods on [ResponseHeader] to preserve its internal state.
///
/// ```compile_fail
/// use pingora_http::ResponseHeader;
///
/// let mut response = ResponseHeader::build(200, None).unwrap();
/// response.headers.remove("server");
/// ```
#[derive(Debug)]
pub struct ResponseHeader {
    base: RespParts,
    // an ordered header map to store the original case of each header name
    header_name_map: CaseNames,
    // the reason phrase of the response, if unset, a default one will be used
    reason_phrase: Option<String>,
    // headers written after the map's, never looked up (`append_unindexed`)
    unindexed: Unindexed,
}

impl AsRef<RespParts> for ResponseHeader {
    fn as_ref(&self) -> &RespParts {
        &self.base
    }
}

impl Deref for ResponseHeader {
    type Target = RespParts;

    fn deref(&self) -> &Self::Target {
        &self.base
    }
}

impl Clone for ResponseHeader {
    fn clone(&self) -> Self {
        Self {
            base: clone_resp_parts(&self.base),
            header_name_map: self.header_name_map.clone(),
            reason_phrase: self.reason_phrase.clone(),
            unindexed: self.unindexed.clone(),
        }
    }
}

// The `ResponseHeader` will be the no case variant, because `RespParts` keeps no header case
impl From<RespParts> for ResponseHeader {
    fn from(parts: RespParts) -> ResponseHeader {
        Self {
            base: parts,
            header_name_map: CaseNames::Off,
            reason_phrase: None,
            unindexed: Unindexed::new(),
        }
    }
}

/// The headers added with [ResponseHeader::append_unindexed()] are appended to the header map.
impl From<ResponseHeader> for RespParts {
    fn from(resp: ResponseHeader) -> RespParts {
        let mut base = resp.base;
        append_unindexed_to(&mut base.headers, &resp.unindexed);
        base
    }
}

/// The headers added with [ResponseHeader::append_unindexed()] are appended to the header map.
impl From<Box<ResponseHeader>> for Box<RespParts> {
    fn from(resp: Box<ResponseHeader>) -> Box<RespParts> {
        let resp = *resp;
        Box::new(resp.into())
    }
}

impl ResponseHeader {
    #[inline]
    fn new(size_hint: Option<usize>) -> Self {
        let mut resp_header = Self::new_no_case(size_hint);
        resp_header.header_name_map = CaseNames::AsWritten;
        resp_header
    }

    #[inline]
    fn new_no_case(size_hint: Option<usize>) -> Self {
        let mut base = empty_resp_parts();
        base.headers.reserve(http_header_map_upper_bound(size_hint));
        ResponseHeader {
            base,
            header_name_map: CaseNames::Off,
            reason_phrase: None,
            unindexed: Unindexed::new(),
        }
    }

    /// Create a new [ResponseHeader] with the given status code.
    pub fn build(code: impl TryInto<StatusCode>, size_hint: Option<usize>) -> Result<Self> {
        let mut resp = Self::new(size_hint);
        resp.base.status = code
            .try_into()
            .explain_err(InvalidHTTPHeader, |_| "invalid status")?;
        Ok(resp)
    }

    /// Create a new [ResponseHeader] with the given status code without preserving header case.
    ///
    /// A [ResponseHeader] created from this type is more space efficient than those from [Self::build()].
    ///
    /// Use this method if reading from or writing to HTTP/2 sessions where header case doesn't matter anyway.
    pub fn build_no_case(code: impl TryInto<StatusCode>, size_hint: Option<usize>) -> Result<Self> {
        let mut resp = Self::new_no_case(size_hint);
        resp.base.status = code
            .try_into()
            .explain_err(InvalidHTTPHeader, |_| "invalid status")?;
        Ok(resp)
    }

    /// Append the header name and value to `self`.
    ///
    /// If there are already some headers under the same name, a new value will be added without
    /// any others being removed.
    pub fn append_header(
        &mut self,
        name: impl IntoCaseHeaderName,
        value: impl TryInto<HeaderValue>,
    ) -> Result<bool> {
        let header_value = value
            .try_into()
            .explain_err(InvalidHTTPHeader, |_| "invalid value while append")?;
        append_header_value(
            &mut self.header_name_map,
            &mut self.base.headers,
            name,
            header_value,
        )
    }

    /// Insert the header name and value to `self`.
    ///
    /// Different from [Self::append_header()], this method will replace all other existing headers
    /// under the same name (case insensitive).
    pub fn insert_header(
        &mut self,
        name: impl IntoCaseHeaderName,
        value: impl TryInto<HeaderValue>,
    ) -> Result<()> {
        let header_value = value
            .try_into()
            .explain_err(InvalidHTTPHeader, |_| "invalid value while insert")?;
        insert_header_value(
            &mut self.header_name_map,
            &mut self.base.headers,
            name,
            header_value,
        )
        .map(|_| ())
    }

    /// Remove all headers under the name
    pub fn remove_header<'a, N: ?Sized>(&mut self, name: &'a N) -> Option<HeaderValue>
    where
        &'a N: 'a + AsHeaderName,
    {
        remove_header(self.header_name_map.map_mut(), &mut self.base.headers, name)
    }

    /// Make room for at least `additional` more headers in the header map and, when a case map
    /// is kept, in the case map, so that inserting that many does not grow either map (a case
    /// map built later takes the header map's room).
    ///
    /// Fails, changing nothing that matters, when the maps would exceed their maximum size.
    pub fn reserve(&mut self, additional: usize) -> Result<()> {
        reserve(
            self.header_name_map.map_mut(),
            &mut self.base.headers,
            additional,
        )
    }

    /// Add a header that is written after every header of the map without entering it in the
    /// map, as [RequestHeader::append_unindexed()] does for a request.
    pub fn append_unindexed(&mut self, name: &CasedHeaderName, value: &HeaderValue) -> Result<()> {
        push_unindexed(
            &mut self.header_name_map,
            &mut self.base.headers,
            &mut self.unindexed,
            name,
            value,
        )
    }

    /// [Self::append_unindexed()] for a value given as bytes, as
    /// [RequestHeader::append_unindexed_bytes()] does for a request.
    pub fn append_unindexed_bytes(&mut self, name: &CasedHeaderName, value: &[u8]) -> Result<()> {
        push_unindexed_bytes(
            &self.header_name_map,
            &self.base.headers,
            &mut self.unindexed,
            name,
            value,
        )
    }

    /// [Self::append_unindexed()] of every name and value of `lines`, in order, with one copy,
    /// as [RequestHeader::append_unindexed_lines()] does for a request.
    pub fn append_unindexed_lines(&mut self, lines: &PreparedLines) -> Result<()> {
        push_prepared(
            &mut self.header_name_map,
            &mut self.base.headers,
            &mut self.unindexed,
            lines,
        )
    }

    /// The headers added with [Self::append_unindexed()], as
    /// [RequestHeader::unindexed_headers()] gives a request's.
    pub fn unindexed_headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.unindexed.lines()
    }

    /// Write the header to the `buf` in HTTP/1.1 wire format.
    ///
    /// The header case will be preserved.
    ///
    /// The headers added with [Self::append_unindexed()] or [Self::append_unindexed_bytes()]
    /// come after those of the header map.
    pub fn header_to_h1_wire(&self, buf: &mut impl BufMut) {
        header_to_h1_wire(&self.header_name_map, &self.base.headers, buf);
        unindexed_to_h1_wire(&self.unindexed, buf);
    }

    /// If case sensitivity is enabled, returns an iterator to iterate over case-sensitive header names and values.
    /// Otherwise returns an empty iterator.
    ///
    /// Headers of the same name are visited in insertion order. A name in its usual spelling
    /// may not be stored, and is then given as a new `CaseHeaderName` in that spelling.
    pub fn case_header_iter(
        &self,
    ) -> impl Iterator<Item = (Cow<'_, CaseHeaderName>, &HeaderValue)> + '_ {
        case_names_iter(&self.header_name_map, &self.base.headers)
    }

    /// Returns true if the response has case-sensitive headers.
    pub fn has_case(&self) -> bool {
        self.header_name_map.preserves_case()
    }

    pub fn map<F: FnMut(HeaderNameVariant, &HeaderValue) -> Result<()>>(
        &self,
        mut f: F,
    ) -> Result<()> {
        for (name, value) in wire_names(&self.header_name_map, &self.base.headers) {
            f(name, value)?;
        }
        Ok(())
    }

    /// Return mutable access to the response extensions.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.base.extensions
    }

    /// Set the status code
    pub fn set_status(&mut self, status: impl TryInto<StatusCode>) -> Result<()> {
        self.base.status = status
            .try_into()
            .explain_err(InvalidHTTPHeader, |_| "invalid status")?;
        Ok(())
    }

    /// Set the HTTP version
    pub fn set_version(&mut self, version: Version) {
        self.base.version = version
    }

    /// Set the HTTP reason phase. If `None`, a default reason phase will be used
    pub fn set_reason_phrase(&mut self, reason_phrase: Option<&str>) -> Result<()> {
        // No need to allocate memory to store the phrase if it is the default one.
        if reason_phrase == self.base.status.canonical_reason() {
            self.reason_phrase = None;
            return Ok(());
        }

        // TODO: validate it "*( HTAB / SP / VCHAR / obs-text )"
        self.reason_phrase = reason_phrase.map(str::to_string);
        Ok(())
    }

    /// Get the HTTP reason phase. If [Self::set_reason_phrase()] is never called
    /// or set to `None`, a default reason phase will be used
    pub fn get_reason_phrase(&self) -> Option<&str> {
        self.reason_phrase
            .as_deref()
            .or_else(|| self.base.status.canonical_reason())
    }

    /// Clone `self` into [http::response::Parts].
    ///
    /// The headers added with [Self::append_unindexed()] are appended to the parts' header map.
    pub fn as_owned_parts(&self) -> RespParts {
        let mut parts = clone_resp_parts(&self.base);
        append_unindexed_to(&mut parts.headers, &self.unindexed);
        parts
    }

    /// Helper function to set the HTTP content length on the response header.
    pub fn set_content_length(&mut self, len: usize) -> Result<()> {
        self.insert_header(http::header::CONTENT_LENGTH, len)
    }
}

/// Build a [Uri] carrying only a path-and-query component. `target` is the original
/// request-target, used for error context.
fn path_and_query_uri(path_and_query: &str, target: &str) -> Result<Uri> {
    Uri::builder()
        .path_and_query(path_and_query)
        .build()
        .explain_err(InvalidHTTPHeader, |_| format!("invalid uri {target}"))
}

/// A request-target parsed into the pieces a [RequestHeader] stores.
struct ParsedRequestTarget {
    /// The [Uri] to store, carrying at most a path-and-query component.
    uri: Uri,
    /// How the target is recovered for the wire.
    raw_target: RawTarget,
}

/// Parse a request-target (RFC 9112 §3.2) into the pieces to store on the header.
fn parse_request_target(target: &[u8]) -> Result<ParsedRequestTarget> {
    // A fragment is not part of the request-target (§3.2) and is separated from the URI
    // before dereference (RFC 3986 §3.5), so it must not reach the upstream request-line.
    // `#` is ASCII, so stripping it here rather than after the UTF-8 check applies the
    // same rule to targets that are not valid UTF-8, which are forwarded verbatim. Both
    // authority classifiers terminate at `#` as well, so dropping it cannot change the
    // authority they reconcile against `Host`.
    let target = match target.iter().position(|&byte| byte == b'#') {
        Some(fragment_start) => &target[..fragment_start],
        None => target,
    };

    // Forms the Uri round-trips on its own, so they need no separate copy: origin-form
    // (§3.2.1), asterisk-form (§3.2.4) and query-only targets all come back out of the
    // Uri byte-identical, so anything reaching the wire from them is unchanged. A target
    // the fragment strip left empty is the one exception: it has no bytes to reproduce,
    // and path_and_query() renders it as "/".
    if target.is_empty() || matches!(target.first(), Some(b'/' | b'?')) || target == b"*" {
        return Ok(match std::str::from_utf8(target) {
            Ok(target) => ParsedRequestTarget {
                uri: path_and_query_uri(target, target)?,
                raw_target: RawTarget::FromUri,
            },
            // Put a valid UTF-8 rendering into the Uri for read-only access, and keep the
            // original bytes for the wire.
            Err(_) => {
                let lossy = String::from_utf8_lossy(target);
                ParsedRequestTarget {
                    uri: path_and_query_uri(&lossy, &lossy)?,
                    raw_target: RawTarget::Lossy(target.into()),
                }
            }
        });
    }

    // Absolute-form (§3.2.2) and the authority-form CONNECT target (§3.2.3) are kept
    // verbatim for raw_path(). Which bytes reach the Uri depends on the form: an
    // absolute-form target contributes only its path component, so callers reading
    // uri.path() see a path rather than a whole URL, while a target that carries no
    // absolute-form authority has no such component to isolate and reaches the Uri whole.
    //
    // Scheme and authority are deliberately left off the Uri. The proxy layer
    // reconciles the target's authority against `Host` by parsing these raw bytes;
    // populating uri.authority() here would send that reconciliation down its URI
    // branch instead, rewriting the target on egress.
    //
    // For absolute-form, the authority boundary comes from the same classifier the
    // proxy layer reconciles with, so the path extracted here cannot disagree with the
    // authority validated there. A second parser with its own idea of where the
    // authority ends would let targets like `foo:bar://host/admin` yield a path that
    // was never validated.
    // from_utf8_lossy allocates only to substitute replacement characters, so it borrows
    // exactly when the target is already valid UTF-8.
    let lossy_target = String::from_utf8_lossy(target);
    let uri = match raw_target_authority(target) {
        RawTargetAuthority::Absolute { path_and_query, .. } => {
            // The classifier splits on ASCII delimiters only, so this is a suffix of the
            // target and is lossy exactly when the target is.
            let path_and_query = String::from_utf8_lossy(path_and_query);
            match path_and_query.as_ref() {
                "" => Uri::default(),
                // "http://host?q=1" has no path, but origin-form requires at least "/"
                // (§3.2.1), so anchor the component to the root.
                pq if !pq.starts_with('/') => path_and_query_uri(&format!("/{pq}"), &lossy_target)?,
                pq => path_and_query_uri(pq, &lossy_target)?,
            }
        }
        // No absolute-form authority: authority-form CONNECT (§3.2.3), opaque custom
        // schemes, and ambiguous targets. Storing these as path-and-query depends on how
        // permissive the linked http crate is. Rejection prevents header construction,
        // including every CONNECT, which has no other target form.
        //
        // Anchor the Uri to the root. `raw_target` preserves the bytes for the wire, while
        // rooting prevents an unvalidated target fragment from becoming a path; see the
        // security note above and the `://` cases in
        // test_unclassifiable_targets_are_anchored_to_the_root.
        RawTargetAuthority::None | RawTargetAuthority::AmbiguousAuthority => Uri::default(),
    };
    Ok(ParsedRequestTarget {
        uri,
        raw_target: match lossy_target {
            Cow::Borrowed(_) => RawTarget::Verbatim(target.into()),
            Cow::Owned(_) => RawTarget::Lossy(target.into()),
        },
    })
}

/// The parts of an empty request (`GET /`, HTTP/1.1, no headers), made without `http`'s
/// builder: the builder keeps its parts in a `Result` and moves them out through the request, a
/// few copies of a few hundred bytes each that the compiler does not always remove.
#[inline]
fn empty_req_parts() -> ReqParts {
    http::Request::new(()).into_parts().0
}

/// The parts of an empty response (200, HTTP/1.1, no headers), as [empty_req_parts].
#[inline]
fn empty_resp_parts() -> RespParts {
    http::Response::new(()).into_parts().0
}

fn clone_req_parts(me: &ReqParts) -> ReqParts {
    let mut parts = empty_req_parts();
    parts.method = me.method.clone();
    parts.uri = me.uri.clone();
    parts.version = me.version;
    parts.headers = me.headers.clone();
    parts.extensions = me.extensions.clone();
    parts
}

fn clone_resp_parts(me: &RespParts) -> RespParts {
    let mut parts = empty_resp_parts();
    parts.status = me.status;
    parts.version = me.version;
    parts.headers = me.headers.clone();
    parts.extensions = me.extensions.clone();
    parts
}

// This function returns an upper bound on the size of the header map used inside the http crate.
// As of version 0.2, there is a limit of 1 << 15 (32,768) items inside the map. There is an
// assertion against this size inside the crate, so we want to avoid panicking by not exceeding this
// upper bound.
fn http_header_map_upper_bound(size_hint: Option<usize>) -> usize {
    // Even though the crate has 1 << 15 as the max size, calls to `with_capacity` invoke a
    // function that returns the size + size / 3.
    //
    // See https://github.com/hyperium/http/blob/34a9d6bdab027948d6dea3b36d994f9cbaf96f75/src/header/map.rs#L3220
    //
    // Therefore we set our max size to be even lower, so we guarantee ourselves we won't hit that
    // upper bound in the crate. Any way you cut it, 4,096 headers is insane.
    const PINGORA_MAX_HEADER_COUNT: usize = 4096;
    const INIT_HEADER_SIZE: usize = 8;

    // We select the size hint or the max size here, ensuring that we pick a value substantially lower
    // than 1 << 15 with room to grow the header map.
    std::cmp::min(
        size_hint.map_or(INIT_HEADER_SIZE, |n| n.saturating_add(header_headroom())),
        PINGORA_MAX_HEADER_COUNT,
    )
}

/// Room for headers beyond a size hint (see [set_header_headroom()]); 0 unless set.
static HEADER_HEADROOM: AtomicUsize = AtomicUsize::new(0);

/// The most [set_header_headroom()] keeps.
pub const MAX_HEADER_HEADROOM: usize = 64;

/// Make every header built from now on with a size hint (as the HTTP/1 parser builds each
/// request and response it reads: the hint is the number of headers read) hold room for
/// `headroom` more headers, in the header map (and in a case map built for it), at most
/// [MAX_HEADER_HEADROOM].
///
/// A proxy adds headers to nearly every request and response it forwards (forwarding headers,
/// a request id, security headers). A map sized for exactly the headers that were read grows on
/// the first insert, and growing a map rehashes every header in it; with room made when the map
/// is built, the same inserts (or a [RequestHeader::reserve()] for them) find it there. The
/// request a proxy sends upstream is usually a clone of the one it read, and a clone keeps the
/// room of the map it copies. Headers built without a size hint are not affected.
pub fn set_header_headroom(headroom: usize) {
    HEADER_HEADROOM.store(headroom.min(MAX_HEADER_HEADROOM), Ordering::Relaxed);
}

/// The room [set_header_headroom()] set: how many headers beyond a size hint a new header holds.
pub fn header_headroom() -> usize {
    HEADER_HEADROOM.load(Ordering::Relaxed)
}

#[inline]
fn append_header_value<T>(
    names: &mut CaseNames,
    value_map: &mut HMap<T>,
    name: impl IntoCaseHeaderName,
    value: T,
) -> Result<bool> {
    let HeaderNames {
        name: header_name,
        case: case_header_name,
        usual,
    } = name.into_header_names()?;
    debug_assert!(
        case_header_name
            .as_slice()
            .eq_ignore_ascii_case(header_name.as_str().as_bytes()),
        "a header's wire name must name the header it is stored under"
    );
    // store the original case in the map, unless no name so far needed the map and this one
    // is in its usual spelling
    if let Some(name_map) = names.map_for(value_map, &header_name, &case_header_name, usual)? {
        // Use the non-panicking `try_append`: the infallible `append` calls
        // `.expect("size overflows MAX_SIZE")` internally, which would abort the
        // process if the case map ever exceeded `http`'s `MAX_SIZE` (1 << 15).
        name_map
            .try_append(header_name.clone(), case_header_name)
            .or_err(InvalidHTTPHeader, "header name map size overflows MAX_SIZE")?;
    }

    // Non-panicking `try_append` for the same reason as the case map above.
    value_map.try_append(header_name, value).or_err(
        InvalidHTTPHeader,
        "header value map size overflows MAX_SIZE",
    )
}

#[inline]
fn insert_header_value<T>(
    names: &mut CaseNames,
    value_map: &mut HMap<T>,
    name: impl IntoCaseHeaderName,
    value: T,
) -> Result<Option<T>> {
    let HeaderNames {
        name: header_name,
        case: case_header_name,
        usual,
    } = name.into_header_names()?;
    debug_assert!(
        case_header_name
            .as_slice()
            .eq_ignore_ascii_case(header_name.as_str().as_bytes()),
        "a header's wire name must name the header it is stored under"
    );
    // store the original case in the map, unless no name so far needed the map and this one
    // is in its usual spelling
    if let Some(name_map) = names.map_for(value_map, &header_name, &case_header_name, usual)? {
        name_map.insert(header_name.clone(), case_header_name);
    }
    Ok(value_map.insert(header_name, value))
}

#[inline]
fn reserve<T>(
    name_map: Option<&mut CaseMap>,
    value_map: &mut HMap<T>,
    additional: usize,
) -> Result<()> {
    // `try_reserve`, not `reserve`, which panics past `http`'s MAX_SIZE.
    value_map.try_reserve(additional).or_err(
        InvalidHTTPHeader,
        "header value map size overflows MAX_SIZE",
    )?;
    if let Some(name_map) = name_map {
        name_map
            .try_reserve(additional)
            .or_err(InvalidHTTPHeader, "header name map size overflows MAX_SIZE")?;
    }
    Ok(())
}

// the &N here is to avoid clone(). None Copy type like String can impl AsHeaderName
#[inline]
fn remove_header<'a, T, N: ?Sized>(
    name_map: Option<&mut CaseMap>,
    value_map: &mut HMap<T>,
    name: &'a N,
) -> Option<T>
where
    &'a N: 'a + AsHeaderName,
{
    let removed = value_map.remove(name);
    if removed.is_some() {
        if let Some(name_map) = name_map {
            name_map.remove(name);
        }
    }
    removed
}

/// Build a [`HeaderValue`] from owned bytes, normalizing the value per RFC
/// 9110 section 5.5 and RFC 9112 section 5.2: obs-fold continuations
/// collapse to a single SP, and any stray CR / LF / NUL is replaced with SP.
/// Zero-copy when the input contains no CR/LF/NUL.
///
/// # Precondition
///
/// Input must come from a conformant HTTP/1.1 parser: bytes must satisfy
/// the `field-content` grammar (SP, HTAB, `%x21-7E`, `obs-text` `%x80-FF`),
/// with CR/LF/NUL only appearing as part of an obs-fold or as invalid bytes
/// that this function will replace with SP. All workspace callers satisfy
/// this via httparse.
///
/// # Panics
///
/// Debug builds panic on precondition violation via the sanity check in
/// [`HeaderValue::from_maybe_shared_unchecked`]. Release builds skip the
/// check; invalid input is undefined behavior per the `http` crate.
pub fn header_value_from_raw(raw: impl Into<bytes::Bytes>) -> HeaderValue {
    let normalized = normalize_field_value(raw.into());
    // SAFETY: `normalize_field_value` replaces all CR/LF/NUL with SP; by
    // precondition the remaining bytes pass the `http` crate's `is_valid`
    // byte-set check (other controls except HTAB are not expected here). The
    // crate's documented safety contract names "valid UTF-8", but its
    // internal use of the bytes never relies on UTF-8 in release. Matches
    // long-standing precedent.
    unsafe { HeaderValue::from_maybe_shared_unchecked(normalized) }
}

/// Build a [`HeaderValue`] from a borrowed slice, normalizing obs-fold per
/// RFC 9112 section 5.2. The slice is copied into an owned buffer.
///
/// Precondition and panic behavior are the same as [`header_value_from_raw`].
pub fn header_value_from_slice(raw: &[u8]) -> HeaderValue {
    header_value_from_raw(bytes::Bytes::copy_from_slice(raw))
}

/// Normalize a header field value per RFC 9110 section 5.5 and RFC 9112
/// section 5.2:
///
/// - Each CRLF + WSP obs-fold continuation collapses to a single SP
///   ([RFC 9112 section 5.2]).
/// - Any standalone CR, LF, or NUL (not part of an obs-fold being collapsed)
///   is replaced with a single SP ([RFC 9110 section 5.5]).
/// - Other CTL characters are retained, as RFC 9110 section 5.5 permits.
///
/// Zero-copy when the input contains no CR, LF, or NUL.
/// Example: `b"obs\r\n fold\r\n\t line"` becomes `b"obs fold line"`.
///
/// [RFC 9112 section 5.2]: https://datatracker.ietf.org/doc/html/rfc9112#section-5.2
/// [RFC 9110 section 5.5]: https://datatracker.ietf.org/doc/html/rfc9110#section-5.5
fn normalize_field_value(raw: bytes::Bytes) -> bytes::Bytes {
    // Fast path: no CR/LF/NUL, nothing to do.
    if !raw.iter().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
        return raw;
    }

    // No LF means no obs-fold (which requires CRLF). Replace each stray CR
    // or NUL with SP per RFC 9110 section 5.5.
    let Some(first_nl) = raw.iter().position(|b| *b == b'\n') else {
        let replaced: Vec<u8> = raw
            .iter()
            .map(|&b| if matches!(b, b'\r' | b'\0') { b' ' } else { b })
            .collect();
        return bytes::Bytes::from(replaced);
    };

    // Mid-segment CRs (and NULs) — which boundary trimming can't reach because
    // they're not at a segment boundary — are replaced with SP at copy time
    // per RFC 9110 section 5.5. Empty continuations contribute no SP, so
    // leading/trailing newlines don't introduce spurious whitespace.
    fn push_with_replacement(dst: &mut Vec<u8>, src: &[u8]) {
        dst.extend(
            src.iter()
                .map(|&b| if matches!(b, b'\r' | b'\0') { b' ' } else { b }),
        );
    }

    // Trim ASCII whitespace at segment boundaries (we split on `\n`) so the
    // trailing `\r` of each CRLF is absorbed into the obs-fold collapse along
    // with the fold's SP/HTAB run.
    let head = raw[..first_nl].trim_ascii_end();
    let mut unfolded = Vec::with_capacity(raw.len());
    push_with_replacement(&mut unfolded, head);
    for line in raw[first_nl + 1..].split(|b| *b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        if !unfolded.is_empty() {
            unfolded.push(b' ');
        }
        push_with_replacement(&mut unfolded, line);
    }
    bytes::Bytes::from(unfolded)
}

/// Headers added with `append_unindexed`, `append_unindexed_bytes` or `append_unindexed_lines`:
/// their HTTP/1 lines, written after the header map's and never looked up, and how many there
/// are.
#[derive(Debug, Default)]
struct Unindexed {
    wire: Vec<u8>,
    count: usize,
}

impl Unindexed {
    /// The room made at the first line: enough for a proxy's usual few.
    const FIRST_ROOM: usize = 256;
    /// The largest buffer kept for another header when this one is dropped.
    const MAX_KEPT_ROOM: usize = 4 * Self::FIRST_ROOM;
    /// How many buffers a thread keeps at most.
    const MAX_SPARE: usize = 64;

    fn new() -> Self {
        Unindexed::default()
    }

    /// Room for `need` more bytes: a buffer a header dropped on this thread left, when this one
    /// has none yet, and more room when that is not enough.
    #[inline]
    fn make_room(&mut self, need: usize) {
        if self.wire.capacity() - self.wire.len() < need {
            if self.wire.capacity() == 0 {
                // None while the thread's own storage is torn down, or already borrowed.
                let spare = SPARE_LINES
                    .try_with(|spare| spare.try_borrow_mut().ok().and_then(|mut s| s.pop()))
                    .ok()
                    .flatten();
                if let Some(spare) = spare {
                    self.wire = spare;
                }
            }
            self.wire.reserve(need.max(Self::FIRST_ROOM));
        }
    }

    #[inline]
    fn push(&mut self, name: &[u8], value: &[u8]) {
        let need = name.len() + value.len() + 4;
        self.make_room(need);
        // The four parts are copied after one check of the room, instead of four
        // `extend_from_slice`s that each check it again and keep the length up to date.
        let len = self.wire.len();
        // SAFETY: `make_room` left at least `need` bytes of spare capacity after `len`. The
        // parts, `need` bytes together, are copied one after the other into that room from
        // slices that cannot overlap the vector's buffer (it is borrowed mutably here), and
        // the length then covers exactly the bytes written.
        unsafe {
            let mut at = self.wire.as_mut_ptr().add(len);
            for part in [name, b": ", value, b"\r\n"] {
                std::ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
                at = at.add(part.len());
            }
            self.wire.set_len(len + need);
        }
        self.count += 1;
    }

    /// Append `count` whole lines written before ([PreparedLines]).
    #[inline]
    fn push_lines(&mut self, lines: &[u8], count: usize) {
        self.make_room(lines.len());
        self.wire.extend_from_slice(lines);
        self.count += count;
    }

    /// Each line's name and value. A name holds no `:` and a value no CR, so the first of
    /// each ends the part before it.
    fn lines(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let mut rest = self.wire.as_slice();
        std::iter::from_fn(move || {
            let colon = rest.iter().position(|&b| b == b':')?;
            let cr = colon + rest[colon..].iter().position(|&b| b == b'\r')?;
            let line = (&rest[..colon], &rest[colon + 2..cr]);
            rest = &rest[cr + 2..];
            Some(line)
        })
    }
}

thread_local! {
    /// Empty line buffers of dropped headers, for the next headers with lines on this thread:
    /// a proxy adds lines to a request and a response for every request it proxies, and this
    /// saves each an allocation and a free.
    static SPARE_LINES: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

impl Drop for Unindexed {
    fn drop(&mut self) {
        // Only a buffer with the room a first line makes (a clone's is as long as its lines,
        // and would grow again at once), and not one grown long.
        let room = self.wire.capacity();
        if !(Self::FIRST_ROOM..=Self::MAX_KEPT_ROOM).contains(&room) {
            return;
        }
        let mut wire = std::mem::take(&mut self.wire);
        wire.clear();
        // Not while the thread's own storage is being torn down, or already borrowed.
        let _ = SPARE_LINES.try_with(|spare| {
            if let Ok(mut spare) = spare.try_borrow_mut() {
                if spare.len() < Self::MAX_SPARE {
                    spare.push(wire);
                }
            }
        });
    }
}

impl Clone for Unindexed {
    #[inline]
    fn clone(&self) -> Self {
        if self.count == 0 {
            return Unindexed::new();
        }
        Unindexed {
            wire: self.wire.clone(),
            count: self.count,
        }
    }
}

/// How many names a header holds at most, its map's distinct ones and its unindexed ones
/// together: what `http`'s map takes at its maximum size (1 << 15 slots, three quarters of
/// them usable), so that a conversion can append every unindexed header as a new name.
const MAX_HEADER_NAMES: usize = (1 << 15) - (1 << 15) / 4;

#[inline]
fn push_unindexed(
    names: &mut CaseNames,
    value_map: &mut HMap,
    unindexed: &mut Unindexed,
    name: &CasedHeaderName,
    value: &HeaderValue,
) -> Result<()> {
    if value.is_sensitive() {
        room_for_one(value_map, unindexed)?;
        return append_header_value(names, value_map, name, value.clone()).map(|_| ());
    }
    push_line(names, value_map, unindexed, name, value.as_bytes())
}

/// Whether one more header fits: the map's distinct names and the unindexed headers together
/// stay below [MAX_HEADER_NAMES].
#[inline]
fn room_for_one(value_map: &HMap, unindexed: &Unindexed) -> Result<()> {
    room_for(value_map, unindexed, 1)
}

/// Whether `more` headers fit, as [room_for_one] for each.
#[inline]
fn room_for(value_map: &HMap, unindexed: &Unindexed, more: usize) -> Result<()> {
    if value_map.keys_len() + unindexed.count + more > MAX_HEADER_NAMES {
        return Error::e_explain(InvalidHTTPHeader, "header count overflows MAX_SIZE");
    }
    Ok(())
}

/// Append the lines of `lines` to `unindexed`, in the spelling `names` gives each name, and
/// their sensitive values to the map. The room is checked once, before anything is added, and
/// for every sensitive value as a new name (one under a name the map holds is not, so this can
/// refuse at the limit what adding the fields one by one would just take, never the reverse).
#[inline]
fn push_prepared(
    names: &mut CaseNames,
    value_map: &mut HMap,
    unindexed: &mut Unindexed,
    lines: &PreparedLines,
) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    room_for(value_map, unindexed, lines.count + lines.sensitive.len())?;
    for (name, value) in lines.sensitive.iter() {
        append_header_value(names, value_map, name, value.clone())?;
    }
    if lines.count == 0 {
        return Ok(());
    }
    let wire = match names {
        CaseNames::Off => &lines.titled,
        CaseNames::AsWritten | CaseNames::Kept(_) => &lines.cased,
    };
    unindexed.push_lines(wire, lines.count);
    Ok(())
}

/// [push_unindexed] for a value given as bytes: checked as `HeaderValue::from_bytes` checks one
/// (visible ASCII, spaces, tabs and bytes from 0x80 up).
#[inline]
fn push_unindexed_bytes(
    names: &CaseNames,
    value_map: &HMap,
    unindexed: &mut Unindexed,
    name: &CasedHeaderName,
    value: &[u8],
) -> Result<()> {
    // Every byte looked at, without stopping at the first bad one: a loop the compiler
    // vectorizes (values are short, and nearly always valid).
    let valid = value.iter().fold(true, |ok, &b| {
        ok & (((b >= b' ') & (b != 0x7f)) | (b == b'\t'))
    });
    if !valid {
        return Error::e_explain(InvalidHTTPHeader, "invalid value while append");
    }
    push_line(names, value_map, unindexed, name, value)
}

/// Write `name: value` as a line of `unindexed`, the name spelled as an insert into this header
/// would spell it (`value` is a valid header value).
#[inline]
fn push_line(
    names: &CaseNames,
    value_map: &HMap,
    unindexed: &mut Unindexed,
    name: &CasedHeaderName,
    value: &[u8],
) -> Result<()> {
    room_for_one(value_map, unindexed)?;
    unindexed.push(spelled(names, name), value);
    Ok(())
}

/// How an insert into a header whose names are `names` spells `name` on HTTP/1.
#[inline]
fn spelled<'a>(names: &CaseNames, name: &'a CasedHeaderName) -> &'a [u8] {
    match names {
        CaseNames::Off => case_header_name::titled_header_name_str(name.name())
            .unwrap_or(name.name().as_str())
            .as_bytes(),
        CaseNames::AsWritten | CaseNames::Kept(_) => name.case().as_slice(),
    }
}

/// Header lines made once and added to many headers, each time with one copy: for headers that
/// are the same on every message, such as the security headers a proxy sets on every response.
/// [RequestHeader::append_unindexed_lines()] and [ResponseHeader::append_unindexed_lines()] add
/// exactly what [ResponseHeader::append_unindexed()] of each name and value would add, in order
/// (at the map's maximum size they may refuse a little sooner: a sensitive value is counted as a
/// new name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreparedLines {
    /// The lines as a header that preserves case writes them: each name as it is spelled.
    cased: Box<[u8]>,
    /// The lines as a header that does not preserve case writes them (HTTP/2, built without
    /// case): each name as Pingora writes a `HeaderName`.
    titled: Box<[u8]>,
    count: usize,
    /// The fields with a sensitive value, which go into the map (where they keep that mark),
    /// as [ResponseHeader::append_unindexed()] puts them there.
    sensitive: Box<[(CasedHeaderName, HeaderValue)]>,
}

impl PreparedLines {
    /// The lines of `fields`, in order (a sensitive value is kept for the map instead).
    pub fn new<'a>(
        fields: impl IntoIterator<Item = (&'a CasedHeaderName, &'a HeaderValue)>,
    ) -> Self {
        let (mut cased, mut titled, mut count) = (Vec::new(), Vec::new(), 0);
        let mut sensitive = Vec::new();
        for (name, value) in fields {
            if value.is_sensitive() {
                sensitive.push((name.clone(), value.clone()));
                continue;
            }
            for (wire, names) in [
                (&mut cased, CaseNames::AsWritten),
                (&mut titled, CaseNames::Off),
            ] {
                for part in [spelled(&names, name), b": ", value.as_bytes(), b"\r\n"] {
                    wire.extend_from_slice(part);
                }
            }
            count += 1;
        }
        PreparedLines {
            cased: cased.into(),
            titled: titled.into(),
            count,
            sensitive: sensitive.into(),
        }
    }

    /// How many fields there are (lines and sensitive values).
    pub fn len(&self) -> usize {
        self.count + self.sensitive.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Append `unindexed` to `value_map` (a map converted for HTTP/2 or handed out as parts). Each
/// line was made of a valid name and value, so each reads back. [room_for_one] (and
/// [room_for]) keeps the map's names and these together within the map's maximum size; only
/// names inserted into the map later could fill it first, and then the rest are left out.
fn append_unindexed_to(value_map: &mut HMap, unindexed: &Unindexed) {
    for (name, value) in unindexed.lines() {
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        if value_map.try_append(name, value).is_err() {
            return;
        }
    }
}

/// Write `unindexed` after the header map's headers.
#[inline]
fn unindexed_to_h1_wire(unindexed: &Unindexed, buf: &mut impl BufMut) {
    if unindexed.count > 0 {
        buf.put_slice(&unindexed.wire);
    }
}

#[inline]
fn header_to_h1_wire(names: &CaseNames, value_map: &HMap, buf: &mut impl BufMut) {
    const CRLF: &[u8; 2] = b"\r\n";
    const HEADER_KV_DELIMITER: &[u8; 2] = b": ";

    for (name, value) in wire_names(names, value_map) {
        buf.put_slice(match name {
            HeaderNameVariant::Case(case) => case.as_slice(),
            HeaderNameVariant::Titled(titled) => titled.as_bytes(),
        });
        buf.put_slice(HEADER_KV_DELIMITER);
        buf.put_slice(value.as_ref());
        buf.put_slice(CRLF);
    }
}

/// Every header of `value_map` in order, with its name as it is written on the wire: the
/// spelling `names` keeps for it, else its usual spelling while case is preserved, else as
/// Pingora writes a [HeaderName].
#[inline]
fn wire_names<'a>(
    names: &'a CaseNames,
    value_map: &'a HMap,
) -> impl Iterator<Item = (HeaderNameVariant<'a>, &'a HeaderValue)> + 'a {
    let (kept, spell): (_, fn(&HeaderName) -> &str) = match names {
        CaseNames::Kept(map) => (Some(map), written_name),
        CaseNames::AsWritten => (None, written_name),
        CaseNames::Off => (None, |name| {
            case_header_name::titled_header_name_str(name).unwrap_or(name.as_str())
        }),
    };
    let spelled = kept.is_none().then_some(value_map);
    case_header_iter(kept, value_map)
        .map(|(case, value)| (HeaderNameVariant::Case(case), value))
        .chain(spelled.into_iter().flat_map(move |value_map| {
            value_map
                .iter()
                .map(move |(name, value)| (HeaderNameVariant::Titled(spell(name)), value))
        }))
}

/// The names of `value_map` with their values, in the spelling `names` keeps or, where it
/// keeps none, their usual spelling; nothing when case is not preserved.
fn case_names_iter<'a>(
    names: &'a CaseNames,
    value_map: &'a HMap,
) -> impl Iterator<Item = (Cow<'a, CaseHeaderName>, &'a HeaderValue)> + 'a {
    let preserved = names.preserves_case().then(|| wire_names(names, value_map));
    preserved
        .into_iter()
        .flatten()
        .map(|(name, value)| match name {
            HeaderNameVariant::Case(case) => (Cow::Borrowed(case), value),
            HeaderNameVariant::Titled(written) => (
                Cow::Owned(CaseHeaderName::from_slice(written.as_bytes())),
                value,
            ),
        })
}

#[inline]
fn case_header_iter<'a>(
    name_map: Option<&'a CaseMap>,
    value_map: &'a HMap,
) -> impl Iterator<Item = (&'a CaseHeaderName, &'a HeaderValue)> + 'a {
    name_map.into_iter().flat_map(|name_map| {
        name_map
            .iter()
            .zip(value_map.iter())
            .map(|((h1, name), (h2, value))| {
                // in case the header iteration order changes in future versions of HMap
                assert_eq!(h1, h2, "header iter mismatch {}, {}", h1, h2);
                (name, value)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_checks_the_method_then_the_target_and_keeps_the_case_mode() {
        // With no headroom set, the room asked for is exactly what a map of that size has.
        let _unset = HEADROOM_LOCK.lock().unwrap();
        let room = HMap::<HeaderValue>::with_capacity(http_header_map_upper_bound(Some(3)));
        for (req, has_case) in [
            (RequestHeader::build("POST", b"/a?b=1#c", Some(3)), true),
            (
                RequestHeader::build_no_case("POST", b"/a?b=1#c", Some(3)),
                false,
            ),
        ] {
            let req = req.unwrap();
            assert_eq!(req.method, Method::POST);
            assert_eq!(req.uri.path(), "/a");
            assert_eq!(req.uri.query(), Some("b=1"));
            assert_eq!(req.raw_path(), b"/a?b=1");
            assert!(matches!(req.raw_target, RawTarget::FromUri));
            assert_eq!(req.has_case(), has_case);
            assert_eq!(req.version, Version::HTTP_11);
            assert!(req.headers.is_empty());
            assert_eq!(req.headers.capacity(), room.capacity());
            assert!(req.extensions.is_empty());
            assert!(req.unindexed_headers().next().is_none());
            let mut h2 = req;
            h2.set_version(Version::HTTP_2);
            assert_eq!(h2.send_end_stream(), Some(true));
        }
        let not_utf8 = RequestHeader::build("GET", b"/caf\xe9", None).unwrap();
        assert_eq!(not_utf8.raw_path(), b"/caf\xe9");
        assert!(!not_utf8.raw_path_is_utf8());
        // A bad method is refused before the target is looked at; then a bad target.
        let both = RequestHeader::build("G T", b"/a b", None).unwrap_err();
        assert_eq!(both.etype(), &InvalidHTTPHeader);
        assert!(both.to_string().contains("invalid method"), "{both}");
        assert!(RequestHeader::build("GET", b"/a b", None).is_err());
        assert!(RequestHeader::build_no_case("GET", b"/a b", None).is_err());
    }

    #[test]
    fn header_map_upper_bound() {
        // With no headroom set (the headroom test below sets it while it holds this lock).
        let _unset = HEADROOM_LOCK.lock().unwrap();
        assert_eq!(8, http_header_map_upper_bound(None));
        assert_eq!(16, http_header_map_upper_bound(Some(16)));
        assert_eq!(4096, http_header_map_upper_bound(Some(7777)));
    }

    /// The tests that read or set the process-wide headroom take turns.
    static HEADROOM_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// With headroom set, headers built from a size hint (as parsed ones are) take that many
    /// inserts without growing either map, and so does a clone; the bound still holds.
    #[test]
    fn headroom_leaves_room_for_inserts_in_parsed_headers_and_their_clones() {
        let _lock = HEADROOM_LOCK.lock().unwrap();
        set_header_headroom(6);
        assert_eq!(header_headroom(), 6);
        assert_eq!(8, http_header_map_upper_bound(None));
        assert_eq!(7, http_header_map_upper_bound(Some(1)));
        assert_eq!(4096, http_header_map_upper_bound(Some(7777)));
        // Spelled unlike Pingora's spelling, so that both keep a case map.
        let mut req = RequestHeader::build("GET", b"/", Some(1)).unwrap();
        req.insert_header("HOST", "a.test").unwrap();
        let mut upstream = req.clone();
        let mut resp = ResponseHeader::build(200, Some(1)).unwrap();
        resp.insert_header("CONTENT-LENGTH", "0").unwrap();
        set_header_headroom(0);
        assert_eq!(7, http_header_map_upper_bound(Some(7)));
        set_header_headroom(1000);
        assert_eq!(header_headroom(), MAX_HEADER_HEADROOM);
        set_header_headroom(0);

        for (map, case) in [
            (&upstream.headers, upstream.header_name_map.map().unwrap()),
            (&resp.headers, resp.header_name_map.map().unwrap()),
        ] {
            assert!(map.capacity() >= 7, "{}", map.capacity());
            assert!(case.capacity() >= 7, "{}", case.capacity());
        }
        let room = upstream.headers.capacity();
        let case_room = upstream.header_name_map.map().unwrap().capacity();
        for name in ["x-a", "x-b", "x-c", "x-d", "x-e", "x-f"] {
            upstream
                .insert_header(HeaderName::from_static(name), "1")
                .unwrap();
        }
        assert_eq!(upstream.headers.capacity(), room);
        assert_eq!(
            upstream.header_name_map.map().unwrap().capacity(),
            case_room
        );
        let mut wire = vec![];
        upstream.header_to_h1_wire(&mut wire);
        assert_eq!(
            wire,
            b"HOST: a.test\r\nx-a: 1\r\nx-b: 1\r\nx-c: 1\r\nx-d: 1\r\nx-e: 1\r\nx-f: 1\r\n"
        );
        // Without headroom, the same map is sized for the one header read.
        let small = RequestHeader::build("GET", b"/", Some(1)).unwrap();
        assert!(small.headers.capacity() < 7, "{}", small.headers.capacity());
    }

    #[test]
    fn test_single_header() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("foo", "bar").unwrap();
        req.insert_header("FoO", "Bar").unwrap();
        let mut buf: Vec<u8> = vec![];
        req.header_to_h1_wire(&mut buf);
        assert_eq!(buf, b"FoO: Bar\r\n");
        req.case_header_iter().enumerate().for_each(|(i, (k, v))| {
            let name = String::from_utf8_lossy(k.as_slice()).into_owned();
            let value = String::from_utf8_lossy(v.as_ref()).into_owned();
            match i + 1 {
                1 => {
                    assert_eq!(name, "FoO");
                    assert_eq!(value, "Bar");
                }
                _ => panic!("too many headers"),
            }
        });

        let mut resp = ResponseHeader::new(None);
        resp.insert_header("foo", "bar").unwrap();
        resp.insert_header("FoO", "Bar").unwrap();
        let mut buf: Vec<u8> = vec![];
        resp.header_to_h1_wire(&mut buf);
        assert_eq!(buf, b"FoO: Bar\r\n");
        resp.case_header_iter().enumerate().for_each(|(i, (k, v))| {
            let name = String::from_utf8_lossy(k.as_slice()).into_owned();
            let value = String::from_utf8_lossy(v.as_ref()).into_owned();
            match i + 1 {
                1 => {
                    assert_eq!(name, "FoO");
                    assert_eq!(value, "Bar");
                }
                _ => panic!("too many headers"),
            }
        });
    }

    #[test]
    fn test_single_header_no_case() {
        let mut req = RequestHeader::build_no_case("GET", b"/", None).unwrap();
        req.insert_header("foo", "bar").unwrap();
        req.insert_header("FoO", "Bar").unwrap();
        let mut buf: Vec<u8> = vec![];
        req.header_to_h1_wire(&mut buf);
        assert_eq!(buf, b"foo: Bar\r\n");
        assert!(req.case_header_iter().next().is_none());

        let mut resp = ResponseHeader::new_no_case(None);
        resp.insert_header("foo", "bar").unwrap();
        resp.insert_header("FoO", "Bar").unwrap();
        let mut buf: Vec<u8> = vec![];
        resp.header_to_h1_wire(&mut buf);
        assert_eq!(buf, b"foo: Bar\r\n");
        assert!(resp.case_header_iter().next().is_none());
    }

    #[test]
    fn test_multiple_header() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("FoO", "Bar").unwrap();
        req.append_header("fOO", "bar").unwrap();
        req.append_header("BAZ", "baR").unwrap();
        req.append_header(http::header::CONTENT_LENGTH, "0")
            .unwrap();
        req.append_header("a", "b").unwrap();
        req.remove_header("a");
        let mut buf: Vec<u8> = vec![];
        req.header_to_h1_wire(&mut buf);
        assert_eq!(
            buf,
            b"FoO: Bar\r\nfOO: bar\r\nBAZ: baR\r\nContent-Length: 0\r\n"
        );
        req.case_header_iter().enumerate().for_each(|(i, (k, v))| {
            let name = String::from_utf8_lossy(k.as_slice()).into_owned();
            let value = String::from_utf8_lossy(v.as_ref()).into_owned();
            match i + 1 {
                1 => {
                    assert_eq!(name, "FoO");
                    assert_eq!(value, "Bar");
                }
                2 => {
                    assert_eq!(name, "fOO");
                    assert_eq!(value, "bar");
                }
                3 => {
                    assert_eq!(name, "BAZ");
                    assert_eq!(value, "baR");
                }
                4 => {
                    assert_eq!(name, "Content-Length");
                    assert_eq!(value, "0");
                }
                _ => panic!("too many headers"),
            }
        });

        let mut resp = ResponseHeader::new(None);
        resp.append_header("FoO", "Bar").unwrap();
        resp.append_header("fOO", "bar").unwrap();
        resp.append_header("BAZ", "baR").unwrap();
        resp.append_header(http::header::CONTENT_LENGTH, "0")
            .unwrap();
        resp.append_header("a", "b").unwrap();
        resp.remove_header("a");
        let mut buf: Vec<u8> = vec![];
        resp.header_to_h1_wire(&mut buf);
        assert_eq!(
            buf,
            b"FoO: Bar\r\nfOO: bar\r\nBAZ: baR\r\nContent-Length: 0\r\n"
        );
        resp.case_header_iter().enumerate().for_each(|(i, (k, v))| {
            let name = String::from_utf8_lossy(k.as_slice()).into_owned();
            let value = String::from_utf8_lossy(v.as_ref()).into_owned();
            match i + 1 {
                1 => {
                    assert_eq!(name, "FoO");
                    assert_eq!(value, "Bar");
                }
                2 => {
                    assert_eq!(name, "fOO");
                    assert_eq!(value, "bar");
                }
                3 => {
                    assert_eq!(name, "BAZ");
                    assert_eq!(value, "baR");
                }
                4 => {
                    assert_eq!(name, "Content-Length");
                    assert_eq!(value, "0");
                }
                _ => panic!("too many headers"),
            }
        });
    }

    // These two no longer need patched_http1: the target carries no representable
    // path-and-query, so the Uri is rooted without consulting the linked http crate.
    #[test]
    fn test_invalid_path() {
        let raw_path = b"Hello\xF0\x90\x80World";
        let req = RequestHeader::build("GET", &raw_path[..], None).unwrap();
        assert_eq!("/", req.uri.path_and_query().unwrap());
        assert_eq!(raw_path, req.raw_path());
        assert!(!req.raw_path_is_utf8());
    }

    #[test]
    fn test_override_invalid_path() {
        let raw_path = b"Hello\xF0\x90\x80World";
        let mut req = RequestHeader::build("GET", &raw_path[..], None).unwrap();
        assert_eq!("/", req.uri.path_and_query().unwrap());
        assert_eq!(raw_path, req.raw_path());

        let new_path = "/HelloWorld";
        req.set_uri(Uri::builder().path_and_query(new_path).build().unwrap());
        assert_eq!(new_path, req.uri.path_and_query().unwrap());
        assert_eq!(new_path.as_bytes(), req.raw_path());
        assert!(req.raw_path_is_utf8());
    }

    #[test]
    fn test_invalid_path_with_leading_slash_reaches_the_uri() {
        // The same bytes in origin-form take the early return, which stores the lossy
        // rendering instead of rooting: from_utf8_lossy always yields valid UTF-8, and the
        // high bytes it produces are accepted as a path without relying on the linked http
        // crate. Contrast test_invalid_path, where these bytes have no leading slash and so
        // no representable component at all.
        for (raw_path, expected) in [
            (&b"/Hello\xF0\x90\x80World"[..], "/Hello\u{FFFD}World"),
            (b"/Hello\xF0\x90\x80World?q=1", "/Hello\u{FFFD}World?q=1"),
            (b"/\xF0\x90\x80", "/\u{FFFD}"),
        ] {
            let req = RequestHeader::build("GET", raw_path, None).unwrap();
            let label = String::from_utf8_lossy(raw_path);
            assert_eq!(expected, req.uri.path_and_query().unwrap(), "{label}");
            assert_eq!(raw_path, req.raw_path(), "{label}");
            assert!(!req.raw_path_is_utf8(), "{label}");
        }
    }

    #[test]
    fn test_absolute_form_http() {
        // The Uri exposes the path component, while raw_path() keeps the target
        // verbatim for the wire.
        let req = RequestHeader::build("GET", b"http://host/path?query=1", None).unwrap();
        assert_eq!("/path?query=1", req.uri.path_and_query().unwrap().as_str());
        assert_eq!("/path", req.uri.path());
        assert_eq!(b"http://host/path?query=1", req.raw_path());
    }

    #[test]
    fn test_absolute_form_https() {
        let req = RequestHeader::build("GET", b"https://example.com/a/b/c?d=e", None).unwrap();
        assert_eq!("/a/b/c?d=e", req.uri.path_and_query().unwrap().as_str());
        assert_eq!("/a/b/c", req.uri.path());
    }

    #[test]
    fn test_absolute_form_no_path() {
        // No path component, so the Uri is left at its default of "/".
        let req = RequestHeader::build("GET", b"http://host", None).unwrap();
        assert_eq!("/", req.uri.path());
        assert_eq!(Some("/"), req.uri.path_and_query().map(|pq| pq.as_str()));
        assert_eq!(b"http://host", req.raw_path());
    }

    #[test]
    fn test_absolute_form_root() {
        let req = RequestHeader::build("GET", b"http://host/", None).unwrap();
        assert_eq!("/", req.uri.path());
    }

    #[test]
    fn test_absolute_form_no_path_with_query() {
        // "http://host?query" has no path; origin-form requires at least "/"
        // (§3.2.1), so the query is anchored to the root on the stored Uri.
        let req = RequestHeader::build("GET", b"http://host?query=1", None).unwrap();
        assert_eq!("/", req.uri.path());
        assert_eq!(Some("query=1"), req.uri.query());
        assert_eq!("/?query=1", req.uri.path_and_query().unwrap().as_str());
        assert_eq!(b"http://host?query=1", req.raw_path());
    }

    #[test]
    fn test_absolute_form_uri_has_no_authority() {
        // Scheme and authority are deliberately kept off the Uri: the proxy layer
        // reconciles the target authority against `Host` from the raw bytes, and a
        // populated uri.authority() would divert it to rewriting the target instead.
        let req = RequestHeader::build("GET", b"http://host:8080/path?q=1", None).unwrap();
        assert_eq!(None, req.uri.scheme_str());
        assert_eq!(None, req.uri.authority());
        assert_eq!("/path", req.uri.path());
        assert_eq!(b"http://host:8080/path?q=1", req.raw_path());
    }

    #[test]
    fn test_fragment_is_not_forwarded() {
        // A fragment is not part of the request-target (§3.2) and is separated from the
        // URI before dereference (RFC 3986 §3.5), so it must not reach the upstream
        // request-line.
        for (target, raw, path) in [
            (&b"http://host/p#frag"[..], &b"http://host/p"[..], "/p"),
            (b"http://host#frag", b"http://host", "/"),
            (b"http://host?q=1#frag", b"http://host?q=1", "/"),
            // Both authority classifiers terminate at `#`, so a fragment cannot smuggle
            // userinfo or a second authority past `Host` reconciliation.
            (b"http://host#@evil.example/", b"http://host", "/"),
        ] {
            let req = RequestHeader::build("GET", target, None).unwrap();
            let target = String::from_utf8_lossy(target);
            assert_eq!(raw, req.raw_path(), "{target}");
            assert_eq!(path, req.uri.path(), "{target}");
        }

        // Origin-form fragments are already dropped by the Uri, so stripping here keeps
        // absolute-form consistent with origin-form rather than diverging from it.
        let req = RequestHeader::build("GET", b"/p#frag", None).unwrap();
        assert_eq!(b"/p", req.raw_path());

        // CONNECT reconciles `Host` against the `#`-truncated prefix, so the stored
        // bytes are exactly the ones that were validated.
        let req = RequestHeader::build("CONNECT", b"host:443#x", None).unwrap();
        assert_eq!(b"host:443", req.raw_path());

        // `#` is ASCII, so the strip applies to targets that are not valid UTF-8 too.
        // Those are forwarded verbatim, so a fragment left on them would reach the wire.
        let req = RequestHeader::build("GET", b"http://host/p\xff#frag", None).unwrap();
        assert_eq!(b"http://host/p\xff", req.raw_path());
        assert!(!req.raw_path_is_utf8());

        // Origin-form takes the early return, so it reaches the strip by a different path
        // than the absolute-form case above. Stripping before the UTF-8 check is what keeps
        // the two consistent: the Uri drops a fragment on its own, but these bytes go to
        // the wire verbatim, and `validate_connect_authority` truncates at `#` regardless.
        let req = RequestHeader::build("GET", b"/a\xff#frag", None).unwrap();
        assert_eq!(b"/a\xff", req.raw_path());
        assert!(!req.raw_path_is_utf8());
    }

    #[test]
    fn test_target_that_is_only_a_fragment_falls_back_to_root() {
        // Stripping the fragment can leave nothing behind. There is nothing useful to keep
        // verbatim for an empty target, so it resolves through the Uri, which renders it as
        // "/" -- the same target these produced before, now stated by the variant rather
        // than inferred from a zero-length byte vector.
        for target in [&b""[..], b"#", b"#frag", b"#/admin"] {
            let req = RequestHeader::build("GET", target, None).unwrap();
            let label = String::from_utf8_lossy(target);
            assert_eq!(b"/", req.raw_path(), "{label}");
            assert_eq!(RawTarget::FromUri, req.raw_target, "{label}");
        }

        // Asterisk-form and query-only targets survive their fragment rather than
        // collapsing to the root, because the Uri round-trips both.
        let req = RequestHeader::build("OPTIONS", b"*#frag", None).unwrap();
        assert_eq!(b"*", req.raw_path());
        assert_eq!(Some("*"), req.uri.path_and_query().map(|pq| pq.as_str()));

        let req = RequestHeader::build("GET", b"?q=1#frag", None).unwrap();
        assert_eq!(b"?q=1", req.raw_path());
        assert_eq!(Some("q=1"), req.uri.query());
    }

    #[test]
    fn test_non_utf8_target_still_yields_a_path() {
        // The classifier reads raw bytes, so a non-UTF-8 target must not fall back to
        // putting the whole URL into the Uri: uri.path() is what applications route on,
        // and it has to agree with the authority that was validated.
        let req = RequestHeader::build("GET", b"http://host/p\xff", None).unwrap();
        assert_eq!(b"http://host/p\xff", req.raw_path());
        assert!(!req.raw_path_is_utf8());
        assert_eq!(None, req.uri.authority());
        assert_eq!("/p\u{FFFD}", req.uri.path());

        // The authority-form CONNECT target is preserved in raw_path even when non-UTF-8.
        // Its Uri is rooted like any other target with no absolute-form authority.
        let req = RequestHeader::build("CONNECT", b"ho\xffst:443", None).unwrap();
        assert_eq!(b"ho\xffst:443", req.raw_path());
        assert_eq!("/", req.uri.path());
        assert!(!req.raw_path_is_utf8());

        // Origin-form keeps its lossy rendering and its original bytes.
        let req = RequestHeader::build("GET", b"/p-\xff", None).unwrap();
        assert_eq!(b"/p-\xff", req.raw_path());
        assert_eq!("/p-\u{FFFD}", req.uri.path());
    }

    #[test]
    fn test_query_only_target_keeps_its_query() {
        // "?q=1" carries no authority and no path, but it does carry a query. Dropping it
        // would leave filters and cache keys reading a query-less Uri while the upstream
        // receives the query.
        let req = RequestHeader::build("GET", b"?q=1", None).unwrap();
        assert_eq!(b"?q=1", req.raw_path());
        assert_eq!(Some("q=1"), req.uri.query());
        assert_eq!("/", req.uri.path());
        assert_eq!(RawTarget::FromUri, req.raw_target);
    }

    #[test]
    fn test_set_uri_clears_non_origin_form_target() {
        // A filter rewriting the target through set_uri must not leave absolute-form or
        // CONNECT bytes behind to be serialized.
        let mut req = RequestHeader::build("GET", b"http://host/abs?q=1", None).unwrap();
        req.set_uri("/replaced".parse().unwrap());
        assert_eq!(b"/replaced", req.raw_path());
        assert_eq!(RawTarget::FromUri, req.raw_target);

        let mut req = RequestHeader::build("CONNECT", b"example.com:443", None).unwrap();
        req.set_uri("/replaced".parse().unwrap());
        assert_eq!(b"/replaced", req.raw_path());
        assert!(req.raw_path_is_utf8());
    }

    #[test]
    fn test_unclassifiable_targets_are_anchored_to_the_root() {
        // Targets without absolute-form authority remain in raw_path() for the wire and
        // have a rooted Uri, independent of the linked http crate. A second parser
        // splitting at the first "://" could extract "/admin", although the reconciled
        // classifier stops at the first scheme-terminating colon and never validates that
        // path; rooting proves no such path was extracted.
        for target in [
            &b"foo:bar://evil.example/admin"[..],
            b"myproto:x://evil.example/admin",
            b"myproto:opaque",
        ] {
            let req = RequestHeader::build("GET", target, None).unwrap();
            let label = String::from_utf8_lossy(target);
            assert_eq!(
                RawTargetAuthority::None,
                raw_target_authority(req.raw_path()),
                "{label}"
            );
            // No absolute-form authority means no path component to isolate, so "/admin"
            // cannot appear here.
            assert_eq!("/", req.uri.path(), "{label}");
            // Wire serialization uses raw_path(), which is verbatim.
            assert_eq!(target, req.raw_path(), "{label}");
        }

        // An ambiguous authority is anchored for the same reason: normalization could move
        // the authority boundary, so no path split out of it would be trustworthy.
        let req = RequestHeader::build("GET", b"http:///path", None).unwrap();
        assert_eq!("/", req.uri.path());
        assert_eq!(b"http:///path", req.raw_path());
    }

    #[test]
    fn test_relative_target_without_a_scheme_is_anchored_to_the_root() {
        // These targets have neither an authority nor a valid path-and-query, so their
        // bytes remain in raw_path() for the H1 wire while the Uri is rooted. H2 egress
        // derives :path from the Uri; "/" is required because "foo/bar" is not an absolute
        // path and therefore is invalid for :path (RFC 9113 section 8.3.1). See
        // test_h2_path_is_rooted_for_targets_with_no_authority for this trade.
        for target in [&b"foo/bar"[..], b"host/admin", b"foo", b"foo?q=1"] {
            let req = RequestHeader::build("GET", target, None).unwrap();
            let label = String::from_utf8_lossy(target);
            assert_eq!(
                RawTargetAuthority::None,
                raw_target_authority(req.raw_path()),
                "{label}"
            );
            assert_eq!("/", req.uri.path_and_query().unwrap(), "{label}");
            assert_eq!(target, req.raw_path(), "{label}");
        }
    }

    #[test]
    fn test_origin_form_raw_path_is_byte_identical() {
        // Origin-form is the hot path and must round-trip through the Uri untouched.
        for target in [
            &b"/"[..],
            b"/index.html",
            b"/a/b/c?d=e&f=g",
            b"/%2e%2e/x",
            b"/a+b/c%20d",
            b"*",
        ] {
            let req = RequestHeader::build("GET", target, None).unwrap();
            assert_eq!(
                target,
                req.raw_path(),
                "{}",
                String::from_utf8_lossy(target)
            );
            assert!(req.raw_path_is_utf8());
        }
    }

    #[test]
    fn test_non_origin_form_survives_clone_and_parts_round_trip() {
        let req = RequestHeader::build("GET", b"http://host:8080/p?q=1", None).unwrap();

        let cloned = req.clone();
        assert_eq!(req.raw_path(), cloned.raw_path());
        assert_eq!(req.uri.path(), cloned.uri.path());
        assert_eq!(req.raw_path_is_utf8(), cloned.raw_path_is_utf8());

        // ReqParts carries no raw target, so the round-trip falls back to the Uri and
        // yields the origin-form path rather than the original absolute-form target.
        let from_parts = RequestHeader::from(req.as_owned_parts());
        assert_eq!(b"/p?q=1", from_parts.raw_path());
        assert!(from_parts.raw_path_is_utf8());
    }

    #[test]
    fn test_connect_authority_form() {
        // Authority-form (§3.2.3) is CONNECT's only target form and must reach the tunnel
        // destination verbatim through raw_path(). Storing "example.com:443" as
        // path-and-query makes construction depend on whether the linked http version
        // requires origin-form's leading slash; rejection would break every CONNECT, not
        // one field. Rooting the Uri makes construction version-independent.
        let req = RequestHeader::build("CONNECT", b"example.com:443", None).unwrap();
        assert_eq!(b"example.com:443", req.raw_path());
        assert_eq!(None, req.uri.authority());
        assert_eq!("/", req.uri.path());
    }

    #[test]
    fn test_connect_authority_form_shapes_pass_through() {
        // Parsing deliberately does not validate the authority grammar: that belongs to
        // the authority module, which applications running custom protocols can opt out
        // of. What this level guarantees is that whichever shape arrives reaches the
        // tunnel destination byte-identically, covering both the IP-literal and reg-name
        // forms of RFC 3986 §3.2.2. The entire target is preserved in raw_path() for the wire.
        for target in [
            &b"[v7.x]:443"[..],
            b"[vF.a:b~!$&'()*+,;=]:8443",
            b"[::1]:443",
            b"[2001:db8::1]:8443",
            b"127.0.0.1:443",
            b"sub.example.com:8080",
            b"host-with-dash:1",
            b"a_b:443",
        ] {
            let req = RequestHeader::build("CONNECT", target, None).unwrap();
            let label = String::from_utf8_lossy(target);
            assert_eq!(target, req.raw_path(), "{label}");
            // These invalid path-and-query forms must construct regardless of which http
            // version is linked.
            assert_eq!("/", req.uri.path(), "{label}");
        }
    }

    #[test]
    fn test_set_raw_path_replaces_all_target_state() {
        // set_raw_path computes every field before storing any of them, so a mutation
        // leaves nothing from the previous target behind.
        //
        // The rejection half of that contract is not covered here: the pinned http
        // fork accepts every request-target, including spaces and control bytes, so
        // the error path is unreachable in this configuration. Forbidden bytes are
        // caught when the request-line is serialized instead.
        let mut req = RequestHeader::build("GET", b"/path-\xff", None).unwrap();
        assert!(!req.raw_path_is_utf8());
        assert!(matches!(req.raw_target, RawTarget::Lossy(_)));

        req.set_raw_path(b"/plain").unwrap();
        assert_eq!(b"/plain", req.raw_path());
        assert_eq!("/plain", req.uri.path());
        assert!(req.raw_path_is_utf8());
        assert_eq!(RawTarget::FromUri, req.raw_target);

        req.set_raw_path(b"http://host/abs?q=1").unwrap();
        assert_eq!(b"http://host/abs?q=1", req.raw_path());
        assert_eq!("/abs", req.uri.path());
        assert!(req.raw_path_is_utf8());
    }

    #[test]
    fn test_raw_target_variant_per_request_target_form() {
        // The variant alone decides both the wire bytes and whether they are UTF-8.
        // Storing "is there a stored copy" and "is it UTF-8" as separate fields allowed a
        // fourth, meaningless combination, and an empty stored copy that read as an empty
        // request-target rather than as "defer to the Uri".
        let req = RequestHeader::build("GET", b"http://host/path", None).unwrap();
        assert_eq!(
            RawTarget::Verbatim(b"http://host/path".to_vec().into()),
            req.raw_target
        );
        assert!(req.raw_path_is_utf8());

        let req = RequestHeader::build("CONNECT", b"example.com:443", None).unwrap();
        assert_eq!(
            RawTarget::Verbatim(b"example.com:443".to_vec().into()),
            req.raw_target
        );
        assert!(req.raw_path_is_utf8());

        let req = RequestHeader::build("GET", b"/path-\xff", None).unwrap();
        assert_eq!(
            RawTarget::Lossy(b"/path-\xff".to_vec().into()),
            req.raw_target
        );
        assert!(!req.raw_path_is_utf8());

        for target in [&b"/path"[..], b"*"] {
            let req = RequestHeader::build("GET", target, None).unwrap();
            let label = String::from_utf8_lossy(target);
            assert_eq!(RawTarget::FromUri, req.raw_target, "{label}");
            assert!(req.raw_path_is_utf8(), "{label}");
        }
    }

    #[test]
    fn test_set_raw_path_clears_stale_connect_fallback() {
        // Reusing a header: the CONNECT authority-form target must not survive into
        // a subsequent origin-form request via a stale RawTarget::Verbatim.
        let mut req = RequestHeader::build("CONNECT", b"example.com:443", None).unwrap();
        assert_eq!(b"example.com:443", req.raw_path());
        req.set_method(Method::GET);
        req.set_raw_path(b"/ok").unwrap();
        assert_eq!(b"/ok", req.raw_path());
        assert_eq!("/ok", req.uri.path());
    }

    #[test]
    fn test_absolute_form_set_raw_path_mutation() {
        // The mutation path, not just construction via build().
        let mut req = RequestHeader::build("GET", b"/original", None).unwrap();
        assert_eq!("/original", req.uri.path());
        req.set_raw_path(b"http://host/mutated?q=1").unwrap();
        assert_eq!("/mutated?q=1", req.uri.path_and_query().unwrap().as_str());
        assert_eq!("/mutated", req.uri.path());
    }

    #[test]
    fn test_absolute_form_with_port() {
        let req = RequestHeader::build("GET", b"http://host:8080/path", None).unwrap();
        assert_eq!("/path", req.uri.path());
    }

    #[test]
    fn test_absolute_form_uppercase_scheme() {
        // RFC 3986 §3.1: scheme is case-insensitive.
        let req = RequestHeader::build("GET", b"HTTP://HOST/path", None).unwrap();
        assert_eq!("/path", req.uri.path());
    }

    #[test]
    fn test_absolute_form_non_http_scheme() {
        // scheme().is_some() admits any valid scheme, not just http/https.
        let req = RequestHeader::build("GET", b"ftp://host/path", None).unwrap();
        assert_eq!("/path", req.uri.path());
    }

    #[test]
    fn test_origin_form_unchanged() {
        let req = RequestHeader::build("GET", b"/path?q=1", None).unwrap();
        assert_eq!("/path?q=1", req.uri.path_and_query().unwrap().as_str());
    }

    #[test]
    fn test_origin_form_with_scheme_in_query() {
        // An origin-form path whose query contains "://" must not be mistaken
        // for absolute-form (guarded by the starts_with('/') fast path).
        let req = RequestHeader::build("GET", b"/redir?url=http://other", None).unwrap();
        assert_eq!(
            "/redir?url=http://other",
            req.uri.path_and_query().unwrap().as_str()
        );
    }

    #[test]
    fn test_asterisk_form_unchanged() {
        let req = RequestHeader::build("OPTIONS", b"*", None).unwrap();
        assert_eq!("*", req.uri.path_and_query().unwrap().as_str());
    }

    #[test]
    fn test_authority_form_raw_path() {
        let mut req = RequestHeader::build_no_case("GET", b"/", None).unwrap();
        req.set_method(Method::CONNECT);
        req.set_uri(Uri::builder().authority("pingora.org:443").build().unwrap());

        assert!(req.uri.path_and_query().is_none());
        assert_eq!(b"pingora.org:443", req.raw_path());
        assert!(req.raw_path_is_utf8());
    }

    #[test]
    fn test_reason_phrase() {
        let mut resp = ResponseHeader::new(None);
        let reason = resp.get_reason_phrase().unwrap();
        assert_eq!(reason, "OK");

        resp.set_reason_phrase(Some("FooBar")).unwrap();
        let reason = resp.get_reason_phrase().unwrap();
        assert_eq!(reason, "FooBar");

        resp.set_reason_phrase(Some("OK")).unwrap();
        let reason = resp.get_reason_phrase().unwrap();
        assert_eq!(reason, "OK");

        resp.set_reason_phrase(None).unwrap();
        let reason = resp.get_reason_phrase().unwrap();
        assert_eq!(reason, "OK");
    }

    #[test]
    fn set_test_send_end_stream() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.set_send_end_stream(true);

        // None for requests that are not h2
        assert!(req.send_end_stream().is_none());

        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.set_version(Version::HTTP_2);

        // Some(true) by default for h2
        assert!(req.send_end_stream().unwrap());

        req.set_send_end_stream(false);
        // Some(false)
        assert!(!req.send_end_stream().unwrap());
    }

    #[test]
    fn set_test_set_content_length() {
        let mut resp = ResponseHeader::new(None);
        resp.set_content_length(10).unwrap();

        assert_eq!(
            b"10",
            resp.headers
                .get(http::header::CONTENT_LENGTH)
                .map(|d| d.as_bytes())
                .unwrap()
        );
    }

    #[test]
    fn normalize_field_value_no_fold_is_zero_copy() {
        // The value has no newline at all -> the input `Bytes` must be
        // returned untouched (same allocation). We assert pointer/length
        // identity via `Bytes::ptr_eq` semantics: cloning a `Bytes` shares
        // the same underlying buffer, so comparing byte content + length
        // is sufficient to confirm no allocation happened.
        let input = bytes::Bytes::from_static(b"text/html; charset=utf-8");
        let out = normalize_field_value(input.clone());
        assert_eq!(out, input);
        assert_eq!(out.as_ptr(), input.as_ptr());
    }

    #[test]
    fn normalize_field_value_single_fold() {
        // CRLF + SP continuation collapses to a single SP.
        let input = bytes::Bytes::from_static(b"obs\r\n fold");
        assert_eq!(&normalize_field_value(input)[..], b"obs fold");
    }

    #[test]
    fn normalize_field_value_multiple_folds_mixed_ws() {
        // "obs\r\n fold\r\n\t line" -> "obs fold line". Each fold becomes
        // exactly one SP regardless of how many SP/HTAB chars the
        // continuation indented with.
        let input = bytes::Bytes::from_static(b"obs\r\n fold\r\n\t line");
        assert_eq!(&normalize_field_value(input)[..], b"obs fold line");
    }

    #[test]
    fn normalize_field_value_collapses_long_indent() {
        // Real-world CSP-style values often indent continuations with many
        // spaces. All of that indent collapses to a single SP.
        let input =
            bytes::Bytes::from_static(b"default-src 'self';\r\n        script-src 'self' blob:");
        assert_eq!(
            &normalize_field_value(input)[..],
            b"default-src 'self'; script-src 'self' blob:"
        );
    }

    #[test]
    fn normalize_field_value_removes_all_cr_and_lf() {
        // After normalization no CR or LF byte may survive in the value
        // (each obs-fold collapses to a single SP).
        let input = bytes::Bytes::from_static(b"a\r\n b\r\n c\r\n d");
        let out = normalize_field_value(input);
        assert!(!out.contains(&b'\r'));
        assert!(!out.contains(&b'\n'));
        assert_eq!(&out[..], b"a b c d");
    }

    #[test]
    fn normalize_field_value_bare_lf() {
        // Defensive: bare LF (no preceding CR) is also treated as a fold,
        // since the implementation splits on `\n` alone.
        let input = bytes::Bytes::from_static(b"obs\n fold");
        assert_eq!(&normalize_field_value(input)[..], b"obs fold");
    }

    #[test]
    fn normalize_field_value_empty() {
        let input = bytes::Bytes::new();
        let out = normalize_field_value(input.clone());
        assert_eq!(out, input);
    }

    #[test]
    fn header_value_from_raw_round_trip() {
        // End-to-end: a folded value parses into a HeaderValue whose bytes
        // contain no CR/LF and equal the normalized form.
        let hv = header_value_from_raw(bytes::Bytes::from_static(
            b"default-src 'self';\r\n script-src 'self'",
        ));
        assert_eq!(hv.as_bytes(), b"default-src 'self'; script-src 'self'");
    }

    #[test]
    fn header_value_from_raw_passthrough() {
        // No fold -> bytes preserved exactly.
        let hv = header_value_from_raw(bytes::Bytes::from_static(b"application/json"));
        assert_eq!(hv.as_bytes(), b"application/json");
    }

    // The remaining tests pin down the contract on edge-case inputs.
    // `header_value_from_raw` is `pub`, so any caller (not just our own
    // httparse-driven paths) can pass arbitrary bytes; these cases
    // document what they will get back.

    #[test]
    fn normalize_field_value_leading_newline_no_spurious_space() {
        // A value starting with a fold collapses to just the continuation,
        // with no spurious leading SP.
        let input = bytes::Bytes::from_static(b"\r\n fold");
        assert_eq!(&normalize_field_value(input)[..], b"fold");
    }

    #[test]
    fn normalize_field_value_trailing_newline_no_spurious_space() {
        // A trailing CRLF (or CRLF + WSP that ends the value) is dropped
        // without leaving a trailing SP.
        let input = bytes::Bytes::from_static(b"foo\r\n");
        assert_eq!(&normalize_field_value(input)[..], b"foo");

        let input = bytes::Bytes::from_static(b"a\r\n b\r\n");
        assert_eq!(&normalize_field_value(input)[..], b"a b");
    }

    #[test]
    fn normalize_field_value_only_newlines() {
        // Pathological input made entirely of newlines collapses to empty.
        assert_eq!(
            &normalize_field_value(bytes::Bytes::from_static(b"\r\n"))[..],
            b""
        );
        assert_eq!(
            &normalize_field_value(bytes::Bytes::from_static(b"\n"))[..],
            b""
        );
        assert_eq!(
            &normalize_field_value(bytes::Bytes::from_static(b"\r\n\r\n"))[..],
            b""
        );
    }

    #[test]
    fn normalize_field_value_replaces_bare_cr_with_sp() {
        // Per RFC 9110 section 5.5, stray CR / LF / NUL within a field
        // value MUST be replaced with SP (not stripped, not left in place).
        let cases: &[(&[u8], &[u8])] = &[
            (b"foo\rbar", b"foo bar"),
            (b"foo\r", b"foo "),
            (b"\rfoo", b" foo"),
            (b"\r", b" "),
            (b"\r\r\r", b"   "),
        ];
        for (input, expected) in cases {
            let out = normalize_field_value(bytes::Bytes::copy_from_slice(input));
            assert_eq!(&out[..], *expected, "input = {input:?}");
            assert!(!out.contains(&b'\r'));
            assert!(!out.contains(&b'\n'));
            assert!(!out.contains(&b'\0'));
        }
    }

    #[test]
    fn normalize_field_value_replaces_cr_mid_segment_with_sp() {
        // Mid-segment CR (sits inside a segment, not at a boundary the
        // trim helpers reach) is replaced with SP per RFC 9110 section 5.5.
        let input = bytes::Bytes::from_static(b"foo\rbar\r\n baz");
        assert_eq!(&normalize_field_value(input)[..], b"foo bar baz");
    }

    #[test]
    fn normalize_field_value_replaces_nul_with_sp() {
        // NUL within a field value MUST be replaced with SP per RFC 9110
        // section 5.5. Covers NUL standalone, between CR and LF, and after
        // CRLF.
        let cases: &[(&[u8], &[u8])] = &[
            (b"foo\0bar", b"foo bar"),
            (b"\0\0\0", b"   "),
            (b"foo\0", b"foo "),
            // NUL between CR and LF: each is a stray byte -> three SPs.
            (b"foo\r\0\nbar", b"foo   bar"),
            // NUL after CRLF: CRLF treated as a fold boundary (one SP),
            // NUL replaced with one SP -> two SPs total.
            (b"foo\r\n\0bar", b"foo  bar"),
        ];
        for (input, expected) in cases {
            let out = normalize_field_value(bytes::Bytes::copy_from_slice(input));
            assert_eq!(&out[..], *expected, "input = {input:?}");
            assert!(!out.contains(&b'\r'));
            assert!(!out.contains(&b'\n'));
            assert!(!out.contains(&b'\0'));
        }
    }

    #[test]
    fn header_value_from_raw_handles_invalid_bytes() {
        // Bare CR and NUL aren't valid `field-content`, but
        // `normalize_field_value` replaces them with SP before the
        // unchecked constructor sees them, so no invalid byte ever reaches
        // `HeaderValue`.
        let hv = header_value_from_raw(bytes::Bytes::from_static(b"foo\rbar\0baz"));
        assert_eq!(hv.as_bytes(), b"foo bar baz");
    }

    /// After `reserve(n)`, inserting n new headers grows neither map; the headers are written
    /// as they would be without the reservation, in order and in their case.
    #[test]
    fn reserve_keeps_room_for_inserts() {
        let _unset = HEADROOM_LOCK.lock().unwrap();
        let mut req = RequestHeader::build("GET", b"/", Some(1)).unwrap();
        req.insert_header("HOST", "a.test").unwrap();
        req.reserve(6).unwrap();
        let room = req.headers.capacity();
        let case_room = req.header_name_map.map().unwrap().capacity();
        let names = [
            CasedHeaderName::from_static("X-Forwarded-For"),
            CasedHeaderName::from_static("x-forwarded-proto"),
        ];
        for name in &names {
            req.insert_header(name, "v").unwrap();
        }
        req.insert_header(http::header::USER_AGENT, "u").unwrap();
        req.insert_header(HeaderName::from_static("x-request-id"), "r")
            .unwrap();
        req.append_header(&names[0], "w").unwrap();
        assert_eq!(req.headers.capacity(), room);
        assert_eq!(req.header_name_map.map().unwrap().capacity(), case_room);
        let mut wire = vec![];
        req.header_to_h1_wire(&mut wire);
        assert_eq!(
            wire,
            b"HOST: a.test\r\nX-Forwarded-For: v\r\nX-Forwarded-For: w\r\n\
              x-forwarded-proto: v\r\nuser-agent: u\r\nx-request-id: r\r\n"
        );

        let mut resp = ResponseHeader::build(200, Some(1)).unwrap();
        resp.insert_header("SERVER", "s").unwrap();
        resp.reserve(3).unwrap();
        let room = resp.headers.capacity();
        let case_room = resp.header_name_map.map().unwrap().capacity();
        for name in ["x-a", "x-b", "x-c"] {
            resp.insert_header(HeaderName::from_static(name), "1")
                .unwrap();
        }
        assert_eq!(resp.headers.capacity(), room);
        assert_eq!(resp.header_name_map.map().unwrap().capacity(), case_room);
        assert!(resp.reserve(1 << 16).is_err());
    }

    /// `replace_header` gives back the first value it replaced and leaves the header exactly as
    /// `insert_header` of the same name and value leaves it: the same values, the same wire
    /// bytes and the same case map, whether the header kept one, builds one for this name, or
    /// keeps none; with no value under the name it gives back `None`.
    #[test]
    fn replace_header_gives_back_what_insert_header_replaces() {
        let request = |lines: &[(&str, &str)], case: bool| {
            let mut req = if case {
                RequestHeader::build("GET", b"/", None).unwrap()
            } else {
                RequestHeader::build_no_case("GET", b"/", None).unwrap()
            };
            for (k, v) in lines {
                req.append_header(k.to_string(), *v).unwrap();
            }
            req
        };
        // The request's headers, the name inserted, and the value it replaces.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Option<&'a str>);
        let cases: [Case; 5] = [
            (
                &[("Host", "a.test"), ("Accept", "*/*")],
                "Host",
                Some("a.test"),
            ),
            (&[("Accept", "*/*")], "Host", None),
            (&[("HOST", "a.test"), ("x-a", "1")], "Host", Some("a.test")),
            (&[("Host", "a.test")], "HOST", Some("a.test")),
            (
                &[("x-a", "1"), ("Host", "h"), ("x-a", "2")],
                "X-A",
                Some("1"),
            ),
        ];
        for ((lines, name, replaced), case) in
            cases.into_iter().flat_map(|c| [(c, true), (c, false)])
        {
            let mut inserted = request(lines, case);
            let mut replacing = request(lines, case);
            inserted.insert_header(name.to_string(), "new").unwrap();
            let old = replacing
                .replace_header(name.to_string(), HeaderValue::from_static("new"))
                .unwrap();
            assert_eq!(
                old.as_ref().map(|v| v.to_str().unwrap()),
                replaced,
                "{lines:?}"
            );
            let (mut a, mut b) = (vec![], vec![]);
            inserted.header_to_h1_wire(&mut a);
            replacing.header_to_h1_wire(&mut b);
            assert_eq!(b, a, "{lines:?} {name}");
            assert_eq!(replacing.headers, inserted.headers);
            assert_eq!(
                replacing.header_name_map.map().is_some(),
                inserted.header_name_map.map().is_some()
            );
            let spellings = |req: &RequestHeader| -> Vec<Vec<u8>> {
                req.case_header_iter()
                    .map(|(n, _)| n.as_slice().to_vec())
                    .collect()
            };
            assert_eq!(
                spellings(&replacing),
                spellings(&inserted),
                "{lines:?} {name}"
            );
        }
    }

    /// A header whose names are all in their usual spelling keeps no case map, not even
    /// in a clone, and still reports and writes the names as they were given.
    #[test]
    fn names_spelled_as_written_keep_no_case_map() {
        let mut req = RequestHeader::build("GET", b"/", Some(2)).unwrap();
        req.append_header("Host", "a.test").unwrap();
        req.append_header(bytes::Bytes::from_static(b"x-forwarded-for"), "1")
            .unwrap();
        req.insert_header(http::header::CONTENT_LENGTH, "0")
            .unwrap();
        req.insert_header(CasedHeaderName::from_static("x-request-id"), "r")
            .unwrap();
        req.append_header("x-forwarded-for", "2").unwrap();
        req.append_header("Cookie", "c").unwrap();
        req.append_header("Sec-Fetch-Mode", "navigate").unwrap();
        assert!(matches!(req.header_name_map, CaseNames::AsWritten));
        assert!(req.has_case());
        let upstream = req.clone();
        assert!(matches!(upstream.header_name_map, CaseNames::AsWritten));
        let expected: &[u8] = b"Host: a.test\r\nx-forwarded-for: 1\r\nx-forwarded-for: 2\r\n\
            Content-Length: 0\r\nx-request-id: r\r\nCookie: c\r\nSec-Fetch-Mode: navigate\r\n";
        for header in [&req, &upstream] {
            let mut wire = vec![];
            header.header_to_h1_wire(&mut wire);
            assert_eq!(wire, expected);
            let names: Vec<_> = header
                .case_header_iter()
                .map(|(name, _)| name.as_slice().to_vec())
                .collect();
            assert_eq!(
                names,
                [
                    &b"Host"[..],
                    b"x-forwarded-for",
                    b"x-forwarded-for",
                    b"Content-Length",
                    b"x-request-id",
                    b"Cookie",
                    b"Sec-Fetch-Mode"
                ]
            );
        }

        let mut resp = ResponseHeader::build(200, Some(1)).unwrap();
        resp.append_header("Server", "s").unwrap();
        resp.append_header("ETag", "e").unwrap();
        assert!(matches!(resp.header_name_map, CaseNames::AsWritten));
        resp.append_header("date", "d").unwrap();
        assert!(matches!(resp.header_name_map, CaseNames::Kept(_)));
        let mut wire = vec![];
        resp.header_to_h1_wire(&mut wire);
        assert_eq!(wire, b"Server: s\r\nETag: e\r\ndate: d\r\n");

        // A header that does not preserve case still writes these names as Pingora always did.
        let mut no_case = ResponseHeader::build_no_case(200, None).unwrap();
        no_case.append_header("ETag", "e").unwrap();
        let mut wire = vec![];
        no_case.header_to_h1_wire(&mut wire);
        assert_eq!(wire, b"etag: e\r\n");
    }

    /// Keeping names only once one is spelled differently writes, after any sequence of
    /// appends, inserts, removals and clones, exactly what a header that kept every name in a
    /// map from the start writes (which is how every header preserving case used to work).
    #[test]
    fn case_kept_from_the_first_other_spelling_writes_what_a_full_map_writes() {
        const SPELLINGS: [&str; 20] = [
            "User-Agent",
            "user-agent",
            "USER-AGENT",
            "Sec-Fetch-Mode",
            "sec-fetch-mode",
            "ETag",
            "Host",
            "host",
            "HOST",
            "Content-Length",
            "content-length",
            "Set-Cookie",
            "set-cookie",
            "Cookie",
            "cookie",
            "x-a",
            "X-A",
            "x-forwarded-for",
            "X-Forwarded-For",
            "Date",
        ];
        fn wire(req: &RequestHeader) -> Vec<u8> {
            let mut wire = vec![];
            req.header_to_h1_wire(&mut wire);
            wire
        }
        fn names(req: &RequestHeader) -> Vec<Vec<u8>> {
            req.case_header_iter()
                .map(|(name, _)| name.as_slice().to_vec())
                .collect()
        }
        fn mapped(req: &RequestHeader) -> Vec<Vec<u8>> {
            let mut names = vec![];
            req.map(|name, _| {
                names.push(match name {
                    HeaderNameVariant::Case(case) => case.as_slice().to_vec(),
                    HeaderNameVariant::Titled(titled) => titled.as_bytes().to_vec(),
                });
                Ok(())
            })
            .unwrap();
            names
        }
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |bound: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize % bound
        };
        let mut materialized = 0;
        for round in 0..400 {
            let mut lazy = RequestHeader::build("GET", b"/", Some(next(4))).unwrap();
            let mut full = lazy.clone();
            full.header_name_map = CaseNames::Kept(CaseMap::with_capacity(0));
            for step in 0..next(12) {
                let spelling = SPELLINGS[next(SPELLINGS.len())];
                let value = format!("{round}.{step}");
                match next(6) {
                    0 | 1 => {
                        lazy.append_header(spelling, &value).unwrap();
                        full.append_header(spelling, &value).unwrap();
                    }
                    2 => {
                        let name = CasedHeaderName::from_static(spelling);
                        lazy.insert_header(&name, &value).unwrap();
                        full.insert_header(&name, &value).unwrap();
                    }
                    3 => {
                        let name = HeaderName::from_bytes(spelling.as_bytes()).unwrap();
                        lazy.append_header(name.clone(), &value).unwrap();
                        full.append_header(name, &value).unwrap();
                    }
                    4 => {
                        assert_eq!(lazy.remove_header(spelling), full.remove_header(spelling));
                    }
                    _ => {
                        lazy = lazy.clone();
                        full = full.clone();
                        lazy.reserve(next(3)).unwrap();
                        full.reserve(next(3)).unwrap();
                    }
                }
                assert_eq!(wire(&lazy), wire(&full), "round {round} step {step}");
                assert_eq!(names(&lazy), names(&full), "round {round} step {step}");
                assert_eq!(mapped(&lazy), mapped(&full), "round {round} step {step}");
            }
            if matches!(lazy.header_name_map, CaseNames::Kept(_)) {
                materialized += 1;
            }
        }
        // Both ways were taken often.
        assert!((50..350).contains(&materialized), "{materialized}");
    }

    /// A header added with `append_unindexed` is written after the map's, in the spelling an
    /// insert would give it (as given while case is kept, Pingora's otherwise), is not seen by
    /// lookups, and is kept by a clone and by every conversion to http's parts.
    #[test]
    fn unindexed_headers_go_out_after_the_map_and_are_not_looked_up() {
        let xff = CasedHeaderName::from_static("X-Forwarded-For");
        let rid = CasedHeaderName::from_static("x-request-id");
        let mut req = RequestHeader::build("GET", b"/", Some(1)).unwrap();
        req.insert_header("Host", "a.test").unwrap();
        req.append_unindexed(&xff, &HeaderValue::from_static("1.2.3.4"))
            .unwrap();
        req.append_unindexed(&rid, &HeaderValue::from_static("r"))
            .unwrap();
        // Added to the map after them, still written before them.
        req.insert_header(http::header::USER_AGENT, "u").unwrap();
        assert!(req.headers.get("x-forwarded-for").is_none());
        assert_eq!(req.remove_header("x-request-id"), None);
        let mut wire = vec![];
        req.header_to_h1_wire(&mut wire);
        assert_eq!(
            wire,
            b"Host: a.test\r\nuser-agent: u\r\nX-Forwarded-For: 1.2.3.4\r\nx-request-id: r\r\n"
        );
        let unindexed: Vec<_> = req.unindexed_headers().collect();
        assert_eq!(
            unindexed,
            [
                (&b"X-Forwarded-For"[..], &b"1.2.3.4"[..]),
                (b"x-request-id", b"r")
            ]
        );

        let copy = req.clone();
        let mut copied = vec![];
        copy.header_to_h1_wire(&mut copied);
        assert_eq!(copied, wire);
        for parts in [req.as_owned_parts(), ReqParts::from(copy)] {
            assert_eq!(parts.headers.len(), 4);
            assert_eq!(parts.headers["x-forwarded-for"], "1.2.3.4");
            assert_eq!(parts.headers["x-request-id"], "r");
        }

        // Without case (HTTP/2, or built from parts) the name is written as Pingora writes a
        // `HeaderName`.
        let mut no_case = RequestHeader::build_no_case("GET", b"/", None).unwrap();
        no_case
            .append_unindexed(&xff, &HeaderValue::from_static("1.2.3.4"))
            .unwrap();
        let mut wire = vec![];
        no_case.header_to_h1_wire(&mut wire);
        assert_eq!(wire, b"x-forwarded-for: 1.2.3.4\r\n");

        let mut resp = ResponseHeader::build(200, Some(1)).unwrap();
        resp.insert_header("X-Frame-Options", "DENY").unwrap();
        resp.append_unindexed(&rid, &HeaderValue::from_static("r"))
            .unwrap();
        assert!(resp.headers.get("x-request-id").is_none());
        let mut wire = vec![];
        resp.header_to_h1_wire(&mut wire);
        assert_eq!(wire, b"X-Frame-Options: DENY\r\nx-request-id: r\r\n");
        let mut copied = vec![];
        resp.clone().header_to_h1_wire(&mut copied);
        assert_eq!(copied, wire);
        assert_eq!(resp.as_owned_parts().headers["x-request-id"], "r");
        let boxed: Box<RespParts> = Box::new(resp.clone()).into();
        assert_eq!(boxed.headers["x-request-id"], "r");
        assert_eq!(RespParts::from(resp).headers.len(), 2);

        // A sensitive value goes into the map, marked, rather than into a line.
        let mut secret = HeaderValue::from_static("s3cret");
        secret.set_sensitive(true);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_unindexed(&CasedHeaderName::from_static("x-api-key"), &secret)
            .unwrap();
        assert_eq!(req.unindexed_headers().count(), 0);
        assert!(req.headers["x-api-key"].is_sensitive());
        assert!(req.as_owned_parts().headers["x-api-key"].is_sensitive());
        let mut wire = vec![];
        req.header_to_h1_wire(&mut wire);
        assert_eq!(wire, b"x-api-key: s3cret\r\n");
    }

    #[test]
    fn unindexed_bytes_are_checked_as_header_values_and_written_as_values_are() {
        let xff = CasedHeaderName::from_static("X-Forwarded-For");
        let mut by_value = RequestHeader::build("GET", b"/", None).unwrap();
        let mut by_bytes = RequestHeader::build("GET", b"/", None).unwrap();
        for value in [&b"1.2.3.4"[..], b"a\tb c", b"caf\xc3\xa9", b""] {
            by_value
                .append_unindexed(&xff, &HeaderValue::from_bytes(value).unwrap())
                .unwrap();
            by_bytes.append_unindexed_bytes(&xff, value).unwrap();
        }
        let (mut a, mut b) = (vec![], vec![]);
        by_value.header_to_h1_wire(&mut a);
        by_bytes.header_to_h1_wire(&mut b);
        assert_eq!(a, b);
        // What `HeaderValue::from_bytes` refuses is refused, and nothing is added.
        for bad in [
            &b"a\r\nx-injected: 1"[..],
            b"a\nb",
            b"a\0b",
            b"a\x7fb",
            b"\x01",
        ] {
            assert!(HeaderValue::from_bytes(bad).is_err());
            assert!(by_bytes.append_unindexed_bytes(&xff, bad).is_err());
            let mut resp = ResponseHeader::build(200, None).unwrap();
            assert!(resp.append_unindexed_bytes(&xff, bad).is_err());
            assert_eq!(resp.unindexed_headers().count(), 0);
        }
        assert_eq!(by_bytes.unindexed_headers().count(), 4);
        // Every byte on its own, and between two letters, is taken exactly when
        // `HeaderValue::from_bytes` takes it.
        let mut resp = ResponseHeader::build(200, None).unwrap();
        for b in 0..=u8::MAX {
            for value in [&[b][..], &[b'a', b, b'z'][..]] {
                assert_eq!(
                    resp.append_unindexed_bytes(&xff, value).is_ok(),
                    HeaderValue::from_bytes(value).is_ok(),
                    "byte {b:#04x} in {value:?}"
                );
            }
        }
        // Without case, the name as Pingora writes a `HeaderName`, as for a value.
        let mut resp = ResponseHeader::build_no_case(200, None).unwrap();
        resp.append_unindexed_bytes(&xff, b"v").unwrap();
        let mut wire = vec![];
        resp.header_to_h1_wire(&mut wire);
        assert_eq!(wire, b"x-forwarded-for: v\r\n");
        assert_eq!(resp.as_owned_parts().headers["x-forwarded-for"], "v");
    }

    /// Lines prepared once add what `append_unindexed` of each field adds, in both spellings
    /// and in order with the lines around them; a sensitive value goes into the map.
    #[test]
    fn prepared_lines_add_what_appending_each_field_adds() {
        let fields = [
            (
                CasedHeaderName::from_static("X-Frame-Options"),
                HeaderValue::from_static("SAMEORIGIN"),
            ),
            (
                CasedHeaderName::from(http::header::CACHE_CONTROL),
                HeaderValue::from_static("no-store"),
            ),
            (
                CasedHeaderName::from_static("x-xss-protection"),
                HeaderValue::from_static("1; mode=block"),
            ),
        ];
        let lines = PreparedLines::new(fields.iter().map(|(k, v)| (k, v)));
        assert_eq!(lines.len(), 3);
        let rid = CasedHeaderName::from_static("X-Request-Id");
        type Build = fn() -> ResponseHeader;
        let builds: [Build; 2] = [
            || ResponseHeader::build(200, Some(1)).unwrap(),
            || ResponseHeader::build_no_case(200, None).unwrap(),
        ];
        for build in builds {
            let (mut each, mut prepared) = (build(), build());
            for resp in [&mut each, &mut prepared] {
                resp.insert_header("Content-Length", "0").unwrap();
                resp.append_unindexed_bytes(&rid, b"1").unwrap();
            }
            for (k, v) in &fields {
                each.append_unindexed(k, v).unwrap();
            }
            prepared.append_unindexed_lines(&lines).unwrap();
            for resp in [&mut each, &mut prepared] {
                resp.append_unindexed_bytes(&rid, b"2").unwrap();
            }
            let (mut a, mut b) = (vec![], vec![]);
            each.header_to_h1_wire(&mut a);
            prepared.header_to_h1_wire(&mut b);
            assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
            assert_eq!(
                each.unindexed_headers().collect::<Vec<_>>(),
                prepared.unindexed_headers().collect::<Vec<_>>()
            );
            assert_eq!(prepared.unindexed_headers().count(), 5);
            assert_eq!(
                prepared.as_owned_parts().headers,
                each.as_owned_parts().headers
            );
        }
        let mut wire = vec![];
        let mut req = RequestHeader::build("GET", b"/", Some(1)).unwrap();
        req.append_unindexed_lines(&lines).unwrap();
        req.header_to_h1_wire(&mut wire);
        assert_eq!(
            wire,
            b"X-Frame-Options: SAMEORIGIN\r\nCache-Control: no-store\r\n\
              x-xss-protection: 1; mode=block\r\n"
        );
        let mut no_case = RequestHeader::build_no_case("GET", b"/", None).unwrap();
        no_case.append_unindexed_lines(&lines).unwrap();
        let mut wire = vec![];
        no_case.header_to_h1_wire(&mut wire);
        assert_eq!(
            wire,
            b"x-frame-options: SAMEORIGIN\r\nCache-Control: no-store\r\n\
              x-xss-protection: 1; mode=block\r\n"
        );

        // No lines add nothing.
        let none = PreparedLines::new([]);
        assert!(none.is_empty());
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.append_unindexed_lines(&none).unwrap();
        assert_eq!(resp.unindexed_headers().count(), 0);

        // A sensitive value goes into the map, marked, as `append_unindexed` puts it there.
        let mut secret = HeaderValue::from_static("s3cret");
        secret.set_sensitive(true);
        let key = CasedHeaderName::from_static("x-api-key");
        let frame = &fields[0];
        let with_secret = PreparedLines::new([(&frame.0, &frame.1), (&key, &secret)]);
        assert_eq!(with_secret.len(), 2);
        let mut req = RequestHeader::build("GET", b"/", Some(1)).unwrap();
        req.append_unindexed_lines(&with_secret).unwrap();
        assert!(req.headers["x-api-key"].is_sensitive());
        assert_eq!(req.unindexed_headers().count(), 1);
        let mut wire = vec![];
        req.header_to_h1_wire(&mut wire);
        assert_eq!(
            wire,
            b"x-api-key: s3cret\r\nX-Frame-Options: SAMEORIGIN\r\n"
        );
    }

    /// The map's names and the unindexed headers together stay within what the map can hold,
    /// so that a conversion to parts can hold them all.
    #[test]
    fn unindexed_headers_count_towards_the_maximum() {
        let mut resp = ResponseHeader::build_no_case(200, None).unwrap();
        let name = CasedHeaderName::from_static("x-a");
        for i in 0..MAX_HEADER_NAMES - 1 {
            let distinct = HeaderName::from_bytes(format!("x-{i}-").as_bytes()).unwrap();
            resp.append_header(distinct, "v").unwrap();
        }
        // A value under a name the map has is no new name.
        resp.append_header("x-0-", "again").unwrap();
        resp.append_unindexed(&name, &HeaderValue::from_static("1"))
            .unwrap();
        assert!(resp
            .append_unindexed(&name, &HeaderValue::from_static("2"))
            .is_err());
        assert!(resp.append_unindexed_bytes(&name, b"2").is_err());
        let one = PreparedLines::new([(&name, &HeaderValue::from_static("2"))]);
        assert!(resp.append_unindexed_lines(&one).is_err());
        // No lines are taken even when nothing more fits.
        assert!(resp.append_unindexed_lines(&PreparedLines::new([])).is_ok());
        let mut sensitive = HeaderValue::from_static("3");
        sensitive.set_sensitive(true);
        assert!(resp
            .append_unindexed(&CasedHeaderName::from_static("x-s"), &sensitive)
            .is_err());
        assert!(resp.headers.get("x-s").is_none());
        assert_eq!(resp.unindexed_headers().count(), 1);
        let parts = resp.as_owned_parts();
        assert_eq!(parts.headers.keys_len(), MAX_HEADER_NAMES);
        assert_eq!(parts.headers["x-a"], "1");
    }

    /// Prepared lines that just fit are taken; one more line than fits refuses them all.
    #[test]
    fn prepared_lines_fit_exactly_up_to_the_maximum() {
        let two = PreparedLines::new([
            (
                &CasedHeaderName::from_static("x-a"),
                &HeaderValue::from_static("1"),
            ),
            (
                &CasedHeaderName::from_static("x-b"),
                &HeaderValue::from_static("2"),
            ),
        ]);
        for free in [2, 1] {
            let mut resp = ResponseHeader::build_no_case(200, None).unwrap();
            for i in 0..MAX_HEADER_NAMES - free {
                let distinct = HeaderName::from_bytes(format!("x-{i}-").as_bytes()).unwrap();
                resp.append_header(distinct, "v").unwrap();
            }
            let added = resp.append_unindexed_lines(&two);
            assert_eq!(added.is_ok(), free == 2, "{free} free");
            let expected = if free == 2 { 2 } else { 0 };
            assert_eq!(resp.unindexed_headers().count(), expected, "{free} free");
        }
    }

    /// A dropped header's line buffer is taken again by the next header that writes lines on
    /// the same thread, empty; one grown past the kept size is let go.
    #[test]
    fn line_buffers_of_dropped_headers_are_used_again_and_start_empty() {
        let name = CasedHeaderName::from_static("x-request-id");
        let mut first = RequestHeader::build("GET", b"/", None).unwrap();
        first.append_unindexed_bytes(&name, b"first").unwrap();
        let buffer = first.unindexed.wire.as_ptr();
        drop(first);
        let mut second = ResponseHeader::build(200, None).unwrap();
        second.append_unindexed_bytes(&name, b"second").unwrap();
        assert_eq!(second.unindexed.wire.as_ptr(), buffer);
        assert_eq!(second.unindexed.wire, b"x-request-id: second\r\n");
        assert_eq!(second.unindexed_headers().count(), 1);
        // Grown past the kept size: not kept.
        let long = vec![b'v'; Unindexed::MAX_KEPT_ROOM];
        second.append_unindexed_bytes(&name, &long).unwrap();
        let grown = second.unindexed.wire.as_ptr();
        drop(second);
        SPARE_LINES.with_borrow(|spare| {
            assert!(spare.iter().all(|b| b.as_ptr() != grown && b.is_empty()));
        });
        // A header without lines takes none of the kept buffers.
        let mut third = RequestHeader::build("GET", b"/", None).unwrap();
        third.append_unindexed_bytes(&name, b"third").unwrap();
        // A clone's buffer is as long as its lines: not kept.
        let clone = third.clone();
        let cloned = clone.unindexed.wire.as_ptr();
        drop(clone);
        drop(third);
        let kept = SPARE_LINES.with_borrow(|spare| spare.len());
        assert!(kept >= 1);
        SPARE_LINES.with_borrow(|spare| assert!(spare.iter().all(|b| b.as_ptr() != cloned)));
        let mut bare = ResponseHeader::build(204, None).unwrap();
        bare.insert_header("x-a", "1").unwrap();
        assert_eq!(bare.unindexed.wire.capacity(), 0);
        assert_eq!(SPARE_LINES.with_borrow(|spare| spare.len()), kept);
    }
}
