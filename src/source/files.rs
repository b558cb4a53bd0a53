//! Reading PATH arguments: files, directories (recursively, in a stable order), or `-` for stdin.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::compile::SourceFile;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not valid UTF-8 text (is this a binary file?)")]
    NotUtf8 { path: String },
    #[error("{path}: no .yaml, .yml, .json or .toml files found in this directory")]
    EmptyDir { path: String },
    #[error("{path}: {message}")]
    Ignore { path: String, message: String },
    #[error(
        "{path}: larger than {max_mib} MiB, the most hangar reads from one file (is it a device or a generator? split a real catalog into files)"
    )]
    TooLarge { path: String, max_mib: u64 },
}

/// The file of a directory PATH (or a Git source's path) naming what hangar does not read, with
/// `.gitignore` syntax: `values.yaml`, `charts/`, `*.tmpl.yaml`, `!keep.yaml`.
pub const IGNORE_FILE: &str = ".hangarignore";

/// What a directory's `.hangarignore` leaves out (nothing when there is none).
pub struct Ignore(Option<ignore::gitignore::Gitignore>);

impl Ignore {
    /// Leaves nothing out.
    pub fn none() -> Self {
        Ignore(None)
    }

    /// Reads `DIR/.hangarignore`, if there is one; a malformed pattern is an error naming it.
    pub fn of(dir: &Path) -> Result<Self, ReadError> {
        let file = dir.join(IGNORE_FILE);
        if !file.is_file() {
            return Ok(Ignore(None));
        }
        let mut b = ignore::gitignore::GitignoreBuilder::new(dir);
        if let Some(e) = b.add(&file) {
            return Err(ReadError::Ignore {
                path: file.display().to_string(),
                message: e.to_string(),
            });
        }
        b.build()
            .map(|g| Ignore(Some(g)))
            .map_err(|e| ReadError::Ignore {
                path: file.display().to_string(),
                message: e.to_string(),
            })
    }

    /// The patterns of an ignore file's text, for paths relative to the directory it is in (a Git
    /// source's `git.path`); a malformed pattern is an error naming its line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut b = ignore::gitignore::GitignoreBuilder::new("");
        for (i, line) in text.lines().enumerate() {
            b.add_line(None, line)
                .map_err(|e| format!("line {}: {e}", i + 1))?;
        }
        b.build()
            .map(|g| Ignore(Some(g)))
            .map_err(|e| e.to_string())
    }

    /// Whether `path` (under the directory) or a directory above it is ignored.
    pub fn ignores(&self, path: &Path, is_dir: bool) -> bool {
        self.0
            .as_ref()
            .is_some_and(|g| g.matched_path_or_any_parents(path, is_dir).is_ignore())
    }
}

/// Extensions read from directories.
pub const EXTENSIONS: [&str; 4] = ["yaml", "yml", "json", "toml"];

fn wanted(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e))
}

fn hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n != "." && n != "..")
}

/// The most hangar reads from one file (or stdin): far above any manifest (the API server stores
/// an object of at most 1.5 MiB), and a stop for `/dev/zero` or a runaway generator.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

fn mib(n: u64) -> u64 {
    n >> 20
}

/// What a PATH stands for: its files, sorted, and a note for each entry the walk left out
/// (not a regular file, a broken link, a directory or file already reached through a link).
#[derive(Debug, Default)]
pub struct Expanded {
    pub files: Vec<PathBuf>,
    pub notes: Vec<String>,
}

/// Lists the files a PATH stands for. A directory is walked recursively, following links to
/// directories and files, each real directory and file once (two links to `.` end at once):
/// real paths are walked first and links after, so what is reached both ways is read under its
/// own name. FIFOs, sockets and devices found in a directory are skipped with a note (reading a
/// FIFO nobody writes would never end). A PATH that names a non-regular file itself (`<(cmd)`,
/// `/dev/stdin`) is read, up to [`MAX_FILE_BYTES`].
pub fn expand(path: &Path) -> Result<Expanded, ReadError> {
    let io = |p: &Path, e| ReadError::Io {
        path: p.display().to_string(),
        source: e,
    };
    let meta = std::fs::metadata(path).map_err(|e| io(path, e))?;
    if !meta.is_dir() {
        return Ok(Expanded {
            files: vec![path.to_path_buf()],
            notes: Vec::new(),
        });
    }
    let ignore = Ignore::of(path)?;
    let mut out = Expanded::default();
    let mut seen = std::collections::HashSet::new();
    let mut claim = |p: &Path, is_dir: bool, out: &mut Expanded| -> Result<bool, ReadError> {
        let real = std::fs::canonicalize(p).map_err(|e| io(p, e))?;
        if seen.insert(real.clone()) {
            return Ok(true);
        }
        out.notes.push(format!(
            "{}: skipped: the same {} as {} (reached again through a symlink)",
            p.display(),
            if is_dir { "directory" } else { "file" },
            real.display()
        ));
        Ok(false)
    };
    claim(path, true, &mut out)?;
    let mut stack = vec![path.to_path_buf()];
    let mut linked_dirs: std::collections::VecDeque<PathBuf> = Default::default();
    let mut linked_files: Vec<PathBuf> = Vec::new();
    loop {
        let dir = match stack.pop() {
            Some(d) => d,
            // Real directories done: the next linked one not reached already.
            None => match linked_dirs.pop_front() {
                Some(d) => {
                    if !claim(&d, true, &mut out)? {
                        continue;
                    }
                    d
                }
                None => break,
            },
        };
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let link = entry
                .file_type()
                .map_err(|e| io(&entry.path(), e))?
                .is_symlink();
            entries.push((entry.path(), link));
        }
        // Popped last first: the walk's order (and so which of two links wins) is the names'.
        entries.sort_by(|a, b| b.0.cmp(&a.0));
        for (p, link) in entries {
            if hidden(&p) {
                continue;
            }
            // Through links: what the entry really is.
            let Ok(target) = std::fs::metadata(&p) else {
                if wanted(&p) {
                    out.notes.push(format!(
                        "{}: skipped: a link to nothing (broken symlink)",
                        p.display()
                    ));
                }
                continue;
            };
            let is_dir = target.is_dir();
            if ignore.ignores(&p, is_dir) || !(is_dir || wanted(&p)) {
                continue;
            }
            if !(is_dir || target.is_file()) {
                out.notes.push(format!(
                    "{}: skipped: not a regular file (a FIFO, socket or device)",
                    p.display()
                ));
                continue;
            }
            match (is_dir, link) {
                (true, true) => linked_dirs.push_back(p),
                (true, false) => {
                    if claim(&p, true, &mut out)? {
                        stack.push(p);
                    }
                }
                (false, true) => linked_files.push(p),
                (false, false) => {
                    if claim(&p, false, &mut out)? {
                        out.files.push(p);
                    }
                }
            }
        }
    }
    linked_files.sort();
    for p in linked_files {
        if claim(&p, false, &mut out)? {
            out.files.push(p);
        }
    }
    if out.files.is_empty() {
        return Err(ReadError::EmptyDir {
            path: path.display().to_string(),
        });
    }
    out.files.sort();
    out.notes.sort();
    Ok(out)
}

