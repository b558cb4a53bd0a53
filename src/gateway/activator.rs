//! The activator: on-demand servers (`replicas: 0`) started by their first request and stopped
//! after `idleTTL` without one.
//!
//! - **Wake.** A request for an on-demand server that finds no ready pod (or finds it asleep) is
//!   held. The first one starts one wake per server, however many requests arrive: it scales the
//!   Deployment to 1 through the scale subresource (when it is at 0), waits for a ready endpoint
//!   (the EndpointSlice watch updates the route table) and for the pod to answer MCP (an
//!   `initialize` answered with a JSON-RPC message), then every held request is forwarded.
//!   Bounded by the server's `startupTimeout` and by `--max-held-requests` per server: past
//!   either, a JSON-RPC error with HTTP 503 and `Retry-After`.
//! - **Sleep.** A sweep stops a server (scale to 0) once no request and no open stream has been
//!   seen for `idleTTL`: not while a request or stream is open, not while it is waking (one
//!   operation lock per server), and not when any gateway replica saw activity: every replica
//!   writes the last activity it saw to the Deployment (`mcp-hangar.io/last-activity`), and the
//!   stop is a write conditional on the resourceVersion the sweep decided on, so a replica that
//!   records activity meanwhile makes the stop fail instead of racing it. Several replicas may
//!   sweep; at most one stop of a decision lands.
//!
//! The decisions ([`should_stop`], [`publish_due`]) are pure, with time as an argument.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use http::{Method, StatusCode};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::metrics::{ColdStartLabels, Metrics, ServerLabels};
use super::request::{Refusal, code};
use super::routes::{Activation, Backend, RouteTable, ServerKey, Upstream};
use crate::compile::render::labels::{GATEWAY_MANAGER, LAST_ACTIVITY_ANNOTATION};

/// What the gateway's Deployment watch keeps of an on-demand server's Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// `spec.replicas` (a missing count is the API's default, 1).
    pub replicas: i32,
    pub version: String,
    /// `mcp-hangar.io/last-activity`, when set and readable.
    pub last_activity: Option<SystemTime>,
}

impl Seen {
    pub fn of(d: &Deployment) -> Seen {
        let last_activity = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LAST_ACTIVITY_ANNOTATION))
            .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .map(SystemTime::from);
        Seen {
            replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            version: d.metadata.resource_version.clone().unwrap_or_default(),
            last_activity,
        }
    }
}

/// What this process knows of one server's activity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    /// Requests and streams open now.
    pub in_flight: usize,
    /// The last request's start or end (or when this process first saw the server).
    pub last_active: Instant,
    /// A wake or a stop is under way.
    pub busy: bool,
}

/// Whether the sweep stops a server now (pure): none of its requests or streams open here, no
/// wake or stop under way, idle here for `idle_ttl`, and idle for `idle_ttl` by the activity
/// every replica recorded (`shared_idle`: now minus the Deployment's last-activity, `None`
/// when it has none).
pub fn should_stop(
    local: &Local,
    now: Instant,
    shared_idle: Option<Duration>,
    idle_ttl: Duration,
) -> bool {
    local.in_flight == 0
        && !local.busy
        && now.saturating_duration_since(local.last_active) >= idle_ttl
        && shared_idle.is_none_or(|d| d >= idle_ttl)
}

/// Whether this replica writes its activity to the Deployment now (pure): it saw activity
/// (or has a request open) since it last wrote, and the recorded value is older than a
/// quarter of `idle_ttl` (at least a second apart), so a sweep anywhere sees it well in time.
pub fn publish_due(
    active_since_publish: bool,
    in_flight: usize,
    recorded_age: Option<Duration>,
    idle_ttl: Duration,
) -> bool {
    let every = (idle_ttl / 4).max(Duration::from_secs(1));
    (active_since_publish || in_flight > 0) && recorded_age.is_none_or(|a| a >= every)
}

/// What the activator uses of the gateway it serves (the proxy implements it).
pub trait Host: Send + Sync + 'static {
    /// The route table now (the watch replaces it as endpoints come and go).
    fn routes(&self) -> Arc<RouteTable>;
    fn activator(&self) -> &Activator;
    fn metrics(&self) -> &Metrics;
    /// The upstream HTTP client.
    fn http(&self) -> &crate::probe::http::Http;
}

