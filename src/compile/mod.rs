//! The compiler: pure (no I/O, no async, no clock). `compile(&Inputs)` turns texts into an
//! ordered bundle of Kubernetes objects, or into located diagnostics.
//!
//! load -> classify (schema-checked, typed) -> resolve (catalogs, templates, defaults, priorities)
//! -> check -> render -> bundle

pub mod bundle;
pub mod check;
pub mod convert;
pub mod defaults;
pub mod diag;
mod fastyaml;
pub mod isolate;
pub mod load;
mod merged;
pub mod model;
pub mod node;
pub mod render;
pub mod resolve;
pub mod settings;
pub mod units;
pub mod validate;

use std::collections::BTreeMap;
use std::ops::Range;

pub use bundle::{Bundle, Object, Role, to_yaml_stream};
pub use diag::{Diagnostic, Diagnostics, Severity, SourceFile, Span};

/// What a file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileRole {
    /// Resources, catalogs, or other Kubernetes objects.
    Inputs,
    /// A catalog given with `--catalog [SOURCE=]PATH`.
    Catalog { bind: Option<String> },
    /// A catalog whose servers all belong in one namespace (one found in that namespace by a
    /// discovery source): an entry naming another namespace is an error.
    CatalogIn {
        bind: Option<String>,
        namespace: String,
    },
}

/// Whether a catalog's text lists no servers without saying so: empty, only comments, `null`,
/// `---`, or `servers:`/`providers:` with no value. Such a text is far more often a mistake (a
/// truncated ConfigMap, a bad template) than a wish to remove everything, so discovery treats it
/// as unreadable; an explicit empty list (`servers: []`) is not blank. Text that does not parse,
/// or a mapping with other keys, is not blank either: the compiler reports what is wrong with it.
pub fn catalog_is_blank(path: &str, text: &str) -> bool {
    let mut diags = Diagnostics::default();
    let loaded = load::load_file(0, path, text, &mut diags);
    if diags.has_errors() {
        return false;
    }
    loaded.docs.iter().all(|d| match &d.value {
        node::Value::Null => true,
        node::Value::Map(entries) => entries.iter().all(|(k, v)| {
            matches!(&k.value, node::Value::Str(k) if k.as_ref() == "servers" || k.as_ref() == "providers")
                && matches!(v.value, node::Value::Null)
        }),
        _ => false,
    })
}

/// Where a catalog file's entries say they came from (`mcp-hangar.io/source`): the path as it is
/// when it already names its kind of origin (`configmap:`, `git+`, `service:`), else `file:PATH`.
pub fn origin_of(path: &str) -> String {
    const NAMED: [&str; 4] = ["configmap:", "git+", "service:", "namespace:"];
    if NAMED.iter().any(|p| path.starts_with(p)) {
        path.to_string()
    } else {
        format!("file:{path}")
    }
}

#[derive(Clone, Debug)]
pub struct InputFile {
    pub file: SourceFile,
    pub role: FileRole,
}

#[derive(Clone, Debug)]
pub struct Inputs {
    pub files: Vec<InputFile>,
    /// Namespace of objects that name none (like kubectl's current namespace).
    pub default_namespace: String,
}

impl Default for Inputs {
    fn default() -> Self {
        Inputs {
            files: Vec::new(),
            default_namespace: "default".into(),
        }
    }
}

/// What was decided about each resolved resource, by namespace and name.
#[derive(Debug, Default)]
pub struct Decided {
    pub servers: BTreeMap<(String, String), settings::ServerSettings>,
    pub groups: BTreeMap<(String, String), settings::GroupSettings>,
    /// Each group's members among the inputs: the servers of its namespace its selector matches,
    /// by name. Decided here, once, so the gateway's route table and the checks agree on it.
    pub group_members: BTreeMap<(String, String), Vec<String>>,
    pub sources: BTreeMap<(String, String), settings::SourceSettings>,
}

