//! Faults against the real control plane: the API server restarted while the controller
//! reconciles (and how much it logs meanwhile), a stored resource the controller cannot
//! deserialize, and a leader paused past its lease. These change the whole cluster, so they run
//! one at a time, in their own test binary (after tests/cluster.rs).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::{
    Controller, ControllerOpts, env, http_get, text, wait_for, wait_state, wait_state_of,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn server(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  mode: container\n  image: ghcr.io/example/{name}:1.0.0\n"
    )
}

#[test]
fn apiserver_restart_mid_reconcile_converges() {
    let Some(e) = env() else { return };
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let ctl = e.controller();
    let ns = e.namespace("restart", false);
    let docs: Vec<String> = (0..12).map(|i| server(&ns, &format!("s{i:02}"))).collect();
    e.apply_yaml(&docs.join("---\n"));
    // Down while the controller is creating their children.
    e.restart_apiserver(4);
    for i in 0..12 {
        wait_state(
            e,
            &ns,
            &format!("s{i:02}"),
            "Ready",
            Duration::from_secs(180),
        );
    }
    assert!(ctl.alive(), "controller died:\n{}", ctl.log_tail());
    assert_eq!(http_get(&ctl.metrics, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(http_get(&ctl.metrics, "/readyz").map(|r| r.0), Some(200));
    // Every server has all four children.
    let deps = e.k(&["get", "deployments", "-n", &ns, "-o", "name"]);
    assert_eq!(deps.lines().count(), 12, "{deps}");
}

#[test]
fn a_resource_that_does_not_deserialize_does_not_stop_the_others() {
    let Some(e) = env() else { return };
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let ctl = e.controller();
    let ns = e.namespace("baddata", false);
    // Store an object the real schema would refuse: loosen the CRD, create it, restore the CRD.
    let crd: Json =
        serde_json::from_str(&e.k(&["get", "crd", "mcpservers.mcp-hangar.io", "-o", "json"]))
            .expect("crd json");
    let mut loose = crd.clone();
    loose["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("resourceVersion");
    let spec = &mut loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    *spec = serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    if let Some(v) = loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"].as_object_mut() {
        v.remove("x-kubernetes-validations");
    }
    let o = e.kubectl_in(&["replace", "-f", "-"], &loose.to_string());
    assert!(o.status.success(), "loosen CRD: {}", text(&o));
    let bad = format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: broken\n  namespace: {ns}\nspec:\n  mode: container\n  image: 42\n  replicas: many\n  healthCheck: yes please\n"
    );
    wait_for("bad object stored", Duration::from_secs(30), || {
        let o = e.kubectl_in(&["create", "-f", "-"], &bad);
        o.status.success().then_some(())
    });
    e.apply_crds();
    // The controller keeps serving the others.
    e.apply_yaml(&server(&ns, "fine"));
    wait_state(e, &ns, "fine", "Ready", Duration::from_secs(90));
    // The broken one says why: a Warning Event, and its status when the API server lets it be
    // written (it validates the whole stored object on a status write, CEL rules included).
    let msg = wait_for(
        "InvalidSpec event on the broken server",
        Duration::from_secs(60),
        || {
            let ev = e.k(&[
                "get",
                "events",
                "-n",
                &ns,
                "--field-selector",
                "involvedObject.name=broken,type=Warning,reason=InvalidSpec",
                "-o",
                "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
            ]);
            (!ev.trim().is_empty()).then_some(ev)
        },
    );
    assert!(msg.contains("replicas"), "{msg}");
    assert!(ctl.alive(), "controller died:\n{}", ctl.log_tail());
    // No Deployment was made from it.
    assert!(e.get("deployment", &ns, "broken").is_none());
}

/// A TCP relay on loopback in front of the API server that records when each chunk of bytes
/// from the client arrived: what a controller sent, and when, seen from outside the process.
struct Relay {
    addr: SocketAddr,
    sent: Arc<Mutex<Vec<(Instant, usize)>>>,
}

impl Relay {
    fn start(upstream: SocketAddr) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").expect("relay listen");
        let addr = l.local_addr().expect("relay addr");
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(client) = c else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (mut from_client, mut to_server) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    loop {
                        match from_client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                log.lock().expect("log").push((Instant::now(), n));
                                if to_server.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = to_server.shutdown(std::net::Shutdown::Write);
                });
                let (mut from_server, mut to_client) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Relay { addr, sent }
    }

    /// Chunks (count, bytes) the client sent at or after `t`.
    fn sent_since(&self, t: Instant) -> (usize, usize) {
        let s = self.sent.lock().expect("log");
        let after: Vec<usize> = s.iter().filter(|(at, _)| *at >= t).map(|c| c.1).collect();
        (after.len(), after.iter().sum())
    }
}

/// The test kubeconfig's server: its text, and its address.
fn apiserver(e: &support::Env) -> (String, SocketAddr) {
    let kc = std::fs::read_to_string(&e.kubeconfig).expect("kubeconfig");
    let server = kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .map(|s| s.trim().trim_matches('"').to_string())
        .expect("a server in the kubeconfig");
    let hostport = server.trim_start_matches("https://").trim_end_matches('/');
    let addr = hostport.parse().expect("the server is https://IP:PORT");
    (server, addr)
}

