//! Parsing: YAML (and JSON, a subset of it) and TOML texts into [`Node`] trees with positions.
//!
//! YAML follows the 1.2 core schema for plain scalars, supports anchors, aliases and `<<` merge
//! keys, and rejects duplicate keys. Nesting depth and alias expansion are bounded, so no input can
//! exhaust the stack or memory.

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan, Tag};

use super::diag::{Diagnostic, Diagnostics, Span};
use super::node::{Node, Value, resolve_plain};

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 96;
/// Most nodes one file may expand to (guards against alias bombs).
pub const MAX_NODES: usize = 4_000_000;

/// The documents of one file, in order.
pub struct Loaded {
    pub docs: Vec<Node>,
}

/// Parses a file by its extension: `.toml` as TOML, everything else as YAML.
pub fn load_file(file: usize, path: &str, text: &str, diags: &mut Diagnostics) -> Loaded {
    if path.ends_with(".toml") {
        load_toml(file, text, diags)
    } else {
        load_yaml(file, text, diags)
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        span: Span,
        anchor: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        span: Span,
        anchor: usize,
        merges: Vec<Node>,
    },
}

fn span_of(file: u32, line_offset: u32, s: &YSpan) -> Span {
    let start = s.start;
    let end = s.end;
    let len = if end.line() == start.line() {
        end.col().saturating_sub(start.col())
    } else {
        1
    };
    Span {
        file,
        line: start.line() as u32 + line_offset,
        col: start.col() as u32 + 1,
        len: len.max(1) as u32,
    }
}

struct Builder {
    file: u32,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
    docs: Vec<Node>,
}

