//! Pingora's `ProxyHttp` for Portcullis: each phase hands off to the module that owns it —
//! [`decide`](super::decide) in `request_filter`, [`upstream`](super::upstream) for the peer and
//! the upstream request, [`reply`](super::reply) for every answer we write — and keeps the
//! access log and the metrics.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::upstreams::peer::HttpPeer;

use super::decide::{Action, Decided, DecisionKind, UpstreamCookie, decide_now};
use super::reply::{self, Page, Reply};
use super::request;
use super::sanitize::sanitize;
use super::signin::SignIn;
use super::upstream::{self, Forwarding, UpstreamError};
use crate::guard::host::HostName;
use crate::metrics::Metrics;
use crate::ppl;
use crate::routes::balance::{InFlight, Tried};
use crate::routes::{CompiledRoute, RouteSink};

/// How many times a request whose connect failed is sent to another backend.
const MAX_CONNECT_RETRIES: usize = 2;
/// How often a request is sent again after its connection failed without an answer (a pooled
/// connection the upstream closed, an HTTP/2 stream refused): at most this many times, on top of
/// the connect retries.
const MAX_RESENDS: usize = 2;

/// The global response headers of a response without a route (none is proxied without one).
static NO_RESPONSE_HEADERS: crate::routes::ResponseHeaders = crate::routes::ResponseHeaders::EMPTY;

/// The proxy service. It only reads: the route sink's current snapshot, sign-in.
pub struct Portcullis {
    pub sink: Arc<RouteSink>,
    pub sign_in: Option<Arc<SignIn>>,
    pub metrics: Arc<Metrics>,
    /// The metric series of requests no route took (route `-`).
    pub unrouted: crate::metrics::RouteMetrics,
}

/// Per-request state.
pub struct Ctx {
    request_id: RequestId,
    start: Instant,
    route: Option<Arc<CompiledRoute>>,
    timeout: std::time::Duration,
    insecure: bool,
    /// The host the client addressed (lower case, no port).
    host: HostName,
    decision: DecisionKind,
    /// The reasons behind the decision, formatted only if the access log is written.
    reasons: ppl::Reasons,
    upstream_error: Option<UpstreamError>,
    /// Connect failures already retried on another backend.
    connect_retries: usize,
    /// Times the request was sent again after its connection failed without an answer.
    resends: usize,
    /// Backends this request could not connect to (a connect retry never goes to one twice;
    /// a request sent again because its pooled connection closed may go to the same one).
    tried: Tried,
    /// The backend of the current attempt (its index in the route), counted in flight when
    /// the route balances by `LEAST_REQUEST` (the only reader of the count: counting costs two
    /// atomic operations and a reference count a request).
    backend: Option<(usize, Option<InFlight>)>,
    /// Whether the current attempt's outcome was counted for passive health.
    recorded: bool,
    /// What keeps a user on one backend for sticky policies (their session id).
    routing_key: Option<String>,
    /// When the route's `timeout` runs out (set at the first attempt).
    deadline: Option<Instant>,
    /// Identity headers for the upstream (assertion, `jwt_claims_headers`).
    identity_headers: super::signin::IdentityHeaders,
    /// The client's `Authorization` carried the token that identified it: not sent upstream.
    drop_authorization: bool,
    /// The `Cookie` header without the session cookie, when deciding worked it out.
    upstream_cookie: UpstreamCookie,
    /// The address of the client's end of the connection, read once.
    peer: Option<std::net::IpAddr>,
}

/// A request's id, 16 hex digits, kept on the request's own context (inline on 64-bit targets):
/// the headers that carry it (upstream and to the client) copy its bytes into their lines, and
/// pages, the access log and a decision read it as text, so it needs no allocation of its own.
struct RequestId(super::decide::RequestIdText);

impl RequestId {
    fn new() -> RequestId {
        let mut digits = [0u8; 16];
        // Eight bytes are always sixteen digits: the lengths match, so this cannot fail.
        let _ = hex::encode_to_slice(rand::random::<u64>().to_be_bytes(), &mut digits);
        // Hex digits are always UTF-8 (and a valid header value): checked once here, and kept
        // as text.
        RequestId(super::decide::RequestIdText::from_utf8(digits).unwrap_or_default())
    }

