//! What the controller last applied, so an unchanged child is not sent again: for every child,
//! the hash of the intent applied and the resourceVersion the API server answered with, beside
//! the resourceVersion its watch last saw. When the intent's hash is the same and the watched
//! child is still at the version of our own apply, nothing changed on either side: the apply
//! (a GET and a server-side dry run, and a write when they differ) is skipped and the answer
//! reused. Any change to the child (another manager, a status update, a deletion) moves its
//! version and the next reconcile applies again; so does a restart (the map is in memory).
//! `hangar diff --cluster` and `apply --dry-run` keep asking the API server.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use serde_json::Value as Json;

/// A child: kind, namespace, name.
pub type ChildKey = (String, String, String);

/// The key of a child's body (rendered or as stored).
pub fn key_of(o: &Json) -> Option<ChildKey> {
    let s = |p: &str| o.pointer(p).and_then(Json::as_str).map(str::to_string);
    Some((
        s("/kind")?,
        s("/metadata/namespace").unwrap_or_default(),
        s("/metadata/name")?,
    ))
}

/// A stable hash of an intent (its JSON text; serde_json keeps map keys sorted).
pub fn intent_hash(body: &Json) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.to_string().hash(&mut h);
    h.finish()
}

/// What was applied last: the intent's hash, the version answered, the answer.
#[derive(Clone, Debug)]
struct Ours {
    hash: u64,
    version: String,
    answer: Json,
}

/// Whether an apply can be skipped: the same intent as our last apply, and the child still at
/// the version that apply answered with (pure; the decision of [`AppliedCache::reuse`]).
pub fn unchanged(ours: Option<(u64, &str)>, hash: u64, watched: Option<&str>) -> bool {
    matches!((ours, watched), (Some((h, v)), Some(w)) if h == hash && v == w)
}

#[derive(Default)]
pub struct AppliedCache {
    ours: Mutex<HashMap<ChildKey, Ours>>,
    watched: Mutex<HashMap<ChildKey, String>>,
}

impl AppliedCache {
    /// The answer of our last apply of `body` (whose [`intent_hash`] is `hash`), when nothing
    /// changed since (see [`unchanged`]).
    pub fn reuse(&self, body: &Json, hash: u64) -> Option<Json> {
        let key = key_of(body)?;
        let watched = self.watched.lock().ok()?.get(&key).cloned();
        let ours = self.ours.lock().ok()?;
        let o = ours.get(&key)?;
        unchanged(Some((o.hash, &o.version)), hash, watched.as_deref()).then(|| o.answer.clone())
    }

    /// Records the answer to an apply of `body` (hashed `hash`): the object as stored.
    pub fn applied(&self, body: &Json, hash: u64, answer: &Json) {
        let (Some(key), Some(version)) = (
            key_of(body),
            answer
                .pointer("/metadata/resourceVersion")
                .and_then(Json::as_str),
        ) else {
            return;
        };
        if let Ok(mut ours) = self.ours.lock() {
            ours.insert(
                key,
                Ours {
                    hash,
                    version: version.to_string(),
                    answer: answer.clone(),
                },
            );
        }
    }

    /// Forgets an apply that failed (the next reconcile applies again).
    pub fn failed(&self, body: &Json) {
        if let (Some(key), Ok(mut ours)) = (key_of(body), self.ours.lock()) {
            ours.remove(&key);
        }
    }

    /// A child as its watch saw it; `deleted` when the watch reported it gone.
    pub fn watched(&self, kind: &str, namespace: &str, name: &str, version: Option<&str>) {
        let key = (kind.to_string(), namespace.to_string(), name.to_string());
        if let Ok(mut w) = self.watched.lock() {
            match version {
                Some(v) => {
                    w.insert(key, v.to_string());
                }
                None => {
                    w.remove(&key);
                }
            }
        }
    }

    /// Forgets the watched versions of one kind (its watch relists and tells them again).
    pub fn forget_kind(&self, kind: &str) {
        if let Ok(mut w) = self.watched.lock() {
            w.retain(|k, _| k.0 != kind);
        }
    }

    /// Children remembered (for tests and the RSS bound).
    pub fn len(&self) -> usize {
        self.ours.lock().map(|o| o.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(port: u16) -> Json {
        json!({"kind": "Service", "metadata": {"name": "a", "namespace": "d"}, "spec": {"ports": [{"port": port}]}})
    }

    fn stored(version: &str) -> Json {
        json!({"kind": "Service", "metadata": {"name": "a", "namespace": "d", "resourceVersion": version}})
    }

    #[test]
    fn skipped_only_when_neither_side_changed() {
        let c = AppliedCache::default();
        assert!(
            c.reuse(&svc(80), intent_hash(&svc(80))).is_none(),
            "never applied"
        );
        c.applied(&svc(80), intent_hash(&svc(80)), &stored("7"));
        assert!(
            c.reuse(&svc(80), intent_hash(&svc(80))).is_none(),
            "not watched yet"
        );
        c.watched("Service", "d", "a", Some("7"));
        assert_eq!(c.reuse(&svc(80), intent_hash(&svc(80))), Some(stored("7")));
        assert!(
            c.reuse(&svc(81), intent_hash(&svc(81))).is_none(),
            "the intent changed"
        );
        c.watched("Service", "d", "a", Some("8"));
        assert!(
            c.reuse(&svc(80), intent_hash(&svc(80))).is_none(),
            "someone else wrote it"
        );
        c.applied(&svc(80), intent_hash(&svc(80)), &stored("8"));
        assert!(c.reuse(&svc(80), intent_hash(&svc(80))).is_some());
        c.watched("Service", "d", "a", None);
        assert!(
            c.reuse(&svc(80), intent_hash(&svc(80))).is_none(),
            "deleted"
        );
        c.watched("Service", "d", "a", Some("8"));
        c.failed(&svc(80));
        assert!(
            c.reuse(&svc(80), intent_hash(&svc(80))).is_none(),
            "a failed apply is not remembered"
        );
    }

    #[test]
    fn the_decision() {
        assert!(unchanged(Some((1, "5")), 1, Some("5")));
        assert!(!unchanged(Some((1, "5")), 2, Some("5")));
        assert!(!unchanged(Some((1, "5")), 1, Some("6")));
        assert!(!unchanged(None, 1, Some("5")));
        assert!(!unchanged(Some((1, "5")), 1, None));
    }
}
