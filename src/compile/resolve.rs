//! Resolution: catalogs are bound to discovery sources, every server definition is layered
//! (defaults < providerTemplate < catalog entry < explicit resource), equal-priority conflicts are
//! reported with both locations, and every default is written out.

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;
use serde_json::{Value as Json, json};

use super::defaults::{self, Field, SpecView, merge_into};
use super::diag::{Diagnostic, Diagnostics, SourceFile, Span};
use super::load;
use super::merged;
use super::model::{Catalog, Entry, Meta, Model, Resource};
use super::node::{Node, Seg, Value};
use super::settings::{GroupSettings, ServerSettings, SourceSettings};
use crate::api::Kind;
use crate::api::discovery::{MCPDiscoverySourceSpec, SourceType};
use crate::api::group::MCPServerGroupSpec;
use crate::api::server::MCPServerSpec;

/// Label set on MCPServers made from a discovery source's catalog: the source's name...
pub const DISCOVERED_BY_LABEL: &str = "mcp-hangar.io/discovered-by";
/// ...and its namespace (the servers may live in other namespaces, e.g. Namespace discovery).
pub const DISCOVERED_BY_NAMESPACE_LABEL: &str = "mcp-hangar.io/discovered-by-namespace";
/// Annotation naming where a discovered server's definition came from.
pub const SOURCE_ANNOTATION: &str = "mcp-hangar.io/source";

/// A layer of a server's definition, highest priority first in [`ResolvedServer::layers`].
#[derive(Clone, Debug)]
pub struct Layer {
    pub what: &'static str,
    /// The document this layer is (shared with the model, not copied)...
    doc: Arc<Node>,
    /// ... or, when true, that document's `spec`.
    in_spec: bool,
}

impl Layer {
    /// The spec node of this layer (the entry itself for catalog entries).
    pub fn node(&self) -> &Node {
        match self.in_spec {
            true => self.doc.get("spec").unwrap_or(&self.doc),
            false => &self.doc,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Explicit,
    Discovered {
        source: Option<String>,
        catalog: String,
    },
}

#[derive(Clone, Debug)]
pub struct ResolvedServer {
    pub meta: Meta,
    pub spec: MCPServerSpec,
    /// Everything decided about the server, from `spec`.
    pub settings: ServerSettings,
    /// The user's layers merged, without defaults (what the user said; shared with the model
    /// when a single MCPServer said it).
    pub user: User,
    pub layers: Vec<Layer>,
    /// Span of the definition (the MCPServer document or catalog entry of highest priority).
    pub span: Span,
    pub origin: Origin,
}

/// What the user said of a server: its layers merged, without defaults.
#[derive(Clone, Debug)]
pub enum User {
    Json(Arc<Json>),
    /// An MCPServer document alone: its `spec` is all the user said.
    Doc(Arc<Node>),
}

impl User {
    fn field(&self, key: &str) -> Option<Field<'_>> {
        match self {
            User::Json(j) => j.field(&[key]),
            User::Doc(d) => d.get("spec")?.field(&[key]),
        }
    }

    /// Whether the user set the top-level spec field `key`.
    pub fn has(&self, key: &str) -> bool {
        self.field(key).is_some()
    }

    /// The top-level spec field `key`, when the user set it to an integer.
    pub fn i64_of(&self, key: &str) -> Option<i64> {
        self.field(key)?.as_i64()
    }
}

impl ResolvedServer {
    /// The resolved spec as JSON (every default written out), in the API type's field order.
    pub fn spec_json(&self) -> Json {
        serde_json::to_value(&self.spec).unwrap_or_default()
    }

    /// Which layer set a field, if any did ("MCPServer", "catalog entry", "providerTemplate").
    pub fn set_by(&self, path: &[Seg]) -> Option<&'static str> {
        self.layers
            .iter()
            .find(|l| l.node().lookup(path).1)
            .map(|l| l.what)
    }

