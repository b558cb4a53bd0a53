//! The decide steps of the server and group reconcilers: pure functions of the previous status,
//! the decided settings and what was observed, at an injected time. No I/O here: every branch is
//! unit-tested below without an API server.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::state::{self, Check, Observed, Transition, Workload};
use crate::api::group::{GroupMember, MCPServerGroupStatus};
use crate::api::server::{Capability, MCPServerStatus, Mode, ServerState};
use crate::compile::settings::{GroupSettings, ServerSettings};
use crate::probe::health::Issue;

/// Strict mode holds a server found non-compliant until its spec changes: the Ready condition of
/// this generation says NonCompliant. A held container server runs no replicas.
pub fn strict_hold(prev: &MCPServerStatus, generation: Option<i64>, strict: bool) -> bool {
    strict
        && prev.observed_generation == generation
        && prev
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == state::READY && c.reason == state::NON_COMPLIANT)
}

/// Whether the server is health-checked now: a remote endpoint always; a container server
/// through its Service once a replica is ready (unless Services are out of the controller's
/// reach, or strict mode holds it).
pub fn should_probe(
    set: &ServerSettings,
    probe_services: bool,
    desired: i32,
    workload: Option<&Workload>,
    held: bool,
) -> bool {
    let has_ready = workload.is_some_and(|w| w.ready > 0);
    set.mode == Mode::Remote || (probe_services && desired > 0 && has_ready && !held)
}

/// A compliant server that lacks a required capability is not healthy.
pub fn require_capabilities(mut c: Check, required: &[Capability]) -> Check {
    let announced: Vec<String> = c
        .validation
        .as_ref()
        .and_then(|v| v.capabilities.clone())
        .unwrap_or_default();
    let missing: Vec<String> = required
        .iter()
        .filter_map(|cap| serde_json::to_value(cap).ok()?.as_str().map(str::to_string))
        .filter(|cap| !announced.contains(cap))
        .collect();
    if c.ok && !missing.is_empty() {
        c.ok = false;
        c.message = format!("missing required capabilities: {}", missing.join(", "));
        c.issues
            .extend(missing.iter().map(|_| Issue::error("MISSING_CAPABILITY")));
        if let Some(v) = c.validation.as_mut() {
            v.compliant = Some(false);
            v.message = Some(c.message.clone());
        }
    }
    c
}

/// Why strict mode holds the server, if it does: held already, or tripped now by a
/// protocol-level verdict (it answered, but not as required; an outage does not trip it). A
/// remote server is not scaled: it leaves the hold as soon as it passes again.
pub fn hold(
    set: &ServerSettings,
    prev: &MCPServerStatus,
    held: bool,
    check: Option<&Check>,
) -> Option<String> {
    let remote = set.mode == Mode::Remote;
    if remote && check.is_some_and(|c| c.ok) {
        return None;
    }
    if held {
        return Some(format!(
            "held by validation.strictMode{}: {}",
            if remote { "" } else { " (scaled to zero)" },
            prev.validation
                .as_ref()
                .and_then(|v| v.message.clone())
                .unwrap_or_else(|| "not compliant".into())
        ));
    }
    check
        .filter(|c| {
            set.validation.strict
                && !c.ok
                && c.validation.as_ref().is_some_and(|v| {
                    v.compliant == Some(false)
                        && v.requires_auth != Some(true)
                        && v.protocol_version.is_some()
                })
        })
        .map(|c| format!("held by validation.strictMode: {}", c.message))
}

/// What one server reconcile observed, besides the previous status.
#[derive(Clone, Debug, Default)]
pub struct ServerObservation {
    pub generation: Option<i64>,
    pub workload: Option<Workload>,
    /// `spec.replicas` of the applied Deployment (what an autoscaler set).
    pub deployment_replicas: Option<i32>,
    pub held: bool,
    pub probed: bool,
    /// The latest finished health check (probes run off the reconcile path).
    pub check: Option<Check>,
    /// Checked, but no check of the current plan has finished yet.
    pub check_pending: bool,
    /// Why the pods are not ready, when they are not ([`super::pods::problem`]).
    pub pod_problem: Option<super::pods::PodProblem>,
    /// Why applying the children failed (reason, message).
    pub apply_error: Option<(String, String)>,
    /// Foreign changes to what runs ([`super::drift::message`]).
    pub foreign: Option<String>,
}

/// What the server reconcile does next.
#[derive(Clone, Debug)]
pub struct ServerDecision {
    pub status: MCPServerStatus,
    pub transition: Option<Transition>,
    pub requeue: Duration,
}

