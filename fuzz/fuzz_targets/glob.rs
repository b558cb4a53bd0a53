//! The discovery filters' glob matcher against a plain dynamic-programming reference: the same
//! answer for every pattern and name, and (libFuzzer's `-timeout`) never slow.
#![no_main]

use hangar::controller::discovery::glob;
use libfuzzer_sys::fuzz_target;

/// `*` any run, `?` one character: a table of which prefixes match which.
fn reference(p: &[char], s: &[char]) -> bool {
    let mut row = vec![false; s.len() + 1];
    row[0] = true;
    for &c in p {
        let mut next = vec![false; s.len() + 1];
        if c == '*' {
            let mut any = false;
            for j in 0..=s.len() {
                any |= row[j];
                next[j] = any;
            }
        } else {
            for j in 1..=s.len() {
                next[j] = row[j - 1] && (c == '?' || c == s[j - 1]);
            }
        }
        row = next;
    }
    row[s.len()]
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The first line is the pattern, the rest the name (small alphabets find more).
    let (pattern, name) = text.split_once('\n').unwrap_or((&text, ""));
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    assert_eq!(
        glob(pattern, name),
        reference(&p, &s),
        "pattern {pattern:?} name {name:?}"
    );
});
