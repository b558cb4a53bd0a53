//! The gateway's Prometheus series. Every label value is bounded: routes come from the route table
//! (unknown paths are one `unrouted` value), methods from a fixed list (others are `other`), so a
//! client cannot grow the series set.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub mcp_method_name: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub route: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub route: String,
    pub mcp_method_name: String,
}

/// A server: bounded by the route table.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub namespace: String,
    pub name: String,
    pub from: &'static str,
    pub to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ColdStartLabels {
    pub namespace: String,
    pub name: String,
    /// `ready` (held requests forwarded) or `failed` (not ready within `startupTimeout`, or
    /// the scale-up refused).
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub refusals: Family<RefusalLabels, Counter>,
    /// Time from receiving a request to the upstream's response headers (the OTel MCP name
    /// `mcp.server.operation.duration`, as the gateway serves MCP to the client).
    pub duration: Family<OperationLabels, Histogram>,
    /// Each server's circuit breaker: 0 closed, 1 open, 2 half-open.
    pub breaker_state: Family<ServerLabels, Gauge>,
    pub breaker_transitions: Family<TransitionLabels, Counter>,
    /// Requests sent again to another group member after one failed.
    pub retries: Family<ServerLabels, Counter>,
    /// Wakes of on-demand servers: from the first held request to ready (or failure).
    pub cold_starts: Family<ColdStartLabels, Histogram>,
    /// On-demand servers stopped after `idleTTL` without a request.
    pub idle_stops: Family<ServerLabels, Counter>,
}

/// Methods counted under their own name; anything else is `other`. `GET` and `DELETE` are the
/// HTTP requests without a JSON-RPC body (the stream, the end of a session), `batch` a JSON-RPC
/// batch.
const METHODS: &[&str] = &[
    "GET",
    "DELETE",
    "batch",
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "subscriptions/listen",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
];

/// A method as a bounded label value.
pub fn method_label(method: Option<&str>) -> String {
    match method {
        None => "response".into(),
        Some(m) if METHODS.contains(&m) => m.into(),
        Some(_) => "other".into(),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "hangar_gateway_requests",
            "MCP requests the gateway answered, by route, method and HTTP status",
            requests.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "hangar_gateway_refusals",
            "Requests the gateway answered itself without forwarding, by reason (tool_denied, rate_limited, bad_request, header_mismatch, too_large, unknown_session, no_route, unavailable, foreign_origin, circuit_open, group_unhealthy)",
            refusals.clone(),
        );
        let duration = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "mcp_server_operation_duration_seconds",
            "Time to the upstream's response headers, as seen by the gateway",
            duration.clone(),
        );
        let breaker_state = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "hangar_gateway_breaker_state",
            "Each server's circuit breaker as the gateway last saw it: 0 closed, 1 open, 2 half-open",
            breaker_state.clone(),
        );
        let breaker_transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "hangar_gateway_breaker_transitions",
            "Circuit breaker state changes, by server and from/to state",
            breaker_transitions.clone(),
        );
        let retries = Family::<ServerLabels, Counter>::default();
        registry.register(
            "hangar_gateway_failover_retries",
            "Requests a group sent again to another member, by the member that failed",
            retries.clone(),
        );
        let cold_starts = Family::<ColdStartLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.25, 2.0, 10))
        });
        registry.register(
            "hangar_gateway_cold_start_duration_seconds",
            "Wakes of on-demand servers (replicas: 0): from the first held request to the pod answering MCP, by outcome (ready, failed)",
            cold_starts.clone(),
        );
        let idle_stops = Family::<ServerLabels, Counter>::default();
        registry.register(
            "hangar_gateway_idle_stops",
            "On-demand servers scaled to 0 after idleTTL without a request or an open stream",
            idle_stops.clone(),
        );
        Metrics {
            registry,
            cold_starts,
            idle_stops,
            breaker_state,
            breaker_transitions,
            retries,
            requests,
            refusals,
            duration,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
