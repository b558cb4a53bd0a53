//! Against the real control plane (deploy/testenv, `--full`: kube-controller-manager, scheduler
//! and kwok): hangar apply, the API server's own validation and PodSecurity admission, and the
//! controller (status, owner GC, recreation, rollouts, render == applied).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value as Json;
use support::{Controller, ControllerOpts, contained, env, state_of, text, wait_for, wait_state};

const T: Duration = Duration::from_secs(90);

fn server(ns: &str, name: &str, extra: &str) -> String {
    format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    team: t\nspec:\n  mode: container\n  image: ghcr.io/example/mcp-{name}:1.0.0\n{extra}"
    )
}

fn uid(o: &Json) -> String {
    o.pointer("/metadata/uid")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn apply_examples_is_idempotent_and_diff_cluster_agrees() {
    let Some(e) = env() else { return };
    // With the controller running (as in production), the children it takes over get its owner
    // references once; after that, a second apply must change nothing.
    e.controller();
    let first = e.hangar(&["apply", "examples/", "--install-crds"]);
    assert!(first.status.success(), "{}", text(&first));
    wait_for("the controller owns every child of the examples", T, || {
        ["default", "mcp-servers", "mcp-config", "mcp-system"]
            .iter()
            .all(|ns| {
                let list: Option<Json> = serde_json::from_str(&e.k(&[
                    "get",
                    "deployments,services,serviceaccounts,networkpolicies",
                    "-n",
                    ns,
                    "-l",
                    "app.kubernetes.io/managed-by=hangar",
                    "-o",
                    "json",
                ]))
                .ok();
                list.as_ref()
                    .and_then(|l| l["items"].as_array())
                    .is_some_and(|items| {
                        items
                            .iter()
                            .all(|i| i["metadata"]["ownerReferences"].is_array())
                    })
            })
            .then_some(())
    });
    // Objects without a status keep their resourceVersion on a no-op apply. A Deployment's changes
    // as its pods start (and an HPA scales it), so the times of hangar's own managedFields entries
    // stand in for it: any write by hangar or its controller moves them.
    let versions = |e: &support::Env| {
        let q1 = |ns: &str, kinds: &str, field: &str| {
            e.k(&[
                "get",
                kinds,
                "-n",
                ns,
                "-l",
                "app.kubernetes.io/managed-by=hangar",
                "-o",
                &format!("jsonpath={{range .items[*]}}{{.kind}}/{{.metadata.namespace}}/{{.metadata.name}}={{{field}}}{{\"\\n\"}}{{end}}"),
            ])
        };
        // Only the examples' namespaces: other tests run at the same time.
        let q = |kinds: &str, field: &str| {
            ["default", "mcp-servers", "mcp-config", "mcp-system"]
                .iter()
                .map(|ns| q1(ns, kinds, field))
                .collect::<String>()
        };
        q(
            "services,serviceaccounts,networkpolicies",
            ".metadata.resourceVersion",
        ) + &q(
            "deployments",
            ".metadata.managedFields[?(@.manager==\"hangar\")].time}/{.metadata.managedFields[?(@.manager==\"hangar-controller\")].time",
        )
    };
    let before = versions(e);
    assert!(before.lines().count() > 30, "{before}");
    let again = e.hangar(&["apply", "examples/", "--install-crds"]);
    assert!(again.status.success(), "{}", text(&again));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("0 created, 0 configured"),
        "second apply changed something:\n{}",
        text(&again)
    );
    assert_eq!(
        before,
        versions(e),
        "resourceVersions churned on a no-op apply"
    );
    let diff = e.hangar(&["diff", "--cluster", "examples/"]);
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff));
    // A changed input shows up in diff --cluster as a change, with exit 1 (a copy of the
    // examples, so nothing else of the inventory looks removed).
    let dir = e
        .root
        .join(format!("target/tmp/examples-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp dir");
    for f in std::fs::read_dir(e.root.join("examples")).expect("examples") {
        let p = f.expect("entry").path();
        let t = std::fs::read_to_string(&p).expect("read");
        let t = if p.ends_with("basic-server.yaml") {
            t.replace("replicas: 1", "replicas: 2")
        } else {
            t
        };
        std::fs::write(dir.join(p.file_name().expect("name")), t).expect("write");
    }
    let dir_s = dir.display().to_string();
    let d = e.hangar(&["diff", "--cluster", &dir_s]);
    assert_eq!(d.status.code(), Some(1), "{}", text(&d));
    let out = String::from_utf8_lossy(&d.stdout);
    assert!(out.contains("+  replicas: 2"), "{}", text(&d));
    assert!(
        String::from_utf8_lossy(&d.stderr).contains(" 0 removed"),
        "diff shows removals: {}",
        text(&d)
    );
    // --dry-run writes nothing.
    let dry = e.hangar(&["apply", "--dry-run", &dir_s]);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("would be configured"),
        "{}",
        text(&dry)
    );
    assert_eq!(before, versions(e), "--dry-run wrote");
}

#[test]
fn api_server_rejects_invalid_resources() {
    let Some(e) = env() else { return };
    e.crds();
    let ns = e.namespace("invalid", false);
    let cases = [
        (
            "no-image",
            "spec:\n  mode: container\n",
            "image is required",
        ),
        (
            "no-endpoint",
            "spec:\n  mode: remote\n",
            "endpoint is required",
        ),
        (
            "bad-mode",
            "spec:\n  mode: sidecar\n  image: a/b:1\n",
            "Unsupported value: \"sidecar\"",
        ),
        (
            "bad-duration",
            "spec:\n  mode: container\n  image: a/b:1\n  startupTimeout: 30 seconds\n",
            "startupTimeout",
        ),
        (
            "bad-replicas",
            "spec:\n  mode: container\n  image: a/b:1\n  replicas: -1\n",
            "replicas",
        ),
        (
            "Bad.Name",
            "spec:\n  mode: container\n  image: a/b:1\n",
            "metadata.name",
        ),
    ];
    for (name, spec, want) in cases {
        let doc = format!(
            "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: {name}\n  namespace: {ns}\n{spec}"
        );
        let o = e.kubectl_in(&["apply", "--server-side", "-f", "-"], &doc);
        assert!(!o.status.success(), "{name} was accepted:\n{doc}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{name}: expected {want:?} in:\n{err}");
    }
}

#[test]
fn restricted_namespace_runs_hangar_pods_and_status_reaches_ready() {
    let Some(e) = env() else { return };
    let ctl = e.controller();
    let ns = e.namespace("restricted", true);
    // PodSecurity admission is on: a privileged pod is refused here.
    let bad = e.kubectl(&[
        "run",
        "priv",
        "-n",
        &ns,
        "--image=busybox",
        "--privileged",
        "--dry-run=server",
    ]);
    assert!(
        !bad.status.success(),
        "privileged pod accepted: {}",
        text(&bad)
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("violates PodSecurity"));

    e.apply_yaml(&server(&ns, "alpha", "  replicas: 2\n"));
    wait_state(e, &ns, "alpha", "Ready", T);
    let s = e.get("mcpserver", &ns, "alpha").expect("server");
    assert_eq!(s.pointer("/status/readyReplicas"), Some(&Json::from(2)));
    assert_eq!(
        s.pointer("/status/observedGeneration"),
        s.pointer("/metadata/generation")
    );
    let conds = s
        .pointer("/status/conditions")
        .and_then(Json::as_array)
        .expect("conditions");
    let ready = conds.iter().find(|c| c["type"] == "Ready").expect("Ready");
    assert_eq!(ready["status"], "True");
    let pods = e.k(&[
        "get",
        "pods",
        "-n",
        &ns,
        "-l",
        "mcp-hangar.io/server=alpha",
        "-o",
        "name",
    ]);
    assert_eq!(pods.lines().count(), 2, "{pods}");
    // Transitions are Events on the server.
    let events = e.k(&[
        "get",
        "events",
        "-n",
        &ns,
        "--field-selector",
        "involvedObject.name=alpha",
        "-o",
        "jsonpath={range .items[*]}{.reason} {end}",
    ]);
    assert!(events.contains("Ready"), "events: {events}");
    assert!(ctl.metric("mcp_operator_reconcile_total{kind=\"MCPServer\"") >= 1.0);
    assert!(ctl.metrics_text().contains(&format!(
        "mcp_operator_provider_state{{namespace=\"{ns}\",name=\"alpha\",state=\"Ready\"}} 1"
    )));

    // Scaling to zero is Cold.
    e.k(&[
        "patch",
        "mcpserver",
        "alpha",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        "{\"spec\":{\"replicas\":0}}",
    ]);
    wait_state(e, &ns, "alpha", "Cold", T);
}

