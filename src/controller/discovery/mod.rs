//! Reconciling one MCPDiscoverySource: read the source (a ConfigMap, the catalog ConfigMaps of
//! matching namespaces, annotated Services, or a Git repository) -> compile it with the same
//! compiler as `hangar render` (catalog entries isolated: a bad one is reported with its location
//! and skipped alone) -> server-side apply the MCPServers it yields (and, from Git, the
//! MCPServerGroups and MCPDiscoverySources of the repository) -> in `Authoritative` mode delete
//! what this source created and no longer yields -> status, Events.
//!
//! Safety rules:
//! - A source that cannot be read (missing ConfigMap, unreachable Git remote, bad credentials,
//!   missing ref) changes nothing in the cluster: the last good state stays applied.
//! - Only objects carrying this source's labels (`mcp-hangar.io/discovered-by` and
//!   `mcp-hangar.io/discovered-by-namespace`) are ever updated or deleted; an existing object of
//!   the same name without them is reported, never taken over.
//! - An entry that fails to compile keeps whatever it had made before (it is not pruned).
//! - What a deleted source made goes with it: by owner reference in its own namespace, by
//!   [`sweep_orphans`] elsewhere.
//! - Steady state costs no API writes: generated servers are compared with a watch cache, and
//!   status is written only when it changes (so `lastSyncTime` is the last sync that changed
//!   something; `hangar_discovery_last_sync_timestamp_seconds` is the liveness signal).
//!
//! As a pipeline (see [`super::pipeline`]): compiled (the source's own spec) -> read (the source
//! I/O, then its catalog compiled) -> decide (pure, in [`decide`]: the desired set, what to write
//! and delete) -> apply -> status (decided too; written only when it changed), Events, metrics.

pub mod decide;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{Value as Json, json};

use super::pipeline::{self, Category, InvalidSpec, Outcome, StatusError, write_status_json};
use super::state;
use super::{Ctx, Error, compile_input, event, event_of};
use crate::api::Kind;
use crate::api::discovery::{
    DiscoveryMode, MCPDiscoverySourceSpec, MCPDiscoverySourceStatus, SourceType,
};
use crate::apply::{Applier, ApplyError, ObjectKey};
use crate::compile::Bundle;
use crate::compile::isolate::{Isolated, Skipped, compile_isolated};
use crate::compile::resolve::{DISCOVERED_BY_LABEL, DISCOVERED_BY_NAMESPACE_LABEL};
use crate::compile::settings::SourceSettings;
use crate::source::cluster::{self, SourceError, SourceRead};
use decide::{Applied, Held, Plan, PlanInput, SyncDecision, SyncInput, Write};
pub use decide::{MAX_LISTED, glob, is_ours};

/// Field manager of the objects discovery applies (the server controller's is another, so the
/// two never contend for fields).
pub const FIELD_MANAGER: &str = "hangar-discovery";
/// How often objects whose discovery source is gone are looked for (see [`sweep_orphans`]).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// Applies running at once within one sync.
const APPLY_CONCURRENCY: usize = 16;

/// What discovery shares across reconciles.
pub struct DiscoveryCtx {
    pub base: Arc<Ctx>,
    pub applier: Applier,
    pub source_ar: ApiResource,
    /// MCPServers carrying `mcp-hangar.io/discovered-by` (a watch cache).
    pub servers: Store<DynamicObject>,
    /// Where Git sources are fetched to (None: Git sources are reported as unsupported).
    pub git: Option<Arc<crate::source::git::GitCache>>,
}

impl AsRef<Ctx> for DiscoveryCtx {
    fn as_ref(&self) -> &Ctx {
        &self.base
    }
}

pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<DiscoveryCtx>) -> Result<Action, Error> {
    super::measured(
        &ctx.base,
        "MCPDiscoverySource",
        &obj,
        reconcile_source(&obj, &ctx),
    )
    .await
}

fn labels_of_source(name: &str, ns: &str) -> String {
    format!("{DISCOVERED_BY_LABEL}={name},{DISCOVERED_BY_NAMESPACE_LABEL}={ns}")
}

