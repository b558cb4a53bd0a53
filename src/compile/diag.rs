//! Compiler diagnostics: `path:line:col: error: message`, a source snippet, a hint, and notes that
//! point at other locations (for example the first of two conflicting definitions).

use std::borrow::Cow;
use std::fmt::Write as _;

/// One input text. Nested texts (a catalog inside a ConfigMap's data) carry the offsets that map
/// their positions back into the enclosing file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Path as shown in diagnostics.
    pub path: String,
    pub text: String,
    /// Lines before this text in the enclosing file (0 for a real file).
    pub line_offset: u32,
    /// Columns before each line of this text in the enclosing file (the block scalar's indent).
    pub col_offset: u32,
    /// Short description of where this text sits in the enclosing file, e.g. `data."providers.yaml"`.
    pub context: Option<String>,
    /// Where the file is, the same from any working directory (the path under the PATH argument
    /// it was found by), for the `mcp-hangar.io/source` provenance; `None`: the path itself.
    pub origin: Option<String>,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            path: path.into(),
            text: text.into(),
            line_offset: 0,
            col_offset: 0,
            context: None,
            origin: None,
        }
    }

    /// Where the file is, for provenance: stable across working directories.
    pub fn origin(&self) -> &str {
        self.origin.as_deref().unwrap_or(&self.path)
    }
}

/// A location: file index into the compiler's file table, 1-based line, 1-based column (in
/// characters, within the file's own text), and length in characters for the underline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    /// Index into the file table (`u32`: a span is in every node, so it is kept small).
    pub file: u32,
    pub line: u32,
    pub col: u32,
    pub len: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable short code, e.g. `unknown-field`, used by tests and `-o json`.
    pub code: &'static str,
    pub message: String,
    pub span: Option<Span>,
    pub hint: Option<String>,
    pub notes: Vec<(Option<Span>, String)>,
}

impl Diagnostic {
    pub fn error(code: &'static str, span: Option<Span>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span,
            hint: None,
            notes: vec![],
        }
    }

    pub fn warning(code: &'static str, span: Option<Span>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            code,
            message: message.into(),
            span,
            hint: None,
            notes: vec![],
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn note(mut self, span: Option<Span>, note: impl Into<String>) -> Self {
        self.notes.push((span, note.into()));
        self
    }
}

/// Every diagnostic of a run, errors and warnings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn warning_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }

    /// Orders by file, position, severity: the order a reader expects.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            let ka = a.span.map(|s| (s.file, s.line, s.col));
            let kb = b.span.map(|s| (s.file, s.line, s.col));
            ka.cmp(&kb)
                .then(a.severity.cmp(&b.severity))
                .then(a.message.cmp(&b.message))
        });
        self.items.dedup();
    }

    /// Renders the diagnostics with snippets: the first [`MAX_RENDERED`], then a count of the
    /// rest (`-o json` lists them all). Linear in what it prints: each file's lines are split
    /// once, not once per diagnostic.
    pub fn render(&self, files: &[SourceFile]) -> String {
        let mut out = String::new();
        let mut lines: std::collections::HashMap<u32, Vec<Cow<'_, str>>> = Default::default();
        for d in self.items.iter().take(MAX_RENDERED) {
            render_one(&mut out, d, files, &mut lines);
        }
        let rest = &self.items[self.items.len().min(MAX_RENDERED)..];
        if !rest.is_empty() {
            let errors = rest
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            let _ = writeln!(
                out,
                "... and {errors} more error{}, {} more warning{} not shown (`hangar check -o json` lists them all)",
                if errors == 1 { "" } else { "s" },
                rest.len() - errors,
                if rest.len() - errors == 1 { "" } else { "s" }
            );
        }
        out
    }
}

/// `path:line:col` of a span, mapped into the enclosing file.
pub fn location(span: &Span, files: &[SourceFile]) -> String {
    match files.get(span.file as usize) {
        Some(f) => {
            let line = span.line + f.line_offset;
            let col = span.col + f.col_offset;
            format!("{}:{}:{}", f.path, line, col)
        }
        None => "<unknown>".to_string(),
    }
}

/// Diagnostics [`Diagnostics::render`] prints in full; the rest are counted.
pub const MAX_RENDERED: usize = 200;
/// Characters of a message (or a hint, a note) printed; a 200 MB value is not.
const MAX_MESSAGE: usize = 1000;
/// Characters of a source line shown in a snippet (a window around the column).
const MAX_LINE: usize = 200;