type WakeResult = Result<(), String>;

struct Entry {
    local: Local,
    /// Requests waiting for a wake now.
    held: usize,
    /// The wake under way, shared by every held request.
    wake: Option<Shared<BoxFuture<'static, WakeResult>>>,
    /// Stopped by this gateway and not woken since: endpoints still listed are going away.
    asleep: bool,
    /// The endpoints listed when it was stopped, not to be taken for a new pod's.
    stale: Vec<String>,
    active_since_publish: bool,
    /// When this process last wrote the server's activity.
    published_at: Option<Instant>,
}

/// The activator of one gateway process.
pub struct Activator {
    client: Option<kube::Client>,
    max_held: usize,
    entries: Mutex<HashMap<ServerKey, Entry>>,
    /// Each on-demand server's Deployment as last watched (cluster mode).
    deployments: Mutex<BTreeMap<(String, String), Seen>>,
    /// Serialises the scale writes of one server (a wake's scale-up, a stop).
    ops: Mutex<HashMap<ServerKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// A request or stream open on an on-demand server: counted until dropped (for a streamed
/// response, until its body is done).
pub struct Open {
    activator: Arc<Activator>,
    server: ServerKey,
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Ok(mut es) = self.activator.entries.lock()
            && let Some(e) = es.get_mut(&self.server)
        {
            e.local.in_flight = e.local.in_flight.saturating_sub(1);
            e.local.last_active = Instant::now();
            e.active_since_publish = true;
        }
    }
}

/// Gives back a held request's place when its wait ends (answered, timed out, or dropped).
struct Held<'a> {
    activator: &'a Activator,
    server: &'a ServerKey,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Ok(mut es) = self.activator.entries.lock()
            && let Some(e) = es.get_mut(self.server)
        {
            e.held = e.held.saturating_sub(1);
        }
    }
}

fn unavailable(message: String, retry_after: u64) -> Refusal {
    let mut r = Refusal::new(StatusCode::SERVICE_UNAVAILABLE, code::NOT_STARTED, message);
    r.data = Some(Box::new(json!({"retryAfterSeconds": retry_after})));
    r
}

impl Activator {
    /// `client`: the cluster to scale in (`None` in local mode: nothing is woken there).
    pub fn new(client: Option<kube::Client>, max_held: usize) -> Self {
        Activator {
            client,
            max_held,
            entries: Mutex::new(HashMap::new()),
            deployments: Mutex::new(BTreeMap::new()),
            ops: Mutex::new(HashMap::new()),
        }
    }

    fn entry<R>(&self, server: &ServerKey, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        let mut es = self.entries.lock().ok()?;
        let e = es.entry(server.clone()).or_insert_with(|| Entry {
            local: Local {
                in_flight: 0,
                last_active: Instant::now(),
                busy: false,
            },
            held: 0,
            wake: None,
            asleep: false,
            stale: Vec::new(),
            active_since_publish: false,
            published_at: None,
        });
        Some(f(e))
    }

    fn op_lock(&self, server: &ServerKey) -> Arc<tokio::sync::Mutex<()>> {
        match self.ops.lock() {
            Ok(mut m) => Arc::clone(m.entry(server.clone()).or_default()),
            Err(_) => Arc::default(),
        }
    }

    /// The Deployments of on-demand servers, as the watch last listed them.
    pub fn observe(&self, seen: BTreeMap<(String, String), Seen>) {
        if let Ok(mut d) = self.deployments.lock() {
            *d = seen;
        }
    }

    fn seen(&self, server: &ServerKey) -> Option<Seen> {
        self.deployments
            .lock()
            .ok()?
            .get(&(server.namespace.clone(), server.name.clone()))
            .cloned()
    }

