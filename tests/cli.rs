//! The binary as users run it: exit codes, stdout/stderr, files it writes (and refuses to write).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hangar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run hangar")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hangar-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn render_without_paths_uses_the_embedded_examples() {
    let out = hangar(&["render"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("kind: Deployment") && stdout.contains("name: sqlite-tools"));
    assert_eq!(
        text(&hangar(&["render", "examples"]).stdout),
        stdout,
        "embedded examples equal examples/"
    );
}

#[test]
fn provenance_does_not_depend_on_the_working_directory() {
    // Issue 13.3: `cd examples && hangar apply .` must not reconfigure what `hangar apply
    // examples/` made: the `mcp-hangar.io/source` annotation names the file under its PATH.
    let from_root = text(&hangar(&["render", "examples/"]).stdout);
    let inside = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(["render", "."])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
        .output()
        .expect("run hangar");
    assert_eq!(inside.status.code(), Some(0), "{}", text(&inside.stderr));
    assert!(
        from_root.contains("mcp-hangar.io/source: file:"),
        "{from_root}"
    );
    assert!(!from_root.contains("file:examples/"), "{from_root}");
    assert_eq!(text(&inside.stdout), from_root);
    // A file argument names the file itself.
    let one = text(&hangar(&["render", "examples/catalog.yaml"]).stdout);
    assert!(
        one.contains("mcp-hangar.io/source: file:catalog.yaml"),
        "{one}"
    );
}

