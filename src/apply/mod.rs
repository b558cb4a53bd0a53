//! Server-side apply of rendered objects: one field manager, staged (CRDs and Namespaces first,
//! then everything else once the CRDs are established), objects whose server-side dry-run shows
//! no change are skipped (no write, no new resourceVersion), and pruning deletes only objects that
//! hangar recorded in its inventory AND that still carry its inventory label.

pub mod inventory;

use std::collections::HashMap;
use std::time::Duration;

use futures::{StreamExt, stream};
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy, ValidationDirective,
};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Scope};
use kube::{Client, Error as KubeError};
use serde_json::{Value as Json, json};
use tokio::sync::Mutex;

use crate::compile::bundle::kind_rank;
use crate::compile::render::labels::{GATEWAY_MANAGER, SCALED_BY_ANNOTATION, SCALED_BY_GATEWAY};

/// Field manager of `hangar apply`.
pub const FIELD_MANAGER: &str = "hangar";
/// On every object `hangar apply` writes: the inventory it belongs to.
pub use crate::compile::render::labels::INVENTORY_LABEL;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{id}: the cluster has no kind {gvk}: {message}")]
    UnknownKind {
        id: String,
        gvk: String,
        message: String,
    },
    #[error(
        "{id}: conflict with another field manager (pass --force-conflicts to take the fields over): {message}"
    )]
    Conflict { id: String, message: String },
    #[error("{id}: rejected by the API server: {message}")]
    Rejected { id: String, message: String },
    #[error("{id}: {source}")]
    Api {
        id: String,
        #[source]
        source: KubeError,
    },
    #[error("{id}: not a Kubernetes object: {message}")]
    Malformed { id: String, message: String },
    #[error("CustomResourceDefinition {0} was not established within {1:?}")]
    NotEstablished(String, Duration),
    #[error("inventory {name}: {message}")]
    Inventory { name: String, message: String },
    #[error(
        "the hangar CRDs are not installed (the cluster has no {kinds}): use --install-crds or `helm install`; nothing was applied"
    )]
    CrdsMissing { kinds: String },
    #[error(
        "the cluster has no kind {kinds} (install its CustomResourceDefinition first); nothing was applied"
    )]
    KindsMissing { kinds: String },
}

impl ApplyError {
    fn from_kube(id: &str, e: KubeError) -> Self {
        match &e {
            KubeError::Api(s) if s.code == 409 => ApplyError::Conflict {
                id: id.into(),
                message: s.message.clone(),
            },
            KubeError::Api(s) if s.code == 422 || s.code == 400 => ApplyError::Rejected {
                id: id.into(),
                message: s.message.clone(),
            },
            _ => ApplyError::Api {
                id: id.into(),
                source: e,
            },
        }
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, ApplyError::Conflict { .. })
    }
}

/// What applying one object does (or would do, in a dry run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Unchanged,
    Prune,
    /// The object has a controller owner (the hangar controller renders it from its MCPServer):
    /// left to that controller, so the two never fight over its fields.
    Delegated,
}

impl Action {
    pub fn past(self, dry_run: bool) -> &'static str {
        match (self, dry_run) {
            (Action::Create, false) => "created",
            (Action::Update, false) => "configured",
            (Action::Prune, false) => "pruned",
            (Action::Create, true) => "would be created",
            (Action::Update, true) => "would be configured",
            (Action::Prune, true) => "would be pruned",
            (Action::Unchanged, _) => "unchanged",
            (Action::Delegated, _) => "left to its controller",
        }
    }
}

/// One object's outcome: the live object before, and what the API server made (or would make) of it.
#[derive(Clone, Debug)]
pub struct Change {
    pub id: String,
    pub action: Action,
    pub live: Option<Json>,
    pub result: Option<Json>,
}