fn count_nodes(n: &Node) -> usize {
    match &n.value {
        Value::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

impl Builder {
    fn new(file: usize) -> Self {
        Builder {
            file: file as u32,
            stack: Vec::new(),
            anchors: HashMap::new(),
            nodes: 0,
            docs: Vec::new(),
        }
    }

    /// Adds a finished node to its parent (or as a document root).
    fn push(&mut self, node: Node, anchor: usize, diags: &mut Diagnostics) {
        if anchor > 0 {
            let size = count_nodes(&node);
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                if !matches!(node.value, Value::Null) {
                    self.docs.push(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                key,
                merges,
                ..
            }) => match key.take() {
                None => {
                    if matches!(node.value, Value::Seq(_) | Value::Map(_)) {
                        diags.push(
                            Diagnostic::error(
                                "yaml-complex-key",
                                Some(node.span),
                                "a mapping key must be a scalar",
                            )
                            .hint("Kubernetes objects only use string keys"),
                        );
                    }
                    *key = Some(node);
                }
                Some(k) => {
                    if matches!(&k.value, Value::Str(s) if &**s == "<<") && k.span.len == 2 {
                        merges.push(node);
                        return;
                    }
                    let name = k.key_text();
                    if let Some((first, _)) = entries.iter().find(|(ek, _)| ek.key_text() == name) {
                        diags.push(
                            Diagnostic::error(
                                "yaml-duplicate-key",
                                Some(k.span),
                                format!("duplicate key `{name}`"),
                            )
                            .note(Some(first.span), "first defined here")
                            .hint("a key may appear once per mapping; remove one of them"),
                        );
                        return;
                    }
                    entries.push((k, node));
                }
            },
        }
    }
}

fn tagged(s: &str, tag: &Tag, span: Span, diags: &mut Diagnostics) -> Value {
    let core = tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:";
    if !core {
        diags.push(
            Diagnostic::error(
                "yaml-tag",
                Some(span),
                format!("unsupported YAML tag `{}{}`", tag.handle, tag.suffix),
            )
            .hint("Kubernetes manifests use plain YAML; remove the tag"),
        );
        return Value::Str(s.into());
    }
    match tag.suffix.as_str() {
        "str" => Value::Str(s.into()),
        "null" => Value::Null,
        "bool" | "int" | "float" => {
            let v = resolve_plain(s);
            let ok = matches!(
                (tag.suffix.as_str(), &v),
                ("bool", Value::Bool(_))
                    | ("int", Value::Int(_))
                    | ("float", Value::Float(_))
                    | ("float", Value::Int(_))
            );
            if !ok {
                diags.push(Diagnostic::error(
                    "yaml-tag",
                    Some(span),
                    format!("`{s}` is not a valid !!{}", tag.suffix),
                ));
            }
            match v {
                Value::Int(i) if tag.suffix == "float" => Value::Float(i as f64),
                v => v,
            }
        }
        other => {
            diags.push(Diagnostic::error(
                "yaml-tag",
                Some(span),
                format!("unsupported YAML tag `!!{other}` on a scalar"),
            ));
            Value::Str(s.into())
        }
    }
}

/// Texts above this size are split at document markers and parsed on all cores.
const PARALLEL_THRESHOLD: usize = 256 * 1024;

/// Parses a (multi-document) YAML stream. Large streams are cut at `---` lines (a document
/// marker at column 0 ends any scalar in YAML, so the cut never splits a value) and the pieces
/// are parsed in parallel; positions stay those of the whole text.
pub fn load_yaml(file: usize, text: &str, diags: &mut Diagnostics) -> Loaded {
    // A line starting with `%` (searched for as a substring: a pass over the whole text).
    let has_directives = text.starts_with('%') || text.contains("\n%") || text.contains("\r%");
    if has_directives {
        // Directives apply to the documents after them: one pass of the full parser.
        return load_yaml_reference(file, text, diags);
    }
    if text.len() < PARALLEL_THRESHOLD {
        return load_yaml_chunk(file, text, text.len(), 0, diags);
    }
    // (byte offset, line offset) of each piece, about PARALLEL_THRESHOLD / 4 bytes each.
    // The first document marker line at least that far from the last cut: searched for, not
    // read line by line (a serial pass over the whole text otherwise).
    let mut cuts = vec![(0usize, 0u32)];
    let (mut last, mut line) = (0usize, 0u32);
    let mut from = PARALLEL_THRESHOLD / 4;
    loop {
        // From the character at `from - 1` on (a `\n` is never inside one).
        let mut at = from - 1;
        while at < text.len() && !text.is_char_boundary(at) {
            at += 1;
        }
        let Some(found) = text.get(at..).and_then(|t| t.find("\n---")) else {
            break;
        };
        // The line starting after that `\n`, at or after `from`.
        let start = at + found + 1;
        if is_doc_marker(&text[start..]) {
            line += line_breaks(&text[last..start]);
            cuts.push((start, line));
            last = start;
            from = start + PARALLEL_THRESHOLD / 4;
        } else {
            from = start + 1;
        }
    }
    // Each piece is the text from its cut on, and the length it parses of it.
    let pieces: Vec<(&str, usize, u32)> = cuts
        .iter()
        .enumerate()
        .map(|(i, &(start, line))| {
            let end = cuts.get(i + 1).map_or(text.len(), |c| c.0);
            (&text[start..], end - start, line)
        })
        .collect();
    use rayon::prelude::*;
    let results: Vec<(Loaded, Diagnostics)> = pieces
        .into_par_iter()
        .map(|(piece, end, line)| {
            let mut d = Diagnostics::default();
            let loaded = load_yaml_chunk(file, piece, end, line, &mut d);
            (loaded, d)
        })
        .collect();
    let mut docs = Vec::new();
    for (loaded, d) in results {
        docs.extend(loaded.docs);
        diags.extend(d);
    }
    Loaded { docs }
}

/// The line breaks in a text as the full parser counts them: `\n`, `\r\n`, and a `\r` alone.
fn line_breaks(text: &str) -> u32 {
    let b = text.as_bytes();
    if !b.contains(&b'\r') {
        return b.iter().filter(|&&c| c == b'\n').count() as u32;
    }
    let breaks = b
        .iter()
        .enumerate()
        .filter(|&(i, &c)| c == b'\n' || c == b'\r' && b.get(i + 1) != Some(&b'\n'));
    breaks.count() as u32
}

/// Whether a line is a document marker (`---` alone, or followed by a space and more).
fn is_doc_marker(l: &str) -> bool {
    l.starts_with("---") && (l.len() == 3 || l[3..].starts_with([' ', '\t', '\n', '\r']))
}

/// Parses the documents of a piece of a stream, `text[..end]` (`text` runs on to the end of the
/// file): each one by the fast path when it can, else by the full parser. The full parser's
/// first error ends the piece, as it would in one pass.
fn load_yaml_chunk(
    file: usize,
    text: &str,
    end: usize,
    line_offset: u32,
    diags: &mut Diagnostics,
) -> Loaded {
    let mut b = Builder::new(file);
    let mut start = 0usize;
    let mut start_line = line_offset;
    let mut offset = 0usize;
    let mut line = line_offset;
    let mut pieces = Vec::new();
    for l in text[..end].split_inclusive('\n') {
        if offset > start && is_doc_marker(l) {
            pieces.push((start, offset, start_line));
            start = offset;
            start_line = line;
        }
        offset += l.len();
        line += line_breaks(l);
    }
    pieces.push((start, end, start_line));
    for (from, to, first_line) in pieces {
        let doc = &text[from..to];
        match super::fastyaml::parse_doc(file, doc, first_line, MAX_DEPTH, &mut b.nodes) {
            Some(node) => b.docs.extend(node),
            // An anchor may be used in the documents after it: the full parser reads them all.
            None if doc.contains('&') => {
                full_parse_to(&mut b, text, from, end, first_line, diags);
                break;
            }
            None => {
                let (docs, found, nodes) = (b.docs.len(), diags.items.len(), b.nodes);
                if !full_parse_to(&mut b, text, from, to, first_line, diags) {
                    // An error may be one that only shows across the `---` (an unclosed flow
                    // collection): the rest is read in one pass, for the same diagnostics.
                    b.docs.truncate(docs);
                    diags.items.truncate(found);
                    b.nodes = nodes;
                    full_parse_to(&mut b, text, from, end, first_line, diags);
                    break;
                }
            }
        }
    }
    Loaded { docs: b.docs }
}

/// Parses `text[from..to]` with the full parser, as one pass over the whole of `text` would.
/// What follows a node can move its position (an empty block scalar is placed at the `---`
/// after it, but at its indicator at the end of the text): when the piece ends at a `---`, the
/// parser reads on into that marker and stops at the document it starts.
fn full_parse_to(
    b: &mut Builder,
    text: &str,
    from: usize,
    to: usize,
    line_offset: u32,
    diags: &mut Diagnostics,
) -> bool {
    if to >= text.len() {
        return full_parse(b, &text[from..], line_offset, None, diags);
    }
    // `to` is the start of a `---` line, whose fourth byte (if any) is ASCII.
    let ahead = (to + 4).min(text.len());
    let (Some(doc), Some(piece)) = (text.get(from..to), text.get(from..ahead)) else {
        return full_parse(b, &text[from..], line_offset, None, diags);
    };
    full_parse(b, piece, line_offset, Some(doc.chars().count()), diags)
}

/// Parses a YAML stream with the full parser alone, in one piece: what [`load_yaml`] must agree
/// with (its fast path is held to this by tests and a fuzz target).
#[doc(hidden)]
pub fn load_yaml_reference(file: usize, text: &str, diags: &mut Diagnostics) -> Loaded {
    let mut b = Builder::new(file);
    full_parse(&mut b, text, 0, None, diags);
    Loaded { docs: b.docs }
}

/// `key:<TAB>value` is valid YAML (a tab separates in-line, as kubectl reads it) that the parser
/// rejects: when the text does not parse, every run of blanks holding a tab right after a `:`
/// becomes spaces (one byte for one, so every position stays), except inside a quoted or block
/// scalar, whose content must stay as written (found by parsing the changed text once). Linear:
/// at most two parses besides the real one. Tabs anywhere else are left alone.
fn tabs_after_colons(text: &str) -> Cow<'_, str> {
    if !text.contains(":\t") || Parser::new_from_str(text).all(|r| r.is_ok()) {
        return Cow::Borrowed(text);
    }
    let mut bytes = text.as_bytes().to_vec();
    // Byte ranges of the blanks changed.
    let mut changed: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while let Some(p) = text[i..].find(":\t").map(|p| i + p) {
        let start = p + 1;
        let end = start
            + bytes[start..]
                .iter()
                .take_while(|&&c| c == b'\t' || c == b' ')
                .count();
        if end < bytes.len() && !matches!(bytes[end], b'\n' | b'\r') {
            bytes[start..end].fill(b' ');
            changed.push((start, end));
        }
        i = end.max(p + 1);
    }
    let Ok(fixed) = std::str::from_utf8(&bytes) else {
        return Cow::Borrowed(text);
    };
    // Where quoted and block scalars are (character indices, as the parser counts).
    let mut kept: Vec<(usize, usize)> = Parser::new_from_str(fixed)
        .map_while(Result::ok)
        .filter_map(|(ev, span)| match ev {
            Event::Scalar(_, style, _, _) if style != ScalarStyle::Plain => {
                Some((span.start.index(), span.end.index()))
            }
            _ => None,
        })
        .collect();
    if !kept.is_empty() {
        kept.sort_unstable();
        // The character index of each changed range's start, in one walk over the text.
        let mut chars = 0usize;
        let mut at = 0usize;
        let mut undo = Vec::new();
        for &(start, end) in &changed {
            chars += text[at..start].chars().count();
            at = start;
            let inside = kept
                .partition_point(|&(s, _)| s <= chars)
                .checked_sub(1)
                .is_some_and(|k| kept[k].1 > chars);
            if inside {
                undo.push((start, end));
            }
        }
        for (start, end) in undo {
            bytes[start..end].copy_from_slice(&text.as_bytes()[start..end]);
        }
    }
    match String::from_utf8(bytes) {
        Ok(s) if s != text => Cow::Owned(s),
        _ => Cow::Borrowed(text),
    }
}

/// Where a syntax error is, and what to say: a tab the parser trips over is often on a line
/// after the position it reports (the end of the scalar before it), so the error points at the
/// tab itself.
fn syntax_error(
    file: u32,
    text: &str,
    line_offset: u32,
    err: &saphyr_parser::ScanError,
) -> Diagnostic {
    let m = err.marker();
    let (mut line, mut col) = (m.line() as u32, m.col() as u32 + 1);
    let mut message = format!("invalid YAML: {}", err.info());
    let mut hint = "check the indentation and quoting around this position";
    if err.info().contains("tab") {
        let from = text
            .char_indices()
            .nth(m.index())
            .map_or(text.len(), |(i, _)| i);
        if let Some(tab) = text[from..].find('\t').map(|i| from + i) {
            let line_start = text[..tab].rfind(['\n', '\r']).map_or(0, |i| i + 1);
            line = line_breaks(&text[..tab]) + 1;
            col = text[line_start..tab].chars().count() as u32 + 1;
            let indents = text[line_start..tab].chars().all(|c| c == ' ' || c == '\t');
            if indents {
                message = "invalid YAML: a tab indents this line".into();
                hint = "YAML indentation must be spaces: replace the tab with spaces";
            } else {
                message = format!("invalid YAML: a tab here is not allowed ({})", err.info());
                hint = "use spaces instead of the tab";
            }
        }
    }
    Diagnostic::error(
        "yaml-syntax",
        Some(Span {
            file,
            line: line + line_offset,
            col,
            len: 1,
        }),
        message,
    )
    .hint(hint)
}

/// `until`: the parse ends (as a success) at a `---` at or after this character index (an
/// implicit document start may be placed there too: it does not end the parse).
fn full_parse(
    b: &mut Builder,
    text: &str,
    line_offset: u32,
    until: Option<usize>,
    diags: &mut Diagnostics,
) -> bool {
    let file = b.file;
    // Anchor ids start again with each parser (and anchors never reach across documents).
    b.anchors.clear();
    b.stack.clear();
    let text = tabs_after_colons(text);
    let text = text.as_ref();
    let parser = Parser::new_from_str(text);
    for item in parser {
        let (event, yspan) = match item {
            Ok(e) => e,
            Err(err) => {
                diags.push(syntax_error(file, text, line_offset, &err));
                return false;
            }
        };
        if matches!(event, Event::DocumentStart(true))
            && until.is_some_and(|at| yspan.start.index() >= at)
        {
            return true;
        }
        let span = span_of(b.file, line_offset, &yspan);
        match event {
            Event::Scalar(value, style, anchor, tag) => {
                let v = match (&tag, style) {
                    (Some(t), _) => tagged(&value, t, span, diags),
                    (None, ScalarStyle::Plain) => resolve_plain(&value),
                    (None, _) => Value::Str(value.into()),
                };
                b.nodes += 1;
                b.push(Node::new(v, span), anchor, diags);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _)
                if b.stack.len() >= MAX_DEPTH =>
            {
                let _ = anchor;
                diags.push(
                    Diagnostic::error(
                        "yaml-too-deep",
                        Some(span),
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    )
                    .hint("no hangar resource nests this deep; check the indentation"),
                );
                return false;
            }
            Event::SequenceStart(anchor, _) => {
                b.nodes += 1;
                b.stack.push(Frame::Seq {
                    items: Vec::new(),
                    span,
                    anchor,
                });
            }
            Event::MappingStart(anchor, _) => {
                b.nodes += 1;
                b.stack.push(Frame::Map {
                    entries: Vec::new(),
                    key: None,
                    span,
                    anchor,
                    merges: Vec::new(),
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    items,
                    span,
                    anchor,
                }) = b.stack.pop()
                {
                    b.push(Node::new(Value::Seq(items.into()), span), anchor, diags);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    mut entries,
                    span,
                    anchor,
                    merges,
                    ..
                }) = b.stack.pop()
                {
                    apply_merges(&mut entries, merges, diags);
                    b.push(Node::new(Value::Map(entries.into()), span), anchor, diags);
                }
            }
            Event::Alias(id) => {
                let Some((node, size)) = b.anchors.get(&id).cloned() else {
                    diags.push(Diagnostic::error(
                        "yaml-alias",
                        Some(span),
                        "alias to an unknown anchor",
                    ));
                    continue;
                };
                b.nodes += size;
                if b.nodes > MAX_NODES {
                    diags.push(
                        Diagnostic::error(
                            "yaml-too-large",
                            Some(span),
                            format!("aliases expand this file beyond {MAX_NODES} nodes"),
                        )
                        .hint("an alias bomb? hangar refuses to expand it"),
                    );
                    return false;
                }
                b.push(node, 0, diags);
            }
            Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::StreamStart
            | Event::StreamEnd
            | Event::Nothing => {}
        }
    }
    true
}

