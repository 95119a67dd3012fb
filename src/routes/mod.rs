//! The compiled, immutable route table the proxy reads on every request.
//!
//! Hosts are looked up in hash maps (exact names, then wildcards by the suffix after the first
//! label), so lookup cost does not grow with the number of routes. Within a host, routes are
//! tried in Ingress precedence: exact paths (a hash lookup), then regular expressions in the
//! order they were defined, then prefixes longest first (a route without a path is the prefix
//! `/`), ties kept in definition order.

pub mod balance;
pub mod sink;

pub use sink::{Global, Layer, Published, RouteSink, Snapshot};

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use balance::{Balancer, Candidate, EndpointState, Tried};

use crate::config::balancing::LbPolicy;
use crate::config::{HostPattern, PathMatch, Route, Upstream};

/// An upstream with the address it resolved to when the table was built.
#[derive(Debug, Clone)]
pub struct Backend {
    pub upstream: Upstream,
    /// `None` when its name did not resolve: requests get a 502.
    pub addr: Option<SocketAddr>,
    /// Health and requests in flight, kept across table rebuilds.
    pub state: Arc<EndpointState>,
    /// Its connection pool: the route's, or one of its own when it has TLS settings of its
    /// own (see [`CompiledRoute::pool_key`]).
    pub pool_key: u64,
    /// The CA certificates an https upstream must chain to (its own, else the route's
    /// `tls_custom_ca`), parsed once here rather than per request; `None`: the system's
    /// roots. A certificate that cannot be parsed leaves the list empty, so that nothing is
    /// trusted (and the upstream is never reached with less verification than asked).
    pub ca: Option<CaList>,
    /// `host[:port]` of the upstream as the `Host` header sends it, made once here.
    pub authority: http::HeaderValue,
}

/// Header fields to set, converted to names and values once when the table is built instead of
/// parsed from text on every request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderFields(pub Vec<(pingora::http::CasedHeaderName, http::HeaderValue)>);

impl HeaderFields {
    /// The fields of `pairs`, each name spelled on the wire as Pingora writes a `HeaderName`
    /// (as the response headers always were). Names and values were checked when the
    /// configuration was read (`config::route::header_problem`); one that still does not
    /// convert is left out and said at error level.
    pub fn new<K: AsRef<str>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> HeaderFields {
        Self::convert(pairs, false, |name| {
            http::HeaderName::from_bytes(name.as_bytes())
                .ok()
                .map(Into::into)
        })
    }

    /// [`HeaderFields::new`], each name spelled on the wire exactly as `pairs` writes it (as the
    /// request headers always were).
    pub fn as_written<K: AsRef<str>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> HeaderFields {
        Self::convert(pairs, false, cased)
    }

    /// [`HeaderFields::as_written`] for values from Secrets: each value is marked sensitive, so
    /// that it is never printed (`Debug` shows `Sensitive`) nor indexed by HTTP/2's HPACK.
    pub fn secret<K: AsRef<str>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> HeaderFields {
        Self::convert(pairs, true, cased)
    }

    fn convert<K: AsRef<str>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (K, V)>,
        sensitive: bool,
        name: impl Fn(&str) -> Option<pingora::http::CasedHeaderName>,
    ) -> HeaderFields {
        let fields = pairs.into_iter().filter_map(|(n, value)| {
            let n = n.as_ref();
            match (name(n), header_value(value.as_ref())) {
                (Some(n), Ok(mut v)) => {
                    v.set_sensitive(sensitive);
                    Some((n, v))
                }
                _ => {
                    tracing::error!(header = n, "a header to set cannot be sent: left out");
                    None
                }
            }
        });
        HeaderFields(fields.collect())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether these fields and `X-Request-Id` can all go after a response's own headers,
    /// outside Pingora's header map (`proxy::upstream::prepare_response`): no two share a name
    /// (then each can be set without looking for the others), and Pingora manages none of them
    /// after the filters. It depends only on the configuration, so it is worked out once.
    pub fn appendable(&self) -> bool {
        let request_id = http::HeaderName::from_static("x-request-id");
        self.0.iter().enumerate().all(|(i, (a, _))| {
            *a.name() != request_id
                && !is_pingora_managed(a.name())
                && self.0[i + 1..].iter().all(|(b, _)| a.name() != b.name())
        })
    }
}

/// The headers every proxied response gets (`set_response_headers`, or Pomerium's defaults),
/// made ready once per configuration.
#[derive(Debug, Default, PartialEq)]
pub struct ResponseHeaders {
    pub fields: HeaderFields,
    /// When the fields may go after a response's own headers, outside Pingora's header map
    /// ([`HeaderFields::appendable`]): their HTTP/1 lines, written here once and added to each
    /// response with one copy (`proxy::upstream::prepare_response`).
    pub lines: Option<pingora::http::PreparedLines>,
    /// The lengths of the fields' names: a response header whose name has none of them is
    /// none of the fields (`proxy::upstream::prepare_response` compares only the others). Made
    /// from `fields` by [`ResponseHeaders::new`], and private so that nothing else sets it.
    name_lengths: NameLengths,
}

impl ResponseHeaders {
    /// No fields: the global response headers of a response without a route.
    pub const EMPTY: ResponseHeaders = ResponseHeaders {
        fields: HeaderFields(Vec::new()),
        lines: None,
        name_lengths: NameLengths::NONE,
    };

    /// See the field.
    pub fn name_lengths(&self) -> NameLengths {
        self.name_lengths
    }

