//! The per-server circuit breaker (`circuitBreaker` of an MCPServer), a pure state machine: every
//! method takes `now`, so it is tested without sleeping (like `controller/state.rs`). The proxy
//! feeds it live traffic (connect errors, timeouts, 5xx); [`Breakers::record_probe`] is the seam
//! the in-cluster mode's health checks will feed.
//!
//! Closed -> Open after `failureThreshold` consecutive failures. Open fails fast (never forwarded)
//! until `resetTimeout` has passed, then HalfOpen admits at most `halfOpenRequests` trial requests
//! in flight at once: `successThreshold` successes close it, one failure opens it again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::routes::ServerKey;
use crate::compile::settings::Breaker as Settings;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// The value of `hangar_gateway_breaker_state`: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// One server's breaker.
#[derive(Clone, Debug)]
pub struct Breaker {
    state: State,
    failures: u32,
    successes: u32,
    in_flight: u32,
    opened_at: Option<Instant>,
}

/// A request the breaker refused: how long until it lets trial requests through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
}

impl Refused {
    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let s = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        s.max(1)
    }
}

/// A transition, for the logs and the transitions counter.
pub type Transition = Option<(State, State)>;

/// The compiler keeps these at least 1; a value that is not counts as 1 rather than a breaker
/// that never closes or opens on nothing.
fn at_least_one(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(1).max(1)
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: State::Closed,
            failures: 0,
            successes: 0,
            in_flight: 0,
            opened_at: None,
        }
    }
}

impl Breaker {
    pub fn state(&self) -> State {
        self.state
    }

    fn to(&mut self, next: State, now: Instant) -> Transition {
        let prev = self.state;
        self.state = next;
        self.failures = 0;
        self.successes = 0;
        self.in_flight = 0;
        self.opened_at = (next == State::Open).then_some(now);
        (prev != next).then_some((prev, next))
    }

    /// Whether a request may go to the server now; an admitted request must be answered with
    /// [`Breaker::success`] or [`Breaker::failure`] (or [`Breaker::release`]).
    pub fn admit(&mut self, s: &Settings, now: Instant) -> (Result<(), Refused>, Transition) {
        if !s.enabled {
            return (Ok(()), None);
        }
        let mut t = None;
        if self.state == State::Open {
            let since = self
                .opened_at
                .map_or(s.reset_timeout, |o| now.saturating_duration_since(o));
            if since < s.reset_timeout {
                let retry_after = s.reset_timeout - since;
                return (Err(Refused { retry_after }), None);
            }
            t = self.to(State::HalfOpen, now);
        }
        if self.state == State::HalfOpen {
            if self.in_flight >= at_least_one(s.half_open_requests) {
                // The trials decide soon; a client may come back in a second.
                let retry_after = Duration::from_secs(1);
                return (Err(Refused { retry_after }), t);
            }
            self.in_flight += 1;
        }
        (Ok(()), t)
    }

    /// An admitted request that neither succeeded nor failed (the client went away, a refusal).
    pub fn release(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    pub fn success(&mut self, s: &Settings, now: Instant) -> Transition {
        if !s.enabled {
            return None;
        }
        match self.state {
            State::Closed => {
                self.failures = 0;
                None
            }
            State::HalfOpen => {
                self.release();
                self.successes += 1;
                if self.successes >= at_least_one(s.success_threshold) {
                    self.to(State::Closed, now)
                } else {
                    None
                }
            }
            // A request admitted before the breaker opened: it says nothing new.
            State::Open => None,
        }
    }

    pub fn failure(&mut self, s: &Settings, now: Instant) -> Transition {
        if !s.enabled {
            return None;
        }
        match self.state {
            State::Closed => {
                self.failures += 1;
                if self.failures >= at_least_one(s.failure_threshold) {
                    self.to(State::Open, now)
                } else {
                    None
                }
            }
            State::HalfOpen => self.to(State::Open, now),
            State::Open => None,
        }
    }
}

/// Every server's breaker: state beside the route table (like the rate limits), so a reload
/// keeps it.
#[derive(Default)]
pub struct Breakers {
    by_server: Mutex<HashMap<ServerKey, Breaker>>,
}

impl Breakers {
    fn with<T>(&self, server: &ServerKey, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut map = self.by_server.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(server.clone()).or_default())
    }

