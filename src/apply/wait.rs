//! `hangar apply --wait`: after applying, block until every applied MCPServer and MCPServerGroup
//! is what its spec asks for (Ready, or Cold when it asks for zero replicas), as the controller
//! reports it in status, or until the timeout; then name those that are not, with their reasons.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::{Applier, ObjectKey};

/// Where one waited-for object stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Standing {
    /// What its spec asks for: nothing more to wait for.
    Done,
    /// Not yet, and why (its state, the Ready condition's reason and message).
    Pending(String),
}

/// The kinds `--wait` waits for: those whose status the controller writes.
pub fn waits_for(key: &ObjectKey) -> bool {
    key.api_version.starts_with("mcp-hangar.io/")
        && matches!(key.kind.as_str(), "MCPServer" | "MCPServerGroup")
}

fn ready_condition(obj: &Json) -> Option<&Json> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
}

/// Where a live MCPServer or MCPServerGroup stands (pure: the object as read).
pub fn standing(obj: Option<&Json>) -> Standing {
    let Some(obj) = obj else {
        return Standing::Pending("not found (deleted after it was applied?)".into());
    };
    let generation = obj.pointer("/metadata/generation").and_then(Json::as_i64);
    let observed = obj
        .pointer("/status/observedGeneration")
        .and_then(Json::as_i64);
    if observed.is_none() || observed < generation {
        let seen = observed.map_or("none".to_string(), |g| g.to_string());
        return Standing::Pending(format!(
            "not yet reconciled by the controller (generation {}, status for {seen}); is the controller running?",
            generation.unwrap_or(0)
        ));
    }
    let cond = ready_condition(obj);
    let ready = cond.is_some_and(|c| c["status"] == "True");
    let state = obj.pointer("/status/state").and_then(Json::as_str);
    // A server that asks for zero replicas is where it should be when Cold.
    if ready || state == Some("Cold") {
        return Standing::Done;
    }
    let mut why = state.unwrap_or("not Ready").to_string();
    if let Some(c) = cond {
        for key in ["reason", "message"] {
            if let Some(s) = c[key].as_str().filter(|s| !s.is_empty()) {
                why.push_str(": ");
                why.push_str(s);
            }
        }
    }
    Standing::Pending(why)
}

/// Waits until each object of `keys` that [`waits_for`] is [`Standing::Done`], re-reading them
/// every `every`; returns those still pending at `timeout` (empty: all done), with the reason.
pub async fn wait_ready(
    applier: &Applier,
    keys: &[ObjectKey],
    timeout: Duration,
    every: Duration,
) -> Vec<(ObjectKey, String)> {
    let start = Instant::now();
    let mut pending: Vec<ObjectKey> = keys.iter().filter(|k| waits_for(k)).cloned().collect();
    loop {
        let mut still = Vec::new();
        for key in pending {
            let why = match applier.get(&key).await {
                Ok(obj) => match standing(obj.as_ref()) {
                    Standing::Done => continue,
                    Standing::Pending(why) => why,
                },
                Err(e) => format!("could not be read: {e}"),
            };
            still.push((key, why));
        }
        if still.is_empty() || start.elapsed() >= timeout {
            return still;
        }
        tracing::debug!(pending = still.len(), "waiting for Ready");
        let left = timeout.saturating_sub(start.elapsed());
        tokio::time::sleep(every.min(left)).await;
        // After the last sleep the loop reads once more: the report is current.
        pending = still.into_iter().map(|(k, _)| k).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn server(generation: i64, status: Json) -> Json {
        json!({"metadata": {"name": "s", "generation": generation}, "status": status})
    }

    #[test]
    fn ready_or_cold_at_the_current_generation_is_done() {
        let ready = json!({"observedGeneration": 2, "state": "Ready",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]});
        assert_eq!(standing(Some(&server(2, ready.clone()))), Standing::Done);
        let cold = json!({"observedGeneration": 1, "state": "Cold",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ScaledToZero"}]});
        assert_eq!(standing(Some(&server(1, cold))), Standing::Done);
        // Ready for an older spec is not Ready for this one.
        let Standing::Pending(why) = standing(Some(&server(3, ready))) else {
            panic!("an old generation's Ready counted");
        };
        assert!(why.contains("generation 3, status for 2"), "{why}");
    }

    #[test]
    fn pending_says_state_reason_and_message() {
        let dead = json!({"observedGeneration": 1, "state": "Dead",
            "conditions": [{"type": "Ready", "status": "False", "reason": "StartupTimeout",
                "message": "not available within 5m"}]});
        assert_eq!(
            standing(Some(&server(1, dead))),
            Standing::Pending("Dead: StartupTimeout: not available within 5m".into())
        );
        let Standing::Pending(none) = standing(Some(&server(1, json!(null)))) else {
            panic!("no status counted as done");
        };
        assert!(none.contains("controller running"), "{none}");
        assert!(matches!(standing(None), Standing::Pending(_)));
        // A group has no state: its Ready condition decides.
        let group = json!({"observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "False", "reason": "Unhealthy",
                "message": "0/2 members ready"}]});
        assert_eq!(
            standing(Some(&server(1, group))),
            Standing::Pending("not Ready: Unhealthy: 0/2 members ready".into())
        );
    }
}
