//! Labels and annotations hangar puts on what it renders.

use std::collections::BTreeMap;

pub const MANAGED_BY: &str = "hangar";
/// Names the MCPServer an object belongs to; also the pod selector of its Deployment and Service.
pub const SERVER_LABEL: &str = "mcp-hangar.io/server";
/// Names the MCPServerGroup an object belongs to.
pub const GROUP_LABEL: &str = "mcp-hangar.io/group";
/// On every MCP server pod (the seed's isolation NetworkPolicy selects on it).
pub const MCP_SERVER_POD_LABEL: &str = "mcp-hangar.io/mcp_server";
/// Put on every object by `hangar apply`: the inventory it belongs to (pruning looks for it).
pub const INVENTORY_LABEL: &str = "mcp-hangar.io/inventory";
pub const CONFIG_HASH_ANNOTATION: &str = "mcp-hangar.io/config-hash";
/// On a Deployment whose `spec.replicas` hangar leaves to another manager: `gateway` for an
/// on-demand server (started on its first request, stopped after `idleTTL`).
pub const SCALED_BY_ANNOTATION: &str = "mcp-hangar.io/scaled-by";
pub const SCALED_BY_GATEWAY: &str = "gateway";
/// On an on-demand server's Deployment: when a gateway last saw a request or an open stream
/// (RFC 3339), written by the gateways so that activity any replica sees counts.
pub const LAST_ACTIVITY_ANNOTATION: &str = "mcp-hangar.io/last-activity";
/// The field manager of the gateway's writes (scale, activity), and of the hand-over of an
/// on-demand Deployment's `spec.replicas` (see [`crate::apply`]).
pub const GATEWAY_MANAGER: &str = "hangar-gateway";
pub const COMPONENT_SERVER: &str = "mcp-server";
pub const COMPONENT_GROUP: &str = "mcp-server-group";

/// The standard labels of an object that belongs to `owner`.
pub fn standard(owner: &str, component: &str, owner_label: &str) -> BTreeMap<String, String> {
    standard_pairs(owner, component, owner_label)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The entries of [`standard`], in key order.
pub fn standard_pairs<'a>(
    owner: &'a str,
    component: &'a str,
    owner_label: &'a str,
) -> [(&'a str, &'a str); 6] {
    let mut pairs = [
        ("app.kubernetes.io/name", owner),
        ("app.kubernetes.io/instance", owner),
        ("app.kubernetes.io/component", component),
        ("app.kubernetes.io/part-of", "hangar"),
        ("app.kubernetes.io/managed-by", MANAGED_BY),
        (owner_label, owner),
    ];
    pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    pairs
}
