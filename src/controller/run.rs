//! `hangar controller`'s main loop, one step a function: connect and check the CRDs, serve
//! metrics, wait for leadership, build the shared context, then run the server, group and
//! discovery controllers with their background tasks until a signal.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::Value as Json;

use super::fence::Fence;
use super::metrics::{self, Metrics};
use super::scope::Scope;
use super::{
    ControllerArgs, Ctx, FIELD_MANAGER, HealthCheckKind, NoBackoff, RunError, discovery,
    error_policy, group, health, leader, merge, pipeline, refs_where, resource, server,
    source_type, write_counter,
};
use crate::apply::Applier;
use crate::connect::Connect;

pub async fn run(args: ControllerArgs) -> Result<(), RunError> {
    if args.exit_on_stdin_eof {
        exit_on_stdin_eof();
    }
    let metrics = Arc::new(Metrics::new());
    // Open until this process leads; then only until its renew deadline (see `fence`).
    let fence = Arc::new(Fence::open(metrics.fence_refused.clone()));
    let scope = Scope::new(&args.namespace);
    let client = connect(&args, &scope, &fence).await?;
    spawn_heartbeat(&metrics);
    serve_metrics(&args, &metrics).await?;
    // Only the leader runs the controllers; a follower serves /metrics and /healthz meanwhile.
    let connect = Connect {
        context: args.context.clone(),
    };
    let Ok(leadership) = leader::gate(&args.leader, &connect, &metrics, &fence).await else {
        return Ok(());
    };
    let ctx = context(&args, scope, &client, &metrics)?;
    let (servers_done, server_store) = servers(&args, &client, &ctx);
    let (groups_done, group_store) = groups(&args, &client, &ctx);
    spawn_readiness(&args, &server_store, &group_store, &metrics);
    spawn_forgetting(&server_store, &ctx);
    let discovery_done = discovery(&args, &client, &ctx, &metrics);
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

/// Exits when stdin closes (a test harness owns the process).
fn exit_on_stdin_eof() {
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

/// A client for the cluster, which must serve hangar's CRDs (asked where the controller may
/// list: a namespaced one may not list cluster-wide); fenced by `fence`.
async fn connect(
    args: &ControllerArgs,
    scope: &Scope,
    fence: &Arc<Fence>,
) -> Result<Client, RunError> {
    let c = Connect {
        context: args.context.clone(),
    };
    let throttle = super::throttle::ThrottleLayer::new(args.kube_api_qps, args.kube_api_burst);
    let client = super::fence::connect(&c, fence, args.leader.leader_elect, &throttle).await?;
    tracing::info!(
        qps = args.kube_api_qps,
        burst = args.kube_api_burst,
        concurrency = args.concurrency,
        probe_concurrency = args.probe_concurrency,
        "API client rate limit and concurrency"
    );
    tracing::info!(namespaces = %scope, "managing");
    let apis = scope.dynamic(&client, &resource(crate::api::Kind::Server));
    if let Some(api) = apis.first()
        && let Err(e) = api.list(&kube::api::ListParams::default().limit(1)).await
    {
        return Err(RunError::NoCrds(e.to_string()));
    }
    Ok(client)
}

/// Beats [`crate::controller::metrics::Liveness`] every second from this runtime: when every
/// worker is stuck it stops, `/healthz` fails and the leader gives its lease up.
fn spawn_heartbeat(metrics: &Arc<Metrics>) {
    let m = metrics.clone();
    m.liveness.beat();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            m.liveness.beat();
        }
    });
}

/// Serves /metrics, /healthz and /readyz in the background.
async fn serve_metrics(args: &ControllerArgs, metrics: &Arc<Metrics>) -> Result<(), RunError> {
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
    Ok(())
}

