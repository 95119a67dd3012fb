//! The decision for one request, made before anything is proxied: which route, what the policy
//! says (with the session when the answer depends on the user), and either the identity to
//! forward with or the reply to give instead. The proxy writes the verdict once.

use std::net::IpAddr;
use std::sync::Arc;

use pingora::http::RequestHeader;

use super::portal::{PORTAL_PATH, portal};
use super::reply::{Page, Reply, Who};
use super::request;
use super::sanitize::Clean;
use super::signin::{Call, OpenSession, SignIn, SignInError, impersonation_headers};
use crate::auth::assertion::JWKS_PATH;
use crate::guard::bearer::{IdpToken, plain_bearer};
use crate::guard::host::HostName;

/// Where a signed-in user fetches the assertion for a route (Pomerium's path).
const JWT_PATH: &str = "/.pomerium/jwt";
use crate::config::MtlsEnforcement;
use crate::ppl::{self, Decision, Evaluation};
use crate::routes::sink::GlobalClientCa;
use crate::routes::{CompiledRoute, RequestFacts, Snapshot};

/// What decided a request, for the access log and the decision metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionKind {
    /// Not decided (no host, no route).
    None,
    /// Answered by the authenticate service.
    Authenticate,
    /// Answered by a route host's `/.pomerium/` endpoint.
    Internal,
    Allow,
    Deny,
    Login,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::None => "-",
            DecisionKind::Authenticate => "authenticate",
            DecisionKind::Internal => "internal",
            DecisionKind::Allow => "allow",
            DecisionKind::Deny => "deny",
            DecisionKind::Login => "login",
        }
    }

    /// Whether the route's policy made this decision (counted in the decision metric).
    pub fn is_policy(self) -> bool {
        matches!(
            self,
            DecisionKind::Allow | DecisionKind::Deny | DecisionKind::Login
        )
    }
}

/// What to do with a request.
pub enum Action {
    /// Proxy it, adding these identity headers.
    Forward {
        identity: super::signin::IdentityHeaders,
        /// The `Authorization` header carried the identity provider token that identified the
        /// client: it is not sent on.
        drop_authorization: bool,
        /// The `Cookie` header without the session cookie, when deciding read the header.
        cookie: UpstreamCookie,
    },
    /// Answer it ourselves.
    Reply(Reply),
}

/// What becomes of a request's `Cookie` header on its way upstream: the session cookie (and its
/// chunks) never goes, and several `Cookie` headers (an HTTP/2 client may split its cookies) go
/// as one, joined with `; ` as HTTP/2 asks of a request passed on to HTTP/1.1. Worked out while
/// deciding when that read the header to find the session, so that the header is read once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum UpstreamCookie {
    /// Not read while deciding: worked out when the request goes upstream.
    #[default]
    Unread,
    /// One header (or none) without the session cookie: sent as it is.
    AsSent,
    /// Sent as this one header, or not at all (nothing was left without the session cookie).
    Becomes(Option<http::HeaderValue>),
}