#[test]
fn what_the_controller_applies_equals_hangar_render() {
    let Some(e) = env() else { return };
    e.controller();
    let ns = e.namespace("same", true);
    let doc = server(
        &ns,
        "beta",
        "  port: 3000\n  env:\n    - name: MODE\n      value: fast\n  resources:\n    requests:\n      cpu: 50m\n      memory: 64Mi\n  hpa:\n    enabled: true\n    minReplicas: 1\n    maxReplicas: 3\n  podDisruptionBudget:\n    enabled: true\n    minAvailable: 1\n",
    );
    e.apply_yaml(&doc);
    wait_state(e, &ns, "beta", "Ready", T);
    let r = e.hangar_in(&["render", "-o", "json", "-"], &doc);
    assert!(r.status.success(), "{}", text(&r));
    let list: Json = serde_json::from_slice(&r.stdout).expect("render json");
    let items = list["items"].as_array().expect("items");
    let mut rendered_children = BTreeSet::new();
    let mut problems = Vec::new();
    for it in items.iter().filter(|i| i["kind"] != "MCPServer") {
        let kind = it["kind"].as_str().unwrap_or_default();
        let name = it["metadata"]["name"].as_str().unwrap_or_default();
        rendered_children.insert(format!("{kind}/{name}"));
        let live = e
            .get(kind, &ns, name)
            .unwrap_or_else(|| panic!("{kind}/{name} rendered but not in the cluster"));
        contained(it, &live, &format!("{kind}/{name}"), &mut problems);
        // The controller's children carry an owner reference to the server.
        let owner = &live["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "MCPServer", "{kind}/{name}");
        assert_eq!(owner["controller"], true);
    }
    assert!(
        problems.is_empty(),
        "cluster differs from render:\n{}",
        problems.join("\n")
    );
    // And nothing more: every child the controller made is rendered.
    let live = e.k(&[
        "get",
        "deployments,services,serviceaccounts,networkpolicies,horizontalpodautoscalers,poddisruptionbudgets",
        "-n", &ns, "-l", "mcp-hangar.io/server=beta", "-o",
        "jsonpath={range .items[*]}{.kind}/{.metadata.name}{\"\\n\"}{end}",
    ]);
    let live: BTreeSet<String> = live.lines().map(str::to_string).collect();
    assert_eq!(live, rendered_children);
}

#[test]
fn deleted_children_come_back_spec_edits_roll_and_delete_cleans_up() {
    let Some(e) = env() else { return };
    e.controller();
    let ns = e.namespace("life", false);
    e.apply_yaml(&server(&ns, "gamma", ""));
    wait_state(e, &ns, "gamma", "Ready", T);

    // Deleting a child brings it back (a new object).
    let svc = e.get("service", &ns, "gamma").expect("service");
    e.k(&["delete", "service", "gamma", "-n", &ns, "--wait=true"]);
    let back = wait_for("service recreated", T, || {
        e.get("service", &ns, "gamma")
            .filter(|s| uid(s) != uid(&svc))
    });
    assert_eq!(back["metadata"]["labels"]["mcp-hangar.io/server"], "gamma");
    let dep = e.get("deployment", &ns, "gamma").expect("deployment");
    e.k(&["delete", "deployment", "gamma", "-n", &ns, "--wait=true"]);
    wait_for("deployment recreated", T, || {
        e.get("deployment", &ns, "gamma")
            .filter(|d| uid(d) != uid(&dep))
    });
    wait_state(e, &ns, "gamma", "Ready", T);

    // Editing the spec rolls the Deployment: new config hash, new ReplicaSet.
    let dep = e.get("deployment", &ns, "gamma").expect("deployment");
    let hash = |d: &Json| {
        d["spec"]["template"]["metadata"]["annotations"]["mcp-hangar.io/config-hash"].clone()
    };
    e.k(&[
        "patch",
        "mcpserver",
        "gamma",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        "{\"spec\":{\"env\":[{\"name\":\"LEVEL\",\"value\":\"debug\"}]}}",
    ]);
    let rolled = wait_for("deployment rolled", T, || {
        e.get("deployment", &ns, "gamma")
            .filter(|d| hash(d) != hash(&dep))
    });
    let env0 = &rolled["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(env0.to_string().contains("LEVEL"), "{env0}");
    wait_for("two replicasets", T, || {
        (e.names("rs", &ns, "mcp-hangar.io/server=gamma").len() == 2).then_some(())
    });
    wait_state(e, &ns, "gamma", "Ready", T);

    // Turning on the PDB adds it; turning it off prunes it.
    e.k(&[
        "patch",
        "mcpserver",
        "gamma",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        "{\"spec\":{\"podDisruptionBudget\":{\"enabled\":true,\"minAvailable\":1}}}",
    ]);
    wait_for("pdb", T, || e.get("pdb", &ns, "gamma"));
    e.k(&[
        "patch",
        "mcpserver",
        "gamma",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        "{\"spec\":{\"podDisruptionBudget\":{\"enabled\":false}}}",
    ]);
    wait_for("pdb pruned", T, || {
        e.get("pdb", &ns, "gamma").is_none().then_some(())
    });

    // Deleting the server removes everything it owned (owner GC).
    e.k(&["delete", "mcpserver", "gamma", "-n", &ns]);
    wait_for("children garbage-collected", T, || {
        let left = e.k(&[
            "get",
            "deployments,services,serviceaccounts,networkpolicies,replicasets,pods",
            "-n",
            &ns,
            "-l",
            "mcp-hangar.io/server=gamma",
            "-o",
            "name",
        ]);
        left.trim().is_empty().then_some(())
    });
}

#[test]
fn prune_deletes_only_what_hangar_applied() {
    let Some(e) = env() else { return };
    e.crds();
    let ns = e.namespace("prune", false);
    let inv = format!("--inventory=prune-{ns}");
    let two = format!(
        "{}---\n{}",
        server(&ns, "keep", ""),
        server(&ns, "drop", "")
    );
    let o = e.hangar_in(&["apply", &inv, "-"], &two);
    assert!(o.status.success(), "{}", text(&o));
    // Hand-made objects with similar names, one even with hangar's managed-by label.
    e.apply_yaml(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: drop\n  namespace: {ns}\ndata: {{a: b}}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: drop-extra\n  namespace: {ns}\n  labels:\n    app.kubernetes.io/managed-by: hangar\n    mcp-hangar.io/server: drop\nspec:\n  ports: [{{port: 80}}]\n"
    ));
    // Without --prune nothing is deleted.
    let o = e.hangar_in(&["apply", &inv, "-"], &server(&ns, "keep", ""));
    assert!(o.status.success(), "{}", text(&o));
    assert!(e.get("deployment", &ns, "drop").is_some());
    // With --prune (dry run first) only the objects of `drop` go.
    let dry = e.hangar_in(
        &["apply", &inv, "--prune", "--dry-run", "-"],
        &server(&ns, "keep", ""),
    );
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        String::from_utf8_lossy(&dry.stdout)
            .contains(&format!("Deployment/{ns}/drop would be pruned")),
        "{}",
        text(&dry)
    );
    assert!(e.get("deployment", &ns, "drop").is_some());
    let o = e.hangar_in(&["apply", &inv, "--prune", "-"], &server(&ns, "keep", ""));
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("MCPServer/{ns}/drop pruned")),
        "{}",
        text(&o)
    );
    for k in ["deployment", "service", "serviceaccount", "networkpolicy"] {
        wait_for(&format!("{k} drop gone"), T, || {
            e.get(k, &ns, "drop").is_none().then_some(())
        });
    }
    wait_for("drop deleted", T, || {
        e.get("deployment", &ns, "drop").is_none().then_some(())
    });
    assert!(e.get("mcpserver", &ns, "drop").is_none());
    assert!(e.get("deployment", &ns, "keep").is_some());
    assert!(
        e.get("configmap", &ns, "drop").is_some(),
        "hand-made ConfigMap deleted"
    );
    assert!(
        e.get("service", &ns, "drop-extra").is_some(),
        "hand-made Service deleted"
    );
}

