//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several controller replicas
//! exactly one writes.
//!
//! The algorithm is client-go's: a candidate takes the Lease when it has no holder, or when its
//! record (resourceVersion) has not changed for `leaseDurationSeconds` as measured on the
//! candidate's own clock since it last saw it change (so clock skew between nodes does not
//! matter). Every write is an update with the resourceVersion read just before (optimistic
//! concurrency: of two candidates racing, one gets a 409). The leader renews every retry period;
//! when it has not renewed within the renew deadline (two thirds of the lease duration, counted
//! from before the last successful request was sent) it exits at once, non-zero, before any
//! follower can consider the Lease expired. The pod restarts and waits as a follower. The
//! election runs on a thread of its own (its own runtime and client), so a busy controller cannot
//! delay it. Exiting is not enough for a process that was paused past the deadline: every API
//! client of the process is fenced on the same deadline (see [`super::fence`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::fence::Fence;
use super::metrics::Metrics;
use crate::connect::Connect;

/// Exit status of a leader that lost its lease.
pub const LOST_EXIT_CODE: i32 = 3;

#[derive(clap::Args, Debug, Clone)]
pub struct LeaderArgs {
    /// Run the controllers only while holding a Lease (several replicas, one active).
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the Lease (default: POD_NAMESPACE, else the in-cluster or kubeconfig
    /// namespace).
    #[arg(long, value_name = "NS")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, value_name = "NAME", default_value = "hangar-controller")]
    pub leader_election_lease_name: String,
    /// How long a Lease not renewed stays taken; the leader gives up after two thirds of it.
    #[arg(long, value_name = "DUR", default_value = "15s", value_parser = parse_lease_duration)]
    pub leader_election_lease_duration: Duration,
}

fn parse_lease_duration(s: &str) -> Result<Duration, String> {
    let d = crate::compile::units::parse_duration(s)?;
    if d < Duration::from_secs(2) || d > Duration::from_secs(3600) {
        return Err(format!(
            "`{s}` is out of range: a lease duration is 2s to 1h"
        ));
    }
    Ok(d)
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lease {namespace}/{name}: {source}")]
    Kube {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Timings derived from the lease duration (client-go's 15 s / 10 s / 2 s ratios).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    pub lease: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
}

impl Timings {
    pub fn of(lease: Duration) -> Timings {
        Timings {
            lease,
            renew_deadline: lease * 2 / 3,
            retry: (lease / 6).max(Duration::from_millis(200)),
        }
    }
}

/// What a candidate does with the Lease it just read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Ours already: renew it.
    Renew,
    /// Free (no holder) or expired: take it.
    Take,
    /// Held by another candidate whose record changed within the lease duration.
    Wait,
}

/// The pure rule. `unchanged_for` is how long this candidate has seen the Lease's record
/// unchanged (its own clock).
pub fn decide(spec: Option<&LeaseSpec>, me: &str, unchanged_for: Duration) -> Decision {
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty());
    match holder {
        Some(h) if h == me => Decision::Renew,
        None => Decision::Take,
        Some(_) => {
            let secs = spec
                .and_then(|s| s.lease_duration_seconds)
                .unwrap_or(15)
                .max(1);
            if unchanged_for >= Duration::from_secs(u64::from(secs.unsigned_abs())) {
                Decision::Take
            } else {
                Decision::Wait
            }
        }
    }
}

/// One candidate for one Lease.
pub struct Elector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    timings: Timings,
    /// The record last seen (resourceVersion) and when it was first seen.
    observed: Option<(String, Instant)>,
}

