//! The command line: thin glue between files, the compiler and output. Exit codes: 0 success,
//! 1 differences (diff), 2 errors in the input or the invocation.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value as Json, json};

use crate::apply::command::ApplyArgs;
use crate::compile::{self, Compilation, Inputs, Object, Role};
use crate::connect::Connect;
use crate::source::{files, git};

mod inputs;
mod watch;

pub use inputs::{fetch_git_catalogs, inputs, inputs_with, local_paths};

#[derive(Parser, Debug)]
#[command(name = "hangar", version, about = "Run MCP servers on Kubernetes declaratively", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    /// The gateway's route table: what `hangar gateway` with the same inputs serves and enforces.
    Routes,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum DiagFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct InputArgs {
    /// Files or directories (recursive: .yaml .yml .json, .toml catalogs); `-` reads stdin.
    /// Without PATH, the examples bundled in the binary are used.
    pub paths: Vec<PathBuf>,
    /// A catalog of server definitions, optionally bound to a discovery source: a file or
    /// directory, or a Git repository `git+URL[#[REF][:PATH]]` (REF: branch, tag or commit,
    /// default the remote HEAD; PATH: a directory or file in the repository).
    #[arg(long = "catalog", value_name = "[SOURCE=]PATH|git+URL[#[REF][:PATH]]")]
    pub catalogs: Vec<String>,
    /// Namespace for objects that name none [default: default]. With `gateway --cluster`: the
    /// namespaces watched, comma-separated (default: every namespace but the system ones).
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Fetch every `type: Git` MCPDiscoverySource among the inputs and compile what it reads,
    /// exactly as the controller does (GitOps preview). Credentials as for `--catalog git+`.
    #[arg(long)]
    pub fetch_git: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compile resources and catalogs into fully resolved Kubernetes objects.
    Render {
        #[command(flatten)]
        input: InputArgs,
        /// Output format (stdout).
        #[arg(short = 'o', long, value_enum, default_value = "yaml")]
        output: Format,
        /// Write one file per object under DIR instead of stdout.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Print Secret values passed through from the inputs (masked by default).
        #[arg(long)]
        reveal_secrets: bool,
        /// Render, then re-render on every change under the PATHs (and local --catalog paths)
        /// and print the diff against the last good render. Ends on Ctrl-C or end of stdin.
        #[arg(long, conflicts_with = "out_dir")]
        watch: bool,
    },
    /// Show what would change: the render of PATH against a previous render.
    Diff {
        #[command(flatten)]
        input: InputArgs,
        /// A previous render: a file or directory of YAML/JSON objects.
        #[arg(long, value_name = "PATH")]
        against: Option<PathBuf>,
        /// Compare with the live cluster (server-side dry-run).
        #[arg(long, conflicts_with = "against")]
        cluster: bool,
        #[command(flatten)]
        cluster_args: ClusterArgs,
    },
    /// Validate inputs; exit 0 when valid, 2 when not.
    Check {
        #[command(flatten)]
        input: InputArgs,
        /// Diagnostics format on stdout (`text` goes to stderr).
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: DiagFormat,
    },
    /// Convert peer operators' resources (vitorbari's `mcp.mcp-operator.io/v1` MCPServer) into
    /// hangar manifests: one file per input file, in order, each with a header naming its source.
    /// Writes nothing unless every input compiles; never overwrites a file. Exit 0, or 2.
    Import {
        #[command(flatten)]
        input: InputArgs,
        /// Write the files under DIR (their paths under their PATH argument) instead of stdout.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Server-side apply the render of PATH to the cluster of the current kubeconfig context.
    Apply {
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Only ask the API server what would change (server-side dry run); write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Delete objects of this inventory that are no longer rendered (only those that still
        /// carry hangar's inventory label).
        #[arg(long)]
        prune: bool,
        /// With --prune: let inputs that render no objects at all delete everything the inventory
        /// holds (refused otherwise: an empty input is far more often a mistake).
        #[arg(long, requires = "prune")]
        allow_empty: bool,
        /// Apply hangar's own CRDs first (staged: applied and established before the rest).
        #[arg(long)]
        install_crds: bool,
        /// Then wait until every applied MCPServer and MCPServerGroup is Ready (a server that
        /// asks for zero replicas: Cold), as the controller reports it; exit 1 naming those
        /// that are not within --timeout, with their reasons.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits (e.g. 90s, 5m).
        #[arg(long, value_name = "DURATION", default_value = "5m", requires = "wait")]
        timeout: String,
    },
    /// Check that a URL speaks MCP: transport, protocol version, server, capabilities, tools.
    /// Exit 0 compliant, 1 not (or requires auth, or unreachable), 2 usage error.
    Probe(crate::probe::command::ProbeArgs),
    /// Serve the MCP data plane: /servers/NAMESPACE/NAME/mcp and /groups/NAMESPACE/NAME/mcp
    /// proxied to their servers under their tool policy and rate limits, plus /healthz, /readyz
    /// and /metrics. From local manifests (re-read when they change), or with --cluster from the
    /// MCPServers, MCPServerGroups and EndpointSlices of the cluster.
    Gateway {
        #[command(flatten)]
        input: InputArgs,
        /// In-cluster mode: watch MCPServer, MCPServerGroup and EndpointSlices (in the namespaces
        /// of --namespace, else cluster-wide) instead of reading PATH; ready after the first sync.
        #[arg(long, conflicts_with_all = ["paths", "catalogs", "fetch_git"])]
        cluster: bool,
        /// Kubeconfig context of --cluster (default: the current one, or in-cluster config).
        #[arg(long, requires = "cluster")]
        context: Option<String>,
        #[command(flatten)]
        gateway: crate::gateway::GatewayArgs,
    },
    /// Run the reconciler against the cluster of the current kubeconfig context (or in-cluster).
    Controller(crate::controller::ControllerArgs),
    /// Print the CustomResourceDefinitions (or write them under DIR).
    Crds {
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Print the JSON Schemas for editors (or write them under DIR).
    Schema {
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// How `apply` and `diff --cluster` reach the cluster and own what they write.
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Kubeconfig context (default: the current context, or in-cluster config).
    #[arg(long)]
    pub context: Option<String>,
    /// Server-side apply field manager.
    #[arg(long, value_name = "NAME", default_value = crate::apply::FIELD_MANAGER)]
    pub field_manager: String,
    /// Take over fields another field manager owns (default: report the conflict).
    #[arg(long)]
    pub force_conflicts: bool,
    /// Inventory name: the label value on every applied object and the suffix of the
    /// `hangar-inventory-NAME` ConfigMap that records them for pruning. Default `default`;
    /// `--prune` needs it named, so that unrelated inputs never prune each other.
    #[arg(long, value_name = "NAME")]
    pub inventory: Option<String>,
    /// Namespace of the inventory ConfigMap.
    #[arg(long, value_name = "NS", default_value = "default")]
    pub inventory_namespace: String,
}

/// A usage or I/O failure (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Read(#[from] files::ReadError),
    #[error(transparent)]
    Git(#[from] git::GitError),
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Render {
            input,
            output,
            out_dir,
            reveal_secrets,
            watch,
        } => {
            if watch {
                if output != Format::Yaml {
                    Err(CliError::Usage("--watch prints YAML; drop -o json".into()))
                } else {
                    watch::run(&input, reveal_secrets)
                }
            } else {
                render(&input, output, out_dir.as_deref(), reveal_secrets)
            }
        }
        Command::Diff {
            input,
            against,
            cluster,
            cluster_args,
        } => diff(&input, against.as_deref(), cluster.then_some(&cluster_args)),
        Command::Apply {
            input,
            cluster,
            dry_run,
            prune,
            allow_empty,
            install_crds,
            wait,
            timeout,
        } => apply(
            &input,
            &cluster,
            ApplyFlags {
                dry_run,
                prune,
                allow_empty,
                install_crds,
                wait: wait.then_some(timeout),
            },
        ),
        Command::Controller(args) => {
            crate::controller::main(args).map_err(|e| CliError::Usage(e.to_string()))
        }
        Command::Probe(args) => Ok(crate::probe::command::run(args)),
        Command::Gateway {
            input,
            cluster: true,
            context,
            gateway,
        } => gateway_cluster(input, context, gateway),
        Command::Gateway { input, gateway, .. } => gateway_cmd(input, gateway),
        Command::Check { input, output } => check(&input, output),
        Command::Import { input, out_dir } => import(&input, out_dir.as_deref()),
        Command::Crds { out_dir } => crds(out_dir.as_deref()),
        Command::Schema { out_dir } => schema(out_dir.as_deref()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", crate::compile::diag::printable(&e.to_string()));
            ExitCode::from(2)
        }
    }
}

/// `hangar gateway`: compiles the inputs (refusing to start on errors), then serves their route
/// table, re-reading the inputs once a second and replacing the table when they changed and
/// still compile (a broken edit keeps the last good table, with its diagnostics on stderr).
fn gateway_cmd(input: InputArgs, gateway: crate::gateway::GatewayArgs) -> Result<u8, CliError> {
    use crate::gateway::routes::RouteTable;
    let first = inputs(&input)?;
    let c = compile_reporting(&first);
    if c.bundle.is_none() {
        return Ok(2);
    }
    let table = RouteTable::of(&c.decided);
    // Only local files are re-read: not the embedded examples (no PATH), not stdin (read once),
    // not Git (a fetch a second would hammer the remote).
    let local_only = !input.paths.is_empty()
        && !input.paths.iter().any(|p| p.as_os_str() == "-")
        && !input.fetch_git
        && !input.catalogs.iter().any(|c| c.contains("git+"));
    if !local_only {
        tracing::info!("inputs are not all local files: they are read once, not re-read");
    }
    let reload: Option<Box<dyn FnMut() -> Option<RouteTable> + Send>> = if !local_only {
        None
    } else {
        let mut last = fingerprint(&first);
        Some(Box::new(move || {
            let now = match inputs(&input) {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!(error = %e, "inputs unreadable; keeping the current routes");
                    return None;
                }
            };
            let f = fingerprint(&now);
            if f == last {
                return None;
            }
            last = f;
            let c = compile_reporting(&now);
            if c.bundle.is_none() {
                tracing::warn!("inputs do not compile; keeping the current routes");
                return None;
            }
            Some(RouteTable::of(&c.decided))
        }))
    };
    crate::gateway::main(gateway, crate::gateway::Source::Local { table, reload })
        .map_err(|e| CliError::Usage(e.to_string()))
}

/// `hangar gateway --cluster`: the route table from the cluster's resources.
fn gateway_cluster(
    input: InputArgs,
    context: Option<String>,
    gateway: crate::gateway::GatewayArgs,
) -> Result<u8, CliError> {
    let mut namespaces = Vec::new();
    for ns in input.namespace.iter().flat_map(|n| n.split(',')) {
        let ns = ns.trim();
        if ns.is_empty() {
            continue;
        }
        crate::compile::units::check_dns1123_label(ns)
            .map_err(|e| CliError::Usage(format!("--namespace {ns}: {e}")))?;
        namespaces.push(ns.to_string());
    }
    let source = crate::gateway::Source::Cluster {
        connect: crate::connect::Connect { context },
        scope: crate::source::scope::Scope::new(&namespaces),
    };
    crate::gateway::main(gateway, source).map_err(|e| CliError::Usage(e.to_string()))
}

/// A hash of the inputs' paths and texts: whether a re-read found anything new.
fn fingerprint(inputs: &Inputs) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in &inputs.files {
        h.update(f.file.path.as_bytes());
        h.update([0]);
        h.update(f.file.text.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// Compiles and prints the diagnostics to stderr (with a summary when it failed).
fn compile_reporting(inputs: &Inputs) -> Compilation {
    let c = compile::compile(inputs);
    report(&c.render_diagnostics(), &c.diagnostics, c.bundle.is_none());
    c
}

/// Prints rendered diagnostics to stderr, with a summary when nothing was rendered.
fn report(text: &str, d: &compile::Diagnostics, failed: bool) {
    if !text.is_empty() {
        eprint!("{text}");
    }
    if failed {
        eprintln!(
            "error: {} error{}, {} warning{}; nothing was rendered",
            d.error_count(),
            plural(d.error_count()),
            d.warning_count(),
            plural(d.warning_count())
        );
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The body of an object as printed: Secrets from the inputs are masked unless revealed.
fn render(
    args: &InputArgs,
    format: Format,
    out_dir: Option<&Path>,
    reveal: bool,
) -> Result<u8, CliError> {
    let inputs = inputs(args)?;
    if format == Format::Yaml && out_dir.is_none() {
        return render_yaml_stdout(&inputs, reveal);
    }
    let c = compile_reporting(&inputs);
    let Some(bundle) = c.bundle.as_ref() else {
        return Ok(2);
    };
    if format == Format::Routes {
        if out_dir.is_some() {
            return Err(CliError::Usage(
                "-o routes prints to stdout; drop --out-dir".into(),
            ));
        }
        write_stdout(&crate::gateway::routes::RouteTable::of(&c.decided).to_yaml())?;
        return Ok(0);
    }
    if bundle
        .objects
        .iter()
        .any(|o| o.kind == "Secret" && o.role == Role::Passthrough)
        && !reveal
    {
        eprintln!(
            "note: Secret values from the inputs are masked; pass --reveal-secrets to print them"
        );
    }
    if let Some(dir) = out_dir {
        write_out_dir(dir, &bundle.objects, format, reveal)?;
        eprintln!(
            "wrote {} objects to {}",
            bundle.objects.len(),
            dir.display()
        );
        return Ok(0);
    }
    let text = match format {
        Format::Yaml | Format::Routes => compile::to_yaml_stream(&bundle.objects, reveal),
        Format::Json => {
            let items: Vec<Json> = bundle
                .objects
                .iter()
                .map(|o| o.printable(reveal).into_owned())
                .collect();
            let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
            format!(
                "{}\n",
                serde_json::to_string_pretty(&list).unwrap_or_default()
            )
        }
    };
    write_stdout(&text)?;
    // Freeing tens of thousands of objects one by one costs more than the process exit does.
    std::mem::forget(c);
    Ok(0)
}

/// `hangar render` to stdout as YAML: printed without building the objects as JSON.
fn render_yaml_stdout(inputs: &Inputs, reveal: bool) -> Result<u8, CliError> {
    let c = compile::compile_yaml(inputs, reveal);
    report(&c.render_diagnostics(), &c.diagnostics, c.docs.is_none());
    let Some(docs) = c.docs.as_ref() else {
        return Ok(2);
    };
    if c.input_secrets && !reveal {
        eprintln!(
            "note: Secret values from the inputs are masked; pass --reveal-secrets to print them"
        );
    }
    let write = || -> std::io::Result<()> {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
        for (i, doc) in docs.iter().enumerate() {
            if i > 0 {
                out.write_all(b"---\n")?;
            }
            out.write_all(doc.as_bytes())?;
        }
        out.flush()
    };
    match write() {
        Ok(()) => {}
        // A closed pipe (`hangar render | head`) is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => {
            return Err(CliError::Write {
                path: "<stdout>".into(),
                source: e,
            });
        }
    }
    // Freeing tens of thousands of objects one by one costs more than the process exit does.
    std::mem::forget(c);
    Ok(0)
}

fn write_stdout(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`hangar render | head`) is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Write {
            path: "<stdout>".into(),
            source: e,
        }),
    }
}

/// Marker listing the files a render wrote into a directory, so that a later render may replace
/// them, and nothing else is ever touched.
const MARKER: &str = ".hangar-render";

/// `NS/KIND-NAME.EXT` (`_cluster/` for objects without a namespace); with `qualified`, the kind
/// carries its API group (`service.serving.knative.dev-NAME`, `service.core-NAME`), for objects
/// whose plain names would be one file.
fn object_file(o: &Object, format: Format, qualified: bool) -> String {
    let ext = if format == Format::Json {
        "json"
    } else {
        "yaml"
    };
    let ns = o.namespace.clone().unwrap_or_else(|| "_cluster".into());
    let kind = o.kind.to_lowercase();
    if qualified {
        let group = o.api_version.rsplit_once('/').map_or("core", |(g, _)| g);
        format!("{ns}/{kind}.{group}-{}.{ext}", o.name)
    } else {
        format!("{ns}/{kind}-{}.{ext}", o.name)
    }
}

/// Each object's file under an `--out-dir`: plain names, qualified by API group where two
/// objects' plain names are the same file. Two objects that are still one file are an error.
fn object_files(objects: &[Object], format: Format) -> Result<Vec<String>, CliError> {
    let mut count = std::collections::HashMap::new();
    for o in objects {
        *count.entry(object_file(o, format, false)).or_insert(0usize) += 1;
    }
    let names: Vec<String> = objects
        .iter()
        .map(|o| {
            let plain = object_file(o, format, false);
            if count.get(&plain).copied().unwrap_or(0) > 1 {
                object_file(o, format, true)
            } else {
                plain
            }
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for (n, o) in names.iter().zip(objects) {
        if !seen.insert(n) {
            return Err(CliError::Usage(format!(
                "two objects would be written to {n} ({} {}): the inputs define it twice",
                o.api_version, o.kind
            )));
        }
    }
    Ok(names)
}

/// Whether `rel` names a file a render writes: `NS/FILE.yaml|json`, two plain components, no
/// symbolic link on the way under `dir`. Anything else listed in a marker (an absolute path,
/// `..`, a hand-edited line) is never removed.
fn own_render_file(dir: &Path, rel: &str) -> bool {
    let p = Path::new(rel);
    let parts: Vec<_> = p.components().collect();
    let plain = parts.len() == 2
        && parts
            .iter()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
        && matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "json")
        );
    plain && !symlink_below(dir, p)
}

/// Whether a component of `rel` under `dir` is a symbolic link (writing or deleting through it
/// would reach outside `dir`).
fn symlink_below(dir: &Path, rel: &Path) -> bool {
    let mut at = dir.to_path_buf();
    rel.components().any(|c| {
        at.push(c);
        std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink())
    })
}

fn write_out_dir(
    dir: &Path,
    objects: &[Object],
    format: Format,
    reveal: bool,
) -> Result<(), CliError> {
    let werr = |p: &Path, e: std::io::Error| CliError::Write {
        path: p.display().to_string(),
        source: e,
    };
    let marker = dir.join(MARKER);
    let previous: Vec<String> = match std::fs::read_to_string(&marker) {
        Ok(t) => t.lines().map(str::to_string).collect(),
        Err(_) => {
            let non_empty = std::fs::read_dir(dir)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false);
            if non_empty {
                return Err(CliError::Usage(format!(
                    "{} is not empty and was not written by `hangar render`; refusing to write into it (choose an empty or new directory)",
                    dir.display()
                )));
            }
            Vec::new()
        }
    };
    std::fs::create_dir_all(dir).map_err(|e| werr(dir, e))?;
    let names = object_files(objects, format)?;
    let mut written = Vec::new();
    for (o, rel) in objects.iter().zip(names) {
        if symlink_below(dir, Path::new(&rel)) {
            return Err(CliError::Usage(format!(
                "{}: a symbolic link is on the way; refusing to write through it",
                dir.join(&rel).display()
            )));
        }
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| werr(parent, e))?;
        }
        let body = o.printable(reveal);
        let text = match format {
            Format::Yaml | Format::Routes => crate::diff::to_yaml(&body),
            Format::Json => format!(
                "{}\n",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            ),
        };
        let tmp = path.with_extension("tmp~");
        std::fs::write(&tmp, text).map_err(|e| werr(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| werr(&path, e))?;
        written.push(rel);
    }
    for old in previous
        .iter()
        .filter(|p| !written.contains(p) && own_render_file(dir, p))
    {
        let _ = std::fs::remove_file(dir.join(old));
    }
    std::fs::write(&marker, written.join("\n") + "\n").map_err(|e| werr(&marker, e))?;
    Ok(())
}