    pub fn new(fields: HeaderFields) -> ResponseHeaders {
        let lines = fields
            .appendable()
            .then(|| pingora::http::PreparedLines::new(fields.0.iter().map(|(k, v)| (k, v))));
        let name_lengths = fields
            .0
            .iter()
            .fold(NameLengths::NONE, |set, (k, _)| set.with(k.name()));
        ResponseHeaders {
            fields,
            lines,
            name_lengths,
        }
    }
}

/// A set of header names' lengths, a bit each (lengths from 63 up share the last bit). A name
/// whose length is not in the set is none of the names the set was made of, so a search for
/// those names needs to compare only the few others: one test of a bit instead of a comparison
/// with each name.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NameLengths(u64);

impl NameLengths {
    pub const NONE: NameLengths = NameLengths(0);
    /// `X-Request-Id`'s, which a response's search for our names always includes.
    pub const X_REQUEST_ID: NameLengths = NameLengths(1 << "x-request-id".len());

    fn bit(name: &http::HeaderName) -> u64 {
        1 << name.as_str().len().min(63)
    }

    /// The set with the length of `name` added.
    pub fn with(self, name: &http::HeaderName) -> NameLengths {
        NameLengths(self.0 | Self::bit(name))
    }

    /// The lengths of both sets.
    pub fn union(self, other: NameLengths) -> NameLengths {
        NameLengths(self.0 | other.0)
    }

    /// Whether `name` may be one of the names the set was made of.
    pub fn may_hold(self, name: &http::HeaderName) -> bool {
        self.0 & Self::bit(name) != 0
    }
}

/// Whether Pingora reads or sets a response header of this name itself after the filters (the
/// message's framing, the connection's fields, `Date`, what compression changes): a header of
/// such a name stays in the map, where Pingora sees it.
fn is_pingora_managed(name: &http::HeaderName) -> bool {
    use http::header::{CONTENT_ENCODING, DATE, VARY};
    [DATE, CONTENT_ENCODING, VARY].contains(name)
        || crate::guard::headers::FRAMING_HEADERS.contains(&name.as_str())
}

/// `bytes` as a header value. The default response headers' values (which every response
/// gets unless the configuration says otherwise) are kept as static text: a copy of one made
/// for a response is then a pointer, where a value built at run time is a shared buffer whose
/// count every response takes up and down.
fn header_value(bytes: &[u8]) -> Result<http::HeaderValue, http::header::InvalidHeaderValue> {
    let defaults = crate::config::DEFAULT_RESPONSE_HEADERS
        .into_iter()
        .chain([crate::config::DEFAULT_HSTS]);
    match defaults.map(|(_, v)| v).find(|v| v.as_bytes() == bytes) {
        Some(v) => Ok(http::HeaderValue::from_static(v)),
        None => http::HeaderValue::from_bytes(bytes),
    }
}

/// `name` spelled on the wire as it is written.
fn cased(name: &str) -> Option<pingora::http::CasedHeaderName> {
    pingora::http::CasedHeaderName::new(name.to_owned()).ok()
}