/// The decide step of a server: next status, the transition to report, when to look again.
pub fn server(
    prev: &MCPServerStatus,
    set: &ServerSettings,
    o: ServerObservation,
    resync: Duration,
    now: Timestamp,
) -> ServerDecision {
    let check = o
        .check
        .map(|c| require_capabilities(c, &set.validation.required_capabilities));
    let observed = Observed {
        generation: o.generation,
        remote: set.mode == Mode::Remote,
        desired: set.desired_replicas(o.deployment_replicas),
        workload: o.workload,
        hold: hold(set, prev, o.held, check.as_ref()),
        check,
        check_pending: o.check_pending,
        pod_problem: o.pod_problem.map(|p| (p.reason, p.message)),
        apply_error: o.apply_error,
        endpoint: Some(set.url.clone()).filter(|u| !u.is_empty()),
        foreign: o.foreign,
        startup_timeout: set.startup_timeout,
        failure_threshold: set.health.failure_threshold,
        interval: set.health.interval,
    };
    let (status, transition) = state::next(prev, &observed, now);
    let requeue = requeue(&status, set, resync, now);
    ServerDecision {
        status,
        transition,
        requeue,
    }
}

/// When to look at a server again: at its check interval while it is unwell (a failed apply is
/// retried then), at the end of its startup window while it starts (the interval at most), else
/// at the resync. Health checks wake it on their own when they have news (see
/// [`super::probes`]): a checked server that stays healthy is not requeued at its interval.
pub fn requeue(
    next: &MCPServerStatus,
    set: &ServerSettings,
    resync: Duration,
    now: Timestamp,
) -> Duration {
    let interval = set.health.interval;
    match next.state.unwrap_or(ServerState::Initializing) {
        ServerState::Initializing => {
            let started = next
                .last_started_at
                .as_ref()
                .map(|t| now.duration_since(t.0).as_secs().max(0) as u64)
                .unwrap_or(0);
            let left = set.startup_timeout.as_secs().saturating_sub(started) + 1;
            Duration::from_secs(left).min(interval)
        }
        ServerState::Degraded | ServerState::Dead => interval,
        ServerState::Ready | ServerState::Cold => resync,
    }
}

/// The decide step of a group: its status from its members' states and the apply outcome.
pub fn group(
    prev: &MCPServerGroupStatus,
    set: &GroupSettings,
    mut members: Vec<GroupMember>,
    apply_errors: &[String],
    generation: Option<i64>,
    now: Timestamp,
) -> MCPServerGroupStatus {
    let now = state::now_secs(now);
    let prev_conds = prev.conditions.as_deref().unwrap_or_default();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    let count = |st: ServerState| members.iter().filter(|m| m.state == Some(st)).count() as i32;
    let total = members.len() as i32;
    let ready = count(ServerState::Ready);
    let policy = &set.health;
    let healthy = policy.healthy(ready, total);
    let msg = group_message(set, ready, total);
    let mut conds = vec![state::condition(
        prev_conds,
        state::READY,
        healthy,
        if healthy { "Healthy" } else { "Unhealthy" },
        &msg,
        generation,
        now,
    )];
    let (applied, reason, message) = if apply_errors.is_empty() {
        (true, "Applied", "all objects applied".to_string())
    } else {
        (false, "ApplyFailed", apply_errors.join("; "))
    };
    conds.push(state::condition(
        prev_conds,
        state::RECONCILED,
        applied,
        reason,
        &message,
        generation,
        now,
    ));
    MCPServerGroupStatus {
        provider_count: Some(total),
        ready_count: Some(ready),
        degraded_count: Some(count(ServerState::Degraded)),
        cold_count: Some(count(ServerState::Cold)),
        dead_count: Some(count(ServerState::Dead)),
        providers: Some(members),
        active_strategy: Some(set.strategy),
        healthy: Some(healthy),
        gateway_endpoint: None,
        observed_generation: generation,
        conditions: Some(conds),
    }
}

