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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{Value as Json, json};

use super::pipeline::{self, write_status_json};
use super::state::{self, truncate};
use super::{Ctx, Error, compile_input, event};
use crate::api::discovery::{
    DiscoveredProvider, DiscoveryMode, MCPDiscoverySourceSpec, MCPDiscoverySourceStatus, SourceType,
};
use crate::apply::{Applier, ObjectKey};
use crate::compile::isolate::compile_isolated;
use crate::compile::resolve::{DISCOVERED_BY_LABEL, DISCOVERED_BY_NAMESPACE_LABEL};
use crate::compile::{Inputs, Role, compile};
use crate::source::cluster::{self, SourceError, SourceRead};

/// Field manager of the objects discovery applies (the server controller's is another, so the
/// two never contend for fields).
pub const FIELD_MANAGER: &str = "hangar-discovery";
/// How often objects whose discovery source is gone are looked for (see [`sweep_orphans`]).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// At most this many entries are listed in `status.discoveredProviders`.
pub const MAX_LISTED: usize = 500;
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

pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<DiscoveryCtx>) -> Result<Action, Error> {
    super::measured(&ctx.base, "MCPDiscoverySource", async {
        reconcile_source(&obj, &ctx)
            .await
            .map(pipeline::Outcome::ok)
    })
    .await
}

fn labels_of_source(name: &str, ns: &str) -> String {
    format!("{DISCOVERED_BY_LABEL}={name},{DISCOVERED_BY_NAMESPACE_LABEL}={ns}")
}

fn is_ours(o: &DynamicObject, name: &str, ns: &str) -> bool {
    let l = o.labels();
    l.get(DISCOVERED_BY_LABEL).map(String::as_str) == Some(name)
        && l.get(DISCOVERED_BY_NAMESPACE_LABEL).map(String::as_str) == Some(ns)
}