/// compiled -> read -> decide -> apply -> status.
async fn reconcile_source(obj: &DynamicObject, ctx: &DiscoveryCtx) -> Result<Outcome, Error> {
    if obj.metadata.deletion_timestamp.is_some() {
        return Ok(Outcome::ok(Action::await_change()));
    }
    if let Some(why) = ctx.base.scope.refusal(&obj.namespace().unwrap_or_default()) {
        return Ok(report_invalid(ctx, obj, &InvalidSpec::not_managed(why)).await?);
    }
    let prev: MCPDiscoverySourceStatus = state::prev_status(obj);
    // 1. compiled
    let compiled = match pipeline::compiled(obj, Kind::DiscoverySource).await {
        Ok(c) => c,
        Err(invalid) => return Ok(report_invalid(ctx, obj, &invalid).await?),
    };
    let Some(source) = compiled.decided.sources.get(&compiled.key) else {
        return Ok(Outcome::ok(Action::requeue(ctx.base.resync)));
    };
    let (ns, name) = (compiled.key.0.as_str(), compiled.key.1.as_str());
    let refresh = source.refresh_interval;
    if source.paused {
        let held = Held {
            reason: "Paused",
            message: "spec.paused is true: nothing is read, applied or deleted".into(),
            error: None,
        };
        hold(ctx, obj, &prev, held, None).await?;
        return Ok(Outcome::ok(Action::requeue(refresh)));
    }
    // 2. read
    let t0 = Instant::now();
    let catalog = match read(ctx, obj, ns, name, source).await {
        Ok(c) => c,
        Err(stop) => return stopped(ctx, obj, &prev, stop, refresh).await,
    };
    let existing = existing(ctx, name, ns, source).await?;
    // 3. decide
    let skipped: BTreeSet<String> = catalog
        .skipped
        .iter()
        .filter_map(|s| s.name.clone())
        .collect();
    let cached = |k: &ObjectKey| cached_server(ctx, k);
    let plan = decide::plan(&PlanInput {
        name,
        ns,
        uid: obj.metadata.uid.as_deref(),
        settings: source,
        objects: &catalog.bundle.objects,
        skipped: &skipped,
        existing: &existing,
        cached: &cached,
    });
    // 4. apply
    let applied = apply(ctx, name, ns, &plan).await;
    // 5. status
    let decision = decide::sync_status(&SyncInput {
        prev: &prev,
        ns,
        generation: obj.metadata.generation,
        plan: &plan,
        skipped: &catalog.skipped,
        revision: &catalog.revision,
        applied: &applied,
        managed: managed(ctx, name, ns),
        now: (ctx.base.clock)(),
        elapsed: t0.elapsed(),
        refresh,
        requested: requested_at(obj),
    });
    report(ctx, obj, &decision).await?;
    ctx.base.metrics.discovery_synced(ns, name, true);
    Ok(Outcome::with(applied.category, Action::requeue(refresh)))
}

/// Step 1 failed: the one InvalidSpec writer, with what a held sync sets of discovery's own
/// status: Ready alone (a source has no Reconciled condition) and `lastSyncError`.
async fn report_invalid(
    ctx: &DiscoveryCtx,
    obj: &DynamicObject,
    invalid: &InvalidSpec,
) -> Result<Outcome, StatusError> {
    let message = invalid.message.clone();
    invalid
        .report(&ctx.base, obj, &ctx.source_ar, move |s| {
            if let Some(Json::Array(conditions)) = s.get_mut("conditions") {
                conditions.retain(|c| c.get("type").and_then(Json::as_str) == Some(state::READY));
            }
            s.insert("lastSyncError".into(), json!(message));
        })
        .await
}

/// What a source read, compiled: the bundle of what compiled, and the entries that did not.
struct Catalog {
    revision: String,
    bundle: Bundle,
    skipped: Vec<Skipped>,
}

/// Why a sync stopped before deciding anything.
enum Stop {
    /// The source cannot be read (missing ConfigMap, unreachable remote, missing ref...).
    Unreadable(SourceError),
    /// What it read does not compile.
    InvalidContent { revision: String, report: String },
    /// The compile task did not finish (logged; tried again later).
    CompileTask,
}

