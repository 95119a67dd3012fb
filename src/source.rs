//! Documents with positions.
//!
//! Configuration files, PPL files and Kubernetes objects all reach us as trees of maps, lists and
//! scalars. This module turns each of them into one [`Node`] type that remembers where every
//! value came from, so that an error can say `FILE:LINE:COL` (for text) or name the field path
//! (for objects that arrive as JSON from the API server).

use std::fmt;

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};

/// Where a node stands in its source: 1-based line and column. `line == 0` means "no position"
/// (the node was built from JSON without positions, or synthesised).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    pub const NONE: Pos = Pos { line: 0, col: 0 };

    pub fn new(line: usize, col: usize) -> Pos {
        Pos { line, col }
    }

    pub fn is_known(&self) -> bool {
        self.line > 0
    }

    /// Shift a position found inside an embedded document (an annotation value, say) so that it
    /// is relative to the enclosing file: the embedded document starts at `base`.
    pub fn offset_by(self, base: Pos) -> Pos {
        if !self.is_known() || !base.is_known() {
            return self;
        }
        if self.line == 1 {
            Pos::new(base.line, base.col + self.col - 1)
        } else {
            Pos::new(base.line + self.line - 1, self.col)
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A scalar or collection with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    /// Keys keep their own positions; order is the order of the source.
    Map(Vec<(Node, Node)>),
}

/// A document that could not be read at all (bad YAML or JSON syntax).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl Node {
    pub fn new(pos: Pos, value: Value) -> Node {
        Node { pos, value }
    }

    /// Parse one YAML (or JSON, which is YAML) document. An empty document is `Null`; a stream
    /// with several documents is an error.
    pub fn parse(text: &str) -> Result<Node, SyntaxError> {
        let docs = MarkedYamlOwned::load_from_str(text).map_err(|e| SyntaxError {
            pos: Pos::new(e.marker().line(), e.marker().col() + 1),
            message: e.info().to_string(),
        })?;
        let mut docs = docs.into_iter();
        let first = match docs.next() {
            Some(doc) => doc,
            None => return Ok(Node::new(Pos::new(1, 1), Value::Null)),
        };
        if let Some(second) = docs.next() {
            return Err(SyntaxError {
                pos: marker_pos(&second),
                message: "expected one YAML document, found several".to_string(),
            });
        }
        convert(first)
    }

    /// Parse a stream of YAML documents (`---` separated), e.g. a manifest file.
    pub fn parse_stream(text: &str) -> Result<Vec<Node>, SyntaxError> {
        let docs = MarkedYamlOwned::load_from_str(text).map_err(|e| SyntaxError {
            pos: Pos::new(e.marker().line(), e.marker().col() + 1),
            message: e.info().to_string(),
        })?;
        docs.into_iter().map(convert).collect()
    }

    /// A tree from JSON (e.g. a Kubernetes object's field), without positions.
    pub fn from_json(value: &serde_json::Value) -> Node {
        let value = match value {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(items) => {
                Value::Seq(items.iter().map(Node::from_json).collect())
            }
            serde_json::Value::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| {
                        (
                            Node::new(Pos::NONE, Value::String(k.clone())),
                            Node::from_json(v),
                        )
                    })
                    .collect(),
            ),
        };
        Node::new(Pos::NONE, value)
    }

    /// The same tree as JSON (positions dropped).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.key_text(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Shift every position by `base` (see [`Pos::offset_by`]).
    pub fn offset_by(&mut self, base: Pos) {
        self.pos = self.pos.offset_by(base);
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.offset_by(base)),
            Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                k.offset_by(base);
                v.offset_by(base);
            }),
            _ => {}
        }
    }

    /// A short name of the node's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The text of a scalar as YAML would print it; keys are usually strings but YAML allows
    /// `true:` or `1:` as keys too.
    pub fn key_text(&self) -> String {
        match &self.value {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Null => "null".to_string(),
            Value::Seq(_) | Value::Map(_) => self.to_json().to_string(),
        }
    }

    /// Look up a key in a map node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
}

fn marker_pos(node: &MarkedYamlOwned) -> Pos {
    Pos::new(node.span.start.line(), node.span.start.col() + 1)
}

fn convert(node: MarkedYamlOwned) -> Result<Node, SyntaxError> {
    let pos = marker_pos(&node);
    let value = match node.data {
        YamlDataOwned::Value(scalar) => match scalar {
            ScalarOwned::Null => Value::Null,
            ScalarOwned::Boolean(b) => Value::Bool(b),
            ScalarOwned::Integer(i) => Value::Int(i),
            ScalarOwned::FloatingPoint(f) => Value::Float(f.into_inner()),
            ScalarOwned::String(s) => Value::String(s),
        },
        YamlDataOwned::Representation(text, _, _) => Value::String(text),
        YamlDataOwned::Sequence(items) => {
            Value::Seq(items.into_iter().map(convert).collect::<Result<_, _>>()?)
        }
        YamlDataOwned::Mapping(map) => {
            let mut entries = Vec::with_capacity(map.len());
            for (k, v) in map {
                entries.push((convert(k)?, convert(v)?));
            }
            entries.sort_by_key(|(k, _)| (k.pos.line, k.pos.col));
            Value::Map(entries)
        }
        YamlDataOwned::Tagged(_, inner) => return convert(*inner),
        YamlDataOwned::Alias(_) => {
            return Err(SyntaxError {
                pos,
                message: "YAML aliases are not supported".to_string(),
            });
        }
        YamlDataOwned::BadValue => {
            return Err(SyntaxError {
                pos,
                message: "unreadable value".to_string(),
            });
        }
    };
    Ok(Node::new(pos, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let doc = Node::parse("allow:\n  and:\n    - accept: true\n").unwrap();
        let allow = doc.get("allow").unwrap();
        assert_eq!(allow.pos, Pos::new(2, 3));
        let and = allow.get("and").unwrap();
        let first = &and.as_seq().unwrap()[0];
        assert_eq!(first.pos, Pos::new(3, 7));
        let (key, _) = &first.as_map().unwrap()[0];
        assert_eq!(key.as_str(), Some("accept"));
        assert_eq!(key.pos, Pos::new(3, 7));
    }

    #[test]
    fn json_is_yaml() {
        let doc = Node::parse(r#"{"allow": {"or": [{"email": {"is": "a@b"}}]}}"#).unwrap();
        assert_eq!(
            doc.to_json(),
            serde_json::json!({"allow": {"or": [{"email": {"is": "a@b"}}]}})
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = Node::parse("allow:\n  and: [\n").unwrap_err();
        assert!(err.pos.line >= 2, "{err}");
    }

    #[test]
    fn embedded_offsets() {
        let base = Pos::new(10, 5);
        assert_eq!(Pos::new(1, 3).offset_by(base), Pos::new(10, 7));
        assert_eq!(Pos::new(2, 3).offset_by(base), Pos::new(11, 3));
    }
}
