//! Every bundled example renders without errors or warnings, and the examples embedded in the
//! binary are exactly the files in `examples/`.

use std::path::PathBuf;

use hangar::compile::{FileRole, InputFile, Inputs, SourceFile, compile};

#[test]
fn embedded_examples_match_the_directory() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("examples dir")
        .filter_map(Result::ok)
        .map(|e| format!("examples/{}", e.file_name().to_string_lossy()))
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".toml") || n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = hangar::source::embedded::EXAMPLES
        .iter()
        .map(|(p, _)| p.to_string())
        .collect();
    embedded.sort();
    assert_eq!(on_disk, embedded, "update src/source/embedded.rs");
    for (path, text) in hangar::source::embedded::EXAMPLES {
        let disk = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path))
            .expect("readable");
        assert_eq!(&disk, text, "{path}");
    }
}

#[test]
fn every_example_renders_cleanly_on_its_own() {
    for (path, text) in hangar::source::embedded::EXAMPLES {
        let inputs = Inputs {
            files: vec![InputFile {
                file: SourceFile::new(*path, *text),
                role: FileRole::Inputs,
            }],
            default_namespace: "default".into(),
        };
        let c = compile(&inputs);
        assert!(
            c.bundle.is_some(),
            "{path} failed:\n{}",
            c.render_diagnostics()
        );
        assert_eq!(
            c.diagnostics.items.len(),
            0,
            "{path} has diagnostics:\n{}",
            c.render_diagnostics()
        );
    }
}

#[test]
fn rendering_is_deterministic_whatever_the_file_order() {
    let mut files: Vec<InputFile> = hangar::source::embedded::EXAMPLES
        .iter()
        .map(|(p, t)| InputFile {
            file: SourceFile::new(*p, *t),
            role: FileRole::Inputs,
        })
        .collect();
    let render = |files: &[InputFile]| {
        let c = compile(&Inputs {
            files: files.to_vec(),
            default_namespace: "default".into(),
        });
        hangar::compile::to_yaml_stream(&c.bundle.expect("compiles").objects, false)
    };
    let first = render(&files);
    files.reverse();
    assert_eq!(first, render(&files));
    files.rotate_left(3);
    assert_eq!(first, render(&files));
}