/// Reads a previous render (file or directory) as objects.
fn read_rendered(path: &Path) -> Result<Result<Vec<Object>, String>, CliError> {
    let files::ReadAll {
        files: files_read,
        mut errors,
        notes,
    } = files::read_all(&[path.to_path_buf()]);
    inputs::print_notes(&notes);
    if let Some(e) = errors.pop() {
        return Err(e.into());
    }
    let mut diags = compile::Diagnostics::default();
    let mut objects = Vec::new();
    for (i, f) in files_read.iter().enumerate() {
        for doc in compile::load::load_file(i, &f.path, &f.text, &mut diags).docs {
            let json = doc.to_json();
            let items = if json.get("kind").and_then(Json::as_str) == Some("List") {
                json.get("items")
                    .and_then(Json::as_array)
                    .cloned()
                    .unwrap_or_default()
            } else {
                vec![json]
            };
            for item in items {
                if item.get("kind").is_none() || item.pointer("/metadata/name").is_none() {
                    diags.push(compile::Diagnostic::error(
                        "not-an-object",
                        Some(doc.span),
                        "not a Kubernetes object (no kind or metadata.name)",
                    ));
                    continue;
                }
                objects.push(Object::new(item, Role::Passthrough, Some(doc.span)));
            }
        }
    }
    if diags.has_errors() {
        return Ok(Err(diags.render(&files_read)));
    }
    Ok(Ok(objects))
}