/// Header names to remove, parsed once. A name that is not one (the configuration was checked
/// when it was read, so none should be) cannot be on any message and is left out.
fn header_names(names: &[String]) -> Vec<http::HeaderName> {
    names
        .iter()
        .filter_map(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
        .collect()
}

/// A route's header options, converted once when the table is built (names parsed, values
/// checked, Secrets' values marked sensitive) instead of on every request.
#[derive(Debug, Default)]
pub struct HeaderOptions {
    /// `set_request_headers`.
    pub set_request: HeaderFields,
    /// `add_request_headers`: each value goes after the values the request has.
    pub add_request: HeaderFields,
    /// `set_request_headers_secret`.
    pub secret_request: HeaderFields,
    /// `remove_request_headers`.
    pub remove_request: Vec<http::HeaderName>,
    /// `set_response_headers`; `None` when it holds `disable` (then no header is set that
    /// way, the global ones included).
    pub set_response: Option<HeaderFields>,
    /// `add_response_headers`.
    pub add_response: HeaderFields,
    /// `set_response_headers_secret`.
    pub secret_response: HeaderFields,
    /// `remove_response_headers`.
    pub remove_response: Vec<http::HeaderName>,
    /// `rewrite_response_headers`, each with its header's name.
    pub rewrite_response: Vec<(pingora::http::CasedHeaderName, crate::config::RewriteHeader)>,
}

impl HeaderOptions {
    fn new(opts: &crate::config::RouteOptions) -> HeaderOptions {
        HeaderOptions {
            set_request: HeaderFields::as_written(&opts.set_request_headers),
            add_request: HeaderFields::as_written(
                opts.add_request_headers.iter().map(|(k, v)| (k, v)),
            ),
            secret_request: HeaderFields::secret(&opts.secret_request_headers),
            remove_request: header_names(&opts.remove_request_headers),
            set_response: (!opts
                .set_response_headers
                .contains_key(crate::config::DISABLE_HEADERS))
            .then(|| HeaderFields::new(&opts.set_response_headers)),
            add_response: HeaderFields::as_written(
                opts.add_response_headers.iter().map(|(k, v)| (k, v)),
            ),
            secret_response: HeaderFields::secret(&opts.secret_response_headers),
            remove_response: header_names(&opts.remove_response_headers),
            rewrite_response: opts
                .rewrite_response_headers
                .iter()
                .filter_map(|rw| cased(&rw.header).map(|name| (name, rw.clone())))
                .collect(),
        }
    }

    /// Whether the route sets or adds any request header: only these settings can put a header
    /// on an upstream request that the client's request (cleaned of identity headers) did not
    /// carry.
    pub fn sets_request_headers(&self) -> bool {
        !(self.set_request.is_empty()
            && self.add_request.is_empty()
            && self.secret_request.is_empty())
    }

    /// Whether the route sets, adds or removes any request header: a header of the upstream
    /// request may then differ from the client's.
    pub fn changes_request_headers(&self) -> bool {
        self.sets_request_headers() || !self.remove_request.is_empty()
    }
}

/// The `Host` value for `upstream`; an authority that is no valid header value (it was parsed
/// as a URL, so none should be) sends its bare host name.
fn authority_value(upstream: &Upstream) -> http::HeaderValue {
    http::HeaderValue::from_str(&upstream.authority()).unwrap_or_else(|_| {
        tracing::error!(upstream = %upstream.url, "the upstream's authority is no valid Host value: its host name alone is sent");
        http::HeaderValue::from_str(upstream.host())
            .unwrap_or_else(|_| http::HeaderValue::from_static("invalid"))
    })
}

/// CA certificates as Pingora holds them.
pub type CaList = Arc<[pingora::utils::tls::WrappedX509]>;

/// DER certificates as Pingora holds them; empty when any cannot be parsed.
pub fn pingora_cas(ders: &[Vec<u8>]) -> CaList {
    use x509_parser_pingora::prelude::{FromDer, X509Certificate};
    let parsed: Result<Vec<_>, _> = ders
        .iter()
        .map(|der| {
            pingora::utils::tls::WrappedX509::try_new(der.clone(), |raw| {
                X509Certificate::from_der(raw).map(|(_, c)| c)
            })
        })
        .collect();
    match parsed {
        Ok(certs) => Arc::from(certs.into_boxed_slice()),
        Err(e) => {
            tracing::error!(error = %e, "a CA certificate of an upstream cannot be parsed: the upstream's certificate is not trusted");
            Arc::from(Vec::new().into_boxed_slice())
        }
    }
}

/// A route ready to serve.
#[derive(Debug)]
pub struct CompiledRoute {
    /// Shared with the layer the route was published in (the sink keeps each layer's routes
    /// to see what changed): one copy of each route, not two.
    pub route: Arc<Route>,
    pub backends: Vec<Backend>,
    /// Keeps upstream connections of routes with different trust settings (a custom CA, a
    /// client certificate) in separate pools: a connection verified against one CA, or opened
    /// as one client, is never reused by a route that trusts another or is another.
    pub pool_key: u64,
    /// The route's client certificate for https upstreams, prepared once.
    pub client_cert: Option<Arc<pingora::utils::tls::CertKey>>,
    /// The CAs client certificates must chain to (`tls_downstream_client_ca`): `Some(None)`
    /// when they were configured but cannot be used, and then every request is refused.
    pub client_ca: Option<Option<crate::tls::ClientCaVerifier>>,
    /// The load-balancing policy and health handling.
    pub balancer: Balancer,
    /// The route's metric series, resolved on first use.
    pub metrics: crate::metrics::RouteMetrics,
    /// The route's header options, converted once.
    pub headers: HeaderOptions,
    /// The headers every proxied response gets (the global `set_response_headers`) in the
    /// configuration this table was compiled with: a request reads them through its route,
    /// which it holds anyway, instead of taking a reference of its own.
    pub global_response_headers: Arc<ResponseHeaders>,
    next: AtomicUsize,
    /// The sum of the backends' weights, and a step coprime with it that interleaves them.
    total_weight: u32,
    stride: u64,
}

impl CompiledRoute {
    /// The backend for the next attempt of a request, by the route's policy, skipping
    /// backends already `tried` and unhealthy ones (see [`Balancer::pick`]); `key` keeps a
    /// user on one backend for sticky policies. `None` when the route has no backend (503).
    pub fn pick_backend(&self, tried: Tried, key: Option<&[u8]>) -> Option<(usize, &Backend)> {
        if self.backends.is_empty() {
            return None;
        }
        if tried == Tried::default()
            && !self.balancer.tracks_health
            && self.balancer.policy == LbPolicy::RoundRobin
        {
            let i = self.round_robin();
            return Some((i, &self.backends[i]));
        }
        let candidates = self.candidates();
        let i = self
            .balancer
            .pick(&candidates, tried, key, || self.round_robin())?;
        Some((i, &self.backends[i]))
    }

    /// The backends as the balancer sees them.
    pub fn candidates(&self) -> Vec<Candidate<'_>> {
        self.backends
            .iter()
            .map(|b| Candidate {
                weight: b.upstream.weight,
                addr: b.addr,
                state: &b.state,
            })
            .collect()
    }

    /// Count a backend's answer towards passive health (`outlier_detection`).
    pub fn record(&self, backend: usize, status: u16) {
        if self.balancer.outlier.is_none() {
            return;
        }
        if let Some(b) = self.backends.get(backend) {
            self.balancer.record(&b.state, status, &self.candidates());
        }
    }

    /// The index of the next backend in weighted round-robin order (equal weights: plain
    /// round robin).
    fn round_robin(&self) -> usize {
        let len = self.backends.len();
        // One backend: always it, without taking the shared counter (an atomic operation that
        // every request of the route would take).
        if len <= 1 {
            return 0;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if self.total_weight as usize == len {
            return n % len;
        }
        // Spread each cycle of `total_weight` picks: the k-th pick of a cycle goes to the
        // backend whose cumulative weight range holds (k × a stride coprime with the total).
        let total = u64::from(self.total_weight);
        let mut slot = (n as u64 % total) * self.stride % total;
        for (i, b) in self.backends.iter().enumerate() {
            let w = u64::from(b.upstream.weight);
            if slot < w {
                return i;
            }
            slot -= w;
        }
        len - 1
    }
}

/// A step near the golden ratio of `total` that shares no factor with it, so that stepping
/// through `0..total` by it visits every slot once and spreads neighbours apart.
fn coprime_stride(total: u64) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    if total <= 2 {
        return 1;
    }
    let mut s = (total * 618 / 1000).max(1);
    while gcd(s, total) != 1 {
        s += 1;
    }
    s
}

