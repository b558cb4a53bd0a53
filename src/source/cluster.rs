//! Compiler inputs read from the cluster for a discovery source: a ConfigMap's catalog, the
//! catalog ConfigMaps of matching namespaces, and annotated Services. Every catalog becomes a
//! compiler file named after where it came from (`configmap:NS/NAME#KEY`, `service:NS/NAME`), so
//! diagnostics point at the ConfigMap key and line, and the servers' `mcp-hangar.io/source`
//! annotation says the same as `hangar render` does for the same ConfigMap.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value as Json, json};

use crate::api::discovery::{AnnotationsSource, MCPDiscoverySourceSpec, NamespaceSelector};
use crate::compile::{FileRole, InputFile, SourceFile};
use crate::source::scope::{SYSTEM_NAMESPACES, Scope};

/// Label that marks a ConfigMap as a catalog for `Namespace` discovery.
pub const CATALOG_LABEL: &str = "mcp-hangar.io/catalog";
/// Keys of a catalog ConfigMap that hold catalogs.
pub const CATALOG_KEY_SUFFIXES: [&str; 4] = [".yaml", ".yml", ".json", ".toml"];

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    NotManaged(String),
    #[error("ConfigMap {0} not found")]
    ConfigMapMissing(String),
    #[error("ConfigMap {configmap} has no key `{key}`")]
    KeyMissing { configmap: String, key: String },
    #[error("{0}")]
    Invalid(String),
    #[error("discovery type {0} is not supported yet")]
    Unsupported(&'static str),
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("git: {0}")]
    Git(String, &'static str),
    #[error(
        "{0} lists no servers (it is empty, only comments, `null`, or `servers:` with no value); to remove every server this source made, write `servers: []`"
    )]
    EmptyCatalog(String),
}

impl SourceError {
    /// The condition reason for status.
    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::NotManaged(_) => "NamespaceNotManaged",
            SourceError::ConfigMapMissing(_) => "ConfigMapMissing",
            SourceError::KeyMissing { .. } => "KeyMissing",
            SourceError::Invalid(_) => "InvalidSpec",
            SourceError::Unsupported(_) => "Unsupported",
            SourceError::Kube(_) => "SourceUnreadable",
            SourceError::Git(_, reason) => reason,
            SourceError::EmptyCatalog(_) => "EmptyCatalog",
        }
    }
}

/// What a source read: compiler files (bound to the source) and a revision that changes when the
/// content does.
#[derive(Debug, Default)]
pub struct SourceRead {
    pub files: Vec<InputFile>,
    pub revision: String,
}

/// A catalog read from a ConfigMap key; a blank one ([`crate::compile::catalog_is_blank`]) is an
/// error, so that an emptied ConfigMap never deletes what the source made.
fn catalog_file(
    path: String,
    text: String,
    bind: &str,
    namespace: Option<&str>,
) -> Result<InputFile, SourceError> {
    if crate::compile::catalog_is_blank(&path, &text) {
        return Err(SourceError::EmptyCatalog(path));
    }
    Ok(InputFile {
        file: SourceFile::new(path, text),
        role: match namespace {
            Some(ns) => FileRole::CatalogIn {
                bind: Some(bind.to_string()),
                namespace: ns.to_string(),
            },
            None => FileRole::Catalog {
                bind: Some(bind.to_string()),
            },
        },
    })
}

/// A ConfigMap key's text (from `data`, or UTF-8 `binaryData`).
fn key_text(cm: &ConfigMap, key: &str) -> Option<String> {
    cm.data
        .as_ref()
        .and_then(|d| d.get(key).cloned())
        .or_else(|| {
            cm.binary_data
                .as_ref()
                .and_then(|d| d.get(key))
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        })
}

/// `type: ConfigMap`: the catalog under `configMapRef.key` of one ConfigMap. A missing ConfigMap
/// or key is an error (unreadable), never an empty catalog.
pub async fn read_configmap(
    client: &Client,
    scope: &Scope,
    ns: &str,
    bind: &str,
    spec: &MCPDiscoverySourceSpec,
) -> Result<SourceRead, SourceError> {
    let r = spec
        .config_map_ref
        .as_ref()
        .ok_or_else(|| SourceError::Invalid("type ConfigMap needs configMapRef".into()))?;
    let cm_ns = r.namespace.clone().unwrap_or_else(|| ns.to_string());
    let key = r.key.clone().unwrap_or_else(|| "providers.yaml".into());
    if let Some(why) = scope.refusal(&cm_ns) {
        let id = format!("{cm_ns}/{}", r.name);
        return Err(SourceError::NotManaged(format!(
            "configMapRef: ConfigMap {id}: {why}"
        )));
    }
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &cm_ns);
    let id = format!("{cm_ns}/{}", r.name);
    let cm = api
        .get_opt(&r.name)
        .await?
        .ok_or_else(|| SourceError::ConfigMapMissing(id.clone()))?;
    let text = key_text(&cm, &key).ok_or_else(|| SourceError::KeyMissing {
        configmap: id.clone(),
        key: key.clone(),
    })?;
    Ok(SourceRead {
        files: vec![catalog_file(
            format!("configmap:{id}#{key}"),
            text,
            bind,
            None,
        )?],
        revision: cm.resource_version().unwrap_or_default(),
    })
}

