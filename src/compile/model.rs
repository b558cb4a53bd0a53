//! Classifies loaded documents into typed compiler inputs: hangar resources (with legacy kinds
//! converted), catalogs, and other Kubernetes objects passed through.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value as Json, json};

use super::diag::{Diagnostic, Diagnostics, Span, did_you_mean};
use super::node::{Node, Seg, Value};
use super::units;
use super::validate::{Schema, validate};
use crate::api::{self, Kind};

/// Object metadata as hangar reads it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A hangar resource from the inputs.
#[derive(Clone, Debug)]
pub struct Resource {
    pub kind: Kind,
    pub legacy: bool,
    pub meta: Meta,
    /// The whole document, for locating fields; shared with the layers resolved from it.
    pub node: Arc<Node>,
    /// False when the document had errors: it is still resolved and checked (so that every error
    /// is found in one run), but never rendered.
    pub valid: bool,
    /// The spec as JSON, made when first asked for (most servers resolve from the document).
    spec_json: std::sync::OnceLock<Arc<Json>>,
}

impl Resource {
    pub fn new(kind: Kind, legacy: bool, meta: Meta, node: Node, valid: bool) -> Self {
        Resource {
            kind,
            legacy,
            meta,
            node: Arc::new(node),
            valid,
            spec_json: std::sync::OnceLock::new(),
        }
    }

    pub fn spec_node(&self) -> Option<&Node> {
        self.node.get("spec")
    }

    /// The spec as written (validated against the CRD schema), as JSON; shared with what
    /// resolves from it.
    pub fn spec(&self) -> &Arc<Json> {
        self.spec_json
            .get_or_init(|| Arc::new(self.spec_node().map(Node::to_json).unwrap_or(Json::Null)))
    }
}

/// One server definition of a catalog.
#[derive(Clone, Debug)]
pub struct Entry {
    pub meta: api::catalog::CatalogEntryMeta,
    /// The entry minus its metadata fields: an MCPServer spec fragment.
    pub spec: Json,
    pub node: Node,
    /// False when the entry had errors (see [`Resource::valid`]).
    pub valid: bool,
}

/// A catalog, and the discovery source it was given for (if named).
#[derive(Clone, Debug)]
pub struct Catalog {
    pub entries: Vec<Entry>,
    pub span: Span,
    /// Where the catalog came from, for the `mcp-hangar.io/source` annotation.
    pub origin: String,
}

/// Any other Kubernetes object, passed through unchanged.
#[derive(Clone, Debug)]
pub struct Passthrough {
    pub api_version: String,
    pub kind: String,
    pub meta: Meta,
    pub body: Json,
    pub node: Node,
}

#[derive(Default)]
pub struct Model {
    pub resources: Vec<Resource>,
    pub catalogs: Vec<Catalog>,
    pub objects: Vec<Passthrough>,
}