impl UpstreamCookie {
    /// For a request whose `Cookie` headers, joined, are `cookies`, read from `several` headers
    /// (as [`request::cookie_headers`] gives them). The cookies left go as their bytes came,
    /// whatever they are.
    pub fn of(
        sign_in: &SignIn,
        (cookies, several): (std::borrow::Cow<'_, [u8]>, bool),
    ) -> UpstreamCookie {
        // What is left of valid headers is a valid header; were it not, no cookie goes rather
        // than the session.
        let value =
            |bytes: Vec<u8>| http::HeaderValue::from_maybe_shared(bytes::Bytes::from(bytes)).ok();
        match sign_in.without_session_cookie(&cookies) {
            Some(rest) => UpstreamCookie::Becomes(rest.and_then(value)),
            None if several => UpstreamCookie::Becomes(value(cookies.into_owned())),
            None => UpstreamCookie::AsSent,
        }
    }
}

pub struct Verdict {
    /// The host the client addressed (lower case, no port); empty when it named none.
    pub host: HostName,
    pub route: Option<Arc<CompiledRoute>>,
    pub decision: DecisionKind,
    pub reasons: ppl::Reasons,
    pub action: Action,
    /// For routes with a sticky load-balancing policy: the session id of a signed-in user.
    pub routing_key: Option<String>,
}

impl Verdict {
    fn reply(host: HostName, decision: DecisionKind, reply: Reply) -> Verdict {
        Verdict {
            host,
            route: None,
            decision,
            reasons: ppl::Reasons::EMPTY,
            routing_key: None,
            action: Action::Reply(reply),
        }
    }
}

/// One of our plain pages (no policy reasons), naming the route when there is one.
fn page(status: u16, title: &str, detail: &str, call: &Call<'_>, route: Option<&str>) -> Reply {
    Reply::page(
        &Page {
            status,
            title,
            detail,
            request_id: call.request_id,
            route,
            brand: Some(call.brand),
            ..Page::default()
        },
        call.json(),
    )
}

/// The client certificate as the route's policy sees it. The route's
/// `tls_downstream_client_ca`, else the global `downstream_mtls`, says which CAs to trust;
/// without either the policy sees none. A presented chain those CAs do not trust, or none,
/// is an error (saying what is wrong) — except under `enforcement: policy`, where the policy
/// simply sees no certificate.
fn client_certificate(
    route: &CompiledRoute,
    global: Option<&GlobalClientCa>,
    chain: Option<&crate::tls::PeerChain>,
) -> Result<Option<ppl::ClientCertificate>, &'static str> {
    let (verifier, policy_only) = match (&route.client_ca, global) {
        (Some(v), _) => (v.as_ref(), false),
        (None, Some(g)) => (
            g.verifier.as_ref(),
            g.config.enforcement == MtlsEnforcement::Policy,
        ),
        (None, None) => return Ok(None),
    };
    let Some(verifier) = verifier else {
        return Err(
            "This route's client certificate authority cannot be used, so no request is let through.",
        );
    };
    let Some(leaf) = chain.and_then(|c| c.0.first()) else {
        if policy_only {
            return Ok(None);
        }
        return Err(
            "This route needs a client certificate, and the connection did not present one.",
        );
    };
    let trusted = chain.is_some_and(|c| crate::tls::chain_is_trusted(verifier, &c.0));
    if !trusted {
        if policy_only {
            return Ok(None);
        }
        return Err(
            "The client certificate presented is not issued by an authority this route trusts, or has expired.",
        );
    }
    ppl::ClientCertificate::from_der(leaf.as_ref(), true)
        .map(Some)
        .map_err(|_| "The client certificate presented cannot be read.")
}

/// The 403 page of a policy refusal (the sign-in service adds who is asking and actions).
fn forbidden<'a>(
    call: &Call<'a>,
    codes: &'a [&'a str],
    explain: &'a [String],
    route: &'a str,
) -> Page<'a> {
    Page {
        status: 403,
        title: "Forbidden",
        detail: "The route's policy does not allow this request.",
        request_id: call.request_id,
        reasons: codes,
        explain,
        route: Some(route),
        brand: Some(call.brand),
        ..Page::default()
    }
}

/// A request's id as text: the request's context keeps it, and a decision that waits its own
/// copy (inline on 64-bit targets: ids are 16 hex digits).
pub type RequestIdText = compact_str::CompactString;

/// Where deciding a request stands once the work that needs no waiting is done.
pub enum Decided<'a> {
    /// Decided.
    Now(Verdict),
    /// The sign-in service has to be asked first (the authenticate service's endpoints, an
    /// identity provider token): the rest of the decision, boxed. The sign-in's futures are
    /// kilobytes; a request that does not wait for them never makes or copies them, and the
    /// hook that awaits this holds a pointer, not the future.
    Later(Rest<'a>),
}

/// The rest of a decision that waits for the sign-in service.
pub type Rest<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Verdict> + Send + 'a>>;

/// A request as the sign-in handlers and our pages see it.
fn call_of<'c>(req: &'c RequestHeader, request_id: &'c str, snapshot: &'c Snapshot) -> Call<'c> {
    Call {
        req,
        request_id,
        brand: &snapshot.global.branding,
    }
}

