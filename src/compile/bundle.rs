//! The ordered, deterministic result of a compilation.

use serde_json::{Value as Json, json};

use super::diag::{Diagnostic, Diagnostics, Span};

/// What a masked Secret value shows instead.
pub const MASK: &str = "<masked>";

/// The annotation `kubectl apply` leaves on an object: a copy of the whole Secret, values and all.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Replaces Secret values; where `other` is given, a value that differs from the other side is
/// marked `<masked: old>` / `<masked: new>` (by `side`) without showing either value. A `data` or
/// `stringData` that is not a map (a malformed Secret) is masked whole, and so is the
/// `last-applied-configuration` annotation, which holds the values once more.
pub fn mask_secret(body: &Json, other: Option<(&Json, &str)>) -> Json {
    let mut b = body.clone();
    if b.get("kind").and_then(Json::as_str) != Some("Secret") {
        return b;
    }
    let masked = |here: &Json, there: Option<&Json>| match (other, there) {
        (Some((_, side)), Some(o)) if o != here => json!(format!("<masked: {side}>")),
        _ => json!(MASK),
    };
    for field in ["data", "stringData"] {
        let theirs = other.and_then(|(o, _)| o.get(field));
        let Some(value) = b.get_mut(field) else {
            continue;
        };
        if let Some(map) = value.as_object_mut() {
            for (k, v) in map.iter_mut() {
                *v = masked(v, theirs.and_then(|m| m.get(k)));
            }
        } else if !value.is_null() {
            *value = masked(value, theirs);
        }
    }
    let theirs = other.and_then(|(o, _)| {
        o.pointer("/metadata/annotations")
            .map(|a| a.get(LAST_APPLIED))
    });
    if let Some(v) = b
        .pointer_mut("/metadata/annotations")
        .and_then(Json::as_object_mut)
        .and_then(|a| a.get_mut(LAST_APPLIED))
    {
        *v = masked(v, theirs.flatten());
    }
    b
}

/// What an object is to hangar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A hangar resource (MCPServer, MCPServerGroup, MCPDiscoverySource), resolved.
    Resource,
    /// Rendered from a hangar resource (Deployment, Service, ...).
    Child,
    /// Another object from the inputs, passed through unchanged.
    Passthrough,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub body: Json,
    pub role: Role,
    /// The input this object came from.
    pub origin: Option<Span>,
}

impl Object {
    pub fn new(body: Json, role: Role, origin: Option<Span>) -> Self {
        let s = |v: Option<&Json>| v.and_then(Json::as_str).map(str::to_string);
        Object {
            api_version: s(body.get("apiVersion")).unwrap_or_default(),
            kind: s(body.get("kind")).unwrap_or_default(),
            namespace: s(body.pointer("/metadata/namespace")),
            name: s(body.pointer("/metadata/name")).unwrap_or_default(),
            body,
            role,
            origin,
        }
    }

    /// A Secret from the inputs (printed masked unless revealed).
    pub fn is_input_secret(&self) -> bool {
        self.kind == "Secret" && self.role == Role::Passthrough
    }

    /// The body as printed: Secrets from the inputs are masked unless revealed.
    pub fn printable(&self, reveal_secrets: bool) -> std::borrow::Cow<'_, Json> {
        if self.is_input_secret() && !reveal_secrets {
            std::borrow::Cow::Owned(mask_secret(&self.body, None))
        } else {
            std::borrow::Cow::Borrowed(&self.body)
        }
    }

    /// The API group (empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version
            .split_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }

    /// `Kind/namespace/name` (or `Kind/name` for cluster-scoped objects).
    pub fn id(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.kind, ns, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }

    /// Identity for comparisons: group, kind, namespace, name.
    pub fn key(&self) -> (String, String, String, String) {
        (
            self.group().to_string(),
            self.kind.clone(),
            self.namespace.clone().unwrap_or_default(),
            self.name.clone(),
        )
    }
}

/// Apply order: what others depend on first.
pub fn kind_rank(kind: &str) -> u32 {
    match kind {
        "CustomResourceDefinition" => 0,
        "Namespace" => 1,
        "ServiceAccount" => 2,
        "Secret" => 3,
        "ConfigMap" => 4,
        "ClusterRole" | "Role" => 5,
        "ClusterRoleBinding" | "RoleBinding" => 6,
        "PersistentVolumeClaim" => 7,
        "MCPDiscoverySource" => 10,
        "MCPServerGroup" => 11,
        "MCPServer" => 12,
        "Service" => 20,
        "Deployment" => 21,
        "HorizontalPodAutoscaler" => 22,
        "PodDisruptionBudget" => 23,
        "NetworkPolicy" => 24,
        _ => 50,
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bundle {
    pub objects: Vec<Object>,
}

impl Bundle {
    /// Sorts into apply order and reports objects that would overwrite each other.
    pub fn new(mut objects: Vec<Object>, diags: &mut Diagnostics) -> Self {
        fn key(o: &Object) -> (u32, &str, &str, &str, &str) {
            (
                kind_rank(&o.kind),
                &o.kind,
                o.group(),
                o.namespace.as_deref().unwrap_or(""),
                &o.name,
            )
        }
        objects.sort_by(|a, b| key(a).cmp(&key(b)).then(a.role.cmp(&b.role)));
        let mut keep: Vec<Object> = Vec::with_capacity(objects.len());
        for o in objects {
            if let Some(prev) = keep.last().filter(|p| key(p) == key(&o)) {
                if prev.body != o.body {
                    diags.push(
                        Diagnostic::error("object-collision", o.origin, format!("two inputs produce {} and they differ", o.id()))
                            .note(prev.origin, "the other one comes from here")
                            .hint("names of servers, groups and other objects must not collide within a namespace (a group's Service is named after the group)"),
                    );
                }
                continue;
            }
            keep.push(o);
        }
        Bundle { objects: keep }
    }

    pub fn count(&self, kind: &str) -> usize {
        self.objects.iter().filter(|o| o.kind == kind).count()
    }

    /// Objects of one of hangar's own kinds (`mcp-hangar.io`): a peer's `MCPServer` passed
    /// through is not one.
    pub fn count_hangar(&self, kind: &str) -> usize {
        self.objects
            .iter()
            .filter(|o| o.kind == kind && o.group() == crate::api::GROUP)
            .count()
    }
}

/// The objects as one YAML stream, as `hangar render` prints them (`---` between documents;
/// Secrets from the inputs masked unless `reveal`).
pub fn to_yaml_stream(objects: &[Object], reveal: bool) -> String {
    use rayon::prelude::*;
    // Objects print independently: chunks of them in parallel, joined in order.
    let chunks: Vec<String> = objects
        .par_chunks(256)
        .map(|chunk| {
            let mut out = String::with_capacity(chunk.len() * 2048);
            for o in chunk {
                out.push_str("---\n");
                crate::yaml::write_value(&mut out, &o.printable(reveal), 0);
            }
            out
        })
        .collect();
    let mut out = chunks.concat();
    // The first document needs no separator.
    if out.starts_with("---\n") {
        out.drain(..4);
    }
    out
}
