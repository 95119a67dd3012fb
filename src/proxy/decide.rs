//! The decision for one request, made before anything is proxied: which route, what the policy
//! says (with the session when the answer depends on the user), and either the identity to
//! forward with or the reply to give instead. The proxy writes the verdict once.

use std::net::IpAddr;
use std::sync::Arc;

use pingora::http::RequestHeader;

use super::reply::{Page, Reply};
use super::request;
use super::sanitize::Clean;
use super::signin::{Call, OpenSession, SignIn, SignInError};
use crate::auth::assertion::JWKS_PATH;

/// Where a signed-in user fetches the assertion for a route (Pomerium's path).
const JWT_PATH: &str = "/.pomerium/jwt";
use crate::ppl::{self, Decision};
use crate::routes::{CompiledRoute, Snapshot};

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
        identity: Vec<(http::HeaderName, String)>,
    },
    /// Answer it ourselves.
    Reply(Reply),
}

pub struct Verdict {
    /// The host the client addressed (lower case, no port); empty when it named none.
    pub host: String,
    pub route: Option<Arc<CompiledRoute>>,
    pub decision: DecisionKind,
    pub reasons: ppl::Reasons,
    pub action: Action,
}

impl Verdict {
    fn reply(host: String, decision: DecisionKind, reply: Reply) -> Verdict {
        Verdict {
            host,
            route: None,
            decision,
            reasons: ppl::Reasons::EMPTY,
            action: Action::Reply(reply),
        }
    }
}

/// One of our plain pages (no policy reasons).
fn page(status: u16, title: &str, detail: &str, request_id: &str, json: bool) -> Reply {
    Reply::page(
        &Page {
            status,
            title,
            detail,
            request_id,
            ..Page::default()
        },
        json,
    )
}

/// The client certificate as the route's policy sees it. Routes without
/// `tls_downstream_client_ca` see none; routes with it need a presented chain that their CAs
/// trust (else the error says what is wrong).
fn client_certificate(
    route: &CompiledRoute,
    chain: Option<&crate::tls::PeerChain>,
) -> Result<Option<ppl::ClientCertificate>, &'static str> {
    let Some(verifier) = &route.client_ca else {
        return Ok(None);
    };
    let Some(verifier) = verifier else {
        return Err(
            "This route's client certificate authority cannot be used, so no request is let through.",
        );
    };
    let Some(leaf) = chain.and_then(|c| c.0.first()) else {
        return Err(
            "This route needs a client certificate, and the connection did not present one.",
        );
    };
    let trusted = chain.is_some_and(|c| crate::tls::chain_is_trusted(verifier, &c.0));
    if !trusted {
        return Err(
            "The client certificate presented is not issued by an authority this route trusts, or has expired.",
        );
    }
    ppl::ClientCertificate::from_der(leaf.as_ref(), true)
        .map(Some)
        .map_err(|_| "The client certificate presented cannot be read.")
}