#[test]
fn requeues_of_an_unchanged_server_send_nothing_for_its_children() {
    let Some(e) = env() else { return };
    let ns = e.namespace("idle", false);
    // A controller of its own (its counters are this namespace's), requeueing every 2 s.
    let ctl = Controller::spawn(
        e,
        &ControllerOpts {
            kubeconfig: None,
            args: &["--namespace", &ns, "--resync", "2s"],
            name: "idle",
            ..Default::default()
        },
    );
    ctl.wait_ready(T);
    e.apply_yaml(&server(&ns, "calm", ""));
    wait_state(e, &ns, "calm", "Ready", T);
    let count = |result: &str| {
        ctl.metric(&format!(
            "hangar_child_applies_total{{result=\"{result}\"}}"
        ))
    };
    // Settled: the last status change re-applied once, then requeues skip.
    wait_for("a skipped apply", T, || {
        (count("skipped") >= 8.0).then_some(())
    });
    let (asked, skipped) = (count("unchanged") + count("written"), count("skipped"));
    std::thread::sleep(Duration::from_secs(7));
    let (asked2, skipped2) = (count("unchanged") + count("written"), count("skipped"));
    assert_eq!(
        asked2,
        asked,
        "requeues of an unchanged server asked the API server again:\n{}",
        ctl.metrics_text()
    );
    assert!(skipped2 >= skipped + 8.0, "{skipped} -> {skipped2}");
    // A child deleted behind its back is noticed (its watch says so) and asked about again:
    // written by this controller, or found re-created (by the suite's shared controller, which
    // watches every namespace) and unchanged; never skipped.
    e.k(&["delete", "service", "calm", "-n", &ns]);
    wait_for("the Service back", T, || e.get("service", &ns, "calm"));
    wait_for("the deleted child asked about again", T, || {
        (count("unchanged") + count("written") > asked2).then_some(())
    });
}

#[test]
fn foreign_fields_that_change_what_runs_are_reported() {
    let Some(e) = env() else { return };
    let _ctl = e.controller();
    let ns = e.namespace("foreign", false);
    e.apply_yaml(&server(&ns, "echo", ""));
    wait_state(e, &ns, "echo", "Ready", T);
    // Fields hangar does not set: applied by another manager without any conflict.
    let intruder = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: echo\n  namespace: {ns}\nspec:\n  template:\n    spec:\n      securityContext:\n        runAsUser: 0\n      containers:\n      - name: miner\n        image: evil/miner:1\n"
    );
    let intrude = |yaml: &str| {
        let o = e.kubectl_in(
            &[
                "apply",
                "--server-side",
                "--field-manager=intruder",
                "-f",
                "-",
            ],
            yaml,
        );
        assert!(o.status.success(), "{}", text(&o));
    };
    intrude(&intruder);
    let nsr = ns.as_str();
    let condition = |status: &'static str| {
        move || {
            let s = e.get("mcpserver", nsr, "echo")?;
            s.pointer("/status/conditions")?
                .as_array()?
                .iter()
                .find(|c| c["type"] == "ForeignChanges" && c["status"] == status)
                .cloned()
        }
    };
    let cond = wait_for("ForeignChanges=True", T, condition("True"));
    let msg = cond["message"].as_str().unwrap_or_default();
    for want in [
        "container `miner` (image evil/miner:1) added",
        "securityContext.runAsUser: 0",
        "by intruder",
    ] {
        assert!(msg.contains(want), "{want:?} not in {msg}");
    }
    let events = wait_for("a ForeignChanges Warning", T, || {
        let ev = e.k(&[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector",
            "involvedObject.name=echo,type=Warning,reason=ForeignChanges",
            "-o",
            "jsonpath={range .items[*]}{.message}{end}",
        ]);
        (!ev.is_empty()).then_some(ev)
    });
    assert!(events.contains("miner"), "{events}");
    // Reported, not fought: the other manager's fields stay until it (or a user) removes them.
    let d = e.get("deployment", &ns, "echo").expect("deployment");
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(Vec::len);
    assert_eq!(containers, Some(2));
    // The intruder's fields gone (its apply now sets nothing): the condition turns False.
    let gone = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: echo\n  namespace: {ns}\n"
    );
    intrude(&gone);
    wait_for("ForeignChanges=False", T, condition("False"));
    assert_eq!(state_of(e, &ns, "echo").as_deref(), Some("Ready"));
}

#[test]
fn foreign_field_manager_conflict_is_reported_not_overwritten() {
    let Some(e) = env() else { return };
    let ctl = e.controller();
    let ns = e.namespace("conflict", false);
    e.apply_yaml(&server(&ns, "delta", ""));
    wait_state(e, &ns, "delta", "Ready", T);
    let intruder = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: delta\n  namespace: {ns}\nspec:\n  template:\n    spec:\n      containers:\n      - name: mcp\n        image: evil/override:6.6.6\n"
    );
    let o = e.kubectl_in(
        &[
            "apply",
            "--server-side",
            "--field-manager=intruder",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &intruder,
    );
    assert!(o.status.success(), "{}", text(&o));
    let cond = wait_for("Reconciled=False/Conflict", T, || {
        let s = e.get("mcpserver", &ns, "delta")?;
        let c = s
            .pointer("/status/conditions")?
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Reconciled" && c["reason"] == "Conflict")?
            .clone();
        Some(c)
    });
    assert!(
        cond["message"]
            .as_str()
            .unwrap_or_default()
            .contains("intruder"),
        "{cond}"
    );
    let d = e.get("deployment", &ns, "delta").expect("deployment");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"], "evil/override:6.6.6",
        "the controller overwrote a field another manager owns"
    );
    let events = e.k(&[
        "get",
        "events",
        "-n",
        &ns,
        "--field-selector",
        "involvedObject.name=delta,type=Warning",
        "-o",
        "jsonpath={range .items[*]}{.reason} {end}",
    ]);
    assert!(events.contains("Conflict"), "events: {events}");
    // A reconcile that ends in a Conflict is not counted as ok.
    let conflicts =
        "mcp_operator_reconcile_total{kind=\"MCPServer\",result=\"error\",category=\"conflict\"}";
    wait_for("a reconcile counted as a conflict", T, || {
        (ctl.metric(conflicts) >= 1.0).then_some(())
    });
}

