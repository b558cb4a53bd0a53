//! `hangar render --watch PATH...`: renders once, then re-renders whenever a file under the
//! given paths changes and prints a header line and the diff against the last good render (or
//! the diagnostics, keeping that render as the base). Ends on Ctrl-C or at the end of stdin.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher as _};

use super::{CliError, InputArgs};
use crate::compile::{self, Object, SourceFile};

/// Events closer together than this are one change (an editor's write, rename and chmod).
const QUIET: Duration = Duration::from_millis(200);
/// A stream of events is cut into changes at least this often.
const MAX_BATCH: Duration = Duration::from_secs(2);

enum Msg {
    Fs(notify::Result<notify::Event>),
    Stop,
}

/// What is watched: a directory (recursively) or one file (through its directory, so that an
/// editor's replace-by-rename is seen).
enum Target {
    Dir(PathBuf),
    File(PathBuf),
}

pub fn run(args: &InputArgs, reveal: bool) -> Result<u8, CliError> {
    if args.paths.is_empty() {
        return Err(CliError::Usage(
            "--watch needs at least one PATH to watch".into(),
        ));
    }
    if args.paths.iter().any(|p| p.as_os_str() == "-") {
        return Err(CliError::Usage("--watch cannot read stdin (`-`)".into()));
    }
    // Git catalogs are fetched once; only local files are watched.
    let git = super::fetch_git_catalogs(args)?;
    let mut targets = Vec::new();
    for p in super::local_paths(args) {
        let canon = std::fs::canonicalize(&p).map_err(|e| {
            CliError::Read(crate::source::files::ReadError::Io {
                path: p.display().to_string(),
                source: e,
            })
        })?;
        targets.push(if canon.is_dir() {
            Target::Dir(canon)
        } else {
            Target::File(canon)
        });
    }

    let (tx, rx) = mpsc::channel::<Msg>();
    let fs_tx = tx.clone();
    let watch_err = |e: notify::Error| CliError::Usage(format!("cannot watch files: {e}"));
    let mut watcher = notify::recommended_watcher(move |res| {
        let _ = fs_tx.send(Msg::Fs(res));
    })
    .map_err(watch_err)?;
    for t in &targets {
        match t {
            Target::Dir(d) => watcher.watch(d, RecursiveMode::Recursive),
            Target::File(f) => watcher.watch(
                f.parent().unwrap_or(Path::new("/")),
                RecursiveMode::NonRecursive,
            ),
        }
        .map_err(watch_err)?;
    }
    // The end of stdin stops the loop (Ctrl-C ends the process as usual).
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        let _ = tx.send(Msg::Stop);
    });

    let mut base: Option<Vec<Object>> = None;
    match compile_now(args, &git) {
        Ok(objects) => {
            super::write_stdout(&crate::compile::to_yaml_stream(&objects, reveal))?;
            base = Some(objects);
        }
        Err(text) => eprint!("{text}"),
    }
    eprintln!(
        "watching {} path{} for changes (Ctrl-C or end of input stops)",
        targets.len(),
        super::plural(targets.len())
    );
    let cwd = std::env::current_dir()
        .and_then(std::fs::canonicalize)
        .unwrap_or_default();
    while let Some(changed) = next_change(&rx, &targets) {
        // Files name the change better than the directories they were made in.
        let files: Vec<&PathBuf> = changed.iter().filter(|p| !p.is_dir()).collect();
        let shown = if files.is_empty() {
            changed.iter().collect()
        } else {
            files
        };
        let names: Vec<String> = shown
            .iter()
            .map(|p| p.strip_prefix(&cwd).unwrap_or(p).display().to_string())
            .collect();
        let when = jiff::Zoned::now().strftime("%H:%M:%S").to_string();
        let what = crate::compile::diag::printable(&names.join(", "));
        match compile_now(args, &git) {
            Ok(objects) => {
                let out = match &base {
                    Some(before) => {
                        let (text, summary) = crate::diff::diff(before, &objects);
                        format!("=== {when} {what}: {summary}\n{text}")
                    }
                    None => format!(
                        "=== {when} {what}: rendered {} objects\n{}",
                        objects.len(),
                        crate::compile::to_yaml_stream(&objects, reveal)
                    ),
                };
                super::write_stdout(&out)?;
                base = Some(objects);
            }
            Err(text) => {
                eprint!("{text}");
                eprintln!(
                    "=== {when} {what}: the inputs do not compile; {}",
                    if base.is_some() {
                        "the last good render stays the base of the next diff"
                    } else {
                        "nothing rendered yet"
                    }
                );
            }
        }
    }
    drop(watcher);
    Ok(0)
}