fn apply_args(c: &ClusterArgs, dry_run: bool, prune: bool) -> Result<ApplyArgs, CliError> {
    let inventory = c.inventory.clone().unwrap_or_else(|| "default".into());
    let label_ok = crate::compile::units::check_label_value(&inventory).and_then(|_| {
        crate::compile::units::check_dns1123_subdomain(&format!("hangar-inventory-{inventory}"))
    });
    if let Err(e) = label_ok {
        return Err(CliError::Usage(format!("--inventory {inventory:?}: {e}")));
    }
    if let Err(e) = crate::compile::units::check_dns1123_label(&c.inventory_namespace) {
        return Err(CliError::Usage(format!("--inventory-namespace: {e}")));
    }
    Ok(ApplyArgs {
        connect: Connect {
            context: c.context.clone(),
        },
        field_manager: Some(c.field_manager.clone()),
        force_conflicts: c.force_conflicts,
        options: crate::apply::Options {
            dry_run,
            prune,
            inventory,
            inventory_namespace: c.inventory_namespace.clone(),
            ..Default::default()
        },
        wait: None,
    })
}

/// Compiles, then runs one cluster command on the bundle.
fn with_cluster(
    input: &InputArgs,
    args: ApplyArgs,
    install_crds: bool,
    run: impl AsyncFnOnce(&[Json], &ApplyArgs) -> Result<u8, crate::connect::ConnectError>,
) -> Result<u8, CliError> {
    let inputs = inputs(input)?;
    let c = compile_reporting(&inputs);
    let Some(bundle) = c.bundle.as_ref() else {
        return Ok(2);
    };
    let bodies = crate::apply::command::bodies(&bundle.objects, install_crds);
    let rt = crate::connect::runtime().map_err(|e| CliError::Usage(e.to_string()))?;
    rt.block_on(run(&bodies, &args))
        .map_err(|e| CliError::Usage(e.to_string()))
}

