//! The authenticate service, on the host of `authenticate_service_url`: starting a sign-in at
//! the identity provider (or handing an existing session over: single sign-on), the OAuth
//! callback, and sign-out.

use url::Url;

use super::rules::allowed_return;
use super::{
    BROWSER_PARAM, Call, REDIRECT_PARAM, SESSION_PARAM, SIGN_IN_TTL, SignIn, SignInError, now,
};
use crate::auth::{HandOff, OAuthState, SessionData, host_and_port};
use crate::proxy::reply::{Page, Reply, Who};
use crate::proxy::request;
use crate::routes::RouteTable;

/// The page for a sign-in stopped because the roles could not be read.
fn directory_error(e: &crate::auth::DirectoryError, return_to: &Url) -> SignInError {
    SignInError::Directory {
        retry: Some(return_to.to_string()),
        retry_after: e.retry_after().map(|d| d.as_secs()),
    }
}

/// A request to the authenticate service: the call, its full URL, and the routes (for where
/// sign-in may return to).
struct At<'a> {
    call: &'a Call<'a>,
    url: &'a Url,
    table: &'a RouteTable,
}

fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl SignIn {
    /// Answers a request to the authenticate host.
    pub async fn authenticate_endpoint(
        &self,
        call: &Call<'_>,
        table: &RouteTable,
    ) -> Result<Reply, SignInError> {
        let url = request::url(call.req, self.authenticate.scheme()).ok_or(SignInError::BadUrl)?;
        let at = At {
            call,
            url: &url,
            table,
        };
        match call.req.uri.path() {
            "/.pomerium/sign_in" => self.sign_in(&at).await,
            "/oauth2/callback" => self.callback(&at).await,
            "/.pomerium/sign_out" => Ok(self.authenticate_sign_out(call, &url).await),
            "/.pomerium/signed_out" => Ok(Reply::page(
                &Page {
                    status: 200,
                    title: "Signed out",
                    detail: "You are signed out. Close this window, or go back to the application to sign in again.",
                    request_id: call.request_id,
                    who: Who::Nobody,
                    brand: Some(call.brand),
                    ..Page::default()
                },
                call.json(),
            )),
            _ => Err(SignInError::NotFound),
        }
    }

    fn allowed_return(&self, url: &Url, table: &RouteTable) -> bool {
        allowed_return(
            url,
            self.route_scheme(),
            table,
            (&self.authenticate_host, self.authenticate_port),
        )
    }

    async fn sign_in(&self, at: &At<'_>) -> Result<Reply, SignInError> {
        let (call, url, table) = (at.call, at.url, at.table);
        let return_to = match query_param(url, REDIRECT_PARAM).and_then(|u| Url::parse(&u).ok()) {
            Some(u) if self.allowed_return(&u, table) => u,
            Some(_) => return Err(SignInError::ReturnNotAllowed),
            None => return Err(SignInError::NoReturn),
        };
        let now = now();
        if let Err(e) = self.signer.verify_url(url, now) {
            tracing::info!(reason = %e, "sign-in link refused");
            return Err(SignInError::LinkInvalid {
                retry: return_to.to_string(),
            });
        }
        let browser = query_param(url, BROWSER_PARAM).unwrap_or_default();
        let cookies = request::cookies(&call.req.headers);
        // Single sign-on: a session on the authenticate host is handed to the route host.
        let existing = cookies
            .as_deref()
            .and_then(|c| self.auth_cookie.read(c))
            .and_then(|v| self.auth_sealer.open_at(&v, now).ok());
        if let Some(existing) = existing {
            if !existing.id_token_expired(now) {
                return self.hand_off(&existing, &return_to, &browser, vec![]);
            }
            if let Some(rt) = existing.refresh_token.clone() {
                match self.oidc.refresh(&rt).await {
                    Ok(signed_in) => {
                        // A new session id: assertions cached for the old one (with the old
                        // groups) are not reused.
                        let fresh = self
                            .session_from(signed_in, None)
                            .await
                            .map_err(|e| directory_error(&e, &return_to))?;
                        let set = self
                            .auth_cookie
                            .set_cookie_headers(&self.auth_sealer.seal(&fresh), cookies.as_deref());
                        tracing::info!("session refreshed with the refresh token");
                        return self.hand_off(&fresh, &return_to, &browser, set);
                    }
                    Err(e) if e.is_unreachable() => {
                        // Nothing was refused: keep the session a little longer, up to the ID
                        // token's expiry plus the grace, asking again on each short extension.
                        if let Some(kept) = self.refresh_grace.extend(&existing, now) {
                            tracing::warn!(error = %e, until = kept.id_token_expires_at, "the identity provider cannot be reached: session kept within the refresh grace");
                            return self.hand_off(&kept, &return_to, &browser, vec![]);
                        }
                        tracing::warn!(error = %e, "the identity provider cannot be reached and the refresh grace is over: signing in again");
                    }
                    Err(e) => tracing::info!(error = %e, "silent refresh failed: signing in again"),
                }
            }
        }
        // A new sign-in at the provider, unless it is down: then our 503 page (with a retry
        // link and Retry-After) rather than a browser error on the provider's side.
        if !self.oidc.reachable().await {
            tracing::warn!("cannot start sign-in: the identity provider does not answer");
            return Err(SignInError::IdpUnavailable {
                retry: return_to.to_string(),
            });
        }
        let verifier = crate::auth::oidc::new_pkce_verifier();
        let state = OAuthState::new(&return_to, &verifier, &browser, now);
        let sealed = state.seal(&self.key);
        match self
            .oidc
            .authorize_url(&sealed, &state.nonce, &verifier)
            .await
        {
            Ok(authorize) => Ok(Reply::redirect(
                &authorize,
                self.csrf_cookie.set_cookie_headers(&state.nonce, None),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start sign-in");
                Err(SignInError::IdpUnavailable {
                    retry: return_to.to_string(),
                })
            }
        }
    }

    /// The 302 that hands a session to the route host's callback, for the browser whose
    /// route-host nonce is `browser`.
    fn hand_off(
        &self,
        data: &SessionData,
        return_to: &Url,
        browser: &str,
        cookies: Vec<String>,
    ) -> Result<Reply, SignInError> {
        let target =
            HandOff::callback_url(&self.key, &self.signer, data, return_to, browser, now())
                .ok_or(SignInError::ReturnHasNoHost)?;
        Ok(Reply::redirect(&target, cookies))
    }

    async fn callback(&self, at: &At<'_>) -> Result<Reply, SignInError> {
        let (call, url, table) = (at.call, at.url, at.table);
        let now = now();
        let state_text = query_param(url, "state").ok_or(SignInError::NoState)?;
        // Opened as of the earliest time so that an expired state still says where to try again.
        let state = match OAuthState::open(&self.key, &state_text, i64::MIN) {
            Ok(s) if now >= s.expires_at => {
                let retry = Url::parse(&s.return_url)
                    .ok()
                    .filter(|u| self.allowed_return(u, table))
                    .map(|u| u.to_string());
                return Err(SignInError::StateExpired { retry });
            }
            Ok(s) => s,
            Err(e) => {
                tracing::info!(reason = %e, "sign-in callback with a forged or damaged state");
                return Err(SignInError::StateForged);
            }
        };
        let return_to = Url::parse(&state.return_url)
            .ok()
            .filter(|u| self.allowed_return(u, table));
        let retry = return_to.as_ref().map(Url::to_string);
        // The state is checked whole — sealed by us, not expired, started in this browser —
        // before anything else the provider sent is shown.
        let cookies = request::cookies(&call.req.headers);
        let nonce_ok = cookies
            .as_deref()
            .and_then(|c| self.csrf_cookie.read(c))
            .is_some_and(|n| state.matches_nonce(&n));
        if !nonce_ok {
            return Err(SignInError::NonceMismatch { retry });
        }
        if let Some(error) = query_param(url, "error") {
            let description = query_param(url, "error_description").unwrap_or_default();
            tracing::info!(error = %error, description = %description, "the identity provider refused the sign-in");
            return Err(SignInError::IdpRefused {
                error,
                description,
                retry,
            });
        }
        let Some(return_to) = return_to else {
            return Err(SignInError::ReturnNotAllowed);
        };
        let Some(code) = query_param(url, "code") else {
            return Err(SignInError::NoCode { retry });
        };
        let signed_in = match self
            .oidc
            .exchange_code(&code, &state.pkce_verifier, &state.nonce)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "sign-in could not be completed");
                return Err(SignInError::Exchange { retry });
            }
        };
        let data = self
            .session_from(signed_in, None)
            .await
            .map_err(|e| directory_error(&e, &return_to))?;
        tracing::info!(user = %data.user, "signed in");
        let mut set = self
            .auth_cookie
            .set_cookie_headers(&self.auth_sealer.seal(&data), cookies.as_deref());
        set.extend(self.csrf_cookie.clear_cookie_headers(None));
        self.hand_off(&data, &return_to, &state.browser, set)
    }

    async fn authenticate_sign_out(&self, call: &Call<'_>, url: &Url) -> Reply {
        let host = host_and_port(&self.authenticate).unwrap_or_default();
        let now = now();
        let cookies = request::cookies(&call.req.headers);
        let current = cookies
            .as_deref()
            .and_then(|c| self.auth_cookie.read(c))
            .and_then(|v| self.auth_sealer.open_at(&v, now).ok());
        // A signed link signs out only the session it names (or nothing, when none is left).
        let signed_for_this_session = self.signer.verify_url(url, now).is_ok()
            && match &current {
                None => true,
                Some(session) => query_param(url, SESSION_PARAM).is_some_and(|sid| {
                    bool::from(subtle::ConstantTimeEq::ct_eq(
                        sid.as_bytes(),
                        session.sid.as_bytes(),
                    ))
                }),
            };
        if !(SignIn::same_origin_post(call.req, &host) || signed_for_this_session) {
            let mut form = self.authenticate.clone();
            form.set_path("/.pomerium/sign_out");
            return SignIn::confirm_sign_out(call, &form, None);
        }
        let mut set = self.auth_cookie.clear_cookie_headers(cookies.as_deref());
        set.extend(self.csrf_cookie.clear_cookie_headers(None));
        let signed_out = match &self.signout_redirect {
            Some(url) => url.clone(),
            None => self
                .authenticate
                .join(".pomerium/signed_out")
                .unwrap_or_else(|_| self.authenticate.clone()),
        };
        let target = self
            .oidc
            .logout_url(&signed_out)
            .await
            .unwrap_or(signed_out);
        tracing::info!("signed out");
        Reply::redirect(&target, set)
    }
}

/// Used by `route_host`: a signed link to sign out on the authenticate host, naming the
/// session it signs out.
impl SignIn {
    pub(super) fn signed_sign_out_url(&self, sid: Option<&str>) -> Url {
        let mut next = self.authenticate.clone();
        next.set_path("/.pomerium/sign_out");
        if let Some(sid) = sid {
            next.query_pairs_mut().append_pair(SESSION_PARAM, sid);
        }
        self.signer.sign_url(&next, SIGN_IN_TTL)
    }
}