/// Decide what happens to `req`, as `sanitize` left it (`clean`: its host, port and client), as
/// far as that goes without waiting: most requests (every one without an identity provider token
/// or a sign-in step) are decided here, without a future.
pub fn decide_now<'a>(
    req: &'a RequestHeader,
    clean: Clean,
    snapshot: &'a Snapshot,
    sign_in: Option<&'a SignIn>,
    request_id: &RequestIdText,
) -> Decided<'a> {
    let call = call_of(req, request_id, snapshot);
    let default_port = if snapshot.global.insecure { 80 } else { 443 };
    let Clean {
        client_ip,
        host,
        port,
        client_chain,
        token,
        has_upgrade,
        has_cookie,
    } = clean;
    let port = port.unwrap_or(default_port);
    let path = req.uri.path();
    if let Some(sign_in) = sign_in {
        if sign_in.is_authenticate_host(&host, port) {
            let request_id = request_id.clone();
            return Decided::Later(Box::pin(async move {
                let call = call_of(req, &request_id, snapshot);
                let reply = match sign_in.authenticate_endpoint(&call, &snapshot.table).await {
                    Ok(reply) => reply,
                    Err(e) => e.reply(&request_id, call.json(), call.brand),
                };
                Verdict::reply(host, DecisionKind::Authenticate, reply)
            }));
        }
        if (path == JWT_PATH || path == PORTAL_PATH) && snapshot.table.has_host(&host) {
            let at = Internal {
                call: &call,
                snapshot,
                sign_in,
                host: &host,
                port,
                client_ip,
                client_chain: client_chain.as_ref(),
            };
            let reply = if path == JWT_PATH {
                assertion_for_route(&at)
            } else {
                portal(&at)
            };
            return Decided::Now(Verdict::reply(host, DecisionKind::Internal, reply));
        }
        if (path.starts_with("/.pomerium") || path == JWKS_PATH)
            && snapshot.table.has_host(&host)
            && let Some(answer) = sign_in.route_endpoint(&call, path)
        {
            let reply = answer.unwrap_or_else(|e| e.reply(request_id, call.json(), call.brand));
            return Decided::Now(Verdict::reply(host, DecisionKind::Internal, reply));
        }
    }
    let facts = RequestFacts {
        method: req.method.as_str(),
        headers: &req.headers,
        query: req.uri.query(),
    };
    let Some(route) = snapshot.table.lookup_request(&host, port, path, &facts) else {
        let reply = page(
            404,
            "Not Found",
            "Nothing is served at this address: no route matches this host and path. Check the \
             address for a typing mistake.",
            &call,
            None,
        );
        return Decided::Now(Verdict::reply(host, DecisionKind::None, reply));
    };

    // A route that verifies client certificates refuses requests without a trusted one
    // before its policy runs; the policy's `client_certificate` then sees it.
    let certificate = match client_certificate(
        route,
        snapshot.global.client_ca.as_deref(),
        client_chain.as_ref(),
    ) {
        Ok(c) => c,
        Err(why) => {
            let reply = page(
                495,
                "Client certificate required",
                why,
                &call,
                Some(&route.route.name),
            );
            return Decided::Now(Verdict::reply(host, DecisionKind::Deny, reply));
        }
    };
    // Policy: first without a session, which decides public routes without touching the
    // cookie; then, when the answer depends on the user (or the upstream needs to know who),
    // with the session: an API client's identity provider token, else the session cookie.
    // The clock is read for a policy that looks at the time, not for every request.
    let reads_time = route.route.policy.reads_time();
    let now = if reads_time {
        chrono::Utc::now()
    } else {
        chrono::DateTime::UNIX_EPOCH
    };
    let eval = route.route.policy.evaluate(
        &PolicyInput {
            now,
            req,
            host: &host,
            ip: client_ip,
            certificate: certificate.as_ref(),
        }
        .request(None),
    );
    let mut rest = Policed {
        req,
        snapshot,
        sign_in,
        request_id: request_id.clone(),
        host,
        port,
        default_port,
        client_ip,
        certificate,
        now,
        eval,
        token: None,
        has_upgrade,
        has_cookie,
        route,
    };
    let opts = &rest.route.route.options;
    // An identity provider token (Pomerium's explicit forms, or a plain bearer when the
    // route's `bearer_token_format` names its kind) identifies an API client instead of a cookie.
    // Only read when the user matters: a public route's requests do not look at it.
    let needs_user = rest.needs_user();
    rest.token = match token {
        None if needs_user && sign_in.is_some() => {
            let format = opts
                .bearer_token_format
                .unwrap_or(snapshot.global.bearer_token_format);
            let authorization = req
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            plain_bearer(authorization, format)
        }
        token => token,
    };
    let Some(sign_in) = sign_in.filter(|_| needs_user) else {
        return Decided::Now(rest.conclude(None, None));
    };
    if let Some(token) = rest.token.take() {
        return Decided::Later(Box::pin(async move {
            let opts = &rest.route.route.options;
            let audiences = opts
                .idp_access_token_allowed_audiences
                .as_deref()
                .unwrap_or(&rest.snapshot.global.idp_access_token_allowed_audiences);
            let session = sign_in.token_session(&token, audiences).await;
            // Back for the verdict (whether the token's `Authorization` header is dropped).
            rest.token = Some(token);
            match session {
                Ok(user) => rest.conclude(Some(user), None),
                Err(e) => {
                    let call = call_of(rest.req, &rest.request_id, rest.snapshot);
                    let reply = e.reply(&rest.request_id, call.json(), call.brand);
                    let mut verdict = Verdict::reply(rest.host, DecisionKind::Login, reply);
                    verdict.route = Some(rest.route.clone());
                    verdict
                }
            }
        }));
    }
    let Some((cookies, several)) = request::cookie_headers(&req.headers) else {
        return Decided::Now(rest.conclude(None, None));
    };
    let session_now = if reads_time {
        now.timestamp()
    } else {
        super::signin::now()
    };
    let user = sign_in.route_session(&request::text_of(&cookies), &rest.host, session_now);
    Decided::Now(rest.conclude(user, Some((cookies, several))))
}

