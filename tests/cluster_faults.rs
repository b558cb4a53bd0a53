//! Faults against the real control plane: the API server restarted while the controller
//! reconciles, and a stored resource the controller cannot deserialize. These change the whole
//! cluster, so they run one at a time, in their own test binary (after tests/cluster.rs).

mod support;

use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value as Json;
use support::{env, http_get, text, wait_for, wait_state};

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