/// Decide what happens to `req`, as `sanitize` left it (`clean`: its host, port and client).
pub async fn decide(
    req: &RequestHeader,
    clean: Clean,
    snapshot: &Snapshot,
    sign_in: Option<&SignIn>,
    request_id: &str,
) -> Verdict {
    let json = request::wants_json(&req.headers);
    let call = Call {
        req,
        request_id,
        json,
    };
    let default_port = if snapshot.global.insecure { 80 } else { 443 };
    let Clean {
        client_ip,
        host,
        port,
        client_chain,
    } = clean;
    let port = port.unwrap_or(default_port);
    let path = req.uri.path();
    if let Some(sign_in) = sign_in {
        if sign_in.is_authenticate_host(&host, port) {
            let reply = match sign_in.authenticate_endpoint(&call, &snapshot.table).await {
                Ok(reply) => reply,
                Err(e) => e.reply(request_id, json),
            };
            return Verdict::reply(host, DecisionKind::Authenticate, reply);
        }
        if path == JWT_PATH && snapshot.table.has_host(&host) {
            let reply = assertion_for_route(
                &call,
                snapshot,
                sign_in,
                (&host, port),
                client_ip,
                client_chain.as_ref(),
            );
            return Verdict::reply(host, DecisionKind::Internal, reply);
        }
        if (path.starts_with("/.pomerium") || path == JWKS_PATH)
            && snapshot.table.has_host(&host)
            && let Some(answer) = sign_in.route_endpoint(&call, path)
        {
            let reply = answer.unwrap_or_else(|e| e.reply(request_id, json));
            return Verdict::reply(host, DecisionKind::Internal, reply);
        }
    }
    let Some(route) = snapshot.table.lookup(&host, port, path).cloned() else {
        let reply = page(
            404,
            "Not Found",
            "No route matches this host and path.",
            request_id,
            json,
        );
        return Verdict::reply(host, DecisionKind::None, reply);
    };

    // A route that verifies client certificates refuses requests without a trusted one
    // before its policy runs; the policy's `client_certificate` then sees it.
    let certificate = match client_certificate(&route, client_chain.as_ref()) {
        Ok(c) => c,
        Err(why) => {
            let reply = page(495, "Client certificate required", why, request_id, json);
            return Verdict::reply(host, DecisionKind::Deny, reply);
        }
    };
    // Policy: first without a session, which decides public routes without touching the
    // cookie; then, when the answer depends on the user, with the session cookie.
    let now = chrono::Utc::now();
    let mut request = ppl::Request {
        time: now,
        method: req.method.as_str(),
        host: &host,
        path,
        headers: &req.headers,
        ip: client_ip,
        session: None,
        client_certificate: certificate.as_ref(),
    };
    let mut eval = route.route.policy.evaluate(&request);
    let pass_identity = route
        .route
        .options
        .pass_identity_headers
        .unwrap_or(snapshot.global.pass_identity_headers);
    let mut user: Option<Arc<OpenSession>> = None;
    if let Some(sign_in) = sign_in
        && (eval.decision != Decision::Allow || pass_identity)
    {
        if let Some(cookies) = request::cookies(&req.headers) {
            user = sign_in.route_session(&cookies, &host, now.timestamp());
        }
        if let Some(u) = &user {
            request.session = Some(&u.identity);
            eval = route.route.policy.evaluate(&request);
        }
    }
    let reasons = eval.reasons();
    let mut verdict = Verdict {
        host,
        route: Some(route.clone()),
        decision: DecisionKind::Allow,
        reasons,
        action: Action::Forward {
            identity: Vec::new(),
        },
    };
    // Reason codes for the pages of a refusal; an allowed request builds none.
    let codes = || -> Vec<&'static str> { reasons.codes().collect() };
    match eval.decision {
        Decision::Allow => {
            if let (Some(sign_in), Some(u), true) = (sign_in, &user, pass_identity) {
                let route_host = if port == default_port {
                    verdict.host.clone()
                } else {
                    format!("{}:{port}", verdict.host)
                };
                let mut identity = Vec::new();
                sign_in.identity_headers(&route_host, &u.data, &mut identity);
                verdict.action = Action::Forward { identity };
            }
        }
        Decision::Login => {
            verdict.decision = DecisionKind::Login;
            let redirect = sign_in
                .filter(|_| request::preferred(&req.headers) == request::Preferred::Html)
                .and_then(|s| s.redirect_to_sign_in(&call));
            let reply = redirect.unwrap_or_else(|| {
                Reply::page(
                    &Page {
                        status: 401,
                        title: "Unauthorized",
                        detail: "Sign in to reach this page.",
                        request_id,
                        reasons: &codes(),
                        ..Page::default()
                    },
                    json,
                )
            });
            verdict.action = Action::Reply(reply);
            return verdict;
        }
        Decision::Deny => {
            verdict.decision = DecisionKind::Deny;
            let codes = codes();
            let reply = match sign_in {
                Some(s) => s.denied(&call, user.as_ref().map(|u| u.data.email.as_str()), &codes),
                None => Reply::page(
                    &Page {
                        status: 403,
                        title: "Forbidden",
                        detail: "The route's policy does not allow this request.",
                        request_id,
                        reasons: &codes,
                        ..Page::default()
                    },
                    json,
                ),
            };
            verdict.action = Action::Reply(reply);
            return verdict;
        }
    }

    let upgrade = req.headers.get(http::header::UPGRADE);
    if upgrade.is_some_and(|u| {
        !route
            .route
            .options
            .allows_upgrade(u.to_str().unwrap_or_default())
    }) {
        verdict.action = Action::Reply(page(
            400,
            "Bad Request",
            "This route does not allow switching to the protocol this request asks for.",
            request_id,
            json,
        ));
    } else if route.backends.is_empty() && route.route.options.direct.is_none() {
        verdict.action = Action::Reply(page(
            503,
            "Service Unavailable",
            "The route has no ready backend.",
            request_id,
            json,
        ));
    }
    verdict
}

/// `/.pomerium/jwt`: the assertion the route at this host would send upstream — only when
/// that route passes identity headers and its policy allows this user.
fn assertion_for_route(
    call: &Call<'_>,
    snapshot: &Snapshot,
    sign_in: &SignIn,
    (host, port): (&str, u16),
    client_ip: Option<IpAddr>,
    client_chain: Option<&crate::tls::PeerChain>,
) -> Reply {
    let req = call.req;
    let fail = |e: SignInError| e.reply(call.request_id, call.json);
    let Some(route) = snapshot.table.lookup(host, port, JWT_PATH) else {
        return fail(SignInError::NotFound);
    };
    let certificate = match client_certificate(route, client_chain) {
        Ok(c) => c,
        Err(why) => {
            return page(
                495,
                "Client certificate required",
                why,
                call.request_id,
                call.json,
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
    let eval = route.route.policy.evaluate(&ppl::Request {
        time: now,
        method: req.method.as_str(),
        host,
        path: JWT_PATH,
        headers: &req.headers,
        ip: client_ip,
        session: Some(&user.identity),
        client_certificate: certificate.as_ref(),
    });
    if eval.decision != Decision::Allow {
        let codes: Vec<&str> = eval.reasons().codes().collect();
        return sign_in.denied(call, Some(user.data.email.as_str()), &codes);
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