/// `<<: *base` and `<<: [*a, *b]`: keys not set in the mapping itself are taken from the merged
/// mappings, earlier ones first.
fn apply_merges(entries: &mut Vec<(Node, Node)>, merges: Vec<Node>, diags: &mut Diagnostics) {
    for m in merges {
        let sources: Vec<Node> = match m.value {
            Value::Map(_) => vec![m],
            Value::Seq(items) => items.into_vec(),
            _ => {
                diags.push(Diagnostic::error(
                    "yaml-merge",
                    Some(m.span),
                    "`<<` must merge a mapping or a list of mappings",
                ));
                continue;
            }
        };
        for src in sources {
            match src.value {
                Value::Map(src_entries) => {
                    for (k, v) in src_entries.into_vec() {
                        let name = k.key_text();
                        if !entries.iter().any(|(ek, _)| ek.key_text() == name) {
                            entries.push((k, v));
                        }
                    }
                }
                _ => diags.push(Diagnostic::error(
                    "yaml-merge",
                    Some(src.span),
                    "`<<` must merge a mapping or a list of mappings",
                )),
            }
        }
    }
}

/// Byte offset -> (line, column), both 1-based, column in characters.
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        // Lines end as the YAML parser and the source frames of diagnostics end them.
        let b = text.as_bytes();
        let mut starts = vec![0];
        starts.extend(
            (0..b.len())
                .filter(|&i| b[i] == b'\n' || b[i] == b'\r' && b.get(i + 1) != Some(&b'\n'))
                .map(|i| i + 1),
        );
        LineIndex { text, starts }
    }

    pub fn span(&self, file: usize, range: std::ops::Range<usize>) -> Span {
        let offset = range.start.min(self.text.len());
        let line = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.starts.get(line).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0);
        let end = range.end.min(self.text.len()).max(offset);
        let len = self
            .text
            .get(offset..end)
            .map(|s| {
                super::diag::source_lines(s)
                    .next()
                    .unwrap_or("")
                    .chars()
                    .count()
            })
            .unwrap_or(1);
        Span {
            file: file as u32,
            line: line as u32 + 1,
            col: col as u32 + 1,
            len: len.max(1) as u32,
        }
    }
}

