//! The upstream side of an allowed request: which peer (address, TLS, timeouts, connection
//! pool), the rewritten path, and the headers the upstream receives — or, for `redirect` and
//! `response` routes, the answer given instead.

use std::borrow::Cow;
use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use pingora::http::{CasedHeaderName, PreparedLines, RequestHeader, ResponseHeader};
use pingora::upstreams::peer::HttpPeer;

use super::decide::UpstreamCookie;
use super::reply::Reply;
use crate::config::{Direct, PathMatch};
use crate::routes::{Backend, CompiledRoute, NameLengths, ResponseHeaders};

// Header names the request path sets, made once with their spelling on the wire (lower case,
// as before) so that inserting them neither parses nor allocates.
static X_FORWARDED_FOR: LazyLock<CasedHeaderName> =
    LazyLock::new(|| CasedHeaderName::from_static("x-forwarded-for"));
static X_FORWARDED_PROTO: LazyLock<CasedHeaderName> =
    LazyLock::new(|| CasedHeaderName::from_static("x-forwarded-proto"));
static X_FORWARDED_HOST: LazyLock<CasedHeaderName> =
    LazyLock::new(|| CasedHeaderName::from_static("x-forwarded-host"));
/// `X-Forwarded-Proto: http` and `X-Forwarded-Proto: https`, each written once as its line.
static X_FORWARDED_PROTO_LINES: LazyLock<[PreparedLines; 2]> = LazyLock::new(|| {
    ["http", "https"].map(|proto| {
        PreparedLines::new([(&*X_FORWARDED_PROTO, &http::HeaderValue::from_static(proto))])
    })
});
/// `X-Request-Id`, on upstream requests and on every response.
pub static X_REQUEST_ID: LazyLock<CasedHeaderName> =
    LazyLock::new(|| CasedHeaderName::from_static("x-request-id"));

/// How many headers [`prepare_request`] adds to the header map at most besides the route's own
/// and the identity headers (`Host` and `Authorization`; the forwarding headers and
/// `X-Request-Id` go after the map's headers, outside it).
const ADDED_REQUEST_HEADERS: usize = 2;

/// Room for headers beyond those a client or an upstream sent that Pingora makes in each
/// request and response it reads (`pingora::http::set_header_headroom`): what
/// [`prepare_request`] adds to the header map besides a route's own header settings (`Host`,
/// `Authorization`; those settings reserve their own room). The identity headers, the
/// forwarding headers and the request id go outside the map, and [`prepare_response`] usually
/// adds none to it. More headers than this still work; their maps grow once, at the
/// reservation. Room beyond it costs every request larger allocations: a request of one header
/// and this room of 2 gets a map of four index slots and three entries, with a room of 6
/// sixteen and twelve, and the upstream request's copy keeps the same room.
pub const HEADER_HEADROOM: usize = ADDED_REQUEST_HEADERS;

/// Why a request did not get an answer from its upstream (the metric's `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// The upstream's name did not resolve when the table was built.
    Resolve,
    Connect,
    Timeout,
    /// An error that carries an HTTP status.
    Status,
    /// The client went away or sent something unreadable.
    Downstream,
    Internal,
}

impl UpstreamError {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamError::Resolve => "resolve",
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Status => "status",
            UpstreamError::Downstream => "downstream",
            UpstreamError::Internal => "internal",
        }
    }
}

/// Whether the route lets connections be upgraded (WebSocket, SPDY, any): such streams live
/// long, so neither a deadline nor an idle limit applies unless the route sets one.
fn upgrades(route: &CompiledRoute) -> bool {
    let o = &route.route.options;
    o.allow_websockets || o.allow_spdy || o.allow_upgrades
}

/// The whole-request limit of a route, as Pomerium sets it: its `timeout`, else none for routes
/// that allow upgrades, else `default` (`default_upstream_timeout`); 0 means none.
pub fn deadline(route: &CompiledRoute, default: Duration) -> Option<Duration> {
    match route.route.options.timeout {
        Some(t) => Some(t),
        None if upgrades(route) => None,
        None => Some(default),
    }
    .filter(|d| !d.is_zero())
}

/// How long a stream may go without a byte either way: the route's `idle_timeout`, else none
/// for routes that allow upgrades, else 5 minutes (Envoy's default); 0 means none.
pub fn stream_idle(route: &CompiledRoute) -> Option<Duration> {
    match route.route.options.idle_timeout {
        Some(t) => Some(t),
        None if upgrades(route) => None,
        None => Some(Duration::from_secs(300)),
    }
    .filter(|d| !d.is_zero())
}

/// The peer for `backend` of `route` (its address resolved), with the route's TLS options;
/// each read, write and connect waits at most `per_operation` (`None`: reads and writes
/// without limit, connects 10 s). Boxed, as Pingora takes it: made in its box, the peer (a few
/// hundred bytes) is copied once instead of twice.
pub fn peer(
    route: &CompiledRoute,
    backend: &Backend,
    addr: std::net::SocketAddr,
    per_operation: Option<Duration>,
) -> Box<HttpPeer> {
    let opts = &route.route.options;
    let tls = backend.upstream.tls();
    let own = backend.upstream.backend_tls.as_deref();
    // A plain-text peer sends no server name: an empty one costs no allocation per request.
    let sni = match own {
        _ if !tls => String::new(),
        Some(t) => t.server_name.clone(),
        None => opts
            .tls_server_name
            .clone()
            .unwrap_or_else(|| backend.upstream.host().to_string()),
    };
    let mut peer = Box::new(HttpPeer::new(addr, tls, sni));
    peer.group_key = backend.pool_key;
    let connect = per_operation.unwrap_or(Duration::MAX);
    peer.options.connection_timeout = Some(connect.min(Duration::from_secs(10)));
    peer.options.total_connection_timeout = Some(connect.min(Duration::from_secs(15)));
    peer.options.read_timeout = per_operation;
    peer.options.write_timeout = per_operation;
    // How long an unused upstream connection stays in the pool.
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    if backend.upstream.h2c() {
        // HTTP/2 with prior knowledge: gRPC and other h2c servers.
        peer.options.set_http_version(2, 2);
    }
    if tls {
        // HTTP/2 when the upstream offers it in ALPN, else HTTP/1.1.
        peer.options.set_http_version(2, 1);
        peer.client_cert_key = route.client_cert.clone();
        // The upstream's own settings (a BackendTLSPolicy) always verify: its CA, else the
        // system's roots.
        if own.is_none() && opts.tls_skip_verify {
            peer.options.verify_cert = false;
            peer.options.verify_hostname = false;
        }
        // Parsed when the table was built (`Backend::ca`).
        peer.options.ca = backend.ca.clone();
    }
    peer
}

