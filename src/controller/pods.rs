//! Why a server's pods are not ready, in the kubelet's own words: an image that cannot be pulled,
//! a container that exits, a pod that cannot be scheduled. A Deployment only counts ready
//! replicas; its pods say why the count is short. Pure: pods in, a problem out.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::state::truncate;

/// The first thing wrong with a server's pods, as status and Events show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodProblem {
    /// The kubelet's or scheduler's reason (`ImagePullBackOff`, `CrashLoopBackOff`,
    /// `Unschedulable`, ...), or `ContainerExited`.
    pub reason: String,
    /// `pod NAME, container C: ...` with the kubelet's message or the exit code.
    pub message: String,
}

/// Waiting reasons that mean the container will not start without a change (or a fix elsewhere):
/// the kubelet keeps retrying them, but no retry of ours helps.
const STUCK: [&str; 8] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "CrashLoopBackOff",
];

const MAX_MESSAGE: usize = 512;

/// The first problem of the pods, by pod name (deterministic), init containers first.
pub fn problem(pods: &[Pod]) -> Option<PodProblem> {
    let mut pods: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    pods.into_iter().find_map(pod_problem)
}

fn pod_problem(p: &Pod) -> Option<PodProblem> {
    let name = p.metadata.name.as_deref().unwrap_or("?");
    let status = p.status.as_ref()?;
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for c in containers {
        if let Some(found) = container_problem(c) {
            let (reason, what) = found;
            return Some(PodProblem {
                reason,
                message: truncate(
                    &format!("pod {name}, container {}: {what}", c.name),
                    MAX_MESSAGE,
                ),
            });
        }
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    })?;
    Some(PodProblem {
        reason: "Unschedulable".into(),
        message: truncate(
            &format!(
                "pod {name}: {}",
                unschedulable
                    .message
                    .as_deref()
                    .unwrap_or("cannot be scheduled")
            ),
            MAX_MESSAGE,
        ),
    })
}

/// The reason and what to say, for a container that is stuck or has exited with an error.
fn container_problem(c: &ContainerStatus) -> Option<(String, String)> {
    let state = c.state.as_ref();
    if let Some(w) = state.and_then(|s| s.waiting.as_ref())
        && let Some(reason) = w.reason.as_deref().filter(|r| STUCK.contains(r))
    {
        let mut what = reason.to_string();
        if let Some(m) = w.message.as_deref().filter(|m| !m.is_empty()) {
            what.push_str(": ");
            what.push_str(m);
        }
        // A crash loop's message names only the back-off: the last exit says why.
        if let Some(t) = c.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
            what.push_str(&format!(
                "; last exit code {}{}",
                t.exit_code,
                t.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
        return Some((reason.to_string(), what));
    }
    // Exited with an error and not (yet) waiting in a back-off.
    let t = state.and_then(|s| s.terminated.as_ref())?;
    (t.exit_code != 0).then(|| {
        (
            "ContainerExited".to_string(),
            format!(
                "exited with code {}{}{}",
                t.exit_code,
                t.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                t.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_image_that_cannot_be_pulled_names_the_pull_error() {
        let p = pod(json!({
            "metadata": {"name": "s-1"},
            "status": {"containerStatuses": [{
                "name": "server", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff",
                    "message": "Back-off pulling image \"nope:1\": no such host"}}}]}
        }));
        assert_eq!(
            problem(&[p]),
            Some(PodProblem {
                reason: "ImagePullBackOff".into(),
                message: "pod s-1, container server: ImagePullBackOff: Back-off pulling image \"nope:1\": no such host".into()
            })
        );
    }

    #[test]
    fn a_crash_loop_names_the_last_exit() {
        let p = pod(json!({
            "metadata": {"name": "s-1"},
            "status": {"containerStatuses": [{
                "name": "server", "image": "x", "imageID": "", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
                "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}}}]}
        }));
        let got = problem(&[p]).unwrap();
        assert_eq!(got.reason, "CrashLoopBackOff");
        assert!(
            got.message.ends_with("; last exit code 2 (Error)"),
            "{}",
            got.message
        );
    }

    #[test]
    fn an_exit_before_the_back_off_and_an_unschedulable_pod() {
        let exited = pod(json!({
            "metadata": {"name": "b"},
            "status": {"containerStatuses": [{
                "name": "server", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": "boom"}}}]}
        }));
        let pending = pod(json!({
            "metadata": {"name": "a"},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/2 nodes are available"}]}
        }));
        // by pod name: `a` first
        let got = problem(&[exited.clone(), pending]).unwrap();
        assert_eq!(got.reason, "Unschedulable");
        assert_eq!(got.message, "pod a: 0/2 nodes are available");
        let got = problem(&[exited]).unwrap();
        assert_eq!(got.reason, "ContainerExited");
        assert_eq!(
            got.message,
            "pod b, container server: exited with code 1 (Error): boom"
        );
    }

    #[test]
    fn starting_and_running_pods_are_no_problem() {
        let starting = pod(json!({
            "metadata": {"name": "s-1"},
            "status": {"containerStatuses": [{
                "name": "server", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}]}
        }));
        let running = pod(json!({
            "metadata": {"name": "s-2"},
            "status": {"containerStatuses": [{
                "name": "server", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
                "state": {"running": {}}}]}
        }));
        let deleted = pod(json!({
            "metadata": {"name": "s-0", "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"containerStatuses": [{
                "name": "server", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}
        }));
        assert_eq!(problem(&[starting, running, deleted]), None);
    }
}