    /// Where a field of the spec was set: the highest-priority layer that has it, else the
    /// closest enclosing node of the highest layer.
    pub fn locate(&self, path: &[Seg]) -> Span {
        for layer in &self.layers {
            let (node, found) = layer.node().lookup(path);
            if found {
                return node.span;
            }
        }
        self.layers
            .first()
            .map(|l| l.node().span_at(path))
            .unwrap_or(self.span)
    }
}

#[derive(Clone, Debug)]
pub struct ResolvedGroup {
    pub meta: Meta,
    pub spec: MCPServerGroupSpec,
    pub settings: GroupSettings,
    pub spec_json: Json,
    pub node: Node,
}

#[derive(Clone, Debug)]
pub struct ResolvedSource {
    pub meta: Meta,
    pub spec: MCPDiscoverySourceSpec,
    pub settings: SourceSettings,
    pub spec_json: Json,
    pub node: Node,
}

#[derive(Default)]
pub struct Resolved {
    pub servers: Vec<ResolvedServer>,
    pub groups: Vec<ResolvedGroup>,
    pub sources: Vec<ResolvedSource>,
}

/// Every definition of one server: explicit MCPServers, and catalog entries with the index of
/// their discovery source and their origin.
type Definitions<'a> = (Vec<&'a Resource>, Vec<(Entry, Option<usize>, String)>);

/// A catalog given with `--catalog`, optionally bound to a named discovery source.
pub struct BoundCatalog {
    pub catalog: Catalog,
    pub bind: Option<String>,
    /// Every entry belongs in this namespace (see `FileRole::CatalogIn`).
    pub namespace: Option<String>,
}