impl Decided {
    fn of(resolved: resolve::Resolved) -> Self {
        let key = |m: &model::Meta| (m.namespace.clone(), m.name.clone());
        let group_members = resolved
            .groups
            .iter()
            .map(|g| {
                let members = resolved
                    .servers
                    .iter()
                    .filter(|s| {
                        s.meta.namespace == g.meta.namespace
                            && check::selector_matches(&g.spec.selector, &s.meta.labels)
                    })
                    .map(|s| s.meta.name.clone())
                    .collect();
                (key(&g.meta), members)
            })
            .collect();
        Decided {
            group_members,
            servers: resolved
                .servers
                .into_iter()
                .map(|s| (key(&s.meta), s.settings))
                .collect(),
            groups: resolved
                .groups
                .into_iter()
                .map(|g| (key(&g.meta), g.settings))
                .collect(),
            sources: resolved
                .sources
                .into_iter()
                .map(|s| (key(&s.meta), s.settings))
                .collect(),
        }
    }
}

/// The outcome of a compilation: a bundle when there are no errors, and every diagnostic.
#[derive(Debug)]
pub struct Compilation {
    pub bundle: Option<Bundle>,
    /// The settings of the bundle's resources (empty when there is no bundle).
    pub decided: Decided,
    pub diagnostics: Diagnostics,
    /// Every text diagnostics may point into (the inputs, plus nested catalogs).
    pub files: Vec<SourceFile>,
}

impl Compilation {
    pub fn result(&self) -> Result<&Bundle, &Diagnostics> {
        self.bundle.as_ref().ok_or(&self.diagnostics)
    }

    pub fn render_diagnostics(&self) -> String {
        self.diagnostics.render(&self.files)
    }
}

/// What every way of compiling shares: loaded, classified, resolved and checked inputs.
struct Front {
    model: model::Model,
    resolved: resolve::Resolved,
    diags: Diagnostics,
    files: Vec<SourceFile>,
}

fn front(inputs: &Inputs) -> Front {
    let mut diags = Diagnostics::default();
    let mut files: Vec<SourceFile> = inputs.files.iter().map(|f| f.file.clone()).collect();
    let mut model = model::Model::default();
    let mut extra = Vec::new();
    for (i, input) in inputs.files.iter().enumerate() {
        let loaded = load::load_file(i, &input.file.path, &input.file.text, &mut diags);
        match &input.role {
            FileRole::Inputs => {
                use rayon::prelude::*;
                let origin = origin_of(input.file.origin());
                // Documents classify independently: in parallel, merged in order.
                let parts: Vec<(model::Model, Diagnostics)> = loaded
                    .docs
                    .into_par_iter()
                    .map(|doc| {
                        let (mut m, mut d) = (model::Model::default(), Diagnostics::default());
                        model::classify(doc, &inputs.default_namespace, &origin, &mut m, &mut d);
                        (m, d)
                    })
                    .collect();
                // Mostly one resource per document: grow the lists once, not by doubling.
                model.resources.reserve(parts.len());
                for (m, d) in parts {
                    model.resources.extend(m.resources);
                    model.catalogs.extend(m.catalogs);
                    model.objects.extend(m.objects);
                    diags.extend(d);
                }
            }
            FileRole::Catalog { .. } | FileRole::CatalogIn { .. } => {
                let (bind, namespace) = match &input.role {
                    FileRole::CatalogIn { bind, namespace } => (bind, Some(namespace.clone())),
                    FileRole::Catalog { bind } => (bind, None),
                    FileRole::Inputs => continue,
                };
                for doc in loaded.docs {
                    if doc.get("servers").is_none() && doc.get("providers").is_none() {
                        diags.push(
                            Diagnostic::error("not-a-catalog", Some(doc.span), "a --catalog file must hold a catalog: a `servers:` (or `providers:`) list")
                                .hint("pass resources as PATH arguments instead of --catalog"),
                        );
                        continue;
                    }
                    if let Some(catalog) =
                        model::read_catalog(&doc, &origin_of(input.file.origin()), &mut diags)
                    {
                        extra.push(resolve::BoundCatalog {
                            catalog,
                            bind: bind.clone(),
                            namespace: namespace.clone(),
                        });
                    }
                }
            }
        }
    }
    let resolved = resolve::resolve(
        &model,
        extra,
        &mut files,
        &inputs.default_namespace,
        &mut diags,
    );
    check::check(&resolved, &mut diags);
    Front {
        model,
        resolved,
        diags,
        files,
    }
}