/// What a `redirect` or `response` route answers an allowed request; `None` for routes that
/// proxy.
pub fn direct_reply(route: &CompiledRoute, req: &RequestHeader, insecure: bool) -> Option<Reply> {
    match route.route.options.direct.as_ref()? {
        Direct::Respond { status, body } => Some(Reply {
            status: *status,
            headers: Vec::new(),
            body: Some(("text/plain; charset=utf-8", Bytes::from(body.clone()))),
        }),
        Direct::Redirect(r) => {
            let (host, port) = super::request::host(req)?;
            let matched = match &route.route.path {
                PathMatch::Prefix(p) => Some(p.as_str()),
                _ => None,
            };
            let location = r.location(
                if insecure { "http" } else { "https" },
                &host,
                port,
                req.uri.path(),
                req.uri.query(),
                matched,
            );
            Some(Reply {
                status: r.status,
                headers: vec![(http::header::LOCATION, location)],
                body: None,
            })
        }
    }
}

/// The response as the client gets it: the global `set_response_headers`, then the route's
/// (a `disable` key in either drops every header set this way), the route's headers from
/// Secrets, `rewrite_response_headers`, and `X-Request-Id` (`request_id`).
pub fn prepare_response(
    route: Option<&CompiledRoute>,
    global: &ResponseHeaders,
    resp: &mut ResponseHeader,
    request_id: &[u8],
) -> pingora::Result<()> {
    let h = route.map(|r| &r.headers);
    // The route's `set_response_headers`; `None` when it holds `disable` (no route: none).
    let route_set = match h {
        Some(h) => h.set_response.as_ref().map(|f| f.0.as_slice()),
        None => Some(&[][..]),
    };
    // Most routes only take the global headers (Pomerium's default security headers, say):
    // each replaces any the upstream sent under its name. Then those the upstream sent are
    // taken out (one pass over its names finds whether there are any) and ours go after the
    // map's headers without entering it, so none of them is hashed or probed for: their lines,
    // written when the configuration was read, in one copy. A route with header settings of its
    // own takes the general way below.
    let only_global = route_set.is_none_or(<[_]>::is_empty)
        && h.is_none_or(|h| {
            h.secret_response.is_empty()
                && h.add_response.is_empty()
                && h.remove_response.is_empty()
                && h.rewrite_response.is_empty()
        });
    // A route's `disable` drops the global ones too.
    // The lengths of our names, `X-Request-Id`'s included: most of the upstream's names
    // (`Server`, `Date`, `Content-Length`, ...) have none of them, and are not compared with
    // any of ours.
    let (fields, lengths): (&[_], _) = if route_set.is_some() {
        (
            &global.fields.0,
            global.name_lengths().union(NameLengths::X_REQUEST_ID),
        )
    } else {
        (&[], NameLengths::X_REQUEST_ID)
    };
    if only_global && let Some(lines) = &global.lines {
        let ours = |name: &http::HeaderName| {
            lengths.may_hold(name)
                && (name == X_REQUEST_ID.name() || fields.iter().any(|(k, _)| k.name() == name))
        };
        if resp.headers.keys().any(ours) {
            for (k, _) in fields {
                resp.remove_header(k.name());
            }
            resp.remove_header(X_REQUEST_ID.name());
        }
        if route_set.is_some() {
            resp.append_unindexed_lines(lines)?;
        }
        return resp.append_unindexed_bytes(&X_REQUEST_ID, request_id);
    }
    // Room for every header added below and `X-Request-Id`.
    resp.reserve(
        1 + route_set.map_or(0, |r| global.fields.len() + r.len())
            + h.map_or(0, |h| h.secret_response.len() + h.add_response.len()),
    )?;
    if let Some(route_set) = route_set {
        for (k, v) in global.fields.0.iter().chain(route_set) {
            resp.insert_header(k, v.clone())?;
        }
    }
    if let Some(h) = h {
        for (k, v) in &h.secret_response.0 {
            resp.insert_header(k, v.clone())?;
        }
        for (k, v) in &h.add_response.0 {
            let joined = appended(&resp.headers, k.name(), v);
            resp.insert_header(k, joined)?;
        }
        for name in &h.remove_response {
            resp.remove_header(name);
        }
        for (name, rw) in &h.rewrite_response {
            let new = resp
                .headers
                .get(name.name())
                .and_then(|v| v.to_str().ok())
                .and_then(|v| rw.apply(v));
            if let Some(new) = new {
                resp.insert_header(name, new)?;
            }
        }
    }
    resp.insert_header(&*X_REQUEST_ID, request_id)
}

/// `value` after the header's present values, comma-separated (as the Gateway API's `add`
/// says: `foo` then add `bar` gives `foo,bar`).
fn appended(
    headers: &http::HeaderMap,
    name: &http::HeaderName,
    value: &http::HeaderValue,
) -> http::HeaderValue {
    let mut present = headers.get_all(name).iter().peekable();
    if present.peek().is_none() {
        return value.clone();
    }
    let mut joined = Vec::with_capacity(64);
    for v in present {
        joined.extend_from_slice(v.as_bytes());
        joined.push(b',');
    }
    joined.extend_from_slice(value.as_bytes());
    // Valid values joined by commas are a valid value.
    let mut out = http::HeaderValue::from_bytes(&joined).unwrap_or_else(|_| value.clone());
    out.set_sensitive(value.is_sensitive());
    out
}

/// Rewrite the path of an allowed request as the route says.
pub fn rewrite_path(route: &CompiledRoute, path: &str) -> Option<String> {
    let opts = &route.route.options;
    if let Some(new_prefix) = &opts.prefix_rewrite {
        let rest = match &route.route.path {
            PathMatch::Prefix(p) => path.strip_prefix(p.as_str()).unwrap_or(path),
            PathMatch::Exact(p) => path.strip_prefix(p.as_str()).unwrap_or(""),
            PathMatch::Any => path.strip_prefix('/').unwrap_or(path),
            PathMatch::Regex(_) => path,
        };
        let mut out = new_prefix.clone();
        if !rest.is_empty() && !out.ends_with('/') && !rest.starts_with('/') {
            out.push('/');
        }
        if out.ends_with('/') && rest.starts_with('/') {
            out.push_str(&rest[1..]);
        } else {
            out.push_str(rest);
        }
        if out.is_empty() {
            out.push('/');
        }
        return Some(out);
    }
    if let Some((re, subst)) = &opts.regex_rewrite {
        return Some(re.replace_all(path, subst.as_str()).into_owned());
    }
    None
}