pub fn resolve(
    model: &Model,
    extra: Vec<BoundCatalog>,
    files: &mut Vec<SourceFile>,
    default_ns: &str,
    diags: &mut Diagnostics,
) -> Resolved {
    let mut out = Resolved::default();

    // Discovery sources and groups: defaults under the user's spec.
    for r in model
        .resources
        .iter()
        .filter(|r| r.kind == Kind::DiscoverySource)
    {
        let mut spec_json = defaults::discovery_source(r.spec());
        merge_into(&mut spec_json, r.spec());
        match serde_json::from_value::<MCPDiscoverySourceSpec>(spec_json.clone()) {
            Ok(spec) => {
                let spec_json = serde_json::to_value(&spec).unwrap_or(spec_json);
                out.sources.push(ResolvedSource {
                    meta: r.meta.clone(),
                    settings: SourceSettings::decide(&spec),
                    spec,
                    spec_json,
                    node: Node::clone(&r.node),
                })
            }
            Err(_) if !r.valid => {}
            Err(e) => diags.push(internal(r, &e)),
        }
    }
    for r in model.resources.iter().filter(|r| r.kind == Kind::Group) {
        let mut spec_json = defaults::group();
        merge_into(&mut spec_json, r.spec());
        match serde_json::from_value::<MCPServerGroupSpec>(spec_json.clone()) {
            Ok(spec) => {
                let spec_json = serde_json::to_value(&spec).unwrap_or(spec_json);
                out.groups.push(ResolvedGroup {
                    meta: r.meta.clone(),
                    settings: GroupSettings::decide(&spec),
                    spec,
                    spec_json,
                    node: Node::clone(&r.node),
                })
            }
            Err(_) if !r.valid => {}
            Err(e) => diags.push(internal(r, &e)),
        }
    }
    report_duplicates(
        model.resources.iter().filter(|r| r.kind == Kind::Group),
        diags,
    );
    report_duplicates(
        model
            .resources
            .iter()
            .filter(|r| r.kind == Kind::DiscoverySource),
        diags,
    );

    // Catalog entries, each with the source it belongs to (if any).
    let mut entries: Vec<(Entry, Option<usize>, String)> = Vec::new();
    for c in &model.catalogs {
        for e in &c.entries {
            entries.push((e.clone(), None, c.origin.clone()));
        }
    }
    for (si, src) in out.sources.iter().enumerate() {
        if src.spec.type_ != SourceType::ConfigMap {
            continue;
        }
        if let Some(c) = configmap_catalog(src, model, files, diags) {
            for e in c.entries {
                entries.push((e, Some(si), c.origin.clone()));
            }
        }
    }
    for bc in extra {
        let target = match bind_target(&bc, &out.sources, &entries, diags) {
            Ok(t) => t,
            Err(()) => continue,
        };
        for mut e in bc.catalog.entries {
            if let Some(ns) = &bc.namespace {
                match &e.meta.namespace {
                    Some(other) if other != ns => {
                        diags.push(
                            Diagnostic::error(
                                "foreign-namespace",
                                Some(e.node.span),
                                format!(
                                    "server `{}` names namespace `{other}`, but its catalog is in namespace `{ns}`",
                                    e.meta.name
                                ),
                            )
                            .hint("a catalog found in a namespace defines servers in that namespace only: drop `namespace`"),
                        );
                        continue;
                    }
                    _ => e.meta.namespace = Some(ns.clone()),
                }
            }
            entries.push((e, target, bc.catalog.origin.clone()));
        }
    }

    // Group definitions by (namespace, name).
    let mut keys: BTreeMap<(String, String), Definitions<'_>> = BTreeMap::new();
    for r in model.resources.iter().filter(|r| r.kind == Kind::Server) {
        keys.entry((r.meta.namespace.clone(), r.meta.name.clone()))
            .or_default()
            .0
            .push(r);
    }
    for (e, si, origin) in entries {
        let ns = e
            .meta
            .namespace
            .clone()
            .or_else(|| {
                si.and_then(|i| out.sources.get(i))
                    .map(|s| s.meta.namespace.clone())
            })
            .unwrap_or_else(|| default_ns.to_string());
        keys.entry((ns, e.meta.name.clone()))
            .or_default()
            .1
            .push((e, si, origin));
    }

    // Each server resolves on its own: spread them over the cores, keep the order.
    let results: Vec<(Option<ResolvedServer>, Diagnostics)> = keys
        .into_iter()
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|((ns, name), (explicit, discovered))| {
            let mut d = Diagnostics::default();
            let server = resolve_server(ns, name, explicit, discovered, &out.sources, &mut d);
            (server, d)
        })
        .collect();
    // ResolvedServer is large (1.6 kB): collected in place (std reuses the allocation of
    // `results`), not copied into a second list of them.
    out.servers = results
        .into_iter()
        .filter_map(|(server, d)| {
            diags.extend(d);
            server
        })
        .collect();
    out
}