/// Text as it may reach a terminal: control characters (ESC, BEL, ... which could set a title
/// or the clipboard) escaped as `\u{1b}`, and cut after `max` characters.
pub fn terminal_safe(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, (at, c)) in text.char_indices().enumerate() {
        if n == max {
            let _ = write!(out, "... ({} more bytes)", text.len() - at);
            break;
        }
        if c.is_control() && c != '\n' {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// A line hangar prints outside diagnostics (an error, a note, a header): credentials in URLs
/// masked, control characters escaped, cut after 4000 characters.
pub fn printable(text: &str) -> String {
    masked_safe(text, 4000)
}

/// [`terminal_safe`] of `text` with its credentials masked first (a cut must not leave half a
/// password unmasked).
pub fn masked_safe(text: &str, max: usize) -> String {
    terminal_safe(&mask_passwords(text), max)
}

fn render_one<'a>(
    out: &mut String,
    d: &Diagnostic,
    files: &'a [SourceFile],
    lines: &mut std::collections::HashMap<u32, Vec<Cow<'a, str>>>,
) {
    let shown = |t: &str| masked_safe(t, MAX_MESSAGE);
    let message = shown(&d.message);
    match &d.span {
        Some(span) => {
            let _ = writeln!(
                out,
                "{}: {}: {message}",
                shown(&location(span, files)),
                d.severity.as_str(),
            );
            snippet(out, span, files, lines);
        }
        None => {
            let _ = writeln!(out, "{}: {message}", d.severity.as_str());
        }
    }
    if let Some(hint) = &d.hint {
        let _ = writeln!(out, "  = hint: {}", shown(hint));
    }
    for (span, note) in &d.notes {
        match span {
            Some(span) => {
                let _ = writeln!(
                    out,
                    "  = note: {}: {}",
                    shown(&location(span, files)),
                    shown(note)
                );
            }
            None => {
                let _ = writeln!(out, "  = note: {}", shown(note));
            }
        }
    }
}

fn snippet<'a>(
    out: &mut String,
    span: &Span,
    files: &'a [SourceFile],
    lines: &mut std::collections::HashMap<u32, Vec<Cow<'a, str>>>,
) {
    let Some(file) = files.get(span.file as usize) else {
        return;
    };
    let table = lines
        .entry(span.file)
        .or_insert_with(|| shown_lines(&file.text));
    let Some(text) = table.get(span.line.saturating_sub(1) as usize) else {
        return;
    };
    let shown_line = span.line + file.line_offset;
    let gutter = shown_line.to_string().len();
    let pad = " ".repeat(gutter);
    let indent = " ".repeat(file.col_offset as usize);
    let text: String = mask_passwords(text)
        .chars()
        // One column for one: the caret stays under its character.
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect();
    let mut col = span.col.saturating_sub(1) as usize;
    // A long line (a 200 MB value) is shown as a window around the column.
    let text: String = if text.chars().count() > MAX_LINE {
        let start = col.saturating_sub(MAX_LINE / 2);
        let window: String = text.chars().skip(start).take(MAX_LINE).collect();
        if start > 0 {
            col = col - start + 3;
            format!("...{window}...")
        } else {
            format!("{window}...")
        }
    } else {
        text
    };
    let _ = writeln!(out, "{pad} |");
    let _ = writeln!(out, "{shown_line} | {indent}{}", text.trim_end());
    let line_len = text.chars().count();
    let col = col.min(line_len);
    let len = (span.len as usize).clamp(1, line_len.saturating_sub(col).max(1));
    let _ = writeln!(
        out,
        "{pad} | {indent}{}{}",
        " ".repeat(col),
        "^".repeat(len)
    );
}

/// The lines of a file as snippets show them: the lines of a document that declares
/// `kind: Secret` with every value masked (a syntax error in a Secret must not print its
/// values; the file did not parse, so which lines are values is read off the text).
fn shown_lines(text: &str) -> Vec<Cow<'_, str>> {
    let lines: Vec<&str> = source_lines(text).collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut start = 0;
    while start < lines.len() {
        let end = lines[start + 1..]
            .iter()
            .position(|l| is_document_start(l))
            .map_or(lines.len(), |p| start + 1 + p);
        let doc = &lines[start..end];
        if doc.iter().any(|l| declares_secret(l)) {
            out.extend(doc.iter().map(|l| Cow::Owned(mask_values(l))));
        } else {
            out.extend(doc.iter().map(|l| Cow::Borrowed(*l)));
        }
        start = end;
    }
    out
}

fn is_document_start(line: &str) -> bool {
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t")
}

