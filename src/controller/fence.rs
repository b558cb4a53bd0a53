//! Split-brain fencing: a leader that may have lost its Lease sends nothing to the API server.
//!
//! The election thread exits the process when it has not renewed within the renew deadline,
//! but a process that is paused (SIGSTOP, a frozen VM, a long GC-like stall) notices only when
//! it runs again, and by then its tasks are already sending. So every API client of the
//! controller checks a shared [`Fence`] itself: the election moves its deadline to `sent +
//! renew_deadline` after each successful renewal (`sent` taken before the request went out),
//! and past it nothing is sent. The deadline is on the monotonic clock, which keeps running
//! while the process is stopped: on SIGCONT the first check already refuses.
//!
//! The check is made twice: per request, just above the HTTP client (below kube's retries, so
//! a retry is checked too), with a clear error; and on every write to a connection's socket, so
//! that a task paused between the first check and its write, or a TLS alert sent on close,
//! cannot reach the API server either. Without `--leader-elect` the fence stays open.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use prometheus_client::metrics::counter::Counter;
use tower::{BoxError, Layer, Service};

/// Nothing armed yet: every request may go (no leader election, or not yet leading).
const OPEN: u64 = u64::MAX;

/// Shared between the election thread and every API client of the process.
pub struct Fence {
    base: Instant,
    /// Nanoseconds after `base` from which nothing is sent; [`OPEN`] for never, 0 for closed.
    until: AtomicU64,
    /// Requests (or socket writes) refused.
    refused: Counter,
}

/// The error of a refused request.
#[derive(Debug, thiserror::Error)]
#[error(
    "fenced: the leader lease was not renewed within its renew deadline and may be another's; request not sent"
)]
pub struct Refused;

impl Fence {
    /// An open fence; `refused` counts what it refuses once armed.
    pub fn open(refused: Counter) -> Fence {
        Fence {
            base: Instant::now(),
            until: AtomicU64::new(OPEN),
            refused,
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(OPEN - 1)
    }

    /// Allows requests until `deadline` (never moves it back, nor reopens a closed fence; arms
    /// an open one).
    pub fn allow_until(&self, deadline: Instant) {
        let n = self.nanos(deadline).min(OPEN - 1);
        let _ = self
            .until
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur == OPEN || (cur != 0 && n > cur)).then_some(n)
            });
    }

    /// Refuses everything from now on (the lease is lost; the process is exiting).
    pub fn close(&self) {
        self.until.store(0, Ordering::Release);
    }

    /// Whether a request may be sent at `now` (the pure rule; [`Fence::allows`] uses the clock).
    pub fn allows_at(&self, now: Instant) -> bool {
        let until = self.until.load(Ordering::Acquire);
        until == OPEN || (until != 0 && self.nanos(now) < until)
    }

    /// Whether a request may be sent now; counts a refusal.
    pub fn allows(&self) -> bool {
        let ok = self.allows_at(Instant::now());
        if !ok {
            self.refused.inc();
        }
        ok
    }

    /// How many requests or writes were refused.
    pub fn refused(&self) -> u64 {
        self.refused.get()
    }
}

/// The per-request check, as a tower layer over the HTTP client.
#[derive(Clone)]
pub struct FenceLayer(pub Arc<Fence>);

impl<S> Layer<S> for FenceLayer {
    type Service = Fenced<S>;
    fn layer(&self, inner: S) -> Fenced<S> {
        Fenced {
            inner,
            fence: self.0.clone(),
        }
    }
}

/// A service (HTTP client or connector) that refuses calls past the fence's deadline.
#[derive(Clone)]
pub struct Fenced<S> {
    inner: S,
    fence: Arc<Fence>,
}

impl<S> Fenced<S> {
    pub fn new(inner: S, fence: Arc<Fence>) -> Fenced<S> {
        Fenced { inner, fence }
    }
}

type Boxed<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<S, R> Service<R> for Fenced<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = FencedIo<S::Response>;
    type Error = BoxError;
    type Future = Boxed<FencedIo<S::Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: R) -> Self::Future {
        if !self.fence.allows() {
            return Box::pin(std::future::ready(Err(BoxError::from(Refused))));
        }
        let fence = self.fence.clone();
        let f = self.inner.call(req);
        Box::pin(async move {
            let inner = f.await.map_err(Into::into)?;
            Ok(FencedIo { inner, fence })
        })
    }
}

/// What a [`Fenced`] service answers: for the HTTP client a response (use
/// [`FencedIo::into_inner`]), for a connector a connection whose writes are fenced.
pub struct FencedIo<T> {
    inner: T,
    fence: Arc<Fence>,
}

impl<T> FencedIo<T> {
    pub fn into_inner(self) -> T {
        self.inner
    }
}

fn refused_io() -> std::io::Error {
    std::io::Error::other(Refused)
}

