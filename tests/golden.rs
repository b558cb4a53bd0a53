//! Golden tests: every fixture under `fixtures/ok` renders to `golden/ok/<name>.yaml` (with its
//! warnings in `<name>.diagnostics.txt`), every fixture under `fixtures/invalid` fails with the
//! diagnostics in `golden/invalid/<name>.txt`. Re-bless with `HANGAR_BLESS=1 cargo test`, then
//! read the diff before committing it.
//!
//! A fixture is a file, or a directory of files; files named `*.catalog.yaml|toml` in a directory
//! are passed as `--catalog`.

use std::path::{Path, PathBuf};

use hangar::compile::{FileRole, InputFile, Inputs, SourceFile, compile};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bless() -> bool {
    std::env::var_os("HANGAR_BLESS").is_some()
}

fn fixture_inputs(path: &Path) -> Inputs {
    let mut files = Vec::new();
    let list = hangar::source::files::expand(path).expect("fixture readable");
    for f in list.files {
        let rel = f.strip_prefix(root()).unwrap_or(&f).display().to_string();
        let text = std::fs::read_to_string(&f).expect("fixture is UTF-8");
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let role = if name.contains(".catalog.") {
            FileRole::Catalog { bind: None }
        } else {
            FileRole::Inputs
        };
        files.push(InputFile {
            file: SourceFile::new(rel, text),
            role,
        });
    }
    Inputs {
        files,
        default_namespace: "default".into(),
    }
}

fn compare(golden: &Path, actual: &str, failures: &mut Vec<String>) {
    if bless() {
        if let Some(dir) = golden.parent() {
            std::fs::create_dir_all(dir).expect("create golden dir");
        }
        if actual.is_empty() {
            let _ = std::fs::remove_file(golden);
        } else {
            std::fs::write(golden, actual).expect("write golden");
        }
        return;
    }
    let expected = std::fs::read_to_string(golden).unwrap_or_default();
    if expected != actual {
        let diff = similar::TextDiff::from_lines(&expected, actual)
            .unified_diff()
            .header("golden", "actual")
            .to_string();
        failures.push(format!(
            "{} differs (HANGAR_BLESS=1 to accept):\n{diff}",
            golden.display()
        ));
    }
}

