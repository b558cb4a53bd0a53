//! Which member of a group serves a request that names none, and which requests may be sent again
//! to another member when the first fails.

use super::request::{Body, Message};

/// Methods a client may send twice with the same effect as once: they read, or (initialize,
/// ping) only start or test a conversation. `tools/call` is never here: a tool may have side
/// effects, and its `idempotentHint` annotation is an untrusted hint the gateway has not even
/// seen on this path. Subscriptions, `logging/setLevel` and notifications change upstream state
/// or expect no answer, so they are not repeated either.
const REPEATABLE: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "completion/complete",
];

fn repeatable_message(m: &Message) -> bool {
    m.is_request() && REPEATABLE.contains(&m.method())
}

/// Whether a body may be sent to another member after the first failed to connect or answer:
/// every message in it must be a repeatable request.
pub fn repeatable(body: &Body) -> bool {
    body.messages().iter().all(repeatable_message)
}

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;

use super::request::{Refusal, code};
use super::routes::{Backend, Route, ServerKey};
use crate::api::group::Strategy;

/// What the gateway has seen of one server lately, from live traffic (and, in-cluster, probes).
#[derive(Clone, Debug, Default)]
struct Member {
    /// Consecutive failed requests (connect errors, timeouts, 5xx); a success resets it.
    failures: u32,
    last_failure: Option<Instant>,
    /// Requests sent and not yet answered with headers (LeastConnections).
    in_flight: u32,
}

/// State of the group strategies, beside the route table (a reload keeps it): round-robin
/// cursors by route, and each server's recent failures and requests in flight.
#[derive(Default)]
pub struct Balancer {
    cursors: Mutex<HashMap<String, Arc<AtomicUsize>>>,
    members: Mutex<HashMap<ServerKey, Member>>,
    rng: Mutex<Option<fastrand::Rng>>,
}

/// A request in flight to a server: counted for LeastConnections until dropped.
pub struct InFlight<'b> {
    balancer: &'b Balancer,
    server: ServerKey,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut m = self.balancer.lock();
        if let Some(e) = m.get_mut(&self.server) {
            e.in_flight = e.in_flight.saturating_sub(1);
        }
    }
}

/// Whole seconds, rounded up, at least 1: a `Retry-After` value.
pub fn retry_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

impl Balancer {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ServerKey, Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a member is counted unhealthy: `unhealthyThreshold` consecutive failures, the last
    /// within its server's `healthCheck.interval`. Once that interval has passed it is tried
    /// again (a local gateway has no prober of its own, so traffic is the re-check): one more
    /// failure and it is out again, a success and its count is reset.
    fn unhealthy(&self, m: Option<&Member>, b: &Backend, threshold: i32, now: Instant) -> bool {
        let threshold = u32::try_from(threshold).unwrap_or(1).max(1);
        m.is_some_and(|m| {
            m.failures >= threshold
                && m.last_failure
                    .is_some_and(|t| now.saturating_duration_since(t) < b.recheck)
        })
    }