/// A request on its way through [`decide_now`] once its route is found and its policy evaluated
/// without a session: what the rest of the decision reads, owned or borrowed for as long as the
/// request, so that it can wait for the sign-in service in a boxed future.
struct Policed<'a> {
    req: &'a RequestHeader,
    snapshot: &'a Snapshot,
    sign_in: Option<&'a SignIn>,
    request_id: RequestIdText,
    host: HostName,
    port: u16,
    default_port: u16,
    client_ip: Option<IpAddr>,
    certificate: Option<ppl::ClientCertificate>,
    /// The time the policy sees (the Unix epoch for a policy that does not look at it).
    now: chrono::DateTime<chrono::Utc>,
    /// The policy's answer without a session.
    eval: Evaluation,
    /// The identity provider token that identifies the client instead of a cookie.
    token: Option<IdpToken>,
    has_upgrade: bool,
    has_cookie: bool,
    /// Borrowed from the snapshot, which outlives the decision: the verdict takes the one
    /// reference count a decided request holds.
    route: &'a Arc<CompiledRoute>,
}

impl<'a> Policed<'a> {
    /// What the policy reads of the request, apart from the session. Built where it is used:
    /// a `ppl::Request` may not be held across the token check's await.
    fn input(&self) -> PolicyInput<'_> {
        PolicyInput {
            now: self.now,
            req: self.req,
            host: &self.host,
            ip: self.client_ip,
            certificate: self.certificate.as_ref(),
        }
    }

    fn pass_identity(&self) -> bool {
        self.route
            .route
            .options
            .pass_identity_headers
            .unwrap_or(self.snapshot.global.pass_identity_headers)
    }

    fn impersonates(&self) -> bool {
        self.route
            .route
            .options
            .kubernetes_service_account_token
            .is_some()
    }

    /// Whether the user matters: the policy did not allow the request without a session, or
    /// the upstream is told who is asking.
    fn needs_user(&self) -> bool {
        self.eval.decision != Decision::Allow || self.pass_identity() || self.impersonates()
    }

    /// The verdict, with the signed-in `user` the token or the session cookie identified (if
    /// any) and the `Cookie` headers, joined, when they were read to find the session.
    fn conclude(
        self,
        user: Option<Arc<OpenSession>>,
        read_cookies: Option<(std::borrow::Cow<'a, [u8]>, bool)>,
    ) -> Verdict {
        let call = call_of(self.req, &self.request_id, self.snapshot);
        let req = self.req;
        let snapshot = self.snapshot;
        let sign_in = self.sign_in;
        let request_id: &str = &self.request_id;
        let port = self.port;
        let pass_identity = self.pass_identity();
        let impersonate = self.impersonates();
        let eval = match &user {
            Some(u) => self
                .route
                .route
                .policy
                .evaluate(&self.input().request(Some(&u.identity))),
            None => self.eval,
        };
        let reasons = eval.reasons();
        // The plain-language reasons of a refusal (an allowed request computes none).
        let explain = if eval.decision == Decision::Allow {
            Vec::new()
        } else {
            self.route
                .route
                .policy
                .explain(&self.input().request(user.as_ref().map(|u| &u.identity)))
        };
        let route = self.route;
        let mut verdict = Verdict {
            host: self.host,
            route: Some(route.clone()),
            decision: DecisionKind::Allow,
            reasons,
            action: Action::Forward {
                identity: Vec::new(),
                drop_authorization: false,
                cookie: UpstreamCookie::Unread,
            },
            routing_key: None,
        };
        if route.route.options.load_balancing_policy.is_sticky()
            && let Some(u) = &user
        {
            verdict.routing_key = Some(u.data.sid.clone());
        }
        // Reason codes and sentences for the pages of a refusal; an allowed request builds none.
        let codes = || -> Vec<&'static str> { reasons.codes().collect() };
        let route_name = route.route.name.as_str();
        match eval.decision {
            Decision::Allow => {
                let mut identity = Vec::new();
                // A route that answers itself (`redirect`, `response`) sends nothing upstream.
                let proxies = route.route.options.direct.is_none();
                if let (Some(sign_in), Some(u)) = (sign_in, &user)
                    && proxies
                {
                    if pass_identity {
                        let route_host = if port == self.default_port {
                            verdict.host.clone()
                        } else {
                            compact_str::format_compact!("{}:{port}", verdict.host)
                        };
                        // The policy allowed the request (the decision stays `allow`); it is not
                        // sent without the identity its upstream is promised.
                        if let Err(e) = sign_in.identity_headers(&route_host, u, &mut identity) {
                            if matches!(e, SignInError::Assertion(_)) {
                                tracing::error!(request_id = %request_id, route = route_name, error = %e,
                                    "identity headers cannot be made: the request is not sent");
                            } else {
                                tracing::warn!(request_id = %request_id, route = route_name, error = %e,
                                    "identity headers cannot be made: the request is not sent");
                            }
                            verdict.action =
                                Action::Reply(e.reply(request_id, call.json(), call.brand));
                            return verdict;
                        }
                    }
                    if impersonate {
                        impersonation_headers(&u.data, &mut identity);
                    }
                }
                let cookie = match (sign_in, read_cookies) {
                    (Some(sign_in), Some(cookies)) if proxies => {
                        UpstreamCookie::of(sign_in, cookies)
                    }
                    // No `Cookie` header: none to take the session out of, or to join.
                    _ if !self.has_cookie => UpstreamCookie::AsSent,
                    _ => UpstreamCookie::Unread,
                };
                verdict.action = Action::Forward {
                    identity,
                    // A token that identified the client is the proxy's to read, not the
                    // upstream's.
                    drop_authorization: user.is_some()
                        && self.token.is_some_and(|t| t.in_authorization),
                    cookie,
                };
            }
            Decision::Login => {
                verdict.decision = DecisionKind::Login;
                let redirect = sign_in
                    .filter(|_| request::preferred(&req.headers) == request::Preferred::Html)
                    .and_then(|s| s.redirect_to_sign_in(&call));
                let reply = redirect.unwrap_or_else(|| {
                    let (detail, sign_in_url) = match sign_in {
                        Some(_) => (
                            "This page is only for signed-in users. Open it in a browser to sign in.",
                            request::retry_url(req, snapshot.global.insecure),
                        ),
                        None => (
                            "This page is only for signed-in users, and sign-in is not set up on \
                             this proxy. Ask its operator.",
                            None,
                        ),
                    };
                    Reply::page(
                        &Page {
                            status: 401,
                            title: "Unauthorized",
                            detail,
                            request_id,
                            reasons: &codes(),
                            explain: &explain,
                            who: Who::Nobody,
                            route: Some(route_name),
                            sign_in: sign_in_url,
                            brand: Some(call.brand),
                            ..Page::default()
                        },
                        call.json(),
                    )
                });
                verdict.action = Action::Reply(reply);
                return verdict;
            }
            Decision::Deny => {
                verdict.decision = DecisionKind::Deny;
                let codes = codes();
                let page = forbidden(&call, &codes, &explain, route_name);
                let reply = match sign_in {
                    Some(s) => s.denied(&call, page, user.as_ref().map(|u| u.data.email.as_str())),
                    None => Reply::page(&page, call.json()),
                };
                verdict.action = Action::Reply(reply);
                return verdict;
            }
        }

        // Every `Upgrade` header the client sent must name a protocol the route allows (the
        // upstream may read any of them).
        if self.has_upgrade
            && req.headers.get_all(http::header::UPGRADE).iter().any(|u| {
                !route
                    .route
                    .options
                    .allows_upgrade(u.to_str().unwrap_or_default())
            })
        {
            verdict.action = Action::Reply(page(
                400,
                "Bad Request",
                "This route does not allow switching to the protocol this request asks for.",
                &call,
                Some(&route.route.name),
            ));
        } else if route.backends.is_empty() && route.route.options.direct.is_none() {
            verdict.action = Action::Reply(Reply::page(
                &Page {
                    status: 503,
                    title: "Service Unavailable",
                    detail: "The service behind this address is not running right now (the route \
                             has no ready backend). Try again in a moment; if it stays like this, \
                             tell its operator.",
                    request_id,
                    route: Some(&route.route.name),
                    retry: request::retry_url(req, snapshot.global.insecure),
                    brand: Some(call.brand),
                    ..Page::default()
                },
                call.json(),
            ));
        }
        verdict
    }
}

