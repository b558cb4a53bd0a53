//! Prometheus metrics (the seed's names) and the `/metrics`, `/healthz`, `/readyz` endpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::server::ServerState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: String,
    pub result: String,
    /// What the reconcile was about (`ok`, `invalid_spec`, `conflict`, `apply_failed`, `api`...).
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub namespace: String,
    pub name: String,
    pub state: String,
}

/// A server's series with one more label (`phase`, `version`, `capability`, `transport_type`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub namespace: String,
    pub name: String,
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub namespace: String,
    pub name: String,
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CapabilityLabels {
    pub namespace: String,
    pub name: String,
    pub capability: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    pub namespace: String,
    pub name: String,
    pub transport_type: String,
}

/// Seed 002's (vitorbari's mcp-operator) phases, and what each hangar state is among them.
pub const SEED_PHASES: [&str; 8] = [
    "Pending",
    "Creating",
    "Running",
    "Scaling",
    "Updating",
    "Failed",
    "ValidationFailed",
    "Terminating",
];
/// The capabilities seed 002 reports a gauge for (hangar's `requiredCapabilities` values).
pub const SEED_CAPABILITIES: [&str; 5] =
    ["tools", "resources", "prompts", "logging", "completions"];
/// Protocol versions whose `mcpserver_protocol_version` series a deleted server leaves behind.
const PROTOCOL_VERSIONS: [&str; 5] = [
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

pub use super::state::{seed_phase, seed_phase_of};

/// `controller` of seed 002's reconcile series: the kind in lower case (`mcpserver`, as the
/// seed's only controller says it, `mcpservergroup`, `mcpdiscoverysource`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

/// `result`: `success` or `error` (seed 002's values).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerResultLabels {
    pub controller: String,
    pub result: String,
}

/// A validation's transport (`streamable-http`, `sse`, `unknown`) and outcome (`true`, `false`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ValidatorLabels {
    pub transport: String,
    pub success: String,
}

