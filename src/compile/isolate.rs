//! Compiling with catalog entries isolated from each other, for discovery: an entry with errors is
//! reported with its location and left out alone, and the rest still compiles. An error anywhere
//! else (the discovery source itself, a file that is not a catalog, broken YAML) fails the whole
//! compilation, as `compile` does.
//!
//! Pure, like the rest of the compiler: the first compilation's diagnostics locate every error;
//! the entries they fall in are dropped from their catalogs and the rest is compiled again.

use serde_json::{Value as Json, json};

use super::diag::{Diagnostic, Diagnostics, Severity, Span};
use super::node::{Node, Value};
use super::{Compilation, FileRole, InputFile, Inputs, SourceFile, compile, load};

/// A catalog entry left out because of its errors.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    /// The catalog file, as diagnostics name it (e.g. `configmap:ns/name#providers.yaml`).
    pub file: String,
    /// The entry's `name`, when it has a readable one.
    pub name: Option<String>,
    /// `file:line:col` of the entry.
    pub location: String,
    /// Its diagnostics, rendered with snippets.
    pub message: String,
}

/// The outcome: the compilation of what is left (a bundle unless a non-entry error remains), the
/// skipped entries, and every diagnostic of the first compilation, rendered.
#[derive(Debug)]
pub struct Isolated {
    pub compilation: Compilation,
    pub skipped: Vec<Skipped>,
    pub report: String,
}

/// Where an entry starts, for mapping diagnostics to entries.
struct EntryAt {
    input: usize,
    index: usize,
    span: Span,
    name: Option<String>,
}