/// Identity of an object in the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn of(body: &Json) -> Option<ObjectKey> {
        let s = |p: &str| body.pointer(p).and_then(Json::as_str).map(str::to_string);
        Some(ObjectKey {
            api_version: s("/apiVersion")?,
            kind: s("/kind")?,
            namespace: s("/metadata/namespace"),
            name: s("/metadata/name")?,
        })
    }

    pub fn gvk(&self) -> GroupVersionKind {
        let (g, v) = match self.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", self.api_version.as_str()),
        };
        GroupVersionKind::gvk(g, v, &self.kind)
    }

    /// `Kind/namespace/name` (or `Kind/name`), as `hangar render` and `diff` print it.
    pub fn id(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.kind, ns, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

/// Counts every write request hangar sends (dry runs excluded), for metrics and benchmarks.
pub type WriteCounter = std::sync::Arc<dyn Fn(&'static str) + Send + Sync>;

/// Applies objects to one cluster as one field manager.
pub struct Applier {
    client: Client,
    manager: String,
    force: bool,
    /// Field managers this one supersedes: their fields are taken over when only they stand in
    /// the way (the controller supersedes `hangar apply`'s manager for the children it owns).
    supersedes: Vec<String>,
    kinds: Mutex<HashMap<GroupVersionKind, (ApiResource, bool)>>,
    on_write: Option<WriteCounter>,
}

impl Applier {
    pub fn new(client: Client, manager: impl Into<String>, force: bool) -> Self {
        Applier {
            client,
            manager: manager.into(),
            force,
            supersedes: Vec::new(),
            kinds: Mutex::new(HashMap::new()),
            on_write: None,
        }
    }

    /// Takes fields over from `managers` when a conflict names only them.
    pub fn superseding(mut self, managers: &[&str]) -> Self {
        self.supersedes = managers.iter().map(|m| m.to_string()).collect();
        self
    }

    /// Whether a conflict names only managers this applier supersedes.
    fn supersedes_all(&self, e: &KubeError) -> bool {
        let KubeError::Api(s) = e else { return false };
        if s.code != 409 || self.supersedes.is_empty() {
            return false;
        }
        let managers = conflicting_managers(&s.message);
        !managers.is_empty()
            && managers
                .iter()
                .all(|m| self.supersedes.iter().any(|s| s == m))
    }

    /// A server-side apply patch, forced when it conflicts only with superseded managers.
    async fn patch_apply(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        body: &Json,
        dry_run: bool,
    ) -> Result<DynamicObject, KubeError> {
        match api
            .patch(name, &self.params(dry_run), &Patch::Apply(body))
            .await
        {
            Err(e) if self.supersedes_all(&e) => {
                if !dry_run {
                    tracing::info!(object = %name, "taking fields over from a superseded field manager: {e}");
                }
                let mut params = self.params(dry_run);
                params.force = true;
                api.patch(name, &params, &Patch::Apply(body)).await
            }
            other => other,
        }
    }

    pub fn with_write_counter(mut self, counter: WriteCounter) -> Self {
        self.on_write = Some(counter);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn manager(&self) -> &str {
        &self.manager
    }

    fn wrote(&self, verb: &'static str) {
        if let Some(c) = &self.on_write {
            c(verb);
        }
    }

    /// Forgets what discovery said (after new CRDs are established).
    pub async fn forget_kinds(&self) {
        self.kinds.lock().await.clear();
    }

    /// The API resource of a kind and whether it is namespaced (discovery, cached).
    pub async fn resource(&self, key: &ObjectKey) -> Result<(ApiResource, bool), ApplyError> {
        let gvk = key.gvk();
        if let Some(found) = self.kinds.lock().await.get(&gvk) {
            return Ok(found.clone());
        }
        match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok((ar, caps)) => {
                let found = (ar, caps.scope == Scope::Namespaced);
                self.kinds.lock().await.insert(gvk, found.clone());
                Ok(found)
            }
            // The API server answered that it has no such group, version or kind.
            Err(e @ (KubeError::Api(_) | KubeError::Discovery(_))) if !matches!(&e, KubeError::Api(s) if s.code != 404) => {
                Err(ApplyError::UnknownKind {
                    id: key.id(),
                    gvk: format!("{}/{}", key.api_version, key.kind),
                    message: e.to_string(),
                })
            }
            // It could not be asked (unreachable, forbidden...).
            Err(e) => Err(ApplyError::Api {
                id: key.id(),
                source: e,
            }),
        }
    }

    pub async fn api(&self, key: &ObjectKey) -> Result<Api<DynamicObject>, ApplyError> {
        let (ar, namespaced) = self.resource(key).await?;
        Ok(match (&key.namespace, namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &ar),
            (None, true) => Api::default_namespaced_with(self.client.clone(), &ar),
            (_, false) => Api::all_with(self.client.clone(), &ar),
        })
    }

    /// The live object, or None when it does not exist.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Json>, ApplyError> {
        let api = self.api(key).await?;
        match api.get_opt(&key.name).await {
            Ok(o) => Ok(o.map(|o| to_json(&o))),
            Err(e) => Err(ApplyError::from_kube(&key.id(), e)),
        }
    }

    fn params(&self, dry_run: bool) -> PatchParams {
        PatchParams {
            dry_run,
            force: self.force,
            field_manager: Some(self.manager.clone()),
            field_validation: Some(ValidationDirective::Strict),
        }
    }

    /// Applies one object; with `dry_run` only asks the API server what it would do. An object
    /// whose dry run equals the live object (and is already ours) is not written.
    pub async fn apply(&self, body: &Json, dry_run: bool) -> Result<Change, ApplyError> {
        let key = ObjectKey::of(body).ok_or_else(|| ApplyError::Malformed {
            id: "<object>".into(),
            message: "apiVersion, kind and metadata.name are required".into(),
        })?;
        let id = key.id();
        let api = self.api(&key).await?;
        let live = api
            .get_opt(&key.name)
            .await
            .map_err(|e| ApplyError::from_kube(&id, e))?
            .map(|o| to_json(&o));
        if let Some(l) = &live
            && has_controller_owner(l)
            && body.pointer("/metadata/ownerReferences").is_none()
        {
            return Ok(Change {
                id,
                action: Action::Delegated,
                live: live.clone(),
                result: live,
            });
        }
        // An on-demand Deployment's replicas are the gateway's: see [`replicas_handover`].
        let handover = replicas_handover(body, live.as_ref(), &self.manager);
        let with_replicas;
        let body = match handover {
            Some(n) => {
                let mut b = body.clone();
                b["spec"]["replicas"] = json!(n);
                with_replicas = b;
                &with_replicas
            }
            None => body,
        };
        let predicted = self
            .patch_apply(&api, &key.name, body, true)
            .await
            .map_err(|e| ApplyError::from_kube(&id, e))?;
        let predicted = to_json(&predicted);
        let action = match &live {
            None => Action::Create,
            Some(l) if same(l, &predicted) && managed_by(l, &self.manager) => Action::Unchanged,
            Some(_) => Action::Update,
        };
        if dry_run || (action == Action::Unchanged && handover.is_none()) {
            return Ok(Change {
                id,
                action,
                live,
                result: Some(predicted),
            });
        }
        // Unchanged but for the hand-over: the dry run's answer is the object as stored.
        let mut applied = predicted;
        if action != Action::Unchanged {
            let a = self
                .patch_apply(&api, &key.name, body, false)
                .await
                .map_err(|e| ApplyError::from_kube(&id, e))?;
            self.wrote("patch");
            applied = to_json(&a);
        }
        if let Some(n) = handover {
            applied = self.hand_over_replicas(&api, &key, n).await?;
        }
        Ok(Change {
            id,
            action,
            live,
            result: Some(applied),
        })
    }

    /// Makes the gateway's field manager an owner of `spec.replicas` (at the value it has), so
    /// that our later applies, which leave the field out, do not reset it.
    async fn hand_over_replicas(
        &self,
        api: &Api<DynamicObject>,
        key: &ObjectKey,
        replicas: i64,
    ) -> Result<Json, ApplyError> {
        let body = json!({
            "apiVersion": key.api_version,
            "kind": key.kind,
            "metadata": {"name": key.name},
            "spec": {"replicas": replicas},
        });
        let params = PatchParams {
            dry_run: false,
            force: true,
            field_manager: Some(GATEWAY_MANAGER.into()),
            field_validation: Some(ValidationDirective::Strict),
        };
        let o = api
            .patch(&key.name, &params, &Patch::Apply(&body))
            .await
            .map_err(|e| ApplyError::from_kube(&key.id(), e))?;
        self.wrote("patch");
        tracing::debug!(object = %key.id(), replicas, "spec.replicas handed over to the gateway");
        Ok(to_json(&o))
    }

    /// Deletes an object (background propagation); a missing object is not an error.
    pub async fn delete(&self, key: &ObjectKey, dry_run: bool) -> Result<(), ApplyError> {
        let api = self.api(key).await?;
        let dp = DeleteParams {
            dry_run,
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match api.delete(&key.name, &dp).await {
            Ok(_) => {
                if !dry_run {
                    self.wrote("delete");
                }
                Ok(())
            }
            Err(KubeError::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(ApplyError::from_kube(&key.id(), e)),
        }
    }

    /// Waits until a CustomResourceDefinition reports `Established`.
    pub async fn wait_established(&self, name: &str, timeout: Duration) -> Result<(), ApplyError> {
        let key = ObjectKey {
            api_version: "apiextensions.k8s.io/v1".into(),
            kind: "CustomResourceDefinition".into(),
            namespace: None,
            name: name.into(),
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(crd) = self.get(&key).await?
                && crd
                    .pointer("/status/conditions")
                    .and_then(Json::as_array)
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c.get("type") == Some(&json!("Established"))
                                && c.get("status") == Some(&json!("True"))
                        })
                    })
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApplyError::NotEstablished(name.into(), timeout));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