/// Reads the metadata of an object: name required, namespace defaulted, labels and annotations
/// checked.
fn read_meta(doc: &Node, default_ns: &str, diags: &mut Diagnostics) -> Option<Meta> {
    let Some(meta) = doc.get("metadata") else {
        diags.push(
            Diagnostic::error(
                "missing-field",
                Some(doc.span),
                "missing required field `metadata`",
            )
            .hint("add `metadata: {name: ...}`"),
        );
        return None;
    };
    if !matches!(meta.value, Value::Map(_)) {
        diags.push(Diagnostic::error(
            "type-mismatch",
            Some(meta.span),
            format!("`metadata` must be a mapping, found {}", meta.describe()),
        ));
        return None;
    }
    let mut ok = true;
    let name = match meta.get("name") {
        Some(Node {
            value: Value::Str(s),
            ..
        }) => s.to_string(),
        Some(n) => {
            diags.push(Diagnostic::error(
                "type-mismatch",
                Some(n.span),
                format!("`metadata.name` must be a string, found {}", n.describe()),
            ));
            ok = false;
            String::new()
        }
        None => {
            let mut d = Diagnostic::error(
                "missing-field",
                Some(meta.span),
                "missing required field `metadata.name`",
            );
            if meta.get("generateName").is_some() {
                d = d.hint(
                    "`generateName` is not supported: hangar needs stable names to compute diffs",
                );
            }
            diags.push(d);
            return None;
        }
    };
    let namespace = match meta.get("namespace") {
        Some(Node {
            value: Value::Str(s),
            span,
        }) => {
            if let Err(e) = units::check_dns1123_label(s) {
                diags.push(Diagnostic::error(
                    "invalid-name",
                    Some(*span),
                    format!("invalid namespace: {e}"),
                ));
                ok = false;
            }
            s.to_string()
        }
        Some(n) if !matches!(n.value, Value::Null) => {
            diags.push(Diagnostic::error(
                "type-mismatch",
                Some(n.span),
                format!(
                    "`metadata.namespace` must be a string, found {}",
                    n.describe()
                ),
            ));
            ok = false;
            String::new()
        }
        _ => default_ns.to_string(),
    };
    let mut maps = [BTreeMap::new(), BTreeMap::new()];
    for (i, field) in ["labels", "annotations"].iter().enumerate() {
        let Some(m) = meta.get(field) else { continue };
        match &m.value {
            Value::Null => {}
            Value::Map(entries) => {
                for (k, v) in entries {
                    let key = k.key_str();
                    if let Err(e) = units::check_label_key(&key) {
                        diags.push(Diagnostic::error(
                            "invalid-label",
                            Some(k.span),
                            format!("invalid {} key: {e}", &field[..field.len() - 1]),
                        ));
                        ok = false;
                    }
                    let value = match &v.value {
                        Value::Str(s) => s.to_string(),
                        _ => {
                            diags.push(
                                Diagnostic::error(
                                    "type-mismatch",
                                    Some(v.span),
                                    format!(
                                        "`metadata.{field}.{key}` must be a string, found {}",
                                        v.describe()
                                    ),
                                )
                                .hint("quote the value"),
                            );
                            ok = false;
                            continue;
                        }
                    };
                    if i == 0 {
                        if let Err(e) = units::check_label_value(&value) {
                            diags.push(Diagnostic::error("invalid-label", Some(v.span), e));
                            ok = false;
                        }
                    }
                    maps[i].insert(key, value);
                }
            }
            _ => {
                diags.push(Diagnostic::error(
                    "type-mismatch",
                    Some(m.span),
                    format!(
                        "`metadata.{field}` must be a mapping, found {}",
                        m.describe()
                    ),
                ));
                ok = false;
            }
        }
    }
    let [labels, annotations] = maps;
    ok.then_some(Meta {
        name,
        namespace,
        labels,
        annotations,
    })
}