/// Reads and compiles the inputs: the objects, or the text to print to stderr.
fn compile_now(args: &InputArgs, git: &[Option<Vec<SourceFile>>]) -> Result<Vec<Object>, String> {
    let inputs = super::inputs_with(args, git).map_err(|e| format!("error: {e}\n"))?;
    let c = compile::compile(&inputs);
    let mut text = c.render_diagnostics();
    match c.bundle {
        Some(b) => {
            if !text.is_empty() {
                eprint!("{text}");
            }
            Ok(b.objects)
        }
        None => {
            let d = &c.diagnostics;
            text.push_str(&format!(
                "error: {} error{}, {} warning{}\n",
                d.error_count(),
                super::plural(d.error_count()),
                d.warning_count(),
                super::plural(d.warning_count())
            ));
            Err(text)
        }
    }
}

/// Waits for a change to a watched input; `None` when told to stop. Events are gathered until
/// they pause for [`QUIET`] (at most [`MAX_BATCH`]).
fn next_change(rx: &mpsc::Receiver<Msg>, targets: &[Target]) -> Option<BTreeSet<PathBuf>> {
    let mut changed = BTreeSet::new();
    let mut first: Option<Instant> = None;
    loop {
        let msg = match first {
            None => rx.recv().ok()?,
            Some(t) => {
                let left = MAX_BATCH.saturating_sub(t.elapsed()).min(QUIET);
                match rx.recv_timeout(left) {
                    Ok(m) => m,
                    Err(mpsc::RecvTimeoutError::Timeout) => return Some(changed),
                    Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                }
            }
        };
        match msg {
            Msg::Stop => return None,
            Msg::Fs(Err(e)) => eprintln!(
                "warning: file watch: {}",
                crate::compile::diag::printable(&e.to_string())
            ),
            Msg::Fs(Ok(ev)) => {
                if matches!(ev.kind, EventKind::Access(_)) {
                    continue;
                }
                for p in ev.paths.into_iter().filter(|p| relevant(p, targets)) {
                    changed.insert(p);
                    first.get_or_insert_with(Instant::now);
                }
            }
        }
    }
}

/// Whether a changed path is an input: a watched file, or under a watched directory a visible
/// `.yaml .yml .json .toml` file (or a directory there now) that its `.hangarignore` does not
/// leave out. Editors' scratch files (vim's `4913` and `.swp`, `file~`, emacs' `#file#`) are not.
fn relevant(p: &Path, targets: &[Target]) -> bool {
    targets.iter().any(|t| match t {
        Target::File(f) => p == f,
        Target::Dir(d) => p.strip_prefix(d).is_ok_and(|rel| {
            let hidden = rel
                .components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
            let is_dir = p.is_dir();
            let ext_ok = match p.extension().and_then(|e| e.to_str()) {
                // A name without an extension is an input only as a directory.
                None => is_dir,
                Some(e) => is_dir || crate::source::files::EXTENSIONS.contains(&e),
            };
            let ignored = || {
                crate::source::files::Ignore::of(d)
                    .map(|i| i.ignores(p, is_dir))
                    .unwrap_or(false)
            };
            !hidden && ext_ok && !ignored()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_scratch_files_and_ignored_ones_are_no_change() {
        let d = std::env::temp_dir().join(format!("hangar-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("teams")).expect("dir");
        std::fs::write(d.join(".hangarignore"), "values.yaml\n").expect("ignore file");
        let targets = [Target::Dir(d.clone())];
        for input in ["catalog.yaml", "teams/a.toml", "teams", "gone.json"] {
            assert!(relevant(&d.join(input), &targets), "{input}");
        }
        for scratch in [
            "4913",
            ".catalog.yaml.swp",
            "catalog.yaml~",
            "#catalog.yaml#",
            ".#catalog.yaml",
            "catalog.yaml.tmp",
            "values.yaml",
        ] {
            assert!(!relevant(&d.join(scratch), &targets), "{scratch}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
