//! A YAML/JSON/TOML document as a tree of nodes that remember where they came from.

use serde_json::{Map, Number, Value as Json};

use super::diag::Span;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    // Boxed slices, not vectors: a node is 40 bytes rather than 56, and a large input is
    // mostly nodes.
    Str(Box<str>),
    Seq(Box<[Node]>),
    /// Entries in source order; keys are unique (the loader rejects duplicates).
    Map(Box<[(Node, Node)]>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

/// One step of a path into a document.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(s: &str) -> Self {
        Seg::Key(s.to_string())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// `spec.healthCheck.interval`, `spec.env[2].name`.
pub fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                if k.contains('.') || k.contains('/') {
                    s.push_str(&format!("\"{k}\""));
                } else {
                    s.push_str(k);
                }
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

impl Node {
    pub fn new(value: Value, span: Span) -> Self {
        Node { value, span }
    }

    /// The key as a string (YAML allows scalar keys of any type; Kubernetes reads them as strings).
    pub fn key_str(&self) -> String {
        match &self.value {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => "null".to_string(),
            Value::Seq(_) | Value::Map(_) => "<complex key>".to_string(),
        }
    }

    /// As [`Node::key_str`], borrowed for string keys.
    pub fn key_text(&self) -> std::borrow::Cow<'_, str> {
        match &self.value {
            Value::Str(s) => std::borrow::Cow::Borrowed(s),
            _ => std::borrow::Cow::Owned(self.key_str()),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.value, Value::Str(s) if &**s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The key node of an entry, for pointing at a field name rather than its value.
    pub fn key_node(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.value, Value::Str(s) if &**s == key))
                .map(|(k, _)| k),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Walks a path; returns the deepest node reached and whether the whole path was found.
    pub fn lookup(&self, path: &[Seg]) -> (&Node, bool) {
        let mut cur = self;
        for seg in path {
            let next = match (seg, &cur.value) {
                (Seg::Key(k), Value::Map(_)) => cur.get(k),
                (Seg::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => cur = n,
                None => return (cur, false),
            }
        }
        (cur, true)
    }

    /// Span of the value at `path`, or of the deepest ancestor present.
    pub fn span_at(&self, path: &[Seg]) -> Span {
        self.lookup(path).0.span
    }

    /// Converts to JSON. Nulls inside mappings are dropped (an empty YAML field means "unset", as
    /// the Kubernetes API treats it).
    pub fn to_json(&self) -> Json {
        match &self.value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::Number((*i).into()),
            Value::Float(f) => Number::from_f64(*f).map(Json::Number).unwrap_or(Json::Null),
            Value::Str(s) => Json::String(s.to_string()),
            Value::Seq(items) => Json::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => {
                let mut m = Map::new();
                for (k, v) in entries {
                    if matches!(v.value, Value::Null) {
                        continue;
                    }
                    m.insert(k.key_str(), v.to_json());
                }
                Json::Object(m)
            }
        }
    }

    /// A short description of the value's type for messages: "a string `abc`", "a mapping".
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "null".into(),
            Value::Bool(b) => format!("a boolean `{b}`"),
            Value::Int(i) => format!("an integer `{i}`"),
            Value::Float(f) => format!("a number `{f}`"),
            Value::Str(s) => {
                let short: String = s.chars().take(40).collect();
                format!("a string `{short}`")
            }
            Value::Seq(_) => "a list".into(),
            Value::Map(_) => "a mapping".into(),
        }
    }
}

/// Resolves a plain scalar by the YAML 1.2 core schema.
pub(crate) fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let bytes = s.as_bytes();
    let digits = |b: &[u8]| !b.is_empty() && b.iter().all(u8::is_ascii_digit);
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits(unsigned.as_bytes()) {
        return match s.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => s
                .parse::<f64>()
                .map(Value::Float)
                .unwrap_or_else(|_| Value::Str(s.into())),
        };
    }
    if let Some(hex) = s.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(i) = i64::from_str_radix(hex, 16) {
                return Value::Int(i);
            }
        }
    }
    if let Some(oct) = s.strip_prefix("0o") {
        if !oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            if let Ok(i) = i64::from_str_radix(oct, 8) {
                return Value::Int(i);
            }
        }
    }
    // float: [-+]? ( . digits | digits ( . digits? )? ) ( [eE] [-+]? digits )?
    let looks_float = {
        let (mantissa, exp) = match unsigned.find(['e', 'E']) {
            Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
            None => (unsigned, None),
        };
        let mant_ok = match mantissa.split_once('.') {
            Some((a, b)) => {
                (a.is_empty() || digits(a.as_bytes()))
                    && (b.is_empty() || digits(b.as_bytes()))
                    && !(a.is_empty() && b.is_empty())
            }
            None => digits(mantissa.as_bytes()),
        };
        let exp_ok = match exp {
            None => true,
            Some(e) => digits(e.strip_prefix(['-', '+']).unwrap_or(e).as_bytes()),
        };
        mant_ok && exp_ok && (mantissa.contains('.') || exp.is_some())
    };
    if looks_float && !bytes.is_empty() {
        if let Ok(f) = s.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(s.into())
}