    /// The members a request that names no session may go to, best first: the strategy's pick,
    /// then the other healthy members in order (failover's next ones). A group with fewer
    /// healthy members than its `healthPolicy` asks for is refused (503, `Retry-After`: when the
    /// first unhealthy member is tried again). A server's route is its one backend.
    pub fn candidates(&self, route: &Route, now: Instant) -> Result<Vec<Arc<Backend>>, Refusal> {
        let Some(group) = &route.group else {
            return Ok(route.backends.clone());
        };
        let members = self.lock();
        let (mut healthy, mut wait) = (Vec::new(), None::<Duration>);
        for b in &route.backends {
            let m = members.get(&b.server);
            if self.unhealthy(m, b, group.health.unhealthy_threshold, now) {
                let back = m
                    .and_then(|m| m.last_failure)
                    .map(|t| b.recheck.saturating_sub(now.saturating_duration_since(t)))
                    .unwrap_or_default();
                wait = Some(wait.map_or(back, |w| w.min(back)));
            } else {
                healthy.push(Arc::clone(b));
            }
        }
        let total = i32::try_from(route.backends.len()).unwrap_or(i32::MAX);
        let ready = i32::try_from(healthy.len()).unwrap_or(i32::MAX);
        if route.backends.is_empty() {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code::UPSTREAM_UNAVAILABLE,
                "the group has no members",
            ));
        }
        if !group.health.healthy(ready, total) {
            let secs = retry_secs(wait.unwrap_or_default());
            let mut r = Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code::GROUP_UNHEALTHY,
                format!(
                    "{ready} of {total} members are healthy, fewer than the group's healthPolicy needs; retry after {secs}s"
                ),
            );
            r.data = Some(Box::new(serde_json::json!({"retryAfterSeconds": secs})));
            return Err(r);
        }
        let first = match route.strategy.unwrap_or_default() {
            Strategy::Failover => 0,
            Strategy::Random => {
                let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                rng.get_or_insert_with(fastrand::Rng::new)
                    .usize(..healthy.len())
            }
            Strategy::LeastConnections => healthy
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| members.get(&b.server).map_or(0, |m| m.in_flight))
                .map_or(0, |(i, _)| i),
            // Weighted: the API gives members no weights, so every weight is equal.
            Strategy::RoundRobin | Strategy::Weighted => {
                drop(members);
                let cursor = {
                    let mut c = self.cursors.lock().unwrap_or_else(|e| e.into_inner());
                    Arc::clone(c.entry(route.path()).or_default())
                };
                cursor.fetch_add(1, Ordering::Relaxed) % healthy.len()
            }
        };
        healthy.rotate_left(first);
        Ok(healthy)
    }

    /// Counts a request to `server` in flight until the guard is dropped.
    pub fn start(&self, server: &ServerKey) -> InFlight<'_> {
        self.lock().entry(server.clone()).or_default().in_flight += 1;
        InFlight {
            balancer: self,
            server: server.clone(),
        }
    }

    /// A request's outcome (or, in-cluster later, a health check's).
    pub fn record(&self, server: &ServerKey, ok: bool, now: Instant) {
        let mut m = self.lock();
        let e = m.entry(server.clone()).or_default();
        if ok {
            e.failures = 0;
            e.last_failure = None;
        } else {
            e.failures = e.failures.saturating_add(1);
            e.last_failure = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::group::RetryOn;
    use crate::api::server::Transport;
    use crate::compile::settings::{Breaker, Failover, GroupHealth};

    fn member(name: &str) -> Arc<Backend> {
        Arc::new(Backend {
            server: ServerKey {
                namespace: "t".into(),
                name: name.into(),
            },
            upstream: super::super::routes::Upstream::Remote { url: String::new() },
            transport: Transport::StreamableHttp,
            tools: super::super::routes::ToolPolicy {
                allow: Default::default(),
                deny: Default::default(),
                rate_limit: None,
            },
            breaker: Breaker {
                enabled: true,
                failure_threshold: 5,
                reset_timeout: Duration::from_secs(30),
                half_open_requests: 3,
                success_threshold: 2,
            },
            recheck: Duration::from_secs(30),
            activation: None,
        })
    }

    fn group(strategy: Strategy, pct: i32) -> Route {
        Route {
            kind: super::super::routes::RouteKind::Group,
            namespace: "t".into(),
            name: "g".into(),
            backends: vec![member("a"), member("b")],
            strategy: Some(strategy),
            group: Some(super::super::routes::GroupPolicy {
                failover: Failover {
                    enabled: true,
                    max_retries: 2,
                    retry_delay: Duration::from_millis(10),
                    retry_on: vec![RetryOn::ConnectionError],
                },
                health: GroupHealth {
                    min_healthy_percentage: pct,
                    min_healthy_count: 1,
                    unhealthy_threshold: 2,
                },
            }),
        }
    }

    fn names(v: &[Arc<Backend>]) -> Vec<&str> {
        v.iter().map(|b| b.server.name.as_str()).collect()
    }

    #[test]
    fn strategies_order_the_members_and_unhealthy_ones_leave_until_the_recheck() {
        let bal = Balancer::default();
        let now = Instant::now();
        let rr = group(Strategy::RoundRobin, 50);
        assert_eq!(names(&bal.candidates(&rr, now).unwrap()), ["a", "b"]);
        assert_eq!(names(&bal.candidates(&rr, now).unwrap()), ["b", "a"]);
        let fo = group(Strategy::Failover, 50);
        assert_eq!(names(&bal.candidates(&fo, now).unwrap()), ["a", "b"]);
        assert_eq!(names(&bal.candidates(&fo, now).unwrap()), ["a", "b"]);
        let lc = group(Strategy::LeastConnections, 50);
        let busy = bal.start(&rr.backends[0].server);
        assert_eq!(names(&bal.candidates(&lc, now).unwrap()), ["b", "a"]);
        drop(busy);
        assert_eq!(names(&bal.candidates(&lc, now).unwrap()), ["a", "b"]);
        // two consecutive failures of a: it leaves the rotation
        let a = &rr.backends[0].server;
        bal.record(a, false, now);
        assert_eq!(bal.candidates(&fo, now).unwrap().len(), 2);
        bal.record(a, false, now);
        assert_eq!(names(&bal.candidates(&fo, now).unwrap()), ["b"]);
        // at 100% the group no longer serves, and says when a is tried again
        let strict = group(Strategy::Failover, 100);
        let r = bal
            .candidates(&strict, now + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!((r.status.as_u16(), r.code), (503, code::GROUP_UNHEALTHY));
        assert_eq!(r.data.unwrap()["retryAfterSeconds"], 20);
        // after healthCheck.interval it is tried again; a success brings it back for good
        let later = now + Duration::from_secs(30);
        assert_eq!(names(&bal.candidates(&strict, later).unwrap()), ["a", "b"]);
        bal.record(a, true, later);
        assert_eq!(names(&bal.candidates(&strict, now).unwrap()), ["a", "b"]);
    }

    #[test]
    fn only_reads_are_repeated() {
        let p = |s: &str| super::super::request::parse(s.as_bytes()).unwrap();
        assert!(repeatable(&p(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#
        )));
        assert!(repeatable(&p(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#
        )));
        assert!(!repeatable(&p(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#
        )));
        assert!(!repeatable(&p(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
        )));
        assert!(!repeatable(&p(
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call"}]"#
        )));
    }
}
