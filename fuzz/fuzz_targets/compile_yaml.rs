//! Structure-aware-ish: the input is appended to a valid MCPServer envelope, so mutations
//! mostly land in `spec` and reach classify/resolve/check/render rather than dying in the
//! parser. The bundle, when there is one, is serialised as `hangar render` would.
#![no_main]

use hangar::compile::{FileRole, InputFile, Inputs, SourceFile, compile};
use libfuzzer_sys::fuzz_target;

const PREFIX: &str = "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: fuzz, namespace: fuzz}\n";

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data);
    let text = format!("{PREFIX}{body}");
    let inputs = Inputs {
        files: vec![InputFile {
            file: SourceFile::new("fuzz.yaml", text),
            role: FileRole::Inputs,
        }],
        default_namespace: "default".into(),
    };
    let c = compile(&inputs);
    let _ = c.render_diagnostics();
    if let Some(bundle) = &c.bundle {
        let _ = hangar::compile::to_yaml_stream(&bundle.objects, false);
    }
});
