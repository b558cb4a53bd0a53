//! Reconciling one MCPServerGroup: its Service (same compile as `hangar render`), and a status
//! that counts its members by state.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::controller::Action;
use serde_json::Value as Json;

use super::server::write_status_json;
use super::state::{self, truncate};
use super::{Ctx, Error, compile_input, event, owner_reference, with_owner};
use crate::api::group::{GroupMember, MCPServerGroupStatus};
use crate::api::server::ServerState;
use crate::compile::check::selector_matches;
use crate::compile::{Role, compile};

pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    super::measured(&ctx, "MCPServerGroup", reconcile_group(&obj, &ctx)).await
}

async fn reconcile_group(obj: &DynamicObject, ctx: &Ctx) -> Result<Action, Error> {
    if obj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = obj.namespace().unwrap_or_default();
    let prev: MCPServerGroupStatus = state::prev_status(obj);
    let prev_conds = prev.conditions.as_deref().unwrap_or_default();
    let generation = obj.metadata.generation;
    let now = state::now_secs((ctx.clock)());

    let compiled = compile(&compile_input(obj, "MCPServerGroup"));
    let Some(bundle) = compiled.bundle.as_ref() else {
        let msg = truncate(compiled.render_diagnostics().trim(), 1000);
        let mut s = prev.clone();
        s.observed_generation = generation;
        s.conditions = Some(vec![state::condition(
            prev_conds,
            state::READY,
            false,
            "InvalidSpec",
            &msg,
            generation,
            now,
        )]);
        if s != prev {
            write_status_json(
                ctx,
                obj,
                &ctx.group_ar,
                serde_json::to_value(&s).unwrap_or(Json::Null),
            )
            .await?;
            ctx.event(obj, &ctx.group_ar, event(true, "InvalidSpec", &msg))
                .await;
        }
        return Ok(Action::requeue(ctx.resync));
    };
    let Some(group) = compiled.decided.groups.get(&(ns.clone(), obj.name_any())) else {
        return Ok(Action::requeue(ctx.resync));
    };
    let Some(owner) = owner_reference(obj, &ctx.group_ar) else {
        return Ok(Action::requeue(std::time::Duration::from_secs(1)));
    };
    let mut errors = Vec::new();
    for o in bundle.objects.iter().filter(|o| o.role == Role::Child) {
        if let Err(e) = ctx.applier.apply(&with_owner(&o.body, &owner), false).await {
            errors.push(e.to_string());
        }
    }

    // Members: servers of this namespace the selector matches.
    let servers: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &ctx.server_ar);
    let list = servers.list(&ListParams::default()).await?;
    let mut members: Vec<GroupMember> = list
        .items
        .iter()
        .filter(|s| {
            let labels: BTreeMap<String, String> = s.labels().clone();
            selector_matches(&group.selector, &labels)
        })
        .map(|s| GroupMember {
            name: s.name_any(),
            namespace: s.namespace(),
            state: s
                .data
                .pointer("/status/state")
                .cloned()
                .and_then(|v| serde_json::from_value::<ServerState>(v).ok()),
            ..GroupMember::default()
        })
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    let count = |st: ServerState| members.iter().filter(|m| m.state == Some(st)).count() as i32;
    let total = members.len() as i32;
    let ready = count(ServerState::Ready);
    let policy = &group.health;
    let (min_pct, min_count) = (policy.min_healthy_percentage, policy.min_healthy_count);
    let healthy = policy.healthy(ready, total);
    let msg = format!("{ready}/{total} members ready (needs {min_pct}% and at least {min_count})");
    let mut conds = vec![state::condition(
        prev_conds,
        state::READY,
        healthy,
        if healthy { "Healthy" } else { "Unhealthy" },
        &msg,
        generation,
        now,
    )];
    let (applied, reason, message) = if errors.is_empty() {
        (true, "Applied", "all objects applied".to_string())
    } else {
        (false, "ApplyFailed", errors.join("; "))
    };
    conds.push(state::condition(
        prev_conds,
        state::RECONCILED,
        applied,
        reason,
        &message,
        generation,
        now,
    ));
    let next = MCPServerGroupStatus {
        provider_count: Some(total),
        ready_count: Some(ready),
        degraded_count: Some(count(ServerState::Degraded)),
        cold_count: Some(count(ServerState::Cold)),
        dead_count: Some(count(ServerState::Dead)),
        providers: Some(members),
        active_strategy: Some(group.strategy),
        healthy: Some(healthy),
        observed_generation: generation,
        conditions: Some(conds),
    };
    if next != prev {
        write_status_json(
            ctx,
            obj,
            &ctx.group_ar,
            serde_json::to_value(&next).unwrap_or(Json::Null),
        )
        .await?;
        if prev.healthy != Some(healthy) {
            ctx.event(
                obj,
                &ctx.group_ar,
                event(
                    !healthy,
                    if healthy { "Healthy" } else { "Unhealthy" },
                    &msg,
                ),
            )
            .await;
        }
    }
    Ok(Action::requeue(ctx.resync))
}
