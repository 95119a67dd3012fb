//! The request context of `policy eval --input`: a JSON document describing one request.
//!
//! ```json
//! {"time": "2026-11-28T10:00:00Z",
//!  "http": {"method": "GET", "host": "app.example.com", "path": "/admin",
//!           "headers": {"Origin": "https://x"}, "ip": "203.0.113.7"},
//!  "session": {"user": "auth0|123", "email": "alice@example.com",
//!              "claims": {"https://example.com/roles": ["admin"]}, "groups": ["admin"]},
//!  "client_certificate": {"presented": true, "valid": true, "leaf": "-----BEGIN CERTIFICATE-----..."}}
//! ```
//!
//! Every field is optional (`time` defaults to now, `http.method` to `GET`, `http.path` to
//! `/`; no `session` means not signed in), but an unknown field is an error: a typo must not
//! silently change a decision.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::cert::ClientCertificate;
use super::claims::Claims;
use super::request::{HeaderList, Identity, Request};
use super::{PolicyError, values};
use crate::source::{Node, Value};

/// An owned request context; [`RequestContext::request`] borrows it as a [`Request`].
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub time: DateTime<Utc>,
    pub method: String,
    pub host: String,
    pub path: String,
    pub headers: HeaderList,
    pub ip: Option<IpAddr>,
    pub session: Option<Identity>,
    pub client_certificate: Option<ClientCertificate>,
}

impl RequestContext {
    /// Read a request context from JSON (or YAML) text; `now` stands in for a missing `time`.
    pub fn parse(text: &str, now: DateTime<Utc>) -> Result<RequestContext, Vec<PolicyError>> {
        let node = Node::parse(text).map_err(|e| vec![PolicyError::new(e.pos, e.message)])?;
        RequestContext::from_node(&node, now)
    }

    pub fn from_node(node: &Node, now: DateTime<Utc>) -> Result<RequestContext, Vec<PolicyError>> {
        let mut r = Reader::default();
        let mut ctx = RequestContext {
            time: now,
            method: "GET".to_string(),
            host: String::new(),
            path: "/".to_string(),
            headers: HeaderList::new(),
            ip: None,
            session: None,
            client_certificate: None,
        };
        for (key, value) in r.map("the request context", node) {
            match key.key_text().as_str() {
                "time" => {
                    if let Some(s) = r.string("time", value) {
                        match values::parse_timestamp(s) {
                            Some(t) => ctx.time = t,
                            None => r.error(
                                value,
                                format!("time: invalid RFC 3339 timestamp {s:?} (e.g. \"2026-11-28T10:00:00Z\")"),
                            ),
                        }
                    }
                }
                "http" => r.http(value, &mut ctx),
                "session" => {
                    if !value.is_null() {
                        ctx.session = r.session(value);
                    }
                }
                "client_certificate" => {
                    if !value.is_null() {
                        ctx.client_certificate = r.certificate(value);
                    }
                }
                other => r.unknown(key, "", other, "time, http, session, client_certificate"),
            }
        }
        if r.errors.is_empty() {
            Ok(ctx)
        } else {
            Err(r.errors)
        }
    }

    /// The request as the policy sees it.
    pub fn request(&self) -> Request<'_> {
        Request {
            time: self.time,
            method: &self.method,
            host: &self.host,
            path: &self.path,
            headers: &self.headers,
            ip: self.ip,
            session: self.session.as_ref(),
            client_certificate: self.client_certificate.as_ref(),
        }
    }
}

#[derive(Default)]
struct Reader {
    errors: Vec<PolicyError>,
}

impl Reader {
    fn error(&mut self, node: &Node, message: String) {
        self.errors.push(PolicyError::new(node.pos, message));
    }

    fn unknown(&mut self, key: &Node, prefix: &str, name: &str, expected: &str) {
        self.error(
            key,
            format!("unknown field \"{prefix}{name}\" (expected {expected})"),
        );
    }