/// What a route's policy reads of a request, apart from the session.
#[derive(Clone, Copy)]
struct PolicyInput<'a> {
    now: chrono::DateTime<chrono::Utc>,
    req: &'a RequestHeader,
    host: &'a str,
    ip: Option<IpAddr>,
    certificate: Option<&'a ppl::ClientCertificate>,
}

impl<'a> PolicyInput<'a> {
    fn request(self, session: Option<&'a ppl::Identity>) -> ppl::Request<'a> {
        ppl::Request {
            time: self.now,
            method: self.req.method.as_str(),
            host: self.host,
            path: self.req.uri.path(),
            headers: &self.req.headers,
            ip: self.ip,
            session,
            client_certificate: self.certificate,
        }
    }
}

/// A request to one of our own endpoints on a route host, with what they read.
#[derive(Clone, Copy)]
pub(super) struct Internal<'a> {
    pub call: &'a Call<'a>,
    pub snapshot: &'a Snapshot,
    pub sign_in: &'a SignIn,
    /// The host addressed (lower case, no port) and the port (default filled in).
    pub host: &'a str,
    pub port: u16,
    /// The certificate chain the client presented on this connection, if any.
    pub client_chain: Option<&'a crate::tls::PeerChain>,
    pub client_ip: Option<IpAddr>,
}