/// What every reconcile shares.
fn context(
    args: &ControllerArgs,
    scope: Scope,
    client: &Client,
    metrics: &Arc<Metrics>,
) -> Result<Arc<Ctx>, RunError> {
    let server_ar = resource(crate::api::Kind::Server);
    let group_ar = resource(crate::api::Kind::Group);
    // The controller supersedes `hangar apply` for the children it owns: an edit applied with
    // the CLI (which then leaves those children alone) lands instead of conflicting.
    let applier = Applier::new(client.clone(), FIELD_MANAGER, false)
        .superseding(&[crate::apply::FIELD_MANAGER])
        .with_write_counter(write_counter(metrics.clone()));
    let prober: Arc<dyn health::Prober> = match args.health_check {
        HealthCheckKind::Mcp => Arc::new(crate::probe::McpProber::new().map_err(RunError::Probe)?),
        HealthCheckKind::Tcp => Arc::new(health::TcpProber),
    };
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    Ok(Arc::new(Ctx {
        client: client.clone(),
        applier,
        metrics: metrics.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        server_ar: server_ar.clone(),
        group_ar: group_ar.clone(),
        probes: super::probes::Probes::new(
            prober,
            args.probe_concurrency,
            client.clone(),
            scope.clone(),
            server_ar.clone(),
            metrics.clone(),
        ),
        probe_services: args.probe_services,
        resync: args.resync,
        gateway_url: args.gateway_url.clone(),
        scope,
        swept: Mutex::new(HashSet::new()),
        tracked: Mutex::new(HashSet::new()),
        clock: k8s_openapi::jiff::Timestamp::now,
        applied: Default::default(),
        retries: super::retry::Retries::default(),
    }))
}

/// Lists are consistent reads (not "any" version from the watch cache): after an API server
/// restart its cache starts at a newer version, and a list answered with an older one makes
/// every following watch fail with 410 Gone, over and over.
fn wc() -> watcher::Config {
    watcher::Config::default().list_semantic(watcher::ListSemantic::MostRecent)
}

/// Every watch has a backoff of its own (one per namespace too, see [`merge`]). kube-runtime's
/// default puts one backoff on all of a controller's watches together, so after an API server
/// restart the errors of one (a 410 while it relists) paused every other for up to a minute and
/// new objects went unnoticed.
///
/// Each event also tells `applied` the version a child is at (or that it is gone), which is what
/// lets a reconcile skip the apply of an unchanged child.
fn owned(
    scope: &Scope,
    client: &Client,
    kind: &ApiResource,
    applied: &Arc<super::applied::AppliedCache>,
) -> impl futures::Stream<Item = Result<DynamicObject, watcher::Error>> + Send + 'static {
    let (cache, kind_name) = (applied.clone(), kind.kind.clone());
    let seen = move |ev: &watcher::Event<DynamicObject>| {
        let at = |o: &DynamicObject| {
            (
                o.metadata.namespace.clone().unwrap_or_default(),
                o.name_any(),
            )
        };
        match ev {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                let (ns, name) = at(o);
                cache.watched(
                    &kind_name,
                    &ns,
                    &name,
                    o.metadata.resource_version.as_deref(),
                );
            }
            watcher::Event::Delete(o) => {
                let (ns, name) = at(o);
                cache.watched(&kind_name, &ns, &name, None);
            }
            // A relist: what was deleted meanwhile must not look unchanged.
            watcher::Event::Init => cache.forget_kind(&kind_name),
            watcher::Event::InitDone => {}
        }
    };
    merge::touched_seen(scope.dynamic(client, kind), children_watch(), seen)
}

fn children_watch() -> watcher::Config {
    wc().labels("app.kubernetes.io/managed-by=hangar")
}

