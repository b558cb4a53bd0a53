//! What every reconcile is made of, one step a function:
//!
//! ```text
//! compiled  -> children applied         -> observe      -> decide        -> status
//! (settings   (Children<Prepared> ->       (all the I/O    (pure, an        (only from
//!  or InvalidSpec, Children<Applied>;        of a check)     injected clock)  applied children)
//!  one writer)  prune by owner)
//! ```
//!
//! Each step that can fail has an error of its own with a [`Category`]; a reconcile ends in an
//! [`Outcome`] that carries the category too, so a Conflict written to status is counted as
//! what it is (`mcp_operator_reconcile_total{result="error",category="conflict"}`), not as ok.

use std::collections::HashSet;
use std::marker::PhantomData;

use futures::future::join_all;

use super::applied::AppliedCache;
use super::metrics::{ApplyLabels, Metrics};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::Action;
use serde_json::{Value as Json, json};

use super::state;
use super::{Ctx, compile_input, event, owner_reference};
use crate::apply::{Applier, ApplyError, ObjectKey};
use crate::compile::{Bundle, Compilation, Decided, Role, compile};

/// What a reconcile (or a failed step of one) was about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Category {
    /// Everything applied and observed.
    #[default]
    Ok,
    /// The spec does not compile; status says why, nothing is applied.
    InvalidSpec,
    /// A child is owned by another field manager.
    Conflict,
    /// The API server refused a child for another reason.
    ApplyFailed,
    /// A read or write of the API server failed (the reconcile is retried).
    Api,
    /// The resource is not yet complete enough to reconcile (no uid yet, say).
    NotReady,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Ok => "ok",
            Category::InvalidSpec => "invalid_spec",
            Category::Conflict => "conflict",
            Category::ApplyFailed => "apply_failed",
            Category::Api => "api",
            Category::NotReady => "not_ready",
        }
    }

    /// The reason a condition or Event gives for it (`Conflict`, `ApplyFailed`, ...).
    pub fn reason(self) -> &'static str {
        match self {
            Category::Ok => "Applied",
            Category::InvalidSpec => "InvalidSpec",
            Category::Conflict => "Conflict",
            Category::ApplyFailed => "ApplyFailed",
            Category::Api => "ApiError",
            Category::NotReady => "NotReady",
        }
    }

    /// The `result` label: only a reconcile with nothing wrong is `ok`.
    pub fn result(self) -> &'static str {
        match self {
            Category::Ok => "ok",
            _ => "error",
        }
    }
}

/// How a reconcile ended: when to look again, and what it was about.
#[derive(Debug)]
pub struct Outcome {
    pub action: Action,
    pub category: Category,
}

impl Outcome {
    pub fn ok(action: Action) -> Self {
        Outcome {
            action,
            category: Category::Ok,
        }
    }

    pub fn with(category: Category, action: Action) -> Self {
        Outcome { action, category }
    }
}

/// A write of status (or an Event) failed.
#[derive(Debug, thiserror::Error)]
#[error("writing status: {0}")]
pub struct StatusError(#[from] pub kube::Error);

/// Reading what a check needs from the API server failed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("listing {what}: {source}")]
    List {
        what: &'static str,
        source: kube::Error,
    },
}

/// Deleting children no longer rendered failed.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("listing {kind} to prune: {source}")]
    List { kind: String, source: kube::Error },
    #[error(transparent)]
    Delete(#[from] ApplyError),
}

// ---------------------------------------------------------------------------------------------
// compiled

/// A resource of the cluster compiled the way `hangar render` compiles it, with what was decided
/// about it.
pub struct Compiled {
    pub bundle: Bundle,
    pub decided: Decided,
    /// Namespace and name, the key of `decided`.
    pub key: (String, String),
}

/// The spec did not compile (the diagnostics, as status shows them), or the resource is in a
/// namespace this controller does not manage (see [`super::scope`]).
pub struct InvalidSpec {
    /// The conditions' and the Event's reason: `InvalidSpec` or `NamespaceNotManaged`.
    pub reason: &'static str,
    pub message: String,
}

