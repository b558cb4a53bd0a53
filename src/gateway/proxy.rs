//! The streamable HTTP proxy: one handler for every route. Per request: route (path) -> session
//! token (which backend, which upstream session) -> policy (tool deny/allow, rate limit) ->
//! upstream. Bodies the gateway does not rewrite stream through as they come (SSE included, frame
//! by frame); only a `tools/list` response under a tool policy is read whole (under the cap) to
//! drop denied tools.
//!
//! What is never forwarded: requests the gateway refuses, the client's `Authorization`/cookies
//! (the spec forbids token passthrough; upstream credentials are the gateway's business, later),
//! and the client's session token (the upstream gets its own id back).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::body::Body as AxBody;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value as Json;

use super::balance::repeatable;
use super::breaker;
use super::filter;
use super::metrics::{
    Metrics, OperationLabels, RefusalLabels, RequestLabels, ServerLabels, TransitionLabels,
    method_label,
};
use super::policy::Limits;
use super::request::{self, Body, Refusal, code};
use super::routes::{Backend, NoTarget, Route, RouteTable, ServerKey, Target};
use super::session::{Sealer, Session};
use crate::api::group::RetryOn;
use crate::api::server::Transport;
use crate::probe::http::Http;

const SESSION: &str = "mcp-session-id";

/// New sessions so far: a container server's new session goes to its next ready pod.
static NEXT_SESSION: AtomicUsize = AtomicUsize::new(0);

/// Request headers passed to the upstream (besides the session id, which is replaced).
const FORWARD: &[&str] = &[
    "accept",
    "content-type",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "traceparent",
    "tracestate",
    "baggage",
];
/// Response headers passed back to the client (besides the session id, which is sealed).
const BACK: &[&str] = &[
    "content-type",
    "cache-control",
    "mcp-protocol-version",
    "retry-after",
    "allow",
];

/// Limits of the process (not of any server: those are in the route table).
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest request body read, and largest `tools/list` response rewritten.
    pub max_body: usize,
    /// Bound on waiting for an upstream's response headers.
    pub upstream_timeout: Duration,
    /// Listening on loopback: refuse non-loopback `Host`/`Origin` (DNS rebinding).
    pub loopback: bool,
}

pub struct Gateway {
    pub routes: ArcSwap<RouteTable>,
    pub sealer: Sealer,
    pub limits: Limits,
    pub balancer: super::balance::Balancer,
    pub breakers: super::breaker::Breakers,
    pub activator: Arc<super::activator::Activator>,
    pub metrics: Metrics,
    pub http: Http,
    pub config: Config,
}

impl super::activator::Host for Gateway {
    fn routes(&self) -> Arc<RouteTable> {
        self.routes.load_full()
    }
    fn activator(&self) -> &super::activator::Activator {
        &self.activator
    }
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    fn http(&self) -> &Http {
        &self.http
    }
}

/// Why a request was refused, for the refusal counter.
fn reason(code_: i64, status: StatusCode) -> &'static str {
    match code_ {
        code::TOOL_DENIED => "tool_denied",
        code::RATE_LIMITED => "rate_limited",
        code::HEADER_MISMATCH => "header_mismatch",
        code::SESSION_NOT_FOUND => "unknown_session",
        code::NO_ROUTE => "no_route",
        code::UPSTREAM_UNAVAILABLE => "unavailable",
        code::FOREIGN_ORIGIN => "foreign_origin",
        code::CIRCUIT_OPEN => "circuit_open",
        code::GROUP_UNHEALTHY => "group_unhealthy",
        code::NOT_STARTED => "not_started",
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        _ => "bad_request",
    }
}

fn json_response(status: StatusCode, body: &Json) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

impl Gateway {
    fn refuse(&self, route: &str, r: &Refusal) -> Response {
        self.metrics
            .refusals
            .get_or_create(&RefusalLabels {
                route: route.to_string(),
                reason: reason(r.code, r.status),
            })
            .inc();
        // Status and code only: the message may quote a client's header values.
        tracing::debug!(route, status = r.status.as_u16(), code = r.code, "refused");
        let mut resp = json_response(r.status, &r.body());
        // The breaker's and the group's refusals say when to come back, in the body and here.
        let after = r
            .data
            .as_ref()
            .and_then(|d| d["retryAfterSeconds"].as_u64());
        if let Some(v) = after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }

    fn count(&self, route: &str, method: Option<&str>, status: StatusCode) {
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                mcp_method_name: method_label(method),
                status: status.as_u16(),
            })
            .inc();
    }

    /// The session a request names, opened; `Ok(None)` when it names none.
    fn session(
        &self,
        route: &Route,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Option<(Arc<Backend>, Session)>, Refusal> {
        let Some(v) = headers.get(SESSION) else {
            return Ok(None);
        };
        let unknown = || {
            Refusal::new(
                StatusCode::NOT_FOUND,
                code::SESSION_NOT_FOUND,
                "session not found: start a new one with initialize",
            )
        };
        let token = v.to_str().map_err(|_| unknown())?;
        let s = self.sealer.open(path, token).map_err(|e| {
            // The reason, never the token.
            tracing::debug!(route = path, reason = %e, "session token refused");
            unknown()
        })?;
        let b = route.backend(&s.backend).ok_or_else(unknown)?;
        Ok(Some((Arc::clone(b), s)))
    }

    /// Where a backend's request goes (for a container server: the session's pod, or a ready
    /// pod for a new session), or why it cannot be served here.
    pub(super) fn upstream_target(
        &self,
        b: &Backend,
        session: Option<&Session>,
    ) -> Result<Target, Refusal> {
        if b.transport == Transport::Sse {
            return Err(Refusal::new(
                StatusCode::BAD_GATEWAY,
                code::UPSTREAM_UNAVAILABLE,
                "this server speaks the legacy HTTP+SSE transport, which the gateway does not bridge yet",
            ));
        }
        let pinned = session.and_then(|s| s.endpoint.as_deref());
        let n = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        b.upstream.target(pinned, n).map_err(|e| match e {
            NoTarget::NoReadyEndpoint => Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code::UPSTREAM_UNAVAILABLE,
                "the server has no ready pod (and a local gateway knows none: only `hangar gateway --cluster` watches EndpointSlices)",
            ),
            NoTarget::SessionEndpointGone => Refusal::new(
                StatusCode::NOT_FOUND,
                code::SESSION_NOT_FOUND,
                "session not found: its server pod is gone; start a new one with initialize",
            ),
        })
    }

    /// Sends to the upstream under the header timeout.
    pub(super) async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        upstream_session: Option<&str>,
        body: Bytes,
    ) -> Result<http::Response<hyper::body::Incoming>, Refusal> {
        let mut req = http::Request::builder().method(method).uri(url);
        for name in FORWARD {
            for v in headers.get_all(*name) {
                req = req.header(*name, v);
            }
        }
        for (name, v) in headers {
            if name.as_str().starts_with("mcp-param-") {
                req = req.header(name, v);
            }
        }
        if let Some(s) = upstream_session.filter(|s| !s.is_empty()) {
            req = req.header(SESSION, s);
        }
        let req = req.body(Full::new(body)).map_err(|e| {
            Refusal::new(
                StatusCode::BAD_GATEWAY,
                code::UPSTREAM_UNAVAILABLE,
                format!("cannot build the upstream request: {e}"),
            )
        })?;
        match tokio::time::timeout(self.config.upstream_timeout, self.http.send(req)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(fault)) => Err(Refusal::new(
                StatusCode::BAD_GATEWAY,
                code::UPSTREAM_UNAVAILABLE,
                format!("upstream: {fault}"),
            )),
            Err(_) => Err(Refusal::new(
                StatusCode::GATEWAY_TIMEOUT,
                code::UPSTREAM_UNAVAILABLE,
                format!(
                    "upstream did not answer within {} ms",
                    self.config.upstream_timeout.as_millis()
                ),
            )),
        }
    }

    /// The client's view of an upstream response's headers: the listed ones, and the upstream's
    /// session id sealed (the client's own token kept when the upstream repeats the same id).
    fn response_headers(
        &self,
        path: &str,
        backend: &Backend,
        endpoint: Option<&str>,
        upstream: &HeaderMap,
        current: Option<(&Session, &str)>,
    ) -> HeaderMap {
        let mut out = HeaderMap::new();
        for name in BACK {
            for v in upstream.get_all(*name) {
                out.append(HeaderName::from_static(name), v.clone());
            }
        }
        if let Some(sid) = upstream.get(SESSION).and_then(|v| v.to_str().ok()) {
            let token = match current {
                Some((s, token)) if s.upstream == sid => Some(token.to_string()),
                _ => self.sealer.seal(
                    path,
                    &Session {
                        backend: backend.server.clone(),
                        upstream: sid.to_string(),
                        endpoint: endpoint.map(str::to_string),
                    },
                ),
            };
            match token.and_then(|t| HeaderValue::from_str(&t).ok()) {
                Some(v) => {
                    out.insert(SESSION, v);
                }
                // Only a failing random source (or an absurd backend name) gets here; the
                // client then sees no session, and its next request fails visibly upstream.
                None => tracing::warn!(route = path, "could not seal the upstream's session id"),
            }
        }
        out
    }
}

