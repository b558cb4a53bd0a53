//! Reconciling one MCPServer: compile -> apply children (owner references) -> prune orphans ->
//! health -> status (only when it changed) -> Events and metrics.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::Action;
use serde_json::{Value as Json, json};

use super::health::Target;
use super::metrics::ServerLabels;
use super::state::{self, Observed, Workload};
use super::{Ctx, Error, compile_input, event, owner_reference, with_owner};
use crate::api::server::{MCPServerStatus, Mode, ServerState};
use crate::compile::render::labels::SERVER_LABEL;
use crate::compile::{Role, compile};

pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    super::measured(&ctx, "MCPServer", reconcile_server(&obj, &ctx)).await
}

/// Kinds a server's children can have, for pruning.
fn child_kinds() -> Vec<ApiResource> {
    vec![
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<ServiceAccount>(&()),
        ApiResource::erase::<NetworkPolicy>(&()),
        ApiResource::erase::<HorizontalPodAutoscaler>(&()),
        ApiResource::erase::<PodDisruptionBudget>(&()),
    ]
}

async fn reconcile_server(obj: &DynamicObject, ctx: &Ctx) -> Result<Action, Error> {
    if obj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    if let Ok(mut t) = ctx.tracked.lock() {
        t.insert((ns.clone(), name.clone()));
    }
    let prev: MCPServerStatus = state::prev_status(obj);
    let generation = obj.metadata.generation;
    let now = (ctx.clock)();

    let compiled = compile(&compile_input(obj, "MCPServer"));
    let Some(bundle) = compiled.bundle.as_ref() else {
        // The spec does not compile: say so in status, keep what runs.
        let text = compiled.render_diagnostics();
        let mut s = prev.clone();
        s.observed_generation = generation;
        let msg = state::truncate(text.trim(), 1000);
        let prev_conds = prev.conditions.as_deref().unwrap_or_default();
        s.conditions = Some(vec![
            state::condition(
                prev_conds,
                state::READY,
                false,
                "InvalidSpec",
                &msg,
                generation,
                state::now_secs(now),
            ),
            state::condition(
                prev_conds,
                state::RECONCILED,
                false,
                "InvalidSpec",
                &msg,
                generation,
                state::now_secs(now),
            ),
        ]);
        if s != prev {
            ctx.event(obj, &ctx.server_ar, event(true, "InvalidSpec", &msg))
                .await;
            match write_status(ctx, obj, &s).await {
                // A stored object that no longer matches the CRD schema (written under an older
                // one) may not take a status either: then the Event is what reports it.
                Err(Error::Kube(kube::Error::Api(e))) if e.code == 422 => {
                    tracing::warn!(server = %name, namespace = %ns, "status not writable: {}", e.message);
                }
                other => other?,
            }
        }
        return Ok(Action::requeue(ctx.resync));
    };
    let Some(set) = compiled.decided.servers.get(&(ns.clone(), name.clone())) else {
        return Ok(Action::requeue(ctx.resync));
    };
    let Some(owner) = owner_reference(obj, &ctx.server_ar) else {
        return Ok(Action::requeue(Duration::from_secs(1)));
    };

    // Strict mode holds a server found non-compliant until its spec changes: the Ready condition
    // says NonCompliant for this generation. A held container server runs no replicas.
    let strict = set.validation.strict;
    let held = strict
        && prev.observed_generation == generation
        && prev
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == state::READY && c.reason == state::NON_COMPLIANT);
    let remote = set.mode == Mode::Remote;

    // Apply the children.
    let children: Vec<Json> = bundle
        .objects
        .iter()
        .filter(|o| o.role == Role::Child)
        .map(|o| {
            let mut b = with_owner(&o.body, &owner);
            if held && o.kind == "Deployment" {
                b["spec"]["replicas"] = json!(0);
            }
            b
        })
        .collect();
    let results = join_all(children.iter().map(|c| ctx.applier.apply(c, false))).await;
    let mut errors = Vec::new();
    let mut deployment: Option<Json> = None;
    for (c, r) in children.iter().zip(results) {
        match r {
            Ok(change) => {
                if c.get("kind").and_then(Json::as_str) == Some("Deployment") {
                    deployment = change.result;
                }
            }
            Err(e) => errors.push(e),
        }
    }
    let apply_error = if errors.is_empty() {
        None
    } else {
        let conflict = errors.iter().any(|e| e.is_conflict());
        let msg = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        Some((
            if conflict { "Conflict" } else { "ApplyFailed" }.to_string(),
            msg,
        ))
    };

    // Children no longer rendered (mode changed, HPA turned off...): once per spec change.
    let uid = obj.metadata.uid.clone().unwrap_or_default();
    let first = ctx
        .swept
        .lock()
        .map(|mut s| s.insert(uid.clone()))
        .unwrap_or(true);
    if first || prev.observed_generation != generation {
        let keep: HashSet<(String, String)> = children
            .iter()
            .filter_map(|c| {
                Some((
                    c.get("kind")?.as_str()?.to_string(),
                    c.pointer("/metadata/name")?.as_str()?.to_string(),
                ))
            })
            .collect();
        prune_children(ctx, &ns, &name, &uid, &keep).await?;
    }

    // Health.
    let interval = set.health.interval;
    let workload = deployment.as_ref().map(|d| {
        let n = |p: &str| d.pointer(p).and_then(Json::as_i64).unwrap_or(0) as i32;
        Workload {
            replicas: n("/status/replicas"),
            ready: n("/status/readyReplicas"),
            available: n("/status/availableReplicas"),
        }
    });
    let desired = set.desired_replicas(
        deployment
            .as_ref()
            .and_then(|d| d.pointer("/spec/replicas").and_then(Json::as_i64))
            .map(|r| r as i32),
    );
    let endpoint = Some(set.url.clone()).filter(|u| !u.is_empty());
    // Health: a remote endpoint always; a container server through its Service once a replica
    // is ready (unless the controller runs where Services are not reachable).
    let has_ready = workload.as_ref().is_some_and(|w| w.ready > 0);
    let probed = remote || (ctx.probe_services && desired > 0 && has_ready && !held);
    let check = if !probed {
        None
    } else if !set.health.enabled {
        Some(state::Check {
            ok: true,
            message: "health checks disabled".into(),
            ..Default::default()
        })
    } else {
        match probe_headers(ctx, &ns, set.validation.auth.as_ref()).await {
            Ok(headers) => {
                let target = Target {
                    url: set.url.clone(),
                    timeout: set.health.timeout,
                    headers,
                };
                // Bounded: at most --probe-concurrency checks run at once.
                let _slot = ctx.probe_slots.acquire().await.ok();
                Some(ctx.prober.check(&target).await)
            }
            Err(message) => Some(state::Check {
                ok: false,
                message,
                ..Default::default()
            }),
        }
    };
    // Required capabilities: a compliant server that lacks one is not healthy.
    let check = check.map(|mut c| {
        let announced: Vec<String> = c
            .validation
            .as_ref()
            .and_then(|v| v.capabilities.clone())
            .unwrap_or_default();
        let missing: Vec<String> = set
            .validation
            .required_capabilities
            .iter()
            .filter_map(|cap| serde_json::to_value(cap).ok()?.as_str().map(str::to_string))
            .filter(|cap| !announced.contains(cap))
            .collect();
        if c.ok && !missing.is_empty() {
            c.ok = false;
            c.message = format!("missing required capabilities: {}", missing.join(", "));
            if let Some(v) = c.validation.as_mut() {
                v.compliant = Some(false);
                v.message = Some(c.message.clone());
            }
        }
        c
    });
    // A protocol-level verdict (it answered, but not as required), not an outage, trips strict mode.
    let hold = if held {
        Some(format!(
            "held by validation.strictMode{}: {}",
            if remote { "" } else { " (scaled to zero)" },
            prev.validation
                .as_ref()
                .and_then(|v| v.message.clone())
                .unwrap_or_else(|| "not compliant".into())
        ))
    } else {
        check
            .as_ref()
            .filter(|c| {
                strict
                    && !c.ok
                    && c.validation.as_ref().is_some_and(|v| {
                        v.compliant == Some(false)
                            && v.requires_auth != Some(true)
                            && v.protocol_version.is_some()
                    })
            })
            .map(|c| format!("held by validation.strictMode: {}", c.message))
    };
    // A remote server is not scaled: it leaves the hold as soon as it passes again.
    let remote_recovered = remote && check.as_ref().is_some_and(|c| c.ok);
    let observed = Observed {
        generation,
        remote,
        desired,
        workload,
        check,
        apply_error,
        hold: if remote_recovered { None } else { hold },
        endpoint,
        startup_timeout: set.startup_timeout,
        failure_threshold: set.health.failure_threshold,
        interval,
    };
    let (next, transition) = state::next(&prev, &observed, now);

    // Status, events, metrics.
    if next != prev {
        write_status(ctx, obj, &next).await?;
    }
    if let Some(t) = &transition {
        let warn = matches!(t.to, ServerState::Degraded | ServerState::Dead);
        let from = t.from.map(|s| s.as_str()).unwrap_or("new");
        ctx.event(
            obj,
            &ctx.server_ar,
            event(
                warn,
                t.to.as_str(),
                &format!("{from} -> {}: {} ({})", t.to.as_str(), t.message, t.reason),
            ),
        )
        .await;
    }
    let rec_changed = |s: &MCPServerStatus| {
        s.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == state::RECONCILED)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    if let Some((r, m)) = &observed.apply_error
        && rec_changed(&prev) != rec_changed(&next)
    {
        ctx.event(obj, &ctx.server_ar, event(true, r, m)).await;
    }
    let state_now = next.state.unwrap_or(ServerState::Initializing);
    ctx.metrics.set_state(&ns, &name, state_now);
    let labels = ServerLabels {
        namespace: ns.clone(),
        name: name.clone(),
    };
    ctx.metrics
        .tools_count
        .get_or_create(&labels)
        .set(i64::from(next.tools_count.unwrap_or(0)));
    let (pf, nf) = (
        prev.consecutive_failures.unwrap_or(0),
        next.consecutive_failures.unwrap_or(0),
    );
    if nf > pf {
        ctx.metrics
            .health_check_failures
            .get_or_create(&labels)
            .inc_by(u64::try_from(nf - pf).unwrap_or(0));
    }

    Ok(match state_now {
        _ if probed => Action::requeue(interval),
        ServerState::Initializing => {
            let started = next
                .last_started_at
                .as_ref()
                .map(|t| now.duration_since(t.0).as_secs().max(0) as u64)
                .unwrap_or(0);
            let left = observed.startup_timeout.as_secs().saturating_sub(started) + 1;
            Action::requeue(Duration::from_secs(left).min(interval))
        }
        ServerState::Degraded | ServerState::Dead => Action::requeue(interval),
        ServerState::Ready | ServerState::Cold => Action::requeue(ctx.resync),
    })
}