/// The maps every request looks a host and a path up in. Only the configuration puts keys in
/// them (a request only looks up), so no client can fill them with colliding keys: a fast hash
/// seeded at random once per process does, where SipHash cost some 300 instructions a request.
type LookupMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct HostRoutes {
    /// Routes by exact path; several only when their request conditions differ, the most
    /// specific first (then in definition order).
    exact: LookupMap<Vec<Arc<CompiledRoute>>>,
    /// Regexes by `regex_priority_order` (highest first, unset last), else in definition
    /// order; then prefixes longest first; among equal paths the most specific request
    /// conditions first.
    ordered: Vec<Arc<CompiledRoute>>,
}

/// What of a request besides host, port and path a route may match on (a Gateway API route's
/// method, header and query parameter matches).
#[derive(Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub headers: &'a http::HeaderMap,
    /// The query without `?`.
    pub query: Option<&'a str>,
}

impl CompiledRoute {
    fn accepts(&self, port: u16, facts: &RequestFacts) -> bool {
        let m = &self.route.options.request_match;
        self.route.port.is_none_or(|p| p == port)
            && (m.is_empty() || m.matches(facts.method, facts.headers, facts.query))
    }
}

impl HostRoutes {
    fn find(&self, path: &str, port: u16, facts: &RequestFacts) -> Option<&Arc<CompiledRoute>> {
        if let Some(r) = self
            .exact
            .get(path)
            .and_then(|rs| rs.iter().find(|r| r.accepts(port, facts)))
        {
            return Some(r);
        }
        self.ordered
            .iter()
            .find(|r| r.route.path.matches(path) && r.accepts(port, facts))
    }
}

/// All routes, compiled.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: LookupMap<HostRoutes>,
    wildcard: LookupMap<HostRoutes>,
    /// Routes for every host (Ingress rules without a host, default backends): tried last.
    any: HostRoutes,
    /// Every route in definition order (for listings and metrics).
    pub routes: Vec<Arc<CompiledRoute>>,
}

impl RouteTable {
    /// Compile routes. `resolve` gives the address of an upstream host and port (names must have
    /// been resolved beforehand: the proxy never resolves names on the request path).
    pub fn compile(
        routes: Vec<Route>,
        resolve: &dyn Fn(&str, u16) -> Option<SocketAddr>,
    ) -> RouteTable {
        RouteTable::compile_after(
            routes.into_iter().map(Arc::new).collect(),
            resolve,
            None,
            &Arc::default(),
        )
    }

