//! The per-request logic (Pingora's `ProxyHttp`): route lookup, policy, upstream choice,
//! header handling, error pages, access log and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::upstreams::peer::HttpPeer;

use super::pages::{Page, wants_json};
use super::signin;
use super::state::{Global, Shared};
use crate::auth::assertion::JWKS_PATH;
use crate::config::PathMatch;
use crate::ppl::{self, Decision};
use crate::routes::CompiledRoute;

/// The proxy service.
pub struct Portcullis {
    pub shared: Arc<Shared>,
}

/// Per-request state.
pub struct Ctx {
    request_id: String,
    start: Instant,
    route: Option<Arc<CompiledRoute>>,
    global: Option<Global>,
    /// The host the client addressed (lower case, no port).
    host: String,
    decision: &'static str,
    /// The reasons behind the decision, formatted only if the access log is written.
    reasons: ppl::Reasons,
    upstream_error: Option<&'static str>,
    /// `host:port` of the backend chosen for this request.
    upstream_authority: String,
    /// Identity headers for the upstream (assertion, `jwt_claims_headers`).
    identity_headers: Vec<(http::HeaderName, String)>,
}

fn new_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Remove every `X-Pomerium-*` header a client sent: identity is ours to assert.
fn strip_identity_headers(req: &mut RequestHeader) {
    let forged: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-pomerium-"))
        .cloned()
        .collect();
    for name in forged {
        req.remove_header(&name);
    }
}

async fn respond(session: &mut Session, page: Page<'_>) -> Result<()> {
    let accept = session
        .req_header()
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let (content_type, body) = page.render(wants_json(accept));
    let mut resp = ResponseHeader::build(page.status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header("x-request-id", page.request_id)?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Reason codes as a comma-separated list, for the access log.
struct ReasonList(ppl::Reasons);

impl std::fmt::Display for ReasonList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, code) in self.0.codes().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(code)?;
        }
        Ok(())
    }
}

/// Answer with one of our pages (no policy reasons) and end the request.
async fn reply(
    session: &mut Session,
    status: u16,
    title: &str,
    detail: &str,
    request_id: &str,
) -> Result<bool> {
    let page = Page {
        status,
        title,
        detail,
        request_id,
        reasons: &[],
    };
    respond(session, page).await?;
    Ok(true)
}

/// Rewrite the path of an allowed request as the route says.
fn rewrite_path(route: &CompiledRoute, path: &str) -> Option<String> {
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

impl Portcullis {
    fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
        session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
    }
}

