//! The MCPServer state machine, pure: the previous status plus what was observed, at an injected
//! time, gives the next status. Cold -> Initializing -> Ready -> Degraded -> Dead, and back.
//!
//! - `Cold`: zero replicas wanted (container mode).
//! - `Initializing`: started (or changed) and not yet healthy, within `startupTimeout`.
//! - `Ready`: the workload is available (container) and the health check passes.
//! - `Degraded`: some replicas not ready, or health checks failing below `failureThreshold`.
//! - `Dead`: failures reached `failureThreshold`, or startup did not finish within `startupTimeout`.
//!
//! Failures are counted once per `healthCheck.interval` at most, so watch events arriving in a
//! burst do not count as many failed checks.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::server::{MCPServerStatus, ServerState};

/// What the Deployment reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Workload {
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
}

/// The outcome of one health check (made by the probe, [`crate::probe::health`]).
pub use crate::probe::health::Check;

/// Everything the state machine looks at besides the previous status.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub generation: Option<i64>,
    pub remote: bool,
    /// Replicas wanted (container mode); 0 is cold.
    pub desired: i32,
    pub workload: Option<Workload>,
    pub check: Option<Check>,
    /// Checked, but the first check of the current plan has not finished (checks run off the
    /// reconcile path): a server that was up keeps its state until it has; one that starts is
    /// not Ready before it.
    pub check_pending: bool,
    /// Why the server's pods are not ready, in the kubelet's words (reason, message; see
    /// [`super::pods`]), when they are not.
    pub pod_problem: Option<(String, String)>,
    /// Why applying the children failed (reason, message), when it did.
    pub apply_error: Option<(String, String)>,
    /// `validation.strictMode` found the server non-compliant: held as Dead (a container server
    /// scaled to zero) until its spec changes.
    pub hold: Option<String>,
    pub endpoint: Option<String>,
    /// What another manager changed in the Deployment that changes what runs
    /// ([`super::drift`]), as the ForeignChanges condition's message.
    pub foreign: Option<String>,
    pub startup_timeout: Duration,
    pub failure_threshold: i32,
    pub interval: Duration,
}

/// A state change, for an Event.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub from: Option<ServerState>,
    pub to: ServerState,
    pub reason: String,
    pub message: String,
}

pub const READY: &str = "Ready";
pub const RECONCILED: &str = "Reconciled";
/// Tool names kept in status (`toolsCount` counts them all).
pub const MAX_STATUS_TOOLS: usize = 1000;
/// True while the Deployment runs what hangar did not render (set by another manager).
pub const FOREIGN_CHANGES: &str = "ForeignChanges";
/// Reason of the Ready condition while strict mode holds a non-compliant server.
pub const NON_COMPLIANT: &str = "NonCompliant";

/// Whole seconds: what survives a round trip through the API server unchanged.
/// The status an object carries now, or the empty one when it has none (or an unreadable one).
pub fn prev_status<T: serde::de::DeserializeOwned + Default>(obj: &kube::api::DynamicObject) -> T {
    obj.data
        .get("status")
        .cloned()
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default()
}