/// Step 2: the source I/O, then what it read compiled with the same compiler as `hangar render`
/// (entries isolated: a bad one is skipped alone).
async fn read(
    ctx: &DiscoveryCtx,
    obj: &DynamicObject,
    ns: &str,
    name: &str,
    source: &SourceSettings,
) -> Result<Catalog, Stop> {
    let bind = format!("{ns}/{name}");
    let read = read_source(ctx, ns, &bind, &source.spec)
        .await
        .map_err(Stop::Unreadable)?;
    let mut inputs = compile_input(obj, Kind::DiscoverySource.name());
    inputs.files.extend(read.files);
    // A large catalog takes a while to compile: off the async workers, so timers (the leader
    // lease's renewals among them) and other reconciles are not held up.
    let Isolated {
        compilation,
        skipped,
        report,
    } = match tokio::task::spawn_blocking(move || compile_isolated(&inputs)).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, source = %name, "compile task failed");
            return Err(Stop::CompileTask);
        }
    };
    match compilation.bundle {
        Some(bundle) => Ok(Catalog {
            revision: read.revision,
            bundle,
            skipped,
        }),
        None => Err(Stop::InvalidContent {
            revision: read.revision,
            report,
        }),
    }
}

/// Status (and a Warning Event) for a sync that stopped at step 2: nothing in the cluster
/// changes, the last good state stays applied.
async fn stopped(
    ctx: &DiscoveryCtx,
    obj: &DynamicObject,
    prev: &MCPDiscoverySourceStatus,
    stop: Stop,
    refresh: Duration,
) -> Result<Outcome, Error> {
    let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    let (held, category, requeue) = match stop {
        Stop::CompileTask => return Ok(Outcome::ok(Action::requeue(refresh))),
        Stop::Unreadable(e) => {
            let msg = state::truncate(&e.to_string(), 2000);
            tracing::info!(namespace = %ns, name = %name, reason = e.reason(), "discovery source cannot be read: {msg}");
            let category = match e {
                SourceError::Invalid(_) => Category::InvalidSpec,
                _ => Category::Ok,
            };
            let held = Held {
                reason: e.reason(),
                message: format!("{msg}; nothing was changed, the last good state stays applied"),
                error: Some(msg),
            };
            (held, category, refresh.min(Duration::from_secs(30)))
        }
        Stop::InvalidContent { revision, report } => {
            tracing::info!(namespace = %ns, name = %name, reason = "InvalidContent", %revision, "discovery source content does not compile: {}", report.trim().lines().next().unwrap_or_default());
            let held = Held {
                reason: "InvalidContent",
                message: format!(
                    "revision {revision} does not compile; nothing was changed, the last good state stays applied"
                ),
                error: Some(state::truncate(report.trim(), 4000)),
            };
            (held, Category::Ok, refresh)
        }
    };
    hold(ctx, obj, prev, held, requested_at(obj)).await?;
    ctx.base.metrics.discovery_synced(&ns, &name, false);
    Ok(Outcome::with(category, Action::requeue(requeue)))
}

/// Status (and a Warning Event) for a sync that changed nothing in the cluster; written only when
/// it differs from what status says already.
async fn hold(
    ctx: &DiscoveryCtx,
    obj: &DynamicObject,
    prev: &MCPDiscoverySourceStatus,
    held: Held,
    requested: Option<&str>,
) -> Result<(), StatusError> {
    let generation = obj.metadata.generation;
    let now = (ctx.base.clock)();
    let Some(s) = decide::held_status(prev, &held, generation, now, requested) else {
        return Ok(());
    };
    write_status(ctx, obj, &s).await?;
    if let Some(note) = &held.error {
        ctx.base
            .event(obj, &ctx.source_ar, event(true, held.reason, note))
            .await;
    }
    Ok(())
}

/// The `mcp-hangar.io/requested-at` annotation: a sync asked for now. Any change to the source
/// wakes its reconcile (no generation filter), so setting it is enough to sync at once.
fn requested_at(obj: &DynamicObject) -> Option<&str> {
    obj.metadata
        .annotations
        .as_ref()?
        .get(crate::api::discovery::REQUESTED_AT_ANNOTATION)
        .map(String::as_str)
}