/// Sorts one document into the model.
pub fn classify(
    doc: Node,
    default_ns: &str,
    origin: &str,
    model: &mut Model,
    diags: &mut Diagnostics,
) {
    if !matches!(doc.value, Value::Map(_)) {
        diags.push(
            Diagnostic::error("not-an-object", Some(doc.span), format!("expected a Kubernetes object or a catalog, found {}", doc.describe()))
                .hint("each YAML document must be a mapping with `apiVersion` and `kind`, or a catalog with a `servers:` list"),
        );
        return;
    }
    let api_version = doc.get("apiVersion");
    let kind = doc.get("kind");
    if api_version.is_none() && kind.is_none() {
        if doc.get("servers").is_some() || doc.get("providers").is_some() {
            if let Some(c) = read_catalog(&doc, origin, diags) {
                model.catalogs.push(c);
            }
            return;
        }
        // Not a Kubernetes object (a Helm `values.yaml`, a tool's config): skipped with a warning,
        // unless a key looks like a misspelt `apiVersion`, `kind` or `servers`.
        let mut d = Diagnostic::warning("not-an-object", Some(doc.span), "skipped: this document has no `apiVersion` and `kind`, and is not a catalog")
            .hint("hangar reads Kubernetes objects and catalogs (`servers:`); list files it should not read in `.hangarignore`");
        if let Value::Map(entries) = &doc.value {
            for (k, _) in entries {
                if let Some(best) =
                    did_you_mean(&k.key_str(), ["apiVersion", "kind", "servers", "providers"])
                {
                    d = Diagnostic::error(
                        "unknown-field",
                        Some(k.span),
                        format!(
                            "unknown top-level field `{}`, did you mean `{best}`?",
                            k.key_str()
                        ),
                    );
                    break;
                }
            }
        }
        diags.push(d);
        return;
    }
    // `apiVersion` and no `kind` (a Helm `Chart.yaml`), or a kustomize file: not an object.
    let foreign_version = api_version
        .and_then(Node::as_str)
        .is_some_and(|v| !v.starts_with(api::GROUP));
    let kustomize = api_version
        .and_then(Node::as_str)
        .is_some_and(|v| v.starts_with("kustomize.config.k8s.io/"));
    let misspelt_kind = match &doc.value {
        Value::Map(entries) => entries
            .iter()
            .any(|(k, _)| k.key_str() != "kind" && did_you_mean(&k.key_str(), ["kind"]).is_some()),
        _ => false,
    };
    if (kind.is_none() && foreign_version && !misspelt_kind) || kustomize {
        let what = if kustomize {
            "a kustomize file"
        } else {
            "no `kind`"
        };
        diags.push(
            Diagnostic::warning(
                "not-an-object",
                Some(doc.span),
                format!("skipped: {what}, not a Kubernetes object hangar renders"),
            )
            .hint("list files hangar should not read in `.hangarignore`"),
        );
        return;
    }
    let (Some(av), Some(k)) = (
        api_version.and_then(Node::as_str),
        kind.and_then(Node::as_str),
    ) else {
        let span = api_version.or(kind).map(|n| n.span).unwrap_or(doc.span);
        diags.push(Diagnostic::error(
            "missing-field",
            Some(span),
            "an object needs both `apiVersion` and `kind`, as strings",
        ));
        return;
    };
    let (av, k) = (av.to_string(), k.to_string());
    let group = av.split_once('/').map(|(g, _)| g).unwrap_or("");
    if av == super::convert::HANGAR_V1ALPHA2 && k == "MCPEgressPolicy" {
        diags.push(
            Diagnostic::error(
                "no-equivalent",
                kind.map(|n| n.span),
                format!("`{av}` MCPEgressPolicy has no equivalent in hangar"),
            )
            .hint("hangar has no egress policy kind: an MCPServer's `networkPolicy.restrictEgress: true` limits its egress to DNS and the allowed namespaces, and `tools.allowList`/`denyList` filter its tools"),
        );
        return;
    }
    if super::convert::converts(&av, &k) {
        let kind_span = kind.map(|n| n.span);
        let Some(conv) = super::convert::convert(&doc, diags) else {
            return;
        };
        let name = doc
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Node::as_str)
            .unwrap_or_default()
            .to_string();
        diags.push(
            Diagnostic::warning(
                "converted",
                kind_span,
                format!(
                    "`{av}` {k} `{name}` converted to `{}` {} ({})",
                    api::API_VERSION,
                    if k == "MCPServerGroup" || k == "MCPDiscoverySource" {
                        k.as_str()
                    } else {
                        "MCPServer"
                    },
                    conv.summary
                ),
            )
            .hint("`hangar import` writes it as a hangar manifest"),
        );
        let target = Kind::parse(&k).map_or(Kind::Server, |(kind, _)| kind);
        read_resource(conv.doc, target, false, default_ns, model, diags);
        return;
    }
    if group == api::GROUP {
        let kind_span = kind.map(|n| n.span);
        let Some((kind_enum, legacy)) = Kind::parse(&k) else {
            let names = [
                "MCPServer",
                "MCPServerGroup",
                "MCPDiscoverySource",
                "MCPProvider",
                "MCPProviderGroup",
            ];
            let mut d = Diagnostic::error(
                "unknown-kind",
                kind_span,
                format!("unknown kind `{k}` in {}", api::GROUP),
            );
            d = match did_you_mean(&k, names) {
                Some(best) => d.hint(format!("did you mean `{best}`?")),
                None => d.hint("hangar serves MCPServer, MCPServerGroup and MCPDiscoverySource"),
            };
            diags.push(d);
            return;
        };
        if av != api::API_VERSION {
            diags.push(
                Diagnostic::error(
                    "unknown-api-version",
                    api_version.map(|n| n.span),
                    format!("unsupported apiVersion `{av}`"),
                )
                .hint(format!(
                    "hangar serves `{}` (and converts `{}`)",
                    api::API_VERSION,
                    super::convert::HANGAR_V1ALPHA2
                )),
            );
            return;
        }
        read_resource(doc, kind_enum, legacy, default_ns, model, diags);
        return;
    }
    if av == "v1" && k == "List" {
        match doc.get("items").map(|n| n.value.clone()) {
            Some(Value::Seq(items)) => {
                for item in items {
                    classify(item, default_ns, origin, model, diags);
                }
            }
            _ => diags.push(Diagnostic::error(
                "missing-field",
                Some(doc.span),
                "a `List` needs an `items` list",
            )),
        }
        return;
    }
    if super::convert::is_mcp_kind(group, &k) {
        diags.push(
            Diagnostic::warning(
                "foreign-kind",
                kind.map(|n| n.span),
                format!("`{k}` of `{av}` is not a kind hangar converts: passed through unchanged"),
            )
            .hint(format!(
                "hangar converts {}; write hangar's kinds (`{}`: MCPServer, MCPServerGroup, MCPDiscoverySource) for the rest",
                super::convert::CONVERTED_KINDS,
                api::API_VERSION
            )),
        );
    }
    let before = diags.error_count();
    let Some(meta) = read_meta(&doc, default_ns, diags) else {
        return;
    };
    if diags.error_count() > before {
        return;
    }
    let mut body = doc.to_json();
    let cluster_scoped = matches!(
        k.as_str(),
        "Namespace"
            | "CustomResourceDefinition"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "PriorityClass"
            | "StorageClass"
            | "PersistentVolume"
    );
    if let Some(m) = body.get_mut("metadata").and_then(Json::as_object_mut) {
        if cluster_scoped {
            m.remove("namespace");
        } else {
            m.insert("namespace".into(), json!(meta.namespace));
        }
    }
    let mut meta = meta;
    if cluster_scoped {
        meta.namespace = String::new();
    }
    model.objects.push(Passthrough {
        api_version: av,
        kind: k,
        meta,
        body,
        node: doc,
    });
}

