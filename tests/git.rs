//! The Git source against real repositories made here with the `git` binary, served over
//! `file://`, `git daemon` and `git http-backend` (behind a loopback server that checks basic
//! auth), and `--catalog git+URL` as users run it.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hangar::source::git::{GitAuth, GitCache, GitError, GitRequest};
use support::{Proc, free_tcp_port, start_listening};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hangar-git-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare `origin.git` under `root` and a working clone that pushes to it.
struct Repo {
    root: PathBuf,
    work: PathBuf,
}

impl Repo {
    fn new(name: &str) -> Repo {
        let root = tmp(name);
        let work = root.join("work");
        git(&root, &["init", "-q", "--bare", "origin.git"]);
        git(&root, &["init", "-q", "work"]);
        git(&work, &["remote", "add", "origin", "../origin.git"]);
        Repo { root, work }
    }

    fn origin(&self) -> PathBuf {
        self.root.join("origin.git")
    }

    fn file_url(&self) -> String {
        format!("file://{}", self.origin().display())
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.work.join(path);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(p, text).expect("write");
    }

    /// Commits everything and force-pushes `main` (and tags): returns the commit SHA.
    fn commit(&self, msg: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "--allow-empty", "-m", msg]);
        self.push();
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn push(&self) {
        git(
            &self.work,
            &["push", "-q", "-f", "--tags", "origin", "HEAD:main"],
        );
    }
}

fn server(name: &str, image: &str) -> String {
    format!("  - name: {name}\n    image: {image}\n")
}

fn catalog(entries: &[(&str, &str)]) -> String {
    let mut s = "servers:\n".to_string();
    for (n, i) in entries {
        s.push_str(&server(n, i));
    }
    s
}

fn cache(name: &str) -> GitCache {
    GitCache::new(tmp(&format!("{name}-cache")), 256 << 20).with_timeout(Duration::from_secs(60))
}

fn req(url: &str, reference: Option<&str>, path: Option<&str>) -> GitRequest {
    GitRequest {
        url: url.to_string(),
        reference: reference.map(str::to_string),
        path: path.map(str::to_string),
        auth: GitAuth::None,
    }
}

fn names(c: &hangar::source::git::Checkout) -> Vec<String> {
    c.files.iter().map(|f| f.path.clone()).collect()
}

fn reason<T>(r: Result<T, GitError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => {
            let s = format!("{}: {e}", e.reason());
            eprintln!("{s}");
            s
        }
    }
}

/// A fixture repository: c1 (tag v1, annotated; tag lw, lightweight) and c2 on main.
fn fixture(name: &str) -> (Repo, String, String) {
    let r = Repo::new(name);
    r.write("catalog.yaml", &catalog(&[("alpha", "ghcr.io/x/alpha:1")]));
    r.write("teams/b.yaml", &catalog(&[("beta", "ghcr.io/x/beta:1")]));
    r.write(
        "teams/a.toml",
        "[[servers]]\nname = \"gamma\"\nimage = \"ghcr.io/x/gamma:1\"\n",
    );
    r.write(".hidden.yaml", "not: read\n");
    r.write(".github/ci.yaml", "not: read\n");
    r.write("README.md", "# not read\n");
    let c1 = r.commit("one");
    git(&r.work, &["tag", "-a", "v1", "-m", "v1"]);
    git(&r.work, &["tag", "lw"]);
    r.push();
    r.write("catalog.yaml", &catalog(&[("alpha", "ghcr.io/x/alpha:2")]));
    let c2 = r.commit("two");
    (r, c1, c2)
}