#[async_trait]
impl ProxyHttp for Portcullis {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            request_id: new_request_id(),
            start: Instant::now(),
            route: None,
            global: None,
            host: String::new(),
            decision: "-",
            reasons: ppl::Reasons::EMPTY,
            upstream_error: None,
            upstream_authority: String::new(),
            identity_headers: Vec::new(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        strip_identity_headers(session.req_header_mut());
        let snapshot = self.shared.current.load_full();
        ctx.global = Some(snapshot.global.clone());
        let default_port = if snapshot.global.insecure { 80 } else { 443 };
        let Some((host, port)) = super::request_host(session.req_header()) else {
            return reply(
                session,
                400,
                "Bad Request",
                "The request names no host.",
                &ctx.request_id,
            )
            .await;
        };
        ctx.host = host;
        let path = session.req_header().uri.path().to_string();
        let port = port.unwrap_or(default_port);
        let auth = self.shared.auth.load_full();
        if let Some(auth) = &auth {
            // Custom claim headers could be forged too: only Portcullis sets them.
            for (name, _) in &auth.claims_headers {
                session.req_header_mut().remove_header(name);
            }
            if auth.is_authenticate_host(&ctx.host, port) {
                ctx.decision = "authenticate";
                auth.authenticate_endpoint(session, &snapshot.table, &ctx.request_id)
                    .await?;
                return Ok(true);
            }
            if (path.starts_with("/.pomerium") || path == JWKS_PATH)
                && snapshot.table.has_host(&ctx.host)
                && auth.route_endpoint(session, &path, &ctx.request_id).await?
            {
                ctx.decision = "internal";
                return Ok(true);
            }
        }
        let Some(route) = snapshot.table.lookup(&ctx.host, port, &path).cloned() else {
            return reply(
                session,
                404,
                "Not Found",
                "No route matches this host and path.",
                &ctx.request_id,
            )
            .await;
        };
        ctx.route = Some(route.clone());

        // Policy: first without a session, which decides public routes without touching the
        // cookie; then, when the answer depends on the user, with the session cookie.
        let req = session.req_header();
        let now = chrono::Utc::now();
        let ip = Self::client_ip(session);
        let mut eval = route.route.policy.evaluate(&ppl::Request {
            time: now,
            method: req.method.as_str(),
            host: &ctx.host,
            path: &path,
            headers: &req.headers,
            ip,
            session: None,
            client_certificate: None,
        });
        let pass_identity = route
            .route
            .options
            .pass_identity_headers
            .unwrap_or(snapshot.global.pass_identity_headers);
        let mut user: Option<Arc<signin::OpenSession>> = None;
        if let Some(auth) = &auth
            && (eval.decision != Decision::Allow || pass_identity)
        {
            let cookies: Vec<&str> = req
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if !cookies.is_empty() {
                user = auth.route_session(&cookies.join("; "), now.timestamp());
            }
            if let Some(u) = &user {
                eval = route.route.policy.evaluate(&ppl::Request {
                    time: now,
                    method: req.method.as_str(),
                    host: &ctx.host,
                    path: &path,
                    headers: &req.headers,
                    ip,
                    session: Some(&u.identity),
                    client_certificate: None,
                });
            }
        }
        let label = match eval.decision {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Login => "login",
        };
        ctx.decision = label;
        ctx.reasons = eval.reasons();
        // Reason codes for the pages of a refusal; an allowed request builds none.
        let reasons: Vec<&str> = if eval.decision == Decision::Allow {
            Vec::new()
        } else {
            ctx.reasons.codes().collect()
        };
        self.shared
            .metrics
            .decisions
            .with_label_values(&[label])
            .inc();
        match eval.decision {
            Decision::Allow => {
                if let (Some(auth), Some(u), true) = (&auth, &user, pass_identity) {
                    let route_host = if port == default_port {
                        ctx.host.clone()
                    } else {
                        format!("{}:{port}", ctx.host)
                    };
                    auth.identity_headers(&route_host, &u.data, &mut ctx.identity_headers);
                }
            }
            Decision::Login => {
                let accept = session
                    .req_header()
                    .headers
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok());
                if let Some(auth) = &auth
                    && signin::prefers_html(accept)
                    && auth.redirect_to_sign_in(session, &ctx.request_id).await?
                {
                    return Ok(true);
                }
                respond(
                    session,
                    Page {
                        status: 401,
                        title: "Unauthorized",
                        detail: "Sign in to reach this page.",
                        request_id: &ctx.request_id,
                        reasons: &reasons,
                    },
                )
                .await?;
                return Ok(true);
            }
            Decision::Deny => {
                if let Some(auth) = &auth {
                    auth.denied(
                        session,
                        user.as_ref().map(|u| u.data.email.as_str()),
                        &reasons,
                        &ctx.request_id,
                    )
                    .await?;
                    return Ok(true);
                }
                respond(
                    session,
                    Page {
                        status: 403,
                        title: "Forbidden",
                        detail: "The route's policy does not allow this request.",
                        request_id: &ctx.request_id,
                        reasons: &reasons,
                    },
                )
                .await?;
                return Ok(true);
            }
        }