/// What this source made that exists now, for Authoritative mode to delete from (nothing is
/// read in Additive mode).
async fn existing(
    ctx: &DiscoveryCtx,
    name: &str,
    ns: &str,
    source: &SourceSettings,
) -> Result<Vec<(String, Arc<DynamicObject>)>, Error> {
    if source.mode != DiscoveryMode::Authoritative {
        return Ok(Vec::new());
    }
    owned_objects(ctx, name, ns, source.type_ == SourceType::Git).await
}

/// A discovered MCPServer in the watch cache.
fn cached_server(ctx: &DiscoveryCtx, k: &ObjectKey) -> Option<Arc<DynamicObject>> {
    let r = ObjectRef::new_with(&k.name, ctx.base.server_ar.clone())
        .within(k.namespace.as_deref().unwrap_or_default());
    ctx.servers.get(&r)
}

/// The MCPServers the watch cache shows as this source's.
fn managed(ctx: &DiscoveryCtx, name: &str, ns: &str) -> usize {
    ctx.servers
        .state()
        .iter()
        .filter(|s| is_ours(s, name, ns))
        .map(|s| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()))
        .collect::<BTreeSet<String>>()
        .len()
}

/// Step 4: sends the plan's writes (a few at once), then its deletions; every failure is kept
/// with its category, none stops the others.
async fn apply(ctx: &DiscoveryCtx, name: &str, ns: &str, plan: &Plan) -> Applied {
    let mut applied = Applied::default();
    for (id, (category, why)) in &plan.refused {
        applied.failed(id.clone(), *category, why.clone());
    }
    for chunk in plan.writes.chunks(APPLY_CONCURRENCY) {
        let done =
            futures::future::join_all(chunk.iter().map(|w| apply_one(ctx, w, name, ns))).await;
        for (w, answer) in chunk.iter().zip(done) {
            match answer {
                Ok(crate::apply::Action::Create) => applied.created += 1,
                Ok(crate::apply::Action::Unchanged) => {}
                Ok(_) => applied.updated += 1,
                Err((category, e)) => {
                    let id = ObjectKey::of(&w.body).map(|k| k.id()).unwrap_or_default();
                    applied.failed(id, category, e);
                }
            }
        }
    }
    for k in &plan.deletes {
        match ctx.applier.delete(k, false).await {
            Ok(()) => {
                tracing::info!(object = %k.id(), source = %format!("{ns}/{name}"), "deleted: the Authoritative discovery source no longer yields it");
                applied.deleted += 1;
            }
            Err(e) => applied.failed(k.id(), category_of(&e), e.to_string()),
        }
    }
    if applied.deleted > 0 {
        ctx.base
            .metrics
            .discovery_deleted(ns, name, applied.deleted as u64);
    }
    applied
}

fn category_of(e: &ApplyError) -> Category {
    if e.is_conflict() {
        Category::Conflict
    } else {
        Category::ApplyFailed
    }
}

/// Applies one object; one the cache did not show as this source's is read first, and never
/// taken over when it exists without this source's labels.
async fn apply_one(
    ctx: &DiscoveryCtx,
    w: &Write,
    name: &str,
    ns: &str,
) -> Result<crate::apply::Action, (Category, String)> {
    // What lands outside the scope is refused here, not by RBAC's 403.
    let target = w.body.pointer("/metadata/namespace").and_then(Json::as_str);
    if let Some(why) = target.and_then(|t| ctx.base.scope.refusal(t)) {
        return Err((Category::ApplyFailed, why));
    }
    if !w.checked {
        let Some(key) = ObjectKey::of(&w.body) else {
            let why = "object without apiVersion/kind/name";
            return Err((Category::ApplyFailed, why.into()));
        };
        match ctx.applier.get(&key).await {
            Ok(Some(live)) => {
                let l = |k: &str| {
                    live.pointer(&format!("/metadata/labels/{}", k.replace('/', "~1")))
                        .and_then(Json::as_str)
                        .map(str::to_string)
                };
                if l(DISCOVERED_BY_LABEL).as_deref() != Some(name)
                    || l(DISCOVERED_BY_NAMESPACE_LABEL).as_deref() != Some(ns)
                {
                    return Err((
                        Category::Conflict,
                        format!(
                            "{} exists and was not created by this discovery source; it is left alone",
                            key.id()
                        ),
                    ));
                }
            }
            Ok(None) => {}
            Err(e) => return Err((category_of(&e), e.to_string())),
        }
    }
    match ctx.applier.apply(&w.body, false).await {
        Ok(c) => Ok(c.action),
        Err(e) => Err((category_of(&e), e.to_string())),
    }
}

