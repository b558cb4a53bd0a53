//! Reconciling one MCPServer, as a pipeline (see [`super::pipeline`]): compiled -> children
//! applied (owner references) and orphans pruned -> observe (health) -> decide (pure, in
//! [`super::decide`]) -> status (only when it changed), Events and metrics.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::Action;
use serde_json::{Value as Json, json};

use super::decide;
use super::health::Target;
use super::metrics::ServerLabels;
use super::pipeline::{
    self, Applied, Category, Children, InvalidSpec, Outcome, PruneError, StatusError,
};
use super::state::{self, Workload};
use super::{Ctx, Error, event, event_of};
use crate::api::Kind;
use crate::api::server::{MCPServerStatus, ServerState};
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
    let compiled = match pipeline::compiled(obj, Kind::Server) {
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
    let decision = decide::server(&prev, set, observation, ctx.resync, now);
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

/// Step 3: everything a check reads: the Deployment's answer, and the health check itself.
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
    let check = match probed {
        false => None,
        true if !set.health.enabled => Some(state::Check {
            ok: true,
            message: "health checks disabled".into(),
            ..Default::default()
        }),
        true => {
            let ns = obj.namespace().unwrap_or_default();
            let (check, took) = health_check(ctx, &ns, set).await;
            // Seed 002's validation series count a check as decide will see it (a missing
            // required capability fails it); TCP checks and unread Secrets are no validation.
            let check = decide::require_capabilities(check, &set.validation.required_capabilities);
            if let (Some(took), Some(_)) = (took, &check.validation) {
                ctx.metrics
                    .validated(&ns, &obj.name_any(), &check, took.as_secs_f64());
            }
            Some(check)
        }
    };
    decide::ServerObservation {
        generation: obj.metadata.generation,
        workload,
        deployment_replicas,
        held,
        probed,
        check,
        apply_error: children.failure().map(|(c, m)| (c.reason().to_string(), m)),
        foreign: foreign(children),
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

/// One health check of the server (bounded: at most --probe-concurrency run at once), and how
/// long the check itself took (none when it could not start: a Secret not read).
async fn health_check(
    ctx: &Ctx,
    ns: &str,
    set: &ServerSettings,
) -> (state::Check, Option<std::time::Duration>) {
    match probe_headers(ctx, ns, set.validation.auth.as_ref()).await {
        Ok(headers) => {
            let target = Target {
                url: set.url.clone(),
                timeout: set.health.timeout,
                headers,
            };
            let _slot = ctx.probe_slots.acquire().await.ok();
            let t0 = std::time::Instant::now();
            let check = ctx.prober.check(&target).await;
            (check, Some(t0.elapsed()))
        }
        Err(message) => {
            let check = state::Check {
                ok: false,
                message,
                ..Default::default()
            };
            (check, None)
        }
    }
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
        Err(e) if super::scope::is_forbidden(&e) => {
            return Err(format!(
                "validation.auth: {}",
                ctx.scope.secret_forbidden(ns, secret)
            ));
        }
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
