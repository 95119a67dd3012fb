//! Every answer the proxy writes itself — pages, redirects, JSON, the JWKS — is a [`Reply`]
//! value, written to the client in exactly one place ([`write`]). Pages carry the request id
//! that also stands in the access log, as HTML for browsers and JSON for API clients.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use url::Url;

use crate::config::Branding;

/// A whole response: status, headers (repeatable, e.g. `Set-Cookie`) and an optional body with
/// its content type.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(http::HeaderName, String)>,
    pub body: Option<(&'static str, Bytes)>,
}

impl Reply {
    /// A 302 to `location`, setting `cookies` on the way.
    pub fn redirect(location: &Url, cookies: Vec<String>) -> Reply {
        let mut headers: Vec<(http::HeaderName, String)> = cookies
            .into_iter()
            .map(|c| (http::header::SET_COOKIE, c))
            .collect();
        headers.push((http::header::LOCATION, location.to_string()));
        Reply {
            status: 302,
            headers,
            body: None,
        }
    }

    /// A 200 with a body.
    pub fn ok(content_type: &'static str, body: Bytes) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: Some((content_type, body)),
        }
    }

    /// A page, as JSON when `json` else HTML.
    pub fn page(page: &Page<'_>, json: bool) -> Reply {
        let (content_type, body) = page.render(json);
        Reply {
            status: page.status,
            headers: Vec::new(),
            body: Some((content_type, body)),
        }
    }

    /// The same reply, also setting these cookies.
    pub fn with_cookies(mut self, cookies: Vec<String>) -> Reply {
        self.headers
            .extend(cookies.into_iter().map(|c| (http::header::SET_COOKIE, c)));
        self
    }
}

/// Who the page is for, as far as the page should say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Who<'a> {
    /// The page does not talk about the user (no sign-in on this page's path).
    #[default]
    Unsaid,
    /// Sign-in is configured and this request carries no session.
    Nobody,
    /// The signed-in user's email.
    Email(&'a str),
}

/// What a page says. Reason codes are for machines (JSON, access log); people get the
/// sentences of `explain`, which name the policy's rules and the user's own data only.
#[derive(Debug, Clone, Default)]
pub struct Page<'a> {
    pub status: u16,
    pub title: &'a str,
    pub detail: &'a str,
    pub request_id: &'a str,
    /// Reason codes of a policy decision (JSON only).
    pub reasons: &'a [&'a str],
    /// Why, in plain words (see `ppl::Policy::explain`).
    pub explain: &'a [String],
    pub who: Who<'a>,
    /// The route's name, when a route was found.
    pub route: Option<&'a str>,
    /// A "Try again" link.
    pub retry: Option<String>,
    /// A "Sign in" link (for someone not signed in).
    pub sign_in: Option<String>,
    /// A sign-out button (POST to this URL); shown only to a signed-in user.
    pub sign_out: Option<String>,
    /// A link to the start page of the site.
    pub home: Option<String>,
    pub brand: Option<&'a Branding>,
    /// HTML shown after `detail`, built by the caller with every value already escaped.
    pub escaped_html: Option<&'a str>,
}

/// Escape text for HTML content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The default accent colour (white text on it passes WCAG AA).
const PRIMARY: &str = "#1d4ed8";
const SECONDARY: &str = "#f1f5f9";