    /// Counts a request (or stream) open on `backend` until the returned guard is dropped; for
    /// a server that is not on demand, nothing.
    pub fn open(self: &Arc<Self>, backend: &Backend) -> Option<Open> {
        backend.activation.as_ref()?;
        self.entry(&backend.server, |e| {
            e.local.in_flight += 1;
            e.local.last_active = Instant::now();
            e.active_since_publish = true;
        })?;
        Some(Open {
            activator: Arc::clone(self),
            server: backend.server.clone(),
        })
    }

    /// Whether a request for `backend` must wait for a wake: an on-demand server (in cluster
    /// mode) with no ready pod, or stopped by this gateway and not woken since.
    pub fn needs_wake(&self, backend: &Backend) -> bool {
        if backend.activation.is_none() || self.client.is_none() {
            return false;
        }
        let no_pod =
            matches!(&backend.upstream, Upstream::Endpoints { ready, .. } if ready.is_empty());
        no_pod || self.entry(&backend.server, |e| e.asleep).unwrap_or(false)
    }

    /// Holds the request until `backend`'s server is ready (starting the wake if none is under
    /// way), or refuses it: too many held already, or not ready within `startupTimeout`.
    pub async fn wake(&self, gw: Arc<dyn Host>, backend: &Backend) -> Result<(), Refusal> {
        let Some(act) = backend.activation.clone() else {
            return Ok(());
        };
        let server = backend.server.clone();
        let retry = act.startup_timeout.as_secs().clamp(1, 60);
        let joined = self.entry(&server, |e| {
            if e.held >= self.max_held {
                return Err(unavailable(
                    format!(
                        "the server is starting and {} requests already wait for it; retry after {retry}s",
                        e.held
                    ),
                    retry,
                ));
            }
            e.held += 1;
            let wake = match &e.wake {
                Some(w) => w.clone(),
                None => {
                    e.local.busy = true;
                    let task = tokio::spawn(run_wake(
                        Arc::clone(&gw),
                        server.clone(),
                        act.clone(),
                        std::mem::take(&mut e.stale),
                    ));
                    let w = async move {
                        task.await
                            .unwrap_or_else(|e| Err(format!("the wake task ended: {e}")))
                    }
                    .boxed()
                    .shared();
                    e.wake = Some(w.clone());
                    w
                }
            };
            Ok(wake)
        });
        let wake = match joined {
            Some(r) => r?,
            None => return Err(unavailable("the activator is unavailable".into(), retry)),
        };
        let _held = Held {
            activator: self,
            server: &server,
        };
        match tokio::time::timeout(act.startup_timeout, wake).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(unavailable(
                format!("the server could not be started: {why}; retry after {retry}s"),
                retry,
            )),
            Err(_) => Err(unavailable(
                format!(
                    "the server did not become ready within its startupTimeout ({}s); retry after {retry}s",
                    act.startup_timeout.as_secs()
                ),
                retry,
            )),
        }
    }

    /// Before a request is forwarded to a running on-demand server: when neither the activity
    /// recorded on its Deployment nor this process's last record is younger than half its
    /// `idleTTL` (the server may be close to a stop by another replica), records it now and
    /// waits for the write, so that a stop decided on the older version fails instead of
    /// cutting this request.
    pub async fn record_before_forward(&self, backend: &Backend) {
        let Some(act) = &backend.activation else {
            return;
        };
        if self.client.is_none() {
            return;
        }
        let half = act.idle_ttl / 2;
        let recorded_age = self
            .seen(&backend.server)
            .and_then(|s| s.last_activity)
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default());
        if recorded_age.is_some_and(|a| a < half) {
            return;
        }
        let claim = self.entry(&backend.server, |e| {
            let recent = e.published_at.is_some_and(|p| p.elapsed() < half);
            if !recent {
                e.published_at = Some(Instant::now());
            }
            !recent
        });
        if claim == Some(true) {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                publish_activity(self, &backend.server),
            )
            .await;
        }
    }

    /// Records that a wake ended (whatever its outcome).
    fn woke(&self, server: &ServerKey, ok: bool) {
        self.entry(server, |e| {
            e.wake = None;
            e.local.busy = false;
            e.local.last_active = Instant::now();
            if ok {
                e.asleep = false;
            }
        });
    }

    fn deployments_api(&self, namespace: &str) -> Option<Api<Deployment>> {
        Some(Api::namespaced(self.client.clone()?, namespace))
    }

    fn params() -> PatchParams {
        PatchParams {
            field_manager: Some(GATEWAY_MANAGER.into()),
            ..PatchParams::default()
        }
    }
}

