//! `hangar controller`: reconciles MCPServer and MCPServerGroup with the same `compile` that
//! `hangar render` runs, applies the children with server-side apply and owner references, and
//! writes status (see [`state`]), Events and metrics.
//!
//! Resources are watched untyped and compiled from their JSON, so one resource that does not
//! deserialize (or does not compile) gets an error in its status and does not stop the others.

pub mod decide;
pub mod discovery;
/// The health-check seam lives with the probe; the controller uses it from there.
pub use crate::probe::health;
pub mod group;
pub mod leader;
pub mod metrics;
pub mod pipeline;
pub mod server;
pub mod state;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value as Json, json};

use crate::apply::Applier;
use crate::compile::{FileRole, InputFile, Inputs, SourceFile};
use crate::connect::{Connect, ConnectError};
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
    /// Watch one namespace only (default: all).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Reconciles running at once, per kind.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    /// Resync interval of Ready servers (drift is caught sooner through the watches).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub resync: Duration,
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
    pub prober: Arc<dyn health::Prober>,
    pub probe_services: bool,
    pub probe_slots: tokio::sync::Semaphore,
    pub resync: Duration,
    /// Servers reconciled since start (by uid): their orphaned children were looked for.
    pub swept: Mutex<HashSet<String>>,
    /// Servers that have metric series (namespace, name).
    pub tracked: Mutex<HashSet<(String, String)>>,
    pub clock: fn() -> k8s_openapi::jiff::Timestamp,
}

