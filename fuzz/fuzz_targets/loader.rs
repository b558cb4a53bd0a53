//! Any bytes, read as text (lossy UTF-8), compiled as a YAML file and as a TOML file, and
//! loaded by the bare loaders: none of it may panic. Diagnostics are rendered too, since
//! rendering walks spans into the text (char boundaries, line ends).
#![no_main]

use hangar::compile::diag::Diagnostics;
use hangar::compile::load::{load_toml, load_yaml};
use hangar::compile::{FileRole, InputFile, Inputs, SourceFile, compile};
use libfuzzer_sys::fuzz_target;

fn compile_as(path: &str, text: &str, role: FileRole) {
    let inputs = Inputs {
        files: vec![InputFile {
            file: SourceFile::new(path, text),
            role,
        }],
        default_namespace: "default".into(),
    };
    let c = compile(&inputs);
    let _ = c.render_diagnostics();
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut diags = Diagnostics::default();
    let _ = load_yaml(0, &text, &mut diags);
    let _ = load_toml(0, &text, &mut diags);
    compile_as("fuzz.yaml", &text, FileRole::Inputs);
    compile_as("fuzz.toml", &text, FileRole::Inputs);
    compile_as("fuzz.toml", &text, FileRole::Catalog { bind: None });
});