/// Step 1: compiles one resource of `kind` as a user would have written it, on a blocking
/// thread (off the async workers: what the reconciles and timers run on).
pub async fn compiled(
    obj: &DynamicObject,
    kind: crate::api::Kind,
) -> Result<Compiled, InvalidSpec> {
    let inputs = compile_input(obj, kind.name());
    let compilation = tokio::task::spawn_blocking(move || compile(&inputs))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, name = %obj.name_any(), "compile task failed");
            InvalidSpec {
                reason: "InvalidSpec",
                message: format!("the compiler failed: {e}"),
            }
        })?;
    let Compilation {
        bundle,
        decided,
        diagnostics,
        files,
    } = compilation;
    let Some(bundle) = bundle else {
        return Err(InvalidSpec {
            reason: "InvalidSpec",
            message: state::truncate(diagnostics.render(&files).trim(), 2000),
        });
    };
    Ok(Compiled {
        bundle,
        decided,
        key: (obj.namespace().unwrap_or_default(), obj.name_any()),
    })
}

impl InvalidSpec {
    /// A resource the scope refuses: reported like a spec that does not compile (nothing is
    /// applied), under a reason of its own.
    pub fn not_managed(message: String) -> InvalidSpec {
        InvalidSpec {
            reason: "NamespaceNotManaged",
            message,
        }
    }

    /// The one writer of an InvalidSpec status, for every kind: Ready and Reconciled false with
    /// the diagnostics, `observedGeneration` current, and what else `extra` sets (a kind's own
    /// fields); written, with a Warning Event, only when it changes anything. What runs is kept.
    pub async fn report(
        &self,
        ctx: &Ctx,
        obj: &DynamicObject,
        ar: &ApiResource,
        extra: impl FnOnce(&mut serde_json::Map<String, Json>),
    ) -> Result<Outcome, StatusError> {
        let prev = obj.data.get("status").cloned().unwrap_or_else(|| json!({}));
        let next = invalid_status(
            &prev,
            self.reason,
            &self.message,
            obj.metadata.generation,
            (ctx.clock)(),
            extra,
        );
        if next != prev {
            ctx.event(obj, ar, event(true, self.reason, &self.message))
                .await;
            tracing::info!(
                kind = %ar.kind,
                namespace = %obj.namespace().unwrap_or_default(),
                name = %obj.name_any(),
                reason = self.reason,
                "not reconciled: {}",
                self.message.lines().next().unwrap_or_default()
            );
            match write_status_json(ctx, obj, ar, next).await {
                // A stored object that no longer matches the CRD schema (written under an older
                // one) may not take a status either: then the Event is what reports it.
                Err(StatusError(kube::Error::Api(e))) if e.code == 422 => {
                    tracing::warn!(name = %obj.name_any(), "status not writable: {}", e.message);
                }
                other => other?,
            }
        }
        Ok(Outcome::with(
            Category::InvalidSpec,
            Action::requeue(ctx.resync),
        ))
    }
}

/// The status an InvalidSpec makes of `prev` (pure).
pub fn invalid_status(
    prev: &Json,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: k8s_openapi::jiff::Timestamp,
    extra: impl FnOnce(&mut serde_json::Map<String, Json>),
) -> Json {
    let now = state::now_secs(now);
    let mut s = prev.as_object().cloned().unwrap_or_default();
    let prev_conds: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> = prev
        .get("conditions")
        .cloned()
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    let mut conds: Vec<Json> = [state::READY, state::RECONCILED]
        .iter()
        .map(|t| {
            let c = state::condition(&prev_conds, t, false, reason, message, generation, now);
            serde_json::to_value(c).unwrap_or(Json::Null)
        })
        .collect();
    // Conditions of other types (a kind's own) are kept.
    conds.extend(
        prev_conds
            .iter()
            .filter(|c| c.type_ != state::READY && c.type_ != state::RECONCILED)
            .filter_map(|c| serde_json::to_value(c).ok()),
    );
    s.insert("conditions".into(), Json::Array(conds));
    match generation {
        Some(g) => s.insert("observedGeneration".into(), json!(g)),
        None => s.remove("observedGeneration"),
    };
    extra(&mut s);
    Json::Object(s)
}

// ---------------------------------------------------------------------------------------------
// children

/// The kinds a resource's children can be, for watching and pruning: the one list.
pub fn child_kinds() -> [ApiResource; 6] {
    [
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<ServiceAccount>(&()),
        ApiResource::erase::<NetworkPolicy>(&()),
        ApiResource::erase::<HorizontalPodAutoscaler>(&()),
        ApiResource::erase::<PodDisruptionBudget>(&()),
    ]
}