/// `mcp_validator_validations_total`: the seed's `result` is its `success` (`true`, `false`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ValidatorResultLabels {
    pub transport: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ValidatorErrorLabels {
    pub error_code: String,
    pub transport: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssueLabels {
    pub namespace: String,
    pub name: String,
    pub level: String,
    pub code: String,
}

/// Seed 002's controllers, whose reconcile series exist (at 0) from the start, so a dashboard's
/// `result="error"` query finds a series before the first error.
pub const SEED_CONTROLLERS: [&str; 3] = ["mcpserver", "mcpservergroup", "mcpdiscoverysource"];
/// Seed 002's reconcile histogram buckets (Prometheus' default buckets).
const RECONCILE_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Seed 002's validation histogram buckets.
const VALIDATOR_BUCKETS: [f64; 7] = [0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// Seed 002's series (vitorbari's mcp-operator `internal/metrics` and `pkg/validator`): the
/// per-server gauges, fed from the status hangar writes, and the reconcile and validation ones.
pub struct SeedMetrics {
    pub ready: Family<ServerLabels, Gauge>,
    pub phase: Family<PhaseLabels, Gauge>,
    pub replicas: Family<ReplicaLabels, Gauge>,
    pub available_replicas: Family<ReplicaLabels, Gauge>,
    pub hpa_enabled: Family<ServerLabels, Gauge>,
    pub compliant: Family<ServerLabels, Gauge>,
    pub protocol_version: Family<VersionLabels, Gauge>,
    pub capabilities: Family<CapabilityLabels, Gauge>,
    pub reconcile_total: Family<ControllerResultLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    pub validation_issues: Family<IssueLabels, Counter>,
    pub validator_duration: Family<ValidatorLabels, Histogram>,
    pub validator_total: Family<ValidatorResultLabels, Counter>,
    pub validator_errors: Family<ValidatorErrorLabels, Counter>,
    /// The issue series of each server, to drop when it goes.
    issue_series: std::sync::Mutex<std::collections::BTreeSet<(String, String, String, String)>>,
}

impl Default for SeedMetrics {
    fn default() -> Self {
        SeedMetrics {
            ready: Family::default(),
            phase: Family::default(),
            replicas: Family::default(),
            available_replicas: Family::default(),
            hpa_enabled: Family::default(),
            compliant: Family::default(),
            protocol_version: Family::default(),
            capabilities: Family::default(),
            reconcile_total: Family::default(),
            reconcile_duration: Family::new_with_constructor(|| Histogram::new(RECONCILE_BUCKETS)),
            validation_issues: Family::default(),
            validator_duration: Family::new_with_constructor(|| Histogram::new(VALIDATOR_BUCKETS)),
            validator_total: Family::default(),
            validator_errors: Family::default(),
            issue_series: std::sync::Mutex::default(),
        }
    }
}

impl SeedMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "mcpserver_ready_total",
            "Whether the MCP server is serving (1: Ready or Degraded) or not (0)",
            self.ready.clone(),
        );
        registry.register(
            "mcpserver_phase",
            "Current phase of the MCP server (1 = current phase): Pending (cold), Creating, Running, Failed, ValidationFailed",
            self.phase.clone(),
        );
        registry.register(
            "mcpserver_replicas",
            "Current replica count per MCP server",
            self.replicas.clone(),
        );
        registry.register(
            "mcpserver_available_replicas",
            "Current available replica count per MCP server",
            self.available_replicas.clone(),
        );
        registry.register(
            "mcpserver_hpa_enabled",
            "Whether HPA is enabled for the MCP server (1 enabled, 0 disabled)",
            self.hpa_enabled.clone(),
        );
        registry.register(
            "mcpserver_validation_compliant",
            "Whether the MCP server is MCP protocol compliant (1 compliant, 0 not, -1 not validated)",
            self.compliant.clone(),
        );
        registry.register(
            "mcpserver_protocol_version",
            "Negotiated MCP protocol version (1 = current version)",
            self.protocol_version.clone(),
        );
        registry.register(
            "mcpserver_capabilities",
            "Announced MCP capabilities (1 = announced, 0 = not)",
            self.capabilities.clone(),
        );
        // Counters: the encoder appends `_total`.
        registry.register(
            "mcpserver_reconcile",
            "Total number of reconciliations (result: success or error)",
            self.reconcile_total.clone(),
        );
        registry.register(
            "mcpserver_reconcile_duration_seconds",
            "Time spent reconciling",
            self.reconcile_duration.clone(),
        );
        registry.register(
            "mcpserver_validation_issues",
            "Issues the MCP validation found, by level and code",
            self.validation_issues.clone(),
        );
        registry.register(
            "mcp_validator_duration_seconds",
            "Time spent validating MCP servers (the protocol probe)",
            self.validator_duration.clone(),
        );
        registry.register(
            "mcp_validator_validations",
            "Validations run (result: true when compliant)",
            self.validator_total.clone(),
        );
        registry.register(
            "mcp_validator_errors",
            "Validation errors by code",
            self.validator_errors.clone(),
        );
        for controller in SEED_CONTROLLERS {
            for result in ["success", "error"] {
                self.reconcile_total
                    .get_or_create(&ControllerResultLabels {
                        controller: controller.into(),
                        result: result.into(),
                    })
                    .inc_by(0);
            }
            drop(self.reconcile_duration.get_or_create(&ControllerLabels {
                controller: controller.into(),
            }));
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: String,
}

/// How a child's apply went: `skipped` (unchanged on both sides, no request), `unchanged` (asked
/// the API server: a GET and a dry run), `written`, `failed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApplyLabels {
    pub result: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub reconcile_total: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram>,
    pub provider_state: Family<StateLabels, Gauge>,
    pub tools_count: Family<ServerLabels, Gauge>,
    pub health_check_failures: Family<ServerLabels, Counter>,
    pub api_writes: Family<VerbLabels, Counter>,
    pub child_applies: Family<ApplyLabels, Counter>,
    /// Unix time of each discovery source's last successful sync (labels: the source).
    pub discovery_last_sync: Family<ServerLabels, Gauge>,
    /// Failed syncs (unreadable source, content that does not compile) per discovery source.
    pub discovery_sync_failures: Family<ServerLabels, Counter>,
    /// Objects an Authoritative discovery source deleted because it no longer yields them.
    pub discovery_deleted: Family<ServerLabels, Counter>,
    /// 1 while this process runs the controllers (it holds the leader lease, or leader
    /// election is off), 0 while it waits as a follower.
    pub leader: Gauge,
    /// API requests (and socket writes) the split-brain fence refused (see `fence`).
    pub fence_refused: Counter,
    /// Outages of the API server seen by reconciles (one per outage, not per object).
    pub apiserver_outages: Counter,
    /// Seed 002's per-server names (`mcpserver_*`), from the status hangar writes.
    pub seed: SeedMetrics,
    pub ready: AtomicBool,
    pub liveness: Liveness,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconcile_total = Family::<ReconcileLabels, Counter>::default();
        let reconcile_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        let provider_state = Family::<StateLabels, Gauge>::default();
        let tools_count = Family::<ServerLabels, Gauge>::default();
        let health_check_failures = Family::<ServerLabels, Counter>::default();
        let api_writes = Family::<VerbLabels, Counter>::default();
        let child_applies = Family::<ApplyLabels, Counter>::default();
        let discovery_last_sync = Family::<ServerLabels, Gauge>::default();
        let discovery_sync_failures = Family::<ServerLabels, Counter>::default();
        let discovery_deleted = Family::<ServerLabels, Counter>::default();
        let leader = Gauge::default();
        let fence_refused = Counter::default();
        let apiserver_outages = Counter::default();
        registry.register(
            "mcp_operator_reconcile",
            "Total reconciliations",
            reconcile_total.clone(),
        );
        registry.register(
            "mcp_operator_reconcile_duration_seconds",
            "Reconciliation duration",
            reconcile_duration.clone(),
        );
        registry.register(
            "mcp_operator_provider_state",
            "MCP server state (1 = in this state)",
            provider_state.clone(),
        );
        registry.register(
            "mcp_operator_provider_tools_count",
            "Tools per MCP server",
            tools_count.clone(),
        );
        registry.register(
            "mcp_operator_provider_health_check_failures",
            "Health check failures",
            health_check_failures.clone(),
        );
        registry.register(
            "hangar_api_writes",
            "Write requests sent to the API server (dry runs excluded)",
            api_writes.clone(),
        );
        registry.register(
            "hangar_child_applies",
            "Children a reconcile applied, by result: skipped (unchanged on both sides; no request), unchanged (a GET and a dry run), written, failed",
            child_applies.clone(),
        );
        registry.register(
            "hangar_discovery_last_sync_timestamp_seconds",
            "Unix time of a discovery source's last successful sync",
            discovery_last_sync.clone(),
        );
        registry.register(
            "hangar_discovery_sync_failures",
            "Failed discovery syncs (source unreadable, or content that does not compile)",
            discovery_sync_failures.clone(),
        );
        registry.register(
            "hangar_discovery_deleted",
            "Objects an Authoritative discovery source deleted because it no longer yields them",
            discovery_deleted.clone(),
        );
        registry.register(
            "hangar_leader",
            "1 while this process runs the controllers (leader, or leader election off), 0 while it waits",
            leader.clone(),
        );
        registry.register(
            "hangar_fence_refused",
            "API requests and writes refused because the leader lease was not renewed in time",
            fence_refused.clone(),
        );
        registry.register(
            "hangar_apiserver_outages",
            "Times reconciles found the API server unreachable (one per outage)",
            apiserver_outages.clone(),
        );
        let seed = SeedMetrics::default();
        seed.register(&mut registry);
        Metrics {
            seed,
            registry,
            reconcile_total,
            reconcile_duration,
            provider_state,
            tools_count,
            health_check_failures,
            api_writes,
            child_applies,
            discovery_last_sync,
            discovery_sync_failures,
            discovery_deleted,
            leader,
            fence_refused,
            apiserver_outages,
            ready: AtomicBool::new(false),
            liveness: Liveness::default(),
        }
    }

    /// Counts what a discovery source deleted.
    pub fn discovery_deleted(&self, ns: &str, name: &str, n: u64) {
        let l = ServerLabels {
            namespace: ns.into(),
            name: name.into(),
        };
        self.discovery_deleted.get_or_create(&l).inc_by(n);
    }

    /// Records the outcome of a discovery sync.
    pub fn discovery_synced(&self, ns: &str, name: &str, ok: bool) {
        let l = ServerLabels {
            namespace: ns.into(),
            name: name.into(),
        };
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            self.discovery_last_sync.get_or_create(&l).set(now);
        } else {
            self.discovery_sync_failures.get_or_create(&l).inc();
        }
    }

    pub fn set_state(&self, ns: &str, name: &str, state: ServerState) {
        for s in ServerState::ALL {
            self.provider_state
                .get_or_create(&StateLabels {
                    namespace: ns.into(),
                    name: name.into(),
                    state: s.as_str().into(),
                })
                .set(i64::from(s == state));
        }
    }

    /// Seed 002's reconcile series of one reconcile of `kind` (`MCPServer`...).
    pub fn reconciled(&self, kind: &str, ok: bool, seconds: f64) {
        let controller = kind.to_ascii_lowercase();
        self.seed
            .reconcile_total
            .get_or_create(&ControllerResultLabels {
                controller: controller.clone(),
                result: if ok { "success" } else { "error" }.into(),
            })
            .inc();
        self.seed
            .reconcile_duration
            .get_or_create(&ControllerLabels { controller })
            .observe(seconds);
    }

    /// Seed 002's validation series of one MCP protocol check of a server (its required
    /// capabilities applied), which took `seconds`.
    pub fn validated(
        &self,
        ns: &str,
        name: &str,
        check: &crate::probe::health::Check,
        seconds: f64,
    ) {
        let transport = check
            .validation
            .as_ref()
            .and_then(|v| v.transport.clone())
            .unwrap_or_else(|| "unknown".into());
        let success = if check.ok { "true" } else { "false" };
        self.seed
            .validator_duration
            .get_or_create(&ValidatorLabels {
                transport: transport.clone(),
                success: success.into(),
            })
            .observe(seconds);
        self.seed
            .validator_total
            .get_or_create(&ValidatorResultLabels {
                transport: transport.clone(),
                result: success.into(),
            })
            .inc();
        for issue in &check.issues {
            if issue.level == "error" {
                self.seed
                    .validator_errors
                    .get_or_create(&ValidatorErrorLabels {
                        error_code: issue.code.clone(),
                        transport: transport.clone(),
                    })
                    .inc();
            }
            self.seed
                .validation_issues
                .get_or_create(&IssueLabels {
                    namespace: ns.into(),
                    name: name.into(),
                    level: issue.level.into(),
                    code: issue.code.clone(),
                })
                .inc();
            if let Ok(mut seen) = self.seed.issue_series.lock() {
                seen.insert((
                    ns.into(),
                    name.into(),
                    issue.level.into(),
                    issue.code.clone(),
                ));
            }
        }
    }

    /// Seed 002's gauges of a server, from the status written now (`prev`: the one before, whose
    /// protocol version series is cleared when it changed) and whether its HPA is on.
    pub fn set_seed_status(
        &self,
        ns: &str,
        name: &str,
        prev: &crate::api::server::MCPServerStatus,
        next: &crate::api::server::MCPServerStatus,
        hpa_enabled: bool,
    ) {
        let server = || ServerLabels {
            namespace: ns.into(),
            name: name.into(),
        };
        let state = next.state.unwrap_or(ServerState::Initializing);
        let validation = next.validation.as_ref();
        self.seed
            .ready
            .get_or_create(&server())
            .set(i64::from(matches!(
                state,
                ServerState::Ready | ServerState::Degraded
            )));
        self.seed
            .hpa_enabled
            .get_or_create(&server())
            .set(i64::from(hpa_enabled));
        // As the status says it (a status not written by the state machine has none yet).
        let current = next.phase.as_deref().unwrap_or_else(|| seed_phase_of(next));
        for phase in SEED_PHASES {
            self.seed
                .phase
                .get_or_create(&PhaseLabels {
                    namespace: ns.into(),
                    name: name.into(),
                    phase: phase.into(),
                })
                .set(i64::from(phase == current));
        }
        let replicas = ReplicaLabels {
            namespace: ns.into(),
            name: name.into(),
            transport_type: "http".into(),
        };
        self.seed
            .replicas
            .get_or_create(&replicas)
            .set(i64::from(next.replicas.unwrap_or(0)));
        self.seed
            .available_replicas
            .get_or_create(&replicas)
            .set(i64::from(next.available_replicas.unwrap_or(0)));
        let compliant = match validation.and_then(|v| v.compliant) {
            Some(true) => 1,
            Some(false) => 0,
            None => -1,
        };
        self.seed.compliant.get_or_create(&server()).set(compliant);
        let version = |s: &crate::api::server::MCPServerStatus| {
            s.validation
                .as_ref()
                .and_then(|v| v.protocol_version.clone())
        };
        let (was, now) = (version(prev), version(next));
        if let Some(old) = was.filter(|w| Some(w) != now.as_ref()) {
            self.seed.protocol_version.remove(&VersionLabels {
                namespace: ns.into(),
                name: name.into(),
                version: old,
            });
        }
        if let Some(v) = now {
            self.seed
                .protocol_version
                .get_or_create(&VersionLabels {
                    namespace: ns.into(),
                    name: name.into(),
                    version: v,
                })
                .set(1);
        }
        let announced: Vec<&str> = validation
            .and_then(|v| v.capabilities.as_ref())
            .map(|c| c.iter().map(String::as_str).collect())
            .unwrap_or_default();
        for capability in SEED_CAPABILITIES {
            self.seed
                .capabilities
                .get_or_create(&CapabilityLabels {
                    namespace: ns.into(),
                    name: name.into(),
                    capability: capability.into(),
                })
                .set(i64::from(announced.contains(&capability)));
        }
    }

    /// Drops the series of a server that is gone.
    pub fn forget(&self, ns: &str, name: &str) {
        let server = ServerLabels {
            namespace: ns.into(),
            name: name.into(),
        };
        self.seed.ready.remove(&server);
        self.seed.compliant.remove(&server);
        self.seed.hpa_enabled.remove(&server);
        if let Ok(mut seen) = self.seed.issue_series.lock() {
            seen.retain(|(n, s, level, code)| {
                let gone = n == ns && s == name;
                if gone {
                    self.seed.validation_issues.remove(&IssueLabels {
                        namespace: n.clone(),
                        name: s.clone(),
                        level: level.clone(),
                        code: code.clone(),
                    });
                }
                !gone
            });
        }
        for phase in SEED_PHASES {
            self.seed.phase.remove(&PhaseLabels {
                namespace: ns.into(),
                name: name.into(),
                phase: phase.into(),
            });
        }
        let replicas = ReplicaLabels {
            namespace: ns.into(),
            name: name.into(),
            transport_type: "http".into(),
        };
        self.seed.replicas.remove(&replicas);
        self.seed.available_replicas.remove(&replicas);
        for version in PROTOCOL_VERSIONS {
            self.seed.protocol_version.remove(&VersionLabels {
                namespace: ns.into(),
                name: name.into(),
                version: version.into(),
            });
        }
        for capability in SEED_CAPABILITIES {
            self.seed.capabilities.remove(&CapabilityLabels {
                namespace: ns.into(),
                name: name.into(),
                capability: capability.into(),
            });
        }
        for s in ServerState::ALL {
            self.provider_state.remove(&StateLabels {
                namespace: ns.into(),
                name: name.into(),
                state: s.as_str().into(),
            });
        }
        let l = ServerLabels {
            namespace: ns.into(),
            name: name.into(),
        };
        self.tools_count.remove(&l);
        self.health_check_failures.remove(&l);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Whether the controller is making progress, for `/healthz` and the leader lease: a heartbeat
/// the controller's runtime beats every second (it stops when every worker is stuck), and the
/// start of each reconcile still running (one stuck alone shows too).
#[derive(Default)]
pub struct Liveness {
    started: std::sync::OnceLock<std::time::Instant>,
    /// Milliseconds after `started` of the last beat.
    beat_ms: std::sync::atomic::AtomicU64,
    next_id: std::sync::atomic::AtomicU64,
    running: std::sync::Mutex<std::collections::BTreeMap<u64, (std::time::Instant, String)>>,
}

/// A reconcile running longer than this is stuck (probes and Git fetches time out well before).
pub const STUCK_RECONCILE: Duration = Duration::from_secs(600);
/// A runtime that has not beaten for this long is stuck.
pub const STUCK_RUNTIME: Duration = Duration::from_secs(30);

/// Removes its reconcile from [`Liveness`] when dropped (finished, failed or cancelled).
pub struct Running<'a>(&'a Liveness, u64);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut r) = self.0.running.lock() {
            r.remove(&self.1);
        }
    }
}

