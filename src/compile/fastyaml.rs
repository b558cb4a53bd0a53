//! A fast path for the YAML nearly every manifest is written in: block mappings and sequences of
//! single-line scalars (plain, or quoted without escapes), comments, empty `[]` / `{}`.
//!
//! It builds exactly the nodes and positions the full parser (saphyr) would, and it gives up on
//! anything else (anchors, tags, block or multi-line scalars, flow collections with content, tabs,
//! duplicate or merge keys, odd indentation, anything malformed) by returning `None`: the loader
//! then parses that document with saphyr, which also writes the diagnostics. So this module never
//! reports an error and never decides what is valid; `tests::agrees_with_saphyr` and the
//! `load_differential` fuzz target hold it to that.

use super::diag::Span;
use super::node::{Node, Value, resolve_plain};

/// A non-blank, non-comment line.
#[derive(Clone, Copy)]
struct Line {
    /// Byte offset of the line's start in the document text.
    start: usize,
    /// Byte offset of the first character that counts (after the indentation, or after a `- `
    /// whose item is parsed in place).
    content: usize,
    /// Byte offset of the end of the line (its `\n`, or the end of the text).
    end: usize,
    /// Column of `content` (characters before it on the line).
    indent: usize,
    /// 1-based line number in the whole file.
    no: u32,
}

struct Doc<'a> {
    file: u32,
    text: &'a str,
    bytes: &'a [u8],
    lines: Vec<Line>,
    at: usize,
    ascii: bool,
    nodes: usize,
    /// Entries and items of the collections being read, innermost last: each collection is
    /// moved out into a list of exactly its size (growing each list by doubling wasted a third
    /// of the memory a document takes).
    entries: Vec<(Node, Node)>,
    items: Vec<Node>,
}

/// Bytes a plain scalar may not start with (`-`, `?` and `:` only when followed by a space).
fn plain_start_forbidden(b: u8) -> bool {
    matches!(
        b,
        b'&' | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b','
            | b'#'
            | b'%'
            | b'@'
            | b'`'
            | b'"'
            | b'\''
    )
}

/// Whether a plain scalar may start at `at`: not with an indicator, nor with `-`, `?` or `:`
/// followed by a space or the line's end (or, in a flow list, by `,` or `]`).
fn plain_can_start(b: &[u8], at: usize, flow: bool) -> bool {
    let Some(&first) = b.get(at) else {
        return false;
    };
    let ends = |c: Option<&u8>| match c {
        None | Some(b' ' | b'\n') => true,
        Some(b',' | b']') => flow,
        _ => false,
    };
    !(plain_start_forbidden(first) || matches!(first, b'-' | b'?' | b':') && ends(b.get(at + 1)))
}

/// A YAML document (the text from one `---` line to the next, or a whole file without them) as
/// one node, `Some(None)` for a document with no content, or `None` when the full parser must
/// read it. `line_offset` is the number of lines before `text` in its file; `nodes` counts the
/// nodes built, as the full parser's builder does.
pub fn parse_doc(
    file: usize,
    text: &str,
    line_offset: u32,
    max_depth: usize,
    nodes: &mut usize,
) -> Option<Option<Node>> {
    let mut d = Doc {
        file: file as u32,
        text,
        bytes: text.as_bytes(),
        lines: Vec::with_capacity(text.len() / 16),
        at: 0,
        ascii: text.is_ascii(),
        nodes: 0,
        entries: Vec::new(),
        items: Vec::new(),
    };
    if !d.ascii && !text.chars().all(printable) {
        return None;
    }
    d.scan_lines(line_offset)?;
    if d.lines.is_empty() {
        return Some(None);
    }
    let first = d.lines[0];
    let root = d.block(first.indent, 0, max_depth)?;
    if d.at != d.lines.len() {
        return None;
    }
    *nodes += d.nodes;
    Some(Some(root))
}