#[test]
fn remote_server_follows_its_real_mcp_endpoint() {
    let Some(e) = env() else { return };
    let Some(mcp) = support::mcp_servers() else {
        return;
    };
    e.controller();
    let ns = e.namespace("remote", false);
    let port = support::free_tcp_port();
    let server = mcp.python_on("streamable-http", port);
    let doc = format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: far\n  namespace: {ns}\nspec:\n  mode: remote\n  endpoint: http://127.0.0.1:{port}/mcp\n  startupTimeout: 20s\n  healthCheck:\n    interval: 2s\n    timeout: 1s\n    failureThreshold: 2\n"
    );
    e.apply_yaml(&doc);
    wait_state(e, &ns, "far", "Ready", T);
    // The probe's findings are in status: tools, protocol, transport, server info.
    let s = e.get("mcpserver", &ns, "far").expect("server");
    let st = &s["status"];
    assert_eq!(st["toolsCount"], 2, "{st}");
    let tools: BTreeSet<&str> = st["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Json::as_str)
        .collect();
    assert_eq!(tools, BTreeSet::from(["add", "echo"]), "{st}");
    assert_eq!(st["validation"]["compliant"], true, "{st}");
    assert_eq!(st["validation"]["transport"], "streamable-http", "{st}");
    assert!(
        st["validation"]["protocolVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{st}"
    );
    assert!(
        st["validation"]["capabilities"]
            .to_string()
            .contains("tools"),
        "{st}"
    );
    // Stopping the server: Degraded, then Dead at the threshold; restarting brings it back.
    drop(server);
    wait_state(e, &ns, "far", "Degraded", T);
    wait_state(e, &ns, "far", "Dead", T);
    let _server = mcp.python_on("streamable-http", port);
    wait_state(e, &ns, "far", "Ready", T);
    // One Event per transition, each naming where it came from: the second Ready is not folded
    // into the first.
    let notes = wait_for("an Event for Dead -> Ready", T, || {
        let notes = e.k(&[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector",
            "involvedObject.name=far",
            "-o",
            "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
        ]);
        notes.contains("Dead -> Ready").then_some(notes)
    });
    // Checks run off the reconcile path: a new server is Initializing until its first one is in.
    for from_to in [
        "new -> Initializing",
        "Initializing -> Ready",
        "Ready -> Degraded",
        "Degraded -> Dead",
    ] {
        assert!(
            notes.contains(from_to),
            "no `{from_to}` in the Events:\n{notes}"
        );
    }
}

/// A loopback listener that accepts connections and never answers (holding at most 256 of them)
/// for `secs` seconds: what a hung server looks like to its health check.
fn silent_listener(secs: u64) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    l.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let end = std::time::Instant::now() + Duration::from_secs(secs);
        let mut held = Vec::new();
        while std::time::Instant::now() < end {
            match l.accept() {
                Ok((c, _)) if held.len() < 256 => held.push(c),
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    port
}

/// Health checks run off the reconcile path: servers whose endpoint accepts and never answers
/// (each check waits out its 30 s timeout) do not slow the others, even with 2 reconcile workers
/// for 6 hung servers; no reconcile waits on a probe; and once settled the checks that go on
/// re-apply nothing.
#[test]
fn hung_health_checks_do_not_slow_the_other_servers() {
    let Some(e) = env() else { return };
    let Some(mcp) = support::mcp_servers() else {
        return;
    };
    e.crds();
    let ns = e.namespace("hung", false);
    let ctl = Controller::spawn(
        e,
        &ControllerOpts {
            kubeconfig: None,
            args: &["--namespace", &ns, "--concurrency", "2"],
            name: "hung",
            ..Default::default()
        },
    );
    ctl.wait_ready(T);
    let silent = silent_listener(240);
    let port = support::free_tcp_port();
    let _server = mcp.python_on("streamable-http", port);
    let remote = |name: &str, port: u16, timeout: &str| {
        format!(
            "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  mode: remote\n  endpoint: http://127.0.0.1:{port}/mcp\n  startupTimeout: 60s\n  healthCheck:\n    interval: 2s\n    timeout: {timeout}\n    failureThreshold: 2\n---\n"
        )
    };
    let hung: Vec<String> = (0..6).map(|i| format!("hung-{i}")).collect();
    let fine: Vec<String> = (0..6).map(|i| format!("fine-{i}")).collect();
    e.apply_yaml(
        &hung
            .iter()
            .map(|n| remote(n, silent, "30s"))
            .collect::<String>(),
    );
    // Their first checks are under way (and hang) before the healthy servers exist.
    std::thread::sleep(Duration::from_secs(2));
    // Ready as this controller sees it (its own metric: the suite's shared controller, which
    // watches every namespace, may be reconciling the same servers).
    let ready_here = |n: &str| {
        ctl.metric(&format!(
            "mcp_operator_provider_state{{namespace=\"{ns}\",name=\"{n}\",state=\"Ready\"}}"
        )) == 1.0
    };
    let t0 = std::time::Instant::now();
    e.apply_yaml(
        &fine
            .iter()
            .map(|n| remote(n, port, "2s"))
            .collect::<String>(),
    );
    while !fine.iter().all(|n| ready_here(n)) {
        assert!(
            t0.elapsed() < T,
            "the healthy servers not Ready:\n{}\n{}",
            ctl.metrics_text()
                .lines()
                .filter(|l| l.starts_with("mcp_operator_provider_state") && l.ends_with(" 1"))
                .collect::<Vec<_>>()
                .join("\n"),
            ctl.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let converged = t0.elapsed();
    eprintln!("6 healthy servers Ready {converged:?} after their apply, beside 6 hung ones");
    // Behind the hung checks that would take their 30 s timeout at least.
    assert!(
        converged < Duration::from_secs(15),
        "the healthy servers waited behind the hung checks: {converged:?}\n{}",
        ctl.log_tail()
    );
    for n in &hung {
        assert!(!ready_here(n), "{n} is Ready");
    }
    // The hung checks end in their timeout and say so, in the hung servers' status.
    wait_for("a hung check's finding in status", T, || {
        let s = e.get("mcpserver", &ns, "hung-0")?;
        let m = s
            .pointer("/status/conditions/0/message")?
            .as_str()?
            .to_string();
        (!m.contains("no health check yet")).then_some(m)
    });
    // No reconcile waited on a probe: every one took under 8.192 s, where one waiting on a hung
    // check would take its 30 s (not a timing claim: a loaded 2-core machine has seen a reconcile
    // take over a second; those figures belong in benches/).
    let count = ctl.metric("mcp_operator_reconcile_duration_seconds_count{kind=\"MCPServer\"}");
    let fast: f64 = ctl
        .metrics_text()
        .lines()
        .filter(|l| l.starts_with("mcp_operator_reconcile_duration_seconds_bucket{"))
        .filter(|l| l.contains("kind=\"MCPServer\"") && l.contains("le=\"8.192\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(count > 0.0, "{}", ctl.metrics_text());
    assert_eq!(
        fast,
        count,
        "a reconcile took 8 s or more:\n{}",
        ctl.metrics_text()
    );
    // Settled: the checks go on (every 2 s) and ask the API server nothing about children.
    let asked = || {
        ctl.metric("hangar_child_applies_total{result=\"unchanged\"}")
            + ctl.metric("hangar_child_applies_total{result=\"written\"}")
    };
    let before = asked();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(asked(), before, "health checks re-applied children");
    for n in &fine {
        assert!(ready_here(n), "{n} no longer Ready");
    }
}

/// `--namespace A --namespace B`: one controller, a watch per namespace merged into one cache,
/// reconciles servers and groups in both and nothing in a third. Its own metrics say what it
/// reconciled (the shared cluster-wide controller of the other tests may be running too).
#[test]
fn a_controller_of_several_namespaces_reconciles_in_each_and_nowhere_else() {
    let Some(e) = env() else { return };
    e.crds();
    let (a, b, c) = (
        e.namespace("multi-a", false),
        e.namespace("multi-b", false),
        e.namespace("multi-c", false),
    );
    let ctl = Controller::spawn(
        e,
        &ControllerOpts {
            kubeconfig: None,
            args: &["--namespace", &a, "--namespace", &b],
            name: "multi-ns",
            ..Default::default()
        },
    );
    ctl.wait_ready(T);
    for n in [&a, &b, &c] {
        e.apply_yaml(&server(n, "one", ""));
    }
    e.apply_yaml(&format!(
        "{}---\napiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServerGroup\nmetadata:\n  name: pool\n  namespace: {b}\nspec:\n  selector:\n    matchLabels:\n      team: t\n",
        server(&b, "two", "  replicas: 0\n"),
    ));
    support::wait_state_of(e, &ctl, &a, "one", "Ready", T);
    support::wait_state_of(e, &ctl, &b, "one", "Ready", T);
    support::wait_state_of(e, &ctl, &b, "two", "Cold", T);
    let reconciled = |ns: &str| {
        ctl.metrics_text().lines().any(|l| {
            l.starts_with("mcp_operator_provider_state{")
                && l.contains(&format!("namespace=\"{ns}\""))
        })
    };
    wait_for("its metrics of both namespaces", T, || {
        (reconciled(&a) && reconciled(&b)).then_some(())
    });
    wait_for("the group in b counts its members", T, || {
        let g = e.get("mcpservergroup", &b, "pool")?;
        (g.pointer("/status/readyCount") == Some(&Json::from(1))
            && g.pointer("/status/coldCount") == Some(&Json::from(1)))
        .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(!reconciled(&c), "{}", ctl.metrics_text());
    assert!(ctl.alive(), "{}", ctl.log_tail());
    drop(ctl);
    e.k(&["delete", "namespace", &a, &b, &c, "--wait=false"]);
}

#[test]
fn group_counts_its_members_and_gets_a_service() {
    let Some(e) = env() else { return };
    e.controller();
    let ns = e.namespace("group", false);
    e.apply_yaml(&format!(
        "{}---\n{}---\napiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServerGroup\nmetadata:\n  name: pool\n  namespace: {ns}\nspec:\n  selector:\n    matchLabels:\n      team: t\n  strategy: Failover\n  healthPolicy:\n    minHealthyPercentage: 50\n",
        server(&ns, "one", ""),
        server(&ns, "two", "  replicas: 0\n"),
    ));
    wait_state(e, &ns, "one", "Ready", T);
    wait_state(e, &ns, "two", "Cold", T);
    let g = wait_for("group status", T, || {
        let g = e.get("mcpservergroup", &ns, "pool")?;
        (g.pointer("/status/readyCount") == Some(&Json::from(1))
            && g.pointer("/status/coldCount") == Some(&Json::from(1)))
        .then_some(g)
    });
    assert_eq!(
        g.pointer("/status/providerCount"),
        Some(&Json::from(2)),
        "{g}"
    );
    assert_eq!(g.pointer("/status/healthy"), Some(&Json::from(true)), "{g}");
    assert_eq!(
        g.pointer("/status/activeStrategy"),
        Some(&Json::from("Failover"))
    );
    let svc = e.get("service", &ns, "pool").expect("group service");
    assert_eq!(
        svc["metadata"]["ownerReferences"][0]["kind"],
        "MCPServerGroup"
    );
    assert_eq!(svc["spec"]["selector"]["team"], "t");
    // Scaling the ready member to zero leaves the group unhealthy.
    e.k(&[
        "patch",
        "mcpserver",
        "one",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        "{\"spec\":{\"replicas\":0}}",
    ]);
    wait_for("group unhealthy", T, || {
        let g = e.get("mcpservergroup", &ns, "pool")?;
        (g.pointer("/status/healthy") == Some(&Json::from(false))).then_some(())
    });
}

#[test]
fn apply_reports_conflicts_and_forces_only_when_asked() {
    let Some(e) = env() else { return };
    e.crds();
    let ns = e.namespace("conflict-cli", false);
    let inv = format!("--inventory=cli-{ns}");
    let cm = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {ns}\ndata:\n  level: info\n"
    );
    let o = e.hangar_in(&["apply", &inv, "-"], &cm);
    assert!(o.status.success(), "{}", text(&o));
    let o = e.kubectl_in(
        &[
            "apply",
            "--server-side",
            "--field-manager=intruder",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &cm.replace("level: info", "level: debug"),
    );
    assert!(o.status.success(), "{}", text(&o));
    // hangar does not take the field back silently...
    let o = e.hangar_in(&["apply", &inv, "-"], &cm);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("conflict") && err.contains("intruder") && err.contains(".data.level"),
        "{err}"
    );
    let live = e.get("configmap", &ns, "settings").expect("configmap");
    assert_eq!(live["data"]["level"], "debug");
    // ...only when asked.
    let o = e.hangar_in(&["apply", &inv, "--force-conflicts", "-"], &cm);
    assert!(o.status.success(), "{}", text(&o));
    let live = e.get("configmap", &ns, "settings").expect("configmap");
    assert_eq!(live["data"]["level"], "info");
}

#[test]
fn strict_mode_holds_a_server_missing_required_capabilities() {
    let Some(e) = env() else { return };
    let Some(mcp) = support::mcp_servers() else {
        return;
    };
    e.controller();
    let ns = e.namespace("strict", false);
    let port = support::free_tcp_port();
    let _server = mcp.python_on("streamable-http", port);
    // The Python SDK server announces tools, resources and prompts, not completions.
    let doc = format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: picky\n  namespace: {ns}\nspec:\n  mode: remote\n  endpoint: http://127.0.0.1:{port}/mcp\n  healthCheck:\n    interval: 2s\n  validation:\n    strictMode: true\n    requiredCapabilities: [tools, completions]\n"
    );
    e.apply_yaml(&doc);
    wait_state(e, &ns, "picky", "Dead", T);
    let s = e.get("mcpserver", &ns, "picky").expect("server");
    let ready = s["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned())
        .expect("Ready condition");
    assert_eq!(ready["reason"], "NonCompliant", "{ready}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("completions"),
        "{ready}"
    );
    assert_eq!(
        s["status"]["validation"]["compliant"], false,
        "{}",
        s["status"]
    );
    // Requiring only what it has releases it.
    e.k(&[
        "patch",
        "mcpserver",
        "picky",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        "{\"spec\":{\"validation\":{\"requiredCapabilities\":[\"tools\"]}}}",
    ]);
    wait_state(e, &ns, "picky", "Ready", T);
}

#[test]
fn probe_sends_the_auth_header_from_a_secret_and_never_shows_it() {
    let Some(e) = env() else { return };
    let Some(mcp) = support::mcp_servers() else {
        return;
    };
    let ctl = e.controller();
    let ns = e.namespace("auth", false);
    let port = support::free_tcp_port();
    let token = "tok-0d5e7c1f9a";
    let mut cmd = std::process::Command::new(&mcp.python);
    cmd.arg(&mcp.script)
        .arg("streamable-http-auth")
        .arg(port.to_string())
        .env("MCP_TOKEN", token);
    let _server = support::start_listening(cmd, port);
    // No Secret yet: the check fails and says which Secret is missing.
    let doc = format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: guarded\n  namespace: {ns}\nspec:\n  mode: remote\n  endpoint: http://127.0.0.1:{port}/mcp\n  healthCheck:\n    interval: 2s\n    timeout: 2s\n    failureThreshold: 2\n  validation:\n    auth:\n      secretRef:\n        name: mcp-token\n"
    );
    e.apply_yaml(&doc);
    let msg = wait_for("a Ready=False condition naming the Secret", T, || {
        let s = e.get("mcpserver", &ns, "guarded")?;
        let m = s["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready" && c["status"] == "False")?["message"]
            .as_str()?
            .to_string();
        m.contains("mcp-token").then_some(m)
    });
    assert!(msg.contains("not found"), "{msg}");
    // A wrong token: the server answers 401, reported as requiring auth.
    e.k(&[
        "create",
        "secret",
        "generic",
        "mcp-token",
        "-n",
        &ns,
        "--from-literal=token=wrong",
    ]);
    wait_for("requiresAuth in status", T, || {
        let s = e.get("mcpserver", &ns, "guarded")?;
        (s["status"]["validation"]["requiresAuth"] == true).then_some(())
    });
    // The right token: Ready, with the tools behind the auth.
    let patch = format!("{{\"stringData\":{{\"token\":\"{token}\"}}}}");
    e.k(&["patch", "secret", "mcp-token", "-n", &ns, "-p", &patch]);
    wait_state(e, &ns, "guarded", "Ready", T);
    let s = e.get("mcpserver", &ns, "guarded").expect("server");
    assert_eq!(s["status"]["toolsCount"], 2, "{}", s["status"]);
    // The token is in no status, Event or controller log line.
    let events = e.k(&["get", "events", "-n", &ns, "-o", "json"]);
    for (what, text) in [
        ("status", s["status"].to_string()),
        ("events", events),
        ("controller log", ctl.log_tail()),
    ] {
        assert!(!text.contains(token), "the token leaked into the {what}");
    }
}

#[test]
fn kubectl_get_shows_why_a_source_or_server_is_not_ready() {
    let Some(e) = env() else { return };
    e.controller();
    let ns = e.namespace("columns", false);
    e.apply_yaml(&format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata:\n  name: nocm\n  namespace: {ns}\nspec:\n  type: ConfigMap\n  configMapRef:\n    name: not-there\n---\n{}",
        server(&ns, "shown", "")
    ));
    wait_state(e, &ns, "shown", "Ready", T);
    // A source whose ConfigMap is missing does not look healthy in `kubectl get`.
    let row = wait_for("the source's row names its reason", T, || {
        let out = e.k(&["get", "mcpds", "-n", &ns, "nocm"]);
        out.contains("ConfigMapMissing").then_some(out)
    });
    let header = row.lines().next().unwrap_or_default();
    for col in ["READY", "REASON", "REVISION"] {
        assert!(header.contains(col), "no {col} column:\n{row}");
    }
    assert!(row.contains("False"), "{row}");
    let wide = e.k(&["get", "mcpds", "-n", &ns, "nocm", "-o", "wide"]);
    assert!(
        wide.lines().next().unwrap_or_default().contains("MESSAGE"),
        "{wide}"
    );
    let servers = e.k(&["get", "mcpservers", "-n", &ns, "shown"]);
    assert!(
        servers
            .lines()
            .next()
            .unwrap_or_default()
            .contains("REASON"),
        "{servers}"
    );
    assert!(servers.contains("Available"), "{servers}");
}

#[test]
fn apply_with_a_kind_the_cluster_lacks_applies_nothing() {
    let Some(e) = env() else { return };
    e.crds();
    let ns = e.namespace("nokind", false);
    // A bundle whose custom resources have no CRD: today's 404 after the children were made.
    let input = format!(
        "{}---\napiVersion: widgets.example.com/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: {ns}\nspec: {{}}\n",
        server(&ns, "orphan", "")
    );
    let o = e.hangar_in(&["apply", &format!("--inventory=nokind-{ns}"), "-"], &input);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("widgets.example.com/v1/Widget"), "{err}");
    assert!(err.contains("nothing was applied"), "{err}");
    assert!(!err.contains("Status {"), "a raw API error dump: {err}");
    assert!(
        e.get("deployment", &ns, "orphan").is_none(),
        "children were made"
    );
    assert!(e.get("mcpserver", &ns, "orphan").is_none());
}

#[test]
fn a_spec_change_after_hangar_apply_rolls_out_under_the_controller() {
    let Some(e) = env() else { return };
    e.controller();
    let ns = e.namespace("handover", false);
    let inv = format!("--inventory=handover-{ns}");
    // `hangar apply` writes the server and its children as field manager `hangar`...
    let o = e.hangar_in(&["apply", &inv, "-"], &server(&ns, "echo", ""));
    assert!(o.status.success(), "{}", text(&o));
    wait_state(e, &ns, "echo", "Ready", T);
    // ...then an edit, applied the same way, must reach the Deployment the controller owns.
    let edited = server(&ns, "echo", "").replace(":1.0.0", ":2.0.0");
    let o = e.hangar_in(&["apply", &inv, "-"], &edited);
    assert!(o.status.success(), "{}", text(&o));
    let image = |d: &Json| d["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    wait_for("the new image in the Deployment", T, || {
        let d = e.get("deployment", &ns, "echo")?;
        (image(&d) == "ghcr.io/example/mcp-echo:2.0.0").then_some(())
    });
    wait_state(e, &ns, "echo", "Ready", T);
    let s = e.get("mcpserver", &ns, "echo").expect("server");
    let reconciled = s["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Reconciled").cloned())
        .unwrap_or_default();
    assert_eq!(reconciled["status"], "True", "{reconciled}");
}

#[test]
fn apply_wait_blocks_until_ready_and_names_what_is_not() {
    // Issue 13: `hangar apply --wait [--timeout]`, as Flux and Helm users expect.
    let Some(e) = env() else { return };
    e.controller();
    let ns = e.namespace("wait", false);
    let inv = format!("--inventory=wait-{ns}");
    let cold = server(&ns, "idle", "  replicas: 0\n");
    let both = format!("{}---\n{cold}", server(&ns, "quick", "  replicas: 2\n"));
    let o = e.hangar_in(&["apply", &inv, "--wait", "--timeout=90s", "-"], &both);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("all 2 Ready"), "{}", text(&o));
    // When it returns, the servers are Ready (or Cold, asked for by replicas: 0).
    let state = |name: &str| {
        e.get("mcpserver", &ns, name)
            .and_then(|s| s["status"]["state"].as_str().map(str::to_string))
    };
    assert_eq!(state("quick").as_deref(), Some("Ready"));
    assert_eq!(state("idle").as_deref(), Some("Cold"));
    // A remote server nothing answers for: exit 1 within the timeout, naming it and why.
    let unreachable = format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: nowhere\n  namespace: {ns}\nspec:\n  mode: remote\n  endpoint: http://127.0.0.1:{}/mcp\n  startupTimeout: 2s\n  healthCheck:\n    interval: 1s\n    timeout: 1s\n",
        support::free_tcp_port()
    );
    let t0 = std::time::Instant::now();
    let o = e.hangar_in(
        &["apply", &inv, "--wait", "--timeout=8s", "-"],
        &unreachable,
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(t0.elapsed() < Duration::from_secs(40), "{:?}", t0.elapsed());
    assert!(
        out.contains(&format!(
            "not ready: mcp-hangar.io/v1alpha1/MCPServer {ns}/nowhere"
        )) || out.contains("not ready:") && out.contains("nowhere"),
        "{out}"
    );
    assert!(out.contains("1 of 1 not Ready within 8s"), "{out}");
    // A bad --timeout is a usage error, and --timeout needs --wait.
    let o = e.hangar_in(&["apply", &inv, "--wait", "--timeout=soon", "-"], &cold);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = e.hangar_in(&["apply", &inv, "--timeout=5s", "-"], &cold);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn prune_with_empty_inputs_is_refused_and_a_hand_edited_inventory_is_no_conflict() {
    // Issue 19.2.
    let Some(e) = env() else { return };
    e.crds();
    let ns = e.namespace("emptyprune", false);
    let inv = format!("--inventory=ep-{ns}");
    let o = e.hangar_in(&["apply", &inv, "-"], &server(&ns, "stays", ""));
    assert!(o.status.success(), "{}", text(&o));
    // Someone edits the inventory ConfigMap by hand (another field manager owns `data` now).
    let cm = format!("hangar-inventory-ep-{ns}");
    e.k(&[
        "patch",
        "configmap",
        &cm,
        "-n",
        "default",
        "--type=merge",
        "-p",
        "{\"data\":{\"objects\":\"v1 ConfigMap default not-ours\\n\"}}",
    ]);
    // ...a later --prune still works (hangar takes its record back)...
    let o = e.hangar_in(&["apply", &inv, "--prune", "-"], &server(&ns, "stays", ""));
    assert!(o.status.success(), "{}", text(&o));
    assert!(e.get("mcpserver", &ns, "stays").is_some());
    // ...inputs that render nothing do not prune everything unless asked...
    for empty in ["", "# nothing here\n"] {
        let o = e.hangar_in(&["apply", &inv, "--prune", "-"], empty);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("--allow-empty"), "{}", text(&o));
        assert!(
            e.get("mcpserver", &ns, "stays").is_some(),
            "{empty:?} pruned"
        );
    }
    // ...and when asked, they do.
    let o = e.hangar_in(&["apply", &inv, "--prune", "--allow-empty", "-"], "");
    assert!(o.status.success(), "{}", text(&o));
    wait_for("stays pruned", T, || {
        e.get("mcpserver", &ns, "stays").is_none().then_some(())
    });
}

/// One series of a scrape: name, labels, value.
type Series = (String, std::collections::BTreeMap<String, String>, f64);

/// `k="v",k2="v2"` (OpenMetrics escapes `\"`, `\\`, `\n`) as (key, op, value), the op `=` or
/// `!=` (selectors only).
fn label_pairs(s: &str) -> Option<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_at(rest.find(['=', '!'])?);
        let (op, after) = if let Some(a) = after.strip_prefix("!=") {
            ("!=", a)
        } else {
            ("=", after.strip_prefix('=')?)
        };
        let mut chars = after.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key.trim().to_string(), op.to_string(), value));
        rest = after[1 + end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim();
    }
    Some(out)
}