/// `hangar apply`'s own flags.
struct ApplyFlags {
    dry_run: bool,
    prune: bool,
    allow_empty: bool,
    install_crds: bool,
    /// `--wait`: the `--timeout` as written.
    wait: Option<String>,
}

fn apply(input: &InputArgs, cluster: &ClusterArgs, flags: ApplyFlags) -> Result<u8, CliError> {
    let ApplyFlags {
        dry_run,
        prune,
        allow_empty,
        install_crds,
        wait,
    } = flags;
    if input.paths.is_empty() {
        return Err(CliError::Usage(
            "hangar apply needs a PATH (a file, a directory, or - for stdin); the bundled examples are only for render, check and diff".into(),
        ));
    }
    // `diff --cluster` may show the default inventory's prunes; only `apply --prune` needs a name.
    if prune && cluster.inventory.is_none() {
        return Err(CliError::Usage(
            "--prune needs --inventory NAME: every apply without one shares the inventory `default`, and pruning it would delete what other inputs applied".into(),
        ));
    }
    let mut args = apply_args(cluster, dry_run, prune)?;
    if let Some(t) = wait {
        let d = crate::compile::units::parse_duration(&t)
            .map_err(|e| CliError::Usage(format!("--timeout {t:?}: {e}")))?;
        args.wait = Some(d);
    }
    let empty_prune = prune && !allow_empty;
    with_cluster(input, args, install_crds, async move |bodies, args| {
        // hangar's own CRDs (--install-crds) are no input of the user's.
        let nothing = bodies.iter().all(|b| {
            b["kind"] == "CustomResourceDefinition" && b["spec"]["group"] == "mcp-hangar.io"
        });
        if empty_prune && nothing {
            eprintln!(
                "error: the inputs render no objects, so --prune would delete everything inventory {:?} holds; if that is what you want, add --allow-empty",
                args.options.inventory
            );
            return Ok(2);
        }
        crate::apply::command::apply(bodies, args).await
    })
}