/// Every request to a path that is not `/healthz`, `/readyz` or `/metrics`.
pub async fn handle(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let table = gw.routes.load();
    let Some(route) = table.get(&path) else {
        return gw.refuse(
            "unrouted",
            &Refusal::new(
                StatusCode::NOT_FOUND,
                code::NO_ROUTE,
                "no MCP server or group is served here; routes are /servers/NAMESPACE/NAME/mcp and /groups/NAMESPACE/NAME/mcp",
            ),
        );
    };
    if gw.config.loopback {
        if let Err(r) = request::check_local_origin(req.headers()) {
            return gw.refuse(&path, &r);
        }
    }
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let (method, result) = match parts.method {
        Method::POST => post(&gw, route, &path, &parts.headers, body).await,
        Method::GET | Method::DELETE => (
            Some(parts.method.as_str().to_string()),
            stream_only(&gw, route, &path, parts.method.clone(), &parts.headers).await,
        ),
        _ => {
            let mut r = gw.refuse(
                &path,
                &Refusal::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    code::INVALID_REQUEST,
                    "an MCP endpoint takes POST, GET and DELETE",
                ),
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST, GET, DELETE"));
            return r;
        }
    };
    let response = match result {
        Ok(r) => r,
        Err(refusal) => gw.refuse(&path, &refusal),
    };
    gw.count(&path, method.as_deref(), response.status());
    gw.metrics
        .duration
        .get_or_create(&OperationLabels {
            route: path.clone(),
            mcp_method_name: method_label(method.as_deref()),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// GET (the server-to-client SSE stream) and DELETE (end the session): no body, passed through.
async fn stream_only(
    gw: &Gateway,
    route: &Route,
    path: &str,
    method: Method,
    headers: &HeaderMap,
) -> Result<Response, Refusal> {
    let opened = gw.session(route, path, headers)?;
    let backend = match &opened {
        Some((b, _)) => Arc::clone(b),
        None => Arc::clone(route.pick().ok_or_else(no_backend)?),
    };
    let target = gw.upstream_target(&backend, opened.as_ref().map(|(_, s)| s))?;
    let upstream = opened.as_ref().map(|(_, s)| s.upstream.as_str());
    let opens: Vec<_> = gw.activator.open(&backend).into_iter().collect();
    // The server's breaker guards the stream and the end of a session as it guards POSTs: an
    // open breaker answers at once, and the outcome (connect error, timeout, 5xx) feeds it.
    let (admitted, t) = gw
        .breakers
        .admit(&backend.server, &backend.breaker, Instant::now());
    breaker_seen(gw, &backend.server, t);
    admitted.map_err(circuit_open)?;
    let mut slot = Slot {
        gw,
        server: &backend.server,
        done: false,
    };
    let sent = gw
        .send(method, &target.url, headers, upstream, Bytes::new())
        .await;
    let ok = matches!(&sent, Ok(r) if !r.status().is_server_error());
    slot.done = true;
    let t = gw
        .breakers
        .record(&backend.server, &backend.breaker, ok, Instant::now());
    breaker_seen(gw, &backend.server, t);
    let resp = sent?;
    let token = headers.get(SESSION).and_then(|v| v.to_str().ok());
    let current = opened.as_ref().zip(token).map(|((_, s), t)| (s, t));
    let (p, incoming) = resp.into_parts();
    let hs = gw.response_headers(
        path,
        &backend,
        target.endpoint.as_deref(),
        &p.headers,
        current,
    );
    Ok(with_headers(p.status, hs, held_open(incoming, opens)))
}

/// A response body that keeps `opens` (the idle clock's open requests) until it is done.
fn held_open(incoming: hyper::body::Incoming, opens: Vec<super::activator::Open>) -> AxBody {
    if opens.is_empty() {
        return AxBody::new(incoming);
    }
    AxBody::new(incoming.map_frame(move |f| {
        let _open = &opens;
        f
    }))
}

/// The on-demand candidate to wake before a request without a session can be served: when no
/// candidate can take it now and one of them starts on demand.
fn wake_first(
    gw: &Gateway,
    candidates: &[Arc<Backend>],
    session: Option<&Session>,
) -> Option<Arc<Backend>> {
    if session.is_some() {
        return None;
    }
    let servable = |b: &Backend| !gw.activator.needs_wake(b) && b.upstream.target(None, 0).is_ok();
    if candidates.iter().any(|b| servable(b)) {
        return None;
    }
    candidates
        .iter()
        .find(|b| gw.activator.needs_wake(b))
        .cloned()
}

fn with_headers(status: StatusCode, headers: HeaderMap, body: AxBody) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

fn no_backend() -> Refusal {
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        code::UPSTREAM_UNAVAILABLE,
        "the group has no members",
    )
}

/// POST: one JSON-RPC message or a batch. Returns the method (for metrics) and the response.
async fn post(
    gw: &Arc<Gateway>,
    route: &Route,
    path: &str,
    headers: &HeaderMap,
    body: AxBody,
) -> (Option<String>, Result<Response, Refusal>) {
    let bytes = match read_body(body, gw.config.max_body).await {
        Ok(b) => b,
        Err(r) => return (None, Err(r)),
    };
    let parsed = match request::parse(&bytes) {
        Ok(b) => b,
        Err(r) => return (None, Err(r)),
    };
    let method = match &parsed {
        Body::One(m) => m.method.clone(),
        Body::Batch(_) => Some("batch".into()),
    };
    // Every answer the gateway gives a request carries the request's id.
    let id = parsed.id();
    let result = post_parsed(gw, route, path, headers, bytes, parsed)
        .await
        .map_err(|r| if r.id.is_null() { r.with_id(id) } else { r });
    (method, result)
}

async fn read_body(body: AxBody, cap: usize) -> Result<Bytes, Refusal> {
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::INVALID_REQUEST,
            format!("the request body is larger than {cap} bytes"),
        )
    };
    match Limited::new(body, cap).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "the request body could not be read",
        )),
    }
}

