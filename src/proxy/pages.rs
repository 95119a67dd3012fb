//! The small pages Portcullis answers itself: not found, forbidden, bad gateway, … Each carries
//! the request id that also stands in the access log, as HTML for browsers and JSON for API
//! clients.

use bytes::Bytes;

/// What a page says.
#[derive(Debug, Clone)]
pub struct Page<'a> {
    pub status: u16,
    pub title: &'a str,
    pub detail: &'a str,
    pub request_id: &'a str,
    /// Reason codes of a policy decision, if any (never claim values).
    pub reasons: &'a [&'a str],
}

/// Whether the client prefers JSON (an API client) over HTML (a browser).
pub fn wants_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    let json = accept.find("application/json");
    let html = accept.find("text/html");
    match (json, html) {
        (Some(j), Some(h)) => j < h,
        (Some(_), None) => true,
        _ => false,
    }
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
            let body = serde_json::json!({
                "status": self.status,
                "error": self.title,
                "detail": self.detail,
                "request_id": self.request_id,
                "reasons": self.reasons,
            });
            return ("application/json", Bytes::from(body.to_string()));
        }
        let reasons = if self.reasons.is_empty() {
            String::new()
        } else {
            let items: String = self
                .reasons
                .iter()
                .map(|r| format!("<li><code>{}</code></li>", escape(r)))
                .collect();
            format!("<p>Why:</p><ul>{items}</ul>")
        };
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status} {title}</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;color:#222}}\
             code{{background:#f3f3f3;padding:0 .3em}}small{{color:#777}}</style></head>\
             <body><h1>{status} {title}</h1><p>{detail}</p>{reasons}\
             <p><small>Request id: <code>{rid}</code></small></p></body></html>\n",
            status = self.status,
            title = escape(self.title),
            detail = escape(self.detail),
            rid = escape(self.request_id),
        );
        ("text/html; charset=utf-8", Bytes::from(html))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_only_when_preferred() {
        assert!(wants_json(Some("application/json")));
        assert!(!wants_json(Some("text/html,application/json")));
        assert!(wants_json(Some("application/json, text/html")));
        assert!(!wants_json(None));
        assert!(!wants_json(Some("*/*")));
    }

    #[test]
    fn html_is_escaped() {
        let p = Page {
            status: 404,
            title: "Not Found",
            detail: "<script>",
            request_id: "abc",
            reasons: &["x-ok"],
        };
        let (ct, body) = p.render(false);
        assert!(ct.starts_with("text/html"));
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("&lt;script&gt;"));
        assert!(body.contains("abc"));
        let (_, json) = p.render(true);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["request_id"], "abc");
        assert_eq!(v["reasons"][0], "x-ok");
    }
}