#[test]
fn hangarignore_at_the_top_of_git_path_leaves_files_out() {
    // Issue 13: a `.hangarignore` in a Git source's path, as in a PATH directory.
    let r = Repo::new("ignore");
    r.write("catalog.yaml", &catalog(&[("alpha", "ghcr.io/x/alpha:1")]));
    r.write(
        "servers/catalog.yaml",
        &catalog(&[("beta", "ghcr.io/x/beta:1")]),
    );
    r.write("servers/values.yaml", "replicaCount: 2\n");
    r.write("servers/charts/x/Chart.yaml", "apiVersion: v2\nname: x\n");
    r.write("servers/wip.draft.yaml", "servers: [\n");
    r.write(
        "servers/.hangarignore",
        "# not manifests\nvalues.yaml\ncharts/\n*.draft.yaml\n",
    );
    let c = r.commit("one");
    let short = &c[..7];
    let cache = cache("ignore");
    let url = r.file_url();
    // `HEAD` (the default `ref` render shows) is the remote HEAD's branch.
    let sub = cache
        .fetch(&req(&url, Some("HEAD"), Some("servers")))
        .expect("fetch servers/");
    assert_eq!(sub.commit, c);
    assert_eq!(
        names(&sub),
        vec![format!("git+{url}@{short}:servers/catalog.yaml")]
    );
    // An ignore file below the path's top is not read (as for a PATH directory).
    let all = cache.fetch(&req(&url, None, None)).expect("fetch /");
    assert_eq!(all.files.len(), 5, "{:?}", names(&all));
    // A malformed pattern names the file and line.
    r.write("servers/.hangarignore", "values.yaml\n[z-a]\n");
    r.commit("bad");
    let bad = reason(cache.fetch(&req(&url, None, Some("servers"))));
    assert!(
        bad.starts_with("InvalidContent: ") && bad.contains("servers/.hangarignore: line 2"),
        "{bad}"
    );
}

#[test]
fn file_url_branch_tag_sha_and_path() {
    let (r, c1, c2) = fixture("file");
    let cache = cache("file");
    let url = r.file_url();
    let head = cache.fetch(&req(&url, None, None)).expect("fetch HEAD");
    assert_eq!(head.commit, c2);
    let short2 = &c2[..7];
    assert_eq!(
        names(&head),
        vec![
            format!("git+{url}@{short2}:catalog.yaml"),
            format!("git+{url}@{short2}:teams/a.toml"),
            format!("git+{url}@{short2}:teams/b.yaml"),
        ],
        "sorted; hidden files and other extensions skipped"
    );
    assert!(head.files[0].text.contains("alpha:2"));

    for reference in ["main", "refs/heads/main", &c2, short2] {
        let c = cache
            .fetch(&req(&url, Some(reference), None))
            .expect(reference);
        assert_eq!(c.commit, c2, "{reference}");
    }
    for reference in ["v1", "lw", "refs/tags/v1", &c1, &c1[..8]] {
        let c = cache
            .fetch(&req(&url, Some(reference), None))
            .expect(reference);
        assert_eq!(c.commit, c1, "{reference}");
        assert!(c.files[0].text.contains("alpha:1"), "{reference}");
    }

    let sub = cache.fetch(&req(&url, None, Some("teams"))).expect("dir");
    assert_eq!(
        names(&sub),
        vec![
            format!("git+{url}@{short2}:teams/a.toml"),
            format!("git+{url}@{short2}:teams/b.yaml"),
        ]
    );
    let one = cache
        .fetch(&req(&url, Some("v1"), Some("/teams/b.yaml/")))
        .expect("file");
    assert_eq!(
        names(&one),
        vec![format!("git+{url}@{}:teams/b.yaml", &c1[..7])]
    );
    // A plain path is a local repository too.
    let plain = cache
        .fetch(&req(&r.origin().display().to_string(), None, None))
        .expect("plain path");
    assert_eq!(plain.commit, c2);
}

