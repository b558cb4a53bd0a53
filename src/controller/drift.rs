//! Foreign changes to what runs, pure: the Deployment hangar rendered against the one the API
//! server stores. Server-side apply keeps the fields hangar sets; another manager may still add
//! fields hangar does not set without any conflict (a second container, `runAsUser: 0`, a
//! hostPath volume). Those change what runs, so they are reported (a condition and an Event);
//! they are not removed, since a mesh or policy engine may add them on purpose and fighting it
//! would flap.

use serde_json::Value as Json;

/// Pod-spec fields that widen what a pod may do when set to `true`.
const HOST_FIELDS: [&str; 3] = ["hostNetwork", "hostPID", "hostIPC"];
/// Container lists compared by name.
const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];
/// Fields of a rendered container another manager must not replace.
const CONTAINER_FIELDS: [&str; 3] = ["image", "command", "args"];

/// What another manager changed in `live`'s pod template that changes what runs, against the
/// `intent` hangar applied: one line per finding, sorted; empty when there is none.
pub fn foreign_changes(intent: &Json, live: &Json) -> Vec<String> {
    let empty = Json::Null;
    let pod = |o: &'_ Json| {
        o.pointer("/spec/template/spec")
            .cloned()
            .unwrap_or_default()
    };
    let (want, got) = (pod(intent), pod(live));
    let mut out = Vec::new();
    for list in CONTAINER_LISTS {
        let ours = named(&want, list);
        for (name, c) in named(&got, list) {
            match ours.iter().find(|(n, _)| *n == name) {
                None => out.push(format!(
                    "{} `{name}` (image {}) added",
                    singular(list),
                    c.get("image").and_then(Json::as_str).unwrap_or("none")
                )),
                Some((_, mine)) => container(&mut out, list, name, mine, c),
            }
        }
    }
    let ours = named(&want, "volumes");
    for (name, v) in named(&got, "volumes") {
        if !ours.iter().any(|(n, _)| *n == name) {
            let source = v
                .as_object()
                .and_then(|m| m.keys().find(|k| *k != "name").cloned())
                .unwrap_or_default();
            out.push(format!("volume `{name}` ({source}) added"));
        }
    }
    for f in HOST_FIELDS {
        if got.get(f) == Some(&Json::Bool(true)) && want.get(f) != got.get(f) {
            out.push(format!("{f}: true set"));
        }
    }
    for f in ["serviceAccountName", "automountServiceAccountToken"] {
        if let (Some(w), Some(g)) = (want.get(f), got.get(f))
            && w != g
        {
            out.push(format!("{f}: {g} (rendered {w})"));
        }
    }
    differing(
        &mut out,
        "securityContext",
        want.get("securityContext").unwrap_or(&empty),
        got.get("securityContext").unwrap_or(&empty),
    );
    out.sort();
    out.dedup();
    out
}

/// Managers other than `ours` (the controller's and the CLI's) that wrote into the pod template (from `managedFields`), sorted.
pub fn template_managers(live: &Json, ours: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = live
        .pointer("/metadata/managedFields")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter(|m| {
            m.pointer("/fieldsV1/f:spec/f:template").is_some()
                && m.get("subresource").is_none_or(|s| s.as_str() == Some(""))
        })
        .filter_map(|m| m.get("manager").and_then(Json::as_str))
        .filter(|m| !ours.contains(m))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The condition message for `changes` made by `managers`.
pub fn message(changes: &[String], managers: &[String]) -> String {
    let by = if managers.is_empty() {
        String::new()
    } else {
        format!(" (by {})", managers.join(", "))
    };
    format!(
        "the Deployment runs what hangar did not render{by}: {}; hangar leaves them: remove them, or set what is needed in the MCPServer spec",
        changes.join("; ")
    )
}

fn singular(list: &str) -> &'static str {
    match list {
        "initContainers" => "init container",
        "ephemeralContainers" => "ephemeral container",
        _ => "container",
    }
}

fn named<'a>(pod: &'a Json, list: &str) -> Vec<(&'a str, &'a Json)> {
    pod.get(list)
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .map(|c| (c.get("name").and_then(Json::as_str).unwrap_or(""), c))
        .collect()
}

