//! Rate limits (`tools.rateLimit`): GCRA from `governor`, one keyed limiter per quota, keyed by
//! server. The limiters are state, so they live beside the route table, not in it: a reload that
//! keeps a server's quota keeps its bucket (a client cannot reset a limit by touching a file), and
//! a changed quota starts a fresh one.
//!
//! What is metered: `tools/call`, the calls the field is about. The key is the server alone; a
//! per-client key (a verified principal, never the MCP session, which a client renews at will)
//! comes with authentication.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::routes::ServerKey;
use crate::compile::settings::RateLimit;

type Keyed = RateLimiter<ServerKey, DefaultKeyedStateStore<ServerKey>, DefaultClock>;

#[derive(Default)]
pub struct Limits {
    by_quota: Mutex<HashMap<(u32, u32), Arc<Keyed>>>,
}

/// A refused call: when the next one would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl Limits {
    fn limiter(&self, rl: &RateLimit) -> Option<Arc<Keyed>> {
        // The compiler's checks keep both at least 1; a value that is not is no limit at all
        // rather than a panic.
        let rpm = NonZeroU32::new(u32::try_from(rl.requests_per_minute).ok()?)?;
        let burst = NonZeroU32::new(u32::try_from(rl.burst).ok()?)?;
        let mut map = self.by_quota.lock().unwrap_or_else(|e| e.into_inner());
        Some(Arc::clone(
            map.entry((rpm.get(), burst.get())).or_insert_with(|| {
                Arc::new(RateLimiter::keyed(
                    Quota::per_minute(rpm).allow_burst(burst),
                ))
            }),
        ))
    }

    /// Takes one call from the server's bucket.
    pub fn check(&self, server: &ServerKey, rl: &RateLimit) -> Result<(), Refused> {
        let Some(l) = self.limiter(rl) else {
            return Ok(());
        };
        l.check_key(server).map_err(|not_until| Refused {
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_passes_then_calls_are_refused_with_a_wait() {
        let l = Limits::default();
        let s = ServerKey {
            namespace: "ns".into(),
            name: "a".into(),
        };
        let other = ServerKey {
            namespace: "ns".into(),
            name: "b".into(),
        };
        let rl = RateLimit {
            requests_per_minute: 30,
            burst: 30,
        };
        for i in 0..30 {
            assert!(l.check(&s, &rl).is_ok(), "call {i}");
        }
        let r = l.check(&s, &rl).unwrap_err();
        assert!(r.retry_after <= Duration::from_secs(2), "{r:?}");
        assert!(r.retry_after_secs() >= 1);
        assert!(
            l.check(&other, &rl).is_ok(),
            "another server has its own bucket"
        );
    }
}