impl Elector {
    pub fn new(client: &Client, args: &LeaderArgs) -> Elector {
        let namespace = args
            .leader_election_namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| client.default_namespace().to_string());
        Elector {
            api: Api::namespaced(client.clone(), &namespace),
            namespace,
            name: args.leader_election_lease_name.clone(),
            identity: identity(),
            timings: Timings::of(args.leader_election_lease_duration),
            observed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn err(&self, source: kube::Error) -> LeaderError {
        LeaderError::Kube {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: MicroTime) -> LeaseSpec {
        let ours = previous.and_then(|s| s.holder_identity.as_deref()) == Some(&*self.identity);
        let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.timings.lease.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: if ours {
                previous.and_then(|s| s.acquire_time.clone())
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if ours || previous.is_none() {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..LeaseSpec::default()
        }
    }

    /// One round: reads the Lease and takes or renews it when the rule allows. Ok(true) when
    /// this candidate holds it afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaderError> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(None, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(l) => {
                    self.observe(&l);
                    Ok(true)
                }
                // Another candidate created it first.
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.err(e)),
            };
        };
        let unchanged_for = self.observe(&lease);
        match decide(lease.spec.as_ref(), &self.identity, unchanged_for) {
            Decision::Wait => Ok(false),
            Decision::Renew | Decision::Take => {
                lease.spec = Some(self.spec(lease.spec.as_ref(), now));
                // `replace` sends the resourceVersion just read: a concurrent write is a 409.
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(l) => {
                        self.observe(&l);
                        Ok(true)
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(self.err(e)),
                }
            }
        }
    }

    /// Records the Lease's record; returns how long it has been unchanged.
    fn observe(&mut self, lease: &Lease) -> Duration {
        let rv = lease.resource_version().unwrap_or_default();
        let now = Instant::now();
        match &self.observed {
            Some((seen, at)) if *seen == rv => now.duration_since(*at),
            _ => {
                self.observed = Some((rv, now));
                Duration::ZERO
            }
        }
    }

    /// Gives the Lease up (shutdown): no holder, so a follower takes it on its next round.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(&*self.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "released the leader lease"),
            Err(e) => tracing::warn!(error = %e, "cannot release the leader lease"),
        }
    }

    /// Waits until this candidate holds the Lease (retrying every retry period; API errors are
    /// logged and retried). Returns when the request that took it was sent.
    async fn acquire(&mut self) -> Instant {
        tracing::info!(
            lease = %format!("{}/{}", self.namespace, self.name),
            identity = %self.identity,
            "waiting for the leader lease"
        );
        loop {
            let sent = Instant::now();
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(identity = %self.identity, "became the leader");
                    return sent;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(self.timings.retry).await;
        }
    }
}

/// The held Lease, renewed on a thread of its own until [`Leadership::release`].
pub struct Leadership {
    release: oneshot::Sender<oneshot::Sender<()>>,
}

/// A shutdown signal came while waiting for the Lease.
pub struct Shutdown;

/// Without `--leader-elect`: Ok(None) at once. With it: waits for the Lease (ready meanwhile, as
/// a standing-by follower), then Ok(Some) with readiness left to the caches.
///
/// The election runs on a thread with its own runtime and API client, so reconciles keeping the
/// controller's runtime busy cannot delay a renewal, nor the exit of a leader that lost the
/// Lease: when it has not renewed within the renew deadline, or finds another holder, it logs it
/// and exits the process at once with [`LOST_EXIT_CODE`], before anyone else may start.
pub async fn gate(
    args: &LeaderArgs,
    connect: &Connect,
    metrics: &Arc<Metrics>,
    fence: &Arc<Fence>,
) -> Result<Option<Leadership>, Shutdown> {
    if !args.leader_elect {
        metrics.leader.set(1);
        return Ok(None);
    }
    metrics.leader.set(0);
    metrics.ready.store(true, Ordering::Relaxed);
    let (won_tx, won_rx) = oneshot::channel::<()>();
    let (release_tx, release_rx) = oneshot::channel::<oneshot::Sender<()>>();
    let (args, connect, m, f) = (
        args.clone(),
        connect.clone(),
        metrics.clone(),
        fence.clone(),
    );
    let spawned = std::thread::Builder::new()
        .name("leader-election".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(elect(args, connect, m, f, won_tx, release_rx)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the leader election runtime");
                    std::process::exit(LOST_EXIT_CODE);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the leader election thread");
        std::process::exit(LOST_EXIT_CODE);
    }
    let won = tokio::select! {
        r = won_rx => r.is_ok(),
        () = shutdown_signal() => false,
    };
    metrics.ready.store(false, Ordering::Relaxed);
    if won {
        Ok(Some(Leadership {
            release: release_tx,
        }))
    } else {
        Err(Shutdown)
    }
}

/// The election thread: a client, the Lease taken, then renewed until released or lost. Every
/// renewal moves the fence's deadline to `sent + renew_deadline` (`sent` taken before the
/// request went out, so the deadline is never later than the one the followers count from).
async fn elect(
    args: LeaderArgs,
    connect: Connect,
    metrics: Arc<Metrics>,
    fence: Arc<Fence>,
    won: oneshot::Sender<()>,
    mut release: oneshot::Receiver<oneshot::Sender<()>>,
) {
    let timings = Timings::of(args.leader_election_lease_duration);
    // Fenced too: a paused leader's election thread does not send a renewal either. Not
    // throttled: renewals never queue behind the reconciles' requests.
    let unthrottled = super::throttle::ThrottleLayer::new(0.0, 1);
    let client = loop {
        match super::fence::connect(&connect, &fence, true, &unthrottled).await {
            Ok(c) => break c,
            Err(e) => tracing::warn!(error = %e, "leader election: no API client"),
        }
        tokio::time::sleep(timings.retry).await;
    };
    let mut el = Elector::new(&client, &args);
    let mut last_ok = el.acquire().await;
    fence.allow_until((last_ok + timings.renew_deadline).into_std());
    metrics.leader.set(1);
    if won.send(()).is_err() {
        return;
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(timings.retry) => {}
            done = &mut release => {
                el.release().await;
                if let Ok(done) = done {
                    let _ = done.send(());
                }
                return;
            }
        }
        // Resumed past the deadline (paused, or starved): the fence is closed already; say so
        // before trying anything.
        if Instant::now() >= last_ok + timings.renew_deadline {
            lost(
                &metrics,
                &fence,
                "the lease was not renewed within the renew deadline",
            );
        }
        // A leader whose controllers have stopped running must not hold the lease: renewing it
        // from this thread would keep a working follower out.
        let silent = metrics.liveness.since_beat();
        if silent >= timings.renew_deadline {
            lost(
                &metrics,
                &fence,
                &format!(
                    "the controller's runtime has not run for {}s (stuck); giving the lease up",
                    silent.as_secs()
                ),
            );
        }
        let sent = Instant::now();
        let deadline = last_ok + timings.renew_deadline;
        match tokio::time::timeout_at(deadline, el.try_acquire_or_renew()).await {
            Ok(Ok(true)) => {
                last_ok = sent;
                fence.allow_until((sent + timings.renew_deadline).into_std());
            }
            Ok(Ok(false)) => lost(&metrics, &fence, "another candidate holds the lease"),
            Ok(Err(err)) => tracing::warn!(error = %err, "cannot renew the leader lease"),
            Err(_) => lost(
                &metrics,
                &fence,
                "the lease was not renewed within the renew deadline",
            ),
        }
        if Instant::now() >= last_ok + timings.renew_deadline {
            lost(
                &metrics,
                &fence,
                "the lease was not renewed within the renew deadline",
            );
        }
    }
}