/// A rendered container as stored: replaced fields, a changed security context, added mounts.
fn container(out: &mut Vec<String>, list: &str, name: &str, want: &Json, got: &Json) {
    let at = format!("{} `{name}`", singular(list));
    for f in CONTAINER_FIELDS {
        if let Some(g) = got.get(f)
            && want.get(f) != Some(g)
        {
            out.push(format!("{at} {f}: {g}"));
        }
    }
    let mounts = |c: &Json| -> Vec<(String, String)> {
        c.get("volumeMounts")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .map(|m| {
                let s = |k: &str| m.get(k).and_then(Json::as_str).unwrap_or("").to_string();
                (s("name"), s("mountPath"))
            })
            .collect()
    };
    let ours = mounts(want);
    for (n, p) in mounts(got) {
        if !ours.contains(&(n.clone(), p.clone())) {
            out.push(format!("{at} mounts `{n}` at {p}"));
        }
    }
    let empty = Json::Null;
    differing(
        out,
        &format!("{at} securityContext"),
        want.get("securityContext").unwrap_or(&empty),
        got.get("securityContext").unwrap_or(&empty),
    );
}

/// Every leaf of `got` that `want` does not have with the same value, as `at.path: value`.
fn differing(out: &mut Vec<String>, at: &str, want: &Json, got: &Json) {
    match got {
        Json::Object(m) => {
            for (k, g) in m {
                let w = want.get(k).unwrap_or(&Json::Null);
                differing(out, &format!("{at}.{k}"), w, g);
            }
        }
        Json::Null => {}
        g if g != want => out.push(format!("{at}: {g}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(pod: Json) -> Json {
        json!({"kind": "Deployment", "spec": {"template": {"spec": pod}}})
    }

    fn rendered() -> Json {
        deployment(json!({
            "serviceAccountName": "a",
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "server",
                "image": "ghcr.io/x/a:1",
                "securityContext": {"runAsUser": 65534, "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}]
        }))
    }

    #[test]
    fn what_the_api_server_adds_is_not_foreign() {
        let mut live = rendered();
        // Defaults the API server fills in, and fields hangar set, unchanged.
        live["spec"]["template"]["spec"]["dnsPolicy"] = json!("ClusterFirst");
        live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] =
            json!("/dev/termination-log");
        live["spec"]["template"]["spec"]["hostNetwork"] = json!(false);
        assert_eq!(foreign_changes(&rendered(), &live), Vec::<String>::new());
    }

    #[test]
    fn added_containers_privileges_and_volumes_are_found() {
        let mut live = rendered();
        let pod = &mut live["spec"]["template"]["spec"];
        pod["containers"]
            .as_array_mut()
            .expect("containers")
            .push(json!({"name": "miner", "image": "evil:1"}));
        pod["securityContext"]["runAsUser"] = json!(0);
        pod["hostPID"] = json!(true);
        pod["volumes"]
            .as_array_mut()
            .expect("volumes")
            .push(json!({"name": "root", "hostPath": {"path": "/"}}));
        pod["containers"][0]["volumeMounts"]
            .as_array_mut()
            .expect("mounts")
            .push(json!({"name": "root", "mountPath": "/host"}));
        pod["containers"][0]["securityContext"]["privileged"] = json!(true);
        pod["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"]);
        pod["serviceAccountName"] = json!("cluster-admin-sa");
        assert_eq!(
            foreign_changes(&rendered(), &live),
            [
                "container `miner` (image evil:1) added",
                "container `server` mounts `root` at /host",
                "container `server` securityContext.capabilities.add: [\"SYS_ADMIN\"]",
                "container `server` securityContext.privileged: true",
                "hostPID: true set",
                "securityContext.runAsUser: 0",
                "serviceAccountName: \"cluster-admin-sa\" (rendered \"a\")",
                "volume `root` (hostPath) added",
            ]
        );
    }

    #[test]
    fn managers_of_the_template_other_than_ours() {
        let live = json!({"metadata": {"managedFields": [
            {"manager": "hangar", "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {}}}},
            {"manager": "kubectl-patch", "operation": "Update", "fieldsV1": {"f:spec": {"f:template": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
             "fieldsV1": {"f:status": {}}},
            {"manager": "hpa", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
        ]}});
        assert_eq!(template_managers(&live, &["hangar"]), ["kubectl-patch"]);
    }
}
