//! Every answer the proxy writes itself — pages, redirects, JSON, the JWKS — is a [`Reply`]
//! value, written to the client in exactly one place ([`write`]). Pages carry the request id
//! that also stands in the access log, as HTML for browsers and JSON for API clients.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use url::Url;

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

/// What a page says. Reason codes of a policy decision are shown, never claim values.
#[derive(Debug, Clone, Default)]
pub struct Page<'a> {
    pub status: u16,
    pub title: &'a str,
    pub detail: &'a str,
    pub request_id: &'a str,
    pub reasons: &'a [&'a str],
    /// The signed-in user's email, when there is one.
    pub email: Option<&'a str>,
    /// A "Try again" link.
    pub retry: Option<String>,
    /// A sign-out button (POST to this URL).
    pub sign_out: Option<String>,
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

impl Page<'_> {
    /// The body and its content type.
    pub fn render(&self, json: bool) -> (&'static str, Bytes) {
        if json {
            let mut v = serde_json::json!({
                "status": self.status,
                "error": self.title,
                "detail": self.detail,
                "request_id": self.request_id,
                "reasons": self.reasons,
            });
            if let Some(email) = self.email {
                v["email"] = email.into();
            }
            if let Some(url) = &self.retry {
                v["retry"] = url.as_str().into();
            }
            if let Some(url) = &self.sign_out {
                v["sign_out"] = url.as_str().into();
            }
            return ("application/json", Bytes::from(v.to_string()));
        }
        let mut body = format!("<p>{}</p>", escape(self.detail));
        if !self.reasons.is_empty() {
            body.push_str("<p>Why:</p><ul>");
            for r in self.reasons {
                body.push_str(&format!("<li><code>{}</code></li>", escape(r)));
            }
            body.push_str("</ul>");
        }
        if let Some(email) = self.email {
            body.push_str(&format!(
                "<p>Signed in as <strong>{}</strong>.</p>",
                escape(email)
            ));
        }
        if let Some(url) = &self.retry {
            body.push_str(&format!("<p><a href=\"{}\">Try again</a></p>", escape(url)));
        }
        if let Some(url) = &self.sign_out {
            body.push_str(&format!(
                "<form method=\"post\" action=\"{}\"><button type=\"submit\">Sign out</button></form>",
                escape(url)
            ));
        }
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;color:#222}}\
             code{{background:#f3f3f3;padding:0 .3em}}small{{color:#777}}</style></head>\
             <body><h1>{title}</h1>{body}\
             <p><small>HTTP {status} · request id <code>{rid}</code></small></p></body></html>\n",
            title = escape(self.title),
            status = self.status,
            rid = escape(self.request_id),
        );
        ("text/html; charset=utf-8", Bytes::from(html))
    }
}

/// Write `reply` as the whole response (`Cache-Control: no-store`, the request id, a body
/// unless the request was HEAD).
pub async fn write(session: &mut Session, reply: Reply, request_id: &str) -> Result<()> {
    let mut resp = ResponseHeader::build(reply.status, Some(reply.headers.len() + 4))?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header("x-request-id", request_id)?;
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
        let p = Page {
            status: 403,
            title: "Forbidden",
            detail: "no",
            request_id: "rid",
            reasons: &["claim-unauthorized"],
            email: Some("<a>@x"),
            retry: None,
            sign_out: Some("http://h/.pomerium/sign_out".into()),
        };
        let (html, v) = both(&p);
        assert!(html.contains("claim-unauthorized") && html.contains("&lt;a&gt;@x"));
        assert!(html.contains("method=\"post\""));
        assert_eq!(v["email"], "<a>@x");
        assert_eq!(v["reasons"][0], "claim-unauthorized");
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