/// `name{labels} value` and `name value` lines of an OpenMetrics text (comments skipped).
fn scrape_series(text: &str) -> Vec<Series> {
    let mut out = Vec::new();
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, labels, value) = match l.split_once('{') {
            Some((name, rest)) => match rest.rsplit_once("} ") {
                Some((labels, value)) => (name, labels, value),
                None => continue,
            },
            None => match l.split_once(' ') {
                Some((name, value)) => (name, "", value),
                None => continue,
            },
        };
        let value = value.split(' ').next().and_then(|v| v.parse::<f64>().ok());
        let (Some(pairs), Some(value)) = (label_pairs(labels), value) else {
            panic!("unreadable scrape line {l:?}");
        };
        let labels = pairs.into_iter().map(|(k, _, v)| (k, v)).collect();
        out.push((name.to_string(), labels, value));
    }
    out
}

/// A dashboard selector of the fixture: name, label matchers, and the value a panel compares
/// the series to (`== 1`), if any.
#[derive(Debug)]
struct Selector {
    name: String,
    matchers: Vec<(String, String, String)>,
    equals: Option<f64>,
}

impl Selector {
    fn parse(s: &str) -> Option<Selector> {
        let (sel, equals) = match s.split_once("==") {
            Some((sel, v)) => (sel.trim(), Some(v.trim().parse::<f64>().ok()?)),
            None => (s.trim(), None),
        };
        let (name, matchers) = match sel.split_once('{') {
            Some((name, m)) => (name, label_pairs(m.strip_suffix('}')?)?),
            None => (sel, Vec::new()),
        };
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        name_ok.then(|| Selector {
            name: name.to_string(),
            matchers,
            equals,
        })
    }

