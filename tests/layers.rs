//! Imports run downhill, and no two files import each other.
//!
//! Every `crate::…` and `super::…` path in `src/` (tests modules left out) is resolved to the
//! file it names. A path from a lower layer to a higher one fails, naming file:line and both
//! layers; so does a pair of files that import each other (a module and its own submodules
//! excepted: a parent declares its children and they share its types).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, low to high: a module may use its own layer and the ones below it.
const LAYERS: &[(&str, u8)] = &[
    ("yaml", 0),
    ("logging", 0),
    ("connect", 0),
    ("api", 1),
    ("compile", 2),
    ("diff", 3),
    ("source", 3),
    ("apply", 3),
    ("probe", 4),
    ("controller", 5),
    ("gateway", 5),
    ("cli", 6),
    ("main", 7),
    ("lib", 7),
];

fn layer(top: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == top).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `src/a/b.rs` and `src/a/b/mod.rs` are `[a, b]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut m: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if m.last()
        .is_some_and(|l| l == "mod" || l == "lib" && m.len() == 1)
    {
        m.pop();
    }
    m
}

/// The file a module path lands in: its longest prefix that is a file.
fn file_of(path: &[String], by_module: &BTreeMap<Vec<String>, PathBuf>) -> Option<PathBuf> {
    (0..=path.len())
        .rev()
        .find_map(|n| by_module.get(&path[..n]).cloned())
}

/// Source without comments and without a trailing `#[cfg(test)] mod tests`.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines
                .get(i + 1)
                .is_some_and(|n| n.trim_start().starts_with("mod tests"))
        {
            break;
        }
        let code = match l.find("//") {
            Some(c) if !l[..c].contains('"') => &l[..c],
            _ => l,
        };
        out.push((i + 1, code.to_string()));
    }
    out
}

fn ident_at(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// The module paths a piece of code names after `crate::` or `super::` (a `{…}` group gives
/// one path per item), each as written from `base`.
fn paths_after(rest: &str, base: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = base;
    let mut s = rest;
    loop {
        if let Some(group) = s.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    _ if item_start && (c.is_alphanumeric() || c == '_') => {
                        item_start = false;
                        paths_after(&group[i..], path.clone(), out);
                    }
                    _ => {}
                }
            }
            return;
        }
        let Some(id) = ident_at(s) else { break };
        if id == "self" {
            break;
        }
        path.push(id.to_string());
        s = &s[id.len()..];
        match s.strip_prefix("::") {
            Some(r) => s = r,
            None => break,
        }
    }
    out.push(path);
}

fn references(module: &[String], line: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    for marker in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = line[from..].find(marker) {
            let at = from + i;
            from = at + marker.len();
            let boundary = at == 0
                || !(bytes[at - 1].is_ascii_alphanumeric()
                    || bytes[at - 1] == b'_'
                    || bytes[at - 1] == b':');
            if !boundary {
                continue;
            }
            if marker == "crate::" {
                paths_after(&line[from..], Vec::new(), &mut out);
            } else {
                let mut base = module.to_vec();
                base.pop();
                let mut rest = &line[from..];
                while let Some(r) = rest.strip_prefix("super::") {
                    base.pop();
                    rest = r;
                }
                from = line.len() - rest.len();
                paths_after(rest, base, &mut out);
            }
        }
    }
    out
}

#[test]
fn imports_run_downhill_and_no_two_files_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let by_module: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let rel = |p: &Path| p.strip_prefix(&src).unwrap_or(p).display().to_string();
    let mut upward = Vec::new();
    let mut edges: BTreeMap<PathBuf, BTreeMap<PathBuf, usize>> = BTreeMap::new();
    for f in &files {
        let module = module_of(&src, f);
        let top = module.first().cloned().unwrap_or_else(|| "lib".into());
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for (no, line) in code_lines(&text) {
            for path in references(&module, &line) {
                let Some(target) = file_of(&path, &by_module) else {
                    continue;
                };
                let their_top = path.first().cloned().unwrap_or_else(|| "lib".into());
                if let (Some(mine), Some(theirs)) = (layer(&top), layer(&their_top))
                    && theirs > mine
                {
                    upward.push(format!(
                        "src/{}:{no}: `{top}` (layer {mine}) uses `{}` (layer {theirs})",
                        rel(f),
                        path.join("::")
                    ));
                }
                if &target != f {
                    edges
                        .entry(f.clone())
                        .or_default()
                        .entry(target)
                        .or_insert(no);
                }
            }
        }
    }
    let parent_child = |a: &Path, b: &Path| {
        let (ma, mb) = (module_of(&src, a), module_of(&src, b));
        (ma.len() + 1 == mb.len() && mb.starts_with(&ma))
            || (mb.len() + 1 == ma.len() && ma.starts_with(&mb))
    };
    let mut circles = BTreeSet::new();
    for (a, targets) in &edges {
        for (b, line_ab) in targets {
            if let Some(line_ba) = edges.get(b).and_then(|t| t.get(a))
                && a < b
                && !parent_child(a, b)
            {
                circles.insert(format!(
                    "src/{}:{line_ab} and src/{}:{line_ba} import each other",
                    rel(a),
                    rel(b)
                ));
            }
        }
    }
    let mut problems = upward;
    problems.extend(circles);
    assert!(
        problems.is_empty(),
        "imports must run downhill (yaml/logging/connect < api < compile < diff/source/apply < probe < controller/gateway < cli):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_sees_what_it_looks_for() {
    let m = |s: &str| s.split("::").map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        references(&m("probe::prober"), "use crate::controller::state::Check;"),
        [m("controller::state::Check")]
    );
    assert_eq!(
        references(
            &m("compile::fastyaml"),
            "use super::{load::resolve_plain, node};"
        ),
        [m("compile::load::resolve_plain"), m("compile::node")]
    );
    assert_eq!(
        references(&m("api::catalog"), "let s = super::schema::spec();"),
        [m("api::schema::spec")]
    );
}
