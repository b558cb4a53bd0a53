//! The compiler: pure (no I/O, no async, no clock). `compile(&Inputs)` turns texts into an
//! ordered bundle of Kubernetes objects, or into located diagnostics.
//!
//! load -> classify (schema-checked, typed) -> resolve (catalogs, templates, defaults, priorities)
//! -> check -> render -> bundle

pub mod bundle;
pub mod check;
pub mod defaults;
pub mod diag;
pub mod load;
pub mod model;
pub mod node;
pub mod render;
pub mod resolve;
pub mod units;
pub mod validate;

pub use bundle::{Bundle, Object, Role};
pub use diag::{Diagnostic, Diagnostics, Severity, SourceFile, Span};

/// What a file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileRole {
    /// Resources, catalogs, or other Kubernetes objects.
    Inputs,
    /// A catalog given with `--catalog [SOURCE=]PATH`.
    Catalog { bind: Option<String> },
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

/// The outcome of a compilation: a bundle when there are no errors, and every diagnostic.
#[derive(Debug)]
pub struct Compilation {
    pub bundle: Option<Bundle>,
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

pub fn compile(inputs: &Inputs) -> Compilation {
    let mut diags = Diagnostics::default();
    let mut files: Vec<SourceFile> = inputs.files.iter().map(|f| f.file.clone()).collect();
    let mut model = model::Model::default();
    let mut extra = Vec::new();
    for (i, input) in inputs.files.iter().enumerate() {
        let loaded = load::load_file(i, &input.file.path, &input.file.text, &mut diags);
        match &input.role {
            FileRole::Inputs => {
                use rayon::prelude::*;
                let origin = format!("file:{}", input.file.path);
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
                for (m, d) in parts {
                    model.resources.extend(m.resources);
                    model.catalogs.extend(m.catalogs);
                    model.objects.extend(m.objects);
                    diags.extend(d);
                }
            }
            FileRole::Catalog { bind } => {
                for doc in loaded.docs {
                    if doc.get("servers").is_none() && doc.get("providers").is_none() {
                        diags.push(
                            Diagnostic::error("not-a-catalog", Some(doc.span), "a --catalog file must hold a catalog: a `servers:` (or `providers:`) list")
                                .hint("pass resources as PATH arguments instead of --catalog"),
                        );
                        continue;
                    }
                    if let Some(catalog) =
                        model::read_catalog(&doc, &format!("file:{}", input.file.path), &mut diags)
                    {
                        extra.push(resolve::BoundCatalog {
                            catalog,
                            bind: bind.clone(),
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
    let mut objects = render::render(&resolved);
    for o in model.objects {
        objects.push(Object::new(o.body, Role::Passthrough, Some(o.node.span)));
    }
    let bundle = Bundle::new(objects, &mut diags);
    diags.sort();
    let bundle = (!diags.has_errors()).then_some(bundle);
    Compilation {
        bundle,
        diagnostics: diags,
        files,
    }
}
