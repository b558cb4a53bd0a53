//! Reconciling one MCPServer, as a pipeline (see [`super::pipeline`]): compiled -> children
//! applied (owner references) and orphans pruned -> observe (health) -> decide (pure, in
//! [`super::decide`]) -> status (only when it changed), Events and metrics.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::controller::Action;
use serde_json::{Value as Json, json};

use super::decide;
use super::metrics::ServerLabels;
use super::pipeline::{
    self, Applied, Category, Children, InvalidSpec, Outcome, PruneError, StatusError,
};
use super::probes::Plan;
use super::state::{self, Workload};
use super::{Ctx, Error, event, event_of};
use crate::api::Kind;
use crate::api::server::{MCPServerStatus, Mode, ServerState};
use crate::compile::render::labels::SERVER_LABEL;
use crate::compile::settings::ServerSettings;

pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    super::measured(&ctx, "MCPServer", &obj, reconcile_server(&obj, &ctx)).await
}

/// compiled -> children applied (and pruned) -> observe -> decide -> status.
async fn reconcile_server(obj: &DynamicObject, ctx: &Ctx) -> Result<Outcome, Error> {
    if obj.metadata.deletion_timestamp.is_some() {
        return Ok(Outcome::ok(Action::await_change()));
    }
    let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    if let Some(why) = ctx.scope.refusal(&ns) {
        let refused = InvalidSpec::not_managed(why);
        return Ok(refused.report(ctx, obj, &ctx.server_ar, |_| {}).await?);
    }
    if let Ok(mut t) = ctx.tracked.lock() {
        t.insert((ns.clone(), name.clone()));
    }
    let prev: MCPServerStatus = state::prev_status(obj);
    let generation = obj.metadata.generation;
    let now = (ctx.clock)();

    // 1. compiled
    let compiled = match pipeline::compiled(obj, Kind::Server).await {
        Ok(c) => c,
        Err(invalid) => return Ok(invalid.report(ctx, obj, &ctx.server_ar, |_| {}).await?),
    };
    let Some(set) = compiled.decided.servers.get(&compiled.key) else {
        return Ok(Outcome::ok(Action::requeue(ctx.resync)));
    };
    // 2. children
    let held = decide::strict_hold(&prev, generation, set.validation.strict);
    let Some(children) = Children::prepare(&compiled.bundle, obj, &ctx.server_ar) else {
        return Ok(Outcome::with(
            Category::NotReady,
            Action::requeue(Duration::from_secs(1)),
        ));
    };
    let children = children
        .edit("Deployment", |d| {
            if held {
                d["spec"]["replicas"] = json!(0);
            }
        })
        .apply(&ctx.applier, &ctx.applied, &ctx.metrics)
        .await;
    prune_once_per_spec(ctx, obj, &prev, &children).await?;
    // 3. observe
    let observation = observe(ctx, obj, set, &children, held).await;
    // 4. decide
    let mut decision = decide::server(&prev, set, observation, ctx.resync, now);
    decision.status.gateway_endpoint = ctx
        .gateway_url
        .as_deref()
        .map(|u| super::gateway_endpoint(u, "servers", &ns, &name));
    // 5. status
    report(ctx, obj, &prev, &decision, &children, set).await?;
    let category = children.failure().map_or(Category::Ok, |(c, _)| c);
    Ok(Outcome::with(category, Action::requeue(decision.requeue)))
}

/// Children no longer rendered (mode changed, HPA turned off...) go, once per spec change.
async fn prune_once_per_spec(
    ctx: &Ctx,
    obj: &DynamicObject,
    prev: &MCPServerStatus,
    children: &Children<Applied>,
) -> Result<(), PruneError> {
    let uid = obj.metadata.uid.clone().unwrap_or_default();
    let first = ctx.swept.lock().map(|mut s| s.insert(uid)).unwrap_or(true);
    if !first && prev.observed_generation == obj.metadata.generation {
        return Ok(());
    }
    let selector = format!(
        "{SERVER_LABEL}={},app.kubernetes.io/managed-by=hangar",
        obj.name_any()
    );
    children
        .prune(ctx, &obj.namespace().unwrap_or_default(), &selector)
        .await
}