/// Children rendered and owned, not yet sent.
pub struct Prepared;
/// Children the API server has answered for.
pub struct Applied;

/// The children of one resource, as rendered (with the owner reference) and, once applied,
/// with the API server's answers. Status is written only from `Children<Applied>`.
pub struct Children<S> {
    bodies: Vec<Json>,
    answers: Vec<Result<Option<Json>, ApplyError>>,
    owner_uid: String,
    _state: PhantomData<S>,
}

impl Children<Prepared> {
    /// The bundle's children, owned by `obj`; `None` while `obj` has no uid yet.
    pub fn prepare(bundle: &Bundle, obj: &DynamicObject, ar: &ApiResource) -> Option<Self> {
        let owner = owner_reference(obj, ar)?;
        let bodies = bundle
            .objects
            .iter()
            .filter(|o| o.role == Role::Child)
            .map(|o| super::with_owner(&o.body, &owner))
            .collect();
        Some(Children {
            bodies,
            answers: Vec::new(),
            owner_uid: obj.metadata.uid.clone().unwrap_or_default(),
            _state: PhantomData,
        })
    }

    /// Changes the rendered children of `kind` before they are sent.
    pub fn edit(mut self, kind: &str, f: impl Fn(&mut Json)) -> Self {
        for b in self
            .bodies
            .iter_mut()
            .filter(|b| b.get("kind").and_then(Json::as_str) == Some(kind))
        {
            f(b);
        }
        self
    }

    /// Step 2: server-side applies every child at once, but for those unchanged on both sides
    /// since our last apply (see [`super::applied`]): their last answer stands.
    pub async fn apply(
        self,
        applier: &Applier,
        cache: &AppliedCache,
        metrics: &Metrics,
    ) -> Children<Applied> {
        let count = |result: &'static str| {
            metrics
                .child_applies
                .get_or_create(&ApplyLabels { result })
                .inc();
        };
        let answers = join_all(self.bodies.iter().map(|c| async move {
            let hash = super::applied::intent_hash(c);
            if let Some(answer) = cache.reuse(c, hash) {
                count("skipped");
                return Ok(Some(answer));
            }
            let r = applier.apply(c, false).await;
            match &r {
                Ok(change) => {
                    count(match change.action {
                        crate::apply::Action::Unchanged | crate::apply::Action::Delegated => {
                            "unchanged"
                        }
                        _ => "written",
                    });
                    match &change.result {
                        Some(answer) => cache.applied(c, hash, answer),
                        None => cache.failed(c),
                    }
                }
                Err(_) => {
                    count("failed");
                    cache.failed(c);
                }
            }
            r.map(|change| change.result)
        }))
        .await;
        Children {
            bodies: self.bodies,
            answers,
            owner_uid: self.owner_uid,
            _state: PhantomData,
        }
    }
}

impl Children<Applied> {
    /// The API server's answer for the child of `kind` (the object as stored).
    pub fn applied(&self, kind: &str) -> Option<&Json> {
        self.bodies
            .iter()
            .zip(&self.answers)
            .find(|(b, _)| b.get("kind").and_then(Json::as_str) == Some(kind))
            .and_then(|(_, a)| a.as_ref().ok()?.as_ref())
    }

    /// The child of `kind` as rendered and sent (the intent the answer is compared with).
    pub fn intent(&self, kind: &str) -> Option<&Json> {
        self.bodies
            .iter()
            .find(|b| b.get("kind").and_then(Json::as_str) == Some(kind))
    }

    /// Why applying failed (category, message), when anything did.
    pub fn failure(&self) -> Option<(Category, String)> {
        let errors: Vec<&ApplyError> = self
            .answers
            .iter()
            .filter_map(|a| a.as_ref().err())
            .collect();
        if errors.is_empty() {
            return None;
        }
        let category = if errors.iter().any(|e| e.is_conflict()) {
            Category::Conflict
        } else {
            Category::ApplyFailed
        };
        let message = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        Some((category, message))
    }