    fn as_str(&self) -> &str {
        &self.0
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl crate::access_log::ReasonCodes for ppl::Reasons {
    fn push_codes(&self, out: &mut String) {
        for (i, code) in self.codes().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(code);
        }
    }
}

fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

#[async_trait]
impl ProxyHttp for Portcullis {
    type CTX = Box<Ctx>;

    /// Boxed: Pingora moves a request's context by value into the futures that serve the
    /// request, and a pointer moves without the copies (calls to `memcpy`) that the context's
    /// 270-odd bytes took.
    fn new_ctx(&self) -> Self::CTX {
        // Written into its box: in the release build `Box::new` built it on the stack and copied
        // it there.
        Box::write(
            Box::new_uninit(),
            Ctx {
                request_id: RequestId::new(),
                start: Instant::now(),
                route: None,
                timeout: std::time::Duration::from_secs(30),
                insecure: false,
                host: HostName::const_new(""),
                decision: DecisionKind::None,
                reasons: ppl::Reasons::EMPTY,
                upstream_error: None,
                connect_retries: 0,
                resends: 0,
                tried: Tried::default(),
                backend: None,
                recorded: false,
                routing_key: None,
                deadline: None,
                identity_headers: Vec::new(),
                drop_authorization: false,
                upstream_cookie: UpstreamCookie::Unread,
                peer: None,
            },
        )
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        // The work is done by two functions without a future. This hook's own future (which
        // Pingora boxes, and copies into the box, for every request) holds only what waits: the
        // snapshot, the rest of a decision that has to ask the sign-in service, and a reply's
        // boxed future.
        // What deciding gave: where the request goes, or the verdict it waited for (applied
        // once the waiting, which borrows the request, is over).
        enum Outcome {
            Next(Next),
            Waited(super::decide::Verdict),
        }
        let reply = {
            let snapshot = self.sink.load();
            let outcome = match self.decide_request(session, ctx, &snapshot) {
                Step::Done(next) => Outcome::Next(next),
                Step::Later(rest) => Outcome::Waited(rest.await),
            };
            let next = match outcome {
                Outcome::Next(next) => next,
                Outcome::Waited(verdict) => self.apply_verdict(session, ctx, verdict),
            };
            match next {
                Next::Forward => return Ok(false),
                Next::Reply(reply) => reply,
            }
        };
        // Boxed: a reply's future is over a kilobyte.
        Box::pin(reply::write(session, reply, &ctx.request_id)).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .as_deref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route chosen"))?;
        // Sticky policies: the session, else the client's address (as Pomerium keys them).
        let client_key;
        let key = if route.balancer.policy.is_sticky() {
            match &ctx.routing_key {
                Some(k) => Some(k.as_bytes()),
                None => {
                    client_key = ctx.peer.map(|ip| ip.to_string());
                    client_key.as_deref().map(str::as_bytes)
                }
            }
        } else {
            None
        };
        let (index, backend) = route
            .pick_backend(ctx.tried, key)
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "no backend"))?;
        ctx.recorded = false;
        ctx.backend = Some((index, route.balancer.in_flight(&backend.state)));
        let Some(addr) = backend.addr else {
            ctx.upstream_error = Some(UpstreamError::Resolve);
            return Err(Error::explain(
                ErrorType::ConnectNoRoute,
                format!("upstream {} did not resolve", backend.upstream.url),
            ));
        };
        // The route's deadline runs from the first attempt; each read and write waits at most
        // the stream idle time and never past the deadline.
        let now = Instant::now();
        let remaining = match ctx.deadline {
            // A later attempt: what the first one left.
            Some(deadline) => Some(deadline.saturating_duration_since(now)),
            // The first attempt (or a route without a deadline): all of the limit is left. A
            // timeout too long to add to the clock is no deadline (configured values are not
            // bounded).
            None => {
                let limit = upstream::deadline(route, ctx.timeout);
                ctx.deadline = limit.and_then(|d| now.checked_add(d));
                limit.filter(|_| ctx.deadline.is_some())
            }
        };
        if remaining.is_some_and(|r| r.is_zero()) {
            ctx.upstream_error = Some(UpstreamError::Timeout);
            return Err(Error::explain(
                ErrorType::ReadTimedout,
                "the route's timeout ran out",
            ));
        }
        let per_operation = match (upstream::stream_idle(route), remaining) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(upstream::peer(route, backend, addr, per_operation))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_req: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let Some(route) = ctx.route.as_deref() else {
            return Ok(());
        };
        // The backend upstream_peer chose for this attempt.
        let backend = ctx
            .backend
            .as_ref()
            .and_then(|(i, _)| route.backends.get(*i))
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no backend chosen"))?;
        let fwd = Forwarding {
            client: session.req_header(),
            upstream_authority: &backend.authority,
            client_ip: ctx.peer,
            insecure: ctx.insecure,
            request_id: ctx.request_id.as_bytes(),
        };
        if ctx.drop_authorization {
            upstream_req.remove_header(&http::header::AUTHORIZATION);
        }
        // Every attempt gets the identity (Pingora sends a request again on a new connection
        // when the pooled one it went out on closed first), so the headers are copied, not taken.
        upstream::prepare_request(route, upstream_req, &ctx.identity_headers, &fwd)?;
        match &self.sign_in {
            Some(sign_in) => {
                upstream::strip_session_cookie(sign_in, route, &ctx.upstream_cookie, upstream_req)?
            }
            // No `Cookie` header came, and the route's settings added none.
            None if ctx.upstream_cookie == UpstreamCookie::AsSent
                && !route.headers.changes_request_headers() => {}
            None => upstream::join_cookie_headers(upstream_req)?,
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        self.record_outcome(ctx, resp.status.as_u16());
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<std::time::Duration>> {
        // The whole response must arrive before the route's deadline.
        if !end_of_stream && ctx.deadline.is_some_and(|d| Instant::now() >= d) {
            ctx.upstream_error = Some(UpstreamError::Timeout);
            return Err(Error::explain(
                ErrorType::ReadTimedout,
                "the route's timeout ran out while the response was streaming",
            ));
        }
        Ok(None)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // The global headers of the table the request's route came from.
        let global = ctx
            .route
            .as_deref()
            .map_or(&NO_RESPONSE_HEADERS, |r| &*r.global_response_headers);
        upstream::prepare_response(
            ctx.route.as_deref(),
            global,
            resp,
            ctx.request_id.as_bytes(),
        )
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing reached the upstream, so any method may be sent again: the next attempt picks
        // the next backend (round robin), at most MAX_CONNECT_RETRIES times and never one that
        // refused a connection before in this request.
        // A failed connect counts as a 503 towards ejecting the backend.
        self.record_outcome(ctx, 503);
        if let Some((index, _)) = &ctx.backend {
            ctx.tried.add(*index);
        }
        let backends = ctx.route.as_ref().map_or(0, |r| r.backends.len());
        if ctx.connect_retries < MAX_CONNECT_RETRIES.min(backends.saturating_sub(1)) {
            ctx.connect_retries += 1;
            tracing::debug!(request_id = %ctx.request_id, error = %e, "connect failed: trying the next backend");
            e.set_retry(true);
            return e;
        }
        ctx.upstream_error.get_or_insert(UpstreamError::Connect);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        // Pingora's own rule: only a request whose method is idempotent and whose body is still
        // whole is sent again, and after an error that only a pooled connection excuses (closed
        // or reset before the answer's head), only when this connection was pooled.
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        // And at most MAX_RESENDS times a request, so that an upstream refusing every request
        // (HTTP/2 streams refused under load, a pool of connections it closed) does not get
        // each one many times over. The next attempt may go to the same backend.
        if e.retry() {
            if ctx.resends < MAX_RESENDS {
                ctx.resends += 1;
                tracing::debug!(request_id = %ctx.request_id, error = %e, "the connection failed without an answer: sending the request again");
            } else {
                e.set_retry(false);
            }
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let (status, title, detail, mut kind) = failure(e, ctx.upstream_error.is_some());
        // A name that did not resolve fails as a connect error; count it as what it was.
        if ctx.upstream_error == Some(UpstreamError::Resolve) {
            kind = UpstreamError::Resolve;
        }
        // The backend failed after connecting (reset, timeout): passive health counts it.
        if matches!(kind, UpstreamError::Connect | UpstreamError::Timeout) {
            self.record_outcome(
                ctx,
                if kind == UpstreamError::Timeout {
                    504
                } else {
                    502
                },
            );
        }
        if let Some(route) = &ctx.route
            && kind != UpstreamError::Downstream
        {
            self.metrics
                .upstream_errors
                .with_label_values(&[route.route.name.as_str(), kind.as_str()])
                .inc();
        }
        if status > 0 && session.response_written().is_none() {
            // The connection is not reused after a failed proxy attempt: say so, so that
            // clients do not send their next request into a closing connection.
            session.as_downstream_mut().set_keepalive(None);
            // Failures are rare: the branding is read from the current snapshot only then.
            let snapshot = self.sink.load();
            let page = Page {
                status,
                title,
                detail,
                request_id: &ctx.request_id,
                route: ctx.route.as_ref().map(|r| r.route.name.as_str()),
                retry: request::retry_url(session.req_header(), ctx.insecure),
                brand: Some(&snapshot.global.branding),
                ..Page::default()
            };
            let reply = Reply::page(&page, request::wants_json(&session.req_header().headers));
            if let Err(err) = reply::write(session, reply, &ctx.request_id).await {
                tracing::debug!(error = %err, "could not write the error page");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let end = Instant::now();
        let elapsed = end.saturating_duration_since(ctx.start);
        let route = ctx
            .route
            .as_ref()
            .map(|r| r.route.name.as_str())
            .unwrap_or("-");
        let m = &self.metrics;
        match &ctx.route {
            Some(r) => {
                r.metrics.request(m, route, status);
                r.metrics.duration(m, route, elapsed.as_secs_f64());
            }
            None => {
                self.unrouted.request(m, route, status);
                self.unrouted.duration(m, route, elapsed.as_secs_f64());
            }
        }
        if crate::access_log::enabled() {
            let req = session.req_header();
            crate::access_log::log(
                &crate::access_log::Line {
                    request_id: ctx.request_id.as_str(),
                    method: req.method.as_str(),
                    host: &ctx.host,
                    path: req.uri.path(),
                    route,
                    status,
                    duration: elapsed,
                    decision: ctx.decision.as_str(),
                    reasons: &ctx.reasons,
                    connect_retries: ctx.connect_retries,
                    resends: ctx.resends,
                    error: e.map(|e| e as &dyn std::fmt::Display),
                },
                end,
            );
        }
    }
}

/// What becomes of a request once it is decided.
enum Next {
    /// Proxy it (the context holds what goes upstream with it).
    Forward,
    /// Answer it with this.
    Reply(Reply),
}

/// Where [`Portcullis::decide_request`] leaves a request.
enum Step<'a> {
    Done(Next),
    /// The rest of the decision, which waits for the sign-in service ([`Decided::Later`]).
    Later(super::decide::Rest<'a>),
}

impl Portcullis {
    /// `request_filter`'s work up to the verdict: the connection's timeouts, the request's
    /// identity and forwarding headers removed (`sanitize`), and the decision, when it needs no
    /// waiting.
    fn decide_request<'a>(
        &'a self,
        session: &'a mut Session,
        ctx: &mut Ctx,
        snapshot: &'a crate::routes::Snapshot,
    ) -> Step<'a> {
        let sign_in = self.sign_in.as_deref();
        let global = &snapshot.global;
        ctx.timeout = global.timeout;
        ctx.insecure = global.insecure;
        let downstream = session.as_downstream_mut();
        downstream.set_read_timeout(global.client_read_timeout);
        downstream.set_write_timeout(global.client_write_timeout);
        // Only where the client keeps the connection alive (HTTP/1.1, or 1.0 asking for it).
        if downstream.get_keepalive().is_some() {
            downstream.set_keepalive(Some(global.keepalive_seconds));
        }
        let claim_headers = sign_in.into_iter().flat_map(SignIn::claim_header_names);
        let peer = client_ip(session);
        ctx.peer = peer;
        let mut clean = match sanitize(session.req_header_mut(), global, claim_headers, peer) {
            Ok(clean) => clean,
            Err(refusal) => {
                let page = Page {
                    status: refusal.status,
                    title: refusal.title,
                    detail: &refusal.detail,
                    request_id: &ctx.request_id,
                    brand: Some(&global.branding),
                    ..Page::default()
                };
                let json = request::wants_json(&session.req_header().headers);
                return Step::Done(Next::Reply(Reply::page(&page, json)));
            }
        };
        clean.client_chain = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|t| t.extension.get::<crate::tls::PeerChain>())
            .cloned();
        // Only read from here on: the rest of a decision that waits borrows the request.
        let session: &'a Session = session;
        match decide_now(
            session.req_header(),
            clean,
            snapshot,
            sign_in,
            &ctx.request_id.0,
        ) {
            Decided::Now(verdict) => Step::Done(self.apply_verdict(session, ctx, verdict)),
            Decided::Later(rest) => Step::Later(rest),
        }
    }

    /// Keep what the verdict says in the request's context (and count it); what becomes of the
    /// request.
    fn apply_verdict(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        verdict: super::decide::Verdict,
    ) -> Next {
        ctx.host = verdict.host;
        ctx.route = verdict.route;
        ctx.decision = verdict.decision;
        ctx.reasons = verdict.reasons;
        ctx.routing_key = verdict.routing_key;
        if ctx.decision.is_policy()
            && let Some(route) = &ctx.route
        {
            route
                .metrics
                .decision(&self.metrics, &route.route.name, ctx.decision.as_str());
        }
        // The end of a sign-in: a redirect back to the route host, or an error page.
        if ctx.decision == DecisionKind::Authenticate
            && session.req_header().uri.path() == "/oauth2/callback"
            && let Action::Reply(reply) = &verdict.action
        {
            let result = if reply.status == 302 {
                "completed"
            } else {
                "failed"
            };
            self.metrics.sign_ins.with_label_values(&[result]).inc();
        }
        match verdict.action {
            Action::Forward {
                identity,
                drop_authorization,
                cookie,
            } => {
                if let Some(reply) = ctx
                    .route
                    .as_ref()
                    .and_then(|r| upstream::direct_reply(r, session.req_header(), ctx.insecure))
                {
                    return Next::Reply(reply);
                }
                ctx.identity_headers = identity;
                ctx.drop_authorization = drop_authorization;
                ctx.upstream_cookie = cookie;
                Next::Forward
            }
            Action::Reply(reply) => Next::Reply(reply),
        }
    }

    /// Count the current attempt's outcome once towards the backend's passive health.
    fn record_outcome(&self, ctx: &mut Ctx, status: u16) {
        if ctx.recorded {
            return;
        }
        if let (Some(route), Some((index, _))) = (&ctx.route, &ctx.backend) {
            route.record(*index, status);
            ctx.recorded = true;
        }
    }
}

/// The page for a failed proxy attempt: status (0 when the client is gone and nothing can be
/// written), title, text and the kind of failure.
fn failure(e: &Error, upstream_failed: bool) -> (u16, &'static str, &'static str, UpstreamError) {
    match e.etype() {
        ErrorType::HTTPStatus(code) => {
            (*code, "Error", "The request failed.", UpstreamError::Status)
        }
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => (
            504,
            "Gateway Timeout",
            "The service behind this address did not answer in time. Try again; if it keeps \
             happening, tell its operator.",
            UpstreamError::Timeout,
        ),
        _ => match e.esource() {
            ErrorSource::Upstream => (
                502,
                "Bad Gateway",
                "The service behind this address could not be reached or failed. Try again in a \
                 moment; if it keeps happening, tell its operator.",
                UpstreamError::Connect,
            ),
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                    (0, "", "", UpstreamError::Downstream)
                }
                _ => (
                    400,
                    "Bad Request",
                    "The request could not be read.",
                    UpstreamError::Downstream,
                ),
            },
            ErrorSource::Internal | ErrorSource::Unset if upstream_failed => (
                502,
                "Bad Gateway",
                "The service behind this address could not be reached. Try again in a moment; \
                 if it keeps happening, tell its operator.",
                UpstreamError::Connect,
            ),
            ErrorSource::Internal | ErrorSource::Unset => (
                500,
                "Internal Error",
                "Something went wrong.",
                UpstreamError::Internal,
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use pingora::proxy::{ProxyHttp, Session};

    use super::{Portcullis, RequestId};
    use crate::access_log::ReasonCodes;
    use crate::metrics::Metrics;
    use crate::ppl::{Reason, Reasons};
    use crate::routes::RouteSink;

    /// A proxy without sign-in and without routes.
    fn proxy() -> Portcullis {
        let metrics = Arc::new(Metrics::new().unwrap());
        Portcullis {
            sink: Arc::new(RouteSink::new(metrics.clone()).unwrap()),
            sign_in: None,
            metrics,
            unrouted: Default::default(),
        }
    }

    /// Pingora boxes every hook's future and copies it into its box, for every request. The
    /// sign-in's futures (kilobytes) and a reply's (over one) are boxed where they are awaited,
    /// and what needs no waiting is done by functions without a future, so that
    /// `request_filter`'s own stays small: 1,984 bytes with the decision and a reply inline
    /// (in debug and release builds alike), 152 without.
    #[test]
    fn the_request_filter_future_does_not_carry_the_sign_in_or_a_reply() {
        let proxy = proxy();
        let (client, _other_end) = tokio::io::duplex(64);
        let mut session = Session::new_h1(Box::new(client));
        let mut ctx = proxy.new_ctx();
        let future = proxy.request_filter(&mut session, &mut ctx);
        let size = std::mem::size_of_val(&*future);
        assert!(size <= 256, "request_filter's future is {size} bytes");
    }

    /// Pingora moves a request's context by value into the futures that serve the request
    /// (`serve_new_http`, `process_request`): a pointer, not the context's few hundred bytes.
    #[test]
    fn the_request_context_moves_as_a_pointer() {
        let proxy = proxy();
        let ctx = proxy.new_ctx();
        assert_eq!(std::mem::size_of_val(&ctx), std::mem::size_of::<usize>());
    }

    #[test]
    fn reasons_are_logged_as_their_codes_in_order() {
        let mut out = String::new();
        Reasons::EMPTY.push_codes(&mut out);
        assert_eq!(out, "");
        let some: Reasons = [Reason::UserOk, Reason::ClaimOk].into_iter().collect();
        some.push_codes(&mut out);
        assert_eq!(out, "claim-ok,user-ok");
        // Every code is a word with hyphens: a JSON line quotes it as it is.
        out.clear();
        Reason::ALL
            .iter()
            .copied()
            .collect::<Reasons>()
            .push_codes(&mut out);
        assert!(
            out.bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'-' || b == b','),
            "{out}"
        );
    }

    #[test]
    fn request_ids_are_16_hex_digits_and_differ() {
        let a = RequestId::new();
        let b = RequestId::new();
        for id in [&a, &b] {
            assert_eq!(id.len(), 16, "{id}");
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
        assert_ne!(a.as_str(), b.as_str());
        // Kept inline, without an allocation (a 64-bit target keeps up to 24 bytes inline).
        #[cfg(target_pointer_width = "64")]
        assert!(!a.0.is_heap_allocated());
        // Every digit is written, in both places of a byte (3,200 random digits miss one
        // with a chance below 1e-43: 32 × (15/16)^1600).
        let (mut high, mut low) = ([false; 16], [false; 16]);
        for _ in 0..200 {
            let id = RequestId::new();
            for pair in id.as_bytes().chunks_exact(2) {
                let digit = |c: u8| (c as char).to_digit(16).map(|d| d as usize);
                high[digit(pair[0]).unwrap_or_default()] = true;
                low[digit(pair[1]).unwrap_or_default()] = true;
            }
        }
        assert_eq!((high, low), ([true; 16], [true; 16]));
    }
}