pub fn compile(inputs: &Inputs) -> Compilation {
    let Front {
        model,
        resolved,
        mut diags,
        files,
    } = front(inputs);
    let passthrough = model.objects;
    let mut objects = render::render(&resolved);
    for o in passthrough {
        objects.push(Object::new(o.body, Role::Passthrough, Some(o.node.span)));
    }
    let bundle = Bundle::new(objects, &mut diags);
    diags.sort();
    let bundle = (!diags.has_errors()).then_some(bundle);
    let decided = match bundle {
        Some(_) => Decided::of(resolved),
        None => Decided::default(),
    };
    Compilation {
        bundle,
        decided,
        diagnostics: diags,
        files,
    }
}

/// The YAML documents of a compilation in bundle order, as `hangar render` prints them.
#[derive(Debug, Default)]
pub struct YamlDocs {
    chunks: Vec<String>,
    docs: Vec<(usize, Range<usize>)>,
}

impl YamlDocs {
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Each document's text (without `---`).
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.docs.iter().map(|(c, r)| {
            self.chunks
                .get(*c)
                .and_then(|t| t.get(r.clone()))
                .unwrap_or("")
        })
    }

    /// The whole stream: documents separated by `---` lines.
    pub fn to_stream(&self) -> String {
        let mut out = String::with_capacity(
            self.chunks.iter().map(String::len).sum::<usize>() + 4 * self.len(),
        );
        for (i, doc) in self.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            out.push_str(doc);
        }
        out
    }

    fn from_objects(objects: &[Object], reveal_secrets: bool) -> Self {
        let mut text = String::new();
        let mut docs = Vec::with_capacity(objects.len());
        for o in objects {
            let start = text.len();
            crate::yaml::write_value(&mut text, &o.printable(reveal_secrets), 0);
            docs.push((0, start..text.len()));
        }
        YamlDocs {
            chunks: vec![text],
            docs,
        }
    }
}

/// A compilation printed as YAML: what `compile` and then printing the bundle give, without
/// building the rendered objects as JSON (faster, and far less memory, for large inputs).
#[derive(Debug)]
pub struct YamlCompilation {
    /// The documents, when there are no errors.
    pub docs: Option<YamlDocs>,
    pub diagnostics: Diagnostics,
    pub files: Vec<SourceFile>,
    /// Whether the bundle holds Secrets from the inputs (masked unless revealed).
    pub input_secrets: bool,
    /// The intermediate results, freed with the compilation (or never, if the caller exits
    /// without freeing it: freeing them costs more than the exit does).
    _held: Held,
}

struct Held {
    _model: model::Model,
    _resolved: resolve::Resolved,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held")
    }
}

impl YamlCompilation {
    pub fn render_diagnostics(&self) -> String {
        self.diagnostics.render(&self.files)
    }
}

/// Frees, in parallel, what only the checks needed: the documents, the servers' layers and user
/// specs. Printing then reuses that memory instead of touching fresh pages (which the kernel
/// zeroes first: half of a large render's time went there).
fn release_checked(model: &mut model::Model, resolved: &mut resolve::Resolved) {
    use rayon::prelude::*;
    let unset = std::sync::Arc::new(serde_json::Value::Null);
    resolved.servers.par_iter_mut().for_each(|s| {
        s.layers = Vec::new();
        s.user = resolve::User::Json(std::sync::Arc::clone(&unset));
    });
    std::mem::take(&mut model.resources)
        .into_par_iter()
        .with_min_len(64)
        .for_each(drop);
    std::mem::take(&mut model.catalogs)
        .into_par_iter()
        .for_each(drop);
}

