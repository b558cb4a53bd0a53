//! The decided settings of every resolved resource: each default applied (from [`defaults`]), each
//! duration parsed, no `Option` left where hangar decides a value. They are made once, in
//! resolve, from the fully defaulted spec that `hangar render` prints; render, check, the
//! controller and the gateway read these and decide nothing again.
//!
//! A value the checks reject (a malformed duration, say) is decided as its default here: such an
//! input has an error, so no bundle is made from it and the value is never used.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::defaults;
use super::units::parse_duration;
use crate::api::discovery::{DiscoveryMode, MCPDiscoverySourceSpec, SourceType};
use crate::api::group::{AffinityType, MCPServerGroupSpec, RetryOn, Strategy};
use crate::api::server::{Capability, MCPServerSpec, Mode, Transport};

/// A duration as written, or the default's when it is absent or malformed (see the module doc).
fn duration(written: Option<&str>, default: Duration) -> Duration {
    written
        .and_then(|d| parse_duration(d).ok())
        .unwrap_or(default)
}

/// Whole seconds, rounded up (Kubernetes fields count seconds).
pub fn whole_secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX) + i64::from(d.subsec_nanos() > 0)
}

/// Everything decided about one MCPServer.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSettings {
    pub mode: Mode,
    /// Replicas asked for (0: cold). Autoscaled servers leave the count to their HPA.
    pub replicas: i32,
    pub autoscaling: Option<Autoscaling>,
    /// Started on demand: a container server asking for 0 replicas and no autoscaler. The
    /// gateway scales it to 1 on its first request and back to 0 after `idle_ttl` without one;
    /// its Deployment's `spec.replicas` is the gateway's, never the controller's.
    pub on_demand: bool,
    /// How long an on-demand server runs without a request or an open stream.
    pub idle_ttl: Duration,
    pub startup_timeout: Duration,
    pub shutdown_grace_period: Duration,
    /// The MCP port in the container (container mode).
    pub port: i32,
    /// The HTTP path of the MCP endpoint.
    pub path: String,
    pub transport: Transport,
    /// Where the server is reached: the remote endpoint, or its Service inside the cluster.
    pub url: String,
    pub health: Health,
    pub circuit_breaker: Breaker,
    pub tools: Tools,
    pub validation: Validation,
    /// The port of the server's Prometheus metrics, when they are enabled.
    pub metrics_port: Option<i32>,
    pub disruption_budget: Option<DisruptionBudget>,
    pub network_policy: Option<NetworkPolicy>,
    /// The ServiceAccount the pods run as, and whether hangar renders it.
    pub service_account: String,
    pub own_service_account: bool,
    pub read_only_root_filesystem: bool,
    pub run_as_non_root: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Autoscaling {
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub target_cpu_utilization_percentage: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub enabled: bool,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures before the server is Dead.
    pub failure_threshold: i32,
    pub success_threshold: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breaker {
    pub enabled: bool,
    pub failure_threshold: i32,
    pub reset_timeout: Duration,
    pub half_open_requests: i32,
    pub success_threshold: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tools {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub rate_limit: Option<RateLimit>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub requests_per_minute: i32,
    pub burst: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validation {
    pub enabled: bool,
    /// Hold a server found non-compliant (scaled to zero) until its spec changes.
    pub strict: bool,
    pub required_capabilities: Vec<Capability>,
    pub auth: Option<ProbeAuth>,
}

/// The header the probe sends: `header: scheme value`, the value read from a Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeAuth {
    pub secret: String,
    pub key: String,
    pub header: String,
    pub scheme: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DisruptionBudget {
    pub min_available: Option<IntOrString>,
    pub max_unavailable: Option<IntOrString>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub allowed_namespace_labels: BTreeMap<String, String>,
    pub restrict_egress: bool,
}

impl ServerSettings {
    /// Decides a server's settings from its defaulted spec.
    pub fn decide(name: &str, namespace: &str, spec: &MCPServerSpec) -> Self {
        let port = spec.port.unwrap_or(defaults::PORT);
        let transport = spec.transport.unwrap_or_default();
        let path = spec.path.clone().unwrap_or_else(|| {
            match transport {
                Transport::Sse => defaults::PATH_SSE,
                _ => defaults::PATH_STREAMABLE,
            }
            .into()
        });
        let url = match spec.mode {
            Mode::Remote => spec.endpoint.clone().unwrap_or_default(),
            Mode::Container => format!("http://{name}.{namespace}.svc:{port}{path}"),
        };
        let hc = spec.health_check.clone().unwrap_or_default();
        let cb = spec.circuit_breaker.clone().unwrap_or_default();
        let tools = spec.tools.clone().unwrap_or_default();
        let v = spec.validation.clone().unwrap_or_default();
        let container = spec.mode == Mode::Container;
        let enabled = |e: Option<bool>| container && e == Some(true);
        let metrics = spec.observability.as_ref().and_then(|o| o.metrics.as_ref());
        let security = spec.security_context.as_ref();
        let replicas = spec.replicas.unwrap_or(defaults::REPLICAS);
        let autoscaled = spec.hpa.as_ref().is_some_and(|h| enabled(h.enabled));
        ServerSettings {
            mode: spec.mode,
            replicas,
            on_demand: container && replicas == 0 && !autoscaled,
            autoscaling: spec
                .hpa
                .as_ref()
                .filter(|h| enabled(h.enabled))
                .map(|h| Autoscaling {
                    min_replicas: h.min_replicas.unwrap_or(defaults::HPA_MIN_REPLICAS),
                    max_replicas: h.max_replicas.unwrap_or(defaults::HPA_MAX_REPLICAS),
                    target_cpu_utilization_percentage: h
                        .target_cpu_utilization_percentage
                        .unwrap_or(defaults::HPA_TARGET_CPU),
                }),
            idle_ttl: duration(spec.idle_ttl.as_deref(), defaults::IDLE_TTL_D),
            startup_timeout: duration(spec.startup_timeout.as_deref(), defaults::STARTUP_TIMEOUT_D),
            shutdown_grace_period: duration(
                spec.shutdown_grace_period.as_deref(),
                defaults::SHUTDOWN_GRACE_PERIOD_D,
            ),
            port,
            path,
            transport,
            url,
            health: Health {
                enabled: hc.enabled != Some(false),
                interval: duration(hc.interval.as_deref(), defaults::HEALTH_INTERVAL_D),
                timeout: duration(hc.timeout.as_deref(), defaults::HEALTH_TIMEOUT_D),
                failure_threshold: hc
                    .failure_threshold
                    .unwrap_or(defaults::HEALTH_FAILURE_THRESHOLD),
                success_threshold: hc
                    .success_threshold
                    .unwrap_or(defaults::HEALTH_SUCCESS_THRESHOLD),
            },
            circuit_breaker: Breaker {
                enabled: cb.enabled != Some(false),
                failure_threshold: cb
                    .failure_threshold
                    .unwrap_or(defaults::BREAKER_FAILURE_THRESHOLD),
                reset_timeout: duration(
                    cb.reset_timeout.as_deref(),
                    defaults::BREAKER_RESET_TIMEOUT_D,
                ),
                half_open_requests: cb
                    .half_open_requests
                    .unwrap_or(defaults::BREAKER_HALF_OPEN_REQUESTS),
                success_threshold: cb
                    .success_threshold
                    .unwrap_or(defaults::BREAKER_SUCCESS_THRESHOLD),
            },
            tools: Tools {
                allow: tools.allow_list.unwrap_or_default(),
                deny: tools.deny_list.unwrap_or_default(),
                rate_limit: tools.rate_limit.and_then(|r| {
                    let rpm = r.requests_per_minute?;
                    Some(RateLimit {
                        requests_per_minute: rpm,
                        burst: r.burst_size.unwrap_or(rpm),
                    })
                }),
            },
            validation: Validation {
                enabled: v.enabled != Some(false),
                strict: v.strict_mode == Some(true),
                required_capabilities: v.required_capabilities.unwrap_or_default(),
                auth: v.auth.map(|a| ProbeAuth {
                    secret: a.secret_ref.name,
                    key: a
                        .secret_ref
                        .key
                        .unwrap_or_else(|| defaults::PROBE_AUTH_KEY.into()),
                    header: a
                        .header
                        .unwrap_or_else(|| defaults::PROBE_AUTH_HEADER.into()),
                    scheme: a
                        .scheme
                        .unwrap_or_else(|| defaults::PROBE_AUTH_SCHEME.into()),
                }),
            },
            metrics_port: metrics
                .filter(|m| enabled(m.enabled))
                .map(|m| m.port.unwrap_or(defaults::METRICS_PORT)),
            disruption_budget: spec
                .pod_disruption_budget
                .as_ref()
                .filter(|p| enabled(p.enabled))
                .map(|p| DisruptionBudget {
                    min_available: p.min_available.clone(),
                    max_unavailable: match (&p.min_available, &p.max_unavailable) {
                        (None, None) => Some(IntOrString::Int(defaults::PDB_MAX_UNAVAILABLE)),
                        (_, m) => m.clone(),
                    },
                }),
            network_policy: {
                let np = spec.network_policy.clone().unwrap_or_default();
                (container && np.enabled != Some(false)).then(|| NetworkPolicy {
                    allowed_namespace_labels: np.allowed_namespace_labels.unwrap_or_default(),
                    restrict_egress: np.restrict_egress == Some(true),
                })
            },
            service_account: spec
                .service_account_name
                .clone()
                .unwrap_or_else(|| name.to_string()),
            own_service_account: spec.service_account_name.is_none(),
            read_only_root_filesystem: security.and_then(|c| c.read_only_root_filesystem)
                != Some(false),
            run_as_non_root: security.and_then(|c| c.run_as_non_root).unwrap_or(true),
        }
    }

    /// Replicas the workload runs when nothing holds it: what the spec asks, or (autoscaled, or
    /// on demand) what the autoscaler or the gateway last set, `observed`.
    pub fn desired_replicas(&self, observed: Option<i32>) -> i32 {
        match (self.mode, &self.autoscaling) {
            (Mode::Remote, _) => 0,
            (Mode::Container, Some(_)) => observed.unwrap_or(1),
            // What the gateway last set (0 until the first request).
            (Mode::Container, None) if self.on_demand => observed.unwrap_or(0),
            (Mode::Container, None) => self.replicas,
        }
    }
}

/// Everything decided about one MCPServerGroup.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSettings {
    pub selector: LabelSelector,
    pub strategy: Strategy,
    pub failover: Failover,
    pub health: GroupHealth,
    pub circuit_breaker: GroupBreaker,
    pub session_affinity: Option<SessionAffinity>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failover {
    pub enabled: bool,
    pub max_retries: i32,
    pub retry_delay: Duration,
    pub retry_on: Vec<RetryOn>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupHealth {
    pub min_healthy_percentage: i32,
    pub min_healthy_count: i32,
    pub unhealthy_threshold: i32,
}

impl GroupHealth {
    /// Whether `ready` of `total` members meet the policy (an empty group never does).
    pub fn healthy(&self, ready: i32, total: i32) -> bool {
        total > 0
            && ready * 100 >= self.min_healthy_percentage * total
            && ready >= self.min_healthy_count
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupBreaker {
    pub enabled: bool,
    pub failure_threshold: i32,
    pub reset_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionAffinity {
    pub kind: AffinityType,
    pub header: Option<String>,
    pub ttl: Duration,
}

impl GroupSettings {
    pub fn decide(spec: &MCPServerGroupSpec) -> Self {
        let f = spec.failover.clone().unwrap_or_default();
        let h = spec.health_policy.clone().unwrap_or_default();
        let cb = spec.circuit_breaker.clone().unwrap_or_default();
        GroupSettings {
            selector: spec.selector.clone(),
            strategy: spec.strategy.unwrap_or_default(),
            failover: Failover {
                enabled: f.enabled != Some(false),
                max_retries: f.max_retries.unwrap_or(defaults::FAILOVER_MAX_RETRIES),
                retry_delay: duration(f.retry_delay.as_deref(), defaults::FAILOVER_RETRY_DELAY_D),
                retry_on: f
                    .retry_on
                    .unwrap_or_else(|| vec![RetryOn::Timeout, RetryOn::ConnectionError]),
            },
            health: GroupHealth {
                min_healthy_percentage: h
                    .min_healthy_percentage
                    .unwrap_or(defaults::GROUP_MIN_HEALTHY_PERCENTAGE),
                min_healthy_count: h
                    .min_healthy_count
                    .unwrap_or(defaults::GROUP_MIN_HEALTHY_COUNT),
                unhealthy_threshold: h
                    .unhealthy_threshold
                    .unwrap_or(defaults::GROUP_UNHEALTHY_THRESHOLD),
            },
            circuit_breaker: GroupBreaker {
                enabled: cb.enabled == Some(true),
                failure_threshold: cb
                    .failure_threshold
                    .unwrap_or(defaults::GROUP_BREAKER_FAILURE_THRESHOLD),
                reset_timeout: duration(
                    cb.reset_timeout.as_deref(),
                    defaults::GROUP_BREAKER_RESET_TIMEOUT_D,
                ),
            },
            session_affinity: spec
                .session_affinity
                .as_ref()
                .filter(|a| a.enabled == Some(true))
                .map(|a| SessionAffinity {
                    kind: a.type_.unwrap_or(AffinityType::ClientIp),
                    header: a.header.clone(),
                    ttl: duration(a.ttl.as_deref(), defaults::AFFINITY_TTL_D),
                }),
        }
    }
}

/// Everything decided about one MCPDiscoverySource (its type-specific parts are in `spec`,
/// defaulted).
#[derive(Clone, Debug, PartialEq)]
pub struct SourceSettings {
    pub type_: SourceType,
    pub mode: DiscoveryMode,
    /// How often the source is read again (at least one second).
    pub refresh_interval: Duration,
    pub paused: bool,
    /// Discovered servers carry an owner reference to the source...
    pub controller_owned: bool,
    /// ...which blocks the source's deletion until they are gone.
    pub block_owner_deletion: bool,
    pub spec: MCPDiscoverySourceSpec,
}

impl SourceSettings {
    pub fn decide(spec: &MCPDiscoverySourceSpec) -> Self {
        let ownership = spec.ownership.clone().unwrap_or_default();
        SourceSettings {
            type_: spec.type_,
            mode: spec.mode.unwrap_or_default(),
            refresh_interval: duration(
                spec.refresh_interval.as_deref(),
                defaults::REFRESH_INTERVAL_D,
            )
            .max(Duration::from_secs(1)),
            paused: spec.paused == Some(true),
            controller_owned: ownership.controller != Some(false),
            block_owner_deletion: ownership.block_deletion == Some(true),
            spec: spec.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn server(user: serde_json::Value) -> ServerSettings {
        let mut spec = defaults::server(&user);
        defaults::merge_into(&mut spec, &user);
        let spec: MCPServerSpec = serde_json::from_value(spec).expect("a valid spec");
        ServerSettings::decide("s", "ns", &spec)
    }

    #[test]
    fn a_container_server_gets_every_default() {
        let s = server(json!({"image": "x:1"}));
        assert_eq!(s.mode, Mode::Container);
        assert_eq!(s.replicas, 1);
        assert_eq!(s.idle_ttl, Duration::from_secs(300));
        assert_eq!(s.startup_timeout, Duration::from_secs(30));
        assert_eq!(s.health.interval, Duration::from_secs(30));
        assert_eq!(s.health.timeout, Duration::from_secs(5));
        assert_eq!(s.health.failure_threshold, 3);
        assert_eq!(s.url, "http://s.ns.svc:8080/mcp");
        assert!(s.network_policy.is_some());
        assert!(s.autoscaling.is_none() && s.metrics_port.is_none());
        assert!(s.circuit_breaker.enabled);
        assert_eq!(s.service_account, "s");
        assert_eq!(s.desired_replicas(None), 1);
    }

    #[test]
    fn dependent_values_are_decided_once() {
        let s = server(json!({"image": "x", "transport": "sse", "hpa": {"enabled": true}}));
        assert_eq!(s.path, "/sse");
        assert_eq!(s.url, "http://s.ns.svc:8080/sse");
        assert_eq!(s.desired_replicas(Some(4)), 4);
        assert_eq!(s.desired_replicas(None), 1);
        let r = server(json!({"endpoint": "https://h/mcp"}));
        assert_eq!(r.mode, Mode::Remote);
        assert_eq!(r.url, "https://h/mcp");
        assert!(r.network_policy.is_none());
        assert_eq!(r.desired_replicas(None), 0);
        let rl = server(json!({"image": "x", "tools": {"rateLimit": {"requestsPerMinute": 7}}}));
        assert_eq!(
            rl.tools.rate_limit,
            Some(RateLimit {
                requests_per_minute: 7,
                burst: 7
            })
        );
    }

    #[test]
    fn a_malformed_duration_is_decided_as_its_default() {
        let s = server(json!({"image": "x", "startupTimeout": "soon"}));
        assert_eq!(s.startup_timeout, defaults::STARTUP_TIMEOUT_D);
    }

    #[test]
    fn whole_seconds_round_up() {
        assert_eq!(whole_secs(Duration::from_millis(1500)), 2);
        assert_eq!(whole_secs(Duration::from_secs(3)), 3);
    }

    #[test]
    fn group_health_needs_percentage_and_count() {
        let mut spec = defaults::group();
        defaults::merge_into(&mut spec, &json!({"selector": {}}));
        let g = GroupSettings::decide(&serde_json::from_value(spec).expect("a valid group"));
        assert_eq!(g.health.min_healthy_count, 1);
        assert!(!g.health.healthy(0, 0));
        assert!(g.health.healthy(1, 2));
        assert!(!g.health.healthy(0, 1));
        assert!(!g.health.healthy(1, 3));
    }
}