/// What the upstream request is built from besides the route.
pub struct Forwarding<'a> {
    /// The request as the client sent it (after `sanitize`), of which the upstream request is
    /// Pingora's copy: the `Host` (or authority) it holds goes as `X-Forwarded-Host`. (Without
    /// one, a request sanitize would have refused, no `X-Forwarded-Host` is sent.)
    pub client: &'a RequestHeader,
    /// `host[:port]` of the chosen backend.
    pub upstream_authority: &'a http::HeaderValue,
    pub client_ip: Option<IpAddr>,
    /// Whether the client spoke plain HTTP to us.
    pub insecure: bool,
    pub request_id: &'a [u8],
}

/// The request as the upstream gets it: Host, path, the route's header options, identity
/// headers, forwarding headers.
pub fn prepare_request(
    route: &CompiledRoute,
    upstream: &mut RequestHeader,
    identity: &[(CasedHeaderName, http::HeaderValue)],
    fwd: &Forwarding<'_>,
) -> pingora::Result<()> {
    let opts = &route.route.options;
    // Room for every header added to the map below, so that it does not grow one insert at a
    // time. The identity headers go outside it (only a sensitive value enters it, and makes room
    // for itself).
    let h = &route.headers;
    upstream.reserve(
        ADDED_REQUEST_HEADERS + h.set_request.len() + h.add_request.len() + h.secret_request.len(),
    )?;
    let text = |s: &str| {
        http::HeaderValue::from_str(s).map_err(|_| {
            pingora::Error::explain(
                pingora::ErrorType::InternalError,
                "the rewritten host is not a valid header value",
            )
        })
    };
    let host = if opts.preserve_host_header
        && let Some(original) = super::request::raw_host_value(fwd.client)
    {
        original.into_owned()
    } else if let Some(h) = &opts.host_rewrite {
        text(h)?
    } else if let Some(h) = opts
        .host_rewrite_header
        .as_deref()
        .and_then(|name| upstream.headers.get(name))
        .filter(|v| v.to_str().is_ok_and(|v| !v.is_empty()))
    {
        h.clone()
    } else if let (Some(re), Some(subst)) = (
        &opts.host_path_regex_rewrite,
        &opts.host_path_regex_substitution,
    ) && re.is_match(upstream.uri.path())
    {
        text(&re.replace_all(upstream.uri.path(), subst.as_str()))?
    } else {
        fwd.upstream_authority.clone()
    };
    // The upstream request is Pingora's copy of the client's, so the `Host` it holds is the
    // client's (for an HTTP/2 client sent on over HTTP/1, the one Pingora made of the authority,
    // which Pingora's checks make equal to any `Host` the client sent): the value the upstream's
    // replaces is the one `X-Forwarded-Host` carries (when it reads as text, as `raw_host_value`
    // takes it), and the client's request is looked up only without one (an HTTP/2 client sent
    // on over HTTP/2: the authority).
    let original_host = match upstream.replace_header(http::header::HOST, host)? {
        Some(value) if value.to_str().is_ok() => Some(Cow::Owned(value)),
        _ => super::request::raw_host_value(fwd.client),
    };
    debug_assert_eq!(
        original_host.as_deref(),
        super::request::raw_host_value(fwd.client).as_deref(),
        "the upstream request's `Host` is no longer the client's"
    );
    // HTTP/2 downstream requests carry an absolute URI; send origin-form upstream.
    if let Some(new_path) = rewrite_path(route, upstream.uri.path()) {
        let query = upstream
            .uri
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        let uri: http::Uri = format!("{new_path}{query}").parse().map_err(|_| {
            pingora::Error::explain(
                pingora::ErrorType::InternalError,
                "rewritten path is not a valid URI",
            )
        })?;
        upstream.set_uri(uri);
    } else if upstream.uri.authority().is_some() {
        let pq = upstream
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        if let Ok(uri) = pq.parse::<http::Uri>() {
            upstream.set_uri(uri);
        }
    }
    for name in &h.remove_request {
        upstream.remove_header(name);
    }
    for (k, v) in &h.set_request.0 {
        upstream.insert_header(k, v.clone())?;
    }
    for (k, v) in &h.add_request.0 {
        let joined = appended(&upstream.headers, k.name(), v);
        upstream.insert_header(k, joined)?;
    }
    for (k, v) in &h.secret_request.0 {
        upstream.insert_header(k, v.clone())?;
    }
    // The service account acts only for a known user it impersonates: a request the policy
    // lets in without one never gets the account's own rights.
    if let Some(token) = &opts.kubernetes_service_account_token
        && identity
            .iter()
            .any(|(k, _)| k.name().as_str() == "impersonate-user")
    {
        upstream.insert_header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", token.as_str()),
        )?;
    }
    // Identity headers replace any of the same name; a name may repeat (one
    // `Impersonate-Group` per group). The client's own went before the request was decided
    // (`sanitize` removes every identity and impersonation header, in any spelling), so only
    // the route's request header settings above can have put one back: a route without them
    // has none to remove, and its requests look up none of the names.
    if h.sets_request_headers() {
        for (k, _) in identity {
            upstream.remove_header(k.name());
        }
    }
    // They go after the map's headers without entering it (nothing reads them back). None of
    // them has the name of a header the proxy sets below: the configuration refuses such a
    // claim header name (`guard::headers::is_proxy_own_header`).
    for (k, v) in identity {
        upstream.append_unindexed(k, v)?;
    }
    // The forwarding headers and the request id are the proxy's to set: a header of one of
    // those names that the request holds now (a trusted proxy's, or one a route's header
    // settings or a claim header put there) is taken out. Ours go after the map's headers
    // without entering the map (nothing reads them back), so none of them is hashed or
    // probed for; the one pass over the names below finds whether any is there.
    let held = ForwardingNames::held(&upstream.headers);
    if let Some(IpAddr::V4(ip)) = fwd.client_ip
        && !held.forwarded_for
    {
        // The usual case, the client's address alone: written on the stack.
        let mut text = [0u8; MAX_IPV4_TEXT];
        let len = ipv4_text(ip, &mut text);
        upstream.append_unindexed_bytes(&X_FORWARDED_FOR, &text[..len])?;
    } else if let Some(ip) = fwd.client_ip {
        // Written in a buffer the thread keeps and copied from there into the header's line: no
        // allocation.
        XFF.with_borrow_mut(|xff| {
            xff.clear();
            // Every line a trusted proxy sent, in order, as one list (sanitize read them all to
            // find the client); the client's address is appended.
            if held.forwarded_for {
                for prev in upstream
                    .headers
                    .get_all(X_FORWARDED_FOR.name())
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty())
                {
                    xff.push_str(prev);
                    xff.push_str(", ");
                }
                upstream.remove_header(X_FORWARDED_FOR.name());
            }
            push_ip(xff, ip);
            let appended = upstream.append_unindexed_bytes(&X_FORWARDED_FOR, xff.as_bytes());
            // A long list from a trusted proxy is not kept for the thread's life.
            if xff.capacity() > MAX_KEPT_XFF {
                *xff = String::new();
            }
            appended
        })?;
    }
    if held.forwarded_proto {
        upstream.remove_header(X_FORWARDED_PROTO.name());
    }
    let [plain, tls] = &*X_FORWARDED_PROTO_LINES;
    upstream.append_unindexed_lines(if fwd.insecure { plain } else { tls })?;
    // Never one the client sent.
    if held.forwarded_host {
        upstream.remove_header(X_FORWARDED_HOST.name());
    }
    if let Some(original) = &original_host {
        upstream.append_unindexed(&X_FORWARDED_HOST, original)?;
    }
    if held.request_id {
        upstream.remove_header(X_REQUEST_ID.name());
    }
    upstream.append_unindexed_bytes(&X_REQUEST_ID, fwd.request_id)?;
    Ok(())
}