#[test]
fn the_embedded_examples_are_only_for_no_arguments_at_all() {
    // apply without PATH would deploy the demo servers: a usage error, nothing sent.
    let out = hangar(&["apply", "--context", "no-such-context"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("hangar apply needs a PATH"),
        "{}",
        text(&out.stderr)
    );
    // --prune without a named inventory could prune another input's objects.
    let out = hangar(&[
        "apply",
        "examples/basic-server.yaml",
        "--prune",
        "--context",
        "none",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--prune needs --inventory"),
        "{}",
        text(&out.stderr)
    );
    // A catalog alone renders the catalog's servers, not the demo servers with them.
    let out = hangar(&["render", "--catalog", "examples/catalog.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("kind: MCPServer"), "{stdout}");
    assert!(
        !stdout.contains("name: sqlite-tools"),
        "demo servers mixed in:\n{stdout}"
    );
}

#[test]
fn render_json_is_a_list() {
    let out = hangar(&["render", "examples/basic-server.yaml", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["kind"], "List");
    assert!(v["items"].as_array().is_some_and(|i| i.len() >= 5));
}

#[test]
fn every_invalid_fixture_exits_2_with_located_errors_and_no_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/invalid");
    for e in std::fs::read_dir(dir)
        .expect("fixtures")
        .filter_map(Result::ok)
    {
        let p = e.path();
        let p = p.to_string_lossy();
        for cmd in ["render", "check"] {
            let out = hangar(&[cmd, &p]);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} {p}: {err}");
            assert!(!err.contains("panicked"), "{cmd} {p}: {err}");
            assert!(
                err.contains(": error: "),
                "{cmd} {p}: no located error:\n{err}"
            );
            assert!(
                out.stdout.is_empty() || cmd == "check",
                "{cmd} {p} printed output despite errors"
            );
        }
    }
}

#[test]
fn check_reports_every_error_at_once_and_as_json() {
    let out = hangar(&[
        "check",
        "fixtures/invalid/workload-rules.yaml",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let errors: Vec<&serde_json::Value> = v
        .as_array()
        .expect("list")
        .iter()
        .filter(|d| d["severity"] == "error")
        .collect();
    assert!(errors.len() >= 6, "{v:#}");
    for e in errors {
        assert!(e["location"]["line"].as_u64().is_some_and(|l| l > 0), "{e}");
    }
}

#[test]
fn diff_exit_codes() {
    let dir = tmp("diff");
    let before = dir.join("before.yaml");
    let out = hangar(&["render", "examples/basic-server.yaml"]);
    std::fs::write(&before, &out.stdout).expect("write");
    let before_s = before.to_string_lossy();
    // Equal: exit 0, nothing on stdout.
    let same = hangar(&["diff", "examples/basic-server.yaml", "--against", &before_s]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stderr));
    assert!(same.stdout.is_empty());
    // Changed: exit 1 with a unified diff per object.
    let changed_src = dir.join("changed.yaml");
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/basic-server.yaml"),
    )
    .expect("read");
    std::fs::write(&changed_src, src.replace("replicas: 1", "replicas: 3")).expect("write");
    let changed = hangar(&[
        "diff",
        &changed_src.to_string_lossy(),
        "--against",
        &before_s,
    ]);
    assert_eq!(changed.status.code(), Some(1));
    let d = text(&changed.stdout);
    assert!(
        d.contains("~ Deployment/mcp-servers/sqlite-tools")
            && d.contains("-  replicas: 1")
            && d.contains("+  replicas: 3"),
        "{d}"
    );
    assert!(
        text(&changed.stderr).contains("2 changed"),
        "{}",
        text(&changed.stderr)
    );
    // Broken input: exit 2.
    let broken = hangar(&[
        "diff",
        "fixtures/invalid/broken-yaml.yaml",
        "--against",
        &before_s,
    ]);
    assert_eq!(broken.status.code(), Some(2));
    // Missing --against: usage error, exit 2.
    assert_eq!(hangar(&["diff", "examples"]).status.code(), Some(2));
}

#[test]
fn diff_masks_secret_values() {
    let dir = tmp("secrets");
    let secret = |v: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: d}}\nstringData:\n  token: {v}\n"
        )
    };
    std::fs::write(dir.join("a.yaml"), secret("old-secret-value")).expect("write");
    std::fs::write(dir.join("b.yaml"), secret("new-secret-value")).expect("write");
    let out = hangar(&[
        "diff",
        &dir.join("b.yaml").to_string_lossy(),
        "--against",
        &dir.join("a.yaml").to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(!all.contains("secret-value"), "{all}");
    assert!(
        all.contains("<masked: new>") && all.contains("<masked: old>"),
        "{all}"
    );
    let render = hangar(&["render", &dir.join("a.yaml").to_string_lossy()]);
    assert!(!text(&render.stdout).contains("old-secret-value"));
    let revealed = hangar(&[
        "render",
        "--reveal-secrets",
        &dir.join("a.yaml").to_string_lossy(),
    ]);
    assert!(text(&revealed.stdout).contains("old-secret-value"));
}

#[test]
fn out_dir_never_overwrites_what_hangar_did_not_write() {
    let dir = tmp("outdir");
    let mine = dir.join("notes.txt");
    std::fs::write(&mine, "keep me").expect("write");
    let d = dir.to_string_lossy();
    let refused = hangar(&["render", "examples/basic-server.yaml", "--out-dir", &d]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("refusing"));
    assert_eq!(
        std::fs::read_to_string(&mine).expect("still there"),
        "keep me"
    );
    // A fresh directory is written, and a second render replaces exactly its own files.
    let out = dir.join("out");
    let o = out.to_string_lossy();
    assert_eq!(
        hangar(&["render", "examples/ha-group.yaml", "--out-dir", &o])
            .status
            .code(),
        Some(0)
    );
    assert!(
        out.join("mcp-servers/deployment-sqlite-primary.yaml")
            .exists()
    );
    assert_eq!(
        hangar(&["render", "examples/basic-server.yaml", "--out-dir", &o])
            .status
            .code(),
        Some(0)
    );
    assert!(
        !out.join("mcp-servers/deployment-sqlite-primary.yaml")
            .exists(),
        "stale file removed"
    );
    assert!(
        out.join("mcp-servers/deployment-sqlite-tools.yaml")
            .exists()
    );
    // The out dir is a valid --against.
    let same = hangar(&["diff", "examples/basic-server.yaml", "--against", &o]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stdout));
}