/// Reads one file (or stdin for `-`), at most [`MAX_FILE_BYTES`] of it.
pub fn read(path: &Path) -> Result<SourceFile, ReadError> {
    let shown = path.display().to_string();
    let name = if shown == "-" {
        "<stdin>".to_string()
    } else {
        shown
    };
    let io = |e| ReadError::Io {
        path: name.clone(),
        source: e,
    };
    let mut bytes = Vec::new();
    let limit = MAX_FILE_BYTES + 1;
    if name == "<stdin>" {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(io)?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut bytes))
            .map_err(io)?;
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge {
            path: name,
            max_mib: mib(MAX_FILE_BYTES),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| ReadError::NotUtf8 { path: name.clone() })?;
    Ok(SourceFile::new(name, text))
}

/// Where `file`, found by the PATH argument `arg`, is the same from any working directory: its
/// path under a directory argument, or its name when the argument is the file itself, with `/`
/// between components (`hangar apply examples/` and `cd examples && hangar apply .` agree).
fn origin_under(arg: &Path, file: &Path) -> String {
    if arg.as_os_str() == "-" {
        return "<stdin>".into();
    }
    let rel = match file.strip_prefix(arg) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel,
        _ => file.file_name().map(Path::new).unwrap_or(file),
    };
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// What [`read_all`] read: the files, every read error (not just the first), and notes on what
/// directory walks left out.
#[derive(Debug, Default)]
pub struct ReadAll {
    pub files: Vec<SourceFile>,
    pub errors: Vec<ReadError>,
    pub notes: Vec<String>,
}

/// Reads every file of every PATH.
pub fn read_all(paths: &[PathBuf]) -> ReadAll {
    let mut all = ReadAll::default();
    for p in paths {
        let list = if p.as_os_str() == "-" {
            Ok(Expanded {
                files: vec![p.clone()],
                notes: Vec::new(),
            })
        } else {
            expand(p)
        };
        match list {
            Ok(list) => {
                all.notes.extend(list.notes);
                for f in list.files {
                    match read(&f) {
                        Ok(mut sf) => {
                            sf.origin = Some(origin_under(p, &f));
                            all.files.push(sf);
                        }
                        Err(e) => all.errors.push(e),
                    }
                }
            }
            Err(e) => all.errors.push(e),
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hangarignore_leaves_out_what_it_names() {
        let dir = std::env::temp_dir().join(format!("hangar-ignore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for f in [
            "a.yaml",
            "values.yaml",
            "charts/x/Chart.yaml",
            "sub/keep.yaml",
            "sub/b.tmpl.yaml",
        ] {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap_or(&dir)).expect("dir");
            std::fs::write(&p, "a: 1\n").expect("file");
        }
        std::fs::write(
            dir.join(IGNORE_FILE),
            "# not manifests\nvalues.yaml\ncharts/\n*.tmpl.yaml\n",
        )
        .expect("ignore file");
        let found: Vec<String> = expand(&dir)
            .expect("expand")
            .files
            .iter()
            .filter_map(|p| p.strip_prefix(&dir).ok().map(|p| p.display().to_string()))
            .collect();
        assert_eq!(found, ["a.yaml", "sub/keep.yaml"]);
        std::fs::write(dir.join(IGNORE_FILE), "[z-a].yaml\n").expect("bad ignore file");
        let err = expand(&dir)
            .map(|_| ())
            .expect_err("a malformed pattern is an error");
        assert!(err.to_string().contains(IGNORE_FILE), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