impl Ctx {
    pub async fn event(&self, obj: &DynamicObject, ar: &ApiResource, ev: Event) {
        let r = obj.object_ref(ar);
        if let Err(e) = self.recorder.publish(&ev, &r).await {
            tracing::warn!(error = %e, object = %obj.name_any(), "cannot publish event");
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
/// (`mcp_operator_reconcile_duration_seconds{kind}`). What went wrong is logged at info.
pub async fn measured(
    ctx: &Ctx,
    kind: &str,
    reconcile: impl std::future::Future<Output = Result<pipeline::Outcome, Error>>,
) -> Result<Action, Error> {
    let t0 = std::time::Instant::now();
    let r = reconcile.await;
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
    ctx.metrics
        .reconcile_duration
        .get_or_create(&metrics::KindLabels { kind: kind.into() })
        .observe(t0.elapsed().as_secs_f64());
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

pub fn resource(kind: crate::api::Kind) -> ApiResource {
    let plural = match kind {
        crate::api::Kind::Server => "mcpservers",
        crate::api::Kind::Group => "mcpservergroups",
        crate::api::Kind::DiscoverySource => "mcpdiscoverysources",
    };
    ApiResource {
        group: crate::api::GROUP.into(),
        version: crate::api::VERSION.into(),
        api_version: crate::api::API_VERSION.into(),
        kind: kind.name().into(),
        plural: plural.into(),
    }
}

/// Compiler input for one resource from the cluster: what a user would have written.
pub fn compile_input(obj: &DynamicObject, kind: &str) -> Inputs {
    let mut meta = serde_json::Map::new();
    meta.insert("name".into(), json!(obj.name_any()));
    if let Some(ns) = &obj.metadata.namespace {
        meta.insert("namespace".into(), json!(ns));
    }
    if let Some(l) = obj.metadata.labels.as_ref().filter(|l| !l.is_empty()) {
        meta.insert("labels".into(), json!(l));
    }
    if let Some(a) = obj.metadata.annotations.as_ref() {
        let a: serde_json::Map<String, Json> = a
            .iter()
            .filter(|(k, _)| !k.starts_with("kubectl.kubernetes.io/"))
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        if !a.is_empty() {
            meta.insert("annotations".into(), Json::Object(a));
        }
    }
    let mut doc = serde_json::Map::new();
    doc.insert("apiVersion".into(), json!(crate::api::API_VERSION));
    doc.insert("kind".into(), json!(kind));
    doc.insert("metadata".into(), Json::Object(meta));
    if let Some(spec) = obj.data.get("spec") {
        doc.insert("spec".into(), spec.clone());
    }
    let ns = obj
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let text = serde_json::to_string_pretty(&Json::Object(doc)).unwrap_or_default();
    Inputs {
        files: vec![InputFile {
            file: SourceFile::new(format!("{kind}/{ns}/{}", obj.name_any()), text),
            role: FileRole::Inputs,
        }],
        default_namespace: ns,
    }
}

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

/// Every controller's (servers, groups, discovery): log, retry in 5 s.
fn error_policy<C>(_obj: Arc<DynamicObject>, err: &Error, _ctx: Arc<C>) -> Action {
    tracing::warn!(error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// `hangar controller`: runs until a signal (or stdin EOF with `--exit-on-stdin-eof`).
/// The exit code is 2 when the controller stops on an error (printed); the error returned is
/// one before it could start (no async runtime).
pub fn main(args: ControllerArgs) -> Result<u8, RunError> {
    let rt = crate::connect::runtime()?;
    match rt.block_on(run(args)) {
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

pub async fn run(args: ControllerArgs) -> Result<(), RunError> {
    if args.exit_on_stdin_eof {
        tokio::spawn(async {
            use tokio::io::AsyncReadExt;
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            while let Ok(n) = stdin.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            tracing::info!("stdin closed; exiting");
            std::process::exit(0);
        });
    }
    let client = crate::connect::client(&Connect {
        context: args.context.clone(),
    })
    .await?;
    let server_ar = resource(crate::api::Kind::Server);
    let group_ar = resource(crate::api::Kind::Group);
    let probe_api: Api<DynamicObject> = Api::all_with(client.clone(), &server_ar);
    if let Err(e) = probe_api
        .list(&kube::api::ListParams::default().limit(1))
        .await
    {
        return Err(RunError::NoCrds(e.to_string()));
    }

    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| RunError::Metrics {
            addr: args.metrics_addr,
            source: e,
        })?;
    let bound = listener.local_addr().unwrap_or(args.metrics_addr);
    tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
    eprintln!("hangar controller: metrics on http://{bound}/metrics");
    {
        let m = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics::serve_listener(listener, m).await {
                tracing::error!(error = %e, "metrics endpoint stopped");
            }
        });
    }

    // Only the leader runs the controllers; a follower serves /metrics and /healthz meanwhile.
    let connect = Connect {
        context: args.context.clone(),
    };
    let Ok(leadership) = leader::gate(&args.leader, &connect, &metrics).await else {
        return Ok(());
    };

    // The controller supersedes `hangar apply` for the children it owns: an edit applied with
    // the CLI (which then leaves those children alone) lands instead of conflicting.
    let applier = Applier::new(client.clone(), FIELD_MANAGER, false)
        .superseding(&[crate::apply::FIELD_MANAGER])
        .with_write_counter(write_counter(metrics.clone()));
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        applier,
        metrics: metrics.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        server_ar: server_ar.clone(),
        group_ar: group_ar.clone(),
        prober: match args.health_check {
            HealthCheckKind::Mcp => {
                Arc::new(crate::probe::McpProber::new().map_err(RunError::Probe)?)
            }
            HealthCheckKind::Tcp => Arc::new(health::TcpProber),
        },
        probe_services: args.probe_services,
        probe_slots: tokio::sync::Semaphore::new(args.probe_concurrency.max(1)),
        resync: args.resync,
        swept: Mutex::new(HashSet::new()),
        tracked: Mutex::new(HashSet::new()),
        clock: k8s_openapi::jiff::Timestamp::now,
    });

    let (servers, groups): (Api<DynamicObject>, Api<DynamicObject>) = match &args.namespace {
        Some(ns) => (
            Api::namespaced_with(client.clone(), ns, &server_ar),
            Api::namespaced_with(client.clone(), ns, &group_ar),
        ),
        None => (
            Api::all_with(client.clone(), &server_ar),
            Api::all_with(client.clone(), &group_ar),
        ),
    };
    fn typed<K>(c: &Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match ns {
            Some(ns) => Api::namespaced(c.clone(), ns),
            None => Api::all(c.clone()),
        }
    }
    let ns = args.namespace.clone();
    // Lists are consistent reads (not "any" version from the watch cache): after an API server
    // restart its cache starts at a newer version, and a list answered with an older one makes
    // every following watch fail with 410 Gone, over and over.
    let wc = || watcher::Config::default().list_semantic(watcher::ListSemantic::MostRecent);
    let children = wc().labels("app.kubernetes.io/managed-by=hangar");
    let config = ControllerConfig::default().concurrency(args.concurrency);

    // Every watch has a backoff of its own. kube-runtime's default puts one backoff on all of a
    // controller's watches together, so after an API server restart the errors of one (a 410
    // while it relists) paused every other for up to a minute and new objects went unnoticed.
    fn owned<K>(
        api: Api<K>,
        wc: watcher::Config,
    ) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
    where
        K: Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
    {
        watcher::watcher(api, wc)
            .default_backoff()
            .touched_objects()
    }
    let server_writer = kube::runtime::reflector::store::Writer::new(server_ar.clone());
    let server_store = server_writer.as_reader();
    let server_stream = watcher::watcher(servers.clone(), wc())
        .default_backoff()
        .reflect(server_writer)
        .applied_objects();
    let server_ctl =
        Controller::for_stream_with(server_stream, server_store.clone(), server_ar.clone())
            .with_config(config.clone())
            .trigger_backoff(NoBackoff)
            .owns_stream(owned(typed::<Deployment>(&client, &ns), children.clone()))
            .owns_stream(owned(typed::<Service>(&client, &ns), children.clone()))
            .owns_stream(owned(
                typed::<ServiceAccount>(&client, &ns),
                children.clone(),
            ))
            .owns_stream(owned(
                typed::<NetworkPolicy>(&client, &ns),
                children.clone(),
            ))
            .owns_stream(owned(
                typed::<HorizontalPodAutoscaler>(&client, &ns),
                children.clone(),
            ))
            .owns_stream(owned(
                typed::<PodDisruptionBudget>(&client, &ns),
                children.clone(),
            ));

    let group_writer = kube::runtime::reflector::store::Writer::new(group_ar.clone());
    let group_store = group_writer.as_reader();
    let group_stream = watcher::watcher(groups, wc())
        .default_backoff()
        .reflect(group_writer)
        .applied_objects();
    let group_ctl =
        Controller::for_stream_with(group_stream, group_store.clone(), group_ar.clone())
            .with_config(config)
            .trigger_backoff(NoBackoff)
            .owns_stream(owned(typed::<Service>(&client, &ns), children.clone()));
    let group_ctl = {
        let gs = group_store.clone();
        let gar = group_ar.clone();
        let member_events = watcher::watcher(servers, wc())
            .default_backoff()
            .touched_objects();
        group_ctl.watches_stream_with(
            member_events,
            move |srv: DynamicObject| {
                let ns = srv.metadata.namespace.clone();
                gs.state()
                    .iter()
                    .filter(|g| g.metadata.namespace == ns)
                    .map(|g| {
                        let r = ObjectRef::new_with(&g.name_any(), gar.clone());
                        match &g.metadata.namespace {
                            Some(ns) => r.within(ns),
                            None => r,
                        }
                    })
                    .collect::<Vec<_>>()
            },
            server_ar.clone(),
        )
    };

    // Ready once both caches hold a first full list.
    {
        let (ss, gs, m) = (server_store.clone(), group_store.clone(), metrics.clone());
        // Without the server and group controllers nothing fills those caches: ready at once.
        let wait = args.reconcile_servers;
        // The stores' readiness signal wakes one waiter only (the controller's own), so poll it.
        tokio::spawn(async move {
            let synced = async |s: &kube::runtime::reflector::Store<DynamicObject>| loop {
                match tokio::time::timeout(Duration::from_millis(250), s.wait_until_ready()).await {
                    Ok(r) => return r.is_ok(),
                    Err(_) => continue,
                }
            };
            if !wait || (synced(&ss).await && synced(&gs).await) {
                m.ready.store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::info!("caches synced; ready");
            }
        });
    }
    // Forget metric series of servers that are gone.
    {
        let (ss, c) = (server_store.clone(), ctx.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(15)).await;
                let live: HashSet<(String, String)> = ss
                    .state()
                    .iter()
                    .map(|o| (o.namespace().unwrap_or_default(), o.name_any()))
                    .collect();
                let gone: Vec<(String, String)> = match c.tracked.lock() {
                    Ok(mut t) => {
                        let gone = t.difference(&live).cloned().collect::<Vec<_>>();
                        t.retain(|k| live.contains(k));
                        gone
                    }
                    Err(_) => Vec::new(),
                };
                for (ns, name) in gone {
                    c.metrics.forget(&ns, &name);
                }
            }
        });
    }

