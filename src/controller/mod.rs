//! `hangar controller`: reconciles MCPServer and MCPServerGroup with the same `compile` that
//! `hangar render` runs, applies the children with server-side apply and owner references, and
//! writes status (see [`state`]), Events and metrics.
//!
//! Resources are watched untyped and compiled from their JSON, so one resource that does not
//! deserialize (or does not compile) gets an error in its status and does not stop the others.

pub mod applied;
pub mod decide;
pub mod discovery;
pub mod drift;
pub mod fence;
/// The health-check seam lives with the probe; the controller uses it from there.
pub use crate::probe::health;
pub mod group;
pub mod leader;
pub mod merge;
pub mod metrics;
pub mod pipeline;
pub mod pods;
pub mod probes;
pub mod retry;
mod run;
/// The namespaces managed: discovery's sources read within it too, so it lives with them.
pub use crate::source::scope;
pub mod server;
pub mod state;
pub mod throttle;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::DynamicObject;
use kube::discovery::ApiResource;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value as Json, json};

use crate::apply::Applier;
use crate::connect::ConnectError;
use metrics::Metrics;

/// Field manager of everything the controller writes.
pub const FIELD_MANAGER: &str = "hangar-controller";

#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Kubeconfig context (default: the current context, or in-cluster config).
    #[arg(long)]
    pub context: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Manage these namespaces only: a watch each, and nothing read or written elsewhere
    /// (repeat the flag or separate with commas). Default: every namespace but kube-system,
    /// kube-public and kube-node-lease, which are managed only when listed here.
    #[arg(long, value_delimiter = ',', value_parser = parse_namespace, value_name = "NS")]
    pub namespace: Vec<String>,
    /// Reconciles running at once, per kind (a server's children are applied at once within
    /// its reconcile; health checks run apart, see --probe-concurrency).
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    /// API requests a second on average, client side (a token bucket; 0: no limit). Watches
    /// take one when they start; the leader election's renewals are never limited.
    #[arg(long, default_value_t = 200.0, value_name = "QPS")]
    pub kube_api_qps: f64,
    /// API requests sent at once before --kube-api-qps paces them.
    #[arg(long, default_value_t = 400, value_name = "N")]
    pub kube_api_burst: u32,
    /// Resync interval of Ready servers (drift is caught sooner through the watches).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub resync: Duration,
    /// The gateway's base URL (e.g. http://hangar-core.mcp-system.svc:8080): each server's and
    /// group's `status.gatewayEndpoint` is its route there. Unset: no such field.
    #[arg(long, value_name = "URL", value_parser = parse_gateway_url)]
    pub gateway_url: Option<String>,
    /// Check container-mode servers through their Service (`http://NAME.NS.svc:PORT/PATH`). Off
    /// when the controller runs outside the cluster network (Services unreachable); their state
    /// then follows the Deployment alone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub probe_services: bool,
    /// How servers are checked: `mcp` speaks the protocol (transport, version, tools; see
    /// `hangar probe`), `tcp` only opens a connection.
    #[arg(long, value_enum, default_value = "mcp")]
    pub health_check: HealthCheckKind,
    /// Health checks running at once.
    #[arg(long, default_value_t = 32)]
    pub probe_concurrency: usize,
    /// Run the MCPDiscoverySource controller (ConfigMap, Namespace, Annotations and Git sources).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub discovery: bool,
    /// Where Git sources are fetched to (default: `$HANGAR_CACHE_DIR/git`, else
    /// `$XDG_CACHE_HOME/hangar/git`, else `$HOME/.cache/hangar/git`).
    #[arg(long, value_name = "DIR")]
    pub git_cache_dir: Option<std::path::PathBuf>,
    /// Bound on the Git cache's size on disk; least recently used repositories go first.
    #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
    pub git_cache_max_bytes: u64,
    /// Run the MCPServer and MCPServerGroup controllers (off: discovery alone, e.g. to measure it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL", hide = true)]
    pub reconcile_servers: bool,
    /// Exit when stdin closes (lets a test harness own the process).
    #[arg(long, hide = true)]
    pub exit_on_stdin_eof: bool,
    #[command(flatten)]
    pub leader: leader::LeaderArgs,
    #[command(flatten)]
    pub log: crate::logging::LogArgs,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::compile::units::parse_duration(s)
}