pub fn to_json(o: &DynamicObject) -> Json {
    serde_json::to_value(o).unwrap_or(Json::Null)
}

/// Equal once server bookkeeping (managedFields, resourceVersion, status...) is set aside.
fn same(live: &Json, predicted: &Json) -> bool {
    crate::diff::normalize(live) == crate::diff::normalize(predicted)
}

/// Whether a controller owns the object (an owner reference with `controller: true`).
fn has_controller_owner(live: &Json) -> bool {
    live.pointer("/metadata/ownerReferences")
        .and_then(Json::as_array)
        .is_some_and(|rs| rs.iter().any(|r| r.get("controller") == Some(&json!(true))))
}

/// The replicas to send for an on-demand Deployment (annotated `scaled-by: gateway`, rendered
/// without `spec.replicas`), and to hand over to the gateway's field manager, when no other
/// manager owns the field yet: 0 for a new one (it starts cold; the API would default a
/// missing count to 1) or one that had a fixed count (its spec now asks for 0), the live count
/// for one already on demand. `None` once another manager owns it: then the field is left out,
/// and our applies never write it. Pure.
pub fn replicas_handover(body: &Json, live: Option<&Json>, manager: &str) -> Option<i64> {
    let gateway_scaled = body.get("kind").and_then(Json::as_str) == Some("Deployment")
        && scaled_by_gateway(body)
        && body.pointer("/spec/replicas").is_none();
    if !gateway_scaled {
        return None;
    }
    let Some(live) = live else { return Some(0) };
    let others_own = live
        .pointer("/metadata/managedFields")
        .and_then(Json::as_array)
        .is_some_and(|mf| {
            mf.iter().any(|m| {
                m.get("manager").and_then(Json::as_str) != Some(manager)
                    && m.pointer("/fieldsV1/f:spec/f:replicas").is_some()
            })
        });
    // Already the gateway's (a hand-over that failed): the count it has. Newly on demand (the
    // spec went from N replicas to 0): 0, as asked.
    (!others_own).then(|| match scaled_by_gateway(live) {
        true => live
            .pointer("/spec/replicas")
            .and_then(Json::as_i64)
            .unwrap_or(0),
        false => 0,
    })
}