pub fn now_secs(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

fn since(now: Timestamp, t: Option<&Time>) -> Option<Duration> {
    let t = t?;
    let d: SignedDuration = now.duration_since(t.0);
    Some(Duration::from_secs(d.as_secs().max(0) as u64))
}

pub fn next(
    prev: &MCPServerStatus,
    o: &Observed,
    now: Timestamp,
) -> (MCPServerStatus, Option<Transition>) {
    let now = now_secs(now);
    let mut s = prev.clone();
    let prev_state = prev.state;
    s.observed_generation = o.generation;
    s.endpoint = o.endpoint.clone();
    copy_observed(&mut s, o);
    let (state, reason, message) = verdict(prev, o, &mut s, now);
    if state == ServerState::Cold && prev_state != Some(ServerState::Cold) && prev_state.is_some() {
        s.last_stopped_at = Some(Time(now));
    }
    s.state = Some(state);
    s.conditions = Some(conditions(prev, o, state, &reason, &message, now));
    s.phase = Some(seed_phase_of(&s).to_string());
    let transition = (prev_state != Some(state)).then_some(Transition {
        from: prev_state,
        to: state,
        reason,
        message,
    });
    (s, transition)
}

/// What the workload and the check report, as status shows it.
fn copy_observed(s: &mut MCPServerStatus, o: &Observed) {
    if let Some(w) = &o.workload {
        s.replicas = Some(w.replicas);
        s.ready_replicas = Some(w.ready);
        s.available_replicas = Some(w.available);
    } else if !o.remote {
        s.replicas = Some(0);
        s.ready_replicas = Some(0);
        s.available_replicas = Some(0);
    } else {
        s.replicas = None;
        s.ready_replicas = None;
        s.available_replicas = None;
    }
    if let Some(c) = &o.check {
        if let Some(tools) = &c.tools {
            s.tools_count = Some(i32::try_from(tools.len()).unwrap_or(i32::MAX));
            // The names, up to a bound: 100,000 of them would not fit in an object.
            s.tools = Some(tools.iter().take(MAX_STATUS_TOOLS).cloned().collect());
        }
        if c.validation.is_some() {
            s.validation = c.validation.clone();
        }
    }
}

/// The state, its reason and message; counts failures and start times in `s`.
fn verdict(
    prev: &MCPServerStatus,
    o: &Observed,
    s: &mut MCPServerStatus,
    now: Timestamp,
) -> (ServerState, String, String) {
    let prev_state = prev.state;
    let spec_changed =
        prev.observed_generation.is_some() && prev.observed_generation != o.generation;
    let failures = prev.consecutive_failures.unwrap_or(0);
    // One failure per interval at most.
    let count_failure = |s: &mut MCPServerStatus| -> i32 {
        let due = since(now, prev.last_health_check.as_ref()).is_none_or(|d| d >= o.interval);
        if due {
            s.last_health_check = Some(Time(now));
            failures + 1
        } else {
            failures
        }
    };
    // Started: entering any running state from nothing or Cold, or after a spec change while not Ready.
    let restarting = matches!(prev_state, None | Some(ServerState::Cold))
        || (spec_changed && prev_state != Some(ServerState::Ready));
    let was_up = matches!(
        prev_state,
        Some(ServerState::Ready) | Some(ServerState::Degraded)
    ) || (prev_state == Some(ServerState::Dead) && failures > 0);

    if let Some(why) = &o.hold {
        (ServerState::Dead, NON_COMPLIANT.into(), why.clone())
    } else if !o.remote && o.desired == 0 {
        s.consecutive_failures = Some(0);
        (
            ServerState::Cold,
            "ScaledToZero".into(),
            "0 replicas wanted; the server starts on demand".into(),
        )
    } else if let (true, Some(state), Some((reason, message))) = (
        o.check_pending && was_up && !restarting,
        prev_state,
        ready_condition(prev),
    ) {
        (state, reason, message)
    } else {
        if restarting {
            s.last_started_at = Some(Time(now));
        }
        let (healthy, partial, what) = if o.remote {
            match &o.check {
                Some(c) if c.ok => (true, false, c.message.clone()),
                Some(c) => (false, false, c.message.clone()),
                None => (false, false, "no health check yet".into()),
            }
        } else {
            let w = o.workload.clone().unwrap_or_default();
            let check_ok = o.check.as_ref().is_none_or(|c| c.ok) && !o.check_pending;
            let what = format!("{}/{} replicas ready", w.ready, o.desired);
            let what = match &o.check {
                Some(c) if !c.ok => format!("{what}; {}", c.message),
                None if o.check_pending && w.ready > 0 => {
                    format!("{what}; awaiting the first health check")
                }
                _ => what,
            };
            let what = match &o.pod_problem {
                Some((_, why)) if w.ready < o.desired => format!("{what}; {why}"),
                _ => what,
            };
            (
                w.ready >= o.desired && check_ok,
                w.ready > 0 && check_ok,
                what,
            )
        };
        if healthy && let Some((reason, m)) = &o.apply_error {
            // It answers, but not as specified: a child that did not apply (a full Service
            // range, a conflict) is not Ready, and the interval's requeue retries it.
            s.consecutive_failures = Some(0);
            (
                ServerState::Degraded,
                reason.clone(),
                format!("{what}, but not all of it is applied: {m}"),
            )
        } else if healthy {
            s.consecutive_failures = Some(0);
            (ServerState::Ready, "Available".into(), what)
        } else if partial {
            (ServerState::Degraded, "ReplicasNotReady".into(), what)
        } else if !was_up || restarting {
            let started = if restarting {
                Some(Duration::ZERO)
            } else {
                since(now, s.last_started_at.as_ref())
            };
            if started.is_some_and(|d| d < o.startup_timeout) || started.is_none() {
                if started.is_none() {
                    s.last_started_at = Some(Time(now));
                }
                (ServerState::Initializing, "Starting".into(), what)
            } else {
                // The pods' own reason when they have one (ImagePullBackOff, CrashLoopBackOff,
                // ...): it says what to fix.
                let reason = match &o.pod_problem {
                    Some((r, _)) => r.clone(),
                    None => "StartupTimeout".into(),
                };
                (
                    ServerState::Dead,
                    reason,
                    format!(
                        "not healthy within startupTimeout {}s: {what}",
                        o.startup_timeout.as_secs()
                    ),
                )
            }
        } else {
            let f = count_failure(s);
            s.consecutive_failures = Some(f);
            if f >= o.failure_threshold {
                (
                    ServerState::Dead,
                    "FailureThreshold".into(),
                    format!("{f} consecutive failed checks: {what}"),
                )
            } else {
                (
                    ServerState::Degraded,
                    "CheckFailing".into(),
                    format!("{f}/{} failed checks: {what}", o.failure_threshold),
                )
            }
        }
    }
}

/// The reason and message of the previous Ready condition.
fn ready_condition(prev: &MCPServerStatus) -> Option<(String, String)> {
    prev.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == READY)
        .map(|c| (c.reason.clone(), c.message.clone()))
}

