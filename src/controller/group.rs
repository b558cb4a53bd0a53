//! Reconciling one MCPServerGroup, as a pipeline (see [`super::pipeline`]): its Service (same
//! compile as `hangar render`), and a status that counts its members by state.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::controller::Action;

use super::decide;
use super::pipeline::{self, Category, Children, InvalidSpec, ObserveError, Outcome};
use super::state;
use super::{Ctx, Error, event};
use crate::api::Kind;
use crate::api::group::{GroupMember, MCPServerGroupStatus};
use crate::api::server::ServerState;
use crate::compile::check::selector_matches;
use crate::compile::settings::GroupSettings;

pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    super::measured(&ctx, "MCPServerGroup", &obj, reconcile_group(&obj, &ctx)).await
}

/// compiled -> children applied -> observe (members) -> decide -> status.
async fn reconcile_group(obj: &DynamicObject, ctx: &Ctx) -> Result<Outcome, Error> {
    if obj.metadata.deletion_timestamp.is_some() {
        return Ok(Outcome::ok(Action::await_change()));
    }
    if let Some(why) = ctx.scope.refusal(&obj.namespace().unwrap_or_default()) {
        let refused = InvalidSpec::not_managed(why);
        return Ok(refused.report(ctx, obj, &ctx.group_ar, |_| {}).await?);
    }
    let prev: MCPServerGroupStatus = state::prev_status(obj);
    // 1. compiled
    let compiled = match pipeline::compiled(obj, Kind::Group).await {
        Ok(c) => c,
        Err(invalid) => return Ok(invalid.report(ctx, obj, &ctx.group_ar, |_| {}).await?),
    };
    let Some(set) = compiled.decided.groups.get(&compiled.key) else {
        return Ok(Outcome::ok(Action::requeue(ctx.resync)));
    };
    // 2. children
    let Some(children) = Children::prepare(&compiled.bundle, obj, &ctx.group_ar) else {
        return Ok(Outcome::with(
            Category::NotReady,
            Action::requeue(std::time::Duration::from_secs(1)),
        ));
    };
    let children = children
        .apply(&ctx.applier, &ctx.applied, &ctx.metrics)
        .await;
    // 3. observe
    let members = members(ctx, &compiled.key.0, set).await?;
    // 4. decide
    let errors: Vec<String> = children.failure().map(|(_, m)| m).into_iter().collect();
    let mut next = decide::group(
        &prev,
        set,
        members,
        &errors,
        obj.metadata.generation,
        (ctx.clock)(),
    );
    next.gateway_endpoint = ctx
        .gateway_url
        .as_deref()
        .map(|u| super::gateway_endpoint(u, "groups", &compiled.key.0, &compiled.key.1));
    // 5. status
    if next != prev {
        pipeline::write_status(ctx, obj, &ctx.group_ar, &children, &next).await?;
        let healthy = next.healthy == Some(true);
        if prev.healthy != Some(healthy) {
            let msg = decide::group_message(
                set,
                next.ready_count.unwrap_or(0),
                next.provider_count.unwrap_or(0),
            );
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
    let category = children.failure().map_or(Category::Ok, |(c, _)| c);
    Ok(Outcome::with(category, Action::requeue(ctx.resync)))
}

/// Step 3: the members, servers of the group's namespace that its selector matches.
async fn members(
    ctx: &Ctx,
    ns: &str,
    set: &GroupSettings,
) -> Result<Vec<GroupMember>, ObserveError> {
    let servers: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ctx.server_ar);
    let list = servers
        .list(&ListParams::default())
        .await
        .map_err(|source| ObserveError::List {
            what: "MCPServers",
            source,
        })?;
    Ok(list
        .items
        .iter()
        .filter(|s| selector_matches(&set.selector, s.labels()))
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
        .collect())
}