#[test]
fn errors_tell_the_cases_apart() {
    let (r, _, _) = fixture("errors");
    let cache = cache("errors");
    let url = r.file_url();
    let e = reason(cache.fetch(&req(&url, Some("nope"), None)));
    assert!(
        e.starts_with("RefNotFound: ") && e.contains("\"nope\""),
        "{e}"
    );
    let e = reason(cache.fetch(&req(&url, Some("deadbeef"), None)));
    assert!(e.starts_with("RefNotFound: "), "{e}");
    let e = reason(cache.fetch(&req(&url, None, Some("teams/nope"))));
    assert!(
        e.starts_with("PathNotFound: ") && e.contains("teams/nope"),
        "{e}"
    );
    let e = reason(cache.fetch(&req(&url, None, Some("../etc"))));
    assert!(e.starts_with("PathNotFound: "), "{e}");
    let missing = format!("file://{}/missing.git", r.root.display());
    let e = reason(cache.fetch(&req(&missing, None, None)));
    assert!(e.starts_with("Unreachable: "), "{e}");
    // A loopback port nobody listens on.
    let port = free_tcp_port();
    let e = reason(cache.fetch(&req(&format!("git://127.0.0.1:{port}/x.git"), None, None)));
    assert!(e.starts_with("Unreachable: "), "{e}");
    let e = reason(cache.fetch(&req("ftp://127.0.0.1/x", None, None)));
    assert!(e.starts_with("InvalidURL: "), "{e}");
    // An empty repository has no HEAD to read.
    git(&r.root, &["init", "-q", "--bare", "empty.git"]);
    let empty = format!("file://{}/empty.git", r.root.display());
    let e = reason(cache.fetch(&req(&empty, None, None)));
    assert!(e.starts_with("RefNotFound: "), "{e}");
    // Failed fetches leave no repository behind; the good one stays.
    let kept = std::fs::read_dir(cache.dir())
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(kept, 0, "nothing fetched successfully yet");
}