/// The MCP readiness of one pod: an `initialize` answered with a JSON-RPC message (a result or
/// an error: either way the server speaks MCP). The session it may open is ended again.
async fn answers_mcp(http: &crate::probe::http::Http, url: &str) -> bool {
    let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "hangar-gateway-activator", "version": env!("CARGO_PKG_VERSION")},
    }});
    let request = |method: Method, session: Option<&str>, body: bytes::Bytes| {
        let mut r = http::Request::builder()
            .method(method)
            .uri(url)
            .header(http::header::ACCEPT, "application/json, text/event-stream")
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r.body(http_body_util::Full::new(body)).ok()
    };
    let Some(req) = request(Method::POST, None, bytes::Bytes::from(body.to_string())) else {
        return false;
    };
    let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(2), http.send(req)).await else {
        return false;
    };
    if resp.status().is_server_error() {
        return false;
    }
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut reader = crate::probe::http::Body::new(resp.into_body(), 64 * 1024);
    let mut text = Vec::new();
    let answered = loop {
        match tokio::time::timeout(Duration::from_secs(2), reader.chunk()).await {
            Ok(Ok(Some(c))) => {
                text.extend_from_slice(&c);
                if holds_jsonrpc(&text) {
                    break true;
                }
            }
            _ => break holds_jsonrpc(&text),
        }
    };
    if let Some(req) = session.and_then(|s| request(Method::DELETE, Some(&s), bytes::Bytes::new()))
    {
        let _ = tokio::time::timeout(Duration::from_secs(2), http.send(req)).await;
    }
    answered
}

fn holds_jsonrpc(text: &[u8]) -> bool {
    text.windows(9).any(|w| w == b"\"jsonrpc\"")
}

/// One wake: scale to 1 when at 0, then wait for a ready pod that answers MCP.
async fn run_wake(
    gw: Arc<dyn Host>,
    server: ServerKey,
    act: Activation,
    stale: Vec<String>,
) -> WakeResult {
    let started = Instant::now();
    let a = gw.activator();
    let result = async {
        scale_up(a, &server, true).await?;
        let path = format!("/servers/{}/{}/mcp", server.namespace, server.name);
        let deadline = started + act.startup_timeout;
        let mut last_scale = Instant::now();
        loop {
            // Stopped meanwhile (another replica's stop decided before this wake was recorded):
            // up again.
            if a.seen(&server).is_some_and(|s| s.replicas == 0)
                && last_scale.elapsed() >= Duration::from_secs(1)
            {
                scale_up(a, &server, false).await?;
                last_scale = Instant::now();
            }
            let table = gw.routes();
            let ready: Vec<String> = match table.get(&path).and_then(|r| r.backends.first()) {
                Some(b) => match &b.upstream {
                    Upstream::Endpoints { ready, path, .. } => ready
                        .iter()
                        .filter(|e| !stale.contains(e))
                        .map(|e| format!("http://{e}{path}"))
                        .collect(),
                    Upstream::Remote { .. } => return Ok(()),
                },
                None => return Err("the server is no longer routed".to_string()),
            };
            drop(table);
            for url in &ready {
                if answers_mcp(gw.http(), url).await {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no ready pod answered MCP within {}s",
                    act.startup_timeout.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(if ready.is_empty() {
                25
            } else {
                100
            }))
            .await;
        }
    }
    .await;
    let outcome = if result.is_ok() { "ready" } else { "failed" };
    gw.metrics()
        .cold_starts
        .get_or_create(&ColdStartLabels {
            namespace: server.namespace.clone(),
            name: server.name.clone(),
            outcome,
        })
        .observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(()) => {
            tracing::info!(namespace = %server.namespace, name = %server.name, ms = started.elapsed().as_millis() as u64, "on-demand server ready: held requests forwarded")
        }
        Err(why) => {
            tracing::warn!(namespace = %server.namespace, name = %server.name, reason = %why, "on-demand server did not start")
        }
    }
    a.woke(&server, result.is_ok());
    result
}