/// The MCPServer controller: woken by its servers and by every kind of child they own.
fn servers(
    args: &ControllerArgs,
    client: &Client,
    ctx: &Arc<Ctx>,
) -> (BoxFuture<'static, ()>, Store<DynamicObject>) {
    let scope = &ctx.scope;
    let ar = ctx.server_ar.clone();
    let (store, stream) = merge::reflected(scope, client, wc(), &ar);
    let stream = stream.applied_objects();
    let mut ctl = Controller::for_stream_with(stream, store.clone(), ar.clone())
        .with_config(ControllerConfig::default().concurrency(args.concurrency))
        .trigger_backoff(NoBackoff)
        .reconcile_on(retried_on_recovery(ctx, &store, &ar))
        .reconcile_on(ctx.probes.wakes());
    for kind in pipeline::child_kinds() {
        ctl = ctl.owns_stream_with(owned(scope, client, &kind, &ctx.applied), kind);
    }
    let done = ctl
        .shutdown_on_signal()
        .run(server::reconcile, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "server reconcile");
            }
        });
    (Box::pin(done), store)
}

/// The MCPServerGroup controller: woken by its groups, their Services, and any server of their
/// namespace.
fn groups(
    args: &ControllerArgs,
    client: &Client,
    ctx: &Arc<Ctx>,
) -> (BoxFuture<'static, ()>, Store<DynamicObject>) {
    let scope = &ctx.scope;
    let (gar, sar) = (ctx.group_ar.clone(), ctx.server_ar.clone());
    let (store, stream) = merge::reflected(scope, client, wc(), &gar);
    let stream = stream.applied_objects();
    let svc = ApiResource::erase::<Service>(&());
    let members = merge::touched(scope.dynamic(client, &sar), wc());
    let (gs, garc) = (store.clone(), gar.clone());
    let recovered = retried_on_recovery(ctx, &store, &gar);
    let done = Controller::for_stream_with(stream, store.clone(), gar)
        .with_config(ControllerConfig::default().concurrency(args.concurrency))
        .trigger_backoff(NoBackoff)
        .reconcile_on(recovered)
        .owns_stream_with(owned(scope, client, &svc, &ctx.applied), svc)
        .watches_stream_with(
            members,
            move |srv: DynamicObject| {
                let ns = srv.metadata.namespace.clone();
                gs.state()
                    .iter()
                    .filter(|g| g.metadata.namespace == ns)
                    .map(|g| {
                        let r = ObjectRef::new_with(&g.name_any(), garc.clone());
                        match &g.metadata.namespace {
                            Some(ns) => r.within(ns),
                            None => r,
                        }
                    })
                    .collect::<Vec<_>>()
            },
            sar,
        )
        .shutdown_on_signal()
        .run(group::reconcile, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "group reconcile");
            }
        });
    (Box::pin(done), store)
}

/// When an API server outage ends, the objects of `store` whose reconciles failed during it:
/// retried at once rather than at the end of their (by then long) backoff.
fn retried_on_recovery(
    ctx: &Arc<Ctx>,
    store: &Store<DynamicObject>,
    ar: &ApiResource,
) -> impl futures::Stream<Item = ObjectRef<DynamicObject>> + Send + 'static {
    let (c, s, ar) = (ctx.clone(), store.clone(), ar.clone());
    futures::stream::unfold(ctx.retries.recoveries(), |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    })
    .flat_map(move |()| {
        let failing = c.retries.failing();
        let refs: Vec<ObjectRef<DynamicObject>> = s
            .state()
            .iter()
            .filter(|o| o.metadata.uid.as_ref().is_some_and(|u| failing.contains(u)))
            .map(|o| ObjectRef::from_obj_with(o.as_ref(), ar.clone()))
            .collect();
        futures::stream::iter(refs)
    })
}

/// Ready once both caches hold a first full list.
fn spawn_readiness(
    args: &ControllerArgs,
    server_store: &Store<DynamicObject>,
    group_store: &Store<DynamicObject>,
    metrics: &Arc<Metrics>,
) {
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

/// Forgets the metric series of servers that are gone, and stops their health checks.
fn spawn_forgetting(server_store: &Store<DynamicObject>, ctx: &Arc<Ctx>) {
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
            c.probes.retain(&live);
        }
    });
}

