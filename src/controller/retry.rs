//! Retrying failed reconciles: per object, exponential backoff with jitter (reset when the
//! object reconciles); per process, one log line when the API server becomes unreachable and
//! one when it is back, however many objects fail meanwhile.
//!
//! During an outage every object fails at once; retried on a fixed period they all retried (and
//! logged) together, every 5 s, for as long as it lasted. Now the k-th consecutive failure of
//! an object waits a random time between half and all of `min(5 s * 2^(k-1), 5 min)`, so the
//! retries spread out and thin out; and when a reconcile succeeds again after an outage, the
//! objects that failed during it are retried at once instead of at the end of their backoff.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The first retry's nominal delay.
pub const BASE: Duration = Duration::from_secs(5);
/// The longest nominal delay.
pub const CAP: Duration = Duration::from_secs(300);
/// A new outage within this time after the last one ended is the same outage flapping: it is
/// logged only if it lasts this long.
pub const QUIET: Duration = Duration::from_secs(30);

/// How long to wait after the `failures`-th consecutive failure (1 is the first), with
/// `jitter` in [0, 1) (a uniform random number): between half and all of the nominal delay.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let nominal = BASE.saturating_mul(1 << doublings).min(CAP);
    nominal.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// Whether a reconcile failed because the API server could not be reached (no connection, a
