//! Rendering: one builder per output kind. Input is resolved and checked; output is plain JSON
//! objects, fully specified (the defaults the API server would add are written out).

mod group;
pub mod labels;
mod server;
mod server_yaml;
pub use server::PORT_NAME;

use std::collections::BTreeMap;
use std::ops::Range;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::{Value as Json, json};

pub use labels::{
    COMPONENT_GROUP, COMPONENT_SERVER, CONFIG_HASH_ANNOTATION, GROUP_LABEL, MANAGED_BY,
    MCP_SERVER_POD_LABEL, SERVER_LABEL,
};

use super::bundle::{Object, Role};
use super::diag::Span;
use super::resolve::Resolved;
use crate::api::{self, Kind};

/// Where rendered Kubernetes objects go: JSON objects for the bundle, or YAML text.
pub trait Sink {
    fn child<T>(&mut self, obj: &T, origin: Span)
    where
        T: Serialize + k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta>;
}

impl Sink for Vec<Object> {
    fn child<T>(&mut self, obj: &T, origin: Span)
    where
        T: Serialize + k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta>,
    {
        let body = serde_json::to_value(obj).unwrap_or(Json::Null);
        self.push(Object::new(body, Role::Child, Some(origin)));
    }
}

pub fn render(resolved: &Resolved) -> Vec<Object> {
    use rayon::prelude::*;
    let mut out: Vec<Object> = resolved
        .servers
        .par_iter()
        .flat_map_iter(|s| {
            let mut v = vec![resource(
                Kind::Server,
                &s.meta,
                &s.spec_json(),
                Some(s.span),
            )];
            server::children(s, &mut v);
            v
        })
        .collect();
    for g in &resolved.groups {
        out.push(resource(
            Kind::Group,
            &g.meta,
            &g.spec_json,
            Some(g.node.span),
        ));
        group::service(g, &mut out);
    }
    for src in &resolved.sources {
        out.push(resource(
            Kind::DiscoverySource,
            &src.meta,
            &src.spec_json,
            Some(src.node.span),
        ));
    }
    out
}

/// The resolved hangar resource itself, with every default written out.
fn resource(
    kind: Kind,
    meta: &super::model::Meta,
    spec: &Json,
    span: Option<super::diag::Span>,
) -> Object {
    let mut metadata = json!({"name": meta.name, "namespace": meta.namespace});
    if !meta.labels.is_empty() {
        metadata["labels"] = json!(meta.labels);
    }
    if !meta.annotations.is_empty() {
        metadata["annotations"] = json!(meta.annotations);
    }
    let body = json!({"apiVersion": api::API_VERSION, "kind": kind.name(), "metadata": metadata, "spec": spec});
    Object::new(body, Role::Resource, span)
}

/// Rendered objects as YAML text: one buffer, each object a range of it with its identity (the
/// fields of [`Object`] the bundle orders by). What [`render`] builds as JSON, printed directly.
#[derive(Debug, Default)]
pub struct Printed {
    pub text: String,
    pub items: Vec<PrintedItem>,
}

#[derive(Debug)]
pub struct PrintedItem {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    pub range: Range<usize>,
}

impl PrintedItem {
    /// The API group (empty for the core group), as [`Object::group`].
    pub fn group(&self) -> &'static str {
        self.api_version
            .split_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }
}

impl Printed {
    fn with_capacity(bytes: usize) -> Self {
        Printed {
            text: String::with_capacity(bytes),
            items: Vec::new(),
        }
    }

    fn push(
        &mut self,
        api_version: &'static str,
        kind: &'static str,
        namespace: Option<&str>,
        name: &str,
        write: impl FnOnce(&mut String),
    ) {
        let start = self.text.len();
        write(&mut self.text);
        self.items.push(PrintedItem {
            api_version,
            kind,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            range: start..self.text.len(),
        });
    }

    /// As [`resource`], printed.
    fn resource<S: Serialize>(&mut self, kind: Kind, meta: &super::model::Meta, spec: &S) {
        fn is_empty(m: &&BTreeMap<String, String>) -> bool {
            m.is_empty()
        }
        #[derive(Serialize)]
        struct Metadata<'a> {
            name: &'a str,
            namespace: &'a str,
            #[serde(skip_serializing_if = "is_empty")]
            labels: &'a BTreeMap<String, String>,
            #[serde(skip_serializing_if = "is_empty")]
            annotations: &'a BTreeMap<String, String>,
        }
        #[derive(Serialize)]
        struct Envelope<'a, S> {
            #[serde(rename = "apiVersion")]
            api_version: &'a str,
            kind: &'a str,
            metadata: Metadata<'a>,
            spec: &'a S,
        }
        let body = Envelope {
            api_version: api::API_VERSION,
            kind: kind.name(),
            metadata: Metadata {
                name: &meta.name,
                namespace: &meta.namespace,
                labels: &meta.labels,
                annotations: &meta.annotations,
            },
            spec,
        };
        self.push(
            api::API_VERSION,
            kind.name(),
            Some(&meta.namespace),
            &meta.name,
            |out| crate::yaml::write_serialize(out, &body),
        );
    }
}

impl Sink for Printed {
    fn child<T>(&mut self, obj: &T, _origin: Span)
    where
        T: Serialize + k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta>,
    {
        let meta = obj.metadata();
        self.push(
            T::API_VERSION,
            T::KIND,
            meta.namespace.as_deref(),
            meta.name.as_deref().unwrap_or_default(),
            |out| crate::yaml::write_serialize(out, obj),
        );
    }
}

/// As [`render`], printed: the same objects, as YAML text, in pieces rendered in parallel.
pub fn render_printed(resolved: &Resolved) -> Vec<Printed> {
    use rayon::prelude::*;
    /// Servers per piece: enough to amortise a piece, small enough to spread over the cores.
    const PIECE: usize = 64;
    let mut out: Vec<Printed> = resolved
        .servers
        .par_chunks(PIECE)
        .map(|servers| {
            let mut p = Printed::with_capacity(servers.len() * 8 * 1024);
            for s in servers {
                // Printing the typed spec prints its `to_value`, `spec_json()`.
                p.resource(Kind::Server, &s.meta, &s.spec);
                server_yaml::children(s, &mut p);
            }
            p
        })
        .collect();
    let mut rest = Printed::default();
    for g in &resolved.groups {
        rest.resource(Kind::Group, &g.meta, &g.spec_json);
        group::service(g, &mut rest);
    }
    for src in &resolved.sources {
        rest.resource(Kind::DiscoverySource, &src.meta, &src.spec_json);
    }
    out.push(rest);
    out
}
