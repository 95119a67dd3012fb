//! Typed readers for configuration values, collecting errors with their positions.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use url::Url;

use super::{CertificatePair, ConfigError};
use crate::source::{Node, Pos, Value};

/// A secret value: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// The secret as text (secrets given as text are always valid UTF-8).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl AsRef<[u8]> for Secret {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s.into_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A value given in an environment variable: YAML so that lists and maps can be given too, and
/// a plain string when it is not valid YAML.
pub fn env_node(raw: &str) -> Node {
    match Node::parse(raw) {
        // YAML reads `#0a5` as a comment; a variable that says something is not null.
        Ok(n) if n.is_null() && !matches!(raw.trim(), "" | "~" | "null" | "Null" | "NULL") => {
            Node::new(Pos::NONE, Value::String(raw.to_string()))
        }
        Ok(mut n) => {
            strip_positions(&mut n);
            n
        }
        Err(_) => Node::new(Pos::NONE, Value::String(raw.to_string())),
    }
}

fn strip_positions(n: &mut Node) {
    n.pos = Pos::NONE;
    match &mut n.value {
        Value::Seq(items) => items.iter_mut().for_each(strip_positions),
        Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            strip_positions(k);
            strip_positions(v);
        }),
        _ => {}
    }
}

/// The known name nearest to a misspelt one, if it is near enough to be a typo.
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parse a Go-style duration: `30s`, `5m`, `1h30m`, `250ms`, `1.5h`. A bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".to_string());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| {
                format!("invalid duration {text:?}: missing unit (ns, us, ms, s, m, h)")
            })?;
        if num_len == 0 {
            return Err(format!("invalid duration {text:?}"));
        }
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            other => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {other:?} (use ns, us, ms, s, m, h)"
                ));
            }
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Collects errors while reading values of one origin.
pub struct Parser {
    pub origin: String,
    pub errors: Vec<ConfigError>,
    /// Keys accepted with no effect, with why (reported, never an error).
    pub notices: Vec<ConfigError>,
}

impl Parser {
    pub fn new(origin: &str) -> Parser {
        Parser {
            origin: origin.to_string(),
            errors: Vec::new(),
            notices: Vec::new(),
        }
    }