/// A label selector as the API's query string (`a=b,c in (d,e),!f`).
pub fn selector_string(
    labels: Option<&BTreeMap<String, String>>,
    exprs: Option<&Vec<LabelSelectorRequirement>>,
) -> String {
    let mut parts: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for r in exprs.into_iter().flatten() {
        let values = r.values.clone().unwrap_or_default().join(",");
        parts.push(match r.operator.as_str() {
            "In" => format!("{} in ({values})", r.key),
            "NotIn" => format!("{} notin ({values})", r.key),
            "Exists" => r.key.clone(),
            "DoesNotExist" => format!("!{}", r.key),
            other => format!("{} {other} ({values})", r.key),
        });
    }
    parts.join(",")
}

/// The namespaces a selector picks, sorted, minus the excluded ones and those `scope` does not
/// manage (a namespaced controller's selectors match only its namespaces).
pub async fn matching_namespaces(
    client: &Client,
    scope: &Scope,
    sel: &NamespaceSelector,
) -> Result<Vec<String>, SourceError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let q = selector_string(sel.match_labels.as_ref(), sel.match_expressions.as_ref());
    let list = api.list(&ListParams::default().labels(&q)).await?;
    let excluded: Vec<String> = sel
        .exclude_namespaces
        .clone()
        .unwrap_or_else(|| SYSTEM_NAMESPACES.iter().map(|s| s.to_string()).collect());
    let mut out: Vec<String> = list
        .items
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .map(|n| n.name_any())
        .filter(|n| !excluded.contains(n) && scope.manages(n))
        .collect();
    out.sort();
    Ok(out)
}

/// `type: Namespace`: in every matching namespace, each ConfigMap labelled
/// `mcp-hangar.io/catalog: "true"` contributes its catalog keys; the servers land in that namespace.
pub async fn read_namespaces(
    client: &Client,
    scope: &Scope,
    bind: &str,
    spec: &MCPDiscoverySourceSpec,
) -> Result<SourceRead, SourceError> {
    let sel = spec.namespace_selector.clone().unwrap_or_default();
    let namespaces = matching_namespaces(client, scope, &sel).await?;
    let mut read = SourceRead::default();
    let mut versions = Vec::new();
    for ns in &namespaces {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let list = api
            .list(&ListParams::default().labels(&format!("{CATALOG_LABEL}=true")))
            .await?;
        let mut cms = list.items;
        cms.sort_by_key(|c| c.name_any());
        for cm in &cms {
            versions.push(format!(
                "{ns}/{}@{}",
                cm.name_any(),
                cm.resource_version().unwrap_or_default()
            ));
            let mut keys: Vec<String> = cm
                .data
                .iter()
                .flatten()
                .map(|(k, _)| k.clone())
                .chain(cm.binary_data.iter().flatten().map(|(k, _)| k.clone()))
                .filter(|k| CATALOG_KEY_SUFFIXES.iter().any(|s| k.ends_with(s)))
                .collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                if let Some(text) = key_text(cm, &key) {
                    read.files.push(catalog_file(
                        format!("configmap:{ns}/{}#{key}", cm.name_any()),
                        text,
                        bind,
                        Some(ns),
                    )?);
                }
            }
        }
    }
    read.revision = revision_of(&versions);
    Ok(read)
}

/// A short digest of a list of `object@resourceVersion` strings.
pub fn revision_of(parts: &[String]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(b"\n");
    }
    let d = h.finalize();
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// `type: Annotations`: Services carrying the required annotations (default
/// `mcp-hangar.io/provider`), in the namespaces `namespaceSelector` picks (default: the source's
/// own), become remote servers at `http://SERVICE.NAMESPACE.svc:PORT/PATH`.
pub async fn read_annotated_services(
    client: &Client,
    scope: &Scope,
    ns: &str,
    bind: &str,
    spec: &MCPDiscoverySourceSpec,
) -> Result<SourceRead, SourceError> {
    let namespaces = match &spec.namespace_selector {
        Some(sel) => matching_namespaces(client, scope, sel).await?,
        None => vec![ns.to_string()],
    };
    let ann = spec.annotations.clone().unwrap_or_default();
    let svc_sel = ann
        .service_selector
        .as_ref()
        .map(|s| selector_string(s.match_labels.as_ref(), s.match_expressions.as_ref()))
        .unwrap_or_default();
    let mut read = SourceRead::default();
    let mut versions = Vec::new();
    for sns in &namespaces {
        let api: Api<Service> = Api::namespaced(client.clone(), sns);
        let list = api.list(&ListParams::default().labels(&svc_sel)).await?;
        let mut svcs = list.items;
        svcs.sort_by_key(|s| s.name_any());
        for svc in &svcs {
            let Some(entry) = service_entry(svc, &ann) else {
                continue;
            };
            versions.push(format!(
                "{sns}/{}@{}",
                svc.name_any(),
                svc.resource_version().unwrap_or_default()
            ));
            let text =
                serde_json::to_string_pretty(&json!({ "servers": [entry] })).unwrap_or_default();
            read.files.push(catalog_file(
                format!("service:{sns}/{}", svc.name_any()),
                text,
                bind,
                Some(sns),
            )?);
        }
    }
    read.revision = revision_of(&versions);
    Ok(read)
}