/// Resolves one server from all its definitions (see the module doc for the layers).
fn resolve_server(
    ns: String,
    name: String,
    explicit: Vec<&Resource>,
    discovered: Vec<(Entry, Option<usize>, String)>,
    sources: &[ResolvedSource],
    diags: &mut Diagnostics,
) -> Option<ResolvedServer> {
    if explicit.len() > 1
        && conflicting(
            explicit.iter().map(|r| {
                (
                    &*r.node,
                    Json::clone(r.spec()),
                    &r.meta.labels,
                    &r.meta.annotations,
                )
            }),
            "MCPServer",
            &ns,
            &name,
            diags,
        )
    {
        return None;
    }
    let empty = BTreeMap::new();
    if discovered.len() > 1
        && conflicting(
            discovered.iter().map(|(e, _, _)| {
                (
                    &e.node,
                    e.spec.clone(),
                    e.meta.labels.as_ref().unwrap_or(&empty),
                    e.meta.annotations.as_ref().unwrap_or(&empty),
                )
            }),
            "catalog entry",
            &ns,
            &name,
            diags,
        )
    {
        return None;
    }
    let valid = explicit.iter().all(|r| r.valid) && discovered.iter().all(|(e, _, _)| e.valid);
    // One MCPServer alone, the common case: its document deserialises straight over the
    // defaults, with neither built as JSON. Anything it can't read takes the JSON path below
    // (which reports what is wrong).
    if let ([r], true) = (explicit.as_slice(), discovered.is_empty()) {
        if let Some(spec_node) = r.spec_node().filter(|n| matches!(n.value, Value::Map(_))) {
            let has = |k: &str| spec_node.field(&[k]).is_some();
            let ambiguous = !has("mode") && has("image") && has("endpoint");
            if !ambiguous {
                let base = defaults::server_base(spec_node);
                if let Ok(spec) = merged::from_layers::<MCPServerSpec>(&base, Some(spec_node)) {
                    let mut meta = Meta {
                        name,
                        namespace: ns,
                        ..Meta::default()
                    };
                    meta.labels.extend(r.meta.labels.clone());
                    meta.annotations.extend(r.meta.annotations.clone());
                    return Some(ResolvedServer {
                        settings: ServerSettings::decide(&meta.name, &meta.namespace, &spec),
                        meta,
                        spec,
                        user: User::Doc(Arc::clone(&r.node)),
                        layers: vec![Layer {
                            what: "MCPServer",
                            doc: Arc::clone(&r.node),
                            in_spec: true,
                        }],
                        span: r.node.span,
                        origin: Origin::Explicit,
                    });
                }
            }
        }
    }
    let mut layers = Vec::new();
    let mut user = json!({});
    let mut meta = Meta {
        name: name.clone(),
        namespace: ns.clone(),
        ..Meta::default()
    };
    let mut origin = Origin::Explicit;
    if let Some((entry, si, catalog)) = discovered.first() {
        let source = si.and_then(|i| sources.get(i));
        if let Some(src) = source {
            if let Some(t) = &src.spec.provider_template {
                if let Some(spec) = &t.spec {
                    merge_into(&mut user, &spec.0);
                    let node = src
                        .node
                        .lookup(&["spec".into(), "providerTemplate".into(), "spec".into()])
                        .0
                        .clone();
                    layers.push(Layer {
                        what: "providerTemplate",
                        doc: Arc::new(node),
                        in_spec: false,
                    });
                }
                if let Some(m) = &t.metadata {
                    meta.labels.extend(m.labels.clone().unwrap_or_default());
                    meta.annotations
                        .extend(m.annotations.clone().unwrap_or_default());
                }
            }
            meta.labels
                .insert(DISCOVERED_BY_LABEL.into(), src.meta.name.clone());
            meta.labels.insert(
                DISCOVERED_BY_NAMESPACE_LABEL.into(),
                src.meta.namespace.clone(),
            );
        }
        merge_into(&mut user, &entry.spec);
        layers.push(Layer {
            what: "catalog entry",
            doc: Arc::new(entry.node.clone()),
            in_spec: false,
        });
        meta.labels
            .extend(entry.meta.labels.clone().unwrap_or_default());
        meta.annotations
            .extend(entry.meta.annotations.clone().unwrap_or_default());
        meta.annotations
            .insert(SOURCE_ANNOTATION.into(), catalog.clone());
        origin = Origin::Discovered {
            source: source.map(|s| s.meta.name.clone()),
            catalog: catalog.clone(),
        };
    }
    let user = match explicit.first() {
        // An MCPServer alone is all the user said: share its spec (merging it into `{}` copies it).
        Some(r) if discovered.is_empty() => Arc::clone(r.spec()),
        Some(r) => {
            merge_into(&mut user, r.spec());
            Arc::new(user)
        }
        None => Arc::new(user),
    };
    if let Some(r) = explicit.first() {
        if let Some((entry, _, catalog)) = discovered.first() {
            overridden_note(r, entry, catalog, diags);
        }
        layers.push(Layer {
            what: "MCPServer",
            doc: Arc::clone(&r.node),
            in_spec: r.spec_node().is_some(),
        });
        meta.labels.extend(r.meta.labels.clone());
        meta.annotations.extend(r.meta.annotations.clone());
        origin = Origin::Explicit;
    }
    layers.reverse();
    let span = explicit
        .first()
        .map(|r| r.node.span)
        .or(discovered.first().map(|(e, _, _)| e.node.span))
        .unwrap_or_default();
    let spec_json = spec_json_of(&user);
    if user.get("mode").is_none() && user.get("image").is_some() && user.get("endpoint").is_some() {
        diags.push(
            Diagnostic::error(
                "ambiguous-mode",
                Some(span),
                format!("server `{name}` has both `image` and `endpoint` but no `mode`"),
            )
            .hint("add `mode: container` or `mode: remote`"),
        );
        return None;
    }
    match serde_json::from_value::<MCPServerSpec>(spec_json) {
        Ok(spec) => {
            return Some(ResolvedServer {
                settings: ServerSettings::decide(&meta.name, &meta.namespace, &spec),
                meta,
                spec,
                user: User::Json(user),
                layers,
                span,
                origin,
            });
        }
        // A definition that already had errors may not deserialise; those errors said it. What
        // can be read of it is still checked, so its other errors show in the same run.
        Err(_) if !valid => {
            let mut user = Json::clone(&user);
            if let Some(spec) = readable_part(&mut spec_json_of(&user), &mut user) {
                return Some(ResolvedServer {
                    settings: ServerSettings::decide(&meta.name, &meta.namespace, &spec),
                    meta,
                    spec,
                    user: User::Json(Arc::new(user)),
                    layers,
                    span,
                    origin,
                });
            }
        }
        Err(e) => diags.push(Diagnostic::error(
            "invalid-spec",
            Some(span),
            format!("server `{name}`: {e}"),
        )),
    }

    None
}

