//! Rendering: one builder per output kind. Input is resolved and checked; output is plain JSON
//! objects, fully specified (the defaults the API server would add are written out).

mod group;
pub mod labels;
mod server;

use serde_json::{Value as Json, json};

pub use labels::{
    COMPONENT_GROUP, COMPONENT_SERVER, CONFIG_HASH_ANNOTATION, GROUP_LABEL, MANAGED_BY,
    MCP_SERVER_POD_LABEL, SERVER_LABEL,
};

use super::bundle::{Object, Role};
use super::resolve::{Resolved, ResolvedServer};
use crate::api::{self, Kind};

pub fn render(resolved: &Resolved) -> Vec<Object> {
    use rayon::prelude::*;
    let mut out: Vec<Object> = resolved
        .servers
        .par_iter()
        .flat_map_iter(|s| {
            std::iter::once(resource(Kind::Server, &s.meta, &s.spec_json, Some(s.span)))
                .chain(server::children(s))
        })
        .collect();
    for g in &resolved.groups {
        out.push(resource(
            Kind::Group,
            &g.meta,
            &g.spec_json,
            Some(g.node.span),
        ));
        out.push(group::service(g));
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

/// Serialises a typed Kubernetes object.
fn to_object<T: serde::Serialize>(obj: &T, s: &ResolvedServer) -> Object {
    let body = serde_json::to_value(obj).unwrap_or(Json::Null);
    Object::new(body, Role::Child, Some(s.span))
}