/// Server-side applies the status subresource (the controller owns all of it).
pub async fn write_status(
    ctx: &Ctx,
    obj: &DynamicObject,
    status: &MCPServerStatus,
) -> Result<(), Error> {
    write_status_json(
        ctx,
        obj,
        &ctx.server_ar,
        serde_json::to_value(status).unwrap_or(Json::Null),
    )
    .await
}

pub async fn write_status_json(
    ctx: &Ctx,
    obj: &DynamicObject,
    ar: &ApiResource,
    status: Json,
) -> Result<(), Error> {
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

/// Deletes children of this server (by owner uid) that are no longer rendered.
async fn prune_children(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    uid: &str,
    keep: &HashSet<(String, String)>,
) -> Result<(), Error> {
    let selector = format!("{SERVER_LABEL}={name},app.kubernetes.io/managed-by=hangar");
    for ar in child_kinds() {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
        let list = api.list(&ListParams::default().labels(&selector)).await?;
        for o in list.items {
            let ours = o
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid);
            if ours && !keep.contains(&(ar.kind.clone(), o.name_any())) {
                let key = crate::apply::ObjectKey {
                    api_version: ar.api_version.clone(),
                    kind: ar.kind.clone(),
                    namespace: Some(ns.to_string()),
                    name: o.name_any(),
                };
                ctx.applier.delete(&key, false).await?;
                tracing::info!(object = %key.id(), "pruned a child no longer rendered");
            }
        }
    }
    Ok(())
}