/// `/.pomerium/jwt`: the assertion the route at this host would send upstream — only when
/// that route passes identity headers and its policy allows this user.
fn assertion_for_route(at: &Internal<'_>) -> Reply {
    let Internal {
        call,
        snapshot,
        sign_in,
        host,
        port,
        client_ip,
        client_chain,
    } = *at;
    let req = call.req;
    let fail = |e: SignInError| e.reply(call.request_id, call.json(), call.brand);
    let Some(route) = snapshot.table.lookup(host, port, JWT_PATH) else {
        return fail(SignInError::NotFound);
    };
    let certificate =
        match client_certificate(route, snapshot.global.client_ca.as_deref(), client_chain) {
            Ok(c) => c,
            Err(why) => {
                return page(
                    495,
                    "Client certificate required",
                    why,
                    call,
                    Some(&route.route.name),
                );
            }
        };
    let pass_identity = route
        .route
        .options
        .pass_identity_headers
        .unwrap_or(snapshot.global.pass_identity_headers);
    if !pass_identity {
        return fail(SignInError::NoIdentityForRoute);
    }
    let now = chrono::Utc::now();
    let Some(user) = request::cookies(&req.headers)
        .and_then(|c| sign_in.route_session(&c, host, now.timestamp()))
    else {
        return fail(SignInError::NotSignedIn);
    };
    let request = ppl::Request {
        time: now,
        method: req.method.as_str(),
        host,
        path: JWT_PATH,
        headers: &req.headers,
        ip: client_ip,
        session: Some(&user.identity),
        client_certificate: certificate.as_ref(),
    };
    let eval = route.route.policy.evaluate(&request);
    if eval.decision != Decision::Allow {
        let codes: Vec<&str> = eval.reasons().codes().collect();
        let explain = route.route.policy.explain(&request);
        let page = forbidden(call, &codes, &explain, &route.route.name);
        return sign_in.denied(call, page, Some(user.data.email.as_str()));
    }
    let default_port = if snapshot.global.insecure { 80 } else { 443 };
    let route_host = if port == default_port {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    match sign_in.assertion_reply(&route_host, &user.data, now.timestamp()) {
        Ok(reply) => reply,
        Err(e) => fail(e),
    }
}