/// Whether an object carries `mcp-hangar.io/scaled-by: gateway`.
fn scaled_by_gateway(o: &Json) -> bool {
    o.pointer("/metadata/annotations")
        .and_then(|a| a.get(SCALED_BY_ANNOTATION))
        .and_then(Json::as_str)
        == Some(SCALED_BY_GATEWAY)
}

/// Whether `manager` already owns fields of the object through apply.
fn managed_by(live: &Json, manager: &str) -> bool {
    live.pointer("/metadata/managedFields")
        .and_then(Json::as_array)
        .is_some_and(|mf| {
            mf.iter().any(|m| {
                m.get("manager").and_then(Json::as_str) == Some(manager)
                    && m.get("operation").and_then(Json::as_str) == Some("Apply")
            })
        })
}

/// Kinds pruning never deletes (they are kept in the inventory; delete them by hand).
pub const NEVER_PRUNED: [&str; 2] = ["CustomResourceDefinition", "Namespace"];

/// Options of `hangar apply` / `hangar diff --cluster`.
#[derive(Clone, Debug)]
pub struct Options {
    pub dry_run: bool,
    pub prune: bool,
    /// Name of the inventory (label value and inventory ConfigMap suffix).
    pub inventory: String,
    /// Namespace of the inventory ConfigMap.
    pub inventory_namespace: String,
    pub concurrency: usize,
    pub establish_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dry_run: false,
            prune: false,
            inventory: "default".into(),
            inventory_namespace: "default".into(),
            concurrency: 8,
            establish_timeout: Duration::from_secs(60),
        }
    }
}