/// The spec the server runs with: resolve's defaults under what the user wrote.
fn spec_json_of(user: &Json) -> Json {
    let mut spec_json = defaults::server(user);
    merge_into(&mut spec_json, user);
    spec_json
}

/// The part of a spec that already failed the schema that serde can read: each field it stops
/// at is taken out (of the spec and of what the user wrote, so no check speaks of it again), a
/// few times at most. Only for checking: a definition with errors is never rendered.
fn readable_part(spec_json: &mut Json, user: &mut Json) -> Option<MCPServerSpec> {
    for _ in 0..16 {
        // A `mode` taken out (or never written) stands in as container; the user's spec lacks
        // it, so the checks of a mode are not run for it.
        if let Json::Object(m) = spec_json {
            m.entry("mode").or_insert_with(|| json!("container"));
        }
        let e = match serde_path_to_error::deserialize::<_, MCPServerSpec>(&*spec_json) {
            Ok(spec) => return Some(spec),
            Err(e) => e,
        };
        // The path up to its last field name: that field goes.
        let mut keys: Vec<String> = Vec::new();
        let mut last_map = 0;
        for seg in e.path().iter() {
            match seg {
                serde_path_to_error::Segment::Map { key } => {
                    keys.push(key.clone());
                    last_map = keys.len();
                }
                serde_path_to_error::Segment::Seq { index } => keys.push(index.to_string()),
                _ => break,
            }
        }
        keys.truncate(last_map);
        if keys.is_empty() || !(remove_at(spec_json, &keys) | remove_at(user, &keys)) {
            return None;
        }
    }
    None
}

/// Removes the value at `path` (object keys and array indexes); whether there was one.
fn remove_at(v: &mut Json, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut at = v;
    for k in parents {
        let next = match at {
            Json::Object(m) => m.get_mut(k.as_str()),
            Json::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        match next {
            Some(n) => at = n,
            None => return false,
        }
    }
    match at {
        Json::Object(m) => m.shift_remove(last.as_str()).is_some(),
        _ => false,
    }
}

fn internal(r: &Resource, e: &serde_json::Error) -> Diagnostic {
    Diagnostic::error(
        "invalid-spec",
        Some(r.node.span),
        format!("{} `{}`: {e}", r.kind.name(), r.meta.name),
    )
}

fn report_duplicates<'a>(items: impl Iterator<Item = &'a Resource>, diags: &mut Diagnostics) {
    let mut seen: BTreeMap<(String, String), Vec<&Resource>> = BTreeMap::new();
    for r in items {
        seen.entry((r.meta.namespace.clone(), r.meta.name.clone()))
            .or_default()
            .push(r);
    }
    for ((ns, name), rs) in seen {
        if rs.len() > 1 {
            let kind = rs[0].kind.name();
            conflicting(
                rs.iter().map(|r| {
                    (
                        &*r.node,
                        Json::clone(r.spec()),
                        &r.meta.labels,
                        &r.meta.annotations,
                    )
                }),
                kind,
                &ns,
                &name,
                diags,
            );
        }
    }
}