    /// The same, keeping the health state of backends `previous` had (same route name, URL
    /// and address); every route's responses get `response_headers` (the global
    /// `set_response_headers`; `compile` gives none).
    pub fn compile_after(
        routes: Vec<Arc<Route>>,
        resolve: &dyn Fn(&str, u16) -> Option<SocketAddr>,
        previous: Option<&RouteTable>,
        response_headers: &Arc<ResponseHeaders>,
    ) -> RouteTable {
        let mut kept: HashMap<(&str, &url::Url, Option<SocketAddr>), &Arc<EndpointState>> =
            HashMap::new();
        // Only state that selection reads is worth carrying: health, and requests in flight
        // for LEAST_REQUEST.
        for r in previous
            .into_iter()
            .flat_map(|t| &t.routes)
            .filter(|r| r.balancer.tracks_health || r.balancer.counts_in_flight())
        {
            for b in &r.backends {
                kept.insert((r.route.name.as_str(), &b.upstream.url, b.addr), &b.state);
            }
        }
        let mut table = RouteTable::default();
        for route in routes {
            // Connections are pooled per trust and identity: a route never reuses a connection
            // opened with another route's CA or client certificate.
            let opts = &route.options;
            let pool_key = if opts.tls_custom_ca.is_none() && opts.tls_client_cert.is_none() {
                0
            } else {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                opts.tls_custom_ca.hash(&mut h);
                opts.tls_client_cert
                    .as_ref()
                    .map(|c| c.digest())
                    .hash(&mut h);
                h.finish()
            };
            let route_ca = opts.tls_custom_ca.as_deref().map(pingora_cas);
            // The endpoints of one backend share its TLS settings: their pool key and parsed
            // CA are worked out once per settings, not once per endpoint.
            let mut own_tls: Vec<(Arc<crate::config::UpstreamTls>, u64, Option<CaList>)> =
                Vec::new();
            let backends: Vec<Backend> = route
                .to
                .iter()
                .map(|u| {
                    let addr = resolve(u.host(), u.port());
                    let state = kept
                        .get(&(route.name.as_str(), &u.url, addr))
                        .map(|s| (*s).clone())
                        .unwrap_or_default();
                    // An upstream with a CA of its own gets a pool of its own as well.
                    let (pool_key, ca) = match &u.backend_tls {
                        None => (pool_key, route_ca.clone()),
                        Some(tls) => match own_tls.iter().find(|(t, ..)| Arc::ptr_eq(t, tls)) {
                            Some((_, key, ca)) => (*key, ca.clone()),
                            None => {
                                let mut h = std::collections::hash_map::DefaultHasher::new();
                                (pool_key, tls).hash(&mut h);
                                let found = (h.finish(), tls.ca.as_deref().map(pingora_cas));
                                own_tls.push((tls.clone(), found.0, found.1.clone()));
                                found
                            }
                        },
                    };
                    Backend {
                        addr,
                        authority: authority_value(u),
                        upstream: u.clone(),
                        state,
                        pool_key,
                        ca,
                    }
                })
                .collect();
            let client_cert = opts.tls_client_cert.as_ref().map(|c| {
                Arc::new(pingora::utils::tls::CertKey::new(
                    c.chain.clone(),
                    c.key_der().to_vec(),
                ))
            });
            let total_weight = backends
                .iter()
                .map(|b| b.upstream.weight)
                .sum::<u32>()
                .max(1);
            let client_ca = opts.tls_downstream_client_ca.as_ref().map(|cas| {
                crate::tls::client_ca_verifier(cas)
                    .inspect_err(|e| tracing::error!(error = %e, "client CA of a route cannot be used; its requests are refused"))
                    .ok()
            });
            let upstreams: Vec<(Option<SocketAddr>, u32)> = backends
                .iter()
                .map(|b| (b.addr, b.upstream.weight))
                .collect();
            let balancer = Balancer::new(
                opts.load_balancing_policy,
                opts.outlier_detection.clone(),
                opts.health_check.is_some(),
                opts.healthy_panic_threshold,
                &upstreams,
            );
            let headers = HeaderOptions::new(opts);
            let compiled = Arc::new(CompiledRoute {
                balancer,
                metrics: Default::default(),
                headers,
                global_response_headers: response_headers.clone(),
                route,
                client_ca,
                backends,
                pool_key,
                client_cert,
                total_weight,
                stride: coprime_stride(u64::from(total_weight)),
                next: AtomicUsize::new(0),
            });
            table.routes.push(compiled.clone());
            let host_routes = match &compiled.route.host {
                HostPattern::Exact(h) => table.exact.entry(h.clone()).or_default(),
                HostPattern::Wildcard(s) => table.wildcard.entry(s.clone()).or_default(),
                HostPattern::Any => &mut table.any,
            };
            match &compiled.route.path {
                PathMatch::Exact(p) => host_routes
                    .exact
                    .entry(p.clone())
                    .or_default()
                    .push(compiled),
                _ => host_routes.ordered.push(compiled),
            }
        }
        for hr in table
            .exact
            .values_mut()
            .chain(table.wildcard.values_mut())
            .chain(std::iter::once(&mut table.any))
        {
            // Stable sort: definition order is kept among equals.
            // Regexes with a `regex_priority_order` first, highest first, then the other
            // regexes, then prefixes longest first.
            // Within equal paths, the more specific request conditions first.
            let specific = |r: &Arc<CompiledRoute>| {
                std::cmp::Reverse(r.route.options.request_match.precedence())
            };
            hr.ordered.sort_by_key(|r| {
                let path = match &r.route.path {
                    PathMatch::Regex(_) => match r.route.options.regex_priority_order {
                        Some(order) => (0, std::cmp::Reverse(order), 0),
                        None => (1, std::cmp::Reverse(0), 0),
                    },
                    PathMatch::Prefix(p) => (2, std::cmp::Reverse(0), usize::MAX - p.len()),
                    PathMatch::Any | PathMatch::Exact(_) => (2, std::cmp::Reverse(0), usize::MAX),
                };
                (path, specific(r))
            });
            for routes in hr.exact.values_mut() {
                routes.sort_by_key(specific);
            }
        }
        table
    }

    /// The route for a request: `host` lower case without port, `port` the port the client
    /// addressed, `path` without the query. The host's own routes first, then its wildcard's,
    /// then the routes for every host.
    /// Routes with request conditions (method, headers, query) are skipped: see
    /// [`RouteTable::lookup_request`].
    pub fn lookup(&self, host: &str, port: u16, path: &str) -> Option<&Arc<CompiledRoute>> {
        let none = http::HeaderMap::new();
        let facts = RequestFacts {
            method: "",
            headers: &none,
            query: None,
        };
        self.lookup_request(host, port, path, &facts)
    }

    /// The route for a request, its method, headers and query included.
    pub fn lookup_request(
        &self,
        host: &str,
        port: u16,
        path: &str,
        facts: &RequestFacts,
    ) -> Option<&Arc<CompiledRoute>> {
        if let Some(r) = self
            .exact
            .get(host)
            .and_then(|hr| hr.find(path, port, facts))
        {
            return Some(r);
        }
        if let Some((_, suffix)) = host.split_once('.')
            && let Some(r) = self
                .wildcard
                .get(suffix)
                .and_then(|hr| hr.find(path, port, facts))
        {
            return Some(r);
        }
        self.any.find(path, port, facts)
    }

    /// Whether an exact or wildcard route (not a route for every host) serves `host` on
    /// `port`: the hosts sessions may be handed to.
    pub fn serves_named_host(&self, host: &str, port: u16) -> bool {
        let on_port = |hr: &HostRoutes| {
            hr.exact
                .values()
                .flatten()
                .chain(&hr.ordered)
                .any(|r| r.route.port.is_none_or(|p| p == port))
        };
        self.exact.get(host).is_some_and(on_port)
            || host
                .split_once('.')
                .and_then(|(_, s)| self.wildcard.get(s))
                .is_some_and(on_port)
    }