/// The group's health, in words (its Ready condition and Event).
pub fn group_message(set: &GroupSettings, ready: i32, total: i32) -> String {
    format!(
        "{ready}/{total} members ready (needs {}% and at least {})",
        set.health.min_healthy_percentage, set.health.min_healthy_count
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::server::ValidationStatus;
    use crate::compile::defaults;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use serde_json::json;

    fn settings(user: serde_json::Value) -> ServerSettings {
        let mut spec = defaults::server(&user);
        defaults::merge_into(&mut spec, &user);
        ServerSettings::decide(
            "s",
            "ns",
            &serde_json::from_value(spec).expect("a valid spec"),
        )
    }

    fn group_settings(user: serde_json::Value) -> GroupSettings {
        let mut spec = defaults::group();
        defaults::merge_into(&mut spec, &user);
        GroupSettings::decide(&serde_json::from_value(spec).expect("a valid group"))
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn non_compliant(generation: i64) -> MCPServerStatus {
        MCPServerStatus {
            observed_generation: Some(generation),
            conditions: Some(vec![Condition {
                type_: state::READY.into(),
                status: "False".into(),
                reason: state::NON_COMPLIANT.into(),
                message: String::new(),
                observed_generation: Some(generation),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(0)),
            }]),
            validation: Some(ValidationStatus {
                message: Some("no tools".into()),
                ..ValidationStatus::default()
            }),
            ..MCPServerStatus::default()
        }
    }

    fn verdict(ok: bool, compliant: bool, caps: &[&str]) -> Check {
        Check {
            ok,
            message: if ok { "ok".into() } else { "not MCP".into() },
            tools: None,
            validation: Some(ValidationStatus {
                compliant: Some(compliant),
                protocol_version: Some("2025-06-18".into()),
                capabilities: Some(caps.iter().map(|c| c.to_string()).collect()),
                ..ValidationStatus::default()
            }),
            issues: Vec::new(),
        }
    }

    #[test]
    fn strict_hold_lasts_for_the_generation_it_was_found_in() {
        let prev = non_compliant(2);
        assert!(strict_hold(&prev, Some(2), true));
        assert!(
            !strict_hold(&prev, Some(3), true),
            "a spec change releases it"
        );
        assert!(!strict_hold(&prev, Some(2), false), "only in strict mode");
        assert!(!strict_hold(&MCPServerStatus::default(), Some(2), true));
    }

    #[test]
    fn a_protocol_verdict_trips_strict_mode_and_an_outage_does_not() {
        let set = settings(json!({"image": "x", "validation": {"strictMode": true}}));
        let prev = MCPServerStatus::default();
        let bad = verdict(false, false, &[]);
        assert!(hold(&set, &prev, false, Some(&bad)).is_some());
        let outage = Check {
            ok: false,
            message: "connection refused".into(),
            ..Check::default()
        };
        assert_eq!(hold(&set, &prev, false, Some(&outage)), None);
        let mut auth = bad.clone();
        if let Some(v) = auth.validation.as_mut() {
            v.requires_auth = Some(true);
        }
        assert_eq!(
            hold(&set, &prev, false, Some(&auth)),
            None,
            "auth is not a verdict"
        );
        let lax = settings(json!({"image": "x"}));
        assert_eq!(hold(&lax, &prev, false, Some(&bad)), None);
        let held = hold(&set, &non_compliant(1), true, None).unwrap_or_default();
        assert!(held.contains("(scaled to zero): no tools"), "{held}");
    }

    #[test]
    fn a_remote_server_leaves_the_hold_once_it_passes() {
        let set =
            settings(json!({"endpoint": "https://h/mcp", "validation": {"strictMode": true}}));
        let good = verdict(true, true, &["tools"]);
        assert_eq!(hold(&set, &non_compliant(1), true, Some(&good)), None);
        let held = hold(&set, &non_compliant(1), true, None).unwrap_or_default();
        assert!(!held.contains("scaled"), "{held}");
    }

    #[test]
    fn a_missing_required_capability_fails_a_compliant_server() {
        let c = require_capabilities(
            verdict(true, true, &["tools"]),
            &[Capability::Tools, Capability::Prompts],
        );
        assert!(!c.ok);
        assert_eq!(c.message, "missing required capabilities: prompts");
        assert_eq!(c.issues, vec![Issue::error("MISSING_CAPABILITY")]);
        assert_eq!(c.validation.and_then(|v| v.compliant), Some(false));
        let c = require_capabilities(verdict(true, true, &["tools"]), &[Capability::Tools]);
        assert!(c.ok && c.issues.is_empty());
        // A failed check stays as it failed, also when asked again (the controller applies
        // the requirement before counting a validation, and decide once more).
        let c = require_capabilities(verdict(false, false, &[]), &[Capability::Tools]);
        assert_eq!(c.message, "not MCP");
        assert!(c.issues.is_empty());
        let twice = require_capabilities(
            require_capabilities(verdict(true, true, &[]), &[Capability::Tools]),
            &[Capability::Tools],
        );
        assert_eq!(twice.issues.len(), 1);
    }

    #[test]
    fn desired_replicas_follow_mode_autoscaling_and_spec() {
        assert_eq!(
            settings(json!({"image": "x", "replicas": 3})).desired_replicas(Some(7)),
            3
        );
        assert_eq!(
            settings(json!({"image": "x", "replicas": 0})).desired_replicas(None),
            0
        );
        let hpa = settings(json!({"image": "x", "hpa": {"enabled": true}}));
        assert_eq!(hpa.desired_replicas(Some(4)), 4);
        assert_eq!(hpa.desired_replicas(None), 1);
        assert_eq!(
            settings(json!({"endpoint": "https://h/mcp"})).desired_replicas(Some(2)),
            0
        );
    }

    #[test]
    fn probing_waits_for_a_ready_replica() {
        let set = settings(json!({"image": "x"}));
        let ready = Workload {
            replicas: 1,
            ready: 1,
            available: 1,
        };
        assert!(should_probe(&set, true, 1, Some(&ready), false));
        assert!(!should_probe(
            &set,
            true,
            1,
            Some(&Workload::default()),
            false
        ));
        assert!(!should_probe(&set, false, 1, Some(&ready), false));
        assert!(!should_probe(&set, true, 1, Some(&ready), true));
        assert!(!should_probe(&set, true, 0, Some(&ready), false));
        let remote = settings(json!({"endpoint": "https://h/mcp"}));
        assert!(should_probe(&remote, false, 0, None, false));
    }

    #[test]
    fn a_starting_server_is_looked_at_when_its_startup_window_ends() {
        let set = settings(json!({"image": "x", "startupTimeout": "20s",
                                   "healthCheck": {"interval": "1m"}}));
        let starting = MCPServerStatus {
            state: Some(ServerState::Initializing),
            last_started_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(
                100,
            ))),
            ..MCPServerStatus::default()
        };
        let resync = Duration::from_secs(600);
        assert_eq!(
            requeue(&starting, &set, resync, at(105)),
            Duration::from_secs(16)
        );
        let ready = MCPServerStatus {
            state: Some(ServerState::Ready),
            ..MCPServerStatus::default()
        };
        assert_eq!(requeue(&ready, &set, resync, at(105)), resync);
    }

    #[test]
    fn the_decide_step_of_a_cold_server() {
        let set = settings(json!({"image": "x", "replicas": 0}));
        let d = server(
            &MCPServerStatus::default(),
            &set,
            ServerObservation {
                generation: Some(1),
                workload: Some(Workload::default()),
                ..ServerObservation::default()
            },
            Duration::from_secs(600),
            at(10),
        );
        assert_eq!(d.status.state, Some(ServerState::Cold));
        assert_eq!(
            d.status.endpoint.as_deref(),
            Some("http://s.ns.svc:8080/mcp")
        );
        assert_eq!(d.transition.map(|t| t.to), Some(ServerState::Cold));
        assert_eq!(d.requeue, Duration::from_secs(600));
    }

    fn member(name: &str, state: ServerState) -> GroupMember {
        GroupMember {
            name: name.into(),
            state: Some(state),
            ..GroupMember::default()
        }
    }

    #[test]
    fn group_health_counts_members_by_state() {
        let set = group_settings(json!({"selector": {}}));
        let s = group(
            &MCPServerGroupStatus::default(),
            &set,
            vec![
                member("b", ServerState::Ready),
                member("a", ServerState::Dead),
                member("c", ServerState::Cold),
            ],
            &[],
            Some(1),
            at(5),
        );
        assert_eq!(s.healthy, Some(false), "1 of 3 is under 50%");
        assert_eq!(
            (s.ready_count, s.dead_count, s.cold_count),
            (Some(1), Some(1), Some(1))
        );
        let names: Vec<String> = s
            .providers
            .iter()
            .flatten()
            .map(|m| m.name.clone())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        let ready = s
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == state::READY);
        assert_eq!(
            ready.map(|c| c.message.as_str()),
            Some("1/3 members ready (needs 50% and at least 1)")
        );
        let set = group_settings(json!({"selector": {}, "healthPolicy": {"minHealthyCount": 2}}));
        let two_of_two = vec![
            member("a", ServerState::Ready),
            member("b", ServerState::Ready),
        ];
        assert_eq!(
            group(&s, &set, two_of_two, &[], Some(1), at(6)).healthy,
            Some(true)
        );
        let one = vec![member("a", ServerState::Ready)];
        assert_eq!(
            group(&s, &set, one, &[], Some(1), at(6)).healthy,
            Some(false)
        );
        let none = group(&s, &set, Vec::new(), &["boom".into()], Some(1), at(6));
        assert_eq!(none.healthy, Some(false), "an empty group is not healthy");
        let rec = none
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == state::RECONCILED);
        assert_eq!(rec.map(|c| c.reason.as_str()), Some("ApplyFailed"));
    }
}