/// Step 5: the decided status, written with its Events when it changed.
async fn report(
    ctx: &DiscoveryCtx,
    obj: &DynamicObject,
    d: &SyncDecision,
) -> Result<(), StatusError> {
    if !d.write {
        return Ok(());
    }
    write_status(ctx, obj, &d.status).await?;
    // One Event per revision: the recorder folds Events with the same reason and action, so the
    // revision is the action (a series of `Synced` then names each revision it was).
    let revision = d.status.revision.as_deref().unwrap_or("none");
    let action = format!("Sync@{}", revision.get(..12).unwrap_or(revision));
    for (warning, reason, note) in &d.events {
        ctx.base
            .event(
                obj,
                &ctx.source_ar,
                event_of(*warning, reason, &action, note),
            )
            .await;
    }
    Ok(())
}

async fn read_source(
    ctx: &DiscoveryCtx,
    ns: &str,
    bind: &str,
    spec: &MCPDiscoverySourceSpec,
) -> Result<SourceRead, SourceError> {
    let (client, scope) = (&ctx.base.client, &ctx.base.scope);
    match spec.type_ {
        SourceType::ConfigMap => cluster::read_configmap(client, scope, ns, bind, spec).await,
        SourceType::Namespace => cluster::read_namespaces(client, scope, bind, spec).await,
        SourceType::Annotations => {
            cluster::read_annotated_services(client, scope, ns, bind, spec).await
        }
        SourceType::Git => read_git(ctx, ns, bind, spec).await,
        SourceType::ServiceDiscovery => Err(SourceError::Unsupported("ServiceDiscovery")),
    }
}

async fn read_git(
    ctx: &DiscoveryCtx,
    ns: &str,
    bind: &str,
    spec: &MCPDiscoverySourceSpec,
) -> Result<SourceRead, SourceError> {
    use crate::source::git::{self, GitAuth, GitRequest};
    let Some(cache) = ctx.git.clone() else {
        return Err(SourceError::Unsupported("Git (no --git-cache-dir)"));
    };
    let g = spec
        .git
        .clone()
        .ok_or_else(|| SourceError::Invalid("type Git needs git".into()))?;
    let auth = match &g.secret_ref {
        None => GitAuth::None,
        Some(r) => {
            let api: Api<k8s_openapi::api::core::v1::Secret> =
                Api::namespaced(ctx.base.client.clone(), ns);
            let found = api.get_opt(&r.name).await.map_err(|e| {
                if super::scope::is_forbidden(&e) {
                    let why = ctx.base.scope.secret_forbidden(ns, &r.name);
                    SourceError::Git(format!("git.secretRef: {why}"), "SecretForbidden")
                } else {
                    SourceError::Kube(e)
                }
            })?;
            let secret = found.ok_or_else(|| {
                SourceError::Git(
                    format!("Secret {ns}/{} (git.secretRef) not found", r.name),
                    "SecretMissing",
                )
            })?;
            let data: BTreeMap<String, Vec<u8>> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            git::auth_from_secret_data(&data)
                .map_err(|e| SourceError::Git(e.to_string(), e.reason()))?
        }
    };
    let req = GitRequest::from_source(&g, auth);
    let checkout = tokio::task::spawn_blocking(move || cache.fetch(&req))
        .await
        .map_err(|e| SourceError::Git(format!("fetch task failed: {e}"), "FetchFailed"))?
        .map_err(|e| SourceError::Git(e.to_string(), e.reason()))?;
    // Catalog files bind to this source; the rest are resources (GitOps).
    let files = git::repo_inputs(checkout.files, bind);
    Ok(SourceRead {
        files,
        revision: checkout.commit,
    })
}