async fn post_parsed(
    gw: &Arc<Gateway>,
    route: &Route,
    path: &str,
    headers: &HeaderMap,
    bytes: Bytes,
    parsed: Body,
) -> Result<Response, Refusal> {
    request::check_headers(&parsed, headers)?;
    let opened = gw.session(route, path, headers)?;
    // A sealed session stays on its member; anything else goes where the strategy says.
    let candidates = match &opened {
        Some((b, _)) => vec![Arc::clone(b)],
        None => gw.balancer.candidates(route, Instant::now())?,
    };
    let backend = Arc::clone(candidates.first().ok_or_else(no_backend)?);
    let policy = &backend.tools;
    let id = parsed.id();
    match &parsed {
        Body::Batch(items) => {
            let governed = items.iter().any(|m| m.method().starts_with("tools/"));
            if governed && (policy.filters() || policy.rate_limit.is_some()) {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    code::INVALID_REQUEST,
                    "tools/ methods in a JSON-RPC batch are not served under a tool policy; send them one per request",
                ));
            }
        }
        Body::One(m) => {
            if m.method() == "tools/call" {
                let tool = m.name.as_deref().unwrap_or("");
                if !policy.allows(tool) {
                    let r = Refusal::new(
                        StatusCode::OK,
                        code::TOOL_DENIED,
                        format!(
                            "tool `{tool}` is not allowed on this server (tools.allowList/denyList)"
                        ),
                    )
                    .with_id(id.clone());
                    return Err(if m.is_request() {
                        r
                    } else {
                        Refusal {
                            status: StatusCode::FORBIDDEN,
                            ..r
                        }
                    });
                }
                if let Some(rl) = &policy.rate_limit {
                    if let Err(refused) = gw.limits.check(&backend.server, rl) {
                        let secs = refused.retry_after_secs();
                        let mut r = Refusal::new(
                            StatusCode::TOO_MANY_REQUESTS,
                            code::RATE_LIMITED,
                            format!(
                                "rate limit of {} tools/call per minute reached; retry after {secs}s",
                                rl.requests_per_minute
                            ),
                        )
                        .with_id(id.clone());
                        r.data = Some(Box::new(serde_json::json!({"retryAfterSeconds": secs})));
                        let mut resp = gw.refuse(path, &r);
                        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                            resp.headers_mut().insert(header::RETRY_AFTER, v);
                        }
                        return Ok(resp);
                    }
                }
            }
        }
    }
    let session = opened.as_ref().map(|(_, s)| s);
    // An on-demand server with no ready pod: the request is held until it has one.
    let woken;
    let (route, candidates) = match wake_first(gw, &candidates, session) {
        Some(b) => {
            let host: Arc<dyn super::activator::Host> = Arc::clone(gw) as _;
            gw.activator.wake(host, &b).await?;
            woken = gw.routes.load_full();
            let route = woken.get(path).ok_or_else(|| {
                Refusal::new(
                    StatusCode::NOT_FOUND,
                    code::NO_ROUTE,
                    "the server was removed while it started",
                )
            })?;
            let candidates = gw.balancer.candidates(route, Instant::now())?;
            (route, candidates)
        }
        None => (route, candidates),
    };
    // Open (for the idle clock) until the response body is done.
    let opens: Vec<_> = candidates
        .iter()
        .filter_map(|b| gw.activator.open(b))
        .collect();
    if let Some(b) = candidates.first() {
        gw.activator.record_before_forward(b).await;
    }
    let (backend, target, resp) =
        forward(gw, route, &candidates, &parsed, headers, session, bytes).await?;
    // The member that answered filters its own listing (members may differ in policy).
    let listing = match &parsed {
        Body::One(m) if m.method() == "tools/list" && m.is_request() && backend.tools.filters() => {
            Some(id.clone())
        }
        _ => None,
    };
    let token = headers.get(SESSION).and_then(|v| v.to_str().ok());
    let current = opened.as_ref().zip(token).map(|((_, s), t)| (s, t));
    let (p, incoming) = resp.into_parts();
    let hs = gw.response_headers(
        path,
        &backend,
        target.endpoint.as_deref(),
        &p.headers,
        current,
    );
    let Some(list_id) = listing.filter(|_| p.status.is_success()) else {
        return Ok(with_headers(p.status, hs, held_open(incoming, opens)));
    };
    // A listing under a tool policy: read whole (bounded), filter, send.
    let body = match Limited::new(incoming, gw.config.max_body).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Err(Refusal::new(
                StatusCode::BAD_GATEWAY,
                code::UPSTREAM_UNAVAILABLE,
                format!(
                    "the upstream's tools/list response could not be read within {} bytes",
                    gw.config.max_body
                ),
            )
            .with_id(list_id));
        }
    };
    let media = crate::probe::http::media_type(&p.headers);
    let filtered: Bytes = match media.as_deref() {
        Some("text/event-stream") => match std::str::from_utf8(&body) {
            Ok(text) => filter::filter_sse(text, &list_id, &backend.tools).into(),
            Err(_) => body,
        },
        _ => filter::filter_json(&body, &list_id, &backend.tools)
            .map(Bytes::from)
            .unwrap_or(body),
    };
    Ok(with_headers(p.status, hs, AxBody::from(filtered)))
}