/// Which of the names of the headers that the proxy alone sets a header map holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct ForwardingNames {
    forwarded_for: bool,
    forwarded_proto: bool,
    forwarded_host: bool,
    request_id: bool,
}

impl ForwardingNames {
    /// One pass over the names of `headers` (usually a few, often only `Host`).
    fn held(headers: &http::HeaderMap) -> ForwardingNames {
        let mut held = ForwardingNames::default();
        for name in headers.keys() {
            let name = name.as_str();
            // Names are lower case in the map; the length rules out most at once.
            match name.len() {
                12 => held.request_id |= name == X_REQUEST_ID.name().as_str(),
                15 => held.forwarded_for |= name == X_FORWARDED_FOR.name().as_str(),
                16 => held.forwarded_host |= name == X_FORWARDED_HOST.name().as_str(),
                17 => held.forwarded_proto |= name == X_FORWARDED_PROTO.name().as_str(),
                _ => {}
            }
        }
        held
    }
}

/// Takes the session cookie (and its chunks) out of the upstream request's `Cookie` header (no
/// upstream ever gets it), and sends several as one. `decided` is what deciding worked out from
/// the client's header (`AsSent` also when the client sent none). It holds unless deciding left
/// it `Unread`, or the route's own request header settings may have changed the header
/// ([`prepare_request`] applied them): then the header is read again here.
pub fn strip_session_cookie(
    sign_in: &super::SignIn,
    route: &CompiledRoute,
    decided: &UpstreamCookie,
    upstream: &mut RequestHeader,
) -> pingora::Result<()> {
    let read_here;
    let cookie = if *decided == UpstreamCookie::Unread || route.headers.changes_request_headers() {
        read_here = super::request::cookie_headers(&upstream.headers)
            .map_or(UpstreamCookie::AsSent, |c| UpstreamCookie::of(sign_in, c));
        &read_here
    } else {
        decided
    };
    // A header Pingora took out before (the client named it in `Connection`) stays out.
    if let UpstreamCookie::Becomes(rest) = cookie
        && upstream.remove_header(&http::header::COOKIE).is_some()
        && let Some(rest) = rest
    {
        upstream.insert_header(http::header::COOKIE, rest.clone())?;
    }
    Ok(())
}

/// Several `Cookie` headers (an HTTP/2 client may split its cookies) as one, their bytes joined
/// with `; ` as RFC 9113 asks of a request passed on to HTTP/1.1; one header stays as it came.
/// For a proxy without sign-in ([`strip_session_cookie`] joins them otherwise).
pub fn join_cookie_headers(upstream: &mut RequestHeader) -> pingora::Result<()> {
    let Some((joined, true)) = super::request::cookie_headers(&upstream.headers) else {
        return Ok(());
    };
    // Valid header values joined by `; ` make a valid header value.
    let joined = http::HeaderValue::from_maybe_shared(bytes::Bytes::from(joined.into_owned()))
        .map_err(|_| {
            pingora::Error::explain(
                pingora::ErrorType::InternalError,
                "the joined Cookie headers are not a valid header value",
            )
        })?;
    upstream.remove_header(&http::header::COOKIE);
    upstream.insert_header(http::header::COOKIE, joined)?;
    Ok(())
}