impl Liveness {
    fn origin(&self) -> std::time::Instant {
        *self.started.get_or_init(std::time::Instant::now)
    }

    /// Called every second from the controller's runtime.
    pub fn beat(&self) {
        let ms = self.origin().elapsed().as_millis() as u64;
        self.beat_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the last beat (from process start when there was none).
    pub fn since_beat(&self) -> Duration {
        let now = self.origin().elapsed();
        now.saturating_sub(Duration::from_millis(self.beat_ms.load(Ordering::Relaxed)))
    }

    /// Marks a reconcile of `what` as running until the guard drops.
    pub fn running(&self, what: String) -> Running<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut r) = self.running.lock() {
            r.insert(id, (std::time::Instant::now(), what));
        }
        Running(self, id)
    }

    /// The longest-running reconcile, and for how long.
    pub fn oldest(&self) -> Option<(Duration, String)> {
        let r = self.running.lock().ok()?;
        r.values()
            .map(|(t, w)| (t.elapsed(), w.clone()))
            .max_by_key(|(d, _)| *d)
    }

    /// None when healthy, else why not.
    pub fn unhealthy(&self) -> Option<String> {
        stuck(self.since_beat(), self.oldest())
    }
}

/// The liveness rule, pure: a runtime silent for [`STUCK_RUNTIME`] or a reconcile running for
/// [`STUCK_RECONCILE`] is stuck.
pub fn stuck(since_beat: Duration, oldest: Option<(Duration, String)>) -> Option<String> {
    if since_beat >= STUCK_RUNTIME {
        return Some(format!(
            "the controller's runtime has not run for {}s",
            since_beat.as_secs()
        ));
    }
    match oldest {
        Some((d, what)) if d >= STUCK_RECONCILE => Some(format!(
            "a reconcile of {what} has run for {}s",
            d.as_secs()
        )),
        _ => None,
    }
}