    pub fn notice(&mut self, pos: Pos, key: &str, message: impl Into<String>) {
        self.notices.push(ConfigError {
            origin: self.origin.clone(),
            pos,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// A `*_file` key: the named file's content as a string node at the key's position, so
    /// the value is then read as if it had been written in place.
    pub fn file_content(&mut self, node: &Node, key: &str) -> Option<Node> {
        let path = self.string(node, key)?;
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(Node::new(node.pos, Value::String(text.trim().to_string()))),
            Err(e) => {
                self.error(node.pos, key, format!("cannot read {path:?}: {e}"));
                None
            }
        }
    }

    pub fn error(&mut self, pos: Pos, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            origin: self.origin.clone(),
            pos,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// `null` means "not set".
    pub fn opt<T>(&mut self, node: &Node, f: impl FnOnce(&mut Parser) -> Option<T>) -> Option<T> {
        if node.is_null() { None } else { f(self) }
    }

    fn expected(&mut self, node: &Node, key: &str, what: &str) {
        self.error(
            node.pos,
            key,
            format!("expected {what}, found {}", node.kind()),
        );
    }

    pub fn string(&mut self, node: &Node, key: &str) -> Option<String> {
        match &node.value {
            Value::String(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            _ => {
                self.expected(node, key, "a string");
                None
            }
        }
    }

    /// A string that `parse` reads as one of `values` (named in the error otherwise).
    pub fn choice<T>(
        &mut self,
        node: &Node,
        key: &str,
        parse: impl Fn(&str) -> Option<T>,
        values: &str,
    ) -> Option<T> {
        let text = self.string(node, key)?;
        let value = parse(&text);
        if value.is_none() {
            self.error(node.pos, key, format!("{text:?} is not one of {values}"));
        }
        value
    }

    /// Pomerium's `bearer_token_format`.
    pub fn bearer_format(
        &mut self,
        node: &Node,
        key: &str,
    ) -> Option<crate::guard::bearer::BearerFormat> {
        use crate::guard::bearer::BearerFormat;
        self.choice(node, key, BearerFormat::parse, BearerFormat::VALUES)
    }

    pub fn boolean(&mut self, node: &Node, key: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => {
                self.expected(node, key, "true or false");
                None
            }
        }
    }

    /// A whole number from 0 to `max` (also given as a string, as environment variables are).
    pub fn count(&mut self, node: &Node, key: &str, max: u64) -> Option<u64> {
        let n = match &node.value {
            Value::Int(n) => u64::try_from(*n).ok(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if n <= max => Some(n),
            _ => {
                self.expected(node, key, &format!("a whole number from 0 to {max}"));
                None
            }
        }
    }

    pub fn string_list(&mut self, node: &Node, key: &str) -> Option<Vec<String>> {
        match &node.value {
            Value::Null => Some(Vec::new()),
            // A comma-separated string (the usual form in environment variables).
            Value::String(s) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            ),
            Value::Seq(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    out.push(self.string(item, &format!("{key}[{i}]"))?);
                }
                Some(out)
            }
            _ => {
                self.expected(node, key, "a list of strings");
                None
            }
        }
    }

    pub fn string_map(&mut self, node: &Node, key: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Null => {}
            Value::Map(entries) => {
                for (k, v) in entries {
                    let name = k.key_text();
                    if let Some(s) = self.string(v, &format!("{key}.{name}")) {
                        out.insert(name, s);
                    }
                }
            }
            _ => self.expected(node, key, "a map of strings"),
        }
        out
    }

    pub fn duration(&mut self, node: &Node, key: &str) -> Option<Duration> {
        let text = match &node.value {
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::String(s) => s.clone(),
            _ => {
                self.expected(node, key, "a duration such as 30s or 5m");
                return None;
            }
        };
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(node.pos, key, e);
                None
            }
        }
    }

    pub fn socket_addr(&mut self, node: &Node, key: &str) -> Option<SocketAddr> {
        let text = self.string(node, key)?;
        match parse_socket_addr(&text) {
            Some(a) => Some(a),
            None => {
                self.error(
                    node.pos,
                    key,
                    format!("invalid address {text:?}: use HOST:PORT or :PORT with a numeric IP"),
                );
                None
            }
        }
    }

    /// A CSS colour as `#rgb` or `#rrggbb` (nothing else, so it cannot carry other CSS).
    pub fn color(&mut self, node: &Node, key: &str) -> Option<String> {
        let text = self.string(node, key)?;
        let hex = text.strip_prefix('#').unwrap_or("");
        if (hex.len() == 3 || hex.len() == 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(text);
        }
        self.error(
            node.pos,
            key,
            format!("{text:?} is not a colour: use #rgb or #rrggbb"),
        );
        None
    }

    pub fn http_url(&mut self, node: &Node, key: &str) -> Option<Url> {
        let text = self.string(node, key)?;
        match Url::parse(&text) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some() => {
                Some(u)
            }
            Ok(_) => {
                self.error(
                    node.pos,
                    key,
                    format!("{text:?} is not an http or https URL with a host"),
                );
                None
            }
            Err(e) => {
                self.error(node.pos, key, format!("invalid URL {text:?}: {e}"));
                None
            }
        }
    }

    /// A key of exactly `len` bytes, given as base64 (standard or URL-safe, padded or not).
    pub fn key_bytes(&mut self, node: &Node, key: &str, len: usize) -> Option<super::Secret> {
        let text = self.string(node, key)?;
        match decode_base64(text.trim()) {
            Some(bytes) if bytes.len() == len => Some(super::Secret::new(bytes)),
            Some(bytes) => {
                self.error(
                    node.pos,
                    key,
                    format!(
                        "must decode to {len} bytes, found {} (generate one with `portcullis gen-secrets` or `head -c32 /dev/urandom | base64`)",
                        bytes.len()
                    ),
                );
                None
            }
            None => {
                self.error(node.pos, key, "is not valid base64");
                None
            }
        }
    }

    /// PEM text, either as is or base64-encoded. Returned as PEM text.
    pub fn pem_or_base64(&mut self, node: &Node, key: &str) -> Option<super::Secret> {
        let text = self.string(node, key)?;
        match pem_text(&text) {
            Some(pem) => Some(super::Secret::from(pem)),
            None => {
                self.error(node.pos, key, "is neither PEM nor base64-encoded PEM");
                None
            }
        }
    }

    pub fn certificates(&mut self, node: &Node, key: &str) -> Vec<CertificatePair> {
        let mut out = Vec::new();
        let Some(items) = node.as_seq() else {
            if !node.is_null() {
                self.expected(node, key, "a list of {cert, key}");
            }
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("{key}[{i}]");
            let Some(entries) = item.as_map() else {
                self.expected(item, &path, "a map with cert and key");
                continue;
            };
            let mut cert = None;
            let mut pkey = None;
            for (k, v) in entries {
                let name = k.key_text();
                let sub = format!("{path}.{name}");
                match name.as_str() {
                    "cert" => cert = self.pem_or_base64(v, &sub),
                    "key" => pkey = self.pem_or_base64(v, &sub),
                    _ => self.error(
                        k.pos,
                        &sub,
                        format!("unknown key {name:?} (expected cert, key)"),
                    ),
                }
            }
            match (cert, pkey) {
                (Some(c), Some(k)) => match crate::tls::load_pem(c.as_str(), k.as_str()) {
                    Ok(cert) => out.push(CertificatePair {
                        cert,
                        origin: format!("{}: {path}", self.origin),
                    }),
                    Err(e) => self.error(item.pos, &path, e.to_string()),
                },
                (None, _) if !entries.iter().any(|(k, _)| k.as_str() == Some("cert")) => {
                    self.error(item.pos, &path, "missing cert")
                }
                (_, None) if !entries.iter().any(|(k, _)| k.as_str() == Some("key")) => {
                    self.error(item.pos, &path, "missing key")
                }
                _ => {}
            }
        }
        out
    }

    /// `jwt_claims_headers`: a map of header → claim, or a list of claims (each becomes
    /// `X-Pomerium-Claim-<Claim>`).
    pub fn claims_headers(&mut self, node: &Node, key: &str) -> BTreeMap<String, String> {
        match &node.value {
            Value::Seq(_) | Value::String(_) => {
                let claims = self.string_list(node, key).unwrap_or_default();
                claims
                    .into_iter()
                    .map(|c| (format!("x-pomerium-claim-{}", c.to_ascii_lowercase()), c))
                    .collect()
            }
            Value::Map(entries) => {
                let mut out = BTreeMap::new();
                for (k, v) in entries {
                    let header = k.key_text();
                    let at = format!("{key}.{header}");
                    if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                        self.error(k.pos, &at, "is not a valid header name");
                    } else if crate::guard::headers::is_proxy_own_header(&header) {
                        let names = crate::guard::headers::proxy_own_headers()
                            .collect::<Vec<_>>()
                            .join(", ");
                        self.error(
                            k.pos,
                            &at,
                            format!(
                                "is a header the proxy writes itself or one that frames the \
                                 request ({names}, impersonate-*): choose another name"
                            ),
                        );
                    } else if let Some(claim) = self.string(v, &at) {
                        out.insert(header.to_ascii_lowercase(), claim);
                    }
                }
                out
            }
            // Nothing, or an error for what is neither a list nor a map.
            _ => self.string_map(node, key),
        }
    }
}