#[test]
fn missing_and_binary_paths_are_errors() {
    let out = hangar(&["render", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("does/not/exist.yaml"));
    let dir = tmp("binary");
    std::fs::write(dir.join("x.yaml"), [0xff, 0xfe, 0x00, 0x01]).expect("write");
    let out = hangar(&["check", &dir.join("x.yaml").to_string_lossy()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("UTF-8"));
}

#[test]
fn catalog_binding_and_stdin() {
    let out = hangar(&[
        "render",
        "fixtures/ok/layering/source.yaml",
        "--catalog",
        "team-catalog=fixtures/ok/layering/team.catalog.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("mcp-hangar.io/discovered-by: team-catalog"));
    let wrong = hangar(&[
        "render",
        "fixtures/ok/layering/source.yaml",
        "--catalog",
        "team-catalgo=fixtures/ok/layering/team.catalog.yaml",
    ]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        text(&wrong.stderr).contains("did you mean `team-catalog`"),
        "{}",
        text(&wrong.stderr)
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(["check", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(b"servers:\n  - name: x\n    image: ghcr.io/a/b:1.0.0\n")
            .expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// Lines of a child's stdout and stderr, as they come.
struct Lines {
    rx: std::sync::mpsc::Receiver<(bool, String)>,
    seen: Vec<(bool, String)>,
}

impl Lines {
    fn of(child: &mut std::process::Child) -> Lines {
        use std::io::BufRead;
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>);
        for (is_err, stream) in [(false, out), (true, err)] {
            let Some(stream) = stream else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    if tx.send((is_err, line)).is_err() {
                        break;
                    }
                }
            });
        }
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits (at most `secs`) for a line of stdout (`err` false) or stderr that contains `want`;
    /// returns the stdout lines since the previous wait.
    fn wait(&mut self, err: bool, want: &str, secs: u64) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((is_err, line)) => {
                    self.seen.push((is_err, line.clone()));
                    if !is_err {
                        out.push(line.clone());
                    }
                    if is_err == err && line.contains(want) {
                        return out;
                    }
                }
                Err(_) => panic!(
                    "no {} line with {want:?} within {secs}s; seen:\n{}",
                    if err { "stderr" } else { "stdout" },
                    self.seen
                        .iter()
                        .map(|(e, l)| format!("{}{l}", if *e { "E " } else { "O " }))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }
}

#[test]
fn render_watch_shows_the_diff_of_each_change() {
    let dir = tmp("watch");
    let basic = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/basic-server.yaml"),
    )
    .expect("example");
    std::fs::write(dir.join("server.yaml"), &basic).expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(["render", "--watch"])
        .arg(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = Lines::of(&mut child);
    // The watch starts before the first render is printed.
    lines.wait(false, "kind: Deployment", 60);

    // An edit: a header line, then the unified diff of the Deployment.
    std::fs::write(
        dir.join("server.yaml"),
        basic.replace("mcp-sqlite:0.6.2", "mcp-sqlite:0.7.0"),
    )
    .expect("edit");
    let out = lines.wait(
        false,
        "+        image: ghcr.io/modelcontextprotocol/mcp-sqlite:0.7.0",
        30,
    );
    let header = out
        .iter()
        .find(|l| l.starts_with("=== "))
        .cloned()
        .unwrap_or_default();
    assert!(
        header.contains("server.yaml: 2 changed, 0 added, 0 removed"),
        "{out:?}"
    );
    assert!(out.iter().any(|l| l.starts_with("-        image: ghcr.io/modelcontextprotocol/mcp-sqlite:0.6.2")), "{out:?}");

    // A new file that does not compile: diagnostics, and the last good render stays the base.
    std::fs::write(dir.join("broken.yaml"), "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: Broken_Name\nspec:\n  image: x\n").expect("broken");
    lines.wait(true, "the inputs do not compile", 30);
    assert!(
        lines
            .seen
            .iter()
            .any(|(e, l)| *e && l.contains("broken.yaml:")),
        "located error"
    );
    // Removed again: nothing differs from the last good render.
    std::fs::remove_file(dir.join("broken.yaml")).expect("rm");
    lines.wait(false, "broken.yaml: 0 changed, 0 added, 0 removed", 30);
    // A new server in a new subdirectory: its objects are added.
    std::fs::create_dir_all(dir.join("more")).expect("mkdir");
    std::fs::write(
        dir.join("more/second.yaml"),
        basic.replace("name: sqlite-tools", "name: second-tools"),
    )
    .expect("second");
    let out = lines.wait(false, "+ Deployment/mcp-servers/second-tools", 30);
    assert!(
        out.iter()
            .any(|l| l.starts_with("=== ") && l.contains("added")),
        "{out:?}"
    );

    // The end of stdin stops it.
    drop(child.stdin.take());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exits 0 at the end of stdin"
    );
}

#[test]
fn out_dir_removes_only_its_own_files_and_keeps_same_named_kinds_apart() {
    // Issue 19.3.
    let dir = tmp("outdir-hostile");
    let out = dir.join("out");
    let o = out.to_string_lossy().to_string();
    let input = dir.join("in.yaml");
    // A core Service and a Knative Service of one name, and a server.
    std::fs::write(
        &input,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: a\nspec:\n  ports: [{port: 80}]\n---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: web\n  namespace: a\nspec: {}\n",
    )
    .expect("input");
    let i = input.to_string_lossy().to_string();
    let first = hangar(&["render", &i, "--out-dir", &o]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let core = out.join("a/service.core-web.yaml");
    let knative = out.join("a/service.serving.knative.dev-web.yaml");
    assert!(core.exists() && knative.exists(), "one of the two lost");
    assert!(
        std::fs::read_to_string(&knative)
            .unwrap_or_default()
            .contains("knative")
    );
    // A marker edited to list files outside the directory: none of them is ever removed.
    let victim = dir.join("victim.yaml");
    std::fs::write(&victim, "precious").expect("victim");
    std::fs::create_dir_all(out.join("b")).expect("b");
    let marker = out.join(".hangar-render");
    let listed = std::fs::read_to_string(&marker).unwrap_or_default();
    std::fs::write(
        &marker,
        format!(
            "{listed}{}\n../victim.yaml\na/../../victim.yaml\nb/../../victim.yaml\n",
            victim.display()
        ),
    )
    .expect("marker");
    // A namespace directory that is a symbolic link out of DIR is never written through.
    std::os::unix::fs::symlink(&dir, out.join("z")).expect("symlink");
    let again = hangar(&["render", &i, "--out-dir", &o]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap_or_default(),
        "precious"
    );
    std::fs::write(
        &input,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: z\ndata: {a: b}\n",
    )
    .expect("input");
    let through = hangar(&["render", &i, "--out-dir", &o]);
    assert_eq!(through.status.code(), Some(2), "{}", text(&through.stderr));
    assert!(
        text(&through.stderr).contains("symbolic link"),
        "{}",
        text(&through.stderr)
    );
    assert!(!dir.join("configmap-c.yaml").exists());
}

#[test]
fn crds_and_schema_out_dir_keep_a_same_named_file_of_the_users() {
    let dir = tmp("crds-out");
    let d = dir.to_string_lossy().to_string();
    let mine = dir.join("mcpservers.yaml");
    std::fs::write(&mine, "my own notes\n").expect("mine");
    let o = hangar(&["crds", "--out-dir", &d]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("refusing to overwrite"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&mine).unwrap_or_default(),
        "my own notes\n"
    );
    assert!(
        !dir.join("mcpservergroups.yaml").exists(),
        "nothing written at all"
    );
    // hangar's own files are replaced (that is how crds/ is regenerated).
    std::fs::remove_file(&mine).expect("rm");
    assert_eq!(hangar(&["crds", "--out-dir", &d]).status.code(), Some(0));
    std::fs::write(&mine, "# mcp-hangar.io, an older version\n").expect("older");
    assert_eq!(hangar(&["crds", "--out-dir", &d]).status.code(), Some(0));
    let s = dir.join("schema");
    std::fs::create_dir_all(&s).expect("dir");
    std::fs::write(s.join("catalog.json"), "{}\n").expect("mine");
    let o = hangar(&["schema", "--out-dir", &s.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

#[test]
fn controller_refuses_a_namespace_that_is_not_a_name() {
    // Before connecting anywhere: the list is checked as it is parsed.
    let out = hangar(&["controller", "--namespace", "team-a,Team_B"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("Team_B") && err.contains("not a namespace name"),
        "{err}"
    );
}

/// Issue 15.1: a peer's MCPServer is converted (counted as an MCPServer), other MCP operators'
/// kinds are named in a warning and not counted.
#[test]
fn check_counts_converted_servers_and_not_foreign_kinds() {
    let out = hangar(&["check", "fixtures/ok/vitorbari-01-wikipedia-sse.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("ok: 1 file; 1 MCPServer,"), "{err}");
    assert!(
        err.contains("warning: `mcp.mcp-operator.io/v1` MCPServer `wikipedia-http` converted"),
        "{err}"
    );
    let out = hangar(&["check", "fixtures/ok/foreign-kinds.yaml"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("0 MCPServers,"), "{err}");
    assert_eq!(
        err.matches("is not a kind hangar converts").count(),
        3,
        "{err}"
    );
    // `diff` reads it the same way: against its own render, nothing differs.
    let dir = tmp("converted-diff");
    let before = dir.join("before.yaml");
    let render = hangar(&["render", "fixtures/ok/vitorbari-01-wikipedia-sse.yaml"]);
    std::fs::write(&before, &render.stdout).expect("write");
    assert!(
        text(&render.stdout)
            .contains("mcp-hangar.io/converted-from: mcp.mcp-operator.io/v1 MCPServer")
    );
    let diff = hangar(&[
        "diff",
        "fixtures/ok/vitorbari-01-wikipedia-sse.yaml",
        "--against",
        &before.display().to_string(),
    ]);
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    // A field with no equivalent is a located error, exit 2.
    let out = hangar(&["check", "fixtures/invalid/vitorbari-04-metrics-basic.yaml"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("vitorbari-04-metrics-basic.yaml:15:3: error: `spec.metrics`"),
        "{err}"
    );
}

/// Issue 15.3: `hangar import` writes one file per input, in order, with a header; what it
/// writes checks and renders the same objects as the original; it never overwrites, and
/// writes nothing when any input has an error.
#[test]
fn import_writes_hangar_manifests_that_render_the_same() {
    let inputs = [
        "fixtures/ok/vitorbari-01-wikipedia-sse.yaml",
        "fixtures/ok/vitorbari-02-streamable-http-basic.yaml",
        "fixtures/ok/vitorbari-03-sse-adapted.yaml",
        "fixtures/ok/foreign-kinds.yaml",
    ];
    let dir = tmp("import");
    let out_dir = dir.join("out");
    let out_s = out_dir.display().to_string();
    let mut args = vec!["import"];
    args.extend(inputs);
    args.extend(["--out-dir", &out_s]);
    let out = hangar(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("imported 4 files, 4 MCPServers converted"),
        "{}",
        text(&out.stderr)
    );
    for input in inputs {
        let name = Path::new(input)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let written = std::fs::read_to_string(out_dir.join(name)).expect("one file per input");
        assert!(
            written.starts_with(&format!("# hangar import: {name}")),
            "{written}"
        );
        assert!(
            !written.contains("mcp.mcp-operator.io/v1\nkind: MCPServer"),
            "{written}"
        );
    }
    // Re-rendered: the same objects, and no conversion left to do.
    let check = hangar(&["check", &out_s]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
    assert!(
        !text(&check.stderr).contains("converted to"),
        "{}",
        text(&check.stderr)
    );
    let mut original = vec!["render"];
    original.extend(inputs);
    let before = hangar(&original);
    let after = hangar(&["render", &out_s]);
    assert_eq!(after.status.code(), Some(0), "{}", text(&after.stderr));
    assert_eq!(
        text(&after.stdout),
        text(&before.stdout),
        "import re-renders the same objects"
    );
    // Stdout: the same files, in order, separated by `---`.
    let mut stdout_args = vec!["import"];
    stdout_args.extend(inputs);
    let printed = text(&hangar(&stdout_args).stdout);
    let starts: Vec<usize> = inputs
        .iter()
        .map(|i| {
            let name = Path::new(i)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            printed
                .find(&format!("# hangar import: {name}"))
                .unwrap_or(usize::MAX)
        })
        .collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{printed}");
    // Never overwrites: a second import into the same directory fails and changes nothing.
    let first = std::fs::read_to_string(out_dir.join("foreign-kinds.yaml")).expect("written");
    std::fs::write(out_dir.join("vitorbari-01-wikipedia-sse.yaml"), "mine\n").expect("write");
    let again = hangar(&args);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("never overwrites"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("vitorbari-01-wikipedia-sse.yaml"))
            .ok()
            .as_deref(),
        Some("mine\n")
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("foreign-kinds.yaml")).ok(),
        Some(first)
    );
    // Any error: exit 2, nothing written.
    let bad_dir = dir.join("bad");
    let bad_s = bad_dir.display().to_string();
    let bad = hangar(&[
        "import",
        "fixtures/ok/vitorbari-02-streamable-http-basic.yaml",
        "fixtures/invalid/vitorbari-10-complete-reference.yaml",
        "--out-dir",
        &bad_s,
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("error: `spec.security.fsGroup`"),
        "{}",
        text(&bad.stderr)
    );
    assert!(!bad_dir.exists(), "nothing written on error");
    // No PATH is a usage error.
    assert_eq!(hangar(&["import"]).status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// On stdout, Secret values are masked as `hangar render` masks them.
#[test]
fn import_masks_secrets_on_stdout() {
    let dir = tmp("import-secret");
    let f = dir.join("s.yaml");
    std::fs::write(
        &f,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  token: hunter2\n",
    )
    .expect("write");
    let out = hangar(&["import", &f.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("hunter2"),
        "{}",
        text(&out.stdout)
    );
    let out_dir = dir.join("out");
    let out = hangar(&[
        "import",
        &f.display().to_string(),
        "--out-dir",
        &out_dir.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(out_dir.join("s.yaml")).expect("written");
    assert!(
        written.contains("hunter2"),
        "--out-dir writes the file as it was"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