/// broken one, a timeout, 503), as opposed to answering about this object (a 422, a conflict).
pub fn unreachable(err: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(k) = e.downcast_ref::<kube::Error>() {
            match k {
                kube::Error::HyperError(_) | kube::Error::Service(_) => return true,
                kube::Error::Api(s) if s.code == 503 || s.code == 504 => return true,
                _ => {}
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::BrokenPipe
                    | K::TimedOut
                    | K::UnexpectedEof
            )
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// What to log about the API server after a reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Say {
    Nothing,
    /// It has just become unreachable.
    Down,
    /// It is reachable again (after a `Down`): for how long it was not, and how many
    /// reconciles failed meanwhile.
    Up {
        after: Duration,
        failed: u64,
    },
}

#[derive(Clone, Copy, Debug)]
struct Open {
    since: Instant,
    failed: u64,
    logged: bool,
}

/// The outage state machine (pure; the clock is the caller's).
#[derive(Debug, Default)]
pub struct Outage {
    open: Option<Open>,
    last_end: Option<Instant>,
}

impl Outage {
    /// A reconcile found the API server unreachable.
    pub fn unreachable(&mut self, now: Instant) -> Say {
        match &mut self.open {
            Some(o) => {
                o.failed += 1;
                // A flap right after an outage, silent so far, that turns out to last.
                if !o.logged && now.duration_since(o.since) >= QUIET {
                    o.logged = true;
                    return Say::Down;
                }
                Say::Nothing
            }
            None => {
                let flap = self
                    .last_end
                    .is_some_and(|end| now.duration_since(end) < QUIET);
                self.open = Some(Open {
                    since: now,
                    failed: 1,
                    logged: !flap,
                });
                if flap { Say::Nothing } else { Say::Down }
            }
        }
    }

    /// A reconcile that started at `started` succeeded: the API server answers, if it started
    /// after the outage did (one that was nearly done when the API server went away proves
    /// nothing).
    pub fn reachable(&mut self, started: Instant, now: Instant) -> Say {
        let Some(o) = self.open.take_if(|o| started >= o.since) else {
            return Say::Nothing;
        };
        self.last_end = Some(now);
        if o.logged {
            Say::Up {
                after: now.duration_since(o.since),
                failed: o.failed,
            }
        } else {
            Say::Nothing
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }
}

/// Consecutive failures per object (by uid) and the outage state, shared by every controller.
pub struct Retries {
    failures: Mutex<HashMap<String, u32>>,
    outage: Mutex<Outage>,
    /// Bumped when an outage ends: the controllers retry what failed during it.
    recovered: tokio::sync::watch::Sender<u64>,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            failures: Mutex::new(HashMap::new()),
            outage: Mutex::new(Outage::default()),
            recovered: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Retries {
    /// Records a failure of object `uid`: its count of consecutive failures, and what to log
    /// about the API server.
    pub fn failed(&self, uid: &str, unreachable: bool, now: Instant) -> (u32, Say) {
        let n = {
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let n = f.entry(uid.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let say = if unreachable {
            self.outage
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .unreachable(now)
        } else {
            Say::Nothing
        };
        (n, say)
    }

    /// Records a success of object `uid`, whose reconcile started at `started` (its backoff
    /// starts over).
    pub fn succeeded(&self, uid: &str, started: Instant, now: Instant) -> Say {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
        let mut o = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        let was_open = o.is_open();
        let say = o.reachable(started, now);
        let ended = was_open && !o.is_open();
        drop(o);
        if ended {
            self.recovered.send_modify(|n| *n = n.wrapping_add(1));
        }
        say
    }

    /// The objects whose last reconcile failed.
    pub fn failing(&self) -> HashSet<String> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Changes whenever an outage ends.
    pub fn recoveries(&self) -> tokio::sync::watch::Receiver<u64> {
        self.recovered.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_5s_to_5min_with_jitter_between_half_and_all() {
        let s = Duration::from_secs;
        assert_eq!(backoff(1, 0.999_999_999).as_secs(), 4);
        assert_eq!(backoff(1, 0.0), Duration::from_millis(2500));
        assert_eq!(backoff(2, 0.0), s(5));
        assert_eq!(backoff(3, 0.0), s(10));
        assert_eq!(backoff(7, 0.0), s(150));
        assert_eq!(backoff(8, 0.0), s(150));
        assert_eq!(backoff(u32::MAX, 0.0), s(150));
        for k in 1..40 {
            for j in [0.0, 0.3, 0.7, 0.999] {
                let d = backoff(k, j);
                assert!(
                    d >= Duration::from_millis(2500) && d <= CAP,
                    "{k} {j} {d:?}"
                );
                assert!(backoff(k + 1, j) >= d, "monotonic in failures");
            }
        }
        // Out-of-range jitter is clamped.
        assert_eq!(backoff(1, -3.0), backoff(1, 0.0));
        assert_eq!(backoff(1, 7.0), s(5));
    }

    #[test]
    fn one_line_when_the_outage_starts_one_when_it_ends() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut o = Outage::default();
        assert_eq!(o.reachable(at(0), at(0)), Say::Nothing);
        assert_eq!(o.unreachable(at(1)), Say::Down);
        for i in 0..500 {
            assert_eq!(o.unreachable(at(1 + i / 50)), Say::Nothing);
        }
        // A reconcile that started before the outage and finished after it began proves nothing.
        assert_eq!(o.reachable(at(0), at(2)), Say::Nothing);
        assert!(o.is_open());
        assert_eq!(
            o.reachable(at(19), at(20)),
            Say::Up {
                after: Duration::from_secs(19),
                failed: 501
            }
        );
        assert_eq!(o.reachable(at(21), at(21)), Say::Nothing);
        // A flap just after: silent, start and end.
        assert_eq!(o.unreachable(at(22)), Say::Nothing);
        assert_eq!(o.reachable(at(23), at(23)), Say::Nothing);
        // One that lasts is logged once it has lasted QUIET, and its end too.
        assert_eq!(o.unreachable(at(24)), Say::Nothing);
        assert_eq!(o.unreachable(at(40)), Say::Nothing);
        assert_eq!(o.unreachable(at(54)), Say::Down);
        assert_eq!(o.unreachable(at(55)), Say::Nothing);
        assert!(matches!(
            o.reachable(at(60), at(60)),
            Say::Up { failed: 4, .. }
        ));
        // Long after: a new outage is logged at once.
        assert_eq!(o.unreachable(at(100)), Say::Down);
    }

    #[test]
    fn failures_count_per_object_and_reset_on_success() {
        let r = Retries::default();
        let now = Instant::now();
        let mut rx = r.recoveries();
        assert_eq!(r.failed("a", false, now), (1, Say::Nothing));
        assert_eq!(r.failed("a", false, now), (2, Say::Nothing));
        assert_eq!(r.failed("b", true, now), (1, Say::Down));
        assert_eq!(r.failed("a", true, now), (3, Say::Nothing));
        assert_eq!(r.failing().len(), 2);
        assert!(!rx.has_changed().unwrap_or(true));
        assert!(matches!(
            r.succeeded("b", now, now),
            Say::Up { failed: 2, .. }
        ));
        assert!(rx.has_changed().unwrap_or(false));
        rx.mark_unchanged();
        assert_eq!(r.failed("b", false, now), (1, Say::Nothing));
        assert_eq!(r.succeeded("c", now, now), Say::Nothing);
        assert!(!rx.has_changed().unwrap_or(true), "no outage, no recovery");
        assert_eq!(
            r.failing(),
            HashSet::from(["a".to_string(), "b".to_string()])
        );
    }

    #[test]
    fn connection_errors_are_told_from_answers_about_one_object() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(unreachable(&refused));
        let svc = kube::Error::Service(Box::new(refused));
        assert!(unreachable(&svc));
        let status = |code: u16| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..kube::core::Status::default()
            }))
        };
        assert!(unreachable(&status(503)));
        assert!(!unreachable(&status(422)));
        assert!(!unreachable(&status(409)));
        // Wrapped in the controller's errors.
        let e = super::super::Error::Status(super::super::pipeline::StatusError(status(503)));
        assert!(unreachable(&e));
        let e = super::super::Error::Kube(status(404));
        assert!(!unreachable(&e));
    }
}
