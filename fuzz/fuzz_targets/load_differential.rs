//! Any bytes, read as text (lossy UTF-8): the loader (which reads most documents by its fast
//! path) and the full YAML parser alone must give the same documents, positions and
//! diagnostics.
#![no_main]

use hangar::compile::diag::Diagnostics;
use hangar::compile::load::{load_yaml, load_yaml_reference};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Above this size the loader parses pieces in parallel, where the first error ends only
    // its own piece; the reference is one pass.
    if text.len() >= 256 * 1024 {
        return;
    }
    let (mut a, mut b) = (Diagnostics::default(), Diagnostics::default());
    let fast = load_yaml(0, &text, &mut a);
    let full = load_yaml_reference(0, &text, &mut b);
    assert_eq!(format!("{:?}", fast.docs), format!("{:?}", full.docs), "documents differ");
    assert_eq!(format!("{:?}", a.items), format!("{:?}", b.items), "diagnostics differ");
});