/// Metadata fields the API server sets; accepted on input (e.g. `kubectl get -o yaml` output), dropped from output.
const SERVER_SET_METADATA: [&str; 10] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
    "finalizers",
];

fn metadata_schema() -> Json {
    let mut props = serde_json::Map::new();
    props.insert("name".into(), json!({"type": "string"}));
    props.insert("namespace".into(), json!({"type": "string"}));
    // Labels and annotations are checked (with better messages) by `read_meta`.
    props.insert(
        "labels".into(),
        json!({"x-kubernetes-preserve-unknown-fields": true}),
    );
    props.insert(
        "annotations".into(),
        json!({"x-kubernetes-preserve-unknown-fields": true}),
    );
    for f in SERVER_SET_METADATA {
        props.insert(
            f.into(),
            json!({"x-kubernetes-preserve-unknown-fields": true}),
        );
    }
    json!({"type": "object", "properties": props})
}

/// The schema a document of a kind is checked against: the CRD's, with the envelope hangar reads
/// (metadata as described above, `status` accepted and ignored). Built once per process.
fn input_schema(kind: Kind) -> &'static Schema {
    static SCHEMAS: std::sync::OnceLock<[Schema; 3]> = std::sync::OnceLock::new();
    let all = SCHEMAS.get_or_init(|| {
        Kind::ALL.map(|k| {
            let mut schema = structural_schema(k);
            schema["properties"]["metadata"] = metadata_schema();
            schema["properties"]["apiVersion"] = json!({"type": "string"});
            schema["properties"]["kind"] = json!({"type": "string"});
            // status is written by the controller; accept it on input and ignore it.
            schema["properties"]["status"] = json!({"x-kubernetes-preserve-unknown-fields": true});
            Schema::compile(&schema)
        })
    });
    let i = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    &all[i]
}

/// The generated CRDs (`crds/`, kept current by `tests/generated.rs`), built into the binary.
const CRD_TEXTS: [(Kind, &str); 3] = [
    (Kind::Server, include_str!("../../crds/mcpservers.yaml")),
    (Kind::Group, include_str!("../../crds/mcpservergroups.yaml")),
    (
        Kind::DiscoverySource,
        include_str!("../../crds/mcpdiscoverysources.yaml"),
    ),
];

