//! What every route host answers for sign-in: the hand-off callback that installs the route
//! cookie, sign-out, "who am I", the assertion, the JWKS; and the two answers a route's policy
//! can lead to: the redirect to sign-in and the 403 page.

use bytes::Bytes;

use super::{Call, SignIn, SignInError, now};
use crate::auth::assertion::JWKS_PATH;
use crate::auth::signed::CALLBACK_PATH;
use crate::auth::{HandOff, host_and_port};
use crate::proxy::reply::{Page, Reply, Who};
use crate::proxy::request;

impl SignIn {
    /// Answers `/.pomerium/*` and the JWKS on a route host; `None` when the path is neither
    /// (the request goes on to the route).
    pub fn route_endpoint(
        &self,
        call: &Call<'_>,
        path: &str,
    ) -> Option<Result<Reply, SignInError>> {
        if path == JWKS_PATH {
            return Some(Ok(Reply::ok("application/json", self.jwks.clone())));
        }
        if !(path == "/.pomerium" || path.starts_with("/.pomerium/")) {
            return None;
        }
        Some(self.pomerium_path(call, path))
    }

    fn pomerium_path(&self, call: &Call<'_>, path: &str) -> Result<Reply, SignInError> {
        let url = request::url(call.req, self.route_scheme()).ok_or(SignInError::BadUrl)?;
        let now = now();
        let cookies = request::cookies(&call.req.headers);
        let bare_host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let current = cookies
            .as_deref()
            .and_then(|c| self.route_session(c, &bare_host, now))
            .map(|s| s.data.clone());
        let host = host_and_port(&url).unwrap_or_default();
        match path {
            CALLBACK_PATH => self.install_session(&url, &bare_host, cookies.as_deref(), now),
            "/.pomerium/sign_out" => {
                if !SignIn::same_origin_post(call.req, &host) {
                    let mut form = url.clone();
                    form.set_query(None);
                    // Nobody signed in here: the page says so and offers no button.
                    let Some(email) = current.as_ref().map(|s| s.email.as_str()) else {
                        return Ok(not_signed_in(call));
                    };
                    return Ok(SignIn::confirm_sign_out(call, &form, Some(email)));
                }
                let set = self.route_cookie.clear_cookie_headers(cookies.as_deref());
                let sid = current.as_ref().map(|s| s.sid.as_str());
                Ok(Reply::redirect(&self.signed_sign_out_url(sid), set))
            }
            "/.pomerium" | "/.pomerium/" => {
                let mut sign_out = url.clone();
                sign_out.set_path("/.pomerium/sign_out");
                sign_out.set_query(None);
                Ok(who_am_i(call, current.as_ref(), &sign_out))
            }
            _ => Err(SignInError::NotFound),
        }
    }

    /// The assertion for `route_host` as `/.pomerium/jwt` answers it (the caller has checked
    /// the route's policy and that it passes identity).
    pub fn assertion_reply(
        &self,
        route_host: &str,
        session: &crate::auth::SessionData,
        now: i64,
    ) -> Result<Reply, SignInError> {
        let token = self.assertion(route_host, session, now)?;
        Ok(Reply::ok("application/jwt", Bytes::from_owner(token)))
    }

    /// The hand-off from the authenticate host: accepted once, only by the browser that was
    /// sent to sign in from this host (its nonce cookie), then the route cookie is set, bound
    /// to this host (or the cookie domain).
    fn install_session(
        &self,
        url: &url::Url,
        host: &str,
        cookies: Option<&str>,
        now: i64,
    ) -> Result<Reply, SignInError> {
        let refused = |reason: &dyn std::fmt::Display| {
            tracing::info!(reason = %reason, "sign-in hand-off refused");
            let mut home = url.clone();
            home.set_path("/");
            home.set_query(None);
            SignInError::HandOff {
                home: home.to_string(),
            }
        };
        let ticket = HandOff::open(&self.key, &self.signer, url, now).map_err(|e| refused(&e))?;
        let nonce = cookies.and_then(|c| self.browser_cookie.read(c));
        if !nonce.is_some_and(|n| ticket.matches_browser(&n)) {
            return Err(refused(&"not the browser that was sent to sign in"));
        }
        if !self
            .used_hand_offs
            .first_use(&ticket.id, ticket.expires_at, now)
        {
            return Err(refused(&"already used"));
        }
        let sealed = self
            .route_sealer
            .seal_for(self.cookie_scope(host), &ticket.session);
        let mut set = self.route_cookie.set_cookie_headers(&sealed, cookies);
        set.extend(self.browser_cookie.clear_cookie_headers(None));
        Ok(Reply::redirect(&ticket.return_to, set))
    }