/// The Ready and Reconciled conditions.
fn conditions(
    prev: &MCPServerStatus,
    o: &Observed,
    state: ServerState,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Vec<Condition> {
    let prev_conds = prev.conditions.as_deref().unwrap_or_default();
    let mut conds = Vec::new();
    conds.push(condition(
        prev_conds,
        READY,
        state == ServerState::Ready,
        reason,
        message,
        o.generation,
        now,
    ));
    let (applied, r, m) = match &o.apply_error {
        None => (
            true,
            "Applied".to_string(),
            "all objects applied".to_string(),
        ),
        Some((r, m)) => (false, r.clone(), m.clone()),
    };
    conds.push(condition(
        prev_conds,
        RECONCILED,
        applied,
        &r,
        &m,
        o.generation,
        now,
    ));
    // Only once there is something to say: a clean server keeps its two conditions.
    let had = prev_conds.iter().any(|c| c.type_ == FOREIGN_CHANGES);
    if o.foreign.is_some() || had {
        let (r, m) = match &o.foreign {
            Some(m) => ("ForeignFields", m.as_str()),
            None => ("None", "the Deployment runs only what hangar rendered"),
        };
        conds.push(condition(
            prev_conds,
            FOREIGN_CHANGES,
            o.foreign.is_some(),
            r,
            m,
            o.generation,
            now,
        ));
    }
    conds
}

/// A condition that keeps its lastTransitionTime (from `prev`) while its status stays the same.
pub fn condition(
    prev: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let old = prev.iter().find(|c| c.type_ == type_);
    let since = match old {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(now),
    };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: truncate(message, 1024),
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// Seed 002's phase of a status (what `status.phase` shows): ValidationFailed, as in the seed,
/// only for a server strict mode holds (its Ready condition's reason is `NonCompliant`); an
/// unreachable or crashing server is Failed.
pub fn seed_phase_of(s: &crate::api::server::MCPServerStatus) -> &'static str {
    let held = s
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == READY && c.reason == NON_COMPLIANT);
    seed_phase(s.state.unwrap_or(ServerState::Initializing), held)
}