/// The structural schema of a kind: [`api::schema::structural`], read from the generated CRD
/// built into the binary (generating it with schemars at run time costs as much as validating
/// a thousand documents). Falls back to generating it should the text not hold it.
fn structural_schema(kind: Kind) -> Json {
    let text = CRD_TEXTS.iter().find(|(k, _)| *k == kind).map(|(_, t)| *t);
    let mut d = Diagnostics::default();
    let path: [Seg; 5] = [
        "spec".into(),
        "versions".into(),
        0usize.into(),
        "schema".into(),
        "openAPIV3Schema".into(),
    ];
    let embedded = text.and_then(|t| {
        let docs = super::load::load_yaml(0, t, &mut d).docs;
        let (schema, found) = docs.first()?.lookup(&path);
        (found && !d.has_errors() && matches!(schema.value, Value::Map(_)))
            .then(|| schema.to_json())
    });
    embedded.unwrap_or_else(|| api::schema::structural(kind))
}

/// Schemas of a catalog document: the top level, and one entry. Built once per process.
fn catalog_schemas() -> &'static (Schema, Schema) {
    static SCHEMAS: std::sync::OnceLock<(Schema, Schema)> = std::sync::OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let schema = api::catalog::catalog_schema();
        let item_schema = schema["properties"]["servers"]["items"].clone();
        let mut top = schema;
        for list in ["servers", "providers"] {
            top["properties"][list] = json!({"type": "array"});
        }
        (Schema::compile(&top), Schema::compile(&item_schema))
    })
}

fn read_resource(
    doc: Node,
    kind: Kind,
    legacy: bool,
    default_ns: &str,
    model: &mut Model,
    diags: &mut Diagnostics,
) {
    let before = diags.error_count();
    let schema = input_schema(kind);
    validate(&doc, schema, &[], diags);
    if legacy {
        let new = match kind {
            Kind::Group => "MCPServerGroup",
            _ => "MCPServer",
        };
        let old = doc
            .get("kind")
            .and_then(Node::as_str)
            .unwrap_or_default()
            .to_string();
        diags.push(
            Diagnostic::warning(
                "legacy-kind",
                doc.get("kind").map(|n| n.span),
                format!("`{old}` is the legacy name of `{new}`; converted"),
            )
            .hint(format!("write `kind: {new}`; the fields are the same")),
        );
    }
    let meta = read_meta(&doc, default_ns, diags);
    if let Some(m) = &meta {
        if let Err(e) = units::check_dns1035_label(&m.name) {
            let span = doc
                .get("metadata")
                .and_then(|n| n.get("name"))
                .map(|n| n.span);
            diags.push(
                Diagnostic::error("invalid-name", span, format!("invalid {} name: {e}", kind.name()))
                    .hint("names must be DNS-1035 labels: at most 63 characters of a-z, 0-9 and '-', starting with a letter"),
            );
        }
    }
    let valid = diags.error_count() == before;
    let Some(meta) = meta else { return };
    model
        .resources
        .push(Resource::new(kind, legacy, meta, doc, valid));
}

/// Reads a catalog document (`servers:` or `providers:` list of entries). Every entry is checked on
/// its own: an entry with errors is reported and left out, the others are kept (so that discovery
/// can sync the rest).
pub fn read_catalog(doc: &Node, origin: &str, diags: &mut Diagnostics) -> Option<Catalog> {
    let (top, item_schema) = catalog_schemas();
    let before = diags.error_count();
    validate(doc, top, &[], diags);
    if diags.error_count() > before {
        return None;
    }
    let lists: Vec<(&str, &Node)> = ["servers", "providers"]
        .iter()
        .filter_map(|k| doc.get(k).map(|n| (*k, n)))
        .collect();
    if lists.len() == 2 {
        diags.push(
            Diagnostic::warning(
                "catalog-both-lists",
                doc.key_node("providers").map(|n| n.span),
                "catalog has both `servers:` and `providers:`; both are read",
            )
            .hint("`providers:` is the older name; keep one list"),
        );
    }
    let mut entries = Vec::new();
    for (list_name, list) in lists {
        let Value::Seq(items) = &list.value else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let before = diags.error_count();
            validate(
                item,
                item_schema,
                &[Seg::Key(list_name.into()), Seg::Index(i)],
                diags,
            );
            let schema_ok = diags.error_count() == before;
            if let Some(mut entry) = read_entry(item, diags) {
                entry.valid &= schema_ok;
                entries.push(entry);
            }
        }
    }
    Some(Catalog {
        entries,
        span: doc.span,
        origin: origin.to_string(),
    })
}