/// The header `validation.auth` asks the probe to send, its value read from the Secret now (so a
/// rotated credential is used at the next check). The error names the Secret and key, never the
/// value.
async fn probe_headers(
    ctx: &Ctx,
    ns: &str,
    auth: Option<&crate::compile::settings::ProbeAuth>,
) -> Result<http::HeaderMap, String> {
    let mut headers = http::HeaderMap::new();
    let Some(auth) = auth else {
        return Ok(headers);
    };
    let secret = &auth.secret;
    let key = auth.key.as_str();
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(ctx.client.clone(), ns);
    let found = match api.get_opt(secret).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(format!("validation.auth: Secret {ns}/{secret} not found")),
        Err(e) => {
            return Err(format!(
                "validation.auth: cannot read Secret {ns}/{secret}: {e}"
            ));
        }
    };
    let value = found
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| {
            found
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| format!("validation.auth: Secret {ns}/{secret} has no key `{key}`"))?;
    let value = String::from_utf8(value).map_err(|_| {
        format!("validation.auth: key `{key}` of Secret {ns}/{secret} is not UTF-8 text")
    })?;
    let value = value.trim();
    let scheme = auth.scheme.as_str();
    let text = if scheme.is_empty() {
        value.to_string()
    } else {
        format!("{scheme} {value}")
    };
    let name = http::HeaderName::from_bytes(auth.header.as_bytes())
        .map_err(|_| "validation.auth: `header` is not a valid HTTP header name".to_string())?;
    let mut v = http::HeaderValue::from_str(&text).map_err(|_| {
        format!("validation.auth: key `{key}` of Secret {ns}/{secret} is not a valid header value")
    })?;
    v.set_sensitive(true);
    headers.insert(name, v);
    Ok(headers)
}