fn diff(
    args: &InputArgs,
    against: Option<&Path>,
    cluster: Option<&ClusterArgs>,
) -> Result<u8, CliError> {
    if let Some(c) = cluster {
        let a = apply_args(c, true, true)?;
        return with_cluster(args, a, false, crate::apply::command::diff);
    }
    let Some(against) = against else {
        return Err(CliError::Usage(
            "diff needs --against PATH (a previous render) or --cluster".into(),
        ));
    };
    let inputs = inputs(args)?;
    let before = match read_rendered(against)? {
        Ok(o) => o,
        Err(text) => {
            eprint!("{text}");
            eprintln!(
                "error: {} could not be read as rendered objects",
                against.display()
            );
            return Ok(2);
        }
    };
    let c = compile_reporting(&inputs);
    let Some(bundle) = c.bundle.as_ref() else {
        return Ok(2);
    };
    let (text, summary) = crate::diff::diff(&before, &bundle.objects);
    write_stdout(&text)?;
    eprintln!("{summary}");
    Ok(if summary.differs() { 1 } else { 0 })
}

fn check(args: &InputArgs, format: DiagFormat) -> Result<u8, CliError> {
    let inputs = inputs(args)?;
    let c = compile::compile(&inputs);
    match format {
        DiagFormat::Text => {
            eprint!("{}", c.render_diagnostics());
        }
        DiagFormat::Json => {
            let items: Vec<Json> = c
                .diagnostics
                .items
                .iter()
                .map(|d| {
                    let loc = |s: &compile::Span| {
                        let f = c.files.get(s.file as usize);
                        json!({
                            "file": f.map(|f| f.path.clone()),
                            "line": s.line + f.map_or(0, |f| f.line_offset),
                            "column": s.col + f.map_or(0, |f| f.col_offset),
                        })
                    };
                    json!({
                        "severity": format!("{:?}", d.severity).to_lowercase(),
                        "code": d.code,
                        "message": d.message,
                        "location": d.span.as_ref().map(loc),
                        "hint": d.hint,
                        "notes": d.notes.iter().map(|(s, n)| json!({"message": n, "location": s.as_ref().map(loc)})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            write_stdout(&format!(
                "{}\n",
                serde_json::to_string_pretty(&Json::Array(items)).unwrap_or_default()
            ))?;
        }
    }
    let d = &c.diagnostics;
    match &c.bundle {
        Some(b) => {
            eprintln!(
                "ok: {} file{}; {} MCPServer{}, {} MCPServerGroup{}, {} MCPDiscoverySource{} -> {} objects; {} warning{}",
                inputs.files.len(),
                plural(inputs.files.len()),
                b.count_hangar("MCPServer"),
                plural(b.count_hangar("MCPServer")),
                b.count_hangar("MCPServerGroup"),
                plural(b.count_hangar("MCPServerGroup")),
                b.count_hangar("MCPDiscoverySource"),
                plural(b.count_hangar("MCPDiscoverySource")),
                b.objects.len(),
                d.warning_count(),
                plural(d.warning_count())
            );
            Ok(0)
        }
        None => {
            eprintln!(
                "error: {} error{}, {} warning{}",
                d.error_count(),
                plural(d.error_count()),
                d.warning_count(),
                plural(d.warning_count())
            );
            Ok(2)
        }
    }
}

/// `hangar import`: the compiler converts, this writes (stdout, or new files under DIR).
fn import(args: &InputArgs, out_dir: Option<&Path>) -> Result<u8, CliError> {
    if args.paths.is_empty() {
        return Err(CliError::Usage(
            "hangar import needs a PATH: the files to convert".into(),
        ));
    }
    let inputs = inputs(args)?;
    let (files, c) = compile::convert::import(&inputs, out_dir.is_none());
    report(&c.render_diagnostics(), &c.diagnostics, c.bundle.is_none());
    if c.bundle.is_none() {
        eprintln!("nothing was imported");
        return Ok(2);
    }
    let converted: usize = files.iter().map(|f| f.converted).sum();
    let summary = format!(
        "{} file{}, {} MCPServer{} converted",
        files.len(),
        plural(files.len()),
        converted,
        plural(converted)
    );
    let Some(dir) = out_dir else {
        let mut text = String::new();
        for f in &files {
            if !text.is_empty() {
                text.push_str("---\n");
            }
            text.push_str(&f.text);
            if !f.text.ends_with('\n') {
                text.push('\n');
            }
        }
        write_stdout(&text)?;
        if files.iter().any(|f| f.secrets) {
            eprintln!("note: Secret values are masked on stdout; --out-dir DIR writes them");
        }
        eprintln!("imported {summary}");
        return Ok(0);
    };
    // Every target is checked before anything is written: all or nothing.
    let mut targets: Vec<PathBuf> = Vec::new();
    let mut problems = Vec::new();
    for f in &files {
        let rel = if f.relative == "<stdin>" {
            "stdin.yaml".to_string()
        } else {
            f.relative.clone()
        };
        let rel_path = Path::new(&rel);
        let plain = rel_path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        let target = if plain {
            dir.join(rel_path)
        } else {
            dir.join(rel_path.file_name().unwrap_or(rel_path.as_os_str()))
        };
        if targets.contains(&target) {
            problems.push(format!(
                "{}: two inputs would be written to the same file ({})",
                f.source,
                target.display()
            ));
        } else if target.exists() || target.is_symlink() {
            problems.push(format!(
                "{}: exists; hangar import never overwrites a file (choose another --out-dir)",
                target.display()
            ));
        }
        targets.push(target);
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {}", compile::diag::printable(p));
        }
        eprintln!("nothing was imported");
        return Ok(2);
    }
    for (f, target) in files.iter().zip(&targets) {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| CliError::Write {
                path: parent.display().to_string(),
                source: e,
            })?;
        }
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(target)
            .and_then(|mut out| out.write_all(f.text.as_bytes()));
        written.map_err(|e| CliError::Write {
            path: target.display().to_string(),
            source: e,
        })?;
    }
    eprintln!("imported {summary} to {}", dir.display());
    Ok(0)
}

/// `crds/<plural>.yaml` files, as `hangar crds --out-dir` writes them.
pub fn crd_files() -> Vec<(String, String)> {
    crate::api::schema::crds()
        .iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.spec.names.plural);
            let value = serde_json::to_value(crd).unwrap_or(Json::Null);
            (name, crate::diff::to_yaml(&value))
        })
        .collect()
}

