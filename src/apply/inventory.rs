//! The inventory: a ConfigMap listing every object one `hangar apply` inventory owns. Pruning
//! deletes an object only when it is listed here AND still carries the inventory label.

use std::collections::BTreeSet;

use serde_json::{Value as Json, json};

use super::{Applier, ApplyError, ObjectKey};

pub struct Inventory {
    name: String,
    namespace: String,
}

impl Inventory {
    pub fn new(name: &str, namespace: &str) -> Self {
        Inventory {
            name: name.into(),
            namespace: namespace.into(),
        }
    }

    pub fn configmap_name(&self) -> String {
        format!("hangar-inventory-{}", self.name)
    }

    fn key(&self) -> ObjectKey {
        ObjectKey {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some(self.namespace.clone()),
            name: self.configmap_name(),
        }
    }

    fn err(&self, message: impl Into<String>) -> ApplyError {
        ApplyError::Inventory {
            name: format!("{}/{}", self.namespace, self.configmap_name()),
            message: message.into(),
        }
    }

    /// The objects recorded by the last apply (empty when there is no inventory yet).
    pub async fn read(&self, applier: &Applier) -> Result<BTreeSet<ObjectKey>, ApplyError> {
        let Some(cm) = applier.get(&self.key()).await? else {
            return Ok(BTreeSet::new());
        };
        let text = cm
            .pointer("/data/objects")
            .and_then(Json::as_str)
            .unwrap_or_default();
        parse(text).map_err(|m| self.err(m))
    }

    pub async fn write(
        &self,
        applier: &Applier,
        objects: &BTreeSet<ObjectKey>,
    ) -> Result<(), ApplyError> {
        let cm = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.configmap_name(),
                "namespace": self.namespace,
                "labels": {
                    "app.kubernetes.io/managed-by": "hangar",
                    "app.kubernetes.io/part-of": "hangar",
                    "mcp-hangar.io/inventory-of": self.name,
                },
            },
            "data": {"objects": format(objects)},
        });
        // The inventory is hangar's own record: fields someone else set on it (a hand edit with
        // kubectl) are taken over, never a conflict that would fail every later `--prune`.
        let owner = Applier::new(applier.client().clone(), applier.manager(), true);
        owner.apply(&cm, false).await.map(|_| ())
    }
}

/// One object a line: `apiVersion kind namespace name` (`-` for no namespace).
pub fn format(objects: &BTreeSet<ObjectKey>) -> String {
    let mut out = String::new();
    for k in objects {
        out.push_str(&format!(
            "{} {} {} {}\n",
            k.api_version,
            k.kind,
            k.namespace.as_deref().unwrap_or("-"),
            k.name
        ));
    }
    out
}

pub fn parse(text: &str) -> Result<BTreeSet<ObjectKey>, String> {
    let mut out = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [api_version, kind, ns, name] = parts.as_slice() else {
            return Err(format!(
                "line {}: expected `apiVersion kind namespace name`, found {line:?}",
                i + 1
            ));
        };
        out.insert(ObjectKey {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace: (*ns != "-").then(|| ns.to_string()),
            name: name.to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let set: BTreeSet<ObjectKey> = [
            ObjectKey {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: Some("n".into()),
                name: "a".into(),
            },
            ObjectKey {
                api_version: "v1".into(),
                kind: "Namespace".into(),
                namespace: None,
                name: "n".into(),
            },
        ]
        .into();
        assert_eq!(parse(&format(&set)).unwrap(), set);
        assert!(parse("v1 ConfigMap\n").unwrap_err().contains("line 1"));
    }
}
