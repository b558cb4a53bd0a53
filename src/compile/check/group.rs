//! Checks of one MCPServerGroup.

use super::*;

pub(super) fn check_group(g: &ResolvedGroup, resolved: &Resolved, diags: &mut Diagnostics) {
    let at = |path: &str| {
        let mut full = vec![Seg::Key("spec".into())];
        full.extend(p(path));
        g.node.span_at(&full)
    };
    check_selector(&g.spec.selector, &g.node, &p("spec.selector"), diags);
    let labels = g.spec.selector.match_labels.clone().unwrap_or_default();
    if labels.is_empty() {
        diags.push(
            Diagnostic::error("empty-selector", Some(at("selector")), format!("group `{}` needs `selector.matchLabels`: its Service selects member pods by those labels", g.meta.name))
                .hint("label the member MCPServers, e.g. `mcp-hangar.io/category: database`, and select on that"),
        );
    }
    if g.spec
        .selector
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        diags.push(
            Diagnostic::warning("selector-expressions", Some(at("selector.matchExpressions")), "a Service can only select by matchLabels; matchExpressions narrow the group's status, not its Service")
                .hint("express membership with matchLabels if traffic must follow it"),
        );
    }
    if let Some(f) = &g.spec.failover {
        duration(
            at("failover.retryDelay"),
            "failover.retryDelay",
            f.retry_delay.as_deref(),
            diags,
        );
    }
    if let Some(c) = &g.spec.circuit_breaker {
        duration(
            at("circuitBreaker.resetTimeout"),
            "circuitBreaker.resetTimeout",
            c.reset_timeout.as_deref(),
            diags,
        );
    }
    if let Some(a) = &g.spec.session_affinity {
        duration(
            at("sessionAffinity.ttl"),
            "sessionAffinity.ttl",
            a.ttl.as_deref(),
            diags,
        );
        if a.enabled == Some(true)
            && a.type_ == Some(AffinityType::Header)
            && a.header.as_deref().is_none_or(str::is_empty)
        {
            diags.push(Diagnostic::error(
                "missing-field",
                Some(at("sessionAffinity")),
                "sessionAffinity of type Header needs `header`",
            ));
        }
    }
    if let Some(hp) = &g.spec.health_policy {
        if let (Some(min), true) = (hp.min_healthy_count, !labels.is_empty()) {
            let members = resolved
                .servers
                .iter()
                .filter(|s| {
                    s.meta.namespace == g.meta.namespace
                        && selector_matches(&g.spec.selector, &s.meta.labels)
                })
                .count();
            if members > 0 && min as usize > members {
                diags.push(Diagnostic::warning(
                    "unreachable-health-policy",
                    Some(at("healthPolicy.minHealthyCount")),
                    format!(
                        "minHealthyCount {min} is more than the {members} members among the inputs"
                    ),
                ));
            }
        }
    }
    if labels.is_empty() {
        return;
    }
    let members: Vec<&ResolvedServer> = resolved
        .servers
        .iter()
        .filter(|s| {
            s.meta.namespace == g.meta.namespace
                && selector_matches(&g.spec.selector, &s.meta.labels)
        })
        .collect();
    if members.is_empty() && !resolved.servers.is_empty() {
        diags.push(
            Diagnostic::warning(
                "empty-group",
                Some(at("selector")),
                format!(
                    "group `{}` selects none of the MCPServers among the inputs",
                    g.meta.name
                ),
            )
            .hint("members may exist in the cluster; otherwise check the labels"),
        );
    }
    for m in members.iter().filter(|m| m.spec.mode == Mode::Remote) {
        diags.push(Diagnostic::warning("remote-member", Some(at("selector")), format!("remote server `{}` is a member, but only container servers sit behind the group's Service", m.meta.name)));
    }
}