/// `kind: Secret` as YAML or JSON writes it (`"kind": "Secret"`, in a flow map too).
fn declares_secret(line: &str) -> bool {
    let mut rest = line;
    while let Some(i) = rest.find("kind") {
        let after = rest[i + 4..].trim_start_matches(['"', '\'']).trim_start();
        if let Some(v) = after.strip_prefix(':') {
            let v = v.trim_start().trim_start_matches(['"', '\'']);
            if v.starts_with("Secret")
                && !v[6..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                return true;
            }
        }
        rest = &rest[i + 4..];
    }
    false
}

/// A line of a Secret with what could be a value replaced by `*`s, column for column: a
/// `key:` (and `apiVersion:` and `kind:` lines whole) stays.
fn mask_values(line: &str) -> String {
    let trimmed = line.trim_start();
    if trimmed.starts_with("apiVersion:")
        || trimmed.starts_with("kind:")
        || trimmed.starts_with('#')
    {
        return line.to_string();
    }
    let keep = match line.find(": ") {
        Some(i) => i + 1,
        None if line.trim_end().ends_with(':') => line.len(),
        None => line.len() - trimmed.len(),
    };
    let mut out = String::with_capacity(line.len());
    out.push_str(&line[..keep]);
    out.extend(
        line[keep..]
            .chars()
            .map(|c| if c.is_whitespace() { c } else { '*' }),
    );
    out
}

/// The lines of a text (without their ends) as the YAML parser numbers them: a line ends at `\n`,
/// `\r\n` or a `\r` alone. Like [`str::lines`], no empty line follows the last line break.
pub fn source_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match rest.find(['\n', '\r']) {
            Some(i) if rest[i..].starts_with("\r\n") => (&rest[..i], &rest[i + 2..]),
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        rest = next;
        Some(line)
    })
}

/// `text` with every credential a URL can carry replaced by `*`s of the same length (so columns
/// stay where they were): the password of `scheme://user:password@`, the whole user of an
/// `http(s)://TOKEN@` (where a lone user is a token: `https://ghp_x@github.com`), and the password
/// of an scp-like `user:password@host:path`. Source lines and messages quoting a URL never show
/// a credential.
pub fn mask_passwords(text: &str) -> String {
    if !text.contains('@') {
        return text.to_string();
    }
    // Byte ranges to mask, found for every `://` on its own (a URL may follow another's
    // scheme-like text with no delimiter between them) and for every scp-like word.
    let mut masks: Vec<(usize, usize)> = Vec::new();
    for (i, _) in text.match_indices("://") {
        let scheme_start = text[..i]
            .char_indices()
            .rev()
            .take_while(|&(_, c)| c.is_ascii_alphanumeric() || "+-.".contains(c))
            .last()
            .map_or(i, |(p, _)| p);
        let scheme = text[scheme_start..i].to_ascii_lowercase();
        let start = i + 3;
        let tail = &text[start..];
        let end = tail
            .find(|c: char| ends_authority(c) || c == '?' || c == '#')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        let Some(at) = authority.rfind('@') else {
            continue;
        };
        match authority[..at].split_once(':') {
            Some((user, _)) => masks.push((start + user.len() + 1, start + at)),
            None if scheme.ends_with("http") || scheme.ends_with("https") => {
                masks.push((start, start + at));
            }
            None => {}
        }
    }
    let mut word_start = 0;
    for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
        if !(ends_authority(c) || c == ',') {
            continue;
        }
        if let Some((from, to)) = scp_password(&text[word_start..i]) {
            masks.push((word_start + from, word_start + to));
        }
        word_start = i + c.len_utf8();
    }
    if masks.is_empty() {
        return text.to_string();
    }
    masks.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut m = masks.iter().peekable();
    for (i, c) in text.char_indices() {
        while m.peek().is_some_and(|&&(_, to)| to <= i) {
            m.next();
        }
        let masked = m.peek().is_some_and(|&&(from, to)| from <= i && i < to);
        out.push(if masked { '*' } else { c });
    }
    out
}

/// Characters that end a URL's authority or an scp-like address in text: whitespace, control
/// characters, quotes, `/`, and brackets of markup.
fn ends_authority(c: char) -> bool {
    c.is_whitespace() || c.is_control() || "/\"'`<>\\".contains(c)
}