pub fn parse_socket_addr(text: &str) -> Option<SocketAddr> {
    let t = text.trim();
    if let Some(port) = t.strip_prefix(':') {
        return port
            .parse::<u16>()
            .ok()
            .map(|p| SocketAddr::from((Ipv4Addr::UNSPECIFIED, p)));
    }
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Some(a);
    }
    let (host, port) = t.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host.eq_ignore_ascii_case("localhost") {
        return Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    host.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, port))
}

pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let compact: String = text.split_whitespace().collect();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(&compact).ok())
}

/// PEM text given as is or base64-encoded.
pub fn pem_text(text: &str) -> Option<String> {
    if text.contains("-----BEGIN ") {
        return Some(text.to_string());
    }
    let bytes = decode_base64(text)?;
    let s = String::from_utf8(bytes).ok()?;
    s.contains("-----BEGIN ").then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_socket_addr(":443"),
            Some("0.0.0.0:443".parse().unwrap())
        );
        assert_eq!(
            parse_socket_addr("127.0.0.1:80"),
            Some("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(
            parse_socket_addr("[::1]:80"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            parse_socket_addr("localhost:9"),
            Some("127.0.0.1:9".parse().unwrap())
        );
        assert_eq!(parse_socket_addr("example.com:80"), None);
        assert_eq!(parse_socket_addr("127.0.0.1"), None);
    }

    #[test]
    fn typos_are_recognised() {
        assert_eq!(closest("adress", super::super::KEYS), Some("address"));
        assert_eq!(closest("zzzzzz", super::super::KEYS), None);
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::from("hunter2".to_string());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
