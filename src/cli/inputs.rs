//! Building the compiler's inputs from the command line: PATH arguments, `--catalog` (files,
//! directories, `git+URL`), the embedded examples, and `--fetch-git`.

use std::path::{Path, PathBuf};

use super::{CliError, InputArgs, plural};
use crate::compile::{self, FileRole, InputFile, Inputs, SourceFile};
use crate::source::{embedded, files, git};

/// One `--catalog` argument: `[SOURCE=]PATH` or `[SOURCE=]git+URL[#[REF][:PATH]]`.
enum CatalogArg {
    Local { bind: Option<String>, path: PathBuf },
    Git { bind: Option<String>, spec: String },
}

fn catalog_arg(c: &str) -> CatalogArg {
    // `SOURCE=PATH` binds to a source, unless the whole argument names an existing file; a
    // `git+` URL may hold `=` (in a query) and binds only when `SOURCE=` comes before `git+`.
    let (bind, rest) = match c.split_once('=') {
        Some((b, p)) if !b.is_empty() && !c.starts_with("git+") && !Path::new(c).exists() => {
            (Some(b.to_string()), p)
        }
        _ => (None, c),
    };
    if rest.starts_with("git+") {
        CatalogArg::Git {
            bind,
            spec: rest.to_string(),
        }
    } else {
        CatalogArg::Local {
            bind,
            path: PathBuf::from(rest),
        }
    }
}

/// The local paths the inputs are read from (PATH arguments and local `--catalog` paths).
pub fn local_paths(args: &InputArgs) -> Vec<PathBuf> {
    let mut out = args.paths.clone();
    for c in &args.catalogs {
        if let CatalogArg::Local { path, .. } = catalog_arg(c) {
            out.push(path);
        }
    }
    out
}

/// Credentials for `--catalog git+URL` from the environment, with the Secret's keys:
/// `HANGAR_GIT_TOKEN`, `HANGAR_GIT_USERNAME` + `HANGAR_GIT_PASSWORD`, `HANGAR_GIT_SSH_KEY` (a
/// file) + `HANGAR_GIT_SSH_PASSPHRASE`, `HANGAR_GIT_KNOWN_HOSTS` (a file).
fn git_auth_from_env() -> Result<git::GitAuth, CliError> {
    let mut data = std::collections::BTreeMap::new();
    for (var, key, file) in [
        ("HANGAR_GIT_TOKEN", "token", false),
        ("HANGAR_GIT_USERNAME", "username", false),
        ("HANGAR_GIT_PASSWORD", "password", false),
        ("HANGAR_GIT_SSH_KEY", "ssh-privatekey", true),
        ("HANGAR_GIT_SSH_PASSPHRASE", "passphrase", false),
        ("HANGAR_GIT_KNOWN_HOSTS", "known_hosts", true),
    ] {
        let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) else {
            continue;
        };
        let bytes = if file {
            std::fs::read(&v)
                .map_err(|e| CliError::Usage(format!("{var}: {}: {e}", Path::new(&v).display())))?
        } else {
            v.into_encoded_bytes()
        };
        data.insert(key.to_string(), bytes);
    }
    if data.is_empty() {
        return Ok(git::GitAuth::None);
    }
    git::auth_from_secret_data(&data).map_err(CliError::from)
}

/// Fetches the `--catalog git+...` arguments (in argument order; `None` for local ones).
pub fn fetch_git_catalogs(args: &InputArgs) -> Result<Vec<Option<Vec<SourceFile>>>, CliError> {
    let mut out = Vec::with_capacity(args.catalogs.len());
    let mut cache = None;
    for c in &args.catalogs {
        let CatalogArg::Git { spec, .. } = catalog_arg(c) else {
            out.push(None);
            continue;
        };
        let mut req = match git::parse_catalog_spec(&spec) {
            Some(r) => r?,
            None => return Err(CliError::Usage(format!("--catalog {spec}: not a git+ URL"))),
        };
        req.auth = git_auth_from_env()?;
        let cache =
            cache.get_or_insert_with(|| git::GitCache::new(git::default_cache_dir(), 2 << 30));
        let checkout = cache.fetch(&req)?;
        eprintln!(
            "note: {}: commit {} ({} file{})",
            crate::compile::diag::printable(&spec),
            checkout.commit,
            checkout.files.len(),
            plural(checkout.files.len())
        );
        out.push(Some(checkout.files));
    }
    Ok(out)
}