async fn reconcile_source(obj: &DynamicObject, ctx: &DiscoveryCtx) -> Result<Action, Error> {
    let base = &ctx.base;
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let prev: MCPDiscoverySourceStatus = state::prev_status(obj);
    let generation = obj.metadata.generation;
    let now = state::now_secs((base.clock)());

    // The source's own spec, defaulted and checked by the compiler.
    let own = compile(&compile_input(obj, "MCPDiscoverySource"));
    let resolved = own.decided.sources.get(&(ns.clone(), name.clone()));

    if obj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(source) = resolved else {
        let msg = truncate(own.render_diagnostics().trim(), 2000);
        let held = Held {
            reason: "InvalidSpec",
            message: msg.clone(),
            error: Some(msg),
        };
        hold(ctx, obj, &prev, held).await?;
        return Ok(Action::requeue(base.resync));
    };
    let spec = source.spec.clone();
    let refresh = source.refresh_interval;
    if source.paused {
        let held = Held {
            reason: "Paused",
            message: "spec.paused is true: nothing is read, applied or deleted".into(),
            error: None,
        };
        hold(ctx, obj, &prev, held).await?;
        return Ok(Action::requeue(refresh));
    }
    let owned = source.controller_owned;

    let t0 = Instant::now();
    let bind = format!("{ns}/{name}");
    let read = read_source(ctx, &ns, &bind, &spec).await;
    let read = match read {
        Ok(r) => r,
        Err(e) => {
            // Unreadable: keep everything as it is, say why.
            let msg = truncate(&e.to_string(), 2000);
            let held = Held {
                reason: e.reason(),
                message: format!("{msg}; nothing was changed, the last good state stays applied"),
                error: Some(msg),
            };
            hold(ctx, obj, &prev, held).await?;
            base.metrics.discovery_synced(&ns, &name, false);
            return Ok(Action::requeue(refresh.min(Duration::from_secs(30))));
        }
    };

    // Compile the source with what it read, entries isolated.
    let mut inputs: Inputs = compile_input(obj, "MCPDiscoverySource");
    inputs.files.extend(read.files);
    // A large catalog takes a while to compile: off the async workers, so timers (the leader
    // lease's renewals among them) and other reconciles are not held up.
    let isolated = match tokio::task::spawn_blocking(move || compile_isolated(&inputs)).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, source = %name, "compile task failed");
            return Ok(Action::requeue(refresh));
        }
    };
    let Some(bundle) = isolated.compilation.bundle.as_ref() else {
        let msg = truncate(isolated.report.trim(), 4000);
        let held = Held {
            reason: "InvalidContent",
            message: format!(
                "revision {} does not compile; nothing was changed, the last good state stays applied",
                read.revision
            ),
            error: Some(msg),
        };
        hold(ctx, obj, &prev, held).await?;
        base.metrics.discovery_synced(&ns, &name, false);
        return Ok(Action::requeue(refresh));
    };

    // What this source wants: its MCPServers (from Git also groups and other sources).
    let gitops = spec.type_ == SourceType::Git;
    let mut desired: Vec<Json> = bundle
        .objects
        .iter()
        .filter(|o| o.role == Role::Resource)
        .filter(|o| match o.kind.as_str() {
            "MCPServer" => {
                let by = o
                    .body
                    .pointer(&format!(
                        "/metadata/labels/{}",
                        DISCOVERED_BY_LABEL.replace('/', "~1")
                    ))
                    .and_then(Json::as_str);
                by == Some(name.as_str()) || (gitops && by.is_none())
            }
            "MCPServerGroup" => gitops,
            "MCPDiscoverySource" => {
                gitops
                    && !(o.name == name
                        && o.namespace.as_deref().unwrap_or_default() == ns.as_str())
            }
            _ => false,
        })
        .map(|o| o.body.clone())
        .collect();
    let ignored: Vec<String> = bundle
        .objects
        .iter()
        .filter(|o| o.role == Role::Passthrough)
        .map(|o| format!("{}/{}", o.kind, o.name))
        .collect();
    let (desired_names, filtered_out) = apply_filters(&spec, &mut desired);
    let skipped_names: BTreeSet<String> = isolated
        .skipped
        .iter()
        .filter_map(|s| s.name.clone())
        .collect();
    let owner = obj.metadata.uid.clone().map(|uid| {
        json!({
            "apiVersion": ctx.source_ar.api_version,
            "kind": ctx.source_ar.kind,
            "name": name,
            "uid": uid,
            "controller": true,
            "blockOwnerDeletion": source.block_owner_deletion,
        })
    });
    for body in &mut desired {
        mark(body, &name, &ns, owned.then_some(owner.as_ref()).flatten());
    }

    // Apply what differs from the cluster.
    let mut outcomes: Vec<(String, Outcome)> = Vec::with_capacity(desired.len());
    for chunk in desired.chunks(APPLY_CONCURRENCY) {
        let done =
            futures::future::join_all(chunk.iter().map(|body| apply_one(ctx, body, &name, &ns)))
                .await;
        for (body, o) in chunk.iter().zip(done) {
            outcomes.push((ObjectKey::of(body).map(|k| k.id()).unwrap_or_default(), o));
        }
    }
    let mut created = 0;
    let mut updated = 0;
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    for (id, o) in &outcomes {
        match o {
            Outcome::Created => created += 1,
            Outcome::Updated => updated += 1,
            Outcome::Unchanged => {}
            Outcome::Failed(e) => {
                errors.insert(id.clone(), e.clone());
            }
        }
    }

    // Authoritative: delete what this source made and no longer yields. Not what it cannot
    // read now (a skipped entry keeps what it had).
    let mut deleted = 0;
    let authoritative = source.mode == DiscoveryMode::Authoritative;
    if authoritative {
        let wanted: BTreeSet<(String, String, String)> = desired
            .iter()
            .filter_map(ObjectKey::of)
            .map(|k| (k.kind, k.namespace.unwrap_or_default(), k.name))
            .collect();
        for (kind, live) in owned_objects(ctx, &name, &ns, gitops).await? {
            let key = (
                kind.clone(),
                live.namespace().unwrap_or_default(),
                live.name_any(),
            );
            if wanted.contains(&key) || (kind == "MCPServer" && skipped_names.contains(&key.2)) {
                continue;
            }
            let k = ObjectKey {
                api_version: crate::api::API_VERSION.into(),
                kind: kind.clone(),
                namespace: live.namespace(),
                name: live.name_any(),
            };
            match ctx.applier.delete(&k, false).await {
                Ok(()) => deleted += 1,
                Err(e) => {
                    errors.insert(k.id(), e.to_string());
                }
            }
        }
    }
    let elapsed = t0.elapsed();

    // Status: what was found, what is managed, what went wrong.
    let managed: BTreeSet<String> = ctx
        .servers
        .state()
        .iter()
        .filter(|s| is_ours(s, &name, &ns))
        .map(|s| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()))
        .collect();
    let prev_at: BTreeMap<String, Time> = prev
        .discovered_providers
        .iter()
        .flatten()
        .filter_map(|p| Some((p.name.clone(), p.discovered_at.clone()?)))
        .collect();
    let now_time = Time(now);
    let mut providers: Vec<DiscoveredProvider> = Vec::new();
    for body in desired.iter().filter(|b| b["kind"] == "MCPServer") {
        let Some(k) = ObjectKey::of(body) else {
            continue;
        };
        let full = format!("{}/{}", k.namespace.clone().unwrap_or_default(), k.name);
        let label = if k.namespace.as_deref() == Some(ns.as_str()) {
            k.name.clone()
        } else {
            full.clone()
        };
        providers.push(DiscoveredProvider {
            discovered_at: Some(prev_at.get(&label).cloned().unwrap_or(now_time.clone())),
            source: body
                .pointer("/metadata/annotations/mcp-hangar.io~1source")
                .and_then(Json::as_str)
                .map(str::to_string),
            managed: Some(!errors.contains_key(&k.id())),
            error: errors.get(&k.id()).cloned(),
            name: label,
        });
    }
    for s in &isolated.skipped {
        let label = s.name.clone().unwrap_or_else(|| s.location.clone());
        providers.push(DiscoveredProvider {
            discovered_at: Some(prev_at.get(&label).cloned().unwrap_or(now_time.clone())),
            source: Some(s.file.clone()),
            managed: Some(false),
            error: Some(truncate(s.message.trim(), 1000)),
            name: label,
        });
    }
    for n in &filtered_out {
        providers.push(DiscoveredProvider {
            discovered_at: Some(prev_at.get(n).cloned().unwrap_or(now_time.clone())),
            source: None,
            managed: Some(false),
            error: Some("left out by spec.filters".into()),
            name: n.clone(),
        });
    }
    providers.sort_by(|a, b| a.name.cmp(&b.name));
    let discovered = providers.len() as i32;
    providers.truncate(MAX_LISTED);

    let changed = created + updated + deleted > 0;
    let mut problems: Vec<String> = Vec::new();
    let listed = |what: &str, items: Vec<String>, sep: &str| {
        (!items.is_empty()).then(|| format!("{} {what}: {}", items.len(), items.join(sep)))
    };
    problems.extend(listed(
        "entries skipped",
        isolated
            .skipped
            .iter()
            .map(|s| s.location.clone())
            .collect(),
        ", ",
    ));
    problems.extend(listed(
        "objects not applied",
        errors.iter().map(|(k, v)| format!("{k}: {v}")).collect(),
        "; ",
    ));
    problems.extend(listed(
        "objects that discovery does not apply were ignored",
        ignored.clone(),
        ", ",
    ));
    let ok = isolated.skipped.is_empty() && errors.is_empty();
    let summary = format!(
        "revision {}: {} discovered, {} created, {} updated, {} deleted",
        read.revision,
        desired_names.len(),
        created,
        updated,
        deleted
    );
    let message = if problems.is_empty() {
        summary.clone()
    } else {
        format!("{summary}; {}", problems.join("; "))
    };
    let mut next = MCPDiscoverySourceStatus {
        discovered_count: Some(discovered),
        managed_count: Some(managed.len() as i32),
        discovered_providers: Some(providers),
        last_sync_time: prev.last_sync_time.clone(),
        last_sync_duration: prev.last_sync_duration.clone(),
        last_sync_error: (!problems.is_empty()).then(|| truncate(&problems.join("; "), 4000)),
        next_sync_time: prev.next_sync_time.clone(),
        revision: Some(read.revision.clone()),
        observed_generation: generation,
        conditions: Some(vec![state::condition(
            prev.conditions.as_deref().unwrap_or_default(),
            state::READY,
            ok,
            if ok { "Synced" } else { "PartiallySynced" },
            &truncate(&message, 4000),
            generation,
            now,
        )]),
        created_count: if changed {
            Some(created)
        } else {
            prev.created_count
        },
        updated_count: if changed {
            Some(updated)
        } else {
            prev.updated_count
        },
        deleted_count: if changed {
            Some(deleted)
        } else {
            prev.deleted_count
        },
    };
    // Times move only with a write that is due anyway (no writes at steady state).
    if next != prev || prev.last_sync_time.is_none() {
        next.last_sync_time = Some(now_time.clone());
        next.last_sync_duration = Some(format!("{}ms", elapsed.as_millis()));
        next.next_sync_time = Some(Time(
            now.checked_add(
                k8s_openapi::jiff::SignedDuration::try_from(refresh).unwrap_or_default(),
            )
            .unwrap_or(now),
        ));
        write_status(ctx, obj, &next).await?;
        if changed {
            base.event(obj, &ctx.source_ar, event(false, "Synced", &summary))
                .await;
        }
        if !problems.is_empty() && prev.last_sync_error != next.last_sync_error {
            base.event(
                obj,
                &ctx.source_ar,
                event(true, "PartiallySynced", &problems.join("; ")),
            )
            .await;
        }
    }
    base.metrics.discovery_synced(&ns, &name, true);
    Ok(Action::requeue(refresh))
}