/// Compiles and prints: the same documents, diagnostics and outcome as [`compile`] followed by
/// printing the bundle's objects (Secrets from the inputs masked unless `reveal_secrets`).
pub fn compile_yaml(inputs: &Inputs, reveal_secrets: bool) -> YamlCompilation {
    use rayon::prelude::*;
    let Front {
        mut model,
        mut resolved,
        mut diags,
        files,
    } = front(inputs);
    let passthrough = std::mem::take(&mut model.objects);
    release_checked(&mut model, &mut resolved);
    let printed = render::render_printed(&resolved);
    let passthrough: Vec<Object> = passthrough
        .into_iter()
        .map(|o| Object::new(o.body, Role::Passthrough, Some(o.node.span)))
        .collect();
    let mut other = String::new();
    let mut ranges = Vec::with_capacity(passthrough.len());
    for o in &passthrough {
        let start = other.len();
        crate::yaml::write_value(&mut other, &o.printable(reveal_secrets), 0);
        ranges.push(start..other.len());
    }
    // Bundle order; equal identities are what `Bundle::new` deduplicates or reports, so those
    // (rare) inputs take the JSON path, which decides exactly as `compile` does.
    type Key<'a> = (u32, &'a str, &'a str, &'a str, &'a str);
    let mut order: Vec<(Key<'_>, usize, Range<usize>)> = Vec::with_capacity(
        printed.iter().map(|p| p.items.len()).sum::<usize>() + passthrough.len(),
    );
    for (c, p) in printed.iter().enumerate() {
        for it in &p.items {
            let key = (
                bundle::kind_rank(it.kind),
                it.kind,
                it.group(),
                it.namespace.as_deref().unwrap_or(""),
                it.name.as_str(),
            );
            order.push((key, c, it.range.clone()));
        }
    }
    for (o, r) in passthrough.iter().zip(ranges) {
        let key = (
            bundle::kind_rank(&o.kind),
            o.kind.as_str(),
            o.group(),
            o.namespace.as_deref().unwrap_or(""),
            o.name.as_str(),
        );
        order.push((key, printed.len(), r));
    }
    order.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let collision = order.windows(2).any(|w| w[0].0 == w[1].0);
    let input_secrets;
    let docs = if collision {
        drop(order);
        drop(printed);
        let mut objects = render::render(&resolved);
        objects.extend(passthrough);
        let bundle = Bundle::new(objects, &mut diags);
        input_secrets = bundle.objects.iter().any(Object::is_input_secret);
        YamlDocs::from_objects(&bundle.objects, reveal_secrets)
    } else {
        let docs: Vec<(usize, Range<usize>)> = order.into_iter().map(|(_, c, r)| (c, r)).collect();
        input_secrets = passthrough.iter().any(Object::is_input_secret);
        let mut chunks: Vec<String> = printed.into_iter().map(|p| p.text).collect();
        chunks.push(other);
        YamlDocs { chunks, docs }
    };
    diags.sort();
    YamlCompilation {
        docs: (!diags.has_errors()).then_some(docs),
        diagnostics: diags,
        files,
        input_secrets,
        _held: Held {
            _model: model,
            _resolved: resolved,
        },
    }
}

#[cfg(test)]
mod blank_tests {
    use super::catalog_is_blank;

    #[test]
    fn blank_catalogs_are_told_from_empty_lists() {
        for blank in [
            "",
            "# c\n",
            "null\n",
            "---\n",
            "providers:\n",
            "servers: ~\n",
            "---\n---\n",
        ] {
            assert!(catalog_is_blank("c.yaml", blank), "{blank:?}");
        }
        assert!(catalog_is_blank("c.toml", ""));
        for not_blank in [
            "servers: []\n",
            "providers: []\n",
            "servers:\n  - name: a\n",
            "server: []\n",
            "servers: [\n",
            "42\n",
        ] {
            assert!(!catalog_is_blank("c.yaml", not_blank), "{not_blank:?}");
        }
        assert!(!catalog_is_blank("c.toml", "servers = []\n"));
    }
}