/// Builds compiler inputs from the arguments; read errors are all reported.
pub fn inputs(args: &InputArgs) -> Result<Inputs, CliError> {
    let git = fetch_git_catalogs(args)?;
    let mut inputs = inputs_with(args, &git)?;
    if args.fetch_git {
        fetch_git_sources(&mut inputs)?;
    }
    Ok(inputs)
}

/// `--fetch-git`: adds what each Git discovery source among the inputs reads, as the controller
/// reads it (catalog files bound to the source, resource files as they are).
fn fetch_git_sources(inputs: &mut Inputs) -> Result<(), CliError> {
    let first = compile::compile(inputs);
    let Some(bundle) = first.bundle.as_ref() else {
        return Ok(()); // the compilation that follows reports the errors
    };
    let mut cache = None;
    let mut added = Vec::new();
    for o in bundle
        .objects
        .iter()
        .filter(|o| o.kind == "MCPDiscoverySource")
    {
        let Ok(src) =
            serde_json::from_value::<crate::api::discovery::MCPDiscoverySource>(o.body.clone())
        else {
            continue;
        };
        let (crate::api::discovery::SourceType::Git, Some(g)) =
            (src.spec.type_, src.spec.git.as_ref())
        else {
            continue;
        };
        let req = git::GitRequest::from_source(g, git_auth_from_env()?);
        let cache =
            cache.get_or_insert_with(|| git::GitCache::new(git::default_cache_dir(), 2 << 30));
        let checkout = cache.fetch(&req)?;
        let bind = format!("{}/{}", o.namespace.clone().unwrap_or_default(), o.name);
        eprintln!(
            "note: discovery source {bind}: {} at commit {} ({} file{})",
            crate::compile::diag::printable(&g.url),
            checkout.commit,
            checkout.files.len(),
            plural(checkout.files.len())
        );
        added.extend(git::repo_inputs(checkout.files, &bind));
    }
    inputs.files.extend(added);
    Ok(())
}

/// What directory walks left out, on stderr (never silently).
pub fn print_notes(notes: &[String]) {
    for n in notes {
        eprintln!("note: {}", crate::compile::diag::printable(n));
    }
}

/// Builds compiler inputs, with the files of `git+` catalogs already fetched.
pub fn inputs_with(args: &InputArgs, git: &[Option<Vec<SourceFile>>]) -> Result<Inputs, CliError> {
    let mut errors = Vec::new();
    let mut input_files = Vec::new();
    // The bundled examples stand in only for no arguments at all: never mixed into a catalog.
    if args.paths.is_empty() && args.catalogs.is_empty() {
        eprintln!("note: no PATH given; rendering the examples bundled with hangar");
        for (path, text) in embedded::EXAMPLES {
            let mut file = SourceFile::new(*path, *text);
            // The provenance `hangar render examples/` gives: the path under the directory.
            file.origin = path.strip_prefix("examples/").map(str::to_string);
            input_files.push(InputFile {
                file,
                role: FileRole::Inputs,
            });
        }
    } else {
        let read = files::read_all(&args.paths);
        errors.extend(read.errors);
        print_notes(&read.notes);
        input_files.extend(read.files.into_iter().map(|file| InputFile {
            file,
            role: FileRole::Inputs,
        }));
    }
    for (i, c) in args.catalogs.iter().enumerate() {
        let (bind, read) = match catalog_arg(c) {
            CatalogArg::Local { bind, path } => {
                let read = files::read_all(&[path]);
                errors.extend(read.errors);
                print_notes(&read.notes);
                (bind, read.files)
            }
            CatalogArg::Git { bind, .. } => {
                (bind, git.get(i).cloned().flatten().unwrap_or_default())
            }
        };
        input_files.extend(read.into_iter().map(|file| InputFile {
            file,
            role: FileRole::Catalog { bind: bind.clone() },
        }));
    }
    let namespace = args.namespace.as_deref().unwrap_or("default");
    if let Err(e) = crate::compile::units::check_dns1123_label(namespace) {
        return Err(CliError::Usage(format!("--namespace: {e}")));
    }
    if let Some(last) = errors.pop() {
        for e in errors {
            eprintln!("error: {}", crate::compile::diag::printable(&e.to_string()));
        }
        return Err(last.into());
    }
    Ok(Inputs {
        files: input_files,
        default_namespace: namespace.to_string(),
    })
}