/// Two or more definitions of one thing at the same priority: identical ones are a warning,
/// differing ones an error that names both locations and the first field that differs.
/// Returns true when they conflict.
fn conflicting<'a>(
    defs: impl Iterator<
        Item = (
            &'a Node,
            Json,
            &'a BTreeMap<String, String>,
            &'a BTreeMap<String, String>,
        ),
    >,
    what: &str,
    ns: &str,
    name: &str,
    diags: &mut Diagnostics,
) -> bool {
    let defs: Vec<_> = defs.collect();
    let Some((first_node, first_spec, first_labels, first_ann)) = defs.first() else {
        return false;
    };
    let mut conflict = false;
    for (node, spec, labels, ann) in &defs[1..] {
        let a = json!({"metadata": {"labels": first_labels, "annotations": first_ann}, "spec": first_spec});
        let b = json!({"metadata": {"labels": labels, "annotations": ann}, "spec": spec});
        if a == b {
            diags.push(
                Diagnostic::warning(
                    "duplicate-definition",
                    Some(node.span),
                    format!("{what} `{ns}/{name}` is defined twice (identically)"),
                )
                .note(Some(first_node.span), "first defined here")
                .hint("remove one of the two definitions"),
            );
            continue;
        }
        conflict = true;
        let path = first_difference(&a, &b);
        let spec_path = |n: &'a Node| -> Span {
            if what == "catalog entry" {
                let p: Vec<Seg> = path.iter().skip(1).cloned().collect();
                n.span_at(&p)
            } else {
                n.span_at(&path)
            }
        };
        let field = super::node::path_string(&path);
        diags.push(
            Diagnostic::error(
                "conflicting-definition",
                Some(spec_path(node)),
                format!("{what} `{ns}/{name}` is defined twice at the same priority, and the definitions differ at `{field}`"),
            )
            .note(Some(spec_path(first_node)), "the other definition")
            .hint("keep one definition, or move the override into an explicit MCPServer (which takes priority over catalog entries)"),
        );
    }
    conflict
}

fn first_difference(a: &Json, b: &Json) -> Vec<Seg> {
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.dedup();
            for k in keys {
                let (va, vb) = (x.get(k), y.get(k));
                if va != vb {
                    let mut p = vec![Seg::Key(k.clone())];
                    if let (Some(va), Some(vb)) = (va, vb) {
                        p.extend(first_difference(va, vb));
                    }
                    return p;
                }
            }
            vec![]
        }
        (Json::Array(x), Json::Array(y)) => {
            for (i, (va, vb)) in x.iter().zip(y.iter()).enumerate() {
                if va != vb {
                    let mut p = vec![Seg::Index(i)];
                    p.extend(first_difference(va, vb));
                    return p;
                }
            }
            vec![]
        }
        _ => vec![],
    }
}

