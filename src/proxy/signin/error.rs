//! Everything that can go wrong in sign-in, and the one conversion into the page the user sees:
//! status, title, what happened, and a "Try again" link where one helps.

use super::super::reply::{Page, Reply};
use crate::auth::AssertionError;
use crate::config::Branding;

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the request URL is not valid")]
    BadUrl,
    #[error("no such page")]
    NotFound,
    #[error("not signed in")]
    NotSignedIn,
    #[error("the route passes no identity")]
    NoIdentityForRoute,
    #[error("the assertion could not be signed: {0}")]
    Assertion(#[source] AssertionError),
    #[error("the claim {claim} cannot be sent in the header {header}")]
    ClaimNotAHeader { header: String, claim: String },
    #[error("the sign-in hand-off is not valid")]
    HandOff { home: String },
    #[error("the sign-in link names no address to return to")]
    NoReturn,
    #[error("the address to return to is not one of this proxy's routes")]
    ReturnNotAllowed,
    #[error("the address to return to has no host")]
    ReturnHasNoHost,
    #[error("the sign-in link is expired or invalid")]
    LinkInvalid { retry: String },
    #[error("the identity provider cannot be reached")]
    IdpUnavailable { retry: String },
    #[error("the identity provider's answer has no state")]
    NoState,
    #[error("the state has expired")]
    StateExpired { retry: Option<String> },
    #[error("the state is not one this proxy issued")]
    StateForged,
    #[error("the identity provider refused the sign-in: {error}")]
    IdpRefused {
        error: String,
        description: String,
        retry: Option<String>,
    },
    #[error("the sign-in's nonce cookie is missing or different")]
    NonceMismatch { retry: Option<String> },
    #[error("the identity provider's answer has no code")]
    NoCode { retry: Option<String> },
    #[error("the code exchange or the ID token failed")]
    Exchange { retry: Option<String> },
    #[error("the token was refused: {0}")]
    TokenRefused(#[source] crate::auth::oidc::VerifyError),
    #[error("the user's roles could not be read from the directory")]
    Directory {
        retry: Option<String>,
        retry_after: Option<u64>,
    },
}

impl SignInError {
    fn status(&self) -> u16 {
        match self {
            SignInError::NotFound | SignInError::NoIdentityForRoute => 404,
            SignInError::NotSignedIn => 401,
            SignInError::TokenRefused(crate::auth::oidc::VerifyError::Provider(_)) => 503,
            SignInError::TokenRefused(_) => 401,
            SignInError::Assertion(_) | SignInError::ClaimNotAHeader { .. } => 500,
            SignInError::IdpUnavailable { .. } | SignInError::Directory { .. } => 503,
            SignInError::IdpRefused { error, .. } if error == "access_denied" => 403,
            _ => 400,
        }
    }

    fn title(&self) -> &'static str {
        match self {
            SignInError::BadUrl => "Bad request",
            SignInError::NotFound | SignInError::NoIdentityForRoute => "Not Found",
            SignInError::NotSignedIn => "Unauthorized",
            SignInError::TokenRefused(crate::auth::oidc::VerifyError::Provider(_)) => {
                "Identity provider unavailable"
            }
            SignInError::TokenRefused(_) => "Token refused",
            SignInError::Assertion(_) => "Internal Error",
            SignInError::ClaimNotAHeader { .. } => "Your identity cannot be passed on",
            SignInError::NoReturn
            | SignInError::ReturnNotAllowed
            | SignInError::ReturnHasNoHost
            | SignInError::IdpRefused { .. } => "Sign-in refused",
            SignInError::LinkInvalid { .. } => "Sign-in link expired or invalid",
            SignInError::IdpUnavailable { .. } => "Identity provider unavailable",
            SignInError::Directory { .. } => "Your roles could not be read",
            SignInError::StateExpired { .. } => "Sign-in expired",
            SignInError::HandOff { .. }
            | SignInError::NoState
            | SignInError::StateForged
            | SignInError::NonceMismatch { .. }
            | SignInError::NoCode { .. }
            | SignInError::Exchange { .. } => "Sign-in failed",
        }
    }

    fn detail(&self) -> String {
        let text = match self {
            SignInError::BadUrl => "The request URL is not valid.",
            SignInError::NotFound => "No such page.",
            SignInError::NotSignedIn => "Not signed in.",
            SignInError::TokenRefused(crate::auth::oidc::VerifyError::Provider(_)) => {
                "The identity provider's keys cannot be read right now, so the token cannot be checked."
            }
            SignInError::TokenRefused(why) => {
                return format!(
                    "The identity provider token sent with this request was refused: {why}."
                );
            }
            SignInError::NoIdentityForRoute => {
                "This route does not pass identity to its upstream, so it has no assertion."
            }
            SignInError::Assertion(_) => "The assertion could not be signed.",
            SignInError::ClaimNotAHeader { header, claim } => {
                return format!(
                    "Your account's {claim} holds characters that cannot be sent in the header \
                     {header}, which this service receives it in, so the request was not sent. \
                     Tell the operator of this service."
                );
            }
            SignInError::HandOff { .. } => {
                "The sign-in hand-off is not valid (expired, altered or for another host)."
            }
            SignInError::NoReturn => "The sign-in link names no address to return to.",
            SignInError::ReturnNotAllowed => {
                "The address to return to after sign-in is not one of this proxy's routes."
            }
            SignInError::ReturnHasNoHost => "The address to return to has no host.",
            SignInError::LinkInvalid { .. } => {
                "This sign-in link is not valid any more. Go back to the application to start again."
            }
            SignInError::IdpUnavailable { .. } => {
                "The identity provider cannot be reached right now."
            }
            SignInError::NoState => "The identity provider's answer has no state.",
            SignInError::StateExpired { .. } => "The sign-in took too long.",
            SignInError::StateForged => {
                "The sign-in answer could not be verified (its state is not one this proxy issued)."
            }
            SignInError::IdpRefused {
                error, description, ..
            } => {
                return if description.is_empty() {
                    format!("The identity provider refused the sign-in ({error}).")
                } else {
                    format!("The identity provider refused the sign-in ({error}: {description}).")
                };
            }
            SignInError::NonceMismatch { .. } => {
                "This sign-in was started in another browser, or its cookie was lost."
            }
            SignInError::NoCode { .. } => "The identity provider's answer has no code.",
            SignInError::Directory { retry_after, .. } => {
                let when = match retry_after {
                    Some(s) => format!(" Try again in {} seconds.", (*s).max(1)),
                    None => String::new(),
                };
                return format!(
                    "You signed in, but the directory that lists your roles (the Auth0 Management API) is not answering, and access here may depend on them, so sign-in stops.{when}"
                );
            }
            SignInError::Exchange { .. } => {
                "The sign-in could not be completed with the identity provider (the code was refused, or the ID token did not verify)."
            }
        };
        text.to_string()
    }

    fn retry(&self) -> Option<&str> {
        match self {
            SignInError::HandOff { home: retry }
            | SignInError::LinkInvalid { retry }
            | SignInError::IdpUnavailable { retry } => Some(retry.as_str()),
            SignInError::StateExpired { retry }
            | SignInError::IdpRefused { retry, .. }
            | SignInError::NonceMismatch { retry }
            | SignInError::NoCode { retry }
            | SignInError::Exchange { retry }
            | SignInError::Directory { retry, .. } => retry.as_deref(),
            _ => None,
        }
    }

    /// Seconds a client should wait before trying again (`Retry-After` on 503s).
    fn retry_after(&self) -> Option<u64> {
        match self {
            SignInError::IdpUnavailable { .. }
            | SignInError::TokenRefused(crate::auth::oidc::VerifyError::Provider(_)) => Some(5),
            SignInError::Directory { retry_after, .. } => Some(retry_after.unwrap_or(5).max(1)),
            _ => None,
        }
    }

    /// The page for this error.
    pub fn reply(&self, request_id: &str, json: bool, brand: &Branding) -> Reply {
        let detail = self.detail();
        let mut reply = Reply::page(
            &Page {
                status: self.status(),
                title: self.title(),
                detail: &detail,
                request_id,
                retry: self.retry().map(str::to_string),
                brand: Some(brand),
                ..Page::default()
            },
            json,
        );
        if let Some(s) = self.retry_after() {
            reply
                .headers
                .push((http::header::RETRY_AFTER, s.to_string()));
        }
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_denied_from_the_provider_is_a_403_with_a_retry_link() {
        let e = SignInError::IdpRefused {
            error: "access_denied".into(),
            description: "no <b>".into(),
            retry: Some("https://app.test/x".into()),
        };
        let r = e.reply("rid", false, &Branding::default());
        assert_eq!(r.status, 403);
        let body = String::from_utf8(r.body.unwrap().1.to_vec()).unwrap();
        assert!(body.contains("access_denied: no &lt;b&gt;"), "{body}");
        assert!(body.contains("Try again") && body.contains("https://app.test/x"));
    }

    #[test]
    fn other_provider_errors_are_400_and_an_unreachable_provider_is_503() {
        let e = SignInError::IdpRefused {
            error: "login_required".into(),
            description: String::new(),
            retry: None,
        };
        assert_eq!(e.reply("rid", true, &Branding::default()).status, 400);
        let down = SignInError::IdpUnavailable {
            retry: "https://app.test/".into(),
        };
        let r = down.reply("rid", true, &Branding::default());
        assert_eq!(r.status, 503);
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == http::header::RETRY_AFTER && v == "5")
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body.unwrap().1).unwrap();
        assert_eq!(v["retry"], "https://app.test/");
    }
}