/// Records the wake as activity, then scales the Deployment to 1 (when the watch saw it at 0,
/// or always unless `only_at_zero`). In this order, a stop any replica decided before the wake
/// fails (the version it was conditional on moved) and one decided after sees the activity.
async fn scale_up(a: &Activator, server: &ServerKey, only_at_zero: bool) -> WakeResult {
    let lock = a.op_lock(server);
    let _op = lock.lock().await;
    let at_zero = a.seen(server).is_none_or(|s| s.replicas == 0);
    if only_at_zero && !at_zero {
        return Ok(());
    }
    publish_activity(a, server).await;
    let api = a
        .deployments_api(&server.namespace)
        .ok_or("no cluster to scale in")?;
    api.patch_scale(
        &server.name,
        &Activator::params(),
        &Patch::Merge(&json!({"spec": {"replicas": 1}})),
    )
    .await
    .map_err(|e| format!("scaling the Deployment to 1: {e}"))?;
    tracing::info!(namespace = %server.namespace, name = %server.name, "on-demand server started: scaled to 1");
    Ok(())
}

/// The activator's loop (cluster mode): every second, write the activity this replica saw and
/// stop the servers idle for their `idleTTL`.
pub async fn sweep(gw: Arc<dyn Host>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let table = gw.routes();
        let on_demand: Vec<(ServerKey, Activation)> = table
            .routes
            .values()
            .filter(|r| r.kind == super::routes::RouteKind::Server)
            .filter_map(|r| r.backends.first())
            .filter_map(|b| Some((b.server.clone(), b.activation.clone()?)))
            .collect();
        for (server, act) in on_demand {
            sweep_one(&gw, &server, &act, &table).await;
        }
    }
}

async fn sweep_one(
    gw: &Arc<dyn Host>,
    server: &ServerKey,
    act: &Activation,
    table: &super::routes::RouteTable,
) {
    let a = gw.activator();
    let Some(seen) = a.seen(server) else { return };
    let now = Instant::now();
    let wall = SystemTime::now();
    let recorded_age = seen
        .last_activity
        .map(|t| wall.duration_since(t).unwrap_or_default());
    let Some((local, publish)) = a.entry(server, |e| {
        let p = publish_due(
            e.active_since_publish,
            e.local.in_flight,
            recorded_age,
            act.idle_ttl,
        );
        (e.local.clone(), p)
    }) else {
        return;
    };
    if publish && seen.replicas > 0 {
        publish_activity(a, server).await;
        return;
    }
    if seen.replicas == 0 || !should_stop(&local, now, recorded_age, act.idle_ttl) {
        return;
    }
    let lock = a.op_lock(server);
    let Ok(_op) = lock.try_lock() else { return };
    // Decided under the entry lock again: a request may have come in meanwhile.
    let go = a
        .entry(server, |e| {
            let go = should_stop(&e.local, Instant::now(), recorded_age, act.idle_ttl);
            if go {
                e.local.busy = true;
            }
            go
        })
        .unwrap_or(false);
    if !go {
        return;
    }
    let stale: Vec<String> = table
        .get(&format!(
            "/servers/{}/{}/mcp",
            server.namespace, server.name
        ))
        .and_then(|r| r.backends.first())
        .map(|b| match &b.upstream {
            Upstream::Endpoints { ready, .. } => ready.clone(),
            Upstream::Remote { .. } => Vec::new(),
        })
        .unwrap_or_default();
    let stopped = match a.deployments_api(&server.namespace) {
        Some(api) => api
            .patch_scale(
                &server.name,
                &Activator::params(),
                // Conditional on the version decided on: activity recorded meanwhile by any
                // replica (or any other change) makes this fail with a conflict.
                &Patch::Merge(&json!({
                    "metadata": {"resourceVersion": seen.version},
                    "spec": {"replicas": 0},
                })),
            )
            .await
            .map_err(|e| e.to_string()),
        None => Err("no cluster".into()),
    };
    a.entry(server, |e| {
        e.local.busy = false;
        if stopped.is_ok() {
            e.asleep = true;
            e.stale = stale;
        }
    });
    match stopped {
        Ok(_) => {
            gw.metrics()
                .idle_stops
                .get_or_create(&ServerLabels {
                    namespace: server.namespace.clone(),
                    name: server.name.clone(),
                })
                .inc();
            tracing::info!(namespace = %server.namespace, name = %server.name, idle_ttl_s = act.idle_ttl.as_secs(), "on-demand server idle: scaled to 0");
        }
        Err(e) => {
            tracing::debug!(namespace = %server.namespace, name = %server.name, error = %e, "idle stop not made (changed meanwhile, or refused)")
        }
    }
}