/// What YAML may hold outside quotes without escaping, minus the characters it treats as line
/// breaks or a byte-order mark (left to the full parser).
fn printable(c: char) -> bool {
    matches!(c, '\n' | ' '..='~')
        || matches!(c, '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
            && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

impl<'a> Doc<'a> {
    /// Splits the text into the lines that hold content; gives up on tabs, control characters,
    /// carriage returns, directives and document end markers. A leading `---` line is the
    /// document's start marker.
    fn scan_lines(&mut self, line_offset: u32) -> Option<()> {
        let bytes = self.bytes;
        let mut start = 0usize;
        let mut no = line_offset;
        let mut first = true;
        while start < bytes.len() {
            no += 1;
            let end = memchr_nl(bytes, start);
            let line = &bytes[start..end];
            if line.iter().any(|&b| b < b' ' || b == 0x7f) {
                return None;
            }
            let indent = line.iter().take_while(|&&b| b == b' ').count();
            let rest = &line[indent..];
            let is_first = std::mem::replace(&mut first, false);
            if indent == 0 && (rest.starts_with(b"---") || rest.starts_with(b"...")) {
                // Only the start marker, alone or with a comment, is read here.
                let after = &rest[3..];
                let trimmed = trim_start(after);
                let alone = trimmed.is_empty()
                    || (trimmed.len() < after.len() && trimmed.first() == Some(&b'#'));
                if !(is_first && rest.starts_with(b"---") && alone) {
                    return None;
                }
            } else if indent == 0 && rest.first() == Some(&b'%') {
                return None;
            } else if !rest.is_empty() && rest[0] != b'#' {
                self.lines.push(Line {
                    start,
                    content: start + indent,
                    end,
                    indent,
                    no,
                });
            }
            start = end + 1;
        }
        Some(())
    }

    /// Column (in characters) of a byte offset on a line.
    fn col(&self, line: &Line, pos: usize) -> usize {
        if self.ascii {
            pos - line.start
        } else {
            self.text[line.start..pos].chars().count()
        }
    }

    fn span(&self, line: &Line, from: usize, to: usize) -> Span {
        let len = if self.ascii {
            to - from
        } else {
            self.text[from..to].chars().count()
        };
        Span {
            file: self.file,
            line: line.no,
            col: self.col(line, from) as u32 + 1,
            len: len.max(1) as u32,
        }
    }

    fn node(&mut self, value: Value, span: Span) -> Node {
        self.nodes += 1;
        Node::new(value, span)
    }

    /// The block node whose first line is the current one, at column `indent`.
    fn block(&mut self, indent: usize, depth: usize, max_depth: usize) -> Option<Node> {
        if depth >= max_depth {
            return None;
        }
        let line = *self.lines.get(self.at)?;
        if line.indent != indent {
            return None;
        }
        if is_dash(self.bytes, line.content, line.end) {
            self.seq(indent, false, depth, max_depth)
        } else {
            self.map(indent, depth, max_depth)
        }
    }

    /// A block sequence of `- ` items at column `indent`; `indentless` for one at its parent key's
    /// own column (the full parser then places it at its first item rather than at the dash).
    fn seq(
        &mut self,
        indent: usize,
        indentless: bool,
        depth: usize,
        max_depth: usize,
    ) -> Option<Node> {
        let base = self.items.len();
        let mut span = None;
        while let Some(&line) = self.lines.get(self.at) {
            if line.indent != indent || !is_dash(self.bytes, line.content, line.end) {
                break;
            }
            let after = line.content + 1;
            let item = after + count_spaces(&self.bytes[after..line.end]);
            if item >= line.end || self.bytes[item] == b'#' {
                // `-` alone on its line: the item is on the lines below.
                return None;
            }
            if span.is_none() {
                let at = if indentless { item } else { line.content };
                let mut s = self.span(&line, at, at);
                s.len = 1;
                span = Some(s);
            }
            if is_dash(self.bytes, item, line.end) {
                return None;
            }
            let item_col = self.col(&line, item);
            if depth + 1 >= max_depth {
                return None;
            }
            let node = if key_end(self.bytes, item, line.end).is_some() {
                // `- key: value`: a mapping whose column is that of its first key.
                let l = &mut self.lines[self.at];
                l.content = item;
                l.indent = item_col;
                self.map(item_col, depth + 1, max_depth)?
            } else {
                let n = self.inline(&line, item, depth + 1, max_depth)?;
                self.at += 1;
                if self.lines.get(self.at).is_some_and(|l| l.indent > indent) {
                    return None;
                }
                n
            };
            self.items.push(node);
        }
        if self.lines.get(self.at).is_some_and(|l| l.indent > indent) {
            return None;
        }
        let span = span?;
        let items = self.items.drain(base..).collect();
        Some(self.node(Value::Seq(items), span))
    }

    /// A block mapping whose keys are at column `indent`.
    fn map(&mut self, indent: usize, depth: usize, max_depth: usize) -> Option<Node> {
        let base = self.entries.len();
        let first = *self.lines.get(self.at)?;
        let mut span = self.span(&first, first.content, first.content);
        span.len = 1;
        while let Some(&line) = self.lines.get(self.at) {
            if line.indent != indent {
                break;
            }
            let (key, colon) = self.key(&line)?;
            if self.entries[base..]
                .iter()
                .any(|(k, _)| k.key_text() == key.key_text())
            {
                return None;
            }
            let after = colon + 1;
            let value_at = after + count_spaces(&self.bytes[after..line.end]);
            let value = if value_at >= line.end || self.bytes[value_at] == b'#' {
                self.at += 1;
                match self.lines.get(self.at).copied() {
                    Some(next) if next.indent > indent => {
                        self.block(next.indent, depth + 1, max_depth)?
                    }
                    Some(next)
                        if next.indent == indent && is_dash(self.bytes, next.content, next.end) =>
                    {
                        if depth + 1 >= max_depth {
                            return None;
                        }
                        self.seq(indent, true, depth + 1, max_depth)?
                    }
                    _ => {
                        let mut s = self.span(&line, colon, colon);
                        s.len = 1;
                        self.node(Value::Null, s)
                    }
                }
            } else {
                let n = self.inline(&line, value_at, depth + 1, max_depth)?;
                self.at += 1;
                if self.lines.get(self.at).is_some_and(|l| l.indent > indent) {
                    return None;
                }
                n
            };
            self.entries.push((key, value));
        }
        if self.lines.get(self.at).is_some_and(|l| l.indent > indent) {
            return None;
        }
        let entries = self.entries.drain(base..).collect();
        Some(self.node(Value::Map(entries), span))
    }

    /// The key at the line's content, and the offset of its `:`.
    fn key(&mut self, line: &Line) -> Option<(Node, usize)> {
        let b = self.bytes;
        let at = line.content;
        let (value, end) = match b[at] {
            b'"' | b'\'' => {
                let (v, end) = self.quoted(at, line.end)?;
                (Value::Str(v.into()), end)
            }
            _ => {
                let colon = key_end(b, at, line.end)?;
                (resolve_plain(&self.text[at..colon]), colon)
            }
        };
        // The key ends right at its `:`, which a space or the line's end follows.
        if b.get(end) != Some(&b':') || !matches!(b.get(end + 1), None | Some(b' ' | b'\n')) {
            return None;
        }
        if end + 1 > line.end {
            return None;
        }
        if matches!(&value, Value::Str(s) if &**s == "<<") {
            return None;
        }
        let span = self.span(line, at, end);
        Some((self.node(value, span), end))
    }

    /// A scalar, `[]`, `{}` or a one-line flow sequence of scalars, from `at` to the end of the
    /// line; `level` is its nesting level.
    fn inline(&mut self, line: &Line, at: usize, level: usize, max_level: usize) -> Option<Node> {
        let b = self.bytes;
        let end = line.end;
        match b[at] {
            b'"' | b'\'' => {
                let (v, close) = self.quoted(at, end)?;
                if !rest_is_comment(b, close, end) {
                    return None;
                }
                // The full parser ends a quoted scalar where the next token starts: past the
                // spaces after it, and past a comment to the end of the line.
                let mut stop = close + count_spaces(&b[close..end]);
                if stop < end {
                    stop = end;
                }
                let span = self.span(line, at, stop);
                Some(self.node(Value::Str(v.into()), span))
            }
            b'[' if b.get(at + 1) != Some(&b']') => {
                if level >= max_level {
                    return None;
                }
                self.flow_seq(line, at)
            }
            open @ (b'[' | b'{') => {
                let close = if open == b'[' { b']' } else { b'}' };
                if b.get(at + 1) != Some(&close) || !rest_is_comment(b, at + 2, end) {
                    return None;
                }
                let value = if open == b'[' {
                    Value::Seq(Box::default())
                } else {
                    Value::Map(Box::default())
                };
                let span = self.span(line, at, at + 1);
                Some(self.node(value, span))
            }
            _ => {
                if !plain_can_start(b, at, false) {
                    return None;
                }
                // A plain scalar ends at ` #` or the line's end; `: ` inside it would start a
                // mapping, which a value on a key's line can't.
                let mut stop = end;
                let mut i = at;
                while i < end {
                    match b[i] {
                        b':' if i + 1 == end || b[i + 1] == b' ' => return None,
                        b'#' if b[i - 1] == b' ' => {
                            stop = i;
                            break;
                        }
                        _ => {}
                    }
                    i += 1;
                }
                let mut last = stop;
                while last > at && b[last - 1] == b' ' {
                    last -= 1;
                }
                let value = resolve_plain(&self.text[at..last]);
                let span = self.span(line, at, last);
                Some(self.node(value, span))
            }
        }
    }

    /// `[a, "b", 3]` on one line: scalars only, no empty items.
    fn flow_seq(&mut self, line: &Line, at: usize) -> Option<Node> {
        let b = self.bytes;
        let end = line.end;
        let mut i = at + 1 + count_spaces(&b[at + 1..end]);
        // The full parser's sequence start runs to its first item.
        let span = self.span(line, at, i);
        let base = self.items.len();
        loop {
            let first = *b.get(i).filter(|_| i < end)?;
            let (value, item_end, next) = match first {
                b'"' | b'\'' => {
                    let (v, close) = self.quoted(i, end)?;
                    let next = close + count_spaces(&b[close..end]);
                    (Value::Str(v.into()), next, next)
                }
                _ => {
                    if !plain_can_start(b, i, true) {
                        return None;
                    }
                    let mut j = i;
                    while j < end {
                        match b[j] {
                            b',' | b']' => break,
                            b'[' | b'{' | b'}' => return None,
                            b':' if matches!(
                                b.get(j + 1),
                                None | Some(b' ' | b',' | b']' | b'\n')
                            ) =>
                            {
                                return None;
                            }
                            b'#' if b[j - 1] == b' ' => return None,
                            _ => {}
                        }
                        j += 1;
                    }
                    let mut last = j;
                    while last > i && b[last - 1] == b' ' {
                        last -= 1;
                    }
                    (resolve_plain(&self.text[i..last]), last, j)
                }
            };
            let s = self.span(line, i, item_end);
            let n = self.node(value, s);
            self.items.push(n);
            match b.get(next).filter(|_| next < end) {
                Some(b',') => {
                    i = next + 1 + count_spaces(&b[next + 1..end]);
                    if matches!(b.get(i), Some(b']')) {
                        return None;
                    }
                }
                Some(b']') => {
                    if !rest_is_comment(b, next + 1, end) {
                        return None;
                    }
                    break;
                }
                _ => return None,
            }
        }
        let items = self.items.drain(base..).collect();
        Some(self.node(Value::Seq(items), span))
    }

    /// A quoted scalar starting at `at` and closed on the same line (double-quoted ones without
    /// escapes): its value and the offset just past the closing quote.
    fn quoted(&self, at: usize, end: usize) -> Option<(String, usize)> {
        let b = self.bytes;
        let quote = b[at];
        let mut i = at + 1;
        if quote == b'"' {
            while i < end {
                match b[i] {
                    b'\\' => return None,
                    b'"' => return Some((self.text[at + 1..i].to_string(), i + 1)),
                    _ => i += 1,
                }
            }
            return None;
        }
        let mut out = String::new();
        let mut from = i;
        while i < end {
            if b[i] == b'\'' {
                if b.get(i + 1) == Some(&b'\'') && i + 1 < end {
                    out.push_str(&self.text[from..=i]);
                    i += 2;
                    from = i;
                    continue;
                }
                out.push_str(&self.text[from..i]);
                return Some((out, i + 1));
            }
            i += 1;
        }
        None
    }
}

fn memchr_nl(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| from + p)
}

fn trim_start(b: &[u8]) -> &[u8] {
    &b[count_spaces(b)..]
}

fn count_spaces(b: &[u8]) -> usize {
    b.iter().take_while(|&&c| c == b' ').count()
}

/// `-` followed by a space or the line's end.
fn is_dash(b: &[u8], at: usize, end: usize) -> bool {
    b.get(at) == Some(&b'-') && (at + 1 == end || b.get(at + 1) == Some(&b' '))
}

/// Only spaces, then nothing or a comment, from `from` to `end` (a comment needs a space
/// before it).
fn rest_is_comment(b: &[u8], from: usize, end: usize) -> bool {
    let rest = &b[from..end];
    let trimmed = trim_start(rest);
    trimmed.is_empty() || (trimmed.len() < rest.len() && trimmed[0] == b'#')
}

/// Where a plain key starting at `at` ends: its `:`, followed by a space or the line's end.
/// `None` when the line holds no plain key (or one this module leaves to the full parser).
fn key_end(b: &[u8], at: usize, end: usize) -> Option<usize> {
    if !plain_can_start(b, at, false) {
        return None;
    }
    let mut i = at;
    while i < end {
        match b[i] {
            b':' if i + 1 == end || b[i + 1] == b' ' => {
                if i == at || b[i - 1] == b' ' {
                    return None;
                }
                return Some(i);
            }
            b'#' if i > at && b[i - 1] == b' ' => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::diag::Diagnostics;
    use super::super::load::{load_yaml, load_yaml_reference};

    /// The loader (fast path where it can) and the full parser alone: the same documents, with
    /// the same positions, and the same diagnostics.
    fn agree(text: &str) -> bool {
        let (mut a, mut b) = (Diagnostics::default(), Diagnostics::default());
        let fast = load_yaml(0, text, &mut a);
        let full = load_yaml_reference(0, text, &mut b);
        let same = format!("{:?}", fast.docs) == format!("{:?}", full.docs)
            && format!("{:?}", a.items) == format!("{:?}", b.items);
        if !same {
            eprintln!("--- input\n{text:?}");
            if std::env::var_os("FASTYAML_VERBOSE").is_some() {
                eprintln!(
                    "--- loader\n{:?}\n{:?}\n--- saphyr\n{:?}\n{:?}",
                    fast.docs, a.items, full.docs, b.items
                );
            }
        }
        same
    }

    fn fast_takes(text: &str) -> bool {
        let mut n = 0;
        super::parse_doc(0, text, 0, 96, &mut n).is_some()
    }

    const CASES: &[&str] = &[
        "a: 1\nb:\n  c: x y  # comment\n  d:\n  - p\n  - q: 1\n    r: \"s\"\n  e: []\n---\n- x\n-   y: 2\n",
        "a:\nb:\n- q: 1\n  r:\n- z\nc:\n    - k\nd: \n  - j\ne: x #c\nf: 'it''s'\ng: \"a\\\"b\"\nh: {}\ni: x:y\nj: -1\n\"k\": v\nl:\n  m:\n",
        "# leading comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x # trailing\n  labels:\n    a.b/c: \"true\"\n",
        "--- # marker comment\na: 1\n...\n",
        "a: 1\n  b: 2\n",
        "a: b: c\n",
        "a: [1, 2]\nb: {x: 1}\n",
        "a: &x 1\nb: *x\n",
        "a: |\n  text\n  more\nb: 2\n",
        "a: plain\n  continued\n",
        "a: 1\na: 2\n",
        "<<: {a: 1}\nb: 2\n",
        "a:\n\tb: 1\n",
        "a: 'unclosed\n  still'\n",
        "a: \"unclosed\n",
        "- - x\n- y\n",
        "-\n  a: 1\n",
        "key: value:\n",
        "key: -\n",
        "? complex\n: value\n",
        "a: 1\r\nb: 2\r\n",
        "descr: café — x: y\nnext: ünï\n",
        "descr: café # ünï\nnext: 'ü''x' # c\n\"ké\": 1\n",
        "a:\n  - b\n  - c: 1\n    d: 2\n  - e\nf: g\n",
        "items:\n- name: a\n  env:\n  - name: X\n    value: \"1\"\n  args: [\"--x\"]\n- name: b\n",
        "a: 1\n b: 2\n",
        "a:\n    b: 1\n  c: 2\n",
        "a:\n  b: 1\n c: 2\n",
        "80: http\n1.5: x\ntrue: y\nnull: z\n~: w\n",
        "a: !!str 1\n",
        "a: 0x1F\nb: 0o17\nc: 1e3\nd: .inf\ne: -.Inf\nf: .nan\ng: +1\nh: 007\ni: 1_000\n",
        "a: 'x' y\n",
        "a: \"x\"y\n",
        "a: [ ]\n",
        "a: []x\n",
        "a: x#y\nb: x #y\nc: #z\n",
        "%YAML 1.2\n---\na: 1\n",
        "a: 1\n---\n---\nb: 2\n--- \n",
        "just a scalar\n",
        "- a\n- b\n",
        "  a: 1\n  b: 2\n",
        "a:\n- b\n  - c\n",
        "a: 1 # x: y\n",
        "'a b': 1\n'c''d': 2\n",
        "a: ''\nb: \"\"\n",
        "a:   \nb:\n\n\n  c: 1\n",
        "a: -x\nb: ?y\nc: :z\n",
        "-x: 1\n?y: 2\n",
        "a: x,y]}\nb: x{y}[z]\n",
        "a: 'x' # c\nb: \"y\"   \n",
        "a: [tools]\nb: [ x , \"y\" ,z ]  # c\nc: [\"--port\", \"8080\", 80, true]\nd: [a b, c]\ne: [x,]\n",
        "- [q, \"r\"]\n- x\n- ['a', b]\n",
        "a: [x, [y]]\nb: [x: 1]\nc: [a #b]\n",
        "a: [x, {y: 1}]\n",
        "a: [ ]\nb: [,]\nc: [x\n  , y]\n",
        "a: [-x, ?y, :z, - q]\n",
        "a: [\"x\"  ]\nb: ['y',]\n",
        "a : 1\n",
        "a: `x`\nb: @y\nc: %z\n",
        "a: \u{85}x\n",
        "\u{feff}a: 1\n",
        "a:\n  # only a comment\nb: 1\n",
        "a: b\n# c\n  # d\nc: d\n",
        // Found by the fuzz target: a flow collection left open across `---`.
        "[{serv a\"\nspiVersion: v1\nkind: Secret\nmetadata: {nata: {k: v}\n---\n- 1\n-k: v}\n---\n- 1\n- [2, {a:  =",
    ];

    #[test]
    fn agrees_with_saphyr() {
        let mut bad = 0;
        for case in CASES {
            if !agree(case) {
                bad += 1;
            }
        }
        assert_eq!(bad, 0);
    }

    /// Found by the fuzz target: a lone carriage return is a line break to the full parser, so
    /// the documents after it start on a later line than counting `\n` alone says.
    #[test]
    fn agrees_with_saphyr_on_lone_carriage_returns() {
        let cases = [
            "\r\r\n--- b",
            "\r--- b\n---\nc: 1\n",
            "a: 1\r---\nb: [\n",
            "a: 1\rb: 2\n---\nc: 1\n",
            "a: 1\r\n---\r\nb: 2\r\n---\r\nc: [\r\n",
            "a: 1\r\rb: 2\r\n---\nc: 1\n--- x\n",
            "a: '\rx'\n---\nb: 1\n---\nc: {\n",
            "a: |\r  x\r---\nb: 1\n",
            "\r\n\r\n---\r\nb\r\n",
            "a: 1\n---\r\nb: 2\r---\nc: 3\n",
        ];
        let bad = cases.iter().filter(|c| !agree(c)).count();
        assert_eq!(bad, 0, "{bad} of {} disagree", cases.len());
    }

    /// Found by the fuzz target: an empty block scalar (`|` or `>`, any header) right before a
    /// `---` line.
    #[test]
    fn agrees_with_saphyr_on_an_empty_block_scalar_before_a_marker() {
        let mut cases = Vec::new();
        for header in ["|", ">", "|-", ">+", "|2", "| # c"] {
            for before in ["a: ", "- ", "a:\n  b: ", "--- ", ""] {
                for after in [
                    "---\nb: 1\n",
                    "---\n",
                    "---",
                    "--- x\n",
                    "\n---\nb: [\n",
                    "  \n---\nb: 1\n",
                    "---\r\nb: 1\r\n",
                ] {
                    cases.push(format!("{before}{header}\n{after}"));
                    cases.push(format!("x: 1\n---\n{before}{header}\n{after}---\nc: 1\n"));
                }
            }
        }
        let bad = cases.iter().filter(|c| !agree(c)).count();
        assert_eq!(bad, 0, "{bad} of {} disagree", cases.len());
    }

    /// Every YAML file of the repository, and variants of each with one line removed, indented,
    /// dedented or repeated, or ended by a lone `\r` or by `\r\n`, or with an empty block
    /// scalar before a `---` put in; and the whole file with lone `\r`s or `\r\n`s: the loader
    /// agrees with the full parser on all of them.
    #[test]
    fn agrees_with_saphyr_on_the_repository_and_its_mutations() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut texts = Vec::new();
        let mut stack: Vec<std::path::PathBuf> =
            ["fixtures", "examples", "fuzz/seeds", "deploy", "golden"]
                .iter()
                .map(|d| root.join(d))
                .collect();
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                if let Ok(rd) = std::fs::read_dir(&p) {
                    stack.extend(rd.flatten().map(|e| e.path()));
                }
            } else if let Ok(bytes) = std::fs::read(&p) {
                let name = p.to_string_lossy();
                let yamlish = name.ends_with(".yaml")
                    || name.ends_with(".yml")
                    || name.contains("fuzz/seeds");
                if yamlish && bytes.len() < 200_000 {
                    texts.push(String::from_utf8_lossy(&bytes).into_owned());
                }
            }
        }
        assert!(texts.len() > 40, "found {} files", texts.len());
        // FASTYAML_EXTRA=PATH checks one more file as it is (a generated benchmark input, say).
        if let Some(extra) = std::env::var_os("FASTYAML_EXTRA") {
            let text = std::fs::read_to_string(&extra).unwrap_or_default();
            assert!(!text.is_empty() && agree(&text), "{extra:?}");
        }
        let (mut checked, mut bad) = (0usize, 0usize);
        for text in &texts {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let mut variants = vec![
                text.clone(),
                text.replace('\n', "\r"),
                text.replace('\n', "\r\n"),
                text.replace("\n---", "\nx: |\n---"),
                text.replace("\n---", "\n- >-\n---"),
            ];
            // At most 40 lines per file are mutated (spread over the file).
            let step = (lines.len() / 40).max(1);
            let mutated = if text.len() < 20_000 { lines.len() } else { 0 };
            for i in (0..mutated).step_by(step) {
                let with = |f: &dyn Fn(&str) -> String| {
                    let mut v = String::new();
                    for (j, l) in lines.iter().enumerate() {
                        if j == i {
                            v.push_str(&f(l));
                        } else {
                            v.push_str(l);
                        }
                    }
                    v
                };
                variants.push(with(&|_| String::new()));
                variants.push(with(&|l| format!(" {l}")));
                variants.push(with(&|l| l.strip_prefix(' ').unwrap_or(l).to_string()));
                variants.push(with(&|l| format!("{l}{l}")));
                variants.push(with(&|l| l.replacen(": ", ":", 1)));
                variants.push(with(&|l| l.replacen("- ", "", 1)));
                variants.push(with(&|l| l.replacen('\n', "\r", 1)));
                variants.push(with(&|l| l.replacen('\n', "\r\n", 1)));
                variants.push(with(&|l| format!("{l}\r")));
                variants.push(with(&|l| format!("{l}x: |\n---\n")));
                variants.push(with(&|l| format!("{l}- >\n---\n")));
                variants.push(with(&|l| format!("{l}|\n---\n")));
            }
            for v in &variants {
                checked += 1;
                if !agree(v) {
                    bad += 1;
                }
            }
        }
        assert!(checked > 5000, "{checked}");
        assert_eq!(bad, 0, "{bad} of {checked} inputs disagree");
    }

    /// What manifests are made of goes the fast way (else it would silently cost the speed).
    #[test]
    fn typical_manifests_take_the_fast_path() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for f in [
            "examples/basic-server.yaml",
            "examples/production-server.yaml",
            "examples/ha-group.yaml",
        ] {
            let Ok(text) = std::fs::read_to_string(root.join(f)) else {
                continue;
            };
            for doc in text.split("\n---\n") {
                assert!(fast_takes(doc), "{f}: {doc}");
            }
        }
        assert!(fast_takes(CASES[0].split("---").next().unwrap_or("")));
        assert!(!fast_takes("a: &x 1\n"));
    }
}
