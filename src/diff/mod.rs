//! Object-by-object diffs between two sets of rendered objects: normalised (server-set fields
//! dropped), Secret values masked, unified text per object.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use similar::TextDiff;

use crate::compile::Object;
use crate::compile::bundle::kind_rank;

/// Metadata the API server sets; never part of a comparison.
const SERVER_SET: [&str; 8] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Drops what the API server writes (status, server-set metadata, the last-applied annotation).
pub fn normalize(body: &Json) -> Json {
    let mut b = body.clone();
    if let Some(obj) = b.as_object_mut() {
        obj.remove("status");
    }
    if let Some(meta) = b.get_mut("metadata").and_then(Json::as_object_mut) {
        for f in SERVER_SET {
            meta.remove(f);
        }
        if let Some(ann) = meta.get_mut("annotations").and_then(Json::as_object_mut) {
            ann.remove("kubectl.kubernetes.io/last-applied-configuration");
            if ann.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    b
}

pub use crate::compile::bundle::{MASK, mask_secret};

pub fn to_yaml(v: &Json) -> String {
    crate::yaml::to_string(v)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub changed: usize,
    pub added: usize,
    pub removed: usize,
    pub unchanged: usize,
}

impl Summary {
    pub fn differs(&self) -> bool {
        self.changed + self.added + self.removed > 0
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} changed, {} added, {} removed, {} unchanged",
            self.changed, self.added, self.removed, self.unchanged
        )
    }
}

/// Diffs `before` against `after`; returns the text and the counts.
pub fn diff(before: &[Object], after: &[Object]) -> (String, Summary) {
    type Key = (u32, String, String, String, String);
    let key = |o: &Object| -> Key {
        (
            kind_rank(&o.kind),
            o.kind.clone(),
            o.group().to_string(),
            o.namespace.clone().unwrap_or_default(),
            o.name.clone(),
        )
    };
    let mut pairs: BTreeMap<Key, (Option<&Object>, Option<&Object>)> = BTreeMap::new();
    for o in before {
        pairs.entry(key(o)).or_default().0 = Some(o);
    }
    for o in after {
        pairs.entry(key(o)).or_default().1 = Some(o);
    }
    let mut out = String::new();
    let mut sum = Summary::default();
    for (_, pair) in pairs {
        match pair {
            (Some(a), Some(b)) => {
                let (na, nb) = (normalize(&a.body), normalize(&b.body));
                if na == nb {
                    sum.unchanged += 1;
                    continue;
                }
                sum.changed += 1;
                let (ya, yb) = (
                    to_yaml(&mask_secret(&na, Some((&nb, "old")))),
                    to_yaml(&mask_secret(&nb, Some((&na, "new")))),
                );
                let id = b.id();
                out.push_str(&format!("~ {id}\n"));
                let text = TextDiff::from_lines(&ya, &yb);
                out.push_str(
                    &text
                        .unified_diff()
                        .context_radius(3)
                        .header(&format!("a/{id}"), &format!("b/{id}"))
                        .to_string(),
                );
            }
            (None, Some(b)) => {
                sum.added += 1;
                out.push_str(&format!("+ {}\n", b.id()));
                for l in to_yaml(&mask_secret(&normalize(&b.body), None)).lines() {
                    out.push_str(&format!("+{l}\n"));
                }
            }
            (Some(a), None) => {
                sum.removed += 1;
                out.push_str(&format!("- {}\n", a.id()));
                for l in to_yaml(&mask_secret(&normalize(&a.body), None)).lines() {
                    out.push_str(&format!("-{l}\n"));
                }
            }
            (None, None) => {}
        }
    }
    (out, sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::Role;
    use serde_json::json;

    fn obj(v: Json) -> Object {
        Object::new(v, Role::Child, None)
    }

    #[test]
    fn secrets_are_masked_and_changes_counted() {
        let a = obj(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"}, "data": {"token": "c2VjcmV0", "same": "eA=="}}),
        );
        let b = obj(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d", "resourceVersion": "9"}, "data": {"token": "b3RoZXI=", "same": "eA=="}}),
        );
        let (text, sum) = diff(&[a], &[b]);
        assert_eq!(sum.changed, 1);
        assert!(
            !text.contains("c2VjcmV0") && !text.contains("b3RoZXI="),
            "{text}"
        );
        assert!(
            text.contains("-  token: '<masked: old>'") || text.contains("<masked: old>"),
            "{text}"
        );
        assert!(text.contains("<masked: new>"), "{text}");
        assert!(!text.contains("resourceVersion"));
    }

    #[test]
    fn added_removed_unchanged() {
        let a = obj(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "d"}}),
        );
        let b = obj(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b", "namespace": "d"}}),
        );
        let (_, sum) = diff(&[a.clone(), b.clone()], &[a]);
        assert_eq!(
            sum,
            Summary {
                changed: 0,
                added: 0,
                removed: 1,
                unchanged: 1
            }
        );
    }
}