    /// Whether any route serves this host (to tell "unknown host" from "no path matched").
    pub fn has_host(&self, host: &str) -> bool {
        !self.any.ordered.is_empty()
            || !self.any.exact.is_empty()
            || self.exact.contains_key(host)
            || host
                .split_once('.')
                .is_some_and(|(_, s)| self.wildcard.contains_key(s))
    }
}

/// Routes for tests: built in code rather than parsed from YAML.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::config::{HostPattern, PathMatch, Route, RouteOptions, Upstream};
    use crate::ppl::Policy;

    /// A deny-all route for every path of `host`, to `http://127.0.0.1:1`.
    pub fn route(name: &str, host: &str) -> Route {
        Route {
            name: name.to_string(),
            scheme: "https".into(),
            host: HostPattern::parse(host).unwrap(),
            port: None,
            path: PathMatch::Any,
            to: vec![Upstream::new(
                url::Url::parse("http://127.0.0.1:1").unwrap(),
            )],
            policy: Policy::deny_all(),
            options: RouteOptions::default().shared(),
            origin: "test".into(),
        }
    }

    /// The same with a path match.
    pub fn route_on(name: &str, host: &str, path: PathMatch) -> Route {
        Route {
            path,
            ..route(name, host)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fixtures::route_on as route;

    fn name_of(t: &RouteTable, host: &str, path: &str) -> Option<String> {
        t.lookup(host, 443, path).map(|r| r.route.name.clone())
    }

    /// Request headers are written as the configuration spells them, response headers as
    /// Pingora writes a header name: the spellings each had before they were prepared.
    #[test]
    fn prepared_headers_keep_the_spelling_they_had() {
        let spelled = |f: &HeaderFields| {
            f.0.iter()
                .map(|(n, _)| String::from_utf8_lossy(n.case().as_slice()).into_owned())
                .collect::<Vec<_>>()
        };
        let pairs = [("cache-control", "no-cache"), ("X-Team", "platform")];
        assert_eq!(
            spelled(&HeaderFields::as_written(pairs)),
            ["cache-control", "X-Team"]
        );
        assert_eq!(
            spelled(&HeaderFields::new(pairs)),
            ["Cache-Control", "x-team"]
        );
        assert!(HeaderFields::as_written([("bad name", "v")]).0.is_empty());
    }

    /// The default response headers' values are kept as static text; each still reads as
    /// written, a value that only starts like one is its own, and a default's value given as a
    /// secret is still marked sensitive.
    #[test]
    fn default_header_values_read_as_written() {
        let mut pairs: Vec<(&str, &str)> = crate::config::DEFAULT_RESPONSE_HEADERS.to_vec();
        pairs.push(crate::config::DEFAULT_HSTS);
        pairs.push(("x-frame-options", "SAMEORIGIN; x"));
        let fields = HeaderFields::new(pairs.iter().copied());
        assert_eq!(fields.len(), pairs.len());
        for ((_, value), (_, want)) in fields.0.iter().zip(&pairs) {
            assert_eq!(value.as_bytes(), want.as_bytes());
            assert!(!value.is_sensitive());
        }
        let secret = HeaderFields::secret([crate::config::DEFAULT_RESPONSE_HEADERS[0]]);
        assert!(secret.0[0].1.is_sensitive());
    }

    /// A set of name lengths holds every name it was made of (the response headers' fields
    /// and, through `with`, any other), and leaves out a name of any other length; a name of the
    /// same length may be held (the caller compares it), and lengths from 63 up share a bit.
    #[test]
    fn name_lengths_hold_every_name_they_were_made_of() {
        let name =
            |n: &str| http::HeaderName::from_bytes(n.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let long = "x-".to_string() + &"a".repeat(70);
        let global = ResponseHeaders::new(HeaderFields::new([
            ("X-Frame-Options", "SAMEORIGIN"),
            (long.as_str(), "1"),
        ]));
        assert_eq!(
            NameLengths::X_REQUEST_ID,
            NameLengths::NONE.with(&name("x-request-id"))
        );
        let set = global.name_lengths().union(NameLengths::X_REQUEST_ID);
        for held in ["x-frame-options", "X-Request-Id", long.as_str()] {
            assert!(set.may_hold(&name(held)), "{held}");
        }
        // Same lengths: a sieve, not a set of names.
        for same_length in ["content-type", "x-frame-optionz", &"b".repeat(100)] {
            assert!(set.may_hold(&name(same_length)), "{same_length}");
        }
        for other in [
            "server",
            "date",
            "content-length",
            "x-xss-protection",
            "connection",
        ] {
            assert!(!set.may_hold(&name(other)), "{other}");
        }
        assert!(!NameLengths::NONE.may_hold(&name("a")));
        assert_eq!(ResponseHeaders::default().name_lengths(), NameLengths::NONE);
        assert_eq!(ResponseHeaders::EMPTY, ResponseHeaders::default());
    }

    /// Values from Secrets are prepared once like the others, but marked sensitive: printing
    /// a compiled route (a debug log, a panic message) never shows them.
    #[test]
    fn secret_header_values_never_print_with_the_compiled_route() {
        let secret = "k-123-very-secret";
        let mut r = route("r", "a.test", PathMatch::Any);
        Arc::make_mut(&mut r.options).secret_request_headers.insert(
            "x-api-key".into(),
            crate::config::Secret::from(secret.to_string()),
        );
        Arc::make_mut(&mut r.options)
            .secret_response_headers
            .insert(
                "x-token".into(),
                crate::config::Secret::from(secret.to_string()),
            );
        let t = RouteTable::compile(vec![r], &|_, _| None);
        let h = &t.routes[0].headers;
        for fields in [&h.secret_request, &h.secret_response] {
            assert_eq!(fields.len(), 1);
            assert!(fields.0[0].1.is_sensitive());
            assert_eq!(fields.0[0].1.as_bytes(), secret.as_bytes());
        }
        let printed = format!("{:?}", t.routes[0]);
        assert!(printed.contains("x-api-key"), "{printed}");
        assert!(!printed.contains(secret), "{printed}");
    }

    /// Gateway API precedence on one path: a method match first, then more header matches,
    /// then more query parameter matches, then definition order; a route whose conditions
    /// fail is passed over for the next one.
    #[test]
    fn an_upstream_ca_that_cannot_be_parsed_trusts_nothing() {
        let good = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()])
            .expect("certificate")
            .cert
            .der()
            .to_vec();
        assert_eq!(pingora_cas(std::slice::from_ref(&good)).len(), 1);
        // One unreadable certificate: none is trusted, rather than the system's roots.
        assert!(pingora_cas(&[good, b"not a certificate".to_vec()]).is_empty());
    }

    #[test]
    fn request_conditions_pick_among_routes_on_one_path() {
        use crate::config::{RequestMatch, ValueMatch};
        let with = |name: &str, path: PathMatch, m: RequestMatch| {
            let mut r = fixtures::route_on(name, "a.test", path);
            Arc::make_mut(&mut r.options).request_match = m;
            r
        };
        let header = |v: &str| ("x-env".to_string(), ValueMatch::Exact(v.into()));
        let exact = || PathMatch::Exact("/x".into());
        let prefix = || PathMatch::prefix("/p");
        let table = RouteTable::compile(
            vec![
                with("plain", exact(), RequestMatch::default()),
                with(
                    "canary",
                    exact(),
                    RequestMatch {
                        headers: vec![header("canary")],
                        ..Default::default()
                    },
                ),
                with(
                    "post",
                    exact(),
                    RequestMatch {
                        method: Some("POST".into()),
                        ..Default::default()
                    },
                ),
                with("p-plain", prefix(), RequestMatch::default()),
                with(
                    "p-query",
                    prefix(),
                    RequestMatch {
                        query: vec![("v".into(), ValueMatch::Exact("2".into()))],
                        ..Default::default()
                    },
                ),
            ],
            &|_, _| None,
        );
        let mut canary = http::HeaderMap::new();
        canary.insert("x-env", http::HeaderValue::from_static("canary"));
        let none = http::HeaderMap::new();
        let pick = |method: &str, headers: &http::HeaderMap, path: &str, query: Option<&str>| {
            let facts = RequestFacts {
                method,
                headers,
                query,
            };
            table
                .lookup_request("a.test", 443, path, &facts)
                .map(|r| r.route.name.clone())
                .unwrap_or_default()
        };
        assert_eq!(pick("GET", &none, "/x", None), "plain");
        assert_eq!(pick("GET", &canary, "/x", None), "canary");
        assert_eq!(
            pick("POST", &canary, "/x", None),
            "post",
            "method before headers"
        );
        assert_eq!(pick("GET", &none, "/p/q", Some("v=2")), "p-query");
        assert_eq!(pick("GET", &none, "/p/q", Some("v=3")), "p-plain");
        // Without the request's facts, only routes without conditions are found.
        assert_eq!(
            table
                .lookup("a.test", 443, "/x")
                .map(|r| r.route.name.as_str()),
            Some("plain")
        );
    }

    #[test]
    fn ingress_precedence() {
        let t = RouteTable::compile(
            vec![
                route("any", "a.test", PathMatch::Any),
                route("foo", "a.test", PathMatch::prefix("/foo")),
                route("foobar", "a.test", PathMatch::prefix("/foo/bar")),
                route("exact", "a.test", PathMatch::Exact("/foo/bar".into())),
                route("exact-dup", "a.test", PathMatch::Exact("/foo/bar".into())),
                route("wild", "*.test", PathMatch::Any),
            ],
            &|_, _| None,
        );
        assert_eq!(name_of(&t, "a.test", "/foo/bar").as_deref(), Some("exact"));
        assert_eq!(
            name_of(&t, "a.test", "/foo/bar/baz").as_deref(),
            Some("foobar")
        );
        assert_eq!(name_of(&t, "a.test", "/foo/x").as_deref(), Some("foo"));
        assert_eq!(name_of(&t, "a.test", "/foobar").as_deref(), Some("any"));
        assert_eq!(name_of(&t, "b.test", "/").as_deref(), Some("wild"));
        assert_eq!(name_of(&t, "c.b.test", "/"), None);
        assert!(!t.has_host("other"));
    }

    #[test]
    fn any_host_is_tried_last() {
        let mut catch_all = route("catch", "a.test", PathMatch::Any);
        catch_all.host = HostPattern::Any;
        let mut any_api = route("any-api", "a.test", PathMatch::prefix("/api"));
        any_api.host = HostPattern::Any;
        let t = RouteTable::compile(
            vec![
                catch_all,
                any_api,
                route("foo", "a.test", PathMatch::prefix("/foo")),
                route("wild", "*.w.test", PathMatch::prefix("/w")),
            ],
            &|_, _| None,
        );
        assert_eq!(name_of(&t, "a.test", "/foo/x").as_deref(), Some("foo"));
        assert_eq!(name_of(&t, "a.test", "/api").as_deref(), Some("any-api"));
        assert_eq!(name_of(&t, "a.test", "/zzz").as_deref(), Some("catch"));
        assert_eq!(name_of(&t, "x.w.test", "/w").as_deref(), Some("wild"));
        assert_eq!(name_of(&t, "x.w.test", "/v").as_deref(), Some("catch"));
        assert_eq!(name_of(&t, "other", "/api/v1").as_deref(), Some("any-api"));
        assert!(t.has_host("other"));
    }

    #[test]
    fn weighted_round_robin_keeps_the_shares_and_interleaves() {
        let mut r = route("w", "a.test", PathMatch::Any);
        r.to = vec![
            Upstream {
                url: url::Url::parse("http://127.0.0.1:1").unwrap(),
                weight: 1,
                backend_tls: None,
            },
            Upstream {
                url: url::Url::parse("http://127.0.0.1:2").unwrap(),
                weight: 3,
                backend_tls: None,
            },
            Upstream {
                url: url::Url::parse("http://127.0.0.1:3").unwrap(),
                weight: 6,
                backend_tls: None,
            },
        ];
        let t = RouteTable::compile(vec![r], &|_, p| Some(SocketAddr::from(([127, 0, 0, 1], p))));
        let cr = t.lookup("a.test", 443, "/").unwrap();
        let ports: Vec<u16> = (0..100)
            .map(|_| {
                cr.pick_backend(Tried::default(), None)
                    .unwrap()
                    .1
                    .upstream
                    .port()
            })
            .collect();
        let count = |p: u16| ports.iter().filter(|&&x| x == p).count();
        assert_eq!((count(1), count(2), count(3)), (10, 30, 60));
        // Never three picks in a row of the weight-6 backend within one cycle of 10.
        assert!(
            !ports[..10].windows(4).any(|w| w.iter().all(|&p| p == 3)),
            "{ports:?}"
        );
    }

    #[test]
    fn regex_priority_order_decides_among_regexes() {
        let regex = |name: &str, re: &str, order: Option<i64>| {
            let mut r = route(name, "a.test", PathMatch::regex(re).unwrap());
            Arc::make_mut(&mut r.options).regex_priority_order = order;
            r
        };
        let t = RouteTable::compile(
            vec![
                regex("first-defined", "^/api/.*", None),
                regex("low", "^/api/v1/.*", Some(1)),
                regex("high", "^/api/v1/admin.*", Some(10)),
                route("prefix", "a.test", PathMatch::prefix("/api/v1/admin")),
            ],
            &|_, p| Some(SocketAddr::from(([127, 0, 0, 1], p))),
        );
        let name = |path: &str| name_of(&t, "a.test", path);
        assert_eq!(name("/api/v1/admin/x").as_deref(), Some("high"));
        assert_eq!(name("/api/v1/users").as_deref(), Some("low"));
        assert_eq!(name("/api/v2").as_deref(), Some("first-defined"));
    }

    #[test]
    fn backend_health_survives_a_rebuild_of_the_table() {
        let mut r = route("h", "a.test", PathMatch::Any);
        r.to.push(Upstream::new(
            url::Url::parse("http://127.0.0.1:2").unwrap(),
        ));
        Arc::make_mut(&mut r.options).outlier_detection = Some(Default::default());
        let plain = route("plain", "b.test", PathMatch::Any);
        let resolve = |_: &str, p: u16| Some(SocketAddr::from(([127, 0, 0, 1], p)));
        let first = RouteTable::compile(vec![r.clone(), plain.clone()], &resolve);
        for _ in 0..5 {
            first.routes[0].record(1, 503);
        }
        let now = balance::now_ms();
        assert!(first.routes[0].backends[1].state.is_ejected(now));
        let second = RouteTable::compile_after(
            vec![Arc::new(r), Arc::new(plain)],
            &resolve,
            Some(&first),
            &Arc::default(),
        );
        assert!(second.routes[0].backends[1].state.is_ejected(now));
        assert!(!second.routes[0].backends[0].state.is_ejected(now));
        // A route whose selection reads no state starts afresh.
        assert!(!Arc::ptr_eq(
            &first.routes[1].backends[0].state,
            &second.routes[1].backends[0].state
        ));
    }

    #[test]
    fn round_robin() {
        let mut r = route("rr", "a.test", PathMatch::Any);
        r.to.push(Upstream::new(
            url::Url::parse("http://127.0.0.1:2").unwrap(),
        ));
        let t = RouteTable::compile(vec![r], &|_, p| Some(SocketAddr::from(([127, 0, 0, 1], p))));
        let cr = t.lookup("a.test", 443, "/").unwrap();
        let ports: Vec<u16> = (0..4)
            .map(|_| {
                cr.pick_backend(Tried::default(), None)
                    .unwrap()
                    .1
                    .upstream
                    .port()
            })
            .collect();
        assert_eq!(ports, vec![1, 2, 1, 2]);
    }

    #[test]
    fn one_backend_is_picked_without_the_shared_counter() {
        let r = route("one", "a.test", PathMatch::Any);
        let t = RouteTable::compile(vec![r], &|_, p| Some(SocketAddr::from(([127, 0, 0, 1], p))));
        let cr = t.lookup("a.test", 443, "/").unwrap();
        for _ in 0..3 {
            let (i, b) = cr.pick_backend(Tried::default(), None).unwrap();
            assert_eq!((i, b.upstream.port()), (0, 1));
        }
        // Every request of the route would otherwise take the counter (an atomic operation).
        assert_eq!(cr.next.load(Ordering::Relaxed), 0);
    }
}