/// `schema/*.json` files, as `hangar schema --out-dir` writes them.
pub fn schema_files() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = crate::api::Kind::ALL
        .iter()
        .map(|k| {
            let v = crate::api::schema::editor_schema(*k);
            (
                format!("{}.json", k.name().to_lowercase()),
                serde_json::to_string_pretty(&v).unwrap_or_default() + "\n",
            )
        })
        .collect();
    out.push((
        "catalog.json".into(),
        serde_json::to_string_pretty(&crate::api::catalog::catalog_editor_schema())
            .unwrap_or_default()
            + "\n",
    ));
    out
}

fn write_files(
    dir: Option<&Path>,
    files: Vec<(String, String)>,
    separator: &str,
) -> Result<u8, CliError> {
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| CliError::Write {
                path: dir.display().to_string(),
                source: e,
            })?;
            // A same-named file hangar did not write (it names no `mcp-hangar.io`) is kept:
            // nothing is written until every file is known to be safe to replace.
            for (name, text) in &files {
                let p = dir.join(name);
                if let Ok(old) = std::fs::read(&p)
                    && old != text.as_bytes()
                    && !String::from_utf8_lossy(&old).contains("mcp-hangar.io")
                {
                    return Err(CliError::Usage(format!(
                        "{} exists and was not written by hangar; refusing to overwrite it (move it away or choose another directory)",
                        p.display()
                    )));
                }
            }
            for (name, text) in files {
                let p = dir.join(name);
                std::fs::write(&p, text).map_err(|e| CliError::Write {
                    path: p.display().to_string(),
                    source: e,
                })?;
            }
        }
        None => {
            let joined: Vec<String> = files.into_iter().map(|(_, t)| t).collect();
            write_stdout(&joined.join(separator))?;
        }
    }
    Ok(0)
}

fn crds(dir: Option<&Path>) -> Result<u8, CliError> {
    write_files(dir, crd_files(), "---\n")
}

fn schema(dir: Option<&Path>) -> Result<u8, CliError> {
    write_files(dir, schema_files(), "")
}