/// A copy of the test kubeconfig with the server at `addr` (the TLS name stays 127.0.0.1).
fn kubeconfig_via(e: &support::Env, addr: SocketAddr, name: &str) -> std::path::PathBuf {
    let kc = std::fs::read_to_string(&e.kubeconfig).expect("kubeconfig");
    let dir = e.root.join("target/tmp");
    std::fs::create_dir_all(&dir).expect("target/tmp");
    let path = dir.join(format!("{name}-{}.kubeconfig", std::process::id()));
    std::fs::write(
        &path,
        kc.replace(&apiserver(e).0, &format!("https://{addr}")),
    )
    .expect("write kubeconfig");
    path
}

fn signal(pid: u32, sig: &str) {
    let o = Command::new("kill")
        .args([sig, &pid.to_string()])
        .output()
        .expect("run kill");
    assert!(o.status.success(), "kill {sig} {pid}: {}", text(&o));
}

/// Split brain: a leader paused (SIGSTOP) longer than its lease, while another takes over,
/// sends nothing to the API server once resumed (its requests pass through a relay that
/// records them), and exits with the lost-lease status.
#[test]
fn a_leader_paused_past_its_lease_sends_nothing_when_it_resumes() {
    let Some(e) = env() else { return };
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    e.crds();
    let ns = e.namespace("fence", false);
    let lease = format!("fence-{}", std::process::id());
    let args = [
        "--namespace",
        &ns,
        "--leader-elect",
        "--leader-election-namespace",
        &ns,
        "--leader-election-lease-name",
        &lease,
        "--leader-election-lease-duration",
        "4s",
    ];
    let relay = Relay::start(apiserver(e).1);
    let via_relay = kubeconfig_via(e, relay.addr, "fence-old");
    let old = Controller::spawn(
        e,
        &ControllerOpts {
            kubeconfig: Some(&via_relay),
            args: &args,
            name: "fence-old",
            ..Default::default()
        },
    );
    let t = Duration::from_secs(60);
    wait_for("the first controller leads", t, || {
        assert!(old.alive(), "exited:\n{}", old.log_tail());
        (old.metric("hangar_leader ") == 1.0).then_some(())
    });
    let new = Controller::spawn(
        e,
        &ControllerOpts {
            kubeconfig: None,
            args: &args,
            name: "fence-new",
            ..Default::default()
        },
    );
    new.wait_ready(t);
    assert_eq!(new.metric("hangar_leader "), 0.0);
    // The old leader at work, through the relay.
    let docs: Vec<String> = (0..4).map(|i| server(&ns, &format!("a{i}"))).collect();
    e.apply_yaml(&docs.join("---\n"));
    for i in 0..4 {
        wait_state_of(e, &old, &ns, &format!("a{i}"), "Ready", t);
    }
    assert!(
        relay
            .sent_since(Instant::now() - Duration::from_secs(3600))
            .0
            > 0
    );
    let before_burst = old.metric("hangar_api_writes_total");

    // Paused past its lease in the middle of work (the reconciles of new servers in flight,
    // resumed with it): the other takes over and does that work.
    let docs: Vec<String> = (0..30).map(|i| server(&ns, &format!("b{i:02}"))).collect();
    e.apply_yaml(&docs.join("---\n"));
    wait_for("the old leader reconciling", t, || {
        (old.metric("hangar_api_writes_total") > before_burst).then_some(())
    });
    let stopped = Instant::now();
    signal(old.pid(), "-STOP");
    let took_over = wait_for("the second controller leads", t, || {
        (new.metric("hangar_leader ") == 1.0).then(|| stopped.elapsed())
    });
    eprintln!("takeover {took_over:?} after the pause (lease 4 s)");
    for i in 0..30 {
        wait_state_of(e, &new, &ns, &format!("b{i:02}"), "Ready", t);
    }
    // More the old leader's watches will tell it about when it resumes.
    e.k(&["delete", "mcpserver", "a0", "-n", &ns, "--wait=false"]);
    e.apply_yaml(&server(&ns, "c0"));
    std::thread::sleep(Duration::from_secs(1));

    let resumed = Instant::now();
    signal(old.pid(), "-CONT");
    let status = wait_for("the old leader exits", Duration::from_secs(30), || {
        old.child.lock().ok()?.try_wait().ok().flatten()
    });
    let exited = resumed.elapsed();
    // Let the relay's threads record anything still in flight.
    std::thread::sleep(Duration::from_secs(2));
    let log = std::fs::read_to_string(&old.log).unwrap_or_default();
    let (after_chunks, after_bytes) = relay.sent_since(resumed);
    let paused_chunks = relay.sent_since(stopped + Duration::from_millis(500)).0 - after_chunks;
    eprintln!(
        "old leader: exit {:?} {exited:?} after SIGCONT; chunks sent during the pause {paused_chunks}, after SIGCONT {after_chunks} ({after_bytes} bytes); refused by the fence: {}",
        status.code(),
        log.split("fenced_requests=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("?")
    );
    assert_eq!(status.code(), Some(3), "old leader's log:\n{log}");
    assert!(log.contains("lost the leader lease"), "{log}");
    assert_eq!(
        (after_chunks, after_bytes),
        (0, 0),
        "the old leader sent to the API server after it resumed:\n{log}"
    );
    assert_eq!(paused_chunks, 0, "{log}");
    // The new leader goes on.
    assert!(new.alive(), "{}", new.log_tail());
    assert_eq!(new.metric("hangar_leader "), 1.0);
    wait_for("a0 deleted", t, || {
        e.get("mcpserver", &ns, "a0").is_none().then_some(())
    });
    wait_state_of(e, &new, &ns, "c0", "Ready", t);
    // The fake node holds 110 pods: leave room for the other tests.
    e.k(&["delete", "namespace", &ns, "--wait=false"]);
}

/// An API server outage with many servers reconciling is logged once when it starts and once
/// when it ends, not per object, and everything converges after it.
#[test]
fn an_apiserver_outage_is_logged_once_not_per_object() {
    let Some(e) = env() else { return };
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    e.crds();
    let ns = e.namespace("outage", false);
    let ctl = Controller::spawn(
        e,
        &ControllerOpts {
            kubeconfig: None,
            args: &["--namespace", &ns, "--log-level", "info"],
            name: "outage",
            ..Default::default()
        },
    );
    ctl.wait_ready(Duration::from_secs(60));
    const N: usize = 40;
    const DOWN: u32 = 10;
    let docs: Vec<String> = (0..N).map(|i| server(&ns, &format!("o{i:02}"))).collect();
    let before = std::fs::read_to_string(&ctl.log)
        .unwrap_or_default()
        .lines()
        .count();
    e.apply_yaml(&docs.join("---\n"));
    // Down while the controller creates their children.
    let down = Instant::now();
    e.restart_apiserver(DOWN);
    let back = down.elapsed();
    // Everything applied after it, then Ready. (The test cluster's node-monitor grace period is
    // long, so the fake node's lease, unrenewed while the API server is down, does not get its
    // pods marked unready; see deploy/testenv/cluster.sh.)
    wait_for("every server applied", Duration::from_secs(240), || {
        let list: Json =
            serde_json::from_str(&e.k(&["get", "mcpservers", "-n", &ns, "-o", "json"])).ok()?;
        let applied = list["items"]
            .as_array()?
            .iter()
            .filter(|s| {
                s["status"]["observedGeneration"] == s["metadata"]["generation"]
                    && s["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter().any(|c| {
                            c["type"] == "Reconciled"
                                && c["status"] == "True"
                                && c["reason"] == "Applied"
                        })
                    })
            })
            .count();
        (applied == N).then_some(())
    });
    assert_eq!(
        e.k(&["get", "deployments", "-n", &ns, "-o", "name"])
            .lines()
            .count(),
        N
    );
    let applied = down.elapsed();
    // Ready, every one.
    let ready_count = || {
        e.k(&[
            "get",
            "mcpservers",
            "-n",
            &ns,
            "-o",
            "jsonpath={.items[*].status.state}",
        ])
        .split_whitespace()
        .filter(|s| *s == "Ready")
        .count()
    };
    let until = Instant::now() + Duration::from_secs(90);
    while ready_count() < N && Instant::now() < until {
        std::thread::sleep(Duration::from_secs(1));
    }
    let ready = ready_count();
    let converged = down.elapsed();
    let log = std::fs::read_to_string(&ctl.log).unwrap_or_default();
    let during: Vec<&str> = log.lines().skip(before).collect();
    let loud: Vec<&&str> = during
        .iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    // kube's watch streams say once each that their connection broke: per watch, not per object.
    let ours = loud.iter().filter(|l| l.contains(" hangar::")).count();
    let watches = loud.iter().filter(|l| l.contains("eof in poll")).count();
    eprintln!(
        "{N} servers, API server down {DOWN} s (back after {back:?}), all applied after {applied:?}, {ready} Ready after {converged:?}: {} log lines, {} WARN/ERROR ({ours} hangar's, {watches} kube's broken watches); outages counted: {}",
        during.len(),
        loud.len(),
        ctl.metric("hangar_apiserver_outages_total")
    );
    for l in &loud {
        eprintln!("  {}", l.chars().take(240).collect::<String>());
    }
    assert!(ctl.alive(), "controller died:\n{}", ctl.log_tail());
    assert!(
        log.contains("API server unreachable") && log.contains("API server reachable again"),
        "{}",
        during.join("\n")
    );
    assert!(
        ours <= 4 && loud.len() - watches <= 6,
        "{} WARN/ERROR lines for one outage:\n{}",
        loud.len(),
        during.join("\n")
    );
    assert!((1.0..=2.0).contains(&ctl.metric("hangar_apiserver_outages_total")));
    assert_eq!(
        ready, N,
        "servers Ready {converged:?} after the outage began"
    );
    e.k(&["delete", "namespace", &ns, "--wait=false"]);
}
