//! Hostile input to the binary (issue 19, items 6-8): directory walks that loop or meet FIFOs,
//! inputs without end, credentials planted in every kind of input, and control characters in
//! names. Each run is bounded by a timeout: a hang is a failure, not a stuck test.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Run {
    code: Option<i32>,
    out: String,
    err: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}{}", self.out, self.err)
    }
}

/// Runs hangar with `stdin` (or none), killed after `limit`.
fn hangar_in(args: &[&str], stdin: Option<&Path>, limit: Duration) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hangar"));
    cmd.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Credentials for `--catalog git+` come from here too; none are set.
        .env_remove("HANGAR_GIT_TOKEN");
    match stdin {
        Some(p) => cmd.stdin(std::fs::File::open(p).expect("stdin file")),
        None => cmd.stdin(Stdio::null()),
    };
    let mut child = cmd.spawn().expect("run hangar");
    let (mut so, mut se) = (
        child.stdout.take().expect("stdout"),
        child.stderr.take().expect("stderr"),
    );
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hangar {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).to_string();
    Run {
        code: status.code(),
        out: text(t_out.join().expect("stdout thread")),
        err: text(t_err.join().expect("stderr thread")),
    }
}

fn hangar(args: &[&str]) -> Run {
    hangar_in(args, None, Duration::from_secs(60))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hangar-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

const SERVER: &str = "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: a\n  namespace: d\nspec:\n  mode: container\n  image: ghcr.io/example/a:1.0.0\n";

#[test]
fn directory_walks_end_on_symlink_loops_and_skip_fifos() {
    let dir = tmp("walk");
    std::fs::write(dir.join("a.yaml"), SERVER).expect("write");
    std::fs::create_dir_all(dir.join("sub")).expect("sub");
    // Two links to `.` and one back up: a walk that follows them blindly never ends.
    std::os::unix::fs::symlink(".", dir.join("l1")).expect("link");
    std::os::unix::fs::symlink(".", dir.join("l2")).expect("link");
    std::os::unix::fs::symlink("..", dir.join("sub/up")).expect("link");
    // The same file twice through a link: read once (else it is a duplicate object).
    std::os::unix::fs::symlink("a.yaml", dir.join("again.yaml")).expect("link");
    std::os::unix::fs::symlink("gone.yaml", dir.join("broken.yaml")).expect("link");
    // A FIFO nobody writes: reading it would block forever.
    let fifo = dir.join("pipe.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let r = hangar(&["render", &s(&dir)]);
    assert_eq!(r.code, Some(0), "{}", r.err);
    assert_eq!(r.out.matches("kind: Deployment").count(), 1, "{}", r.out);
    for note in [
        "pipe.yaml: skipped: not a regular file",
        "broken.yaml: skipped: a link to nothing",
        "again.yaml: skipped: the same file as",
        "skipped: the same directory as",
    ] {
        assert!(r.err.contains(note), "missing {note:?} in:\n{}", r.err);
    }
}

#[test]
fn input_without_end_is_cut_with_a_clear_error() {
    let r = hangar_in(&["render", "/dev/zero"], None, Duration::from_secs(60));
    assert_eq!(r.code, Some(2), "{}", r.err);
    assert!(r.err.contains("/dev/zero: larger than 64 MiB"), "{}", r.err);
    let r = hangar_in(
        &["check", "-"],
        Some(Path::new("/dev/zero")),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(2), "{}", r.err);
    assert!(r.err.contains("<stdin>: larger than 64 MiB"), "{}", r.err);
}

/// A token planted in every input kind that can carry one; no output stream ever shows it.
#[test]
fn a_planted_token_never_reaches_any_output() {
    const TOKEN: &str = "PLANTEDTOKENc4f2e9";
    // base64 of the token, as a Secret's `data` holds it.
    const TOKEN_B64: &str = "UExBTlRFRFRPS0VOYzRmMmU5";
    let dir = tmp("planted");
    let files: [(&str, String); 9] = [
        (
            "secret.yaml",
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: s1, namespace: d}}\nstringData:\n  token: {TOKEN}\ndata:\n  b: {TOKEN_B64}\n"
            ),
        ),
        (
            "scalar-data.yaml",
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: s2, namespace: d}}\ndata: {TOKEN_B64}\n"
            ),
        ),
        (
            "last-applied.yaml",
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s3\n  namespace: d\n  annotations:\n    kubectl.kubernetes.io/last-applied-configuration: '{{\"stringData\":{{\"token\":\"{TOKEN}\"}}}}'\n"
            ),
        ),
        (
            "secret.json",
            format!(
                "{{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{{\"name\":\"s4\",\"namespace\":\"d\"}},\"stringData\":{{\"token\":\"{TOKEN}\"}}}}\n"
            ),
        ),
        (
            "endpoint.yaml",
            format!(
                "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {{name: e1, namespace: d}}\nspec:\n  mode: remote\n  endpoint: https://bob:{TOKEN}@mcp.example/mcp\n"
            ),
        ),
        (
            "git-password.yaml",
            format!(
                "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata: {{name: g1, namespace: d}}\nspec:\n  type: Git\n  git:\n    url: https://bob:{TOKEN}@git.example/r.git\n"
            ),
        ),
        (
            "git-token-user.yaml",
            format!(
                "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata: {{name: g2, namespace: d}}\nspec:\n  type: Git\n  git:\n    url: https://{TOKEN}@git.example/r.git\n"
            ),
        ),
        (
            "git-scp.yaml",
            format!(
                "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata: {{name: g3, namespace: d}}\nspec:\n  type: Git\n  git:\n    url: bob:{TOKEN}@git.example:org/r.git\n"
            ),
        ),
        (
            "probe-url.yaml",
            format!(
                "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {{name: e2, namespace: d}}\nspec:\n  mode: remote\n  endpoint: https://{TOKEN}@mcp.example/mcp\n"
            ),
        ),
    ];
    for (name, text) in &files {
        std::fs::write(dir.join(name), text).expect("write");
    }
    // Secrets whose files do not parse: the snippet shows the line, never the value.
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).expect("dir");
    for (i, bad) in [
        format!("  token: \"{TOKEN}\" trailing\n"),
        format!("  token: {TOKEN}: x\n"),
        format!("\ttoken: {TOKEN}\n"),
        format!("  token: [{TOKEN}\n"),
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(
            broken.join(format!("b{i}.yaml")),
            format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: b{i}\nstringData:\n{bad}"),
        )
        .expect("write");
    }
    std::fs::write(
        broken.join("json.json"),
        format!("{{\"kind\": \"Secret\", \"stringData\": {{\"token\": \"{TOKEN}\" x}}}}\n"),
    )
    .expect("write");

    let mut runs: Vec<(String, Run)> = Vec::new();
    let mut run = |args: Vec<String>| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        runs.push((args.join(" "), hangar(&a)));
    };
    for (name, _) in &files {
        let p = s(&dir.join(name));
        run(vec!["render".into(), p.clone()]);
        run(vec!["check".into(), p.clone()]);
        run(vec!["check".into(), "-o".into(), "json".into(), p.clone()]);
        run(vec![
            "diff".into(),
            p.clone(),
            "--against".into(),
            p.clone(),
        ]);
    }
    for b in std::fs::read_dir(&broken).expect("dir") {
        let p = s(&b.expect("entry").path());
        run(vec!["render".into(), p.clone()]);
        run(vec!["check".into(), "-o".into(), "json".into(), p]);
    }
    run(vec![
        "render".into(),
        "--out-dir".into(),
        s(&dir.join("out")),
        s(&dir.join("secret.yaml")),
    ]);
    // `--catalog git+...` with credentials in the URL: refused, unreachable, or malformed.
    for spec in [
        format!("git+https://bob:{TOKEN}@127.0.0.1:1/r.git"),
        format!("git+https://{TOKEN}@127.0.0.1:1/r.git"),
        format!("git+ftp://bob:{TOKEN}@127.0.0.1:1/r.git"),
        format!("src=git+https://bob:{TOKEN}@127.0.0.1:1/r.git#main:catalog"),
    ] {
        run(vec![
            "render".into(),
            s(&dir.join("secret.yaml")),
            "--catalog".into(),
            spec,
        ]);
    }
    run(vec![
        "probe".into(),
        format!("https://bob:{TOKEN}@127.0.0.1:1/mcp"),
        "--timeout".into(),
        "2s".into(),
    ]);
    run(vec![
        "probe".into(),
        "-o".into(),
        "json".into(),
        format!("https://bob:{TOKEN}@127.0.0.1:1/mcp"),
        "--timeout".into(),
        "2s".into(),
    ]);
    run(vec![
        "probe".into(),
        format!("http://{TOKEN}@127.0.0.1:1/mcp"),
        "--timeout".into(),
        "2s".into(),
    ]);
    let mut leaked = Vec::new();
    for (cmd, r) in &runs {
        assert!(r.code.is_some(), "{cmd}: killed by a signal");
        assert_ne!(r.code, Some(101), "{cmd}: panicked:\n{}", r.err);
        let all = r.all();
        if all.contains(TOKEN) || all.contains(TOKEN_B64) {
            leaked.push(format!("$ hangar {cmd}\n{all}"));
        }
    }
    for entry in walk(&dir.join("out")) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        if text.contains(TOKEN) || text.contains(TOKEN_B64) {
            leaked.push(format!("file {}", entry.display()));
        }
    }
    assert!(
        leaked.is_empty(),
        "{} outputs show the token:\n{}",
        leaked.len(),
        leaked.join("\n---\n")
    );
    // The URLs with credentials are refused, not accepted.
    for (name, _) in &files[4..] {
        let (cmd, r) = runs
            .iter()
            .find(|(c, _)| c.starts_with("check /") && c.ends_with(name))
            .expect("check run");
        assert_eq!(r.code, Some(2), "{cmd}:\n{}", r.all());
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// ESC and BEL in names, file names and values never reach the terminal raw (a title change,
/// an OSC 52 clipboard write).
#[test]
fn control_characters_are_escaped_in_everything_printed() {
    let dir = tmp("ctl");
    let osc = "\u{1b}]52;c;cHduZWQ=\u{7}";
    let evil = dir.join(format!("x{osc}.yaml"));
    std::fs::write(
        &evil,
        format!(
            "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: \"bad{osc}\"\n  namespace: d\nspec:\n  mode: container\n  image: \"ghcr.io/x{osc}:1\"\n"
        ),
    )
    .expect("write");
    std::fs::write(
        dir.join("cm.yaml"),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: d}}\ndata:\n  v: \"{osc}\"\n"
        ),
    )
    .expect("write");
    let fifo = dir.join(format!("p{osc}.yaml"));
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    for args in [
        vec!["render".to_string(), s(&dir)],
        vec!["check".to_string(), s(&dir)],
        vec!["check".to_string(), s(&evil)],
        vec!["render".to_string(), s(&dir.join("missing\u{1b}[2J.yaml"))],
        vec![
            "render".to_string(),
            s(&dir.join("cm.yaml")),
            "--catalog".into(),
            format!("git+https://h{osc}/r.git"),
        ],
        vec!["probe".to_string(), format!("http://127.0.0.1:1/{osc}")],
    ] {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = hangar(&a);
        assert_ne!(r.code, Some(101), "{args:?} panicked:\n{}", r.err);
        let all = r.all();
        assert!(
            !all.contains('\u{1b}') && !all.contains('\u{7}'),
            "{args:?} printed a raw control character:\n{}",
            all.escape_debug()
        );
    }
}