thread_local! {
    /// Where a worker thread writes each `X-Forwarded-For` value before copying it.
    static XFF: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The most room [`XFF`] keeps after a long value (from a trusted proxy) grew it.
const MAX_KEPT_XFF: usize = 1024;

/// The longest IPv4 address in dotted decimal: `255.255.255.255`.
const MAX_IPV4_TEXT: usize = 15;

/// Writes `ip` in dotted decimal (as `Display` writes it) at the start of `out` and returns its
/// length: octet by octet, without going through `core::fmt`.
fn ipv4_text(ip: std::net::Ipv4Addr, out: &mut [u8; MAX_IPV4_TEXT]) -> usize {
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            out[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            out[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        out[len] = b'0' + octet % 10;
        len += 1;
    }
    len
}

/// Appends `ip` as `Display` writes it: an IPv4 address (nearly every client) octet by octet,
/// without going through `core::fmt`; an IPv6 address through `Display`.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = [0u8; MAX_IPV4_TEXT];
            let len = ipv4_text(v4, &mut text);
            // Digits and dots.
            out.push_str(std::str::from_utf8(&text[..len]).unwrap_or_default());
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteOptions;
    use crate::routes::fixtures::route_on;
    use crate::routes::{HeaderFields, RouteTable};
    use std::sync::Arc;

    fn compiled(path: PathMatch, opts: RouteOptions) -> Arc<CompiledRoute> {
        let mut r = route_on("r", "a.test", path);
        r.options = opts.shared();
        let t = RouteTable::compile(vec![r], &|_, _| None);
        t.routes[0].clone()
    }

    #[test]
    fn client_addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "10.0.0.1",
            "192.168.100.200",
            "255.255.255.255",
            "::1",
            "2001:db8::8:800:200c:417a",
            "::ffff:192.0.2.7",
        ] {
            let ip: IpAddr = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            let mut out = String::from("x, ");
            push_ip(&mut out, ip);
            assert_eq!(out, format!("x, {ip}"));
        }
    }

    /// The `X-Forwarded-For` the upstream gets for a request that arrived with `prior` lines
    /// of it, from `ip`.
    fn forwarded_for(prior: &[&str], ip: &str) -> String {
        let route = compiled(PathMatch::prefix("/"), RouteOptions::default());
        let authority = http::HeaderValue::from_static("backend:8080");
        let id = b"0123456789abcdef";
        let mut req = match RequestHeader::build("GET", b"/", None) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        for line in prior {
            if let Err(e) = req.append_header("x-forwarded-for", *line) {
                panic!("{e}");
            }
        }
        let client = req.clone();
        let fwd = Forwarding {
            client: &client,
            upstream_authority: &authority,
            client_ip: ip.parse().ok(),
            insecure: true,
            request_id: id,
        };
        if let Err(e) = prepare_request(&route, &mut req, &[], &fwd) {
            panic!("{e}");
        }
        let values: Vec<_> = req
            .as_owned_parts()
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .cloned()
            .collect();
        assert_eq!(values.len(), 1, "{values:?}");
        values[0].to_str().map(str::to_owned).unwrap_or_default()
    }

    /// An IPv4 address is written as `Display` writes it, every octet's value in every place.
    #[test]
    fn ipv4_addresses_are_written_as_display_writes_them() {
        let mut addresses = vec![[0, 0, 0, 0], [255, 255, 255, 255], [10, 0, 0, 1]];
        for octet in 0..=255u8 {
            addresses.push([octet, 0, 9, 10]);
            addresses.push([99, octet, 100, 255]);
            addresses.push([1, 2, octet, 3]);
            addresses.push([200, 20, 2, octet]);
        }
        for octets in addresses {
            let ip = std::net::Ipv4Addr::from(octets);
            let mut text = [0u8; MAX_IPV4_TEXT];
            let len = ipv4_text(ip, &mut text);
            assert_eq!(
                std::str::from_utf8(&text[..len]),
                Ok(ip.to_string().as_str())
            );
            let mut pushed = String::from("x, ");
            push_ip(&mut pushed, IpAddr::V4(ip));
            assert_eq!(pushed, format!("x, {ip}"));
        }
    }

    /// `X-Forwarded-For` is written in a buffer the thread reuses: a long value from a trusted
    /// proxy, then requests without one and from another address, each get exactly their own.
    #[test]
    fn forwarded_for_values_do_not_carry_over_between_requests() {
        let long = vec!["198.51.100.7"; 200].join(", ");
        assert_eq!(
            forwarded_for(&[&long], "10.0.0.1"),
            format!("{long}, 10.0.0.1")
        );
        // The buffer the long value grew is not kept.
        assert!(XFF.with_borrow(|b| b.capacity()) <= MAX_KEPT_XFF);
        assert_eq!(forwarded_for(&[], "10.0.0.2"), "10.0.0.2");
        assert_eq!(forwarded_for(&["203.0.113.5"], "::1"), "203.0.113.5, ::1");
        assert_eq!(forwarded_for(&[], "192.0.2.255"), "192.0.2.255");
    }

    /// A request that reached us with several `X-Forwarded-For` lines (kept only from trusted
    /// proxies) sends all of them on, in order, as one list ending in the client's address; an
    /// empty line adds nothing.
    #[test]
    fn forwarded_for_keeps_every_line_a_trusted_proxy_sent() {
        assert_eq!(
            forwarded_for(&["203.0.113.1", "", "198.51.100.2, 192.0.2.3"], "10.0.0.9"),
            "203.0.113.1, 198.51.100.2, 192.0.2.3, 10.0.0.9"
        );
    }

    /// The values of `name` on the upstream request `route` makes of a request carrying
    /// `identity` (a client's identity headers were removed before, so the request has none).
    fn identity_sent(
        route: &CompiledRoute,
        identity: &[(&str, &'static str)],
        name: &str,
    ) -> Vec<String> {
        let authority = http::HeaderValue::from_static("backend:8080");
        let id = b"0123456789abcdef";
        let mut req = RequestHeader::build("GET", b"/", None).unwrap_or_else(|e| panic!("{e}"));
        req.append_header("Host", "a.test")
            .unwrap_or_else(|e| panic!("{e}"));
        let client = req.clone();
        let fwd = Forwarding {
            client: &client,
            upstream_authority: &authority,
            client_ip: None,
            insecure: true,
            request_id: id,
        };
        let identity: super::super::signin::IdentityHeaders = identity
            .iter()
            .map(|(k, v)| {
                let k = CasedHeaderName::new(k.to_string()).unwrap_or_else(|e| panic!("{e}"));
                (k, http::HeaderValue::from_static(v))
            })
            .collect();
        prepare_request(route, &mut req, &identity, &fwd).unwrap_or_else(|e| panic!("{e}"));
        req.as_owned_parts()
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("?").to_string())
            .collect()
    }

    /// A route's request header settings that name an identity header give way to the
    /// identity: its value replaces theirs, every one of them (`add` as well as `set`), and a
    /// name that repeats (`Impersonate-Group`) keeps each of its values. A route without such
    /// settings sends each identity header once.
    #[test]
    fn a_route_header_of_an_identity_name_gives_way_to_the_identity() {
        let identity = [
            ("X-Pomerium-Jwt-Assertion", "real"),
            ("impersonate-group", "g1"),
            ("impersonate-group", "g2"),
        ];
        let route = compiled(
            PathMatch::Any,
            RouteOptions {
                set_request_headers: [("x-pomerium-jwt-assertion".into(), "forged".into())].into(),
                add_request_headers: vec![("Impersonate-Group".into(), "system:masters".into())],
                ..Default::default()
            },
        );
        let plain = compiled(PathMatch::Any, RouteOptions::default());
        assert!(route.headers.sets_request_headers());
        assert!(!plain.headers.sets_request_headers());
        for r in [&route, &plain] {
            let sent = |name| identity_sent(r, &identity, name);
            assert_eq!(sent("x-pomerium-jwt-assertion"), ["real"]);
            assert_eq!(sent("impersonate-group"), ["g1", "g2"]);
        }
    }

    /// The `Cookie` header an upstream gets for a client that sent `client` to `route` (its
    /// items separated by `|` in as many `Cookie` headers): the request as
    /// `upstream_request_filter` makes it (the route's header settings, then the session cookie
    /// taken out), with `decided` as deciding worked it out, or unread.
    fn cookie_sent(route: &CompiledRoute, client: &str, decided: bool) -> Option<String> {
        cookie_bytes_sent(route, client.as_bytes(), decided)
            .map(|v| String::from_utf8(v).unwrap_or_else(|e| panic!("{e}")))
    }

    /// The `Cookie` header an upstream gets for the client's headers (`|` between two), with
    /// deciding having read them first when `decided`.
    fn cookie_bytes_sent(route: &CompiledRoute, client: &[u8], decided: bool) -> Option<Vec<u8>> {
        let sign_in = crate::proxy::signin::fixtures::sign_in();
        let authority = http::HeaderValue::from_static("backend:8080");
        let id = b"0123456789abcdef";
        let mut req = RequestHeader::build("GET", b"/", None).unwrap_or_else(|e| panic!("{e}"));
        for header in client.split(|&b| b == b'|') {
            let value = http::HeaderValue::from_bytes(header).unwrap_or_else(|e| panic!("{e}"));
            req.append_header("cookie", value)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let decided = match super::super::request::cookie_headers(&req.headers) {
            Some(read) if decided => UpstreamCookie::of(&sign_in, read),
            _ => UpstreamCookie::Unread,
        };
        let client = req.clone();
        let fwd = Forwarding {
            client: &client,
            upstream_authority: &authority,
            client_ip: None,
            insecure: true,
            request_id: id,
        };
        prepare_request(route, &mut req, &[], &fwd).unwrap_or_else(|e| panic!("{e}"));
        strip_session_cookie(&sign_in, route, &decided, &mut req).unwrap_or_else(|e| panic!("{e}"));
        let mut values = req.headers.get_all("cookie").iter();
        let value = values.next().map(|v| v.as_bytes().to_vec());
        assert!(values.next().is_none(), "one Cookie header at most");
        value
    }

    /// The session cookie never reaches an upstream, whether deciding already worked out the
    /// header without it or not, and whatever the route's own header settings do: a `Cookie`
    /// a route sets loses the session cookie too, and one a route removes stays removed.
    #[test]
    fn the_session_cookie_never_reaches_an_upstream() {
        let client = "a=1; _pomerium=session; _pomerium_1=chunk";
        let plain = compiled(PathMatch::Any, RouteOptions::default());
        for decided in [true, false] {
            assert_eq!(cookie_sent(&plain, client, decided).as_deref(), Some("a=1"));
            assert_eq!(
                cookie_sent(&plain, "a=1; b=2", decided).as_deref(),
                Some("a=1; b=2")
            );
            assert_eq!(cookie_sent(&plain, "_pomerium=session", decided), None);
            // Several headers (an HTTP/2 client's) go as one, with or without the session.
            assert_eq!(
                cookie_sent(&plain, "a=1|b=2", decided).as_deref(),
                Some("a=1; b=2")
            );
            assert_eq!(
                cookie_sent(&plain, "a=1|_pomerium=session|b=2", decided).as_deref(),
                Some("a=1; b=2")
            );
            let sets = compiled(
                PathMatch::Any,
                RouteOptions {
                    set_request_headers: [("Cookie".into(), "b=2; _pomerium=other".into())].into(),
                    ..Default::default()
                },
            );
            assert_eq!(cookie_sent(&sets, client, decided).as_deref(), Some("b=2"));
            let removes = compiled(
                PathMatch::Any,
                RouteOptions {
                    remove_request_headers: vec!["cookie".into()],
                    ..Default::default()
                },
            );
            assert_eq!(cookie_sent(&removes, client, decided), None);
        }
        // A `Cookie` header Pingora took out before the filter (the client named it in
        // `Connection`) is not put back from what deciding worked out.
        let sign_in = crate::proxy::signin::fixtures::sign_in();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap_or_else(|e| panic!("{e}"));
        strip_session_cookie(
            &sign_in,
            &plain,
            &UpstreamCookie::of(
                &sign_in,
                (std::borrow::Cow::Borrowed(client.as_bytes()), false),
            ),
            &mut req,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(req.headers.get("cookie").is_none());
        // Cookies that are not UTF-8 (a Latin-1 cookie another site set) go as their bytes came:
        // one header without the session cookie unchanged, and beside the session cookie, in
        // one header or several, with their bytes.
        let latin1: &[u8] = b"a=\xe9t\xe9";
        for decided in [true, false] {
            assert_eq!(
                cookie_bytes_sent(&plain, latin1, decided).as_deref(),
                Some(latin1)
            );
            for client in [
                &b"a=\xe9t\xe9; _pomerium=session; b=\xfc"[..],
                b"a=\xe9t\xe9|_pomerium=session|b=\xfc",
                b"a=\xe9t\xe9|b=\xfc",
            ] {
                assert_eq!(
                    cookie_bytes_sent(&plain, client, decided).as_deref(),
                    Some(&b"a=\xe9t\xe9; b=\xfc"[..]),
                    "{}",
                    String::from_utf8_lossy(client)
                );
            }
        }
    }

    /// Without sign-in, several `Cookie` headers go upstream as one, their bytes as they came
    /// (a Latin-1 cookie included); one header is left alone.
    #[test]
    fn cookie_headers_are_joined_without_sign_in() {
        let sent = |headers: &[&[u8]]| {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap_or_else(|e| panic!("{e}"));
            for h in headers {
                let value = http::HeaderValue::from_bytes(h).unwrap_or_else(|e| panic!("{e}"));
                req.append_header("cookie", value)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            join_cookie_headers(&mut req).unwrap_or_else(|e| panic!("{e}"));
            req.headers
                .get_all("cookie")
                .iter()
                .map(|v| v.as_bytes().to_vec())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            sent(&[b"a=1", b"b=\xe9", b"c=3"]),
            [b"a=1; b=\xe9; c=3".to_vec()]
        );
        assert_eq!(sent(&[b"a=\xe9"]), [b"a=\xe9".to_vec()]);
        assert!(sent(&[]).is_empty());
    }

    #[test]
    fn prefix_rewrite() {
        let r = compiled(
            PathMatch::prefix("/api"),
            RouteOptions {
                prefix_rewrite: Some("/v2/".into()),
                ..Default::default()
            },
        );
        assert_eq!(rewrite_path(&r, "/api/users").as_deref(), Some("/v2/users"));
        assert_eq!(rewrite_path(&r, "/api").as_deref(), Some("/v2/"));
        let r = compiled(
            PathMatch::Any,
            RouteOptions {
                prefix_rewrite: Some("/app".into()),
                ..Default::default()
            },
        );
        assert_eq!(rewrite_path(&r, "/x/y").as_deref(), Some("/app/x/y"));
    }

    #[test]
    fn regex_rewrite() {
        let r = compiled(
            PathMatch::Any,
            RouteOptions {
                regex_rewrite: Some((regex::Regex::new("^/old/(.*)$").unwrap(), "/new/$1".into())),
                ..Default::default()
            },
        );
        assert_eq!(rewrite_path(&r, "/old/a/b").as_deref(), Some("/new/a/b"));
        assert_eq!(rewrite_path(&r, "/other").as_deref(), Some("/other"));
    }

    /// A Gateway API response header modifier: `add` appends after a comma, `remove` runs
    /// last and takes every value.
    #[test]
    fn response_headers_are_added_to_and_removed() {
        let r = compiled(
            PathMatch::Any,
            RouteOptions {
                add_response_headers: vec![
                    ("x-list".into(), "b".into()),
                    ("x-new".into(), "n".into()),
                ],
                remove_response_headers: vec!["x-gone".into()],
                ..Default::default()
            },
        );
        let mut resp = ResponseHeader::build(200, None).unwrap_or_else(|e| panic!("{e}"));
        for (k, v) in [("x-list", "a"), ("x-gone", "1"), ("x-gone", "2")] {
            resp.append_header(k, v).unwrap_or_else(|e| panic!("{e}"));
        }
        let id = b"0123456789abcdef";
        let none = ResponseHeaders::new(HeaderFields::default());
        prepare_response(Some(&r), &none, &mut resp, id).unwrap_or_else(|e| panic!("{e}"));
        let sent = resp.as_owned_parts().headers;
        let get = |k: &str| {
            sent.get_all(k)
                .iter()
                .map(|v| v.to_str().unwrap_or("?").to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("x-list"), vec!["a,b"]);
        assert_eq!(get("x-new"), vec!["n"]);
        assert!(get("x-gone").is_empty());
        assert_eq!(get("x-request-id"), vec!["0123456789abcdef"]);
    }

    /// Every line of `name` in `wire` (an HTTP/1 header block), its value after the colon.
    fn lines_of(wire: &[u8], name: &str) -> Vec<String> {
        String::from_utf8_lossy(wire)
            .split("\r\n")
            .filter_map(|line| line.split_once(": "))
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_string())
            .collect()
    }

    /// A request that holds forwarding headers or a request id of its own when the upstream
    /// request is made (a trusted proxy's, or set by the route's header settings) sends ours
    /// alone: each name once, with our value, on the wire and converted for HTTP/2 alike.
    #[test]
    fn a_forged_forwarding_header_never_reaches_the_upstream_beside_ours() {
        let route = compiled(
            PathMatch::Any,
            RouteOptions {
                set_request_headers: [("X-Forwarded-Proto".into(), "gopher".into())].into(),
                ..Default::default()
            },
        );
        let authority = http::HeaderValue::from_static("backend:8080");
        let id = b"0123456789abcdef";
        let mut req = RequestHeader::build("GET", b"/", None).unwrap_or_else(|e| panic!("{e}"));
        for (k, v) in [
            ("Host", "a.test"),
            ("X-Forwarded-Host", "evil.test"),
            ("x-request-id", "chosen-by-client"),
            ("X-Forwarded-For", "203.0.113.1"),
            ("x-forwarded-proto", "https"),
        ] {
            req.append_header(k, v).unwrap_or_else(|e| panic!("{e}"));
        }
        let client = req.clone();
        let fwd = Forwarding {
            client: &client,
            upstream_authority: &authority,
            client_ip: "10.0.0.1".parse().ok(),
            insecure: true,
            request_id: id,
        };
        prepare_request(&route, &mut req, &[], &fwd).unwrap_or_else(|e| panic!("{e}"));
        let mut wire = vec![];
        req.header_to_h1_wire(&mut wire);
        let parts = req.as_owned_parts().headers;
        for (name, ours) in [
            ("x-forwarded-host", "a.test"),
            ("x-request-id", "0123456789abcdef"),
            ("x-forwarded-for", "203.0.113.1, 10.0.0.1"),
            ("x-forwarded-proto", "http"),
            ("host", "backend:8080"),
        ] {
            assert_eq!(lines_of(&wire, name), [ours], "{name} on the wire");
            let converted: Vec<_> = parts.get_all(name).iter().collect();
            assert_eq!(converted, [ours], "{name} converted");
        }

        // Without a client address, and without a `Host` the client sent: no X-Forwarded-For
        // is made and the one the request holds goes as it is (a trusted proxy's), and no
        // X-Forwarded-Host goes at all.
        let mut req = RequestHeader::build("GET", b"/", None).unwrap_or_else(|e| panic!("{e}"));
        req.append_header("X-Forwarded-Host", "evil.test")
            .unwrap_or_else(|e| panic!("{e}"));
        req.append_header("X-Forwarded-For", "203.0.113.1")
            .unwrap_or_else(|e| panic!("{e}"));
        let client = req.clone();
        let fwd = Forwarding {
            client: &client,
            client_ip: None,
            ..fwd
        };
        prepare_request(&route, &mut req, &[], &fwd).unwrap_or_else(|e| panic!("{e}"));
        let mut wire = vec![];
        req.header_to_h1_wire(&mut wire);
        assert!(lines_of(&wire, "x-forwarded-host").is_empty());
        assert_eq!(lines_of(&wire, "x-forwarded-for"), ["203.0.113.1"]);

        // An HTTP/2 request names its host in the URI's authority alone: that goes as
        // X-Forwarded-Host, and the upstream request is sent in origin form with the backend's
        // `Host`. A client's `Host` that is not text is not forwarded.
        let cases: [(_, _, &[&str]); 2] = [
            ("https://b.test:8443/x", None, &["b.test:8443"]),
            ("/x", Some(&b"b\xfftest"[..]), &[]),
        ];
        for (uri, client_host, expected) in cases {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap_or_else(|e| panic!("{e}"));
            req.set_uri(http::Uri::from_static(uri));
            if let Some(h) = client_host {
                let h = http::HeaderValue::from_bytes(h).unwrap_or_else(|e| panic!("{e}"));
                req.insert_header(http::header::HOST, h)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            let client = req.clone();
            let fwd = Forwarding {
                client: &client,
                ..fwd
            };
            prepare_request(&route, &mut req, &[], &fwd).unwrap_or_else(|e| panic!("{e}"));
            let mut wire = vec![];
            req.header_to_h1_wire(&mut wire);
            let forwarded = lines_of(&wire, "x-forwarded-host");
            assert_eq!(forwarded, expected, "{client_host:?}");
            assert_eq!(lines_of(&wire, "host"), ["backend:8080"]);
            assert_eq!(req.uri, "/x");
        }
    }

    /// The response headers set on every response (Pomerium's defaults, say) and the request
    /// id replace what the upstream sent under their names: each goes out once, ours, however
    /// the route's settings combine with the global ones, and whether they go out as lines
    /// written ahead or through the header map.
    #[test]
    fn an_upstreams_security_headers_give_way_to_ours() {
        let fields = HeaderFields::new([
            ("X-Frame-Options", "SAMEORIGIN"),
            ("X-XSS-Protection", "1; mode=block"),
        ]);
        let written_ahead = ResponseHeaders::new(fields.clone());
        assert!(written_ahead.lines.is_some());
        let mut through_the_map = ResponseHeaders::new(fields);
        through_the_map.lines = None;
        for global in [&written_ahead, &through_the_map] {
            security_headers_give_way(global);
        }
        // Each way was the one taken: the lines written ahead and the request id outside the
        // map, or all of them in it.
        let id = b"0123456789abcdef";
        for (global, outside) in [(&written_ahead, 3), (&through_the_map, 0)] {
            let mut resp = security_headers_upstream();
            prepare_response(None, global, &mut resp, id).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(resp.unindexed_headers().count(), outside);
        }
        // A global header Pingora manages (here the connection's) stays in the map, where
        // Pingora replaces or removes it as the connection needs, and never goes out twice.
        let managed = ResponseHeaders::new(HeaderFields::new([
            ("Connection", "close"),
            ("X-Frame-Options", "DENY"),
        ]));
        assert!(managed.lines.is_none());
        let id = b"0123456789abcdef";
        let mut resp = security_headers_upstream();
        resp.append_header("Connection", "keep-alive")
            .unwrap_or_else(|e| panic!("{e}"));
        prepare_response(None, &managed, &mut resp, id).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.unindexed_headers().count(), 0);
        assert_eq!(
            resp.headers
                .get_all("connection")
                .iter()
                .collect::<Vec<_>>(),
            ["close"]
        );
        assert_eq!(resp.headers["x-frame-options"], "DENY");
        assert_eq!(resp.headers["x-request-id"], "0123456789abcdef");
        // A global setting of X-Request-Id itself gives way to the request id.
        let own_id = ResponseHeaders::new(HeaderFields::new([("X-Request-Id", "fixed")]));
        assert!(own_id.lines.is_none());
        let mut resp = security_headers_upstream();
        prepare_response(None, &own_id, &mut resp, id).unwrap_or_else(|e| panic!("{e}"));
        let mut wire = vec![];
        resp.header_to_h1_wire(&mut wire);
        assert_eq!(lines_of(&wire, "x-request-id"), ["0123456789abcdef"]);
    }

    /// The upstream's headers of our names give way, whichever one of ours it sent alone and in
    /// any spelling (each found by the pass that compares only names of our lengths), and the
    /// others stay as the upstream sent them, those of the length of one of ours too
    /// (`Content-Type` and `X-Request-Id`).
    #[test]
    fn only_our_names_are_taken_from_the_upstreams_response() {
        let global = ResponseHeaders::new(HeaderFields::new([("X-Frame-Options", "SAMEORIGIN")]));
        assert!(global.lines.is_some());
        let ours = [
            ("x-frame-options", "SAMEORIGIN"),
            ("x-request-id", "0123456789abcdef"),
        ];
        let upstreams: [&[(&str, &str)]; 3] = [
            &[
                ("Content-Type", "text/plain"),
                ("X-Frame-Optionz", "a"),
                ("X-FRAME-OPTIONS", "b"),
                ("Cache-Control", "c"),
            ],
            &[("Content-Length", "0"), ("X-Request-ID", "upstream's")],
            &[("x-frame-options", "DENY")],
        ];
        for sent in upstreams {
            let mut resp = upstream_response(sent);
            prepare_response(None, &global, &mut resp, b"0123456789abcdef")
                .unwrap_or_else(|e| panic!("{e}"));
            let mut wire = vec![];
            resp.header_to_h1_wire(&mut wire);
            for (name, value) in ours {
                assert_eq!(lines_of(&wire, name), [value], "{name} after {sent:?}");
            }
            for (name, value) in sent {
                if !ours.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                    assert_eq!(lines_of(&wire, name), [*value], "{name}");
                }
            }
        }
    }

    /// A response as the upstream sends it, with these headers.
    fn upstream_response(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut resp = ResponseHeader::build(200, None).unwrap_or_else(|e| panic!("{e}"));
        for (k, v) in headers {
            resp.append_header(k.to_string(), *v)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        resp
    }

    /// A response as the upstream sends it, with its own security header and request id.
    fn security_headers_upstream() -> ResponseHeader {
        upstream_response(&[
            ("Server", "up"),
            ("X-Frame-Options", "ALLOWALL"),
            ("x-request-id", "upstream's"),
            ("Content-Length", "0"),
        ])
    }

    fn security_headers_give_way(global: &ResponseHeaders) {
        let id = b"0123456789abcdef";
        let sent = |route: Option<&CompiledRoute>| {
            let mut resp = security_headers_upstream();
            prepare_response(route, global, &mut resp, id).unwrap_or_else(|e| panic!("{e}"));
            let mut wire = vec![];
            resp.header_to_h1_wire(&mut wire);
            let parts = resp.as_owned_parts().headers;
            let get = |name: &str| {
                let on_wire = lines_of(&wire, name);
                let converted: Vec<_> = parts
                    .get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap_or("?").to_string())
                    .collect();
                assert_eq!(on_wire, converted, "{name}");
                on_wire
            };
            (
                get("x-frame-options"),
                get("x-xss-protection"),
                get("x-request-id"),
                get("server"),
            )
        };
        let plain = compiled(PathMatch::Any, RouteOptions::default());
        for route in [None, Some(&*plain)] {
            let (frame, xss, rid, server) = sent(route);
            assert_eq!(frame, ["SAMEORIGIN"]);
            assert_eq!(xss, ["1; mode=block"]);
            assert_eq!(rid, ["0123456789abcdef"]);
            assert_eq!(server, ["up"]);
        }
        // A route that sets a global one again: the route's value.
        let again = compiled(
            PathMatch::Any,
            RouteOptions {
                set_response_headers: [("x-frame-options".into(), "DENY".into())].into(),
                ..Default::default()
            },
        );
        let (frame, xss, rid, _) = sent(Some(&again));
        assert_eq!(
            (frame, xss, rid),
            (
                vec!["DENY".to_string()],
                vec!["1; mode=block".to_string()],
                vec!["0123456789abcdef".to_string()]
            )
        );
        // `disable`: none of the set headers, the upstream's own left alone; the request id still.
        let disabled = compiled(
            PathMatch::Any,
            RouteOptions {
                set_response_headers: [(crate::config::DISABLE_HEADERS.into(), "true".into())]
                    .into(),
                ..Default::default()
            },
        );
        let (frame, xss, rid, _) = sent(Some(&disabled));
        assert_eq!(frame, ["ALLOWALL"]);
        assert!(xss.is_empty());
        assert_eq!(rid, ["0123456789abcdef"]);
    }
}