/// The catalog entry an annotated Service stands for, or None when it lacks a required
/// annotation (or one is `"false"`). Annotations under the prefix: `name`, `port` (number or
/// port name; default the port named `mcp`, else the first), `path` (default `/mcp`, `/sse` for
/// the sse transport), `transport`, `scheme` (default `https` on port 443, else `http`).
pub fn service_entry(svc: &Service, ann: &AnnotationsSource) -> Option<Json> {
    let prefix = ann.annotation_prefix.as_deref().unwrap_or("mcp-hangar.io");
    let required = ann
        .required_annotations
        .clone()
        .unwrap_or_else(|| vec![format!("{prefix}/provider")]);
    let annotations = svc.annotations();
    if !required
        .iter()
        .all(|k| annotations.get(k).is_some_and(|v| v != "false"))
    {
        return None;
    }
    let get = |k: &str| annotations.get(&format!("{prefix}/{k}")).cloned();
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let port = match get("port") {
        Some(p) => match p.parse::<i32>() {
            Ok(n) => n,
            Err(_) => ports
                .iter()
                .find(|sp| sp.name.as_deref() == Some(p.as_str()))
                .map(|sp| sp.port)
                .unwrap_or(0),
        },
        None => ports
            .iter()
            .find(|sp| sp.name.as_deref() == Some("mcp"))
            .or(ports.first())
            .map(|sp| sp.port)
            .unwrap_or(0),
    };
    let transport = get("transport");
    let path = get("path").unwrap_or_else(|| {
        if transport.as_deref() == Some("sse") {
            "/sse".into()
        } else {
            "/mcp".into()
        }
    });
    let scheme = get("scheme").unwrap_or_else(|| {
        if port == 443 {
            "https".into()
        } else {
            "http".into()
        }
    });
    let ns = svc.namespace().unwrap_or_default();
    let mut entry = json!({
        "name": get("name").unwrap_or_else(|| svc.name_any()),
        "mode": "remote",
        "endpoint": format!("{scheme}://{}.{ns}.svc:{port}{path}", svc.name_any()),
    });
    if let Some(t) = transport {
        entry["transport"] = json!(t);
    }
    Some(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    fn svc(annotations: &[(&str, &str)], ports: &[(&str, i32)]) -> Service {
        let mut s = Service::default();
        s.metadata.name = Some("tools".into());
        s.metadata.namespace = Some("team".into());
        s.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        s.spec = Some(ServiceSpec {
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p)| ServicePort {
                        name: Some(n.to_string()),
                        port: *p,
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        });
        s
    }

    #[test]
    fn annotated_services_become_remote_entries() {
        let a = AnnotationsSource::default();
        assert_eq!(service_entry(&svc(&[], &[("mcp", 80)]), &a), None);
        assert_eq!(
            service_entry(
                &svc(&[("mcp-hangar.io/provider", "false")], &[("mcp", 80)]),
                &a
            ),
            None
        );
        let e = service_entry(
            &svc(
                &[("mcp-hangar.io/provider", "true")],
                &[("web", 80), ("mcp", 8080)],
            ),
            &a,
        )
        .unwrap();
        assert_eq!(e["endpoint"], "http://tools.team.svc:8080/mcp");
        assert_eq!(e["name"], "tools");
        let e = service_entry(
            &svc(
                &[
                    ("mcp-hangar.io/provider", "true"),
                    ("mcp-hangar.io/name", "docs"),
                    ("mcp-hangar.io/port", "web"),
                    ("mcp-hangar.io/transport", "sse"),
                ],
                &[("web", 443)],
            ),
            &a,
        )
        .unwrap();
        assert_eq!(e["endpoint"], "https://tools.team.svc:443/sse");
        assert_eq!(e["name"], "docs");
        assert_eq!(e["transport"], "sse");
    }

    #[test]
    fn selectors_as_query_strings() {
        let labels = BTreeMap::from([("a".to_string(), "b".to_string())]);
        let exprs = vec![
            LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["x".into(), "y".into()]),
            },
            LabelSelectorRequirement {
                key: "off".into(),
                operator: "DoesNotExist".into(),
                values: None,
            },
        ];
        assert_eq!(
            selector_string(Some(&labels), Some(&exprs)),
            "a=b,tier in (x,y),!off"
        );
        assert_eq!(selector_string(None, None), "");
    }
}