fn catalog_items(doc: &Node) -> Vec<&Node> {
    ["servers", "providers"]
        .iter()
        .filter_map(|k| doc.get(k))
        .flat_map(|list| match &list.value {
            Value::Seq(items) => items.iter().collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect()
}

fn is_catalog(role: &FileRole) -> bool {
    matches!(role, FileRole::Catalog { .. } | FileRole::CatalogIn { .. })
}

pub fn compile_isolated(inputs: &Inputs) -> Isolated {
    let first = compile(inputs);
    let report = if first.diagnostics.items.is_empty() {
        String::new()
    } else {
        first.render_diagnostics()
    };
    if first.bundle.is_some() {
        return Isolated {
            compilation: first,
            skipped: Vec::new(),
            report,
        };
    }
    // Every entry of every catalog file, in file order.
    let mut entries: Vec<EntryAt> = Vec::new();
    let mut docs: Vec<Option<Vec<Node>>> = Vec::with_capacity(inputs.files.len());
    for (i, f) in inputs.files.iter().enumerate() {
        if !is_catalog(&f.role) {
            docs.push(None);
            continue;
        }
        let mut scratch = Diagnostics::default();
        let loaded = load::load_file(i, &f.file.path, &f.file.text, &mut scratch);
        let mut index = 0;
        for doc in &loaded.docs {
            for item in catalog_items(doc) {
                entries.push(EntryAt {
                    input: i,
                    index,
                    span: item.span,
                    name: item
                        .get("name")
                        .and_then(|n| n.as_str())
                        .map(str::to_string),
                });
                index += 1;
            }
        }
        docs.push(Some(loaded.docs));
    }
    // The entry each error falls in: the last one of its file that starts at or before it.
    let mut bad: Vec<(usize, usize)> = Vec::new();
    let mut per_entry: Vec<((usize, usize), Vec<Diagnostic>)> = Vec::new();
    for d in first
        .diagnostics
        .items
        .iter()
        .filter(|d| d.severity == Severity::Error)
    {
        let Some(span) = d.span else {
            return fatal(first, report);
        };
        let at = entries.iter().rfind(|e| {
            e.span.file == span.file && (e.span.line, e.span.col) <= (span.line, span.col)
        });
        let Some(e) = at else {
            return fatal(first, report);
        };
        let key = (e.input, e.index);
        if !bad.contains(&key) {
            bad.push(key);
        }
        match per_entry.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(d.clone()),
            None => per_entry.push((key, vec![d.clone()])),
        }
    }
    if bad.is_empty() {
        return fatal(first, report);
    }
    // The same inputs, each catalog with an error rebuilt without its bad entries.
    let mut files = Vec::with_capacity(inputs.files.len());
    for (i, f) in inputs.files.iter().enumerate() {
        let Some(Some(file_docs)) = docs.get(i) else {
            files.push(f.clone());
            continue;
        };
        if !bad.iter().any(|(input, _)| *input == i) {
            files.push(f.clone());
            continue;
        }
        let mut kept: Vec<Json> = Vec::new();
        let mut n = 0;
        for doc in file_docs {
            for item in catalog_items(doc) {
                if !bad.contains(&(i, n)) {
                    kept.push(item.to_json());
                }
                n += 1;
            }
        }
        let text = serde_json::to_string_pretty(&json!({ "servers": kept })).unwrap_or_default();
        // The rebuilt text is JSON whatever the original was: name it so the loader reads it as
        // such, but keep the original name for origins (only the extension changes).
        let path = match f.file.path.strip_suffix(".toml") {
            Some(stem) => format!("{stem}.json"),
            None => f.file.path.clone(),
        };
        files.push(InputFile {
            file: SourceFile::new(path, text),
            role: f.role.clone(),
        });
    }
    let second = compile(&Inputs {
        files,
        default_namespace: inputs.default_namespace.clone(),
    });
    let skipped = per_entry
        .into_iter()
        .filter_map(|((input, index), diags)| {
            let e = entries
                .iter()
                .find(|e| e.input == input && e.index == index)?;
            let mut ds = Diagnostics::default();
            for d in diags {
                ds.push(d);
            }
            Some(Skipped {
                file: inputs.files.get(input)?.file.path.clone(),
                name: e.name.clone(),
                location: super::diag::location(&e.span, &first.files),
                message: ds.render(&first.files),
            })
        })
        .collect();
    Isolated {
        compilation: second,
        skipped,
        report,
    }
}

fn fatal(first: Compilation, report: String) -> Isolated {
    Isolated {
        compilation: first,
        skipped: Vec::new(),
        report,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(catalog: &str) -> Inputs {
        let source = "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata:\n  name: src\n  namespace: team\nspec:\n  type: ConfigMap\n  configMapRef:\n    name: cm\n";
        Inputs {
            files: vec![
                InputFile {
                    file: SourceFile::new("source.yaml", source),
                    role: FileRole::Inputs,
                },
                InputFile {
                    file: SourceFile::new("configmap:team/cm#providers.yaml", catalog),
                    role: FileRole::Catalog {
                        bind: Some("team/src".into()),
                    },
                },
            ],
            default_namespace: "team".into(),
        }
    }

    fn servers(i: &Isolated) -> Vec<String> {
        i.compilation
            .bundle
            .iter()
            .flat_map(|b| b.objects.iter())
            .filter(|o| o.kind == "MCPServer")
            .map(|o| o.name.clone())
            .collect()
    }

    #[test]
    fn a_bad_entry_is_skipped_alone_with_its_location() {
        let i = compile_isolated(&inputs(
            "servers:\n  - name: good\n    image: ghcr.io/a/b:1.0\n  - name: bad\n    image: ghcr.io/a/c:1.0\n    idleTtl: 5m\n  - name: also-good\n    endpoint: https://x.example.com/mcp\n",
        ));
        assert_eq!(servers(&i), vec!["also-good", "good"]);
        assert_eq!(i.skipped.len(), 1, "{:?}", i.skipped);
        let s = &i.skipped[0];
        assert_eq!(s.name.as_deref(), Some("bad"));
        assert_eq!(s.location, "configmap:team/cm#providers.yaml:4:5");
        assert!(s.message.contains("idleTTL"), "{}", s.message);
        assert!(
            i.report.contains("configmap:team/cm#providers.yaml:6:5"),
            "{}",
            i.report
        );
    }

    #[test]
    fn errors_outside_entries_fail_everything() {
        let i = compile_isolated(&inputs("servers: [\n"));
        assert!(i.compilation.bundle.is_none());
        assert!(i.skipped.is_empty());
        let ok = compile_isolated(&inputs(
            "servers:\n  - name: good\n    image: ghcr.io/a/b:1.0\n",
        ));
        assert_eq!(servers(&ok), vec!["good"]);
        assert!(ok.skipped.is_empty());
    }

    #[test]
    fn toml_catalogs_are_isolated_too() {
        let mut inp = inputs("");
        inp.files[1] = InputFile {
            file: SourceFile::new(
                "catalog.toml",
                "[[servers]]\nname = \"ok\"\nimage = \"ghcr.io/a/b:1.0\"\n\n[[servers]]\nname = \"Not_OK\"\nimage = \"ghcr.io/a/b:1.0\"\n",
            ),
            role: FileRole::Catalog {
                bind: Some("src".into()),
            },
        };
        let i = compile_isolated(&inp);
        assert_eq!(servers(&i), vec!["ok"]);
        assert_eq!(i.skipped.len(), 1);
    }
}