// Sending to a route's members: strategy order, failover, breakers (the pure parts are in
// [`super::balance`] and [`super::breaker`]).

fn labels(s: &ServerKey) -> ServerLabels {
    ServerLabels {
        namespace: s.namespace.clone(),
        name: s.name.clone(),
    }
}

/// Publishes a server's breaker state, and logs and counts a transition.
fn breaker_seen(gw: &Gateway, server: &ServerKey, t: breaker::Transition) {
    let state = gw.breakers.state(server);
    gw.metrics
        .breaker_state
        .get_or_create(&labels(server))
        .set(state.gauge());
    if let Some((from, to)) = t {
        gw.metrics
            .breaker_transitions
            .get_or_create(&TransitionLabels {
                namespace: server.namespace.clone(),
                name: server.name.clone(),
                from: from.as_str(),
                to: to.as_str(),
            })
            .inc();
        tracing::warn!(
            namespace = %server.namespace,
            name = %server.name,
            from = from.as_str(),
            to = to.as_str(),
            "circuit breaker changed state"
        );
    }
}

/// An admitted request's breaker slot, given back if the request ends without an outcome (the
/// client went away mid-request), so a half-open breaker never runs out of trial slots.
struct Slot<'g> {
    gw: &'g Gateway,
    server: &'g ServerKey,
    done: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.gw.breakers.release(self.server);
        }
    }
}