    fn map<'n>(&mut self, what: &str, node: &'n Node) -> &'n [(Node, Node)] {
        match node.as_map() {
            Some(entries) => entries,
            None => {
                self.error(
                    node,
                    format!("{what}: expected an object, found {}", node.kind()),
                );
                &[]
            }
        }
    }

    fn string<'n>(&mut self, what: &str, node: &'n Node) -> Option<&'n str> {
        let s = node.as_str();
        if s.is_none() {
            self.error(
                node,
                format!("{what}: expected a string, found {}", node.kind()),
            );
        }
        s
    }

    fn http(&mut self, node: &Node, ctx: &mut RequestContext) {
        for (key, value) in self.map("http", node) {
            match key.key_text().as_str() {
                "method" => {
                    if let Some(s) = self.string("http.method", value) {
                        ctx.method = s.to_string();
                    }
                }
                "host" => {
                    if let Some(s) = self.string("http.host", value) {
                        ctx.host = s.to_string();
                    }
                }
                "path" => {
                    if let Some(s) = self.string("http.path", value) {
                        ctx.path = s.to_string();
                    }
                }
                "ip" => {
                    if value.is_null() {
                        continue;
                    }
                    if let Some(s) = self.string("http.ip", value) {
                        match s.trim().parse::<IpAddr>() {
                            Ok(ip) => ctx.ip = Some(ip),
                            Err(_) => {
                                self.error(value, format!("http.ip: invalid IP address {s:?}"))
                            }
                        }
                    }
                }
                "headers" => {
                    for (name, v) in self.map("http.headers", value) {
                        let name = name.key_text();
                        if let Some(s) = self.string(&format!("http.headers.{name}"), v) {
                            ctx.headers.0.push((name, s.to_string()));
                        }
                    }
                }
                other => self.unknown(key, "http.", other, "method, host, path, headers, ip"),
            }
        }
    }

    fn session(&mut self, node: &Node) -> Option<Identity> {
        let before = self.errors.len();
        let mut id = Identity::default();
        for (key, value) in self.map("session", node) {
            match key.key_text().as_str() {
                "user" => {
                    if let Some(s) = self.string("session.user", value) {
                        id.user = s.to_string();
                    }
                }
                "email" => {
                    if let Some(s) = self.string("session.email", value) {
                        id.email = s.to_string();
                    }
                }
                "claims" => {
                    if value.as_map().is_some() {
                        id.claims = Claims::from_json(&value.to_json());
                    } else if !value.is_null() {
                        self.error(
                            value,
                            format!("session.claims: expected an object, found {}", value.kind()),
                        );
                    }
                }
                "groups" => match &value.value {
                    Value::Seq(items) => {
                        for (i, item) in items.iter().enumerate() {
                            if let Some(s) = self.string(&format!("session.groups[{i}]"), item) {
                                id.groups.push(s.to_string());
                            }
                        }
                    }
                    Value::Null => {}
                    _ => self.error(
                        value,
                        format!(
                            "session.groups: expected a list of strings, found {}",
                            value.kind()
                        ),
                    ),
                },
                other => self.unknown(key, "session.", other, "user, email, claims, groups"),
            }
        }
        (self.errors.len() == before).then_some(id)
    }

    fn certificate(&mut self, node: &Node) -> Option<ClientCertificate> {
        let before = self.errors.len();
        let (mut presented, mut valid, mut leaf) = (None, None, None);
        for (key, value) in self.map("client_certificate", node) {
            let name = key.key_text();
            match name.as_str() {
                "presented" | "valid" => match value.as_bool() {
                    Some(b) if name == "presented" => presented = Some(b),
                    Some(b) => valid = Some(b),
                    None => self.error(
                        value,
                        format!(
                            "client_certificate.{name}: expected true or false, found {}",
                            value.kind()
                        ),
                    ),
                },
                "leaf" => {
                    if let Some(s) = self.string("client_certificate.leaf", value) {
                        leaf = Some((s, value));
                    }
                }
                other => self.unknown(key, "client_certificate.", other, "presented, valid, leaf"),
            }
        }
        if self.errors.len() != before {
            return None;
        }
        let presented = presented.unwrap_or(leaf.is_some());
        match (presented, leaf) {
            (false, None) => Some(ClientCertificate::not_presented()),
            (false, Some((_, node))) => {
                self.error(
                    node,
                    "client_certificate.leaf is given but presented is false".to_string(),
                );
                None
            }
            (true, None) => {
                self.error(
                    node,
                    "client_certificate: presented is true but there is no leaf (the PEM certificate)"
                        .to_string(),
                );
                None
            }
            (true, Some((pem, node))) => {
                match ClientCertificate::from_pem(pem, valid.unwrap_or(false)) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        self.error(node, format!("client_certificate.leaf: {e}"));
                        None
                    }
                }
            }
        }
    }
}
