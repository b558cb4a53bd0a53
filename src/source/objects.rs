//! hangar's own resources as read from the cluster (untyped, so one that does not deserialize
//! stops nothing else): their API resource, and the compiler input one of them is. The
//! controller compiles each alone; the gateway compiles what it watches together.

use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::discovery::ApiResource;
use serde_json::{Value as Json, json};

use crate::compile::{FileRole, InputFile, Inputs, SourceFile};

pub fn resource(kind: crate::api::Kind) -> ApiResource {
    let plural = match kind {
        crate::api::Kind::Server => "mcpservers",
        crate::api::Kind::Group => "mcpservergroups",
        crate::api::Kind::DiscoverySource => "mcpdiscoverysources",
    };
    ApiResource {
        group: crate::api::GROUP.into(),
        version: crate::api::VERSION.into(),
        api_version: crate::api::API_VERSION.into(),
        kind: kind.name().into(),
        plural: plural.into(),
    }
}

/// Compiler input for one resource from the cluster: what a user would have written.
pub fn compile_input(obj: &DynamicObject, kind: &str) -> Inputs {
    let mut meta = serde_json::Map::new();
    meta.insert("name".into(), json!(obj.name_any()));
    if let Some(ns) = &obj.metadata.namespace {
        meta.insert("namespace".into(), json!(ns));
    }
    if let Some(l) = obj.metadata.labels.as_ref().filter(|l| !l.is_empty()) {
        meta.insert("labels".into(), json!(l));
    }
    if let Some(a) = obj.metadata.annotations.as_ref() {
        let a: serde_json::Map<String, Json> = a
            .iter()
            .filter(|(k, _)| !k.starts_with("kubectl.kubernetes.io/"))
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        if !a.is_empty() {
            meta.insert("annotations".into(), Json::Object(a));
        }
    }
    let mut doc = serde_json::Map::new();
    doc.insert("apiVersion".into(), json!(crate::api::API_VERSION));
    doc.insert("kind".into(), json!(kind));
    doc.insert("metadata".into(), Json::Object(meta));
    if let Some(spec) = obj.data.get("spec") {
        doc.insert("spec".into(), spec.clone());
    }
    let ns = obj
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let text = serde_json::to_string_pretty(&Json::Object(doc)).unwrap_or_default();
    Inputs {
        files: vec![InputFile {
            file: SourceFile::new(format!("{kind}/{ns}/{}", obj.name_any()), text),
            role: FileRole::Inputs,
        }],
        default_namespace: ns,
    }
}