#[test]
fn bounds_on_files_bytes_and_cache() {
    let (r, _, _) = fixture("bounds");
    let url = r.file_url();
    let few = cache("bounds-files").with_file_limits(2, 1 << 20);
    let e = reason(few.fetch(&req(&url, None, None)));
    assert!(
        e.starts_with("TooLarge: ") && e.contains("more than 2"),
        "{e}"
    );
    let small = cache("bounds-bytes").with_file_limits(100, 64);
    let e = reason(small.fetch(&req(&url, None, None)));
    assert!(e.starts_with("TooLarge: ") && e.contains("64 bytes"), "{e}");

    // A cache of one repository: the least recently used one is evicted.
    let (other, _, _) = fixture("bounds-other");
    let one = cache("bounds-lru").with_max_repos(1);
    one.fetch(&req(&url, None, None)).expect("first");
    one.fetch(&req(&other.file_url(), None, None))
        .expect("second");
    let repos: Vec<String> = std::fs::read_dir(one.dir())
        .expect("cache dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(repos.len(), 1, "{repos:?}");
    assert!(repos[0].starts_with("origin-"), "{repos:?}");
    // The evicted repository is fetched again when asked for.
    one.fetch(&req(&url, None, None)).expect("again");
    // A byte bound below one repository: read, then removed (fetched afresh next time).
    let tiny = GitCache::new(tmp("bounds-tiny-cache"), 1);
    tiny.fetch(&req(&url, None, None)).expect("first");
    let again = tiny.fetch(&req(&url, None, None)).expect("again");
    assert_eq!(again.files.len(), 3);
    assert_eq!(
        std::fs::read_dir(tiny.dir())
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}

fn daemon(base: &Path) -> (Proc, u16) {
    let port = free_tcp_port();
    (start_listening(support::git_daemon(base, port), port), port)
}

fn shallow_file(cache: &GitCache) -> Option<String> {
    let dir = std::fs::read_dir(cache.dir())
        .ok()?
        .filter_map(Result::ok)
        .next()?;
    std::fs::read_to_string(dir.path().join("shallow")).ok()
}

#[test]
fn git_daemon_shallow_new_commits_and_force_push() {
    let (r, c1, c2) = fixture("daemon");
    let (_daemon, port) = daemon(&r.root);
    let url = format!("git://127.0.0.1:{port}/origin.git");
    let cache = cache("daemon");
    let c = cache.fetch(&req(&url, Some("main"), None)).expect("main");
    assert_eq!(c.commit, c2);
    assert_eq!(c.files.len(), 3);
    assert_eq!(
        shallow_file(&cache).map(|s| s.trim().to_string()),
        Some(c2.clone()),
        "fetched with depth 1"
    );
    // A new commit is seen on the next fetch.
    r.write("teams/c.yaml", &catalog(&[("delta", "ghcr.io/x/delta:1")]));
    let c3 = r.commit("three");
    let c = cache
        .fetch(&req(&url, Some("main"), None))
        .expect("main again");
    assert_eq!(c.commit, c3);
    assert_eq!(c.files.len(), 4);
    // The tag, then a commit that is no tip (fetched in full).
    assert_eq!(
        cache
            .fetch(&req(&url, Some("v1"), None))
            .expect("v1")
            .commit,
        c1
    );
    let old = cache
        .fetch(&req(&url, Some(&c2[..10]), None))
        .expect("old commit");
    assert_eq!(old.commit, c2);
    assert!(old.files[0].text.contains("alpha:2"));
    // A download over the bound is refused.
    let mut noise = String::new();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while noise.len() < 300_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.push_str(&format!("{x:016x}"));
    }
    r.write("big/noise.txt", &noise);
    let big = r.commit("big");
    let bounded = crate::cache("daemon-big").with_download_limit(100_000);
    let e = reason(bounded.fetch(&req(&url, Some(&big), None)));
    assert!(
        e.starts_with("TooLarge: ") && e.contains("100000 bytes"),
        "{e}"
    );
    git(&r.work, &["reset", "-q", "--hard", "HEAD~1"]);
    r.push();
    // A force-pushed branch: history rewritten, the new tip is followed.
    git(&r.work, &["reset", "-q", "--hard", &c1]);
    r.write(
        "catalog.yaml",
        &catalog(&[("alpha", "ghcr.io/x/alpha:forced")]),
    );
    let forced = r.commit("rewritten");
    let c = cache
        .fetch(&req(&url, Some("main"), None))
        .expect("after force-push");
    assert_eq!(c.commit, forced);
    assert!(c.files[0].text.contains("alpha:forced"));
    assert_eq!(
        c.files.len(),
        3,
        "teams/c.yaml is gone with the rewritten history"
    );
    // A repository the daemon does not serve.
    let e = reason(cache.fetch(&req(
        &format!("git://127.0.0.1:{port}/nope.git"),
        None,
        None,
    )));
    assert!(e.starts_with("Unreachable: "), "{e}");
}

#[test]
fn a_silent_remote_is_unreachable_at_the_deadline() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for _ in 0..2 {
            if let Ok((s, _)) = listener.accept() {
                conns.push(s);
            }
        }
        std::thread::sleep(Duration::from_secs(10));
    });
    let cache = GitCache::new(tmp("silent-cache"), 1 << 20).with_timeout(Duration::from_secs(2));
    let start = Instant::now();
    let e = reason(cache.fetch(&req(&format!("git://127.0.0.1:{port}/x.git"), None, None)));
    assert!(
        e.starts_with("Unreachable: ") && e.contains("within 2s"),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    drop(held);
}

/// `git http-backend` behind a loopback HTTP/1.1 server that wants basic auth `user:pass`.
struct HttpGit {
    port: u16,
    _stop: std::sync::mpsc::Sender<()>,
}

fn http_git(root: &Path, user: &str, pass: &str) -> HttpGit {
    use base64::Engine as _;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    );
    let root = root.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if matches!(
                rx.try_recv(),
                Err(std::sync::mpsc::TryRecvError::Disconnected)
            ) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let (root, want) = (root.clone(), want.clone());
            std::thread::spawn(move || serve_http(conn, &root, &want));
        }
    });
    HttpGit { port, _stop: tx }
}