fn parse_namespace(s: &str) -> Result<String, String> {
    crate::compile::units::check_dns1123_label(s)
        .map(|()| s.to_string())
        .map_err(|e| format!("not a namespace name: {e}"))
}

/// An http(s) URL with a host and nothing after its path, kept without a trailing `/`.
fn parse_gateway_url(s: &str) -> Result<String, String> {
    let u = url::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err("the gateway URL is http:// or https://HOST[:PORT][/PREFIX]".into());
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err("the gateway URL takes no query or fragment".into());
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// A route of the gateway at `base`: `BASE/servers/NS/NAME/mcp` or `BASE/groups/NS/NAME/mcp`
/// (the gateway's fixed URL contract).
pub fn gateway_endpoint(base: &str, dir: &str, namespace: &str, name: &str) -> String {
    format!("{base}/{dir}/{namespace}/{name}/mcp")
}

#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum HealthCheckKind {
    Mcp,
    Tcp,
}

/// Why a reconcile failed (and is retried), by the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Apply(#[from] crate::apply::ApplyError),
    #[error(transparent)]
    Prune(#[from] pipeline::PruneError),
    #[error(transparent)]
    Observe(#[from] pipeline::ObserveError),
    #[error(transparent)]
    Status(#[from] pipeline::StatusError),
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    pub fn category(&self) -> pipeline::Category {
        use pipeline::Category;
        match self {
            Error::Apply(e) | Error::Prune(pipeline::PruneError::Delete(e)) if e.is_conflict() => {
                Category::Conflict
            }
            Error::Apply(_) => Category::ApplyFailed,
            _ => Category::Api,
        }
    }
}

/// What every reconcile shares.
pub struct Ctx {
    pub client: Client,
    pub applier: Applier,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub server_ar: ApiResource,
    pub group_ar: ApiResource,
    /// Health checks, run off the reconcile path (see [`probes`]).
    pub probes: probes::Probes,
    pub probe_services: bool,
    pub resync: Duration,
    /// `--gateway-url`, without a trailing `/`.
    pub gateway_url: Option<String>,
    /// The namespaces managed (`--namespace`).
    pub scope: scope::Scope,
    /// Servers reconciled since start (by uid): their orphaned children were looked for.
    pub swept: Mutex<HashSet<String>>,
    /// Servers that have metric series (namespace, name).
    pub tracked: Mutex<HashSet<(String, String)>>,
    pub clock: fn() -> k8s_openapi::jiff::Timestamp,
    /// What was applied last per child, so unchanged children are not sent again.
    pub applied: Arc<applied::AppliedCache>,
    /// Failed reconciles' backoff and the API server's outages (see [`retry`]).
    pub retries: retry::Retries,
}

impl AsRef<Ctx> for Ctx {
    fn as_ref(&self) -> &Ctx {
        self
    }
}

impl Ctx {
    pub async fn event(&self, obj: &DynamicObject, ar: &ApiResource, ev: Event) {
        let r = obj.object_ref(ar);
        if let Err(e) = self.recorder.publish(&ev, &r).await {
            // An unreachable API server is logged once per outage (see `retry`).
            if retry::unreachable(&e) {
                tracing::debug!(error = %e, object = %obj.name_any(), "cannot publish event");
            } else {
                tracing::warn!(error = %e, object = %obj.name_any(), "cannot publish event");
            }
        } else {
            self.metrics
                .api_writes
                .get_or_create(&metrics::VerbLabels {
                    verb: "event".into(),
                })
                .inc();
        }
    }

    pub fn wrote(&self, verb: &str) {
        self.metrics
            .api_writes
            .get_or_create(&metrics::VerbLabels { verb: verb.into() })
            .inc();
    }
}

/// Runs one reconcile, counting it (`mcp_operator_reconcile_total{kind,result,category}`: `ok`
/// only when nothing went wrong, a Conflict written to status included) and timing it
/// (`mcp_operator_reconcile_duration_seconds{kind}`), and in seed 002's names
/// (`mcpserver_reconcile_total{controller,result}`, `mcpserver_reconcile_duration_seconds`).
/// What went wrong is logged at info. A success resets `obj`'s backoff and ends an API server
/// outage (see [`retry`]).
pub async fn measured(
    ctx: &Ctx,
    kind: &str,
    obj: &DynamicObject,
    reconcile: impl std::future::Future<Output = Result<pipeline::Outcome, Error>>,
) -> Result<Action, Error> {
    let t0 = std::time::Instant::now();
    let running = ctx.metrics.liveness.running(kind.to_string());
    let r = reconcile.await;
    drop(running);
    if r.is_ok()
        && let retry::Say::Up { after, failed } =
            ctx.retries
                .succeeded(&retry_key(obj), t0, std::time::Instant::now())
    {
        tracing::info!(
            failed_reconciles = failed,
            "API server reachable again after {}s",
            after.as_secs()
        );
    }
    let category = match &r {
        Ok(o) => o.category,
        Err(e) => e.category(),
    };
    ctx.metrics
        .reconcile_total
        .get_or_create(&metrics::ReconcileLabels {
            kind: kind.into(),
            result: category.result().into(),
            category: category.as_str().into(),
        })
        .inc();
    let seconds = t0.elapsed().as_secs_f64();
    ctx.metrics
        .reconcile_duration
        .get_or_create(&metrics::KindLabels { kind: kind.into() })
        .observe(seconds);
    ctx.metrics
        .reconciled(kind, matches!(category, pipeline::Category::Ok), seconds);
    r.map(|o| o.action)
}

pub fn event(warning: bool, reason: &str, note: &str) -> Event {
    event_of(warning, reason, "Reconcile", note)
}

/// An Event with its own action: the recorder folds Events of one object with the same type,
/// reason and action into one series (its note the first one's), so a transition (`Dead ->
/// Ready` after `new -> Ready`) or a new revision must differ in its action to be seen.
pub fn event_of(warning: bool, reason: &str, action: &str, note: &str) -> Event {
    Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(state::truncate(note, 1000)),
        action: state::truncate(action, 128),
        secondary: None,
    }
}

/// Shared with the gateway, which compiles the same resources: they live with the sources.
pub use crate::source::objects::{compile_input, resource};

/// The owner reference every child of `owner` carries.
pub fn owner_reference(owner: &DynamicObject, ar: &ApiResource) -> Option<Json> {
    Some(json!({
        "apiVersion": ar.api_version,
        "kind": ar.kind,
        "name": owner.name_any(),
        "uid": owner.metadata.uid.clone()?,
        "controller": true,
        "blockOwnerDeletion": true,
    }))
}

pub fn with_owner(body: &Json, owner_ref: &Json) -> Json {
    let mut b = body.clone();
    if let Some(meta) = b.get_mut("metadata").and_then(Json::as_object_mut) {
        meta.insert("ownerReferences".into(), json!([owner_ref]));
    }
    b
}

/// No backoff on a controller's merged trigger stream (each watch has its own; see `run`).
struct NoBackoff;

impl Iterator for NoBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoBackoff {
    fn reset(&mut self) {}
}

/// Every controller's (servers, groups, discovery): retry with the object's backoff. An
/// unreachable API server is logged once per outage (each object's failure at debug); other
/// failures, about one object, are logged for it.
fn error_policy<C: AsRef<Ctx>>(obj: Arc<DynamicObject>, err: &Error, ctx: Arc<C>) -> Action {
    let ctx: &Ctx = (*ctx).as_ref();
    let unreachable = retry::unreachable(err);
    let (failures, say) =
        ctx.retries
            .failed(&retry_key(&obj), unreachable, std::time::Instant::now());
    let delay = retry::backoff(failures, fastrand::f64());
    let object = format!(
        "{}/{}",
        obj.metadata.namespace.as_deref().unwrap_or(""),
        obj.name_any()
    );
    if say == retry::Say::Down {
        ctx.metrics.apiserver_outages.inc();
        tracing::warn!(
            error = %err,
            "API server unreachable; reconciles retry with backoff ({}s doubling to {}s, jittered) until it answers",
            retry::BASE.as_secs(),
            retry::CAP.as_secs()
        );
    }
    if unreachable {
        tracing::debug!(%object, error = %err, failures, retry_in = ?delay, "reconcile failed");
    } else {
        tracing::warn!(%object, error = %err, failures, retry_in = ?delay, "reconcile failed; retrying");
    }
    Action::requeue(delay)
}

/// An object's key in [`retry::Retries`]: its uid (unique across kinds), else namespace/name.
fn retry_key(obj: &DynamicObject) -> String {
    obj.metadata.uid.clone().unwrap_or_else(|| {
        format!(
            "{}/{}",
            obj.metadata.namespace.as_deref().unwrap_or(""),
            obj.name_any()
        )
    })
}

/// `hangar controller`: runs until a signal (or stdin EOF with `--exit-on-stdin-eof`).
/// The exit code is 2 when the controller stops on an error (printed); the error returned is
/// one before it could start (no async runtime).
pub fn main(args: ControllerArgs) -> Result<u8, RunError> {
    let rt = crate::connect::runtime()?;
    match rt.block_on(run::run(args)) {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(2)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "the cluster has no hangar CRDs ({0}); install them with `hangar crds | kubectl apply -f -` or the Helm chart"
    )]
    NoCrds(String),
    #[error("cannot set up the MCP probe: {0}")]
    Probe(String),
}