impl<T: Read + Unpin> Read for FencedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for FencedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if !self.fence.allows() {
            return Poll::Ready(Err(refused_io()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if !self.fence.allows() {
            return Poll::Ready(Err(refused_io()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// A FIN carries no request: let the connection close.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: Connection> Connection for FencedIo<T> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the API client: {0}")]
    Kube(#[from] kube::Error),
    #[error(
        "a proxy in the kubeconfig ({0}) is not supported with --leader-elect (the fenced client connects directly)"
    )]
    Proxy(String),
}

/// A kube client whose every request and socket write passes `fence`: kube's own stack
/// (base URI, retries of 429/503/504, auth, extra headers, rustls, timeouts) over a fenced
/// TCP connector, with the per-request check innermost.
pub fn client(
    config: kube::Config,
    fence: Arc<Fence>,
    throttle: &super::throttle::ThrottleLayer,
) -> Result<kube::Client, ClientError> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use kube::client::ConfigExt;
    use tower::ServiceBuilder;

    if let Some(p) = &config.proxy_url {
        return Err(ClientError::Proxy(p.to_string()));
    }
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    let tls = config
        .rustls_https_connector_with_connector(FencedConnector(Fenced::new(tcp, fence.clone())))?;
    let mut timed = hyper_timeout::TimeoutConnector::new(tls);
    timed.set_connect_timeout(config.connect_timeout);
    timed.set_read_timeout(config.read_timeout);
    timed.set_write_timeout(config.write_timeout);
    timed.set_reset_reader_on_write(config.reset_reader_on_write);
    let http: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new()).build(timed);
    let retry = config
        .default_retry
        .then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .layer(throttle.clone())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_response(FencedIo::into_inner)
        .layer(FenceLayer(fence))
        .service(http);
    Ok(kube::client::ClientBuilder::new(service, config.default_namespace).build())
}

/// The controller's client (the kubeconfig's or in-cluster settings), fenced. A kubeconfig
/// proxy is supported only without leader election, with kube's default stack (unfenced; the
/// fence never closes then anyway).
pub async fn connect(
    c: &crate::connect::Connect,
    fence: &Arc<Fence>,
    leader_elect: bool,
    throttle: &super::throttle::ThrottleLayer,
) -> Result<kube::Client, crate::connect::ConnectError> {
    use crate::connect::ConnectError;
    let config = crate::connect::config(c).await?;
    if config.proxy_url.is_some() && !leader_elect {
        let builder = kube::client::ClientBuilder::try_from(config)
            .map_err(|e| ConnectError::Client(e.to_string()))?;
        return Ok(builder.with_layer(throttle).build());
    }
    client(config, fence.clone(), throttle).map_err(|e| ConnectError::Client(e.to_string()))
}

/// The TCP connector under TLS, fenced: no connection is opened and no byte is written past
/// the deadline.
#[derive(Clone)]
struct FencedConnector(Fenced<hyper_util::client::legacy::connect::HttpConnector>);

impl Service<http::Uri> for FencedConnector {
    type Response = FencedIo<
        <hyper_util::client::legacy::connect::HttpConnector as Service<http::Uri>>::Response,
    >;
    type Error = BoxError;
    type Future = Boxed<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        self.0.call(uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_open_fence_allows_everything_an_armed_one_until_its_deadline() {
        let f = Fence::open(Counter::default());
        let t0 = f.base;
        let s = Duration::from_secs;
        assert!(f.allows_at(t0 + s(1_000_000)));
        f.allow_until(t0 + s(10));
        assert!(f.allows_at(t0 + s(9)));
        assert!(!f.allows_at(t0 + s(10)));
        assert!(!f.allows_at(t0 + s(3600)));
        // Renewals move it forward, never back.
        f.allow_until(t0 + s(20));
        f.allow_until(t0 + s(15));
        assert!(f.allows_at(t0 + s(19)));
        assert!(!f.allows_at(t0 + s(20)));
        // A deadline already past (a renewal slower than the renew deadline) closes it.
        let g = Fence::open(Counter::default());
        g.allow_until(g.base);
        assert!(!g.allows_at(g.base));
    }

    #[test]
    fn a_closed_fence_stays_closed_and_counts_refusals() {
        let f = Fence::open(Counter::default());
        f.allow_until(f.base + Duration::from_secs(3600));
        assert!(f.allows());
        f.close();
        f.allow_until(f.base + Duration::from_secs(7200));
        assert!(!f.allows_at(f.base));
        assert!(!f.allows());
        assert!(!f.allows());
        assert_eq!(f.refused(), 2);
    }

    #[tokio::test]
    async fn a_fenced_service_does_not_call_its_inner_service_past_the_deadline() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = calls.clone();
        let inner = tower::service_fn(move |_: ()| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, BoxError>(()) }
        });
        let fence = Arc::new(Fence::open(Counter::default()));
        let mut svc = FenceLayer(fence.clone()).layer(inner);
        assert!(svc.call(()).await.is_ok());
        fence.allow_until(Instant::now() + Duration::from_secs(3600));
        assert!(svc.call(()).await.is_ok());
        fence.close();
        let err = svc.call(()).await.err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.starts_with("fenced")));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
