//! The routes portal at `/.pomerium/routes` (Pomerium's path) on every route host: the routes
//! the requesting user may open, each route's policy evaluated for that user (public routes
//! too), with the route's cosmetic `name`, `description` and `logo_url`. HTML, or JSON for
//! `Accept: application/json`. Routes that have no single address to link to (wildcard or
//! catch-all hosts, regular-expression paths) are not listed.

use std::fmt::Write as _;

use bytes::Bytes;
use serde::Serialize;

use super::decide::Internal;
use super::reply::{Page, Reply, Who, escape};
use super::request;
use crate::config::{HostPattern, PathMatch};
use crate::ppl::{self, Decision};

/// Pomerium's path for the portal.
pub const PORTAL_PATH: &str = "/.pomerium/routes";

#[derive(Serialize)]
struct Entry<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logo_url: Option<&'a str>,
    url: String,
}

/// The portal for the user signed in on `host` (or for nobody).
pub(super) fn portal(at: &Internal<'_>) -> Reply {
    let (call, snapshot, port) = (at.call, at.snapshot, at.port);
    let now = chrono::Utc::now();
    let user = request::cookies(&call.req.headers)
        .and_then(|c| at.sign_in.route_session(&c, at.host, now.timestamp()));
    let insecure = snapshot.global.insecure;
    let default_port = if insecure { 80 } else { 443 };
    let mut entries = Vec::new();
    for r in &snapshot.table.routes {
        let route = &r.route;
        let HostPattern::Exact(route_host) = &route.host else {
            continue;
        };
        let path = match &route.path {
            PathMatch::Any => "/",
            PathMatch::Prefix(p) | PathMatch::Exact(p) => p.as_str(),
            PathMatch::Regex(_) => continue,
        };
        let eval = route.policy.evaluate(&ppl::Request {
            time: now,
            method: "GET",
            host: route_host,
            path,
            headers: &ppl::NoHeaders,
            ip: at.client_ip,
            session: user.as_ref().map(|u| &u.identity),
            client_certificate: None,
        });
        if eval.decision != Decision::Allow {
            continue;
        }
        // A route on a port of its own is linked there; else on the port this page came on.
        let port = route.port.unwrap_or(port);
        let authority = if port == default_port {
            route_host.clone()
        } else {
            format!("{route_host}:{port}")
        };
        entries.push(Entry {
            name: route.options.display_name.as_deref().unwrap_or(&route.name),
            description: route.options.description.as_deref(),
            logo_url: route.options.logo_url.as_ref().map(|u| u.as_str()),
            url: format!("{}://{authority}{path}", request::scheme(insecure)),
        });
    }
    let email = user.as_ref().map(|u| u.data.email.as_str());
    if call.json() {
        let v = serde_json::json!({
            "signed_in": email.is_some(),
            "email": email,
            "routes": entries,
        });
        return Reply::ok("application/json", Bytes::from(v.to_string()));
    }
    let mut list = String::new();
    for e in &entries {
        let logo = e.logo_url.map_or(String::new(), |u| {
            format!(
                "<img src=\"{}\" alt=\"\" width=\"24\" height=\"24\"> ",
                escape(u)
            )
        });
        let _ = write!(
            list,
            "<li>{logo}<a href=\"{}\">{}</a>",
            escape(&e.url),
            escape(e.name)
        );
        if let Some(d) = e.description {
            let _ = write!(list, "<br><span>{}</span>", escape(d));
        }
        list.push_str("</li>");
    }
    let detail = if entries.is_empty() {
        "There is no route you may open."
    } else {
        "The routes you may open:"
    };
    Reply::page(
        &Page {
            status: 200,
            title: "Routes",
            detail,
            request_id: call.request_id,
            who: email.map_or(Who::Nobody, Who::Email),
            sign_out: email.map(|_| "/.pomerium/sign_out".to_string()),
            brand: Some(call.brand),
            escaped_html: Some(&format!("<ul class=\"routes\">{list}</ul>")),
            ..Page::default()
        },
        false,
    )
}