/// Which source a `--catalog` binds to: the named one, or the only ConfigMap/Git source without
/// a catalog of its own in the inputs, or none (the entries become plain servers).
fn bind_target(
    bc: &BoundCatalog,
    sources: &[super::resolve::ResolvedSource],
    entries: &[(Entry, Option<usize>, String)],
    diags: &mut Diagnostics,
) -> Result<Option<usize>, ()> {
    if let Some(name) = &bc.bind {
        let found: Vec<usize> = sources
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                &s.meta.name == name || &format!("{}/{}", s.meta.namespace, s.meta.name) == name
            })
            .map(|(i, _)| i)
            .collect();
        return match found.as_slice() {
            [i] => Ok(Some(*i)),
            [] => {
                let names: Vec<&str> = sources.iter().map(|s| s.meta.name.as_str()).collect();
                let mut d = Diagnostic::error(
                    "unknown-source",
                    Some(bc.catalog.span),
                    format!(
                        "--catalog names discovery source `{name}`, which is not among the inputs"
                    ),
                );
                if let Some(best) = super::diag::did_you_mean(name, names.iter().copied()) {
                    d = d.hint(format!("did you mean `{best}`?"));
                }
                diags.push(d);
                Err(())
            }
            _ => {
                diags.push(Diagnostic::error(
                    "ambiguous-source",
                    Some(bc.catalog.span),
                    format!("several discovery sources are named `{name}`; write NAMESPACE/NAME"),
                ));
                Err(())
            }
        };
    }
    let candidates: Vec<usize> = sources
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            matches!(s.spec.type_, SourceType::ConfigMap | SourceType::Git)
                && !entries.iter().any(|(_, si, _)| *si == Some(*i))
        })
        .map(|(i, _)| i)
        .collect();
    match candidates.as_slice() {
        [] => Ok(None),
        [i] => Ok(Some(*i)),
        _ => {
            let names: Vec<String> = candidates
                .iter()
                .filter_map(|i| sources.get(*i))
                .map(|s| s.meta.name.clone())
                .collect();
            diags.push(
                Diagnostic::error(
                    "ambiguous-source",
                    Some(bc.catalog.span),
                    format!(
                        "--catalog could belong to any of the discovery sources {}",
                        names.join(", ")
                    ),
                )
                .hint("bind it to one: --catalog SOURCE=PATH"),
            );
            Err(())
        }
    }
}

/// The catalog a ConfigMap discovery source reads, when that ConfigMap is among the inputs. Its
/// data key is parsed as a nested file whose positions map back into the ConfigMap's file.
/// Says which fields of a catalog entry an explicit MCPServer of the same name replaces (the
/// MCPServer wins, as layering says; a warning, so that nothing vanishes unseen).
fn overridden_note(r: &Resource, entry: &Entry, catalog: &str, diags: &mut Diagnostics) {
    let (Some(spec), Some(fields)) = (r.spec().as_object(), entry.spec.as_object()) else {
        return;
    };
    let replaced: Vec<&str> = fields
        .iter()
        .filter(|(k, v)| spec.get(*k).is_some_and(|mine| mine != *v))
        .map(|(k, _)| k.as_str())
        .collect();
    if replaced.is_empty() {
        return;
    }
    let list = replaced
        .iter()
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(", ");
    diags.push(
        Diagnostic::warning(
            "catalog-overridden",
            r.spec_node().map(|n| n.span).or(Some(r.node.span)),
            format!(
                "MCPServer `{}` replaces {list} of its catalog entry ({catalog})",
                r.meta.name
            ),
        )
        .note(Some(entry.node.span), "the catalog entry"),
    );
}

/// Where the text of a scalar that starts on `line` (1-based) of `text` sits: the lines before
/// its first line, and for a block scalar (`|`, `>`) the indent its lines lose. The scalar's span
/// is on its indicator's line or on its first content line, depending on the parser.
fn nested_offsets(text: &str, line: u32) -> (u32, u32) {
    let lines: Vec<&str> = text.lines().collect();
    let is_indicator = |i: usize| {
        lines.get(i).is_some_and(|l| {
            let t = l.trim_end();
            ["|", "|-", "|+", ">", ">-", ">+"]
                .iter()
                .any(|ind| t.ends_with(ind))
        })
    };
    let indent = |i: usize| {
        lines
            .get(i)
            .map(|l| (l.len() - l.trim_start().len()) as u32)
            .unwrap_or(0)
    };
    let at = line.saturating_sub(1) as usize;
    if is_indicator(at) {
        // The span is on the indicator; the text starts on the next line.
        (line, indent(at + 1))
    } else if at > 0 && is_indicator(at - 1) && indent(at) > indent(at - 1) {
        // The span is on the first content line.
        (line - 1, indent(at))
    } else {
        (line - 1, 0)
    }
}