/// Discovery: sources, re-read on their refresh interval and whenever what they read changes
/// (ConfigMaps, namespaces, Services) or a server they made is changed or deleted.
fn discovery(
    args: &ControllerArgs,
    client: &Client,
    ctx: &Arc<Ctx>,
    metrics: &Arc<Metrics>,
) -> BoxFuture<'static, ()> {
    let scope = &ctx.scope;
    let server_ar = ctx.server_ar.clone();
    let source_ar = resource(crate::api::Kind::DiscoverySource);
    let (source_store, source_stream) = merge::reflected(scope, client, wc(), &source_ar);
    let source_stream = source_stream.applied_objects();
    let (made_store, made_stream) = merge::reflected(
        scope,
        client,
        wc().labels(crate::compile::resolve::DISCOVERED_BY_LABEL),
        &server_ar,
    );
    let made_stream = made_stream.touched_objects();
    let git_dir = args
        .git_cache_dir
        .clone()
        .unwrap_or_else(crate::source::git::default_cache_dir);
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
    let ctl = discovery_watches(
        args,
        client,
        scope,
        &source_ar,
        source_store.clone(),
        source_stream,
        made_stream,
        &server_ar,
    );
    spawn_orphan_sweep(&dctx, &source_store);
    let run = ctl
        .reconcile_on(retried_on_recovery(ctx, &source_store, &source_ar))
        .shutdown_on_signal()
        .run(discovery::reconcile, error_policy, dctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "discovery reconcile");
            }
        });
    let enabled = args.discovery;
    Box::pin(async move {
        if enabled {
            run.await
        }
    })
}

/// What wakes a discovery source: the servers it made, ConfigMaps it reads, namespaces, and
/// annotated Services.
#[allow(clippy::too_many_arguments)]
fn discovery_watches(
    args: &ControllerArgs,
    client: &Client,
    scope: &Scope,
    source_ar: &ApiResource,
    source_store: Store<DynamicObject>,
    source_stream: impl futures::Stream<Item = Result<DynamicObject, watcher::Error>> + Send + 'static,
    made_stream: impl futures::Stream<Item = Result<DynamicObject, watcher::Error>> + Send + 'static,
    server_ar: &ApiResource,
) -> Controller<DynamicObject> {
    let cm_store = source_store.clone();
    let cm_ar = source_ar.clone();
    let ns_store = source_store.clone();
    let ns_ar = source_ar.clone();
    let svc_store = source_store.clone();
    let svc_ar = source_ar.clone();
    let made_ar = source_ar.clone();
    // Metadata only: what changed, not the contents (which the reconcile reads itself).
    use kube::core::PartialObjectMeta;
    let configmaps = merge::touched(
        scope.typed::<PartialObjectMeta<k8s_openapi::api::core::v1::ConfigMap>>(client),
        wc(),
    );
    let namespaces = watcher::watcher(
        Api::<PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>>::all(client.clone()),
        wc(),
    )
    .default_backoff()
    .touched_objects();
    let services = merge::touched(scope.typed::<PartialObjectMeta<Service>>(client), wc());
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
        })
}

/// What deleted sources made in other namespaces, once the sources' cache holds a full list.
fn spawn_orphan_sweep(dctx: &Arc<discovery::DiscoveryCtx>, source_store: &Store<DynamicObject>) {
    let (d, sources) = (dctx.clone(), source_store.clone());
    tokio::spawn(async move {
        // The store's readiness signal wakes one waiter only (the controller's): poll.
        loop {
            match tokio::time::timeout(Duration::from_millis(250), sources.wait_until_ready()).await
            {
                Ok(Ok(())) => break,
                Ok(Err(_)) => return,
                Err(_) => continue,
            }
        }
        loop {
            tokio::time::sleep(discovery::SWEEP_INTERVAL).await;
            match discovery::sweep_orphans(&d, &sources).await {
                // An outage is logged once, by the reconciles (see `retry`).
                Err(e) if super::retry::unreachable(&e) => {
                    tracing::debug!(error = %e, "sweeping what deleted discovery sources made");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sweeping what deleted discovery sources made")
                }
                Ok(_) => {}
            }
        }
    });
}