fn serve_http(conn: TcpStream, root: &Path, want_auth: &str) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(20)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end().to_string();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if let Some(n) = header("content-length").and_then(|n| n.parse::<usize>().ok()) {
            body.resize(n, 0);
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            loop {
                let mut size = String::new();
                if reader.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        if header("authorization").as_deref() != Some(want_auth) {
            let msg = "auth needed\n";
            let _ = write!(
                out,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: {}\r\n\r\n{msg}",
                msg.len()
            );
            continue;
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let mut cgi = Command::new("git");
        cgi.arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GIT_PROJECT_ROOT", root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", &method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", query)
            .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("REMOTE_USER", "user")
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let Ok(mut child) = cgi.spawn() else { return };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&body);
        }
        let Ok(done) = child.wait_with_output() else {
            return;
        };
        let raw = done.stdout;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| (p, 4))
            .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2)));
        let Some((at, sep)) = split else { return };
        let head = String::from_utf8_lossy(&raw[..at]).to_string();
        let payload = &raw[at + sep..];
        let mut status = "200 OK".to_string();
        let mut resp_headers = String::new();
        for h in head.lines() {
            match h.split_once(':') {
                Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
                Some(_) => resp_headers.push_str(&format!("{}\r\n", h.trim_end())),
                None => {}
            }
        }
        let _ = write!(
            out,
            "HTTP/1.1 {status}\r\n{resp_headers}Content-Length: {}\r\n\r\n",
            payload.len()
        );
        let _ = out.write_all(payload);
        let _ = out.flush();
    }
}