/// Counts an applier's writes in `hangar_api_writes_total{verb}`.
fn write_counter(m: Arc<Metrics>) -> crate::apply::WriteCounter {
    Arc::new(move |verb| {
        m.api_writes
            .get_or_create(&metrics::VerbLabels { verb: verb.into() })
            .inc();
    })
}

/// `spec.type` of a discovery source in the cache.
fn source_type(s: &DynamicObject) -> Option<String> {
    s.data
        .pointer("/spec/type")
        .and_then(Json::as_str)
        .map(str::to_string)
}

/// References to the cached discovery sources that `pick` selects.
fn refs_where(
    store: &kube::runtime::reflector::Store<DynamicObject>,
    ar: &ApiResource,
    pick: impl Fn(&DynamicObject) -> bool,
) -> Vec<ObjectRef<DynamicObject>> {
    store
        .state()
        .iter()
        .filter(|s| pick(s))
        .map(|s| {
            let r = ObjectRef::new_with(&s.name_any(), ar.clone());
            match s.namespace() {
                Some(ns) => r.within(&ns),
                None => r,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_url_is_http_with_a_host_and_gives_the_fixed_routes() {
        let base = parse_gateway_url("http://hangar-core.mcp-system.svc:8080/").unwrap();
        assert_eq!(
            gateway_endpoint(&base, "servers", "team", "echo"),
            "http://hangar-core.mcp-system.svc:8080/servers/team/echo/mcp"
        );
        assert_eq!(
            parse_gateway_url("https://mcp.example.com/prefix").as_deref(),
            Ok("https://mcp.example.com/prefix")
        );
        for bad in ["hangar-core:8080", "ftp://x", "http://x/?a=1", "not a url"] {
            assert!(parse_gateway_url(bad).is_err(), "{bad}");
        }
    }
}