fn read_entry(item: &Node, diags: &mut Diagnostics) -> Option<Entry> {
    let json = item.to_json();
    let meta: api::catalog::CatalogEntryMeta = serde_json::from_value(json.clone()).ok()?;
    let mut ok = true;
    let name_span = item.get("name").map(|n| n.span);
    if let Err(e) = units::check_dns1035_label(&meta.name) {
        diags.push(Diagnostic::error(
            "invalid-name",
            name_span,
            format!("invalid server name: {e}"),
        ));
        ok = false;
    }
    if let Some(ns) = &meta.namespace {
        if let Err(e) = units::check_dns1123_label(ns) {
            diags.push(Diagnostic::error(
                "invalid-name",
                item.get("namespace").map(|n| n.span),
                format!("invalid namespace: {e}"),
            ));
            ok = false;
        }
    }
    for (field, map) in [("labels", &meta.labels), ("annotations", &meta.annotations)] {
        for (k, v) in map.iter().flatten() {
            let span = item
                .lookup(&[Seg::Key(field.into()), Seg::Key(k.clone())])
                .0
                .span;
            if let Err(e) = units::check_label_key(k) {
                diags.push(Diagnostic::error("invalid-label", Some(span), e));
                ok = false;
            }
            if field == "labels" {
                if let Err(e) = units::check_label_value(v) {
                    diags.push(Diagnostic::error("invalid-label", Some(span), e));
                    ok = false;
                }
            }
        }
    }
    let mut spec = json;
    if let Some(obj) = spec.as_object_mut() {
        for f in api::catalog::ENTRY_META_FIELDS {
            obj.remove(f);
        }
    }
    Some(Entry {
        meta,
        spec,
        node: item.clone(),
        valid: ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(files: &[(&str, &str)]) -> crate::compile::Compilation {
        let inputs = crate::compile::Inputs {
            files: files
                .iter()
                .map(|(p, t)| crate::compile::InputFile {
                    file: crate::compile::SourceFile::new(p.to_string(), t.to_string()),
                    role: crate::compile::FileRole::Inputs,
                })
                .collect(),
            ..Default::default()
        };
        crate::compile::compile(&inputs)
    }

    #[test]
    fn foreign_yaml_in_a_directory_is_skipped_with_a_warning() {
        let c = compiled(&[
            ("Chart.yaml", "apiVersion: v2\nname: x\nversion: 0.1.0\n"),
            ("values.yaml", "replicaCount: 1\nimage:\n  tag: x\n"),
            (
                "kustomization.yaml",
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml]\n",
            ),
            (
                "a.yaml",
                "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: a\nspec:\n  mode: container\n  image: x:1\n",
            ),
        ]);
        let text = c.render_diagnostics();
        let bundle = c.bundle.as_ref().expect("the server still renders");
        assert!(bundle.objects.iter().all(|o| o.kind != "Kustomization"));
        assert_eq!(text.matches("warning: skipped").count(), 3, "{text}");
    }

    #[test]
    fn a_misspelt_envelope_is_still_an_error() {
        for doc in [
            "apiVrsion: v1\nknd: ConfigMap\n",
            "apiVersion: v1\nknd: ConfigMap\n",
        ] {
            let c = compiled(&[("x.yaml", doc)]);
            assert!(c.bundle.is_none(), "{doc}: {}", c.render_diagnostics());
        }
    }

    #[test]
    fn built_in_schemas_are_the_generated_ones() {
        for kind in Kind::ALL {
            assert_eq!(
                structural_schema(kind),
                api::schema::structural(kind),
                "{kind:?}: crds/ is out of date (regenerate with `hangar crds --out-dir crds`)"
            );
        }
    }
}