fn fixtures(kind: &str) -> Vec<(String, PathBuf)> {
    let dir = root().join("fixtures").join(kind);
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            let name = p
                .file_stem()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            (name, p)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn ok_fixtures_render_to_golden() {
    let mut failures = Vec::new();
    let list = fixtures("ok");
    assert!(list.len() >= 5, "expected fixtures under fixtures/ok");
    for (name, path) in list {
        let c = compile(&fixture_inputs(&path));
        let Some(bundle) = &c.bundle else {
            failures.push(format!(
                "{name}: expected success, got:\n{}",
                c.render_diagnostics()
            ));
            continue;
        };
        let yaml = hangar::compile::to_yaml_stream(&bundle.objects, false);
        compare(
            &root().join("golden/ok").join(format!("{name}.yaml")),
            &yaml,
            &mut failures,
        );
        compare(
            &root()
                .join("golden/ok")
                .join(format!("{name}.diagnostics.txt")),
            &c.render_diagnostics(),
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_fixtures_fail_with_golden_diagnostics() {
    let mut failures = Vec::new();
    let list = fixtures("invalid");
    assert!(list.len() >= 12, "expected fixtures under fixtures/invalid");
    for (name, path) in list {
        let c = compile(&fixture_inputs(&path));
        if c.bundle.is_some() || !c.diagnostics.has_errors() {
            failures.push(format!(
                "{name}: expected errors, compiled fine:\n{}",
                c.render_diagnostics()
            ));
            continue;
        }
        for d in c
            .diagnostics
            .items
            .iter()
            .filter(|d| d.severity == hangar::compile::Severity::Error)
        {
            if d.span.is_none() {
                failures.push(format!("{name}: error without a location: {}", d.message));
            }
        }
        compare(
            &root().join("golden/invalid").join(format!("{name}.txt")),
            &c.render_diagnostics(),
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The bundled examples, rendered together, are golden too: any change to what they produce is
/// reviewed.
#[test]
fn examples_render_to_golden() {
    let mut failures = Vec::new();
    let c = compile(&fixture_inputs(&root().join("examples")));
    let bundle = c
        .bundle
        .as_ref()
        .unwrap_or_else(|| panic!("examples must compile:\n{}", c.render_diagnostics()));
    compare(
        &root().join("golden/examples.yaml"),
        &hangar::compile::to_yaml_stream(&bundle.objects, false),
        &mut failures,
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `hangar render` prints YAML without building JSON objects (`compile_yaml`): for every fixture
/// and the examples, it must give exactly what `compile` and printing the bundle give.
#[test]
fn direct_yaml_matches_compile_and_print() {
    let mut inputs: Vec<(String, Inputs)> = ["ok", "invalid"]
        .iter()
        .flat_map(|dir| fixtures(dir))
        .map(|(name, path)| (name, fixture_inputs(&path)))
        .collect();
    inputs.push(("examples".into(), fixture_inputs(&root().join("examples"))));
    // Identical duplicates (deduplicated), a differing one (an error), and an input Secret.
    let dup = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: b\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: b\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  k: v\n";
    let differ =
        format!("{dup}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: c\n");
    for (name, text) in [("dup", dup.to_string()), ("differ", differ)] {
        inputs.push((
            name.into(),
            Inputs {
                files: vec![InputFile {
                    file: SourceFile::new(format!("{name}.yaml"), text),
                    role: FileRole::Inputs,
                }],
                default_namespace: "default".into(),
            },
        ));
    }
    for (name, inputs) in &inputs {
        for reveal in [false, true] {
            let c = compile(inputs);
            let y = hangar::compile::compile_yaml(inputs, reveal);
            assert_eq!(
                c.render_diagnostics(),
                y.render_diagnostics(),
                "{name}: diagnostics"
            );
            match (&c.bundle, &y.docs) {
                (Some(b), Some(docs)) => {
                    assert_eq!(
                        hangar::compile::to_yaml_stream(&b.objects, reveal),
                        docs.to_stream(),
                        "{name} (reveal: {reveal})"
                    );
                    assert_eq!(b.objects.len(), docs.len(), "{name}");
                    assert_eq!(
                        b.objects.iter().any(|o| o.is_input_secret()),
                        y.input_secrets,
                        "{name}"
                    );
                }
                (None, None) => {}
                _ => panic!("{name}: one compiled, the other did not"),
            }
        }
    }
}

/// `hangar import` of every ok fixture that converts something is golden
/// (`golden/import/<name>.yaml`), and what it writes compiles, with nothing left to convert, to
/// exactly the objects the original compiles to (issue 15.3 and 15.5).
#[test]
fn import_is_golden_and_re_renders_the_same_objects() {
    let mut failures = Vec::new();
    let mut imported = 0;
    for (name, path) in fixtures("ok") {
        let inputs = fixture_inputs(&path);
        let (files, c) = hangar::compile::convert::import(&inputs, false);
        let Some(original) = &c.bundle else {
            failures.push(format!(
                "{name}: does not compile:\n{}",
                c.render_diagnostics()
            ));
            continue;
        };
        if files.iter().all(|f| f.converted == 0) {
            continue;
        }
        imported += 1;
        let mut text = String::new();
        for f in &files {
            text.push_str(&format!("### {}\n{}", f.relative, f.text));
        }
        compare(
            &root().join("golden/import").join(format!("{name}.yaml")),
            &text,
            &mut failures,
        );
        let again = Inputs {
            files: files
                .iter()
                .map(|f| InputFile {
                    file: SourceFile::new(f.relative.clone(), f.text.clone()),
                    role: FileRole::Inputs,
                })
                .collect(),
            default_namespace: inputs.default_namespace.clone(),
        };
        let c2 = compile(&again);
        let Some(after) = &c2.bundle else {
            failures.push(format!(
                "{name}: import output does not compile:\n{}",
                c2.render_diagnostics()
            ));
            continue;
        };
        if c2.diagnostics.items.iter().any(|d| d.code == "converted") {
            failures.push(format!(
                "{name}: import output still converts:\n{}",
                c2.render_diagnostics()
            ));
        }
        let a = hangar::compile::to_yaml_stream(&original.objects, true);
        let b = hangar::compile::to_yaml_stream(&after.objects, true);
        if a != b {
            let diff = similar::TextDiff::from_lines(&a, &b)
                .unified_diff()
                .header("original", "imported")
                .to_string();
            failures.push(format!("{name}: import renders other objects:\n{diff}"));
        }
    }
    assert!(imported >= 3, "expected the vitorbari fixtures to convert");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The gateway's route table (`hangar render -o routes`) of every ok fixture and of the examples
/// is golden (`golden/routes/<name>.yaml`): a change to what a gateway would serve or enforce is
/// reviewed like a change to the rendered objects.
#[test]
fn routes_render_to_golden() {
    let mut failures = Vec::new();
    let mut list = fixtures("ok");
    list.push(("examples".into(), root().join("examples")));
    for (name, path) in list {
        let c = compile(&fixture_inputs(&path));
        if c.bundle.is_none() {
            failures.push(format!("{name}: does not compile"));
            continue;
        }
        let table = hangar::gateway::routes::RouteTable::of(&c.decided);
        let text = if table.routes.is_empty() {
            String::new()
        } else {
            table.to_yaml()
        };
        compare(
            &root().join("golden/routes").join(format!("{name}.yaml")),
            &text,
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