/// Parses a TOML document (a catalog).
pub fn load_toml(file: usize, text: &str, diags: &mut Diagnostics) -> Loaded {
    let index = LineIndex::new(text);
    match toml::de::DeTable::parse(text) {
        Ok(table) => {
            let span = index.span(file, table.span());
            let root = Node::new(toml_table(file, &index, table.get_ref()), span);
            Loaded { docs: vec![root] }
        }
        Err(err) => {
            let span = err.span().map(|r| index.span(file, r));
            let message = err.message().trim().to_string();
            diags.push(Diagnostic::error(
                "toml-syntax",
                span,
                format!("invalid TOML: {message}"),
            ));
            Loaded { docs: vec![] }
        }
    }
}

fn toml_table(file: usize, index: &LineIndex<'_>, table: &toml::de::DeTable<'_>) -> Value {
    let mut entries = Vec::new();
    for (k, v) in table.iter() {
        let key = Node::new(
            Value::Str(k.get_ref().as_ref().into()),
            index.span(file, k.span()),
        );
        let value = Node::new(
            toml_value(file, index, v.get_ref()),
            index.span(file, v.span()),
        );
        entries.push((key, value));
    }
    Value::Map(entries.into())
}

fn toml_value(file: usize, index: &LineIndex<'_>, v: &toml::de::DeValue<'_>) -> Value {
    use toml::de::DeValue;
    match v {
        DeValue::String(s) => Value::Str(Cow::as_ref(s).into()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            let digits = digits
                .trim_start_matches("0x")
                .trim_start_matches("0o")
                .trim_start_matches("0b");
            i64::from_str_radix(digits, i.radix())
                .map(Value::Int)
                .unwrap_or_else(|_| Value::Str(i.as_str().into()))
        }
        DeValue::Float(f) => f
            .as_str()
            .replace('_', "")
            .parse::<f64>()
            .map(Value::Float)
            .unwrap_or_else(|_| Value::Str(f.as_str().into())),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::Str(d.to_string().into()),
        DeValue::Array(items) => Value::Seq(
            items
                .iter()
                .map(|item| {
                    Node::new(
                        toml_value(file, index, item.get_ref()),
                        index.span(file, item.span()),
                    )
                })
                .collect(),
        ),
        DeValue::Table(t) => toml_table(file, index, t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> (Vec<Node>, Diagnostics) {
        let mut d = Diagnostics::default();
        let l = load_yaml(0, text, &mut d);
        (l.docs, d)
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        assert_eq!(resolve_plain("8080"), Value::Int(8080));
        assert_eq!(resolve_plain("-3"), Value::Int(-3));
        assert_eq!(resolve_plain("1.5"), Value::Float(1.5));
        assert_eq!(resolve_plain("1e3"), Value::Float(1000.0));
        assert_eq!(resolve_plain("true"), Value::Bool(true));
        assert_eq!(resolve_plain("yes"), Value::Str("yes".into()));
        assert_eq!(resolve_plain("30s"), Value::Str("30s".into()));
        assert_eq!(resolve_plain("1.2.3"), Value::Str("1.2.3".into()));
        assert_eq!(resolve_plain("~"), Value::Null);
    }

    #[test]
    fn a_tab_after_a_colon_separates_as_kubectl_reads_it() {
        let (docs, d) = yaml("spec:\n  mode:\tcontainer\n  port:\t\t8080\n  note: |\n    a:\tb\n");
        assert!(!d.has_errors(), "{d:?}");
        let spec = docs[0].get("spec").map(Node::to_json);
        assert_eq!(
            spec,
            Some(serde_json::json!({"mode": "container", "port": 8080, "note": "a:\tb\n"})),
            "the tab in the block scalar is kept"
        );
        // Quoted scalars keep theirs too, after non-ASCII text; many such keys stay linear.
        let (docs, d) = yaml("é: \"x:\ty\"\nk:\tv\nq: 'a:\tb'\n");
        assert!(!d.has_errors(), "{d:?}");
        assert_eq!(
            docs[0].to_json(),
            serde_json::json!({"é": "x:\ty", "k": "v", "q": "a:\tb"})
        );
        let many: String = (0..20_000).map(|i| format!("k{i}:\tv\n")).collect();
        let (docs, d) = yaml(&many);
        assert!(!d.has_errors());
        assert_eq!(docs[0].to_json().as_object().map(|m| m.len()), Some(20_000));
        // A tab that indents is an error at the tab, not at the line before it.
        let (_, d) = yaml("spec:\n  mode: container\n\timage: x\n");
        let e = &d.items[0];
        assert_eq!(e.span.map(|s| (s.line, s.col)), Some((3, 1)), "{e:?}");
        assert!(
            e.message.contains("a tab indents this line"),
            "{}",
            e.message
        );
    }

    #[test]
    fn positions_and_duplicates() {
        let (docs, d) = yaml("a: 1\nb:\n  c: x\n  c: y\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(d.error_count(), 1);
        let c = docs[0].get("b").and_then(|b| b.get("c")).map(|n| n.span);
        assert_eq!(c.map(|s| (s.line, s.col)), Some((3, 6)));
    }

    #[test]
    fn anchors_and_merge_keys() {
        let (docs, d) = yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n");
        assert!(!d.has_errors());
        let other = docs[0].get("other").map(Node::to_json);
        assert_eq!(other, Some(serde_json::json!({"y": 3, "x": 1})));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        let (_, d) = yaml(&text);
        assert!(d.items.iter().any(|x| x.code == "yaml-too-large"));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(1000);
        let (_, d) = yaml(&text);
        assert!(d.has_errors());
    }

    #[test]
    fn large_streams_parse_in_pieces_with_whole_file_positions() {
        let mut text = String::new();
        for i in 0..4000 {
            text.push_str(&format!("---\nname: s{i}\nvalue: |\n  line\n  ---x\n"));
        }
        text.push_str("---\nlast: [1, 2\n");
        let (docs, d) = yaml(&text);
        assert_eq!(docs.len(), 4000);
        let last = docs.last().and_then(|n| n.get("name")).map(|n| n.span.line);
        assert_eq!(last, Some(4000 * 5 - 3));
        let err = d.items.first().and_then(|x| x.span).map(|s| s.line);
        assert!(err.is_some_and(|l| l >= 20001), "{d:?}");
    }

    /// Pieces parsed in parallel end at a `---` too: an empty block scalar at the end of one is
    /// where one pass puts it, and lines ended by a lone `\r` or `\r\n` count as one pass
    /// counts them.
    #[test]
    fn large_streams_agree_with_one_pass_on_line_breaks_and_empty_block_scalars() {
        let mut text = String::new();
        for i in 0..12000 {
            match i % 3 {
                0 => text.push_str(&format!("---\nname: s{i}\nnote: |\n")),
                1 => text.push_str(&format!("---\r\nname: s{i}\r\nnote: >-\r\n")),
                _ => text.push_str(&format!("---\nname: s{i}\rother: x\r\rnote: |\r")),
            }
        }
        text.push_str("---\nlast: 1\n");
        assert!(text.len() > PARALLEL_THRESHOLD);
        let (docs, d) = yaml(&text);
        let mut r = Diagnostics::default();
        let reference = load_yaml_reference(0, &text, &mut r);
        assert!(!d.has_errors() && !r.has_errors(), "{d:?} {r:?}");
        assert_eq!(docs.len(), 12001);
        assert_eq!(format!("{docs:?}"), format!("{:?}", reference.docs));
    }

    #[test]
    fn toml_positions() {
        let mut d = Diagnostics::default();
        let l = load_toml(0, "[[servers]]\nname = \"a\"\nport = 80\n", &mut d);
        assert!(!d.has_errors());
        let port = l.docs[0]
            .get("servers")
            .map(|s| s.lookup(&[0usize.into(), "port".into()]).0.span);
        assert_eq!(port.map(|s| (s.line, s.col)), Some((3, 8)));
    }
}