    pub fn admit(
        &self,
        server: &ServerKey,
        s: &Settings,
        now: Instant,
    ) -> (Result<(), Refused>, Transition) {
        self.with(server, |b| b.admit(s, now))
    }

    pub fn release(&self, server: &ServerKey) {
        self.with(server, Breaker::release)
    }

    pub fn record(&self, server: &ServerKey, s: &Settings, ok: bool, now: Instant) -> Transition {
        self.with(server, |b| {
            if ok {
                b.success(s, now)
            } else {
                b.failure(s, now)
            }
        })
    }

    /// The seam for the controller's health checks: a probe's outcome counts as one request's.
    /// A probe is not admitted first, so a half-open breaker's trial slots stay for traffic.
    pub fn record_probe(
        &self,
        server: &ServerKey,
        s: &Settings,
        ok: bool,
        now: Instant,
    ) -> Transition {
        self.with(server, |b| {
            b.in_flight += u32::from(b.state == State::HalfOpen);
            if ok {
                b.success(s, now)
            } else {
                b.failure(s, now)
            }
        })
    }

    pub fn state(&self, server: &ServerKey) -> State {
        self.with(server, |b| b.state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            enabled: true,
            failure_threshold: 3,
            reset_timeout: Duration::from_secs(30),
            half_open_requests: 2,
            success_threshold: 2,
        }
    }

    #[test]
    fn opens_after_the_threshold_half_opens_after_the_timeout_and_closes_on_successes() {
        let s = settings();
        let t0 = Instant::now();
        let mut b = Breaker::default();
        assert_eq!(b.failure(&s, t0), None);
        assert_eq!(b.failure(&s, t0), None);
        // a success resets the count: failures must be consecutive
        assert_eq!(b.success(&s, t0), None);
        assert_eq!(b.failure(&s, t0), None);
        assert_eq!(b.failure(&s, t0), None);
        assert_eq!(b.failure(&s, t0), Some((State::Closed, State::Open)));
        let (r, t) = b.admit(&s, t0 + Duration::from_secs(10));
        assert_eq!(t, None);
        assert_eq!(r.unwrap_err().retry_after, Duration::from_secs(20));
        assert_eq!(
            Refused {
                retry_after: Duration::from_millis(19_001)
            }
            .retry_after_secs(),
            20
        );
        // after resetTimeout: two trials at once, a third waits
        let t1 = t0 + Duration::from_secs(30);
        let (r, t) = b.admit(&s, t1);
        assert!(r.is_ok());
        assert_eq!(t, Some((State::Open, State::HalfOpen)));
        assert!(b.admit(&s, t1).0.is_ok());
        assert!(b.admit(&s, t1).0.is_err());
        assert_eq!(b.success(&s, t1), None);
        assert_eq!(b.success(&s, t1), Some((State::HalfOpen, State::Closed)));
        assert!(b.admit(&s, t1).0.is_ok());
    }

    #[test]
    fn a_failed_trial_opens_it_again_and_a_disabled_breaker_never_opens() {
        let s = settings();
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.failure(&s, t0);
        }
        let t1 = t0 + Duration::from_secs(31);
        assert!(b.admit(&s, t1).0.is_ok());
        assert_eq!(b.failure(&s, t1), Some((State::HalfOpen, State::Open)));
        let (r, _) = b.admit(&s, t1 + Duration::from_secs(1));
        assert_eq!(r.unwrap_err().retry_after, Duration::from_secs(29));

        let off = Settings {
            enabled: false,
            ..settings()
        };
        let mut b = Breaker::default();
        for _ in 0..100 {
            assert_eq!(b.failure(&off, t0), None);
        }
        assert!(b.admit(&off, t0).0.is_ok());
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn probes_feed_the_same_machine() {
        let s = settings();
        let t0 = Instant::now();
        let all = Breakers::default();
        let k = ServerKey {
            namespace: "ns".into(),
            name: "a".into(),
        };
        for _ in 0..3 {
            all.record_probe(&k, &s, false, t0);
        }
        assert_eq!(all.state(&k), State::Open);
        let t1 = t0 + Duration::from_secs(30);
        assert!(all.admit(&k, &s, t1).0.is_ok());
        all.record_probe(&k, &s, true, t1);
        all.record(&k, &s, true, t1);
        assert_eq!(all.state(&k), State::Closed);
    }
}