/// Serves `/metrics`, `/healthz` (the controller makes progress: see [`Liveness`]) and `/readyz`
/// (the watches have synced).
pub async fn serve_listener(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let m = metrics.clone();
    let r = metrics.clone();
    let h = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let h = h.clone();
                async move {
                    match h.liveness.unhealthy() {
                        None => (StatusCode::OK, "ok\n".to_string()),
                        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("stuck: {why}\n")),
                    }
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let r = r.clone();
                async move {
                    if r.ready.load(Ordering::Relaxed) {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced\n")
                    }
                }
            }),
        );
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_fails_on_a_silent_runtime_or_a_stuck_reconcile() {
        let s = Duration::from_secs;
        assert_eq!(stuck(s(1), None), None);
        assert_eq!(stuck(s(1), Some((s(599), "MCPServer".into()))), None);
        let runtime = stuck(s(31), None).unwrap_or_default();
        assert!(runtime.contains("has not run for 31s"), "{runtime}");
        let one = stuck(s(0), Some((s(600), "MCPDiscoverySource".into()))).unwrap_or_default();
        assert!(one.contains("MCPDiscoverySource has run for 600s"), "{one}");
        // A reconcile is running while its guard lives, and only then.
        let l = Liveness::default();
        l.beat();
        assert!(l.oldest().is_none() && l.unhealthy().is_none());
        let g = l.running("MCPServer".into());
        assert_eq!(l.oldest().map(|(_, w)| w).as_deref(), Some("MCPServer"));
        drop(g);
        assert!(l.oldest().is_none());
    }

    #[test]
    fn seed_names_are_exposed() {
        let m = Metrics::new();
        m.reconcile_total
            .get_or_create(&ReconcileLabels {
                kind: "MCPServer".into(),
                result: "ok".into(),
                category: "ok".into(),
            })
            .inc();
        m.set_state("ns", "a", ServerState::Ready);
        m.tools_count
            .get_or_create(&ServerLabels {
                namespace: "ns".into(),
                name: "a".into(),
            })
            .set(3);
        m.reconcile_duration
            .get_or_create(&KindLabels {
                kind: "MCPServer".into(),
            })
            .observe(0.01);
        m.health_check_failures
            .get_or_create(&ServerLabels {
                namespace: "ns".into(),
                name: "a".into(),
            })
            .inc();
        let text = m.encode();
        for name in [
            "mcp_operator_reconcile_total{kind=\"MCPServer\",result=\"ok\",category=\"ok\"} 1",
            "mcp_operator_reconcile_duration_seconds_bucket",
            "mcp_operator_provider_state{namespace=\"ns\",name=\"a\",state=\"Ready\"} 1",
            "mcp_operator_provider_state{namespace=\"ns\",name=\"a\",state=\"Dead\"} 0",
            "mcp_operator_provider_tools_count{namespace=\"ns\",name=\"a\"} 3",
            "mcp_operator_provider_health_check_failures_total{namespace=\"ns\",name=\"a\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
        m.forget("ns", "a");
        assert!(!m.encode().contains("name=\"a\""));
    }

    /// Seed 002's (vitorbari's) names, fed from the status hangar writes (issue 15.4).
    #[test]
    fn seed_002_names_are_exposed() {
        use crate::api::server::{MCPServerStatus, ValidationStatus};
        let m = Metrics::new();
        let prev = MCPServerStatus {
            validation: Some(ValidationStatus {
                protocol_version: Some("2025-03-26".into()),
                ..ValidationStatus::default()
            }),
            ..MCPServerStatus::default()
        };
        let next = MCPServerStatus {
            state: Some(ServerState::Ready),
            replicas: Some(2),
            available_replicas: Some(1),
            validation: Some(ValidationStatus {
                compliant: Some(true),
                protocol_version: Some("2025-11-25".into()),
                capabilities: Some(vec!["tools".into(), "prompts".into()]),
                ..ValidationStatus::default()
            }),
            ..MCPServerStatus::default()
        };
        m.set_seed_status("ns", "a", &prev, &prev, false);
        m.set_seed_status("ns", "a", &prev, &next, true);
        let text = m.encode();
        for line in [
            "mcpserver_ready_total{namespace=\"ns\",name=\"a\"} 1",
            "mcpserver_phase{namespace=\"ns\",name=\"a\",phase=\"Running\"} 1",
            "mcpserver_phase{namespace=\"ns\",name=\"a\",phase=\"Pending\"} 0",
            "mcpserver_replicas{namespace=\"ns\",name=\"a\",transport_type=\"http\"} 2",
            "mcpserver_available_replicas{namespace=\"ns\",name=\"a\",transport_type=\"http\"} 1",
            "mcpserver_validation_compliant{namespace=\"ns\",name=\"a\"} 1",
            "mcpserver_hpa_enabled{namespace=\"ns\",name=\"a\"} 1",
            "mcpserver_protocol_version{namespace=\"ns\",name=\"a\",version=\"2025-11-25\"} 1",
            "mcpserver_capabilities{namespace=\"ns\",name=\"a\",capability=\"tools\"} 1",
            "mcpserver_capabilities{namespace=\"ns\",name=\"a\",capability=\"resources\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert!(
            !text.contains("2025-03-26"),
            "the old version's series is gone:\n{text}"
        );
        assert_eq!(seed_phase(ServerState::Dead, true), "ValidationFailed");
        assert_eq!(seed_phase(ServerState::Cold, false), "Pending");
        m.forget("ns", "a");
        assert!(!m.encode().contains("name=\"a\""), "{}", m.encode());
    }

    /// Seed 002's reconcile and validation families: the names, types, labels and label values
    /// its dashboard queries (vitorbari/mcp-operator e591f60, `config/grafana/dashboard.json`).
    #[test]
    fn seed_002_reconcile_and_validation_families() {
        use crate::api::server::ValidationStatus;
        use crate::probe::health::{Check, Issue};
        let m = Metrics::new();
        let text = m.encode();
        // Before any reconcile: the error series a `result="error"` panel reads exist, at 0.
        for line in [
            "# TYPE mcpserver_reconcile counter",
            "mcpserver_reconcile_total{controller=\"mcpserver\",result=\"error\"} 0",
            "mcpserver_reconcile_total{controller=\"mcpserver\",result=\"success\"} 0",
            "mcpserver_reconcile_total{controller=\"mcpservergroup\",result=\"error\"} 0",
            "# TYPE mcpserver_reconcile_duration_seconds histogram",
            "mcpserver_reconcile_duration_seconds_count{controller=\"mcpdiscoverysource\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        m.reconciled("MCPServer", true, 0.02);
        m.reconciled("MCPServer", false, 0.3);
        m.reconciled("MCPServer", true, 0.004);
        let checked = |ok: bool, transport: Option<&str>, issues: Vec<Issue>| Check {
            ok,
            validation: Some(ValidationStatus {
                compliant: Some(ok),
                transport: transport.map(str::to_string),
                ..ValidationStatus::default()
            }),
            issues,
            ..Check::default()
        };
        m.validated(
            "ns",
            "a",
            &checked(true, Some("streamable-http"), vec![]),
            0.2,
        );
        let missing = checked(
            false,
            Some("sse"),
            vec![
                Issue::error("MISSING_CAPABILITY"),
                Issue {
                    level: "warning",
                    code: "SLOW".into(),
                },
            ],
        );
        m.validated("ns", "b", &missing, 1.5);
        m.validated("ns", "b", &missing, 1.5);
        m.validated(
            "ns",
            "c",
            &checked(false, None, vec![Issue::of_fault("auth-required")]),
            0.05,
        );
        let text = m.encode();
        for line in [
            "mcpserver_reconcile_total{controller=\"mcpserver\",result=\"success\"} 2",
            "mcpserver_reconcile_total{controller=\"mcpserver\",result=\"error\"} 1",
            // Prometheus' default buckets.
            "mcpserver_reconcile_duration_seconds_bucket{le=\"0.005\",controller=\"mcpserver\"} 1",
            "mcpserver_reconcile_duration_seconds_bucket{le=\"0.025\",controller=\"mcpserver\"} 2",
            "mcpserver_reconcile_duration_seconds_bucket{le=\"10.0\",controller=\"mcpserver\"} 3",
            "mcpserver_reconcile_duration_seconds_count{controller=\"mcpserver\"} 3",
            "# TYPE mcp_validator_duration_seconds histogram",
            "mcp_validator_duration_seconds_bucket{le=\"0.5\",transport=\"streamable-http\",success=\"true\"} 1",
            "mcp_validator_duration_seconds_bucket{le=\"2.0\",transport=\"sse\",success=\"false\"} 2",
            "mcp_validator_duration_seconds_bucket{le=\"30.0\",transport=\"unknown\",success=\"false\"} 1",
            "# TYPE mcp_validator_validations counter",
            "mcp_validator_validations_total{transport=\"streamable-http\",result=\"true\"} 1",
            "mcp_validator_validations_total{transport=\"sse\",result=\"false\"} 2",
            "# TYPE mcp_validator_errors counter",
            "mcp_validator_errors_total{error_code=\"MISSING_CAPABILITY\",transport=\"sse\"} 2",
            "mcp_validator_errors_total{error_code=\"AUTH_REQUIRED\",transport=\"unknown\"} 1",
            "# TYPE mcpserver_validation_issues counter",
            "mcpserver_validation_issues_total{namespace=\"ns\",name=\"b\",level=\"error\",code=\"MISSING_CAPABILITY\"} 2",
            "mcpserver_validation_issues_total{namespace=\"ns\",name=\"b\",level=\"warning\",code=\"SLOW\"} 2",
            "mcpserver_validation_issues_total{namespace=\"ns\",name=\"c\",level=\"error\",code=\"AUTH_REQUIRED\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        // Warnings are issues, not validator errors.
        assert!(!text.contains("error_code=\"SLOW\""), "{text}");
        // A deleted server's issue series go; the others' stay.
        m.forget("ns", "b");
        let text = m.encode();
        assert!(!text.contains("name=\"b\""), "{text}");
        assert!(text.contains("name=\"c\",level=\"error\""), "{text}");
    }

    /// `mcpserver_ready_total` is 1 while the server serves (its phase is Running), and
    /// `mcpserver_hpa_enabled` follows the spec.
    #[test]
    fn seed_002_ready_means_running_and_hpa_follows_the_spec() {
        use crate::api::server::MCPServerStatus;
        let m = Metrics::new();
        let none = MCPServerStatus::default();
        for (state, ready, phase) in [
            (ServerState::Cold, 0, "Pending"),
            (ServerState::Initializing, 0, "Creating"),
            (ServerState::Ready, 1, "Running"),
            (ServerState::Degraded, 1, "Running"),
            (ServerState::Dead, 0, "Failed"),
        ] {
            let s = MCPServerStatus {
                state: Some(state),
                ..MCPServerStatus::default()
            };
            m.set_seed_status("ns", "a", &none, &s, state == ServerState::Ready);
            let text = m.encode();
            for line in [
                format!("mcpserver_ready_total{{namespace=\"ns\",name=\"a\"}} {ready}"),
                format!("mcpserver_phase{{namespace=\"ns\",name=\"a\",phase=\"{phase}\"}} 1"),
                format!(
                    "mcpserver_hpa_enabled{{namespace=\"ns\",name=\"a\"}} {}",
                    i64::from(state == ServerState::Ready)
                ),
                // Not validated.
                "mcpserver_validation_compliant{namespace=\"ns\",name=\"a\"} -1".to_string(),
            ] {
                assert!(text.contains(&line), "{state:?}: {line} missing in\n{text}");
            }
            let current = text
                .lines()
                .filter(|l| l.starts_with("mcpserver_phase{") && l.ends_with(" 1"))
                .count();
            assert_eq!(current, 1, "{state:?}: one current phase in\n{text}");
        }
        m.forget("ns", "a");
        assert!(!m.encode().contains("name=\"a\""), "{}", m.encode());
    }

    /// ValidationFailed is a server strict mode holds, as in the seed; an unreachable one (the
    /// probe found it not compliant too) is Failed.
    #[test]
    fn seed_002_validation_failed_is_a_strict_mode_hold() {
        use crate::api::server::{MCPServerStatus, ValidationStatus};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let dead = |reason: &str| MCPServerStatus {
            state: Some(ServerState::Dead),
            validation: Some(ValidationStatus {
                compliant: Some(false),
                ..ValidationStatus::default()
            }),
            conditions: Some(vec![Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: reason.into(),
                message: String::new(),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }]),
            ..MCPServerStatus::default()
        };
        assert_eq!(seed_phase_of(&dead("NonCompliant")), "ValidationFailed");
        assert_eq!(seed_phase_of(&dead("CheckFailing")), "Failed");
    }
}