/// The outcome of applying a bundle: one entry per object (in apply order), then the prunes.
#[derive(Debug, Default)]
pub struct Report {
    pub changes: Vec<Change>,
    pub errors: Vec<ApplyError>,
}

impl Report {
    pub fn count(&self, a: Action) -> usize {
        self.changes.iter().filter(|c| c.action == a).count()
    }
}

/// Adds the inventory label to an object.
pub fn with_inventory_label(body: &Json, inventory: &str) -> Json {
    let mut b = body.clone();
    if let Some(meta) = b.get_mut("metadata").and_then(Json::as_object_mut) {
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert(INVENTORY_LABEL.into(), json!(inventory));
        }
    }
    b
}

/// Applies a rendered bundle: staged, skipping unchanged objects, recording an inventory, and
/// (with `prune`) deleting what the previous inventory held and this one does not.
pub async fn apply_bundle(applier: &Applier, objects: &[Json], opts: &Options) -> Report {
    let mut report = Report::default();
    let labelled: Vec<Json> = objects
        .iter()
        .map(|o| with_inventory_label(o, &opts.inventory))
        .collect();
    let mut keys = Vec::new();
    for o in &labelled {
        match ObjectKey::of(o) {
            Some(k) => keys.push(k),
            None => report.errors.push(ApplyError::Malformed {
                id: "<object>".into(),
                message: "apiVersion, kind and metadata.name are required".into(),
            }),
        }
    }
    let (first, rest): (Vec<_>, Vec<_>) = labelled
        .iter()
        .filter(|o| ObjectKey::of(o).is_some())
        .partition(|o| kind_rank(o.get("kind").and_then(Json::as_str).unwrap_or("")) <= 1);
    // Every kind must exist (or come with the bundle's CRDs) before anything is applied: half a
    // bundle (children without the resources that own them) is worse than none.
    if let Some(e) = missing_kinds(applier, &first, &rest).await {
        report.errors.push(e);
        return report;
    }

    // Stage 1: CRDs and Namespaces, then wait for the CRDs.
    let mut new_namespaces = Vec::new();
    let mut new_crds = Vec::new();
    for o in &first {
        match applier.apply(o, opts.dry_run).await {
            Ok(c) => {
                if c.action == Action::Create {
                    if let Some(k) = ObjectKey::of(o) {
                        match k.kind.as_str() {
                            "Namespace" => new_namespaces.push(k.name.clone()),
                            _ => new_crds.push(crd_kind(o)),
                        }
                    }
                }
                report.changes.push(c);
            }
            Err(e) => report.errors.push(e),
        }
    }
    if !opts.dry_run {
        for o in &first {
            if let Some(k) = ObjectKey::of(o)
                && k.kind == "CustomResourceDefinition"
                && let Err(e) = applier
                    .wait_established(&k.name, opts.establish_timeout)
                    .await
            {
                report.errors.push(e);
            }
        }
        applier.forget_kinds().await;
    }

    // Stage 2: everything else, a few at a time, reported in order.
    let results: Vec<Result<Change, ApplyError>> = stream::iter(rest.iter().map(|o| {
        let new_namespaces = &new_namespaces;
        let new_crds = &new_crds;
        async move {
            let key = ObjectKey::of(o);
            // In a dry run, what lands in a namespace or kind that does not exist yet can not be
            // asked about: it would be created as given.
            let not_there_yet = opts.dry_run
                && key.as_ref().is_some_and(|k| {
                    k.namespace
                        .as_ref()
                        .is_some_and(|ns| new_namespaces.contains(ns))
                        || new_crds
                            .iter()
                            .any(|(g, kd)| *kd == k.kind && k.gvk().group == *g)
                });
            if not_there_yet {
                return Ok(Change {
                    id: key.map(|k| k.id()).unwrap_or_default(),
                    action: Action::Create,
                    live: None,
                    result: Some((*o).clone()),
                });
            }
            applier.apply(o, opts.dry_run).await
        }
    }))
    .buffered(opts.concurrency.max(1))
    .collect()
    .await;
    for r in results {
        match r {
            Ok(c) => report.changes.push(c),
            Err(e) => report.errors.push(e),
        }
    }

    // Prune and record the inventory.
    let inv = inventory::Inventory::new(&opts.inventory, &opts.inventory_namespace);
    let previous = match inv.read(applier).await {
        Ok(p) => p,
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    let current: std::collections::BTreeSet<ObjectKey> = keys.into_iter().collect();
    let mut kept = current.clone();
    for old in previous.difference(&current) {
        // Deleting a CRD deletes every resource of its kind, and a Namespace everything in it:
        // never as a side effect of a missing input.
        if !opts.prune || NEVER_PRUNED.contains(&old.kind.as_str()) {
            kept.insert(old.clone());
            continue;
        }
        match applier.get(old).await {
            Ok(Some(live)) if carries_inventory(&live, &opts.inventory) => {
                match applier.delete(old, opts.dry_run).await {
                    Ok(()) => report.changes.push(Change {
                        id: old.id(),
                        action: Action::Prune,
                        live: Some(live),
                        result: None,
                    }),
                    Err(e) => {
                        kept.insert(old.clone());
                        report.errors.push(e);
                    }
                }
            }
            // Gone already, or no longer ours (label removed by hand): forget it, never delete it.
            Ok(_) => {}
            Err(ApplyError::UnknownKind { .. }) => {}
            Err(e) => {
                kept.insert(old.clone());
                report.errors.push(e);
            }
        }
    }
    // Objects that failed to apply stay recorded, so a later prune still finds them.
    if !opts.dry_run
        && (kept != previous || previous.is_empty())
        && let Err(e) = inv.write(applier, &kept).await
    {
        report.errors.push(e);
    }
    report
}

/// The field managers a server-side apply conflict names (`conflict with "NAME" ...`).
fn conflicting_managers(message: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for marker in ["conflict with \"", "conflicts with \""] {
        let mut rest = message;
        while let Some(i) = rest.find(marker) {
            rest = &rest[i + marker.len()..];
            if let Some(end) = rest.find('"') {
                out.push(&rest[..end]);
                rest = &rest[end..];
            }
        }
    }
    out
}

/// The kinds of `rest` the cluster does not serve and no CRD of `first` defines, as one error.
async fn missing_kinds(applier: &Applier, first: &[&Json], rest: &[&Json]) -> Option<ApplyError> {
    let defined: Vec<(String, String)> = first
        .iter()
        .filter(|o| o.get("kind").and_then(Json::as_str) == Some("CustomResourceDefinition"))
        .map(|o| crd_kind(o))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut missing = std::collections::BTreeSet::new();
    for key in rest.iter().filter_map(|o| ObjectKey::of(o)) {
        let gvk = (key.api_version.clone(), key.kind.clone());
        if !seen.insert(gvk)
            || defined
                .iter()
                .any(|(g, k)| *k == key.kind && key.gvk().group == *g)
        {
            continue;
        }
        if let Err(ApplyError::UnknownKind { gvk, .. }) = applier.resource(&key).await {
            missing.insert(gvk);
        }
    }
    missing_kinds_error(missing.into_iter().collect())
}

/// The error for kinds the cluster lacks: hangar's own say how to install its CRDs.
fn missing_kinds_error(missing: Vec<String>) -> Option<ApplyError> {
    if missing.is_empty() {
        return None;
    }
    let ours = missing
        .iter()
        .any(|k| k.starts_with(&format!("{}/", crate::api::GROUP)));
    let kinds = missing.join(", ");
    Some(match ours {
        true => ApplyError::CrdsMissing { kinds },
        false => ApplyError::KindsMissing { kinds },
    })
}

/// Whether a live object carries hangar's labels for this inventory.
pub fn carries_inventory(live: &Json, inventory: &str) -> bool {
    live.pointer("/metadata/labels")
        .and_then(|l| l.get(INVENTORY_LABEL))
        .and_then(Json::as_str)
        == Some(inventory)
}

/// (group, kind) a CRD defines.
fn crd_kind(crd: &Json) -> (String, String) {
    let s = |p: &str| {
        crd.pointer(p)
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (s("/spec/group"), s("/spec/names/kind"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_name_their_managers() {
        let one = "Apply failed with 1 conflict: conflict with \"hangar\" using apps/v1: .spec.template.spec.containers[name=\"mcp\"].image";
        assert_eq!(conflicting_managers(one), ["hangar"]);
        let two = "Apply failed with 2 conflicts: conflicts with \"hangar\" using apps/v1:\n- .spec.replicas\nconflict with \"intruder\" using apps/v1: .spec.x";
        let mut m = conflicting_managers(two);
        m.sort();
        assert_eq!(m, ["hangar", "intruder"]);
        assert!(conflicting_managers("Operation cannot be fulfilled").is_empty());
    }

    #[test]
    fn missing_kinds_say_how_to_install_the_crds() {
        assert!(missing_kinds_error(Vec::new()).is_none());
        let ours = missing_kinds_error(vec!["mcp-hangar.io/v1alpha1/MCPServer".into()])
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(ours.contains("--install-crds or `helm install`"), "{ours}");
        assert!(ours.contains("nothing was applied"), "{ours}");
        let other = missing_kinds_error(vec!["example.com/v1/Widget".into()])
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(other.contains("example.com/v1/Widget"), "{other}");
    }

    #[test]
    fn keys_and_ids() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "namespace": "n"}});
        let k = ObjectKey::of(&d).unwrap();
        assert_eq!(k.id(), "Deployment/n/a");
        assert_eq!(k.gvk().group, "apps");
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}});
        let k = ObjectKey::of(&ns).unwrap();
        assert_eq!(k.gvk().group, "");
        assert_eq!(k.gvk().version, "v1");
        assert!(ObjectKey::of(&json!({"kind": "X"})).is_none());
    }

    #[test]
    fn inventory_label_and_ownership() {
        let d = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"app.kubernetes.io/managed-by": "hangar"}}});
        let l = with_inventory_label(&d, "prod");
        assert!(carries_inventory(&l, "prod"));
        assert!(!carries_inventory(&l, "other"));
        // The label alone marks it: hangar apply is the only one that sets it.
        assert!(carries_inventory(
            &with_inventory_label(&json!({"metadata": {"name": "a"}}), "prod"),
            "prod"
        ));
        assert!(!carries_inventory(&d, "prod"));
    }

    #[test]
    fn unchanged_needs_same_content_and_ownership() {
        let live = json!({"kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "1", "managedFields": [{"manager": "hangar", "operation": "Apply"}]}, "data": {"k": "v"}});
        let pred = json!({"kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "1", "managedFields": [{"manager": "hangar", "operation": "Apply", "time": "x"}]}, "data": {"k": "v"}});
        assert!(same(&live, &pred));
        assert!(managed_by(&live, "hangar"));
        assert!(!managed_by(&live, "kubectl"));
        let changed = json!({"kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "w"}});
        assert!(!same(&live, &changed));
    }

    #[test]
    fn an_on_demand_deployment_starts_at_zero_and_hands_its_replicas_over_once() {
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "annotations": {"mcp-hangar.io/scaled-by": "gateway"}},
            "spec": {"template": {}}});
        // New: created cold.
        assert_eq!(replicas_handover(&body, None, "hangar"), Some(0));
        // Ours alone, already on demand (a hand-over that failed): the live count, handed over.
        let ours = json!({"metadata": {"annotations": {"mcp-hangar.io/scaled-by": "gateway"},
            "managedFields": [
            {"manager": "hangar", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"replicas": 1}});
        assert_eq!(replicas_handover(&body, Some(&ours), "hangar"), Some(1));
        // Ours alone with a fixed count (the spec went from 2 replicas to 0): 0, as asked.
        let fixed_before = json!({"metadata": {"managedFields": [
            {"manager": "hangar", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"replicas": 2}});
        assert_eq!(
            replicas_handover(&body, Some(&fixed_before), "hangar"),
            Some(0)
        );
        // The gateway owns it (by the hand-over, or a scale): left out.
        let theirs = json!({"metadata": {"managedFields": [
            {"manager": "hangar", "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {}}}},
            {"manager": "hangar-gateway", "operation": "Update", "subresource": "scale",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"replicas": 1}});
        assert_eq!(replicas_handover(&body, Some(&theirs), "hangar"), None);
        // Not gateway-scaled, or replicas rendered: nothing to hand over.
        let mut fixed = body.clone();
        fixed["spec"]["replicas"] = json!(2);
        assert_eq!(replicas_handover(&fixed, None, "hangar"), None);
        let mut plain = body.clone();
        plain["metadata"]["annotations"] = json!({});
        assert_eq!(replicas_handover(&plain, None, "hangar"), None);
    }
}
pub mod command;
pub mod wait;
