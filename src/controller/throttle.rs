//! Client-side rate limiting of the controller's API requests (`--kube-api-qps`,
//! `--kube-api-burst`): a token bucket in front of the HTTP client. kube's client has none of its
//! own (client-go's QPS/burst has no counterpart in kube 5), so without it a burst of reconciles
//! (1,000 servers created at once) sends as fast as the workers go and leaves the pacing to the
//! API server's priority and fairness (429s, retried). Every request takes one token, a watch
//! too (once, when it starts), and a retry takes one again; a request that finds the bucket empty
//! waits for its token instead of failing.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower::{Layer, Service};

/// The bucket's state: tokens (negative once reserved ahead) as of `at`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tokens {
    pub tokens: f64,
    pub at: Instant,
}

/// Takes one token at `now` from a bucket refilled at `qps` up to `burst` (pure): the state
/// after, and how long the taker waits for its token (zero when one was there).
pub fn take(state: Tokens, now: Instant, qps: f64, burst: f64) -> (Tokens, Duration) {
    let elapsed = now.saturating_duration_since(state.at).as_secs_f64();
    let tokens = (state.tokens + elapsed * qps).min(burst) - 1.0;
    let wait = if tokens >= 0.0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(-tokens / qps)
    };
    (
        Tokens {
            tokens,
            at: now.max(state.at),
        },
        wait,
    )
}

/// `qps` requests a second on average, `burst` at once; shared by every clone.
#[derive(Clone)]
pub struct ThrottleLayer {
    bucket: Option<Arc<Bucket>>,
}

struct Bucket {
    qps: f64,
    burst: f64,
    state: Mutex<Tokens>,
}

impl ThrottleLayer {
    /// No limit when `qps` is 0 (or not a positive number); `burst` is at least 1.
    pub fn new(qps: f64, burst: u32) -> ThrottleLayer {
        let burst = f64::from(burst.max(1));
        let bucket = (qps.is_finite() && qps > 0.0).then(|| {
            Arc::new(Bucket {
                qps,
                burst,
                state: Mutex::new(Tokens {
                    tokens: burst,
                    at: Instant::now(),
                }),
            })
        });
        ThrottleLayer { bucket }
    }

    /// How long a request sent now waits (its token taken).
    fn wait(&self) -> Duration {
        let Some(b) = &self.bucket else {
            return Duration::ZERO;
        };
        let Ok(mut s) = b.state.lock() else {
            return Duration::ZERO;
        };
        let (next, wait) = take(*s, Instant::now(), b.qps, b.burst);
        *s = next;
        wait
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;
    fn layer(&self, inner: S) -> Throttle<S> {
        Throttle {
            inner,
            limit: self.clone(),
            token: Token::None,
        }
    }
}

/// A request's token: not taken yet, being waited for, or there.
enum Token {
    None,
    Waiting(Pin<Box<tokio::time::Sleep>>),
    Held,
}

/// Ready once its token is there (the wait is in `poll_ready`, so a service behind a buffer
/// queues its requests in order and nothing is sent early).
pub struct Throttle<S> {
    inner: S,
    limit: ThrottleLayer,
    token: Token,
}

impl<S: Clone> Clone for Throttle<S> {
    fn clone(&self) -> Self {
        Throttle {
            inner: self.inner.clone(),
            limit: self.limit.clone(),
            token: Token::None,
        }
    }
}

impl<S, R> Service<R> for Throttle<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if matches!(self.token, Token::None) {
            let wait = self.limit.wait();
            self.token = if wait.is_zero() {
                Token::Held
            } else {
                Token::Waiting(Box::pin(tokio::time::sleep(wait)))
            };
        }
        if let Token::Waiting(sleep) = &mut self.token {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.token = Token::Held;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.token = Token::None;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_then_requests_are_paced() {
        let t0 = Instant::now();
        let mut s = Tokens {
            tokens: 3.0,
            at: t0,
        };
        let mut waits = Vec::new();
        for _ in 0..5 {
            let (next, w) = take(s, t0, 10.0, 3.0);
            s = next;
            waits.push(w.as_millis());
        }
        assert_eq!(waits, [0, 0, 0, 100, 200]);
        // A second later the debt is paid and 8 tokens came back (bounded by the burst).
        let (s, w) = take(s, t0 + Duration::from_secs(1), 10.0, 3.0);
        assert_eq!(w, Duration::ZERO);
        assert!((s.tokens - 2.0).abs() < 1e-9, "{s:?}");
        // Idle for an hour: no more than the burst.
        let (s, _) = take(s, t0 + Duration::from_secs(3600), 10.0, 3.0);
        assert!((s.tokens - 2.0).abs() < 1e-9, "{s:?}");
    }

    #[tokio::test]
    async fn the_service_waits_for_its_token_and_no_limit_waits_for_nothing() {
        use tower::ServiceExt;
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = calls.clone();
        let inner = tower::service_fn(move |_: ()| {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, tower::BoxError>(()) }
        });
        let svc = ThrottleLayer::new(20.0, 2).layer(inner.clone());
        let t0 = Instant::now();
        for _ in 0..4 {
            svc.clone().oneshot(()).await.unwrap();
        }
        // 2 at once, then 2 more at 20/s: about 100 ms.
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(90), "{took:?}");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
        let free = ThrottleLayer::new(0.0, 1).layer(inner);
        let t0 = Instant::now();
        for _ in 0..100 {
            free.clone().oneshot(()).await.unwrap();
        }
        assert!(t0.elapsed() < Duration::from_millis(90));
    }
}
