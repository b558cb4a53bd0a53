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

/// Lists the files a PATH stands for, sorted.
pub fn expand(path: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let meta = std::fs::metadata(path).map_err(|e| ReadError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let ignore = Ignore::of(path)?;
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| ReadError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| ReadError::Io {
                path: dir.display().to_string(),
                source: e,
            })?;
            let p = entry.path();
            if hidden(&p) {
                continue;
            }
            let ft = entry.file_type().map_err(|e| ReadError::Io {
                path: p.display().to_string(),
                source: e,
            })?;
            let is_dir = ft.is_dir() || (ft.is_symlink() && p.is_dir());
            if ignore.ignores(&p, is_dir) {
                continue;
            }
            if is_dir {
                stack.push(p);
            } else if wanted(&p) {
                out.push(p);
            }
        }
    }
    if out.is_empty() {
        return Err(ReadError::EmptyDir {
            path: path.display().to_string(),
        });
    }
    out.sort();
    Ok(out)
}

/// Reads one file (or stdin for `-`).
pub fn read(path: &Path) -> Result<SourceFile, ReadError> {
    let shown = path.display().to_string();
    let bytes = if shown == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| ReadError::Io {
                path: "<stdin>".into(),
                source: e,
            })?;
        buf
    } else {
        std::fs::read(path).map_err(|e| ReadError::Io {
            path: shown.clone(),
            source: e,
        })?
    };
    let text = String::from_utf8(bytes).map_err(|_| ReadError::NotUtf8 {
        path: shown.clone(),
    })?;
    let name = if shown == "-" {
        "<stdin>".to_string()
    } else {
        shown
    };
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

/// Reads every file of every PATH; all read errors are returned, not just the first.
pub fn read_all(paths: &[PathBuf]) -> (Vec<SourceFile>, Vec<ReadError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let list = if p.as_os_str() == "-" {
            Ok(vec![p.clone()])
        } else {
            expand(p)
        };
        match list {
            Ok(list) => {
                for f in list {
                    match read(&f) {
                        Ok(mut sf) => {
                            sf.origin = Some(origin_under(p, &f));
                            files.push(sf);
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    (files, errors)
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