#[test]
fn http_basic_and_token_auth() {
    let (r, _, c2) = fixture("http");
    let server = http_git(&r.root, "x-access-token", "s3cret-token");
    let url = format!("http://127.0.0.1:{}/origin.git", server.port);
    let cache = cache("http");
    let with = |auth: GitAuth| GitRequest {
        auth,
        ..req(&url, Some("main"), None)
    };
    let c = cache
        .fetch(&with(GitAuth::Token("s3cret-token".into())))
        .expect("token");
    assert_eq!(c.commit, c2);
    assert_eq!(c.files.len(), 3);
    let basic = GitAuth::Basic {
        username: "x-access-token".into(),
        password: "s3cret-token".into(),
    };
    assert_eq!(cache.fetch(&with(basic)).expect("basic").commit, c2);
    // Credentials in the URL are used, and shown nowhere.
    let in_url = format!(
        "http://x-access-token:s3cret-token@127.0.0.1:{}/origin.git",
        server.port
    );
    let c = cache.fetch(&req(&in_url, None, None)).expect("userinfo");
    assert!(
        c.files.iter().all(|f| !f.path.contains("s3cret")),
        "{:?}",
        names(&c)
    );
    // Wrong or missing credentials: AuthFailed, and the secret is not in the message.
    let e = reason(cache.fetch(&with(GitAuth::Token("wrong-token".into()))));
    assert!(e.starts_with("AuthFailed: "), "{e}");
    assert!(!e.contains("wrong-token"), "{e}");
    let e = reason(cache.fetch(&with(GitAuth::None)));
    assert!(
        e.starts_with("AuthFailed: ") && e.contains("none were given"),
        "{e}"
    );
    let e = reason(cache.fetch(&req(
        &format!(
            "http://x-access-token:bad-pass@127.0.0.1:{}/origin.git",
            server.port
        ),
        None,
        None,
    )));
    assert!(
        e.starts_with("AuthFailed: ") && !e.contains("bad-pass"),
        "{e}"
    );
    // The CLI takes the Secret's keys from the environment.
    let cli_cache = tmp("http-cli-cache");
    let spec = format!("git+{url}#main:teams");
    let run = |token: &str| {
        Command::new(env!("CARGO_BIN_EXE_hangar"))
            .args(["check", "--catalog", &spec])
            .env("HANGAR_CACHE_DIR", &cli_cache)
            .env("HANGAR_GIT_TOKEN", token)
            .stdin(Stdio::null())
            .output()
            .expect("run hangar")
    };
    let ok = run("s3cret-token");
    assert!(
        String::from_utf8_lossy(&ok.stderr).contains(&format!("commit {c2}")),
        "{}",
        support::text(&ok)
    );
    // Credentials in a `--catalog` URL are used, and neither its note nor an error shows them.
    for (spec, code) in [
        (
            format!(
                "git+http://x-access-token:s3cret-token@127.0.0.1:{}/origin.git#main:teams",
                server.port
            ),
            0,
        ),
        (
            format!(
                "git+http://x-access-token:s3cret-token@127.0.0.1:{}/origin.git#nope",
                server.port
            ),
            2,
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hangar"))
            .args(["check", "--catalog", &spec])
            .env("HANGAR_CACHE_DIR", &cli_cache)
            .env_remove("HANGAR_GIT_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("run hangar");
        let all = support::text(&out);
        assert_eq!(out.status.code(), Some(code), "{all}");
        assert!(!all.contains("s3cret-token"), "{all}");
        if code == 0 {
            assert!(all.contains(&format!("commit {c2}")), "{all}");
        }
    }
    let bad = run("wrong-token");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("authentication failed") && !stderr.contains("wrong-token"),
        "{stderr}"
    );
    // An ssh key for an http remote is a credentials mistake, not an outage.
    let e = reason(cache.fetch(&with(GitAuth::SshKey {
        private_key: "k".into(),
        passphrase: None,
        known_hosts: None,
    })));
    assert!(e.starts_with("AuthFailed: "), "{e}");
}

fn hangar(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(args)
        .env("HANGAR_CACHE_DIR", cache)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .expect("run hangar")
}

#[test]
fn render_catalog_from_git() {
    let r = Repo::new("cli");
    r.write(
        "catalogs/prod.yaml",
        &format!(
            "servers:\n{}  - name: Bad_Name\n    image: ghcr.io/x/bad:1\n{}",
            server("good-one", "ghcr.io/x/good:1"),
            server("good-two", "ghcr.io/x/good:2")
        ),
    );
    r.write(
        "catalogs/ok.yaml",
        &catalog(&[("fine", "ghcr.io/x/fine:1")]),
    );
    r.write(
        "source.yaml",
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata:\n  name: team-git\n  namespace: default\nspec:\n  type: Git\n  git:\n    url: https://git.example.com/team/catalog.git\n",
    );
    let sha = r.commit("catalog");
    let cache = tmp("cli-cache");
    let url = r.file_url();

    let ok = hangar(
        &[
            "render",
            "--catalog",
            &format!("git+{url}#main:catalogs/ok.yaml"),
            "-n",
            "default",
        ],
        &cache,
    );
    // Without PATH the bundled examples are rendered too; only the catalog matters here.
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{}", support::text(&ok));
    assert!(stdout.contains("image: ghcr.io/x/fine:1"), "{stdout}");
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(stderr.contains(&format!("commit {sha}")), "{stderr}");

    // Bound to a discovery source among the inputs: `SOURCE=git+URL...`.
    let src = r.work.join("source.yaml");
    let bound = hangar(
        &[
            "render",
            src.to_str().unwrap_or_default(),
            "--catalog",
            &format!("team-git=git+{url}#:catalogs/ok.yaml"),
        ],
        &cache,
    );
    assert_eq!(bound.status.code(), Some(0), "{}", support::text(&bound));
    let stdout = String::from_utf8_lossy(&bound.stdout);
    assert!(
        stdout.contains("mcp-hangar.io/discovered-by: team-git"),
        "{stdout}"
    );

    // One bad entry: located at the repository path and line.
    let bad = hangar(
        &[
            "check",
            src.to_str().unwrap_or_default(),
            "--catalog",
            &format!("git+{url}#{}:catalogs", &sha[..12]),
        ],
        &cache,
    );
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    let at = format!("git+{url}@{}:catalogs/prod.yaml:4:", &sha[..7]);
    assert!(stderr.contains(&at), "want {at} in:\n{stderr}");
    assert!(stderr.contains("Bad_Name"), "{stderr}");

    // Git failures: a clear error and exit 2.
    for (spec, want) in [
        (
            format!("git+{url}#nope"),
            "no branch, tag or commit named \"nope\"",
        ),
        (
            format!("git+{url}#main:nope"),
            "no file or directory \"nope\"",
        ),
        (
            format!("git+git://127.0.0.1:{}/x.git", free_tcp_port()),
            "remote unreachable",
        ),
    ] {
        let out = hangar(&["render", "--catalog", &spec], &cache);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{spec}: {stderr}");
        assert!(stderr.contains(want), "{spec}: {stderr}");
        assert!(out.stdout.is_empty(), "{spec}");
    }
}