    /// The 302 to sign-in for a browser without a (fresh) session, setting the nonce that the
    /// hand-off must come back to; `None` when the request's URL cannot be rebuilt.
    pub fn redirect_to_sign_in(&self, call: &Call<'_>) -> Option<Reply> {
        let url = request::url(call.req, self.route_scheme())?;
        let cookies = request::cookies(&call.req.headers);
        // A browser sent to sign in twice (two tabs) keeps one nonce for both.
        let nonce = cookies
            .as_deref()
            .and_then(|c| self.browser_cookie.read(c))
            .map(std::borrow::Cow::into_owned)
            .filter(|n| {
                n.len() == 22
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .unwrap_or_else(crate::auth::new_session_id);
        let set = self.browser_cookie.set_cookie_headers(&nonce, None);
        Some(Reply::redirect(&self.sign_in_url(&url, &nonce), set))
    }

    /// The 403 page for a request the policy denies: why (`explain`), who is asking, and what
    /// they can do (sign out, to sign in as someone else; go to the site's start page). Nobody
    /// signed in is offered no sign-in: a request the policy denies without a session is one
    /// that signing in would not change (else the decision would have been a sign-in).
    pub fn denied(&self, call: &Call<'_>, page: Page<'_>, email: Option<&str>) -> Reply {
        let url = request::url(call.req, self.route_scheme());
        let at = |path: &str| {
            url.clone().map(|mut u| {
                u.set_path(path);
                u.set_query(None);
                u.to_string()
            })
        };
        Reply::page(
            &Page {
                who: email.map_or(Who::Nobody, Who::Email),
                sign_out: email.and_then(|_| at("/.pomerium/sign_out")),
                home: at("/"),
                brand: Some(call.brand),
                ..page
            },
            call.json(),
        )
    }
}

/// A sign-out asked of a host where nobody is signed in.
fn not_signed_in(call: &Call<'_>) -> Reply {
    Reply::page(
        &Page {
            status: 400,
            title: "Not signed in",
            detail: "You are not signed in on this site, so there is nothing to sign out of.",
            request_id: call.request_id,
            who: Who::Nobody,
            home: Some("/".to_string()),
            brand: Some(call.brand),
            ..Page::default()
        },
        call.json(),
    )
}

/// `/.pomerium/`: the signed-in user (HTML, or JSON for API clients).
fn who_am_i(
    call: &Call<'_>,
    current: Option<&crate::auth::SessionData>,
    sign_out: &url::Url,
) -> Reply {
    if call.json() {
        let v = match current {
            Some(d) => serde_json::json!({
                "signed_in": true,
                "user": d.user,
                "email": d.email,
                "name": d.name,
                "groups": d.groups,
                "claims": d.claims,
                "expires_at": d.expires_at,
                "id_token_expires_at": d.id_token_expires_at,
            }),
            None => serde_json::json!({"signed_in": false}),
        };
        return Reply::ok("application/json", Bytes::from(v.to_string()));
    }
    let detail = match current {
        Some(d) => format!(
            "User {} ({}), groups: {}.",
            d.user,
            d.name.as_deref().unwrap_or("no name"),
            if d.groups.is_empty() {
                "none".to_string()
            } else {
                d.groups.join(", ")
            }
        ),
        None => "You are not signed in on this host.".to_string(),
    };
    Reply::page(
        &Page {
            status: 200,
            title: "Who am I",
            detail: &detail,
            request_id: call.request_id,
            who: current.map_or(Who::Nobody, |d| Who::Email(d.email.as_str())),
            sign_out: current.map(|_| sign_out.to_string()),
            brand: Some(call.brand),
            ..Page::default()
        },
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{request, session, sign_in};
    use super::*;

    static BRAND: crate::config::Branding = crate::config::Branding {
        product_name: None,
        primary_color: None,
        secondary_color: None,
        logo_url: None,
        favicon_url: None,
        error_message_first_paragraph: None,
    };

    fn call<'a>(req: &'a pingora::http::RequestHeader) -> Call<'a> {
        Call {
            req,
            request_id: "rid",
            brand: &BRAND,
        }
    }

    /// What a POST to a route host's sign-out from a page of `origin` gets.
    fn sign_out_from(origin: &str) -> Reply {
        let req = request(
            "POST",
            "https://app.test/.pomerium/sign_out",
            &[("origin", origin)],
        );
        sign_in()
            .route_endpoint(&call(&req), "/.pomerium/sign_out")
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_cross_site_sign_out_gets_a_confirmation_page_not_a_sign_out() {
        let reply = sign_out_from("https://evil.test");
        assert_eq!(reply.status, 400);
        assert!(
            !reply
                .headers
                .iter()
                .any(|(n, _)| n == http::header::SET_COOKIE)
        );
    }

    #[test]
    fn a_same_origin_sign_out_clears_the_cookie_and_goes_to_the_authenticate_host() {
        let reply = sign_out_from("https://app.test");
        assert_eq!(reply.status, 302);
        let location = &reply
            .headers
            .iter()
            .find(|(n, _)| n == http::header::LOCATION)
            .unwrap()
            .1;
        assert!(location.starts_with("https://auth.example.com/.pomerium/sign_out?"));
    }

    #[test]
    fn the_assertion_is_signed_for_the_route_host() {
        let a = sign_in();
        let reply = a.assertion_reply("app.test", &session(), 1).unwrap();
        assert_eq!(reply.status, 200);
        let (content_type, token) = reply.body.unwrap();
        assert_eq!(content_type, "application/jwt");
        let payload = crate::auth::oidc::jwt_payload(std::str::from_utf8(&token).unwrap()).unwrap();
        assert_eq!(payload["aud"], "app.test");
    }

    #[test]
    fn other_paths_go_on_to_the_route() {
        let a = sign_in();
        let req = request("GET", "https://app.test/x", &[]);
        assert!(a.route_endpoint(&call(&req), "/x").is_none());
    }
}