/// Writes `now` as the server's last activity, so the sweeps of every replica see it.
async fn publish_activity(a: &Activator, server: &ServerKey) {
    let Some(api) = a.deployments_api(&server.namespace) else {
        return;
    };
    a.entry(server, |e| {
        e.active_since_publish = false;
        e.published_at = Some(Instant::now());
    });
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({"metadata": {"annotations": {LAST_ACTIVITY_ANNOTATION: now}}});
    if let Err(e) = api
        .patch(&server.name, &Activator::params(), &Patch::Merge(&patch))
        .await
    {
        a.entry(server, |e| e.active_since_publish = true);
        tracing::debug!(namespace = %server.namespace, name = %server.name, error = %e, "activity not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(in_flight: usize, idle: Duration, busy: bool, now: Instant) -> Local {
        Local {
            in_flight,
            last_active: now.checked_sub(idle).unwrap_or(now),
            busy,
        }
    }

    #[test]
    fn a_server_stops_only_when_idle_everywhere_for_its_ttl() {
        let now = Instant::now();
        let ttl = Duration::from_secs(300);
        let idle = Duration::from_secs(301);
        assert!(should_stop(&local(0, idle, false, now), now, None, ttl));
        assert!(should_stop(
            &local(0, idle, false, now),
            now,
            Some(idle),
            ttl
        ));
        // A request or stream open here.
        assert!(!should_stop(&local(1, idle, false, now), now, None, ttl));
        // A wake (or another stop) under way.
        assert!(!should_stop(&local(0, idle, true, now), now, None, ttl));
        // Active here recently.
        assert!(!should_stop(
            &local(0, Duration::from_secs(10), false, now),
            now,
            None,
            ttl
        ));
        // Another replica recorded activity recently.
        assert!(!should_stop(
            &local(0, idle, false, now),
            now,
            Some(Duration::from_secs(5)),
            ttl
        ));
    }

    #[test]
    fn activity_is_recorded_a_quarter_ttl_apart_and_only_when_there_was_some() {
        let ttl = Duration::from_secs(300);
        assert!(publish_due(true, 0, None, ttl));
        assert!(publish_due(false, 1, Some(Duration::from_secs(80)), ttl));
        assert!(!publish_due(true, 0, Some(Duration::from_secs(10)), ttl));
        assert!(!publish_due(false, 0, Some(Duration::from_secs(900)), ttl));
        // At least a second apart, however short the TTL.
        let short = Duration::from_millis(400);
        assert!(!publish_due(
            true,
            0,
            Some(Duration::from_millis(500)),
            short
        ));
        assert!(publish_due(true, 0, Some(Duration::from_secs(1)), short));
    }

    #[test]
    fn a_deployment_is_seen_with_its_count_version_and_activity() {
        let mut d = Deployment::default();
        d.metadata.resource_version = Some("7".into());
        d.metadata.annotations = Some(
            [(
                LAST_ACTIVITY_ANNOTATION.to_string(),
                "2026-12-04T10:00:00.5Z".to_string(),
            )]
            .into(),
        );
        let s = Seen::of(&d);
        assert_eq!((s.replicas, s.version.as_str()), (1, "7"));
        assert!(s.last_activity.is_some());
        d.metadata.annotations =
            Some([(LAST_ACTIVITY_ANNOTATION.to_string(), "soon".into())].into());
        assert_eq!(Seen::of(&d).last_activity, None);
    }
}