/// Seed 002's phase for a hangar state: Cold (not started) is Pending, Initializing is
/// Creating, Ready and Degraded (serving, with some failures) are Running, Dead is Failed, or
/// ValidationFailed when a strict-mode validation failed.
pub fn seed_phase(state: ServerState, validation_failed: bool) -> &'static str {
    match state {
        ServerState::Cold => "Pending",
        ServerState::Initializing => "Creating",
        ServerState::Ready | ServerState::Degraded => "Running",
        ServerState::Dead if validation_failed => "ValidationFailed",
        ServerState::Dead => "Failed",
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn obs(desired: i32, ready: i32) -> Observed {
        Observed {
            generation: Some(1),
            remote: false,
            desired,
            workload: Some(Workload {
                replicas: desired,
                ready,
                available: ready,
            }),
            check: None,
            check_pending: false,
            pod_problem: None,
            apply_error: None,
            hold: None,
            endpoint: None,
            foreign: None,
            startup_timeout: Duration::from_secs(30),
            failure_threshold: 3,
            interval: Duration::from_secs(10),
        }
    }

    fn state(s: &MCPServerStatus) -> ServerState {
        s.state.unwrap()
    }

    #[test]
    fn foreign_changes_show_as_a_condition_until_they_are_gone() {
        let types = |s: &MCPServerStatus| -> Vec<(String, String)> {
            s.conditions
                .iter()
                .flatten()
                .map(|c| (c.type_.clone(), c.status.clone()))
                .collect()
        };
        let (clean, _) = next(&MCPServerStatus::default(), &obs(1, 1), t(0));
        assert_eq!(
            types(&clean).len(),
            2,
            "a clean server has Ready and Reconciled"
        );
        let mut drifted = obs(1, 1);
        drifted.foreign = Some("container `x` added".into());
        let (s, _) = next(&clean, &drifted, t(1));
        assert_eq!(state(&s), ServerState::Ready, "what runs still answers");
        assert_eq!(types(&s)[2], (FOREIGN_CHANGES.into(), "True".into()));
        let (s, _) = next(&s, &obs(1, 1), t(2));
        assert_eq!(types(&s)[2], (FOREIGN_CHANGES.into(), "False".into()));
        let c = &s.conditions.as_ref().unwrap()[2];
        assert_eq!(c.last_transition_time, Time(t(2)));
    }

    #[test]
    fn cold_initializing_ready() {
        let (s, tr) = next(&MCPServerStatus::default(), &obs(0, 0), t(0));
        assert_eq!(state(&s), ServerState::Cold);
        assert_eq!(tr.unwrap().to, ServerState::Cold);
        let (s, tr) = next(&s, &obs(1, 0), t(1));
        assert_eq!(state(&s), ServerState::Initializing);
        assert_eq!(tr.unwrap().from, Some(ServerState::Cold));
        assert_eq!(s.last_started_at, Some(Time(t(1))));
        let (s2, tr) = next(&s, &obs(1, 0), t(5));
        assert_eq!(state(&s2), ServerState::Initializing);
        assert!(tr.is_none());
        assert_eq!(s2, s, "nothing changed, nothing to write");
        assert_eq!(s2.phase.as_deref(), Some("Creating"), "seed 002's phase");
        let (s3, tr) = next(&s2, &obs(1, 1), t(6));
        assert_eq!(state(&s3), ServerState::Ready);
        assert_eq!(s3.phase.as_deref(), Some("Running"));
        assert_eq!(tr.unwrap().to, ServerState::Ready);
        let ready = s3.conditions.as_ref().unwrap()[0].clone();
        assert_eq!(ready.status, "True");
        assert_eq!(ready.last_transition_time, Time(t(6)));
        // Steady: identical status, transition time kept.
        let (s4, tr) = next(&s3, &obs(1, 1), t(100));
        assert!(tr.is_none());
        assert_eq!(s4, s3);
    }

    #[test]
    fn startup_timeout_is_dead() {
        let (s, _) = next(&MCPServerStatus::default(), &obs(1, 0), t(0));
        assert_eq!(state(&s), ServerState::Initializing);
        let (s, tr) = next(&s, &obs(1, 0), t(31));
        assert_eq!(state(&s), ServerState::Dead);
        assert_eq!(tr.unwrap().reason, "StartupTimeout");
        // Recovers when it becomes ready.
        let (s, _) = next(&s, &obs(1, 1), t(40));
        assert_eq!(state(&s), ServerState::Ready);
    }

    #[test]
    fn a_pod_problem_is_said_while_starting_and_is_the_reason_of_a_timeout() {
        let mut o = obs(1, 0);
        o.pod_problem = Some((
            "ImagePullBackOff".into(),
            "pod s-1, container server: ImagePullBackOff: no such host".into(),
        ));
        let (s, _) = next(&MCPServerStatus::default(), &o, t(0));
        assert_eq!(state(&s), ServerState::Initializing);
        let ready = condition_of(&s, READY);
        assert_eq!(ready.reason, "Starting");
        assert_eq!(
            ready.message,
            "0/1 replicas ready; pod s-1, container server: ImagePullBackOff: no such host"
        );
        let (s, tr) = next(&s, &o, t(31));
        assert_eq!(state(&s), ServerState::Dead);
        let tr = tr.unwrap();
        assert_eq!(tr.reason, "ImagePullBackOff");
        assert!(
            tr.message
                .starts_with("not healthy within startupTimeout 30s: 0/1 replicas ready; pod s-1"),
            "{}",
            tr.message
        );
        // Ready replicas: a problem of some other pod is not the server's.
        let mut o = obs(1, 1);
        o.pod_problem = Some(("CrashLoopBackOff".into(), "pod old".into()));
        let (s, _) = next(&s, &o, t(40));
        assert_eq!(state(&s), ServerState::Ready);
        assert_eq!(condition_of(&s, READY).message, "1/1 replicas ready");
    }

    fn condition_of(s: &MCPServerStatus, ty: &str) -> Condition {
        s.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == ty)
            .cloned()
            .unwrap()
    }

    #[test]
    fn failures_count_per_interval_to_dead() {
        let (s, _) = next(&MCPServerStatus::default(), &obs(1, 1), t(0));
        assert_eq!(state(&s), ServerState::Ready);
        let (s, _) = next(&s, &obs(1, 0), t(1));
        assert_eq!(state(&s), ServerState::Degraded);
        assert_eq!(s.consecutive_failures, Some(1));
        // A burst of events within the interval counts once.
        let (s, tr) = next(&s, &obs(1, 0), t(2));
        assert_eq!(s.consecutive_failures, Some(1));
        assert!(tr.is_none());
        let (s, _) = next(&s, &obs(1, 0), t(12));
        assert_eq!(s.consecutive_failures, Some(2));
        let (s, tr) = next(&s, &obs(1, 0), t(23));
        assert_eq!(state(&s), ServerState::Dead);
        assert_eq!(tr.unwrap().reason, "FailureThreshold");
        let (s, _) = next(&s, &obs(1, 1), t(30));
        assert_eq!(state(&s), ServerState::Ready);
        assert_eq!(s.consecutive_failures, Some(0));
    }

    #[test]
    fn partial_replicas_degraded_and_cold_records_stop() {
        let (s, _) = next(&MCPServerStatus::default(), &obs(3, 3), t(0));
        let (s, tr) = next(&s, &obs(3, 2), t(1));
        assert_eq!(state(&s), ServerState::Degraded);
        assert_eq!(tr.unwrap().message, "2/3 replicas ready");
        let (s, _) = next(&s, &obs(0, 0), t(2));
        assert_eq!(state(&s), ServerState::Cold);
        assert_eq!(s.last_stopped_at, Some(Time(t(2))));
    }

    #[test]
    fn remote_checks_and_apply_errors() {
        let mut o = obs(1, 0);
        o.remote = true;
        o.workload = None;
        o.check = Some(Check {
            ok: true,
            message: "reachable".into(),
            ..Check::default()
        });
        let (s, _) = next(&MCPServerStatus::default(), &o, t(0));
        assert_eq!(state(&s), ServerState::Ready);
        assert_eq!(s.replicas, None);
        o.check = Some(Check {
            ok: false,
            message: "connection refused".into(),
            ..Check::default()
        });
        o.apply_error = Some(("Conflict".into(), "field owned by kubectl".into()));
        let (s, _) = next(&s, &o, t(1));
        assert_eq!(state(&s), ServerState::Degraded);
        let rec = &s.conditions.as_ref().unwrap()[1];
        assert_eq!(
            (rec.status.as_str(), rec.reason.as_str()),
            ("False", "Conflict")
        );
    }

    #[test]
    fn a_pending_first_check_keeps_a_server_up_and_a_new_one_starting() {
        // New container server, replica ready, its first check not finished: not Ready yet.
        let mut o = obs(1, 1);
        o.check_pending = true;
        let (s, _) = next(&MCPServerStatus::default(), &o, t(0));
        assert_eq!(state(&s), ServerState::Initializing);
        // The check passes: Ready.
        o.check_pending = false;
        o.check = Some(Check {
            ok: true,
            message: "fine".into(),
            ..Check::default()
        });
        let (ready, _) = next(&s, &o, t(1));
        assert_eq!(state(&ready), ServerState::Ready);
        // A restart of the controller (or a new check plan): pending again, still Ready, and
        // nothing counted or rewritten.
        o.check = None;
        o.check_pending = true;
        let (kept, tr) = next(&ready, &o, t(50));
        assert_eq!(kept, ready);
        assert!(tr.is_none());
        // A remote server with nothing checked yet starts, and is kept up later the same way.
        let mut r = obs(1, 0);
        r.remote = true;
        r.workload = None;
        r.check_pending = true;
        let (s, _) = next(&MCPServerStatus::default(), &r, t(0));
        assert_eq!(state(&s), ServerState::Initializing);
        let (failing, _) = next(
            &ready,
            &Observed {
                check: Some(Check {
                    ok: false,
                    message: "down".into(),
                    ..Check::default()
                }),
                check_pending: false,
                ..r.clone()
            },
            t(60),
        );
        assert_eq!(state(&failing), ServerState::Degraded);
        let (still, _) = next(&failing, &r, t(200));
        assert_eq!(still, failing, "a pending check counts no failure");
    }

    #[test]
    fn spec_change_restarts_the_startup_window() {
        let (s, _) = next(&MCPServerStatus::default(), &obs(1, 0), t(0));
        let (s, _) = next(&s, &obs(1, 0), t(40));
        assert_eq!(state(&s), ServerState::Dead);
        let mut o = obs(1, 0);
        o.generation = Some(2);
        let (s, tr) = next(&s, &o, t(41));
        assert_eq!(state(&s), ServerState::Initializing);
        assert_eq!(tr.unwrap().from, Some(ServerState::Dead));
        assert_eq!(s.last_started_at, Some(Time(t(41))));
    }
}