fn circuit_open(r: breaker::Refused) -> Refusal {
    let secs = r.retry_after_secs();
    let mut f = Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        code::CIRCUIT_OPEN,
        format!("the server's circuit breaker is open; retry after {secs}s"),
    );
    f.data = Some(Box::new(serde_json::json!({"retryAfterSeconds": secs})));
    f
}

/// Sends a POST to the first candidate whose breaker admits it. A member with an open breaker
/// is skipped (nothing was sent, so that is no retry). When the route is a group with failover
/// enabled, the request names no session and is [`repeatable`], a failure of a kind in
/// `retryOn` is sent again to the next candidate, at most `maxRetries` times, `retryDelay`
/// apart. Every outcome feeds the server's breaker and the member's health.
pub(super) async fn forward(
    gw: &Gateway,
    route: &Route,
    candidates: &[Arc<Backend>],
    parsed: &Body,
    headers: &HeaderMap,
    session: Option<&Session>,
    bytes: Bytes,
) -> Result<(Arc<Backend>, Target, http::Response<hyper::body::Incoming>), Refusal> {
    let upstream = session.map(|s| s.upstream.as_str());
    let failover = route
        .group
        .as_ref()
        .map(|g| &g.failover)
        .filter(|f| f.enabled && upstream.is_none() && repeatable(parsed));
    let most = failover.map_or(1, |f| 1 + usize::try_from(f.max_retries).unwrap_or(0));
    let (mut sent, mut last) = (0usize, None::<Refusal>);
    for (i, b) in candidates.iter().enumerate() {
        if sent >= most {
            break;
        }
        // A member with no ready pod is passed over; anything else that is not the member's
        // fault (a transport this gateway cannot serve) is said now.
        let target = match gw.upstream_target(b, session) {
            Ok(t) => t,
            Err(r)
                if candidates.len() > 1
                    && r.status == StatusCode::SERVICE_UNAVAILABLE
                    && r.code == code::UPSTREAM_UNAVAILABLE =>
            {
                last = Some(r);
                continue;
            }
            Err(r) => return Err(r),
        };
        let (admitted, t) = gw.breakers.admit(&b.server, &b.breaker, Instant::now());
        breaker_seen(gw, &b.server, t);
        if let Err(refused) = admitted {
            last = Some(circuit_open(refused));
            continue;
        }
        let mut slot = Slot {
            gw,
            server: &b.server,
            done: false,
        };
        if sent > 0 {
            if let Some(f) = failover {
                tokio::time::sleep(f.retry_delay).await;
            }
        }
        sent += 1;
        let result = {
            let _flight = gw.balancer.start(&b.server);
            gw.send(Method::POST, &target.url, headers, upstream, bytes.clone())
                .await
        };
        let fault = match &result {
            Ok(r) if r.status().is_server_error() => Some(RetryOn::ServerError),
            Ok(_) => None,
            Err(r) if r.status == StatusCode::GATEWAY_TIMEOUT => Some(RetryOn::Timeout),
            Err(_) => Some(RetryOn::ConnectionError),
        };
        let now = Instant::now();
        slot.done = true;
        let t = gw
            .breakers
            .record(&b.server, &b.breaker, fault.is_none(), now);
        breaker_seen(gw, &b.server, t);
        gw.balancer.record(&b.server, fault.is_none(), now);
        let again = fault.is_some_and(|k| failover.is_some_and(|f| f.retry_on.contains(&k)))
            && sent < most
            && i + 1 < candidates.len();
        match result {
            Ok(r) if !again => return Ok((Arc::clone(b), target, r)),
            Err(e) if !again => return Err(e),
            Ok(r) => {
                last = Some(Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    code::UPSTREAM_UNAVAILABLE,
                    format!("upstream answered {}", r.status().as_u16()),
                ));
            }
            Err(e) => last = Some(e),
        }
        gw.metrics.retries.get_or_create(&labels(&b.server)).inc();
        tracing::info!(
            route = %route.path(),
            namespace = %b.server.namespace,
            name = %b.server.name,
            "member failed a repeatable request: sending it to the next member"
        );
    }
    Err(last.unwrap_or_else(|| {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code::UPSTREAM_UNAVAILABLE,
            "no member could take the request",
        )
    }))
}