    /// PromQL's matching: `=` an equal value (a missing label is ""), `!=` a different one.
    fn matches(&self, (name, labels, value): &Series) -> bool {
        *name == self.name
            && self.matchers.iter().all(|(k, op, v)| {
                let have = labels.get(k).map(String::as_str).unwrap_or("");
                (op == "=") == (have == v)
            })
            && self.equals.is_none_or(|want| *value == want)
    }
}

/// The fixture's lines: (unserved, where, selector).
fn dashboard_selectors() -> Vec<(bool, String, Selector)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/metrics/seed-002-dashboard.selectors"
    );
    let text = std::fs::read_to_string(path).expect("the selectors fixture");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (place, sel) = l
                .split_once(" | ")
                .unwrap_or_else(|| panic!("no ` | ` in {l:?}"));
            let selector = Selector::parse(sel).unwrap_or_else(|| panic!("bad selector in {l:?}"));
            let unserved = place.starts_with("unserved ");
            let place = place.trim_start_matches("unserved ").to_string();
            (unserved, place, selector)
        })
        .collect()
}

/// The fixture and the matching read what they should (no cluster needed).
#[test]
fn dashboard_selectors_parse_and_match_as_promql_does() {
    let all = dashboard_selectors();
    assert!(all.len() >= 40, "{}", all.len());
    assert!(all.iter().any(|(u, w, _)| !u && w.starts_with("panel 310")));
    let s = Selector::parse(r#"mcpserver_phase{phase="Failed",name!="x"} == 1"#).expect("parse");
    assert_eq!(s.name, "mcpserver_phase");
    assert_eq!(s.equals, Some(1.0));
    let scrape = scrape_series(
        "# TYPE mcpserver_phase gauge\nmcpserver_phase{namespace=\"n\",name=\"a\",phase=\"Failed\"} 1\nmcpserver_phase{namespace=\"n\",name=\"x\",phase=\"Failed\"} 1\nmcpserver_phase{namespace=\"n\",name=\"b\",phase=\"Failed\"} 0\nhangar_leader 1\n# EOF\n",
    );
    assert_eq!(scrape.len(), 4);
    assert_eq!(scrape.iter().filter(|x| s.matches(x)).count(), 1);
    let any = Selector::parse("hangar_leader").expect("parse");
    assert_eq!(scrape.iter().filter(|x| any.matches(x)).count(), 1);
    let esc = scrape_series("m{v=\"a\\\"b,c}\"} 2\n");
    assert_eq!(esc[0].1.get("v").map(String::as_str), Some("a\"b,c}"));
}

/// Seed 002's dashboard counts: servers Running (one with an HPA), Pending, Failed and
/// ValidationFailed, compliant and not, under a controller of their namespace alone (its
/// scrape shows nothing else).
struct Seed002Fleet {
    ctl: Controller,
    ns: String,
    _mcp: support::Proc,
}

fn seed_002_fleet(e: &'static support::Env, base: &str) -> Option<Seed002Fleet> {
    let mcp = support::mcp_servers()?;
    e.crds();
    let ns = e.namespace(base, false);
    let ctl = Controller::spawn(
        e,
        &ControllerOpts {
            kubeconfig: None,
            args: &["--namespace", &ns],
            name: base,
            ..Default::default()
        },
    );
    ctl.wait_ready(T);
    let port = support::free_tcp_port();
    let mcp = mcp.python_on("streamable-http", port);
    let closed = support::free_tcp_port();
    let remote = |name: &str, extra: &str| {
        format!(
            "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  mode: remote\n  endpoint: http://127.0.0.1:{port}/mcp\n  startupTimeout: 20s\n  healthCheck:\n    interval: 2s\n    timeout: 2s\n    failureThreshold: 2\n{extra}"
        )
    };
    let docs = [
        server(&ns, "kept", "  replicas: 2\n"),
        server(
            &ns,
            "scaled",
            "  hpa:\n    enabled: true\n    minReplicas: 1\n    maxReplicas: 3\n",
        ),
        server(&ns, "cold", "  replicas: 0\n"),
        remote("far", ""),
        remote(
            "picky",
            "  validation:\n    strictMode: true\n    requiredCapabilities: [tools, completions]\n",
        ),
        remote("nowhere", "").replace(&format!(":{port}/"), &format!(":{closed}/")),
    ];
    e.apply_yaml(&docs.join("---\n"));
    for (name, state) in [
        ("kept", "Ready"),
        ("scaled", "Ready"),
        ("cold", "Cold"),
        ("far", "Ready"),
        ("picky", "Dead"),
        ("nowhere", "Dead"),
    ] {
        support::wait_state_of(e, &ctl, &ns, name, state, T);
    }
    Some(Seed002Fleet { ctl, ns, _mcp: mcp })
}

/// Polls `problems` (empty: done) until it is empty, or fails listing the last ones.
fn settle(what: &str, mut problems: impl FnMut() -> Vec<String>) {
    let start = std::time::Instant::now();
    loop {
        let p = problems();
        if p.is_empty() {
            return;
        }
        assert!(start.elapsed() < T, "{what} after {T:?}:\n{}", p.join("\n"));
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A series a test wants: name, its exact label set, its value (None: any value >= 1).
type Wanted = (&'static str, Vec<(&'static str, String)>, Option<f64>);

/// Issue 15.4: the controller's `/metrics` serves seed 002's series (vitorbari/mcp-operator
/// e591f60, `internal/metrics/metrics.go`, `pkg/validator/metrics.go`) with its names, types,
/// label names and label values, from servers that are really Running, Pending, Failed and
/// ValidationFailed.
#[test]
fn seed_002_series_have_its_names_types_labels_and_values() {
    let Some(e) = env() else { return };
    let Some(f) = seed_002_fleet(e, "seed2-series") else {
        return;
    };
    let ns = f.ns.as_str();
    let version = e
        .get("mcpserver", ns, "far")
        .and_then(|s| {
            s.pointer("/status/validation/protocolVersion")?
                .as_str()
                .map(str::to_string)
        })
        .expect("far's protocol version");
    let server_of = |name: &str, more: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        let mut l = vec![("namespace", ns.to_string()), ("name", name.to_string())];
        l.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
        l
    };
    // (name, exact label set, value; None: any value >= 1)
    let mut want: Vec<Wanted> = Vec::new();
    for (name, ready, phase, compliant) in [
        ("kept", 1.0, "Running", -1.0),
        ("scaled", 1.0, "Running", -1.0),
        ("cold", 0.0, "Pending", -1.0),
        ("far", 1.0, "Running", 1.0),
        ("picky", 0.0, "ValidationFailed", 0.0),
        ("nowhere", 0.0, "Failed", 0.0),
    ] {
        want.push(("mcpserver_ready_total", server_of(name, &[]), Some(ready)));
        for p in [
            "Pending",
            "Creating",
            "Running",
            "Scaling",
            "Updating",
            "Failed",
            "ValidationFailed",
            "Terminating",
        ] {
            let v = f64::from(u8::from(p == phase));
            want.push(("mcpserver_phase", server_of(name, &[("phase", p)]), Some(v)));
        }
        want.push((
            "mcpserver_validation_compliant",
            server_of(name, &[]),
            Some(compliant),
        ));
        let hpa = f64::from(u8::from(name == "scaled"));
        want.push(("mcpserver_hpa_enabled", server_of(name, &[]), Some(hpa)));
    }
    for (name, replicas) in [("kept", 2.0), ("cold", 0.0)] {
        for m in ["mcpserver_replicas", "mcpserver_available_replicas"] {
            let l = server_of(name, &[("transport_type", "http")]);
            want.push((m, l, Some(replicas)));
        }
    }
    want.push((
        "mcpserver_protocol_version",
        server_of("far", &[("version", &version)]),
        Some(1.0),
    ));
    for (cap, v) in [
        ("tools", 1.0),
        ("resources", 1.0),
        ("prompts", 1.0),
        ("completions", 0.0),
    ] {
        let l = server_of("far", &[("capability", cap)]);
        want.push(("mcpserver_capabilities", l, Some(v)));
    }
    let issue = server_of(
        "picky",
        &[("level", "error"), ("code", "MISSING_CAPABILITY")],
    );
    want.push(("mcpserver_validation_issues_total", issue, None));
    let refused = server_of(
        "nowhere",
        &[("level", "error"), ("code", "CONNECTION_REFUSED")],
    );
    want.push(("mcpserver_validation_issues_total", refused, None));
    let ok = vec![
        ("controller", "mcpserver".into()),
        ("result", "success".into()),
    ];
    want.push(("mcpserver_reconcile_total", ok, None));
    let err = vec![
        ("controller", "mcpserver".into()),
        ("result", "error".into()),
    ];
    want.push(("mcpserver_reconcile_total", err, Some(0.0)));
    let ctl = vec![("controller", "mcpserver".into())];
    want.push((
        "mcpserver_reconcile_duration_seconds_count",
        ctl.clone(),
        None,
    ));
    let mut le = ctl.clone();
    le.push(("le", "+Inf".into()));
    want.push(("mcpserver_reconcile_duration_seconds_bucket", le, None));
    let http = || ("transport", "streamable-http".to_string());
    want.push((
        "mcp_validator_validations_total",
        vec![http(), ("result", "true".into())],
        None,
    ));
    want.push((
        "mcp_validator_validations_total",
        vec![http(), ("result", "false".into())],
        None,
    ));
    want.push((
        "mcp_validator_duration_seconds_count",
        vec![http(), ("success", "true".into())],
        None,
    ));
    want.push((
        "mcp_validator_errors_total",
        vec![("error_code", "MISSING_CAPABILITY".into()), http()],
        None,
    ));
    settle("seed 002's series", || {
        let text = f.ctl.metrics_text();
        let series = scrape_series(&text);
        let mut problems = Vec::new();
        for (name, labels, value) in &want {
            let labels: std::collections::BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            let found = series.iter().find(|(n, l, _)| n == name && *l == labels);
            match (found, value) {
                (None, _) => problems.push(format!("no {name}{labels:?}")),
                (Some((_, _, v)), Some(want)) if v != want => {
                    problems.push(format!("{name}{labels:?} is {v}, not {want}"))
                }
                (Some((_, _, v)), None) if *v < 1.0 => {
                    problems.push(format!("{name}{labels:?} is {v}, not >= 1"))
                }
                _ => {}
            }
        }
        for (family, kind) in [
            ("mcpserver_ready_total", "gauge"),
            ("mcpserver_phase", "gauge"),
            ("mcpserver_replicas", "gauge"),
            ("mcpserver_available_replicas", "gauge"),
            ("mcpserver_hpa_enabled", "gauge"),
            ("mcpserver_validation_compliant", "gauge"),
            ("mcpserver_protocol_version", "gauge"),
            ("mcpserver_capabilities", "gauge"),
            ("mcpserver_reconcile", "counter"),
            ("mcpserver_reconcile_duration_seconds", "histogram"),
            ("mcpserver_validation_issues", "counter"),
            ("mcp_validator_duration_seconds", "histogram"),
            ("mcp_validator_validations", "counter"),
            ("mcp_validator_errors", "counter"),
        ] {
            let line = format!("# TYPE {family} {kind}");
            if !text.lines().any(|l| l == line) {
                problems.push(format!("no `{line}`"));
            }
        }
        // Seed 000's names stay beside them.
        let kept_ready = format!(
            "mcp_operator_provider_state{{namespace=\"{ns}\",name=\"kept\",state=\"Ready\"}} 1"
        );
        if !text.contains(&kept_ready) {
            problems.push(format!("no `{kept_ready}`"));
        }
        problems
    });
    let ns = f.ns.clone();
    drop(f);
    e.k(&["delete", "namespace", &ns, "--wait=false"]);
}

/// Issue 15.4: every selector seed 002's dashboard and alert rules use (the fixture, written
/// from vitorbari/mcp-operator e591f60) finds a series in a real scrape of the controller, with
/// the value the panel compares it to; the ones the README says hangar does not serve find none.
#[test]
fn seed_002_dashboard_selectors_find_series() {
    let Some(e) = env() else { return };
    let Some(f) = seed_002_fleet(e, "seed2-dash") else {
        return;
    };
    let selectors = dashboard_selectors();
    settle("seed 002's dashboard selectors", || {
        let series = scrape_series(&f.ctl.metrics_text());
        selectors
            .iter()
            .filter_map(|(unserved, place, sel)| {
                let n = series.iter().filter(|s| sel.matches(s)).count();
                match (unserved, n) {
                    (false, 0) => Some(format!("{place}: {sel:?} finds no series")),
                    (true, n) if n > 0 => Some(format!("{place}: unserved {sel:?} finds {n}")),
                    _ => None,
                }
            })
            .collect()
    });
    let served = selectors.iter().filter(|(u, _, _)| !u).count();
    eprintln!(
        "{served} selectors of seed 002's dashboard and rules find series; {} are not served",
        selectors.len() - served
    );
    let ns = f.ns.clone();
    drop(f);
    e.k(&["delete", "namespace", &ns, "--wait=false"]);
}