    // Discovery: sources, re-read on their refresh interval and whenever what they read changes
    // (ConfigMaps, namespaces, Services) or a server they made is changed or deleted.
    let discovery_done = {
        let source_ar = resource(crate::api::Kind::DiscoverySource);
        let sources_api: Api<DynamicObject> = match &ns {
            Some(n) => Api::namespaced_with(client.clone(), n, &source_ar),
            None => Api::all_with(client.clone(), &source_ar),
        };
        let made_api: Api<DynamicObject> = match &ns {
            Some(n) => Api::namespaced_with(client.clone(), n, &server_ar),
            None => Api::all_with(client.clone(), &server_ar),
        };
        let source_writer = kube::runtime::reflector::store::Writer::new(source_ar.clone());
        let source_store = source_writer.as_reader();
        let source_stream = watcher::watcher(sources_api, wc())
            .default_backoff()
            .reflect(source_writer)
            .applied_objects();
        let made_writer = kube::runtime::reflector::store::Writer::new(server_ar.clone());
        let made_store = made_writer.as_reader();
        let made_stream = watcher::watcher(
            made_api,
            wc().labels(crate::compile::resolve::DISCOVERED_BY_LABEL),
        )
        .default_backoff()
        .reflect(made_writer)
        .touched_objects();
        let git_dir = args.git_cache_dir.clone().unwrap_or_else(default_git_cache);
        let dctx = Arc::new(discovery::DiscoveryCtx {
            base: ctx.clone(),
            applier: Applier::new(client.clone(), discovery::FIELD_MANAGER, true)
                .with_write_counter(write_counter(metrics.clone())),
            source_ar: source_ar.clone(),
            servers: made_store,
            git: Some(Arc::new(crate::source::git::GitCache::new(
                git_dir,
                args.git_cache_max_bytes,
            ))),
        });
        let cm_store = source_store.clone();
        let cm_ar = source_ar.clone();
        let ns_store = source_store.clone();
        let ns_ar = source_ar.clone();
        let svc_store = source_store.clone();
        let svc_ar = source_ar.clone();
        let made_ar = source_ar.clone();
        // Metadata only: what changed, not the contents (which the reconcile reads itself).
        use kube::core::PartialObjectMeta;
        let configmaps = watcher::watcher(
            typed::<PartialObjectMeta<k8s_openapi::api::core::v1::ConfigMap>>(&client, &ns),
            wc(),
        )
        .default_backoff()
        .touched_objects();
        let namespaces = watcher::watcher(
            Api::<PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>>::all(client.clone()),
            wc(),
        )
        .default_backoff()
        .touched_objects();
        let services = watcher::watcher(typed::<PartialObjectMeta<Service>>(&client, &ns), wc())
            .default_backoff()
            .touched_objects();
        let ctl =
            Controller::for_stream_with(source_stream, source_store.clone(), source_ar.clone())
                .with_config(ControllerConfig::default().concurrency(args.concurrency.clamp(1, 4)))
                .trigger_backoff(NoBackoff)
                .watches_stream_with(
                    made_stream,
                    move |srv: DynamicObject| {
                        let l = srv.labels();
                        let (Some(name), Some(sns)) = (
                            l.get(crate::compile::resolve::DISCOVERED_BY_LABEL),
                            l.get(crate::compile::resolve::DISCOVERED_BY_NAMESPACE_LABEL),
                        ) else {
                            return Vec::new();
                        };
                        vec![ObjectRef::new_with(name, made_ar.clone()).within(sns)]
                    },
                    server_ar.clone(),
                )
                .watches_stream(configmaps, move |cm| {
                    let (cns, cname) = (cm.namespace().unwrap_or_default(), cm.name_any());
                    let catalog = cm
                        .labels()
                        .get(crate::source::cluster::CATALOG_LABEL)
                        .is_some_and(|v| v == "true");
                    refs_where(&cm_store, &cm_ar, |s| match source_type(s).as_deref() {
                        Some("ConfigMap") => {
                            let r = s.data.pointer("/spec/configMapRef");
                            let rn = r.and_then(|r| r.get("name")).and_then(Json::as_str);
                            let rns = r
                                .and_then(|r| r.get("namespace"))
                                .and_then(Json::as_str)
                                .map(str::to_string)
                                .or_else(|| s.namespace());
                            rn == Some(cname.as_str()) && rns.as_deref() == Some(cns.as_str())
                        }
                        Some("Namespace") => catalog,
                        _ => false,
                    })
                })
                .watches_stream(namespaces, move |_n| {
                    refs_where(&ns_store, &ns_ar, |s| {
                        matches!(source_type(s).as_deref(), Some("Namespace"))
                            || (matches!(source_type(s).as_deref(), Some("Annotations"))
                                && s.data.pointer("/spec/namespaceSelector").is_some())
                    })
                })
                .watches_stream(services, move |_svc| {
                    refs_where(&svc_store, &svc_ar, |s| {
                        matches!(source_type(s).as_deref(), Some("Annotations"))
                    })
                });
        // What deleted sources made in other namespaces, once both caches hold a full list.
        {
            let (d, sources) = (dctx.clone(), source_store.clone());
            tokio::spawn(async move {
                // The store's readiness signal wakes one waiter only (the controller's): poll.
                loop {
                    match tokio::time::timeout(
                        Duration::from_millis(250),
                        sources.wait_until_ready(),
                    )
                    .await
                    {
                        Ok(Ok(())) => break,
                        Ok(Err(_)) => return,
                        Err(_) => continue,
                    }
                }
                loop {
                    tokio::time::sleep(discovery::SWEEP_INTERVAL).await;
                    if let Err(e) = discovery::sweep_orphans(&d, &sources).await {
                        tracing::warn!(error = %e, "sweeping what deleted discovery sources made");
                    }
                }
            });
        }
        let run = ctl
            .shutdown_on_signal()
            .run(discovery::reconcile, error_policy, dctx)
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "discovery reconcile");
                }
            });
        let enabled = args.discovery;
        async move {
            if enabled {
                run.await
            }
        }
    };

    let server_ctx = ctx.clone();
    let servers_done = server_ctl
        .shutdown_on_signal()
        .run(server::reconcile, error_policy, server_ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "server reconcile");
            }
        });
    let groups_done = group_ctl
        .shutdown_on_signal()
        .run(group::reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "group reconcile");
            }
        });
    let reconcile_servers = args.reconcile_servers;
    let servers_and_groups = async move {
        if reconcile_servers {
            futures::join!(servers_done, groups_done);
        }
    };
    futures::join!(servers_and_groups, discovery_done);
    if let Some(l) = leadership {
        l.release().await;
    }
    Ok(())
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

fn default_git_cache() -> std::path::PathBuf {
    crate::source::git::default_cache_dir()
}
