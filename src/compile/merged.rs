//! Deserialises a typed value straight from a document layered over JSON defaults, as if the
//! two had been merged by [`super::defaults::merge_into`] into one JSON tree first (mappings
//! merge key by key and the document wins; lists and scalars replace), and the document
//! converted by [`Node::to_json`] (nulls inside mappings are dropped, NaN is null). Neither the
//! merged tree nor the document's JSON is built, which is most of what resolving a server cost.
//!
//! The error messages are not those of `serde_json`: callers that report one take the JSON path
//! again to say exactly what it says.

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::forward_to_deserialize_any;
use serde_json::Value as Json;

use super::node::{Node, Value};

pub type Error = de::value::Error;

/// `T` from `over` merged onto `base`.
pub fn from_layers<'a, T: de::Deserialize<'a>>(
    base: &'a Json,
    over: Option<&'a Node>,
) -> Result<T, Error> {
    T::deserialize(Layered {
        base: Some(base),
        over: over.filter(|n| !is_null(n)),
    })
}

/// A null in a mapping: `to_json` drops the key.
fn is_null(n: &Node) -> bool {
    matches!(n.value, Value::Null)
}

/// What `to_json` makes a JSON null: null, and the floats JSON has no number for.
fn nullish(n: &Node) -> bool {
    match &n.value {
        Value::Null => true,
        Value::Float(f) => !f.is_finite(),
        _ => false,
    }
}

/// One value of the merged tree: the document's (if it has one there) over the default's.
#[derive(Clone, Copy)]
struct Layered<'a> {
    base: Option<&'a Json>,
    over: Option<&'a Node>,
}

impl<'de> Deserializer<'de> for Layered<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match (self.over, self.base) {
            (Some(over), Some(Json::Object(base))) if matches!(over.value, Value::Map(_)) => {
                visitor.visit_map(MergedMap::new(Some(base), over))
            }
            (Some(over), _) => NodeDe(over).deserialize_any(visitor),
            (None, Some(base)) => base.deserialize_any(visitor).map_err(de::Error::custom),
            (None, None) => visitor.visit_unit(),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match (self.over, self.base) {
            (Some(over), _) if nullish(over) => visitor.visit_none(),
            (Some(_), _) => visitor.visit_some(self),
            (None, Some(Json::Null) | None) => visitor.visit_none(),
            (None, Some(_)) => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match (self.over, self.base) {
            (Some(over), _) => NodeDe(over).deserialize_enum(name, variants, visitor),
            (None, Some(base)) => base
                .deserialize_enum(name, variants, visitor)
                .map_err(de::Error::custom),
            (None, None) => Err(de::Error::custom("missing enum value")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

/// A document mapping over a default mapping (or none): the defaults' keys first (in their
/// order), then the document's other keys, as `merge_into` orders them.
struct MergedMap<'a> {
    base: Option<&'a serde_json::Map<String, Json>>,
    over: &'a Node,
    base_iter: Option<serde_json::map::Iter<'a>>,
    over_iter: std::slice::Iter<'a, (Node, Node)>,
    value: Option<Layered<'a>>,
}

impl<'a> MergedMap<'a> {
    fn new(base: Option<&'a serde_json::Map<String, Json>>, over: &'a Node) -> Self {
        let entries: &'a [(Node, Node)] = match &over.value {
            Value::Map(e) => e,
            _ => &[],
        };
        MergedMap {
            base,
            over,
            base_iter: base.map(|b| b.iter()),
            over_iter: entries.iter(),
            value: None,
        }
    }
}

/// The value a document mapping gives a key, unless it is null (dropped, as `to_json` does).
fn lookup<'a>(map: &'a Node, key: &str) -> Option<&'a Node> {
    match &map.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.key_text() == key)
            .map(|(_, v)| v)
            .filter(|v| !is_null(v)),
        _ => None,
    }
}

