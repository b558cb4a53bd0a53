//! Pods that really run: the real test node of `deploy/testenv/cluster.sh up --node` (a kubelet
//! with containerd + runc, CNI, kube-proxy and CoreDNS in a network namespace of its own; see
//! deploy/testenv/node.sh), with images built here from Debian packages (deploy/image/build.sh).
//!
//! Skipped with a note without such a node, unless HANGAR_REQUIRE_NODE=1, where they fail.
//! The controller runs inside the node's network namespace (`ip netns exec`, which also gives it
//! the node's resolv.conf), so that it reaches Services and resolves `NAME.NS.svc` like a pod.

mod support;

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::{Env, env, text, wait_for};

static SERIAL: Mutex<()> = Mutex::new(());

struct Node {
    e: &'static Env,
    netns: String,
    name: String,
    taint: String,
}

fn node() -> Option<Node> {
    let required = std::env::var("HANGAR_REQUIRE_NODE").as_deref() == Ok("1");
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mode = var("HANGAR_TESTENV_MODE");
    let (Some(netns), Some(name), Some(taint)) = (
        var("HANGAR_TESTENV_NODE_NETNS"),
        var("HANGAR_TESTENV_NODE"),
        var("HANGAR_TESTENV_NODE_TAINT"),
    ) else {
        assert!(
            !required,
            "HANGAR_REQUIRE_NODE=1 but the test cluster has no real node (mode {mode:?}): start it with `deploy/testenv/cluster.sh up --node`"
        );
        eprintln!("note: no real test node (cluster.sh up --node); skipping");
        return None;
    };
    let e = env()?;
    Some(Node {
        e,
        netns,
        name,
        taint,
    })
}

impl Node {
    /// Scheduling onto the real node: its hostname and a toleration of its taint.
    fn placement(&self) -> String {
        format!(
            "  nodeSelector:\n    kubernetes.io/hostname: {}\n  tolerations:\n  - key: {}\n    operator: Exists\n    effect: NoSchedule\n",
            self.name, self.taint
        )
    }

    /// A hangar controller for one namespace, inside the node's network namespace.
    fn controller(&self, ns: &str, log_name: &str) -> NodeController {
        let dir = self.e.root.join("target/tmp");
        let _ = std::fs::create_dir_all(&dir);
        let log = dir.join(format!("{log_name}-{}.log", std::process::id()));
        let logf = std::fs::File::create(&log).expect("controller log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(&self.e.hangar)
            .args([
                "controller",
                "--namespace",
                ns,
                "--metrics-addr",
                "127.0.0.1:0",
                "--exit-on-stdin-eof",
            ])
            .env("KUBECONFIG", &self.e.kubeconfig)
            .env("HANGAR_LOG", "info,hangar=debug")
            .env(
                "HANGAR_CACHE_DIR",
                dir.join(format!("cache-{log_name}-{}", std::process::id())),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("start hangar controller in the node's netns");
        NodeController {
            child: Mutex::new(child),
            log,
        }
    }

    fn server(&self, ns: &str, name: &str) -> Json {
        serde_json::from_str(
            &self
                .e
                .k(&["get", "mcpserver", name, "-n", ns, "-o", "json"]),
        )
        .unwrap_or(Json::Null)
    }
}

struct NodeController {
    child: Mutex<std::process::Child>,
    log: std::path::PathBuf,
}

impl NodeController {
    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
    fn alive(&self) -> bool {
        let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
        matches!(c.try_wait(), Ok(None))
    }
}

impl Drop for NodeController {
    fn drop(&mut self) {
        let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
        // --exit-on-stdin-eof: closing stdin stops it; kill if it lingers
        drop(c.stdin.take());
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The Python SDK server as a container-mode MCPServer under the restricted Pod Security
/// Standard: its pod really runs on the real node with hangar's restricted defaults (read-only
/// root filesystem, non-root, all capabilities dropped), and the controller's MCP probe through
/// its Service sees the real tools.
#[test]
fn a_container_server_really_runs_and_is_probed_through_its_service() {
    let Some(n) = node() else { return };
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let e = n.e;
    e.crds();
    let ns = e.namespace("node-py", true);
    let ctl = n.controller(&ns, "node-py");
    e.apply_yaml(&format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: echo\n  namespace: {ns}\nspec:\n  mode: container\n  image: hangar.test/mcp-python:1\n  imagePullPolicy: Never\n  port: 8000\n  path: /mcp\n{}",
        n.placement()
    ));
    let t0 = Instant::now();
    let ready = wait_for(
        "echo Ready on the real node",
        Duration::from_secs(180),
        || {
            assert!(ctl.alive(), "controller died:\n{}", ctl.log_tail());
            let s = n.server(&ns, "echo");
            (s["status"]["state"] == "Ready").then_some(s)
        },
    );
    eprintln!("apply -> Ready (pod start + MCP probe): {:?}", t0.elapsed());
    let tools: Vec<&str> = ready["status"]["tools"]
        .as_array()
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    assert_eq!(tools, ["echo", "add"], "{ready}");
    // The pod ran for real, on the real node.
    let pods: Json =
        serde_json::from_str(&e.k(&["get", "pods", "-n", &ns, "-o", "json"])).expect("pods json");
    let pod = &pods["items"][0];
    assert_eq!(pod["spec"]["nodeName"], n.name.as_str(), "{pod}");
    assert!(
        pod["status"]["containerStatuses"][0]["state"]["running"].is_object(),
        "{pod}"
    );
    let sc = &pod["spec"]["containers"][0]["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{sc}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{sc}");
    drop(ctl);
    let o = e.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    assert!(o.status.success(), "{}", text(&o));
}
