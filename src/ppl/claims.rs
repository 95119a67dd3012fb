//! Claims of a signed-in user, flattened for lookup.

use std::collections::BTreeMap;

use serde_json::Value;

/// Claims as the policy sees them: a nested object becomes dotted keys (`address.country`), and
/// every value is a list (a scalar becomes a one-element list; an array stays a list).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Claims(BTreeMap<String, Vec<Value>>);

impl Claims {
    pub fn new() -> Claims {
        Claims::default()
    }

    /// Normalise claims as an ID token or a UserInfo response carries them. Anything but an
    /// object gives no claims.
    pub fn from_json(obj: &Value) -> Claims {
        let mut claims = Claims::default();
        if let Value::Object(map) = obj {
            for (key, value) in map {
                claims.flatten_into(key.clone(), value);
            }
        }
        claims
    }

    fn flatten_into(&mut self, key: String, value: &Value) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    self.flatten_into(format!("{key}.{k}"), v);
                }
            }
            Value::Array(items) => {
                self.0.insert(key, items.clone());
            }
            scalar => {
                self.0.insert(key, vec![scalar.clone()]);
            }
        }
    }

    /// Set one (already flattened) key.
    pub fn insert(&mut self, key: impl Into<String>, values: Vec<Value>) {
        self.0.insert(key.into(), values);
    }

    /// Merge `other` into `self`; on a key present in both, `other` wins (UserInfo over ID
    /// token).
    pub fn merge(&mut self, other: Claims) {
        self.0.extend(other.0);
    }

    /// The values under exactly this flattened key.
    pub fn get(&self, key: &str) -> Option<&[Value]> {
        self.0.get(key).map(Vec::as_slice)
    }

    /// The values of `claim/PATH`: `PATH` as a literal key first, then with `/` read as
    /// nesting (`address/country` = `address.country`). A missing claim is an empty list.
    pub fn lookup(&self, path: &str) -> &[Value] {
        if let Some(values) = self.get(path) {
            return values;
        }
        if path.contains('/') {
            return self.get(&path.replace('/', ".")).unwrap_or(&[]);
        }
        &[]
    }

    /// [`Claims::lookup`] with the nested form of the path computed in advance (no allocation).
    pub(crate) fn lookup_prepared(&self, literal: &str, dotted: Option<&str>) -> &[Value] {
        if let Some(values) = self.get(literal) {
            return values;
        }
        dotted.and_then(|d| self.get(d)).unwrap_or(&[])
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Value])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Equality of JSON values where numbers compare by value (`1 == 1.0`), as policy languages
/// built on JSON do.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => x == y,
                    _ => false,
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flattening() {
        let c = Claims::from_json(&json!({
            "sub": "auth0|1",
            "roles": ["a", "b"],
            "address": {"country": "FR", "geo": {"lat": 1.5}},
            "https://example.com/roles": ["admin"],
        }));
        assert_eq!(c.lookup("sub"), [json!("auth0|1")]);
        assert_eq!(c.lookup("roles"), [json!("a"), json!("b")]);
        assert_eq!(c.lookup("address/country"), [json!("FR")]);
        assert_eq!(c.lookup("address.geo.lat"), [json!(1.5)]);
        assert_eq!(c.lookup("address/geo/lat"), [json!(1.5)]);
        assert_eq!(c.lookup("https://example.com/roles"), [json!("admin")]);
        assert!(c.lookup("address").is_empty());
        assert!(c.lookup("missing").is_empty());
    }

    #[test]
    fn literal_key_wins_over_nesting() {
        let c = Claims::from_json(&json!({"a/b": "literal", "a": {"b": "nested"}}));
        assert_eq!(c.lookup("a/b"), [json!("literal")]);
        assert_eq!(c.lookup("a.b"), [json!("nested")]);
    }

    #[test]
    fn merge_other_wins() {
        let mut a = Claims::from_json(&json!({"x": 1, "y": 2}));
        a.merge(Claims::from_json(&json!({"y": 3, "z": 4})));
        assert_eq!(a.lookup("x"), [json!(1)]);
        assert_eq!(a.lookup("y"), [json!(3)]);
        assert_eq!(a.lookup("z"), [json!(4)]);
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(json_eq(&json!(1), &json!(1.0)));
        assert!(!json_eq(&json!(1), &json!("1")));
        assert!(json_eq(&json!(true), &json!(true)));
    }
}