    /// Deletes this owner's children (by owner uid, among those labelled `selector`) that are no
    /// longer rendered. The one pruning of children by owner.
    pub async fn prune(
        &self,
        ctx: &Ctx,
        namespace: &str,
        selector: &str,
    ) -> Result<(), PruneError> {
        let keep: HashSet<(&str, &str)> = self
            .bodies
            .iter()
            .filter_map(|c| {
                Some((
                    c.get("kind")?.as_str()?,
                    c.pointer("/metadata/name")?.as_str()?,
                ))
            })
            .collect();
        for ar in child_kinds() {
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, &ar);
            let list = api
                .list(&ListParams::default().labels(selector))
                .await
                .map_err(|source| PruneError::List {
                    kind: ar.kind.clone(),
                    source,
                })?;
            for o in list.items {
                let ours = o
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == self.owner_uid);
                let name = o.name_any();
                if ours && !keep.contains(&(ar.kind.as_str(), name.as_str())) {
                    let key = ObjectKey {
                        api_version: ar.api_version.clone(),
                        kind: ar.kind.clone(),
                        namespace: Some(namespace.to_string()),
                        name,
                    };
                    ctx.applier.delete(&key, false).await?;
                    tracing::info!(object = %key.id(), "pruned a child no longer rendered");
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// status

/// Writes a status: a merge patch of the status subresource (the controller owns all of it).
pub async fn write_status_json(
    ctx: &Ctx,
    obj: &DynamicObject,
    ar: &ApiResource,
    status: Json,
) -> Result<(), StatusError> {
    use kube::api::{Patch, PatchParams};
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, ar);
    // A merge patch, not server-side apply: apply needs the stored object to match the schema,
    // and the status of one that does not (written under an older CRD) is exactly what matters.
    // Fields of the old status that are gone are set to null.
    let mut status = status;
    if let (Some(new), Some(old)) = (
        status.as_object_mut(),
        obj.data.get("status").and_then(Json::as_object),
    ) {
        for k in old.keys() {
            if !new.contains_key(k) {
                new.insert(k.clone(), Json::Null);
            }
        }
    }
    api.patch_status(
        &obj.name_any(),
        &PatchParams {
            field_manager: Some(super::FIELD_MANAGER.into()),
            ..PatchParams::default()
        },
        &Patch::Merge(&json!({"status": status})),
    )
    .await?;
    ctx.wrote("status");
    Ok(())
}

/// Writes the status made from applied children (the typestate is the proof they were applied).
pub async fn write_status<T: serde::Serialize>(
    ctx: &Ctx,
    obj: &DynamicObject,
    ar: &ApiResource,
    _children: &Children<Applied>,
    status: &T,
) -> Result<(), StatusError> {
    write_status_json(
        ctx,
        obj,
        ar,
        serde_json::to_value(status).unwrap_or(Json::Null),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn an_invalid_spec_sets_both_conditions_and_keeps_the_rest() {
        let prev = json!({"state": "Ready", "conditions": [
            {"type": "Ready", "status": "True", "reason": "Healthy", "message": "",
             "lastTransitionTime": "1970-01-01T00:00:10Z"},
            {"type": "Synced", "status": "True", "reason": "Synced", "message": "",
             "lastTransitionTime": "1970-01-01T00:00:10Z"}]});
        let s = invalid_status(&prev, "InvalidSpec", "bad", Some(3), at(100), |m| {
            m.insert("extra".into(), json!(1));
        });
        assert_eq!(s["state"], "Ready", "what runs is kept");
        assert_eq!(s["observedGeneration"], 3);
        assert_eq!(s["extra"], 1);
        let conds = s["conditions"].as_array().cloned().unwrap_or_default();
        let find = |t: &str| conds.iter().find(|c| c["type"] == t).cloned();
        assert_eq!(
            find("Ready").map(|c| c["reason"].clone()),
            Some(json!("InvalidSpec"))
        );
        assert_eq!(
            find("Reconciled").map(|c| c["status"].clone()),
            Some(json!("False"))
        );
        assert!(find("Synced").is_some());
        // Unchanged input, unchanged output: nothing is written twice.
        assert_eq!(
            invalid_status(&s, "InvalidSpec", "bad", Some(3), at(200), |m| {
                m.insert("extra".into(), json!(1));
            }),
            s
        );
    }

    #[test]
    fn only_ok_is_ok() {
        assert_eq!(Category::Ok.result(), "ok");
        for c in [
            Category::Conflict,
            Category::InvalidSpec,
            Category::ApplyFailed,
            Category::Api,
        ] {
            assert_eq!(c.result(), "error", "{c:?}");
        }
    }
}