impl Leadership {
    /// Stops renewing and gives the Lease up (graceful shutdown; 5 s at most).
    pub async fn release(self) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.release.send(done_tx).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), done_rx).await;
        }
    }
}

/// Closes the fence first: nothing more is sent while the process exits.
fn lost(metrics: &Metrics, fence: &Fence, reason: &str) -> ! {
    fence.close();
    metrics.leader.set(0);
    tracing::error!(
        reason,
        fenced_requests = fence.refused(),
        "lost the leader lease; exiting"
    );
    eprintln!("hangar controller: lost the leader lease ({reason}); exiting");
    std::process::exit(LOST_EXIT_CODE)
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `POD_NAME` (or the host name), the process id and the start time: unique per process, so
/// two processes on one host (or a restarted container) never share an identity.
fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "hangar".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}_{}_{nanos:08x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(by: &str, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(by.into()),
            lease_duration_seconds: Some(secs),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn free_leases_are_taken_held_ones_only_when_unchanged_for_their_duration() {
        let s = Duration::from_secs;
        assert_eq!(decide(None, "me", s(0)), Decision::Take);
        let empty = LeaseSpec {
            holder_identity: Some(String::new()),
            ..LeaseSpec::default()
        };
        assert_eq!(decide(Some(&empty), "me", s(0)), Decision::Take);
        assert_eq!(decide(Some(&held("me", 6)), "me", s(0)), Decision::Renew);
        assert_eq!(decide(Some(&held("other", 6)), "me", s(5)), Decision::Wait);
        assert_eq!(decide(Some(&held("other", 6)), "me", s(6)), Decision::Take);
        // No duration recorded: client-go's default of 15 s.
        let no_duration = LeaseSpec {
            holder_identity: Some("other".into()),
            ..LeaseSpec::default()
        };
        assert_eq!(decide(Some(&no_duration), "me", s(14)), Decision::Wait);
        assert_eq!(decide(Some(&no_duration), "me", s(15)), Decision::Take);
    }

    #[test]
    fn the_leader_gives_up_before_a_follower_may_take_over() {
        for lease in [2, 6, 15, 60] {
            let t = Timings::of(Duration::from_secs(lease));
            assert!(t.renew_deadline < t.lease, "{t:?}");
            assert!(t.retry * 2 < t.renew_deadline, "{t:?}");
        }
        assert_eq!(
            Timings::of(Duration::from_secs(15)),
            Timings {
                lease: Duration::from_secs(15),
                renew_deadline: Duration::from_secs(10),
                retry: Duration::from_millis(2500),
            }
        );
    }

    #[test]
    fn lease_durations_are_bounded() {
        assert!(parse_lease_duration("6s").is_ok());
        assert!(parse_lease_duration("1s").is_err());
        assert!(parse_lease_duration("2h").is_err());
        assert!(parse_lease_duration("soon").is_err());
    }
}
