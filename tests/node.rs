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
use support::{Controller, ControllerOpts, Env, env, text, wait_for};

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
    fn controller(&self, ns: &str, log_name: &str) -> Controller {
        self.controller_with(ns, log_name, &[])
    }

    fn controller_with(&self, ns: &str, log_name: &str, extra: &[&str]) -> Controller {
        let mut args = vec!["--namespace", ns];
        args.extend_from_slice(extra);
        Controller::spawn(
            self.e,
            &ControllerOpts {
                args: &args,
                name: log_name,
                netns: Some(&self.netns),
                ..Default::default()
            },
        )
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

/// The TypeScript "everything" server (Node 22) as a container-mode MCPServer under the
/// restricted Pod Security Standard: it needs nothing writable, and the probe through its Service
/// sees its tools.
#[test]
fn the_everything_server_really_runs_under_the_restricted_defaults() {
    let Some(n) = node() else { return };
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let e = n.e;
    e.crds();
    let ns = e.namespace("node-every", true);
    let ctl = n.controller(&ns, "node-every");
    e.apply_yaml(&format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: everything\n  namespace: {ns}\nspec:\n  mode: container\n  image: hangar.test/mcp-everything:1\n  imagePullPolicy: Never\n  port: 3001\n  path: /mcp\n{}",
        n.placement()
    ));
    let t0 = Instant::now();
    let ready = wait_for("everything Ready", Duration::from_secs(180), || {
        assert!(ctl.alive(), "controller died:\n{}", ctl.log_tail());
        let s = n.server(&ns, "everything");
        (s["status"]["state"] == "Ready").then_some(s)
    });
    eprintln!("everything: apply -> Ready: {:?}", t0.elapsed());
    let tools: Vec<&str> = ready["status"]["tools"]
        .as_array()
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    assert!(tools.contains(&"echo"), "{ready}");
    drop(ctl);
    let _ = e.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The hangar image built here (`deploy/image/build.sh hangar`), loaded into the node's containerd.
/// Built from the release binary; skipped with a note when that binary is absent, unless
/// HANGAR_REQUIRE_NODE=1.
fn hangar_image(n: &Node) -> bool {
    let root = &n.e.root;
    if !root.join("target/release/hangar").exists() {
        assert!(
            std::env::var("HANGAR_REQUIRE_NODE").as_deref() != Ok("1"),
            "HANGAR_REQUIRE_NODE=1 but no target/release/hangar: run `cargo build --release --locked`"
        );
        eprintln!("note: no target/release/hangar; skipping the hangar image test");
        return false;
    }
    let sock = n.e.state.join("node/containerd/containerd.sock");
    let o = Command::new(root.join("deploy/image/build.sh"))
        .arg("--load")
        .arg(&sock)
        .arg("hangar")
        .output()
        .expect("run deploy/image/build.sh");
    assert!(
        o.status.success(),
        "deploy/image/build.sh hangar: {}",
        text(&o)
    );
    true
}

fn lease_holder(e: &Env, ns: &str, name: &str) -> String {
    let o = e.kubectl(&[
        "get",
        "lease",
        name,
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn ready_pods(e: &Env, ns: &str, selector: &str) -> Vec<Json> {
    let pods: Json =
        serde_json::from_str(&e.k(&["get", "pods", "-n", ns, "-l", selector, "-o", "json"]))
            .unwrap_or(Json::Null);
    pods["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .filter(|p| {
                    p["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// `helm install` of the chart with the hangar image built here: two controller pods really run
/// on the real node under the restricted Pod Security Standard, as the chart's ServiceAccount;
/// one leads; a container-mode server is Ready through the in-cluster controller's MCP probe;
/// the chart's two gateway pods run there too, and the server answers through their Service;
/// deleting the leader's pod hands over within the lease; `helm upgrade` rolls the pods;
/// `helm uninstall` leaves the user's MCPServer in place.
#[test]
fn helm_install_of_the_hangar_image_runs_the_controller_as_pods() {
    let Some(n) = node() else { return };
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if !hangar_image(&n) {
        return;
    }
    let e = n.e;
    e.crds();
    let pid = std::process::id() % 100_000;
    let release = format!("hangar-node-{pid}");
    let sys = e.namespace("node-hangar-system", true);
    let apps = e.namespace("node-apps", true);
    let chart = e.root.join("deploy/helm/hangar");
    let chart = chart.to_string_lossy();
    let placement = format!(
        r#"{{"nodeSelector":{{"kubernetes.io/hostname":"{}"}},"tolerations":[{{"key":"{}","operator":"Exists","effect":"NoSchedule"}}],"watchNamespaces":["{apps}"]}}"#,
        n.name, n.taint
    );
    let values = e.root.join(format!("target/tmp/node-values-{pid}.json"));
    std::fs::write(&values, &placement).expect("values file");
    let values = values.to_string_lossy().into_owned();
    let helm = |verb: &str, extra: &[&str]| {
        let mut args = vec![verb, release.as_str(), &chart, "-n", &sys];
        args.extend_from_slice(&[
            "-f",
            &values,
            "--set",
            "image.repository=hangar",
            "--set",
            "image.tag=dev",
            "--set",
            "image.pullPolicy=Never",
            "--set",
            "operator.leaderElection.leaseDuration=6s",
        ]);
        args.extend_from_slice(extra);
        let o = e.helm(&args);
        assert!(o.status.success(), "helm {args:?}: {}", text(&o));
    };
    let selector =
        format!("app.kubernetes.io/instance={release},app.kubernetes.io/component=operator");
    let t0 = Instant::now();
    helm("install", &[]);
    let pods = wait_for(
        "two controller pods Ready",
        Duration::from_secs(180),
        || {
            let p = ready_pods(e, &sys, &selector);
            (p.len() == 2).then_some(p)
        },
    );
    eprintln!(
        "helm install -> 2 controller pods Ready: {:?}",
        t0.elapsed()
    );
    for p in &pods {
        assert_eq!(p["spec"]["nodeName"], n.name.as_str(), "{p}");
        assert_eq!(p["spec"]["serviceAccountName"], release.as_str(), "{p}");
    }
    let leader = wait_for("a leader", Duration::from_secs(60), || {
        let h = lease_holder(e, &sys, &release);
        pods.iter()
            .filter_map(|p| p["metadata"]["name"].as_str())
            .find(|name| h.starts_with(name))
            .map(str::to_string)
    });

    // A server, reconciled and probed by the controller in its pod.
    e.apply_yaml(&format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: echo\n  namespace: {apps}\nspec:\n  mode: container\n  image: hangar.test/mcp-python:1\n  imagePullPolicy: Never\n  port: 8000\n  path: /mcp\n{}",
        n.placement()
    ));
    let t1 = Instant::now();
    let ready = wait_for("echo Ready", Duration::from_secs(180), || {
        let s = n.server(&apps, "echo");
        (s["status"]["state"] == "Ready").then_some(s)
    });
    eprintln!(
        "apply -> Ready via the in-cluster controller: {:?}",
        t1.elapsed()
    );
    assert_eq!(ready["status"]["toolsCount"], 2, "{ready}");

    // The chart's gateway, in pods on the same node: an agent's view, from inside the node's
    // network, through its Service (RELEASE-core:8080) to the server's pod.
    let gw = format!("app.kubernetes.io/instance={release},app.kubernetes.io/component=gateway");
    wait_for("two gateway pods Ready", Duration::from_secs(180), || {
        (ready_pods(e, &sys, &gw).len() == 2).then_some(())
    });
    let url = format!("http://{release}-core.{sys}.svc:8080/servers/{apps}/echo/mcp");
    let probe = wait_for(
        "the server through the gateway",
        Duration::from_secs(60),
        || {
            let o = Command::new("ip")
                .args(["netns", "exec", &n.netns])
                .arg(&e.hangar)
                .args(["probe", &url])
                .output()
                .ok()?;
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            (o.status.success() && out.contains("MCP compliant")).then_some(out)
        },
    );
    assert!(probe.contains("echo, add"), "{probe}");

    // The leader's pod deleted: the other takes over within the lease (6 s) plus its retry.
    let t2 = Instant::now();
    e.k(&["delete", "pod", &leader, "-n", &sys, "--wait=false"]);
    let next = wait_for("a new leader", Duration::from_secs(60), || {
        let h = lease_holder(e, &sys, &release);
        (!h.is_empty() && !h.starts_with(&leader)).then_some(h)
    });
    eprintln!(
        "leader pod deleted -> {next} leads after {:?}",
        t2.elapsed()
    );

    // An upgrade that changes the pod template rolls the pods.
    let before: Vec<String> = ready_pods(e, &sys, &selector)
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    helm("upgrade", &["--set", "operator.logLevel=debug"]);
    wait_for("the upgrade rolled out", Duration::from_secs(180), || {
        let now = ready_pods(e, &sys, &selector);
        (now.len() == 2
            && now.iter().all(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|name| !before.iter().any(|b| b == name))
            }))
        .then_some(())
    });

    // Uninstall: the controller goes, the user's server stays.
    let o = e.helm(&["uninstall", &release, "-n", &sys, "--wait"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(e.get("mcpserver", &apps, "echo").is_some());
    for ns in [&apps, &sys] {
        let _ = e.kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
}

/// Servers that cannot become Ready on a real node end Dead within their `startupTimeout`,
/// with a reason and message saying why, and an Event; the controller stays up.
#[test]
fn servers_that_cannot_run_end_dead_with_the_reason() {
    let Some(n) = node() else { return };
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let e = n.e;
    e.crds();
    let ns = e.namespace("node-bad", true);
    let ctl = n.controller(&ns, "node-bad");
    let server = |name: &str, body: &str| {
        format!(
            "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  mode: container\n  startupTimeout: 20s\n  port: 8000\n  path: /mcp\n{body}{}",
            n.placement()
        )
    };
    // (name, spec, what the Ready condition's message says)
    let cases = [
        // Runs, but speaks plain HTTP, not MCP.
        (
            "not-mcp",
            "  image: hangar.test/mcp-python:1\n  imagePullPolicy: Never\n  command: [/usr/bin/python3, -m, http.server, \"8000\"]\n",
            "1/1 replicas ready;",
        ),
        // An image no registry has (and none is reachable): the pull error, named.
        (
            "no-image",
            "  image: registry.invalid/hangar/nope:1.0.0\n  imagePullPolicy: IfNotPresent\n",
            "ImagePull",
        ),
        // Exits at once: the crash loop, with its exit code.
        (
            "crash",
            "  image: hangar.test/mcp-python:1\n  imagePullPolicy: Never\n  command: [/usr/bin/python3, -c, \"import sys; sys.exit(3)\"]\n",
            "exit code 3",
        ),
    ];
    let t0 = Instant::now();
    for (name, body, _) in &cases {
        e.apply_yaml(&server(name, body));
    }
    for (name, _, want) in &cases {
        let s = wait_for(&format!("{name} Dead"), Duration::from_secs(120), || {
            assert!(ctl.alive(), "controller died:\n{}", ctl.log_tail());
            let s = n.server(&ns, name);
            (s["status"]["state"] == "Dead").then_some(s)
        });
        let ready = s["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or(Json::Null);
        eprintln!("{name}: Dead after {:?}: {ready}", t0.elapsed());
        assert!(
            ready["message"].as_str().is_some_and(|m| m.contains(want)),
            "{name}: {ready}"
        );
        // The pods' own reason where they have one; a server that runs but fails its checks
        // times out.
        let reason = ready["reason"].as_str().unwrap_or_default();
        if *name == "not-mcp" {
            assert_eq!(reason, "StartupTimeout", "{ready}");
        } else {
            assert_ne!(reason, "StartupTimeout", "{name}: {ready}");
        }
        let events = e.k(&[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "jsonpath={.items[*].reason}",
        ]);
        assert!(!events.trim().is_empty(), "{name}: no Event");
    }
    assert!(ctl.alive(), "controller died:\n{}", ctl.log_tail());
    drop(ctl);
    let _ = e.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// `hangar gateway --cluster` inside the node's network namespace, in front of a container-mode
/// server whose pod really runs: the gateway finds the pod through the EndpointSlice that
/// Kubernetes made for the server's Service and reaches it at its pod IP; the probe through the
/// gateway sees the server's tools less the denied one.
#[test]
fn the_gateway_reaches_a_real_pod_through_its_endpoint_slice() {
    let Some(n) = node() else { return };
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let e = n.e;
    e.crds();
    let ns = e.namespace("node-gw", true);
    let ctl = n.controller(&ns, "node-gw");
    e.apply_yaml(&format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: echo\n  namespace: {ns}\nspec:\n  mode: container\n  image: hangar.test/mcp-python:1\n  imagePullPolicy: Never\n  port: 8000\n  path: /mcp\n  tools:\n    denyList: [add]\n{}",
        n.placement()
    ));
    wait_for(
        "echo Ready on the real node",
        Duration::from_secs(180),
        || {
            assert!(ctl.alive(), "controller died:\n{}", ctl.log_tail());
            (n.server(&ns, "echo")["status"]["state"] == "Ready").then_some(())
        },
    );
    let (_gw, addr) = node_gateway(&n, &ns, "node-gateway");
    let url = format!("http://{addr}/servers/{ns}/echo/mcp");
    let probe = || {
        Command::new("ip")
            .args(["netns", "exec", &n.netns])
            .arg(&e.hangar)
            .args(["probe", &url, "-o", "json", "--timeout", "10s"])
            .output()
            .expect("hangar probe in the node's netns")
    };
    let report: Json = wait_for(
        "the probe through the gateway",
        Duration::from_secs(60),
        || {
            let o = probe();
            let r: Json = serde_json::from_slice(&o.stdout).ok()?;
            (o.status.success()).then_some(r)
        },
    );
    let tools = report.to_string();
    assert!(tools.contains("\"echo\""), "{report}");
    assert!(
        !tools.contains("\"add\""),
        "the denied tool listed: {report}"
    );
    let pod_ip = e.k(&[
        "get",
        "endpointslices",
        "-n",
        &ns,
        "-l",
        "kubernetes.io/service-name=echo",
        "-o",
        "jsonpath={.items[0].endpoints[0].addresses[0]}",
    ]);
    assert!(pod_ip.starts_with("10.245.0."), "a pod IP: {pod_ip}");
    drop(ctl);
    let o = e.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    assert!(o.status.success(), "{}", text(&o));
}

/// A gateway (`--cluster`) inside the node's network namespace, listening on its loopback.
fn node_gateway(n: &Node, ns: &str, log_name: &str) -> (support::Proc, String) {
    let e = n.e;
    let log = e
        .root
        .join(format!("target/tmp/{log_name}-{}.log", std::process::id()));
    let addr = format!("127.0.0.1:{}", support::free_tcp_port());
    let child = Command::new("ip")
        .args(["netns", "exec", &n.netns])
        .arg(&e.hangar)
        .args(["gateway", "--cluster", "--namespace", ns, "--listen", &addr])
        .env("KUBECONFIG", &e.kubeconfig)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("gateway log"))
        .spawn()
        .expect("start hangar gateway in the node's netns");
    let p = support::Proc(child);
    let ready = format!("http://{addr}/readyz");
    wait_for("the gateway's /readyz", Duration::from_secs(30), || {
        let o = n.curl(&["-fsS", "-m", "2", &ready]);
        o.status.success().then_some(())
    });
    (p, addr)
}

impl Node {
    /// curl inside the node's network namespace.
    fn curl(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns, "curl"])
            .args(args)
            .output()
            .expect("curl in the node's netns")
    }

    fn curl_spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new("ip")
            .args(["netns", "exec", &self.netns, "curl"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl in the node's netns")
    }

    /// Waits until no pod of the server is left (terminated, not only not ready).
    fn wait_pods_gone(&self, ns: &str, server: &str, within: Duration) {
        let selector = format!("mcp-hangar.io/server={server}");
        wait_for("the server's pods gone", within, || {
            let pods = self
                .e
                .k(&["get", "pods", "-n", ns, "-l", &selector, "-o", "name"]);
            pods.trim().is_empty().then_some(())
        });
    }

    /// An on-demand (`replicas: 0`) container MCPServer on the real node.
    fn on_demand(&self, ns: &str, name: &str, image: &str, idle: &str, startup: &str) -> String {
        format!(
            "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  mode: container\n  image: {image}\n  imagePullPolicy: Never\n  port: 8000\n  path: /mcp\n  replicas: 0\n  idleTTL: {idle}\n  startupTimeout: {startup}\n{}",
            self.placement()
        )
    }

    fn replicas(&self, ns: &str, name: &str) -> Option<i64> {
        let o = self
            .e
            .kubectl(&["get", "deployment", name, "-n", ns, "-o", "json"]);
        let d: Json = serde_json::from_slice(&o.stdout).ok()?;
        d["spec"]["replicas"].as_i64()
    }
}

/// The status line and body of an MCP `initialize` POST through the gateway, as curl saw them:
/// (HTTP status, the Retry-After header, body, curl's exit code).
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: String,
    exit: Option<i32>,
}

fn initialize_args(url: &str, max_secs: u32) -> Vec<String> {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"node-test","version":"1"}}}"#;
    [
        "-sS",
        "-i",
        "-m",
        &max_secs.to_string(),
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-H",
        "accept: application/json, text/event-stream",
        "--data",
        body,
        url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn answer(o: &std::process::Output) -> Answer {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let retry_after = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("retry-after")
            .then(|| v.trim().to_string())
    });
    Answer {
        status,
        retry_after,
        body: body.to_string(),
        exit: o.status.code(),
    }
}

/// `n` concurrent `initialize` requests through the gateway, each with up to `max_secs`.
fn initialize_all(n: &Node, url: &str, count: usize, max_secs: u32) -> Vec<Answer> {
    let args = initialize_args(url, max_secs);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let children: Vec<_> = (0..count).map(|_| n.curl_spawn(&args)).collect();
    children
        .into_iter()
        .map(|c| answer(&c.wait_with_output().expect("curl output")))
        .collect()
}

fn gateway_owns_replicas(e: &Env, ns: &str, name: &str) -> (bool, bool) {
    let o = e.kubectl(&[
        "get",
        "deployment",
        name,
        "-n",
        ns,
        "-o",
        "json",
        "--show-managed-fields",
    ]);
    let d: Json = serde_json::from_slice(&o.stdout).unwrap_or(Json::Null);
    let owns = |want: &dyn Fn(&str) -> bool| {
        d["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| {
                want(m["manager"].as_str().unwrap_or(""))
                    && m.pointer("/fieldsV1/f:spec/f:replicas").is_some()
            })
    };
    (
        owns(&|m| m == "hangar-gateway"),
        owns(&|m| m != "hangar-gateway"),
    )
}

/// `replicas: 0` really starts on the first request and stops after `idleTTL`: 20 concurrent
/// first requests to a Cold server are held while the gateway scales its Deployment to 1 and
/// the pod comes up on the real node, and all are answered; after `idleTTL` without a request
/// the gateway scales it back to 0 and status says Cold; requests arriving just as it stops
/// wake it again, none lost; only the gateway's field manager owns `spec.replicas`. A server
/// whose image never runs gives every held request a 503 with `Retry-After` within its
/// `startupTimeout`. A gateway killed mid-wake: the client sees its connection closed without
/// an answer, and its retry to the restarted gateway is answered.
#[test]
fn an_on_demand_server_starts_on_its_first_request_and_stops_when_idle() {
    let Some(n) = node() else { return };
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let e = n.e;
    e.crds();
    let ns = e.namespace("node-cold", true);
    let ctl = n.controller_with(
        &ns,
        "node-cold",
        &["--gateway-url", "http://hangar-core.mcp-system.svc:8080/"],
    );
    e.apply_yaml(&n.on_demand(&ns, "cold", "hangar.test/mcp-python:1", "15s", "90s"));
    wait_for("cold is Cold", Duration::from_secs(60), || {
        assert!(ctl.alive(), "controller died:\n{}", ctl.log_tail());
        let s = n.server(&ns, "cold");
        (s["status"]["state"] == "Cold" && n.replicas(&ns, "cold") == Some(0)).then_some(())
    });
    // Created at 0 and handed over: the gateway's manager owns the count (hangar's shares it
    // until the gateway first changes it, which takes it whole).
    assert!(gateway_owns_replicas(e, &ns, "cold").0);
    let (gw, addr) = node_gateway(&n, &ns, "node-cold-gateway");
    // A second replica that gets no request: it must not stop the server while the first one
    // sees activity (which that one records on the Deployment), and the two stop it once.
    let (_gw2, addr2) = node_gateway(&n, &ns, "node-cold-gateway-b");
    let url = format!("http://{addr}/servers/{ns}/cold/mcp");

    // 20 concurrent first requests: held, then all answered.
    let t0 = Instant::now();
    let answers = initialize_all(&n, &url, 20, 120);
    let first = t0.elapsed();
    // The idle clock runs from the last answer.
    let t1 = Instant::now();
    for a in &answers {
        assert_eq!(a.status, 200, "{} (curl exit {:?})", a.body, a.exit);
        assert!(a.body.contains("\"result\""), "{}", a.body);
    }
    eprintln!("20 concurrent first requests to a Cold server, all answered in {first:?}");
    assert_eq!(n.replicas(&ns, "cold"), Some(1));
    let s = wait_for("cold Ready", Duration::from_secs(60), || {
        let s = n.server(&ns, "cold");
        (s["status"]["state"] == "Ready").then_some(s)
    });
    assert!(s["status"]["lastStartedAt"].is_string(), "{s}");
    assert_eq!(
        s["status"]["gatewayEndpoint"],
        format!("http://hangar-core.mcp-system.svc:8080/servers/{ns}/cold/mcp").as_str(),
        "{s}"
    );
    // The gateway's scale took the count whole; the controller applied since and does not own it.
    assert_eq!(gateway_owns_replicas(e, &ns, "cold"), (true, false));

    // Idle for idleTTL (15s): scaled to 0, status Cold with lastStoppedAt.
    wait_for(
        "cold scaled to 0 when idle",
        Duration::from_secs(60),
        || (n.replicas(&ns, "cold") == Some(0)).then_some(()),
    );
    eprintln!(
        "idle stop {:?} after the last request (idleTTL 15s)",
        t1.elapsed()
    );
    assert!(
        t1.elapsed() >= Duration::from_secs(14),
        "{:?}",
        t1.elapsed()
    );
    let s = wait_for("cold Cold again", Duration::from_secs(60), || {
        let s = n.server(&ns, "cold");
        (s["status"]["state"] == "Cold").then_some(s)
    });
    assert!(s["status"]["lastStoppedAt"].is_string(), "{s}");
    let stops = |a: &str| -> u64 {
        let m = n.curl(&["-fsS", &format!("http://{a}/metrics")]);
        String::from_utf8_lossy(&m.stdout)
            .lines()
            .filter(|l| {
                l.starts_with("hangar_gateway_idle_stops_total{") && l.contains("name=\"cold\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(
        stops(&addr) + stops(&addr2),
        1,
        "one idle stop between the two replicas"
    );
    let metrics = n.curl(&["-fsS", &format!("http://{addr}/metrics")]);
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("hangar_gateway_cold_start_duration_seconds_count{"),
        "{metrics}"
    );

    // Wake it, then send requests the moment the next idle stop lands (its pod terminating).
    let a = initialize_all(&n, &url, 1, 120);
    assert_eq!(a[0].status, 200, "{}", a[0].body);
    wait_for("cold stopping again", Duration::from_secs(60), || {
        (n.replicas(&ns, "cold") == Some(0)).then_some(())
    });
    let answers = initialize_all(&n, &url, 5, 120);
    for a in &answers {
        assert_eq!(
            a.status, 200,
            "during scale-down: {} (curl exit {:?})",
            a.body, a.exit
        );
    }
    assert_eq!(n.replicas(&ns, "cold"), Some(1));

    // A server whose image never runs: every held request gets the 503 within startupTimeout.
    e.apply_yaml(&n.on_demand(&ns, "never", "hangar.test/does-not-exist:1", "15s", "8s"));
    wait_for("never is Cold", Duration::from_secs(60), || {
        (n.server(&ns, "never")["status"]["state"] == "Cold").then_some(())
    });
    let never = format!("http://{addr}/servers/{ns}/never/mcp");
    let t2 = Instant::now();
    let answers = initialize_all(&n, &never, 3, 60);
    let waited = t2.elapsed();
    for a in &answers {
        assert_eq!(a.status, 503, "{}", a.body);
        assert!(a.retry_after.is_some(), "no Retry-After: {}", a.body);
        assert!(a.body.contains("-32008"), "{}", a.body);
    }
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_secs(20),
        "503 after {waited:?} (startupTimeout 8s)"
    );

    // A gateway killed mid-wake: the client sees the connection closed with no answer; its
    // retry, to the restarted gateway, is answered.
    wait_for("cold idle again", Duration::from_secs(90), || {
        (n.replicas(&ns, "cold") == Some(0)).then_some(())
    });
    n.wait_pods_gone(&ns, "cold", Duration::from_secs(60));
    let args = initialize_args(&url, 120);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let held = n.curl_spawn(&args);
    std::thread::sleep(Duration::from_millis(700));
    drop(gw);
    let cut = answer(&held.wait_with_output().expect("curl output"));
    eprintln!(
        "a held request when its gateway stops: HTTP {} curl exit {:?}",
        cut.status, cut.exit
    );
    assert_eq!(cut.status, 0, "answered: {}", cut.body);
    assert_ne!(cut.exit, Some(0));
    let (_gw, addr) = node_gateway(&n, &ns, "node-cold-gateway2");
    let url = format!("http://{addr}/servers/{ns}/cold/mcp");
    let retry = initialize_all(&n, &url, 1, 120);
    assert_eq!(retry[0].status, 200, "the retry: {}", retry[0].body);

    drop(ctl);
    let o = e.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    assert!(o.status.success(), "{}", text(&o));
}

/// The benchmark of `benches/cold-start.sh` (ignored in the test run): WAKES wakes of an
/// on-demand server (the Python SDK image), each from 0 replicas with its pod gone: the first
/// request's time to its answer, the pod's own Ready time (seen by a watch, to the
/// millisecond), and the added delay between the two, as medians.
#[test]
#[ignore]
fn cold_start_figures() {
    let Some(n) = node() else { return };
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let e = n.e;
    let wakes: usize = std::env::var("WAKES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    e.crds();
    let ns = e.namespace("bench-cold", true);
    let ctl = n.controller(&ns, "bench-cold");
    e.apply_yaml(&n.on_demand(&ns, "cold", "hangar.test/mcp-python:1", "1h", "90s"));
    wait_for("cold is Cold", Duration::from_secs(60), || {
        assert!(ctl.alive(), "controller died:\n{}", ctl.log_tail());
        (n.server(&ns, "cold")["status"]["state"] == "Cold").then_some(())
    });
    let (_gw, addr) = node_gateway(&n, &ns, "bench-cold-gateway");
    let url = format!("http://{addr}/servers/{ns}/cold/mcp");
    let (mut total, mut ready, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..wakes {
        // From 0 with the pod gone (as the idle stop leaves it).
        e.k(&["scale", "deployment", "cold", "-n", &ns, "--replicas=0"]);
        n.wait_pods_gone(&ns, "cold", Duration::from_secs(90));
        wait_for("no ready endpoint", Duration::from_secs(30), || {
            let eps = e.k(&[
                "get",
                "endpointslices",
                "-n",
                &ns,
                "-l",
                "kubernetes.io/service-name=cold",
                "-o",
                "jsonpath={.items[*].endpoints[*].addresses}",
            ]);
            eps.trim().is_empty().then_some(())
        });
        // A watch on the pods, its events stamped as they arrive.
        let mut watch = Command::new(e.bin.join("kubectl"))
            .args(["get", "pods", "-n", &ns, "-l", "mcp-hangar.io/server=cold", "--watch", "-o", "jsonpath={.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}"])
            .env("KUBECONFIG", &e.kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl watch");
        let out = watch.stdout.take().expect("watch stdout");
        let (tx, rx) = std::sync::mpsc::channel::<Instant>();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if line.trim_end().ends_with("True") {
                    let _ = tx.send(Instant::now());
                    return;
                }
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        let a = initialize_all(&n, &url, 1, 120);
        let answered = Instant::now();
        assert_eq!(a[0].status, 200, "wake {i}: {}", a[0].body);
        let pod_ready = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the pod's Ready event");
        let _ = watch.kill();
        let _ = watch.wait();
        total.push(answered - t0);
        ready.push(pod_ready - t0);
        added.push(answered.saturating_duration_since(pod_ready));
        eprintln!(
            "wake {i}: answered {:?}, pod Ready {:?}, added {:?}",
            answered - t0,
            pod_ready - t0,
            answered.saturating_duration_since(pod_ready)
        );
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let p90 = |v: &Vec<Duration>| v[(v.len() * 9 / 10).min(v.len() - 1)];
    let (mt, mr, ma) = (median(&mut total), median(&mut ready), median(&mut added));
    eprintln!(
        "cold start over {wakes} wakes: first answer p50 {mt:?} (p90 {:?}); pod Ready p50 {mr:?}; added by the gateway p50 {ma:?} (p90 {:?})",
        p90(&total),
        p90(&added)
    );
    drop(ctl);
    let _ = e.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// `kubectl logs` and `kubectl exec` on a pod of the real node: the API server reaches the
/// kubelet (TLS both ways, authorized by webhook) through its egress into the node's network
/// namespace (deploy/testenv/node.sh).
#[test]
fn kubectl_logs_and_exec_reach_a_pod_on_the_real_node() {
    let Some(n) = node() else { return };
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let e = n.e;
    let ns = e.namespace("node-logs", false);
    // ServiceAccount admission rejects a pod until kcm made the namespace's `default` account.
    wait_for("serviceaccount default", Duration::from_secs(60), || {
        e.get("serviceaccount", &ns, "default")
    });
    e.apply_yaml(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: echo\n  namespace: {ns}\nspec:\n  containers:\n  - name: mcp\n    image: hangar.test/mcp-python:1\n    imagePullPolicy: Never\n{}",
        n.placement()
    ));
    let o = e.kubectl(&[
        "wait",
        "pod/echo",
        "-n",
        &ns,
        "--for=condition=Ready",
        "--timeout=120s",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = e.kubectl(&["logs", "echo", "-n", &ns]);
    assert!(o.status.success(), "kubectl logs: {}", text(&o));
    wait_for(
        "the server's startup in its log",
        Duration::from_secs(30),
        || {
            let o = e.kubectl(&["logs", "echo", "-n", &ns]);
            String::from_utf8_lossy(&o.stdout)
                .contains("Uvicorn running on http://0.0.0.0:8000")
                .then_some(())
        },
    );
    // A process in the container, as the image's user.
    let o = e.kubectl(&[
        "exec",
        "echo",
        "-n",
        &ns,
        "--",
        "/usr/bin/python3",
        "-c",
        "import os; print(os.getuid())",
    ]);
    assert!(o.status.success(), "kubectl exec: {}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "65532",
        "{}",
        text(&o)
    );
    let o = e.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    assert!(o.status.success(), "{}", text(&o));
}