/// The byte range of the password in an scp-like Git address `user:password@host:path`;
/// `git@github.com:org/repo` has none.
fn scp_password(word: &str) -> Option<(usize, usize)> {
    let at = word.rfind('@')?;
    let (user, password) = word[..at].split_once(':')?;
    let (host, _) = word[at + 1..].split_once(':')?;
    if user.is_empty() || password.is_empty() || host.is_empty() {
        return None;
    }
    Some((user.len() + 1, at))
}

/// The closest candidate to `word` (edit distance, ignoring case), if it is close enough to be a
/// plausible typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lw = word.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let lc = c.to_lowercase();
        let d = if lc == lw { 0 } else { levenshtein(&lw, &lc) };
        let limit = (word.chars().count().max(3)) / 3 + 1;
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_credential_a_url_carries_is_masked_in_place() {
        for (text, want) in [
            (
                "url: https://bob:hunter2@git.example/r.git",
                "url: https://bob:*******@git.example/r.git",
            ),
            (
                "--catalog git+https://ghp_TOKEN@github.com/o/r.git#main",
                "--catalog git+https://*********@github.com/o/r.git#main",
            ),
            ("ssh://git@host/r.git", "ssh://git@host/r.git"),
            ("git@github.com:org/r.git", "git@github.com:org/r.git"),
            (
                "url: bob:s3cret@host.example:org/r.git then",
                "url: bob:******@host.example:org/r.git then",
            ),
            ("`bob:s3cret@h:p`", "`bob:******@h:p`"),
            ("key: value@x", "key: value@x"),
            ("mail bob@example.com: hi", "mail bob@example.com: hi"),
            // Found by the diag_render fuzz target: a multi-byte character before `://`.
            ("\u{fffd}://x", "\u{fffd}://x"),
            ("é:https://u:pw@h", "é:https://u:**@h"),
            // Also found by it: a URL right after another's scheme-like text.
            (
                "https://at\u{1}https://u:pw@h/x",
                "https://at\u{1}https://u:**@h/x",
            ),
            ("https://xhttps://u:pw@h", "https://xhttps://u:**@h"),
        ] {
            let got = mask_passwords(text);
            assert_eq!(got, want);
            assert_eq!(got.len(), text.len(), "columns stay");
        }
    }

    #[test]
    fn suggests_close_names() {
        assert_eq!(
            did_you_mean("idleTtl", ["idleTTL", "image"]),
            Some("idleTTL")
        );
        assert_eq!(did_you_mean("imgae", ["idleTTL", "image"]), Some("image"));
        assert_eq!(did_you_mean("zzzzzz", ["idleTTL", "image"]), None);
    }

    #[test]
    fn rendering_caps_counts_cuts_and_escapes() {
        // Issue 19.5 and 19.8: a bounded report, no raw control characters.
        let text = format!("name: \u{1b}]0;title\u{7}\nvalue: {}\n", "A".repeat(5000));
        let files = [SourceFile::new("f\u{1b}[31m.yaml", text)];
        let mut d = Diagnostics::default();
        for i in 0..(MAX_RENDERED + 5) {
            let line = if i % 2 == 0 { 1 } else { 2 };
            let span = Span {
                file: 0,
                line,
                col: 4000_u32.min(line * 3000),
                len: 1,
            };
            d.push(Diagnostic::error(
                "x",
                Some(span),
                format!("bad \u{7} {}", "v".repeat(3000)),
            ));
        }
        let shown = d.render(&files);
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
            "raw control characters"
        );
        assert!(shown.contains("\\u{1b}"), "escaped");
        assert!(shown.ends_with("... and 5 more errors, 0 more warnings not shown (`hangar check -o json` lists them all)\n"));
        assert!(
            shown.len() < MAX_RENDERED * 2 * (MAX_MESSAGE + MAX_LINE + 100),
            "{}",
            shown.len()
        );
        assert!(shown.lines().all(|l| l.chars().count() < MAX_MESSAGE + 100));
    }

    #[test]
    fn source_lines_end_where_the_yaml_parser_ends_them() {
        let lines: Vec<&str> = source_lines("a\r\rb\r\nc\nd").collect();
        assert_eq!(lines, ["a", "", "b", "c", "d"]);
        assert_eq!(source_lines("a\n\n").collect::<Vec<_>>(), ["a", ""]);
        assert_eq!(source_lines("").count(), 0);
        // An error after a lone `\r` shows its own line.
        let files = [SourceFile::new("f.yaml", "a: 1\r---\nb: c: d\n")];
        let mut d = Diagnostics::default();
        let _ = super::super::load::load_yaml(0, &files[0].text, &mut d);
        let shown = d.render(&files);
        assert!(shown.contains("3 | b: c: d"), "{shown}");
    }
}