/// Step 3: everything a check reads: the Deployment's answer, and the latest health check.
async fn observe(
    ctx: &Ctx,
    obj: &DynamicObject,
    set: &ServerSettings,
    children: &Children<Applied>,
    held: bool,
) -> decide::ServerObservation {
    let deployment = children.applied("Deployment");
    let workload = deployment.map(|d| {
        let n = |p: &str| d.pointer(p).and_then(Json::as_i64).unwrap_or(0) as i32;
        Workload {
            replicas: n("/status/replicas"),
            ready: n("/status/readyReplicas"),
            available: n("/status/availableReplicas"),
        }
    });
    let deployment_replicas = deployment
        .and_then(|d| d.pointer("/spec/replicas").and_then(Json::as_i64))
        .map(|r| r as i32);
    let desired = set.desired_replicas(deployment_replicas);
    let probed = decide::should_probe(set, ctx.probe_services, desired, workload.as_ref(), held);
    let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    // Never waits on a probe: the latest finished check, its next one due on its own.
    let (check, check_pending) = match probed {
        false => {
            ctx.probes.stop(&ns, &name);
            (None, false)
        }
        true if !set.health.enabled => {
            ctx.probes.stop(&ns, &name);
            let disabled = state::Check {
                ok: true,
                message: "health checks disabled".into(),
                ..Default::default()
            };
            (Some(disabled), false)
        }
        true => match ctx.probes.latest(&ns, &name, &Plan::of(set)) {
            Some(c) => (Some(c), false),
            None => (None, true),
        },
    };
    let short = workload.as_ref().is_none_or(|w| w.ready < desired);
    let pod_problem = match set.mode {
        Mode::Container if desired > 0 && short => pod_problem(ctx, &ns, &name).await,
        _ => None,
    };
    decide::ServerObservation {
        generation: obj.metadata.generation,
        pod_problem,
        workload,
        deployment_replicas,
        held,
        probed,
        check,
        check_pending,
        apply_error: children.failure().map(|(c, m)| (c.reason().to_string(), m)),
        foreign: foreign(children),
    }
}

/// Why the server's pods are not ready (one LIST of its pods, only while it is short of ready
/// replicas). A LIST that fails (a controller without `list pods`, an outage) finds nothing: the
/// state then says what the Deployment says, as before.
async fn pod_problem(ctx: &Ctx, ns: &str, name: &str) -> Option<super::pods::PodProblem> {
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(ctx.client.clone(), ns);
    let lp = kube::api::ListParams::default().labels(&format!("{}={name}", SERVER_LABEL));
    match api.list(&lp).await {
        Ok(pods) => super::pods::problem(&pods.items),
        Err(e) => {
            tracing::debug!(namespace = ns, server = name, error = %e, "listing the server's pods failed");
            None
        }
    }
}

/// What another manager added to the Deployment that changes what runs, as a message.
fn foreign(children: &Children<Applied>) -> Option<String> {
    let (intent, live) = (
        children.intent("Deployment")?,
        children.applied("Deployment")?,
    );
    let changes = super::drift::foreign_changes(intent, live);
    if changes.is_empty() {
        return None;
    }
    let managers =
        super::drift::template_managers(live, &[super::FIELD_MANAGER, crate::apply::FIELD_MANAGER]);
    Some(super::drift::message(&changes, &managers))
}

/// Step 5: status (only when it changed), an Event per transition and per apply failure, and
/// the server's metrics.
async fn report(
    ctx: &Ctx,
    obj: &DynamicObject,
    prev: &MCPServerStatus,
    d: &decide::ServerDecision,
    children: &Children<Applied>,
    set: &ServerSettings,
) -> Result<(), StatusError> {
    let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    let next = &d.status;
    if next != prev {
        pipeline::write_status(ctx, obj, &ctx.server_ar, children, next).await?;
    }
    if let Some(t) = &d.transition {
        let warn = matches!(t.to, ServerState::Degraded | ServerState::Dead);
        let from = t.from.map(|s| s.as_str()).unwrap_or("new");
        let note = format!("{from} -> {}: {} ({})", t.to.as_str(), t.message, t.reason);
        if warn {
            tracing::info!(namespace = %ns, server = %name, "{note}");
        }
        let action = format!(
            "{}To{}",
            t.from.map(|s| s.as_str()).unwrap_or("New"),
            t.to.as_str()
        );
        ctx.event(
            obj,
            &ctx.server_ar,
            event_of(warn, t.to.as_str(), &action, &note),
        )
        .await;
    }
    let reconciled = |s: &MCPServerStatus| {
        s.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == state::RECONCILED)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    if let Some((c, m)) = children.failure()
        && reconciled(prev) != reconciled(next)
    {
        let reason = c.reason();
        tracing::info!(namespace = %ns, server = %name, reason, "applying children failed: {m}");
        ctx.event(obj, &ctx.server_ar, event(true, reason, &m))
            .await;
    }
    let foreign = |s: &MCPServerStatus| {
        s.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == state::FOREIGN_CHANGES)
            .map(|c| (c.status == "True", c.message.clone()))
    };
    match (foreign(prev), foreign(next)) {
        (was, Some((true, m))) if was.as_ref() != Some(&(true, m.clone())) => {
            tracing::warn!(namespace = %ns, server = %name, "{m}");
            ctx.event(obj, &ctx.server_ar, event(true, "ForeignChanges", &m))
                .await;
        }
        (Some((true, _)), Some((false, m))) => {
            ctx.event(obj, &ctx.server_ar, event(false, "ForeignChangesGone", &m))
                .await;
        }
        _ => {}
    }
    let state_now = next.state.unwrap_or(ServerState::Initializing);
    ctx.metrics.set_state(&ns, &name, state_now);
    ctx.metrics
        .set_seed_status(&ns, &name, prev, next, set.autoscaling.is_some());
    let labels = ServerLabels {
        namespace: ns,
        name,
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
    Ok(())
}