fn configmap_catalog(
    src: &ResolvedSource,
    model: &Model,
    files: &mut Vec<SourceFile>,
    diags: &mut Diagnostics,
) -> Option<Catalog> {
    let r = src.spec.config_map_ref.as_ref()?;
    let ns = r
        .namespace
        .clone()
        .unwrap_or_else(|| src.meta.namespace.clone());
    let key = r.key.clone().unwrap_or_else(|| "providers.yaml".into());
    let cm = model.objects.iter().find(|o| {
        o.kind == "ConfigMap"
            && o.api_version == "v1"
            && o.meta.name == r.name
            && o.meta.namespace == ns
    })?;
    let Some(data) = cm.node.get("data").and_then(|d| d.get(&key)) else {
        let span = cm.node.get("data").map(|d| d.span).unwrap_or(cm.node.span);
        diags.push(
            Diagnostic::error(
                "missing-catalog-key",
                Some(span),
                format!(
                    "ConfigMap `{ns}/{}` has no key `{key}` for discovery source `{}`",
                    r.name, src.meta.name
                ),
            )
            .hint("put the catalog under that key, or set configMapRef.key"),
        );
        return None;
    };
    let Value::Str(text) = &data.value else {
        return None;
    };
    let parent = files.get(data.span.file as usize)?;
    let (line_offset, col_offset) = nested_offsets(&parent.text, data.span.line);
    let (line_offset, col_offset) = (
        parent.line_offset + line_offset,
        parent.col_offset + col_offset,
    );
    let context = format!("ConfigMap {ns}/{} key {key}", r.name);
    let nested = SourceFile {
        path: parent.path.clone(),
        text: text.to_string(),
        line_offset,
        col_offset,
        context: Some(context.clone()),
        origin: None,
    };
    let index = files.len();
    files.push(nested);
    let loaded = load::load_file(index, &key, text, diags);
    let mut entries = Vec::new();
    let mut span = data.span;
    for doc in loaded.docs {
        span = doc.span;
        if let Some(c) =
            super::model::read_catalog(&doc, &format!("configmap:{ns}/{}#{key}", r.name), diags)
        {
            entries.extend(c.entries);
        }
    }
    Some(Catalog {
        entries,
        span,
        origin: format!("configmap:{ns}/{}#{key}", r.name),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_explicit_server_says_which_catalog_fields_it_replaces() {
        let text = "servers:\n  - name: s\n    image: x:1\n    replicas: 2\n---\napiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: s\nspec:\n  mode: container\n  image: x:2\n  replicas: 2\n";
        let inputs = crate::compile::Inputs {
            files: vec![crate::compile::InputFile {
                file: crate::compile::SourceFile::new("a.yaml".to_string(), text.to_string()),
                role: crate::compile::FileRole::Inputs,
            }],
            ..Default::default()
        };
        let c = crate::compile::compile(&inputs);
        let d = c.render_diagnostics();
        assert!(c.bundle.is_some(), "{d}");
        assert!(d.contains("replaces `image` of its catalog entry"), "{d}");
        assert!(
            !d.contains("`replicas`"),
            "an equal value replaces nothing: {d}"
        );
        assert!(d.contains("a.yaml:2:5: the catalog entry"), "{d}");
    }

    #[test]
    fn a_block_catalog_keeps_its_file_columns() {
        let text = "data:\n  providers.yaml: |\n    servers:\n      - name: x\n";
        assert_eq!(
            super::nested_offsets(text, 2),
            (2, 4),
            "span on the indicator"
        );
        assert_eq!(
            super::nested_offsets(text, 3),
            (2, 4),
            "span on the first line"
        );
        assert_eq!(
            super::nested_offsets("data:\n  k: \"servers: []\"\n", 2),
            (1, 0)
        );
    }
}