/// Why a sync stopped before applying anything.
struct Held {
    reason: &'static str,
    message: String,
    /// `lastSyncError`, and the note of a Warning Event (None: no error, no Event).
    error: Option<String>,
}

/// Status (and a Warning Event) for a sync that changed nothing in the cluster; written only when
/// it differs from what status says already.
async fn hold(
    ctx: &DiscoveryCtx,
    obj: &DynamicObject,
    prev: &MCPDiscoverySourceStatus,
    held: Held,
) -> Result<(), Error> {
    let generation = obj.metadata.generation;
    let mut s = prev.clone();
    s.observed_generation = generation;
    if held.error.is_some() {
        s.last_sync_error = held.error.clone();
    }
    s.conditions = Some(vec![state::condition(
        prev.conditions.as_deref().unwrap_or_default(),
        state::READY,
        false,
        held.reason,
        &held.message,
        generation,
        state::now_secs((ctx.base.clock)()),
    )]);
    if &s != prev {
        write_status(ctx, obj, &s).await?;
        if let Some(note) = &held.error {
            ctx.base
                .event(obj, &ctx.source_ar, event(true, held.reason, note))
                .await;
        }
    }
    Ok(())
}

async fn read_source(
    ctx: &DiscoveryCtx,
    ns: &str,
    bind: &str,
    spec: &MCPDiscoverySourceSpec,
) -> Result<SourceRead, SourceError> {
    let client = &ctx.base.client;
    match spec.type_ {
        SourceType::ConfigMap => cluster::read_configmap(client, ns, bind, spec).await,
        SourceType::Namespace => cluster::read_namespaces(client, bind, spec).await,
        SourceType::Annotations => cluster::read_annotated_services(client, ns, bind, spec).await,
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
            let secret = api.get_opt(&r.name).await?.ok_or_else(|| {
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

/// `spec.filters`: include/exclude globs over server names and `maxProviders`. Returns the names
/// kept and the names left out (which are not pruned either).
fn apply_filters(
    spec: &MCPDiscoverySourceSpec,
    desired: &mut Vec<Json>,
) -> (Vec<String>, BTreeSet<String>) {
    let f = spec.filters.clone().unwrap_or_default();
    let include = f.include_patterns.unwrap_or_default();
    let exclude = f.exclude_patterns.unwrap_or_default();
    let mut out = BTreeSet::new();
    let mut kept_servers = 0usize;
    let max = f.max_providers.map(|m| m.max(0) as usize);
    desired.sort_by_key(|b| ObjectKey::of(b).map(|k| (k.kind, k.namespace, k.name)));
    desired.retain(|b| {
        if b["kind"] != "MCPServer" {
            return true;
        }
        let name = b
            .pointer("/metadata/name")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        let inc = include.is_empty() || include.iter().any(|p| glob(p, &name));
        let exc = exclude.iter().any(|p| glob(p, &name));
        let room = max.is_none_or(|m| kept_servers < m);
        if inc && !exc && room {
            kept_servers += 1;
            true
        } else {
            out.insert(name);
            false
        }
    });
    let names = desired
        .iter()
        .filter(|b| b["kind"] == "MCPServer")
        .filter_map(|b| b.pointer("/metadata/name").and_then(Json::as_str))
        .map(str::to_string)
        .collect();
    (names, out)
}

/// `*` and `?` globs.
pub fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], s) || (!s.is_empty() && go(p, &s[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

/// Labels (and, within the source's namespace, the owner reference) that make an object this
/// source's; `status` is never applied.
fn mark(body: &mut Json, name: &str, ns: &str, owner: Option<&Json>) {
    if let Some(o) = body.as_object_mut() {
        o.remove("status");
    }
    let same_ns = body.pointer("/metadata/namespace").and_then(Json::as_str) == Some(ns);
    let Some(meta) = body.get_mut("metadata").and_then(Json::as_object_mut) else {
        return;
    };
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if let Some(l) = labels.as_object_mut() {
        l.insert(DISCOVERED_BY_LABEL.into(), json!(name));
        l.insert(DISCOVERED_BY_NAMESPACE_LABEL.into(), json!(ns));
    }
    if let (Some(owner), true) = (owner, same_ns) {
        meta.insert("ownerReferences".into(), json!([owner]));
    }
}

enum Outcome {
    Created,
    Updated,
    Unchanged,
    Failed(String),
}

/// Whether `want` (a map of labels or annotations) is contained in `have`.
fn contains(have: Option<&Json>, want: Option<&Json>) -> bool {
    let Some(w) = want.and_then(Json::as_object) else {
        return true;
    };
    let h = have.and_then(Json::as_object);
    w.iter().all(|(k, v)| h.and_then(|h| h.get(k)) == Some(v))
}

/// Applies one object unless the watch cache shows it as wanted already; never takes over an
/// object this source did not make.
async fn apply_one(ctx: &DiscoveryCtx, body: &Json, name: &str, ns: &str) -> Outcome {
    let Some(key) = ObjectKey::of(body) else {
        return Outcome::Failed("object without apiVersion/kind/name".into());
    };
    let cached = if key.kind == "MCPServer" {
        let r = ObjectRef::new_with(&key.name, ctx.base.server_ar.clone())
            .within(key.namespace.as_deref().unwrap_or_default());
        ctx.servers.get(&r)
    } else {
        None
    };
    if let Some(live) = &cached {
        if !is_ours(live, name, ns) {
            return Outcome::Failed(format!(
                "{} exists and belongs to discovery source {}/{}",
                key.id(),
                live.labels()
                    .get(DISCOVERED_BY_NAMESPACE_LABEL)
                    .cloned()
                    .unwrap_or_default(),
                live.labels()
                    .get(DISCOVERED_BY_LABEL)
                    .cloned()
                    .unwrap_or_default()
            ));
        }
        let lj = crate::apply::to_json(live);
        let owners_ok = match body.pointer("/metadata/ownerReferences") {
            Some(o) => lj.pointer("/metadata/ownerReferences") == Some(o),
            None => true,
        };
        if lj.get("spec") == body.get("spec")
            && contains(
                lj.pointer("/metadata/labels"),
                body.pointer("/metadata/labels"),
            )
            && contains(
                lj.pointer("/metadata/annotations"),
                body.pointer("/metadata/annotations"),
            )
            && owners_ok
        {
            return Outcome::Unchanged;
        }
    } else {
        // Not in the cache: it may exist without our labels (someone else's), or be new.
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
                    return Outcome::Failed(format!(
                        "{} exists and was not created by this discovery source; it is left alone",
                        key.id()
                    ));
                }
            }
            Ok(None) => {}
            Err(e) => return Outcome::Failed(e.to_string()),
        }
    }
    match ctx.applier.apply(body, false).await {
        Ok(c) => match c.action {
            crate::apply::Action::Create => Outcome::Created,
            crate::apply::Action::Unchanged => Outcome::Unchanged,
            _ => Outcome::Updated,
        },
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Every object this source made: MCPServers from the watch cache, and (GitOps) groups and
/// sources listed by label.
async fn owned_objects(
    ctx: &DiscoveryCtx,
    name: &str,
    ns: &str,
    gitops: bool,
) -> Result<Vec<(String, DynamicObject)>, Error> {
    let mut out: Vec<(String, DynamicObject)> = ctx
        .servers
        .state()
        .iter()
        .filter(|s| is_ours(s, name, ns))
        .map(|s| ("MCPServer".to_string(), (**s).clone()))
        .collect();
    if gitops {
        let lp = ListParams::default().labels(&labels_of_source(name, ns));
        for ar in [&ctx.base.group_ar, &ctx.source_ar] {
            let api: Api<DynamicObject> = Api::all_with(ctx.base.client.clone(), ar);
            for o in api.list(&lp).await?.items {
                out.push((ar.kind.clone(), o));
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
    for ar in [&ctx.base.server_ar, &ctx.base.group_ar, &ctx.source_ar] {
        let api: Api<DynamicObject> = Api::all_with(ctx.base.client.clone(), ar);
        for o in api.list(&lp).await?.items {
            let l = o.labels();
            let (Some(name), Some(ns)) = (
                l.get(DISCOVERED_BY_LABEL).cloned(),
                l.get(DISCOVERED_BY_NAMESPACE_LABEL).cloned(),
            ) else {
                continue;
            };
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
) -> Result<(), Error> {
    write_status_json(
        &ctx.base,
        obj,
        &ctx.source_ar,
        serde_json::to_value(s).unwrap_or(Json::Null),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "x"));
        assert!(glob("team-*", "team-tools"));
        assert!(!glob("team-*", "docs"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
    }

    #[test]
    fn marks_labels_and_owner_only_within_the_namespace() {
        let owner = json!({"kind": "MCPDiscoverySource", "uid": "u"});
        let mut same = json!({"metadata": {"name": "a", "namespace": "ns"}, "status": {}});
        mark(&mut same, "src", "ns", Some(&owner));
        assert_eq!(same["metadata"]["labels"][DISCOVERED_BY_LABEL], "src");
        assert_eq!(same["metadata"]["ownerReferences"][0]["uid"], "u");
        assert!(same.get("status").is_none());
        let mut other = json!({"metadata": {"name": "a", "namespace": "team"}});
        mark(&mut other, "src", "ns", Some(&owner));
        assert_eq!(
            other["metadata"]["labels"][DISCOVERED_BY_NAMESPACE_LABEL],
            "ns"
        );
        assert!(other["metadata"].get("ownerReferences").is_none());
    }
}
