//! Conditions on a request beyond host and path (a Gateway API route's header, query
//! parameter and method matches). Empty for every other route, which then matches as before.

use regex::Regex;

/// How a header or query parameter value is compared.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    Exact(String),
    /// Anchored at both ends.
    Regex(Regex),
}

impl PartialEq for ValueMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ValueMatch::Exact(a), ValueMatch::Exact(b)) => a == b,
            (ValueMatch::Regex(a), ValueMatch::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl ValueMatch {
    /// A regular expression over the whole value.
    pub fn regex(pattern: &str) -> Result<ValueMatch, regex::Error> {
        Regex::new(&format!("^(?:{pattern})$")).map(ValueMatch::Regex)
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(v) => v == value,
            ValueMatch::Regex(r) => r.is_match(value),
        }
    }
}

/// Every condition must hold (AND). Header names are stored lower case and compared without
/// case; query parameter names are compared exactly.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestMatch {
    pub method: Option<String>,
    pub headers: Vec<(String, ValueMatch)>,
    pub query: Vec<(String, ValueMatch)>,
}

impl RequestMatch {
    pub fn is_empty(&self) -> bool {
        self.method.is_none() && self.headers.is_empty() && self.query.is_empty()
    }

    /// Whether a request with this method, headers and query (without `?`) satisfies every
    /// condition. A header given several times matches when one of its values does; a query
    /// parameter given several times is read at its first occurrence.
    pub fn matches(&self, method: &str, headers: &http::HeaderMap, query: Option<&str>) -> bool {
        if self.method.as_deref().is_some_and(|m| m != method) {
            return false;
        }
        let header_ok = |(name, want): &(String, ValueMatch)| {
            headers
                .get_all(name.as_str())
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| want.matches(v)))
        };
        if !self.headers.iter().all(header_ok) {
            return false;
        }
        self.query.iter().all(|(name, want)| {
            let first = query.and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name.as_str())
            });
            first.is_some_and(|(_, v)| want.matches(&v))
        })
    }

    /// Which of two routes on the same path is tried first (greater first): a method match,
    /// then more header matches, then more query parameter matches (the Gateway API's order).
    pub fn precedence(&self) -> (bool, usize, usize) {
        (self.method.is_some(), self.headers.len(), self.query.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                h.append(k, v);
            }
        }
        h
    }

    #[test]
    fn every_condition_must_hold() {
        let re = ValueMatch::regex("v[0-9]+").unwrap_or_else(|e| panic!("{e}"));
        let m = RequestMatch {
            method: Some("POST".into()),
            headers: vec![("x-env".into(), ValueMatch::Exact("canary".into()))],
            query: vec![("version".into(), re)],
        };
        let canary = headers(&[("X-Env", "canary")]);
        let cases: &[(&str, &http::HeaderMap, Option<&str>, bool)] = &[
            ("POST", &canary, Some("version=v2"), true),
            ("GET", &canary, Some("version=v2"), false),
            ("POST", &headers(&[]), Some("version=v2"), false),
            (
                "POST",
                &headers(&[("x-env", "stable")]),
                Some("version=v2"),
                false,
            ),
            // One of several values of a header is enough.
            (
                "POST",
                &headers(&[("x-env", "stable"), ("x-env", "canary")]),
                Some("version=v2"),
                true,
            ),
            ("POST", &canary, Some("version=v2x"), false),
            ("POST", &canary, None, false),
            // The first occurrence of a query parameter counts; values are percent-decoded.
            ("POST", &canary, Some("version=v1&version=x"), true),
            ("POST", &canary, Some("version=x&version=v1"), false),
            ("POST", &canary, Some("a=1&version=%76%33"), true),
            // Query parameter names are case-sensitive.
            ("POST", &canary, Some("Version=v2"), false),
        ];
        for (method, h, q, want) in cases {
            assert_eq!(m.matches(method, h, *q), *want, "{method} {h:?} {q:?}");
        }
        assert!(RequestMatch::default().matches("DELETE", &headers(&[]), None));
    }
}
