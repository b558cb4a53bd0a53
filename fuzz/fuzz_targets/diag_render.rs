//! The diagnostics renderer on arbitrary files and arbitrary spans (lines and columns past the
//! end, zero lengths, a span in a file that does not exist), with messages holding control
//! characters and credentials: it never panics, never prints a raw control character, never
//! prints a URL password it was given, and its output is bounded by what it shows.
#![no_main]

use hangar::compile::SourceFile;
use hangar::compile::diag::{Diagnostic, Diagnostics, Span, MAX_RENDERED};
use libfuzzer_sys::fuzz_target;

const PASSWORD: &str = "Pw0rdXyZ";

fuzz_target!(|data: &[u8]| {
    // 16 bytes of spans, then the text: the first line is the message, the rest two files.
    if data.len() < 16 {
        return;
    }
    let (head, rest) = data.split_at(16);
    let text = String::from_utf8_lossy(rest);
    let (message, body) = text.split_once('\n').unwrap_or((&text, ""));
    let mid = (0..=body.len() / 2)
        .rev()
        .find(|&i| body.is_char_boundary(i))
        .unwrap_or(0);
    let (a, b) = body.split_at(mid);
    // A credential planted in a URL in both the message and the files.
    let planted = format!("https://user:{PASSWORD}@h/x");
    let files = vec![
        SourceFile::new("a.yaml", format!("{a}{planted}\n")),
        SourceFile::new("b.yaml", b.to_string()),
    ];
    let n = |i: usize| u32::from(head[i]) | (u32::from(head[i + 1]) << 8);
    let mut diags = Diagnostics::default();
    for k in 0..4usize {
        let span = Span {
            file: u32::from(head[k * 4] % 3),
            line: n(k * 4 + 1) % 64,
            col: u32::from(head[k * 4 + 3]),
            len: u32::from(head[(k * 4 + 2) % 16]) % 40,
        };
        let msg = format!("{message} {planted}");
        let d = if k % 2 == 0 {
            Diagnostic::error("fuzz", Some(span), msg)
        } else {
            Diagnostic::warning("fuzz", (k != 3).then_some(span), msg)
        };
        diags.push(d.hint(message.to_string()).note(Some(span), message.to_string()));
    }
    let out = diags.render(&files);
    assert!(
        !out.chars().any(|c| c.is_control() && c != '\n'),
        "raw control character in {out:?}"
    );
    assert!(!out.contains(PASSWORD), "password shown in {out:?}");
    // Each line is a message (cut at 1,000 characters, escaped at most 10x) or a snippet window.
    assert!(out.lines().count() <= MAX_RENDERED * 12 + 2, "{} lines", out.lines().count());
    assert!(out.lines().all(|l| l.len() <= 12_000), "a line of {} bytes", out.lines().map(str::len).max().unwrap_or(0));
});
