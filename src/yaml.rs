//! A small, fast YAML emitter for JSON values: block style, two-space indent, sequences at the
//! parent's indent (kubectl's style), strings quoted whenever a YAML 1.1 or 1.2 reader could take
//! them for anything but a string. Round-trips through the compiler's loader (tested).

use serde_json::Value;

mod ser;
pub use ser::{write_field, write_serialize};

/// YAML text of one value (a document body, without `---`).
pub fn to_string(v: &Value) -> String {
    let mut out = String::with_capacity(1024);
    write_value(&mut out, v, 0);
    out
}

/// Appends one value as a document body.
pub fn write_value(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => write_map(out, m, indent),
        Value::Array(a) if !a.is_empty() => write_seq(out, a, indent),
        _ => {
            write_scalar(out, v, indent);
            out.push('\n');
        }
    }
}

/// `n` spaces.
pub fn pad(out: &mut String, mut n: usize) {
    const SPACES: &str = "                                                                ";
    while n > 0 {
        let k = n.min(SPACES.len());
        out.push_str(&SPACES[..k]);
        n -= k;
    }
}

fn write_map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    let mut first = true;
    for (k, v) in m {
        if !first {
            pad(out, indent);
        }
        first = false;
        write_str(out, k, indent, true);
        out.push(':');
        write_child(out, v, indent, false);
    }
}

fn write_seq(out: &mut String, a: &[Value], indent: usize) {
    let mut first = true;
    for v in a {
        if !first {
            pad(out, indent);
        }
        first = false;
        out.push('-');
        write_child(out, v, indent, true);
    }
}

/// Writes what follows `key:` or `-`.
fn write_child(out: &mut String, v: &Value, indent: usize, in_seq: bool) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            if in_seq {
                out.push(' ');
                write_map(out, m, indent + 2);
            } else {
                out.push('\n');
                pad(out, indent + 2);
                write_map(out, m, indent + 2);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            if in_seq {
                out.push(' ');
                write_seq(out, a, indent + 2);
            } else {
                // kubectl style: a list under a key sits at the key's indent.
                out.push('\n');
                pad(out, indent);
                write_seq(out, a, indent);
            }
        }
        _ => {
            out.push(' ');
            write_scalar(out, v, indent);
            out.push('\n');
        }
    }
}

fn write_scalar(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_str(out, s, indent, false),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

/// A string value of a mapping whose entries sit at `indent` (plain, quoted or a literal block),
/// as it is printed after `key: `.
pub fn write_str_value(out: &mut String, s: &str, indent: usize) {
    write_str(out, s, indent, false);
}

/// A string key of a mapping whose entries sit at `indent` (plain or quoted).
pub fn write_str_key(out: &mut String, s: &str, indent: usize) {
    write_str(out, s, indent, true);
}

fn write_str(out: &mut String, s: &str, indent: usize, key: bool) {
    if plain_safe(s) {
        out.push_str(s);
    } else if !key && literal_block_safe(s) {
        // `|` keeps one final newline; `|-` strips it.
        out.push_str(if s.ends_with('\n') { "|" } else { "|-" });
        for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
            out.push('\n');
            if !line.is_empty() {
                pad(out, indent + 2);
                out.push_str(line);
            }
        }
    } else {
        quote(out, s);
    }
}

fn literal_block_safe(s: &str) -> bool {
    s.contains('\n')
        && !s.ends_with("\n\n")
        && !s.starts_with([' ', '\n'])
        && s.chars()
            .all(|c| c == '\n' || (!c.is_control() && c != '\u{feff}'))
        && s.split('\n').all(|l| !l.ends_with(' '))
}

fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control()
                || c == '\u{feff}'
                || c == '\u{2028}'
                || c == '\u{2029}'
                || c == '\u{85}' =>
            {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// True when `s` reads back as this same string in plain style under YAML 1.1 and 1.2.
fn plain_safe(s: &str) -> bool {
    let bytes = s.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if first.is_ascii_whitespace() || last.is_ascii_whitespace() || last == b':' {
        return false;
    }
    // `-x` and `:x` are plain in YAML 1.2, but not everywhere; quote every indicator. (A
    // `match`, not `slice::contains`: that is a memchr call per string printed.)
    if matches!(
        first,
        b'-' | b'?'
            | b':'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
    ) {
        return false;
    }
    // Bytes that need a closer look: controls, space, `#`, flow indicators, non-ASCII.
    const fn special_bytes() -> [bool; 256] {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 256 {
            t[b] = b < 0x20
                || b >= 0x7f
                || matches!(b as u8, b' ' | b'#' | b'{' | b'}' | b'[' | b']' | b',');
            b += 1;
        }
        t
    }
    static SPECIAL: [bool; 256] = special_bytes();
    let mut prev = 0u8;
    let mut ascii = true;
    for &b in bytes {
        if SPECIAL[b as usize] {
            match b {
                // Flow indicators are harmless in block context, but quote them for every reader.
                b'\n' | b'\t' | b'\r' | b'{' | b'}' | b'[' | b']' | b',' => return false,
                b' ' if prev == b':' => return false,
                b'#' if prev == b' ' => return false,
                b' ' | b'#' => {}
                b if b >= 0x80 => ascii = false,
                _ => return false,
            }
        }
        prev = b;
    }
    if !ascii
        && s.chars()
            .any(|c| c.is_control() || matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}' | '\u{85}'))
    {
        return false;
    }
    !ambiguous_scalar(bytes)
}

/// Strings that a YAML 1.1 or 1.2 reader resolves to null, a boolean, a number or a timestamp.
fn ambiguous_scalar(s: &[u8]) -> bool {
    const WORDS: [&str; 15] = [
        "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n", ".inf", "-.inf", "+.inf",
        ".nan", "<<",
    ];
    if s.len() <= 5 && WORDS.iter().any(|w| w.as_bytes().eq_ignore_ascii_case(s)) || s == b"=" {
        return true;
    }
    let first = s[0];
    if first.is_ascii_digit() || first == b'+' || first == b'-' || first == b'.' {
        // Numbers of every base, sexagesimal (1.1), floats with exponents, dates and times.
        return s.iter().all(|&b| {
            b.is_ascii_hexdigit()
                || matches!(
                    b,
                    b'_' | b':'
                        | b'.'
                        | b'+'
                        | b'-'
                        | b'x'
                        | b'X'
                        | b'o'
                        | b'O'
                        | b'b'
                        | b'B'
                        | b't'
                        | b'T'
                        | b'z'
                        | b'Z'
                        | b' '
                )
        });
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(v: &Value) {
        let text = to_string(v);
        let mut d = crate::compile::Diagnostics::default();
        let docs = crate::compile::load::load_yaml(0, &text, &mut d).docs;
        assert!(!d.has_errors(), "{text}\n{d:?}");
        let back = docs.first().map(|n| n.to_json()).unwrap_or(Value::Null);
        assert_eq!(&back, v, "\n{text}");
    }

    #[test]
    fn ambiguous_strings_are_quoted_and_round_trip() {
        let v = json!({
            "a": "true", "b": "1.0", "c": "on", "d": "hello world", "e": "", "n": "0o17", "o": "~", "p": "- x",
            "q": 0.1, "r": "yes", "s": "1e3", "t": "12:30", "u": "*x", "v": "%x", "w": "a: b", "x": "#x", "y": "x #y",
            "z": "1.4.0", "date": "2001-12-14", "neg": -3, "big": 12345678901i64, "nested": {"l": [1, "2", {"k": "null"}, null], "e": {}, "el": []},
            "multi": "line1\nline2\n", "multi2": "a\n\nb", "trail": "x \ny\n", "tab": "a\tb", "quote": "say \"hi\"", "bs": "a\\b",
            "ctrl": "a\u{1}b", "uni": "héllo ✓", "colon": "ghcr.io/a/b:1.0", "url": "https://h/x?y=1#z", "pct": "25%",
            "json": "{\"a\":1}", "yes-key": {"on": "off"}, "list": [[1, 2], [], [{}]], "k8s": "mcp-hangar.io/core",
        });
        round_trip(&v);
    }

    /// The direct serializer prints what `to_value` + `write_value` print.
    fn same_as_value<T: serde::Serialize>(v: &T) {
        let mut direct = String::new();
        write_serialize(&mut direct, v);
        let mut via = String::new();
        write_value(&mut via, &serde_json::to_value(v).unwrap_or(Value::Null), 0);
        assert_eq!(direct, via);
    }

    #[test]
    fn direct_serializer_matches_value_path() {
        use std::collections::BTreeMap;
        same_as_value(&json!({
            "a": "true", "b": "1.0", "q": 0.1, "neg": -3, "big": 12345678901i64, "u": u64::MAX, "f": 1e300,
            "nested": {"l": [1, "2", {"k": "null"}, null, [], {}, [[1], [{"x": [{}]}]]], "e": {}, "el": []},
            "multi": "line1\nline2\n", "multi2": "a\n\nb", "trail": "x \ny\n", "ctrl": "a\u{1}b",
            "list": [[1, 2], [], [{}], {"a": {"b": [1, {"c": "d\ne"}]}}], "k8s": "mcp-hangar.io/core",
        }));
        for v in [
            json!(null),
            json!([]),
            json!({}),
            json!("x"),
            json!([1]),
            json!("a\nb"),
            json!(1.5),
        ] {
            same_as_value(&v);
        }
        same_as_value(&(
            Some(1),
            None::<i32>,
            (),
            'x',
            2.5f32,
            f64::NAN,
            b"ab".as_slice(),
        ));
        same_as_value(&BTreeMap::from([("k".to_string(), vec![Some("v"), None])]));
        same_as_value(&BTreeMap::<String, String>::new());
        // Keys `to_value` converts (integers) take the fallback.
        same_as_value(&BTreeMap::from([(1, "one"), (2, "two")]));
        #[derive(serde::Serialize)]
        enum E {
            Unit,
            New(i32),
            Tuple(i32, i32),
            Struct { a: i32 },
        }
        same_as_value(&vec![E::Unit, E::New(1)]);
        same_as_value(&vec![E::Tuple(1, 2)]);
        same_as_value(&json!({"x": [E::Struct { a: 1 }]}));
        let d = k8s_openapi::api::apps::v1::Deployment::default();
        same_as_value(&d);
    }

    #[test]
    fn style_matches_kubectl() {
        let v = json!({"spec": {"containers": [{"name": "mcp", "ports": [{"containerPort": 8080}]}], "x": []}});
        assert_eq!(
            to_string(&v),
            "spec:\n  containers:\n  - name: mcp\n    ports:\n    - containerPort: 8080\n  x: []\n"
        );
    }
}