impl<'de> MapAccess<'de> for MergedMap<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if let Some((k, v)) = self.base_iter.as_mut().and_then(Iterator::next) {
            self.value = Some(Layered {
                base: Some(v),
                over: lookup(self.over, k),
            });
            return seed.deserialize(k.as_str().into_deserializer()).map(Some);
        }
        for (k, v) in self.over_iter.by_ref() {
            if is_null(v) {
                continue;
            }
            let key = k.key_text();
            if self.base.is_some_and(|b| b.contains_key(key.as_ref())) {
                continue;
            }
            self.value = Some(Layered {
                base: None,
                over: Some(v),
            });
            return seed.deserialize(KeyDe(k)).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.value.take() {
            Some(v) => seed.deserialize(v),
            None => Err(de::Error::custom("value without a key")),
        }
    }
}

/// A document node alone (as its `to_json` would deserialise).
struct NodeDe<'a>(&'a Node);

impl<'de> Deserializer<'de> for NodeDe<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.0.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            // serde_json keeps non-negative integers as u64.
            Value::Int(i) if *i >= 0 => visitor.visit_u64(*i as u64),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) if f.is_finite() => visitor.visit_f64(*f),
            Value::Float(_) => visitor.visit_unit(),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => visitor.visit_seq(NodeSeq(items.iter())),
            Value::Map(_) => visitor.visit_map(MergedMap::new(None, self.0)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if nullish(self.0) {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.0.value {
            Value::Str(s) => visitor.visit_enum((&**s).into_deserializer()),
            _ => Err(de::Error::custom("expected a string for an enum")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

struct NodeSeq<'a>(std::slice::Iter<'a, Node>);

impl<'de> SeqAccess<'de> for NodeSeq<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.0.next() {
            Some(n) => seed.deserialize(NodeDe(n)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// A mapping key, always a string (as `to_json` makes it).
struct KeyDe<'a>(&'a Node);

impl<'de> Deserializer<'de> for KeyDe<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.0.value {
            Value::Str(s) => visitor.visit_borrowed_str(s),
            _ => visitor.visit_string(self.0.key_str()),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::server::MCPServerSpec;
    use crate::compile::defaults::{merge_into, server};
    use crate::compile::diag::Diagnostics;
    use crate::compile::load::load_yaml;

    /// Layered deserialisation gives what merging the JSON trees and deserialising gives.
    #[test]
    fn layers_deserialise_as_the_merged_json() {
        let docs = [
            "mode: container\nimage: i:1\nport: 9000\nenv:\n- name: A\n  value: x\n- name: B\n  valueFrom:\n    secretKeyRef: {name: s, key: k}\nresources:\n  requests:\n    cpu: 100m\n    memory: 1Gi\n  limits:\n    cpu: 1\nhealthCheck:\n  interval: 10s\nsecurityContext:\n  runAsUser: 1000\n  capabilities:\n    add: [NET_BIND_SERVICE]\nhpa:\n  enabled: true\n  maxReplicas: 3\npodDisruptionBudget:\n  enabled: true\n  minAvailable: 50%\ntolerations:\n- key: a\n  operator: Exists\nreplicas:\n",
            "endpoint: https://x/mcp\ntransport: sse\ntools:\n  allowList: [a, b]\n  rateLimit:\n    requestsPerMinute: 60\nvalidation:\n  auth:\n    secretRef:\n      name: tok\n",
            "mode: container\nimage: i\nvolumes:\n- name: v\n  mountPath: /x\n  emptyDir:\n    sizeLimit: 1Gi\nnodeSelector:\n  disk: ssd\n  80: x\nobservability:\n  tracing:\n    enabled: true\n    samplingRate: .nan\n",
        ];
        for text in docs {
            let mut d = Diagnostics::default();
            let node = load_yaml(0, text, &mut d).docs.remove(0);
            let user = node.to_json();
            let base = server(&user);
            let mut merged = base.clone();
            merge_into(&mut merged, &user);
            let want = serde_json::from_value::<MCPServerSpec>(merged);
            let got = from_layers::<MCPServerSpec>(&base, Some(&node));
            match (want, got) {
                (Ok(w), Ok(g)) => assert_eq!(w, g, "{text}"),
                (w, g) => panic!("{text}: {w:?} vs {g:?}"),
            }
        }
    }
}