        let is_upgrade = session
            .req_header()
            .headers
            .contains_key(http::header::UPGRADE);
        if is_upgrade && !route.route.options.allow_websockets {
            return reply(
                session,
                400,
                "Bad Request",
                "This route does not allow WebSocket or other protocol upgrades.",
                &ctx.request_id,
            )
            .await;
        }
        if route.backends.is_empty() {
            return reply(
                session,
                503,
                "Service Unavailable",
                "The route has no ready backend.",
                &ctx.request_id,
            )
            .await;
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route chosen"))?;
        let backend = route
            .pick_backend()
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "no backend"))?;
        let Some(addr) = backend.addr else {
            ctx.upstream_error = Some("resolve");
            return Err(Error::explain(
                ErrorType::ConnectNoRoute,
                format!("upstream {} did not resolve", backend.upstream.url),
            ));
        };
        ctx.upstream_authority = backend.upstream.authority();
        let opts = &route.route.options;
        let tls = backend.upstream.tls();
        let sni = opts
            .tls_server_name
            .clone()
            .unwrap_or_else(|| backend.upstream.host().to_string());
        let mut peer = HttpPeer::new(addr, tls, sni);
        peer.group_key = route.pool_key;
        let timeout = opts
            .timeout
            .or(ctx.global.as_ref().map(|g| g.timeout))
            .unwrap_or(Duration::from_secs(30));
        peer.options.connection_timeout = Some(timeout.min(Duration::from_secs(10)));
        peer.options.total_connection_timeout = Some(timeout.min(Duration::from_secs(15)));
        peer.options.read_timeout = Some(timeout);
        peer.options.write_timeout = Some(timeout);
        peer.options.idle_timeout = Some(opts.idle_timeout.unwrap_or(Duration::from_secs(300)));
        if tls {
            if opts.tls_skip_verify {
                peer.options.verify_cert = false;
                peer.options.verify_hostname = false;
            }
            if let Some(ca) = &opts.tls_custom_ca {
                let certs: Vec<pingora::utils::tls::WrappedX509> = ca
                    .iter()
                    .map(|der| {
                        pingora::utils::tls::WrappedX509::new(
                            der.clone(),
                            pingora::utils::tls::parse_x509,
                        )
                    })
                    .collect();
                peer.options.ca = Some(Arc::from(certs.into_boxed_slice()));
            }
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let Some(route) = ctx.route.clone() else {
            return Ok(());
        };
        let opts = &route.route.options;
        // Host header.
        let original_host = session
            .req_header()
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| session.req_header().uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let host = if opts.preserve_host_header {
            original_host.clone()
        } else if let Some(h) = &opts.host_rewrite {
            h.clone()
        } else {
            ctx.upstream_authority.clone()
        };
        upstream.insert_header(http::header::HOST, host)?;
        // HTTP/2 downstream requests carry an absolute URI; send origin-form upstream.
        if let Some(new_path) = rewrite_path(&route, upstream.uri.path()) {
            let query = upstream
                .uri
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            let uri: http::Uri = format!("{new_path}{query}").parse().map_err(|_| {
                Error::explain(
                    ErrorType::InternalError,
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
        for name in &opts.remove_request_headers {
            upstream.remove_header(name.as_str());
        }
        for (k, v) in &opts.set_request_headers {
            upstream.insert_header(k.clone(), v.as_str())?;
        }
        for (k, v) in ctx.identity_headers.drain(..) {
            upstream.insert_header(k, v)?;
        }
        if let Some(auth) = self.shared.auth.load().as_ref() {
            let cookies: Vec<&str> = upstream
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if cookies.iter().any(|c| c.contains(auth.cookie_name())) {
                let rest = auth.without_session_cookie(&cookies.join("; "));
                upstream.remove_header(&http::header::COOKIE);
                if let Some(rest) = rest {
                    upstream.insert_header(http::header::COOKIE, rest)?;
                }
            }
        }
        // Forwarding headers.
        if let Some(ip) = Self::client_ip(session) {
            let xff = match upstream
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prev) if !prev.is_empty() => format!("{prev}, {ip}"),
                _ => ip.to_string(),
            };
            upstream.insert_header("x-forwarded-for", xff)?;
        }
        let proto = if ctx.global.as_ref().is_some_and(|g| g.insecure) {
            "http"
        } else {
            "https"
        };
        upstream.insert_header("x-forwarded-proto", proto)?;
        upstream.insert_header("x-forwarded-host", original_host)?;
        upstream.insert_header("x-request-id", ctx.request_id.as_str())?;
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(route) = &ctx.route {
            for (k, v) in &route.route.options.set_response_headers {
                resp.insert_header(k.clone(), v.as_str())?;
            }
        }
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        e: Box<Error>,
    ) -> Box<Error> {
        ctx.upstream_error.get_or_insert("connect");
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let (status, title, detail, kind) = match e.etype() {
            ErrorType::HTTPStatus(code) => (*code, "Error", "The request failed.", "status"),
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => (
                504,
                "Gateway Timeout",
                "The upstream did not answer in time.",
                "timeout",
            ),
            _ => match e.esource() {
                ErrorSource::Upstream => (
                    502,
                    "Bad Gateway",
                    "The upstream could not be reached or failed.",
                    "connect",
                ),
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        (0, "", "", "downstream")
                    }
                    _ => (
                        400,
                        "Bad Request",
                        "The request could not be read.",
                        "downstream",
                    ),
                },
                ErrorSource::Internal | ErrorSource::Unset => {
                    if ctx.upstream_error.is_some() {
                        (
                            502,
                            "Bad Gateway",
                            "The upstream could not be reached.",
                            "connect",
                        )
                    } else {
                        (500, "Internal Error", "Something went wrong.", "internal")
                    }
                }
            },
        };
        if let Some(route) = &ctx.route
            && kind != "downstream"
        {
            self.shared
                .metrics
                .upstream_errors
                .with_label_values(&[route.route.name.as_str(), kind])
                .inc();
        }
        if status > 0 && session.response_written().is_none() {
            // The connection is not reused after a failed proxy attempt: say so, so that
            // clients do not send their next request into a closing connection.
            session.as_downstream_mut().set_keepalive(None);
            let rid = ctx.request_id.clone();
            if let Err(err) = respond(
                session,
                Page {
                    status,
                    title,
                    detail,
                    request_id: &rid,
                    reasons: &[],
                },
            )
            .await
            {
                tracing::debug!(error = %err, "could not write the error page");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let elapsed = ctx.start.elapsed();
        let route = ctx
            .route
            .as_ref()
            .map(|r| r.route.name.as_str())
            .unwrap_or("-");
        let m = &self.shared.metrics;
        m.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        m.duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
        let req = session.req_header();
        tracing::info!(
            target: "access",
            request_id = %ctx.request_id,
            method = %req.method,
            host = %ctx.host,
            path = %req.uri.path(),
            route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            decision = ctx.decision,
            reasons = %ReasonList(ctx.reasons),
            error = e.map(|e| e.to_string()).unwrap_or_default(),
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HostPattern, Route, RouteOptions, Upstream};
    use crate::routes::RouteTable;

    fn compiled(path: PathMatch, opts: RouteOptions) -> Arc<CompiledRoute> {
        let t = RouteTable::compile(
            vec![Route {
                name: "r".into(),
                scheme: "https".into(),
                host: HostPattern::Exact("a.test".into()),
                port: None,
                path,
                to: vec![Upstream {
                    url: url::Url::parse("http://127.0.0.1:1").unwrap(),
                }],
                policy: ppl::Policy::deny_all(),
                options: opts,
            }],
            &|_, _| None,
        );
        t.routes[0].clone()
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

    #[test]
    fn forged_identity_headers_are_removed() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("X-Pomerium-Jwt-Assertion", "forged")
            .unwrap();
        req.insert_header("x-pomerium-claim-email", "forged")
            .unwrap();
        req.insert_header("x-other", "kept").unwrap();
        strip_identity_headers(&mut req);
        assert!(req.headers.get("x-pomerium-jwt-assertion").is_none());
        assert!(req.headers.get("x-pomerium-claim-email").is_none());
        assert_eq!(req.headers.get("x-other").unwrap(), "kept");
    }
}