impl Page<'_> {
    /// The body and its content type.
    pub fn render(&self, json: bool) -> (&'static str, Bytes) {
        if json {
            return ("application/json", Bytes::from(self.json().to_string()));
        }
        ("text/html; charset=utf-8", Bytes::from(self.html()))
    }

    fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "status": self.status,
            "error": self.title,
            "detail": self.detail,
            "request_id": self.request_id,
            "reasons": self.reasons,
        });
        if !self.explain.is_empty() {
            v["explanation"] = self.explain.into();
        }
        match self.who {
            Who::Unsaid => {}
            Who::Nobody => v["signed_in"] = false.into(),
            Who::Email(email) => {
                v["signed_in"] = true.into();
                v["email"] = email.into();
            }
        }
        if let Some(route) = self.route {
            v["route"] = route.into();
        }
        let links = [
            ("retry", &self.retry),
            ("sign_in", &self.sign_in),
            ("sign_out", &self.sign_out),
            ("home", &self.home),
        ];
        for (key, url) in links {
            if let Some(url) = url {
                v[key] = url.as_str().into();
            }
        }
        v
    }

    fn html(&self) -> String {
        let brand = self.brand.cloned().unwrap_or_default();
        let product = brand.product_name.as_deref().unwrap_or("Portcullis");
        let mut body = format!("<p>{}</p>", escape(self.detail));
        body.push_str(self.escaped_html.unwrap_or_default());
        if self.status >= 400
            && let Some(p) = &brand.error_message_first_paragraph
        {
            body.push_str(&format!("<p>{}</p>", escape(p)));
        }
        if !self.explain.is_empty() {
            body.push_str("<h2>Why</h2><ul>");
            for line in self.explain {
                body.push_str(&format!("<li>{}</li>", escape(line)));
            }
            body.push_str("</ul>");
        }
        match self.who {
            Who::Unsaid => {}
            Who::Nobody => body.push_str("<p>You are not signed in.</p>"),
            Who::Email(email) => body.push_str(&format!(
                "<p>You are signed in as <strong>{}</strong>.</p>",
                escape(email)
            )),
        }
        let mut actions = String::new();
        if let Some(url) = &self.retry {
            actions.push_str(&format!(
                "<li><a href=\"{}\">Try again</a></li>",
                escape(url)
            ));
        }
        if let (Some(url), Who::Nobody) = (&self.sign_in, self.who) {
            actions.push_str(&format!("<li><a href=\"{}\">Sign in</a></li>", escape(url)));
        }
        if let Some(url) = self.sign_out.as_ref().filter(|_| self.who != Who::Nobody) {
            let label = if self.status == 403 {
                "Sign out, to sign in as someone else"
            } else {
                "Sign out"
            };
            actions.push_str(&format!(
                "<li><form method=\"post\" action=\"{}\"><button type=\"submit\">{label}</button></form></li>",
                escape(url)
            ));
        }
        if let Some(url) = &self.home {
            actions.push_str(&format!(
                "<li><a href=\"{}\">Go to the start page of this site</a></li>",
                escape(url)
            ));
        }
        if !actions.is_empty() {
            body.push_str(&format!(
                "<h2>What you can do</h2><ul class=\"actions\">{actions}</ul>"
            ));
        }
        let mut facts = String::new();
        if let Some(route) = self.route {
            facts.push_str(&format!("<dt>Route</dt><dd>{}</dd>", escape(route)));
        }
        facts.push_str(&format!(
            "<dt>Status</dt><dd>{}</dd><dt>Request id</dt><dd><code>{}</code></dd>",
            self.status,
            escape(self.request_id)
        ));
        let logo = brand.logo_url.as_ref().map_or(String::new(), |u| {
            format!(
                "<img src=\"{}\" alt=\"\" height=\"32\">",
                escape(u.as_str())
            )
        });
        let favicon = brand.favicon_url.as_ref().map_or(String::new(), |u| {
            format!("<link rel=\"icon\" href=\"{}\">", escape(u.as_str()))
        });
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} · {product}</title>{favicon}<style>\
             body{{font-family:system-ui,sans-serif;max-width:42em;margin:2em auto;padding:0 1em;color:#1e293b;line-height:1.5}}\
             header{{display:flex;align-items:center;gap:.6em;border-bottom:4px solid {primary};padding-bottom:.5em;font-weight:600}}\
             main{{background:{secondary};padding:1em 1.5em;border-radius:6px;margin-top:1em}}\
             a{{color:{primary}}}button{{background:{primary};color:#fff;border:0;border-radius:4px;padding:.5em 1em;font:inherit;cursor:pointer}}\
             button:focus,a:focus{{outline:3px solid #f59e0b;outline-offset:2px}}\
             .actions{{list-style:none;padding:0}}.actions li{{margin:.4em 0}}\
             dl{{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;color:#475569}}dd{{margin:0}}\
             </style></head><body><header>{logo}<span>{product}</span></header>\
             <main><h1>{title}</h1>{body}<h2>Details</h2><dl>{facts}</dl></main></body></html>\n",
            title = escape(self.title),
            product = escape(product),
            primary = brand.primary_color.as_deref().unwrap_or(PRIMARY),
            secondary = brand.secondary_color.as_deref().unwrap_or(SECONDARY),
        )
    }
}

/// Write `reply` as the whole response (`Cache-Control: no-store`, the request id, a body
/// unless the request was HEAD).
pub async fn write(session: &mut Session, reply: Reply, request_id: &str) -> Result<()> {
    let mut resp = ResponseHeader::build(reply.status, Some(reply.headers.len() + 4))?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header(&*super::upstream::X_REQUEST_ID, request_id)?;
    for (name, value) in reply.headers {
        resp.append_header(name, value)?;
    }
    let length = reply.body.as_ref().map_or(0, |(_, b)| b.len());
    if let Some((content_type, _)) = &reply.body {
        resp.insert_header(http::header::CONTENT_TYPE, *content_type)?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, length.to_string())?;
    let head = session.req_header().method == http::Method::HEAD;
    let body = reply.body.filter(|_| !head).map(|(_, b)| b);
    session
        .write_response_header(Box::new(resp), body.is_none())
        .await?;
    if let Some(body) = body {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page as HTML text and as JSON.
    fn both(p: &Page<'_>) -> (String, serde_json::Value) {
        let (_, html) = p.render(false);
        let (_, json) = p.render(true);
        (
            String::from_utf8(html.to_vec()).unwrap(),
            serde_json::from_slice(&json).unwrap(),
        )
    }

    #[test]
    fn html_is_escaped() {
        let p = Page {
            status: 404,
            title: "Not Found",
            detail: "<script>",
            request_id: "abc",
            reasons: &["x-ok"],
            ..Page::default()
        };
        let (ct, _) = p.render(false);
        assert!(ct.starts_with("text/html"));
        let (body, v) = both(&p);
        assert!(body.contains("&lt;script&gt;"));
        assert!(body.contains("abc"));
        assert_eq!(v["request_id"], "abc");
        assert_eq!(v["reasons"][0], "x-ok");
    }

    #[test]
    fn denied_page_shows_reasons_and_email_but_escapes() {
        let explain = ["You need: claim role includes <admin>.".to_string()];
        let p = Page {
            status: 403,
            title: "Forbidden",
            detail: "no",
            request_id: "rid",
            reasons: &["claim-unauthorized"],
            explain: &explain,
            who: Who::Email("<a>@x"),
            route: Some("<r>"),
            sign_out: Some("http://h/.pomerium/sign_out".into()),
            ..Page::default()
        };
        let (html, v) = both(&p);
        assert!(
            !html.contains("claim-unauthorized"),
            "codes are for machines"
        );
        assert!(html.contains("&lt;a&gt;@x") && html.contains("&lt;r&gt;"));
        assert!(html.contains("includes &lt;admin&gt;"));
        assert!(html.contains("method=\"post\""));
        assert_eq!(v["email"], "<a>@x");
        assert_eq!(v["reasons"][0], "claim-unauthorized");
        assert_eq!(v["explanation"][0], explain[0]);
    }

    #[test]
    fn nobody_signed_in_gets_no_sign_out_button_but_a_sign_in_link() {
        let p = Page {
            status: 403,
            title: "Forbidden",
            request_id: "rid",
            who: Who::Nobody,
            sign_out: Some("http://h/.pomerium/sign_out".into()),
            sign_in: Some("http://h/x".into()),
            ..Page::default()
        };
        let (html, v) = both(&p);
        assert!(
            !html.contains("Sign out") && !html.contains("<form"),
            "{html}"
        );
        assert!(html.contains("You are not signed in.") && html.contains(">Sign in</a>"));
        assert_eq!(v["signed_in"], false);
    }

    #[test]
    fn branding_changes_name_logo_and_colours_and_is_escaped() {
        let brand = Branding {
            product_name: Some("Acme <Access>".into()),
            primary_color: Some("#0a5".into()),
            logo_url: Some(Url::parse("https://cdn.test/l.png?a=1&b=\"x").unwrap()),
            ..Branding::default()
        };
        let p = Page {
            status: 404,
            title: "Not Found",
            request_id: "rid",
            brand: Some(&brand),
            ..Page::default()
        };
        let (html, _) = both(&p);
        assert!(html.contains("Acme &lt;Access&gt;") && !html.contains("Portcullis"));
        assert!(html.contains("#0a5"));
        assert!(
            html.contains("<img src=\"https://cdn.test/l.png?a=1&amp;b=%22x\""),
            "{html}"
        );
    }

    #[test]
    fn a_redirect_sets_its_cookies_before_the_location() {
        let r = Reply::redirect(
            &Url::parse("https://a.test/x").unwrap(),
            vec!["a=1".into(), "b=2".into()],
        );
        assert_eq!(r.status, 302);
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["set-cookie", "set-cookie", "location"]);
        assert!(r.body.is_none());
    }
}