/// Every object this source made: MCPServers from the watch cache, and (GitOps) groups and
/// sources listed by label.
async fn owned_objects(
    ctx: &DiscoveryCtx,
    name: &str,
    ns: &str,
    gitops: bool,
) -> Result<Vec<(String, Arc<DynamicObject>)>, Error> {
    let mut out: Vec<(String, Arc<DynamicObject>)> = ctx
        .servers
        .state()
        .iter()
        .filter(|s| is_ours(s, name, ns))
        .map(|s| ("MCPServer".to_string(), s.clone()))
        .collect();
    if gitops {
        let lp = ListParams::default().labels(&labels_of_source(name, ns));
        for ar in [&ctx.base.group_ar, &ctx.source_ar] {
            for api in ctx.base.scope.dynamic(&ctx.base.client, ar) {
                for o in api.list(&lp).await?.items {
                    out.push((ar.kind.clone(), Arc::new(o)));
                }
            }
        }
    }
    Ok(out)
}

/// Deletes what discovery sources that no longer exist had made, in every namespace: owner
/// references reach only a source's own namespace, and a finalizer would keep a source (and its
/// CRD) from being deleted whenever the controller is not running. An object is deleted only when
/// it carries `ownership`'s labels of a source that both the watch cache and a direct read say is
/// gone, so an empty cache at start deletes nothing.
pub async fn sweep_orphans(
    ctx: &DiscoveryCtx,
    sources: &Store<DynamicObject>,
) -> Result<usize, Error> {
    let lp = ListParams::default().labels(DISCOVERED_BY_LABEL);
    let mut deleted = 0;
    let mut gone: BTreeMap<(String, String), bool> = BTreeMap::new();
    let lists = [&ctx.base.server_ar, &ctx.base.group_ar, &ctx.source_ar]
        .into_iter()
        .flat_map(|ar| {
            let apis = ctx.base.scope.dynamic(&ctx.base.client, ar);
            apis.into_iter().map(move |api| (ar, api))
        });
    for (ar, api) in lists {
        for o in api.list(&lp).await?.items {
            let l = o.labels();
            let (Some(name), Some(ns)) = (
                l.get(DISCOVERED_BY_LABEL).cloned(),
                l.get(DISCOVERED_BY_NAMESPACE_LABEL).cloned(),
            ) else {
                continue;
            };
            // A source in a namespace not watched here is another controller's to judge.
            if !ctx.base.scope.watches(&ns) {
                continue;
            }
            let key = (ns.clone(), name.clone());
            let is_gone = match gone.get(&key) {
                Some(g) => *g,
                None => {
                    let cached = sources
                        .get(&ObjectRef::new_with(&name, ctx.source_ar.clone()).within(&ns))
                        .is_some();
                    let g = !cached
                        && Api::<DynamicObject>::namespaced_with(
                            ctx.base.client.clone(),
                            &ns,
                            &ctx.source_ar,
                        )
                        .get_opt(&name)
                        .await?
                        .is_none();
                    gone.insert(key, g);
                    g
                }
            };
            if !is_gone {
                continue;
            }
            let k = ObjectKey {
                api_version: crate::api::API_VERSION.into(),
                kind: ar.kind.clone(),
                namespace: o.namespace(),
                name: o.name_any(),
            };
            tracing::info!(object = %k.id(), source = %format!("{ns}/{name}"), "deleting what a deleted discovery source made");
            ctx.applier.delete(&k, false).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

async fn write_status(
    ctx: &DiscoveryCtx,
    obj: &DynamicObject,
    s: &MCPDiscoverySourceStatus,
) -> Result<(), StatusError> {
    write_status_json(
        &ctx.base,
        obj,
        &ctx.source_ar,
        serde_json::to_value(s).unwrap_or(Json::Null),
    )
    .await
}
