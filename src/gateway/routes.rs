//! The route table: which URL path reaches which upstream, under which policy. A pure function of
//! the compiler's decided settings ([`Decided`]), so `hangar render -o routes` prints exactly what
//! a gateway given the same inputs enforces, and `hangar diff` of two renders shows a policy change
//! before it lands. The gateway holds it behind an `ArcSwap` and replaces it whole on reload.
//!
//! Nothing here decides a default: every value comes from [`ServerSettings`] / [`GroupSettings`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value as Json, json};

use crate::api::group::Strategy;
use crate::api::server::{Mode, Transport};
use crate::compile::Decided;
use crate::compile::settings::{Breaker, Failover, GroupHealth, RateLimit, ServerSettings};

/// A server by namespace and name: the backend identity sealed into session tokens.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerKey {
    pub namespace: String,
    pub name: String,
}

impl ServerKey {
    /// `NAMESPACE/NAME` (neither may hold `/`: both are DNS-1123 names).
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Where a backend's MCP endpoint is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// A remote server: its `endpoint` URL.
    Remote { url: String },
    /// A container server: reached through its pods' addresses, which come from its
    /// EndpointSlices in the cluster ([`RouteTable::with_endpoints`]). Local mode has none, so
    /// such a route answers 503 there.
    Endpoints {
        service_url: String,
        /// The MCP path on each pod (the server's decided `path`).
        path: String,
        /// The ready pods' `IP:PORT` (of the Service's MCP port), sorted, none twice.
        ready: Vec<String>,
    },
}

/// Ready endpoints by Service (namespace, name): `IP:PORT` of the MCP port, from EndpointSlices.
pub type ReadyEndpoints = BTreeMap<(String, String), Vec<String>>;

/// Where one request goes: a URL, and for a container server the pod it pins the session to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub endpoint: Option<String>,
}

/// Why a backend has no target for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoTarget {
    /// A container server with no ready endpoint (or in local mode, none known).
    NoReadyEndpoint,
    /// The session's pod is no longer among the ready endpoints: its upstream session is gone.
    SessionEndpointGone,
}

impl Upstream {
    /// The target of a request: the session's pinned pod when it has one, else (a new session)
    /// the `n`th ready pod, wrapping around.
    pub fn target(&self, pinned: Option<&str>, n: usize) -> Result<Target, NoTarget> {
        match self {
            Upstream::Remote { url } => Ok(Target {
                url: url.clone(),
                endpoint: None,
            }),
            Upstream::Endpoints { path, ready, .. } => {
                let addr = match pinned {
                    Some(p) => ready
                        .iter()
                        .find(|a| a.as_str() == p)
                        .ok_or(NoTarget::SessionEndpointGone)?,
                    None => ready
                        .get(n % ready.len().max(1))
                        .ok_or(NoTarget::NoReadyEndpoint)?,
                };
                Ok(Target {
                    url: format!("http://{addr}{path}"),
                    endpoint: Some(addr.clone()),
                })
            }
        }
    }
}

/// The tool policy of one server, from `tools`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolPolicy {
    /// Empty: every tool not denied is allowed.
    pub allow: BTreeSet<String>,
    pub deny: BTreeSet<String>,
    pub rate_limit: Option<RateLimit>,
}

impl ToolPolicy {
    /// Whether a tool may be listed and called: deny wins over allow; an empty allow list allows
    /// every tool. Names are compared exactly (MCP tool names are case-sensitive).
    pub fn allows(&self, tool: &str) -> bool {
        !self.deny.contains(tool) && (self.allow.is_empty() || self.allow.contains(tool))
    }

    /// Whether the policy hides or refuses any tool at all (when not, `tools/list` streams
    /// through untouched).
    pub fn filters(&self) -> bool {
        !self.allow.is_empty() || !self.deny.is_empty()
    }
}

/// One server behind a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub server: ServerKey,
    pub upstream: Upstream,
    pub transport: Transport,
    pub tools: ToolPolicy,
    /// The server's `circuitBreaker`, enforced by [`super::breaker`].
    pub breaker: Breaker,
    /// The server's `healthCheck.interval`: how long a group member counted unhealthy stays out
    /// before traffic tries it again ([`super::balance`]).
    pub recheck: std::time::Duration,
    /// An on-demand server (`replicas: 0`): started by the gateway's activator on a request that
    /// finds no ready pod, stopped after `idleTTL` ([`super::activator`]).
    pub activation: Option<Activation>,
}

/// How an on-demand server is woken and put to sleep, from its decided settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activation {
    /// How long held requests wait for the server to become ready.
    pub startup_timeout: std::time::Duration,
    /// How long the server runs without a request or an open stream.
    pub idle_ttl: std::time::Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Server,
    Group,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Server => "server",
            RouteKind::Group => "group",
        }
    }
}

/// One MCP endpoint the gateway serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub kind: RouteKind,
    pub namespace: String,
    pub name: String,
    /// The route's backends, sorted by server: one for a server, the members for a group.
    pub backends: Vec<Arc<Backend>>,
    /// A group's strategy (a server's route has none), applied by [`super::balance`].
    pub strategy: Option<Strategy>,
    /// A group's failover and health policy (a server's route has none).
    pub group: Option<GroupPolicy>,
}

/// What a group decides beyond its strategy, from its [`crate::compile::settings::GroupSettings`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPolicy {
    pub failover: Failover,
    pub health: GroupHealth,
}

impl Route {
    /// The path the route is served at: the fixed contract `/servers/NS/NAME/mcp`,
    /// `/groups/NS/NAME/mcp`.
    pub fn path(&self) -> String {
        let dir = match self.kind {
            RouteKind::Server => "servers",
            RouteKind::Group => "groups",
        };
        format!("/{dir}/{}/{}/mcp", self.namespace, self.name)
    }

    /// The backend named in a session token, if it still belongs to this route.
    pub fn backend(&self, server: &ServerKey) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| &b.server == server)
    }

    /// The first backend (GET/DELETE without a session; POSTs go through [`super::balance`]).
    pub fn pick(&self) -> Option<&Arc<Backend>> {
        self.backends.first()
    }
}

/// Every route, by path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    pub routes: BTreeMap<String, Route>,
}

fn backend(key: ServerKey, s: &ServerSettings, endpoints: &ReadyEndpoints) -> Backend {
    Backend {
        upstream: match s.mode {
            Mode::Remote => Upstream::Remote { url: s.url.clone() },
            // A container server's Service is named after the server.
            Mode::Container => Upstream::Endpoints {
                service_url: s.url.clone(),
                path: s.path.clone(),
                ready: endpoints
                    .get(&(key.namespace.clone(), key.name.clone()))
                    .cloned()
                    .unwrap_or_default(),
            },
        },
        transport: s.transport,
        tools: ToolPolicy {
            allow: s.tools.allow.iter().cloned().collect(),
            deny: s.tools.deny.iter().cloned().collect(),
            rate_limit: s.tools.rate_limit.clone(),
        },
        breaker: s.circuit_breaker.clone(),
        recheck: s.health.interval,
        activation: s.on_demand.then_some(Activation {
            startup_timeout: s.startup_timeout,
            idle_ttl: s.idle_ttl,
        }),
        server: key,
    }
}

impl RouteTable {
    /// The routes of a compilation's decided settings, with no endpoint known (local mode).
    pub fn of(decided: &Decided) -> RouteTable {
        Self::with_endpoints(decided, &ReadyEndpoints::new())
    }

    /// The routes of a compilation's decided settings, container servers reaching the ready
    /// endpoints of their Service (in-cluster mode). Pure: same inputs, same table.
    pub fn with_endpoints(decided: &Decided, endpoints: &ReadyEndpoints) -> RouteTable {
        let mut backends: BTreeMap<(String, String), Arc<Backend>> = BTreeMap::new();
        let mut routes = BTreeMap::new();
        for ((ns, name), s) in &decided.servers {
            let key = ServerKey {
                namespace: ns.clone(),
                name: name.clone(),
            };
            let b = Arc::new(backend(key, s, endpoints));
            backends.insert((ns.clone(), name.clone()), Arc::clone(&b));
            let r = Route {
                kind: RouteKind::Server,
                namespace: ns.clone(),
                name: name.clone(),
                backends: vec![b],
                strategy: None,
                group: None,
            };
            routes.insert(r.path(), r);
        }
        for ((ns, name), g) in &decided.groups {
            let mut members: Vec<Arc<Backend>> = decided
                .group_members
                .get(&(ns.clone(), name.clone()))
                .into_iter()
                .flatten()
                .filter_map(|m| backends.get(&(ns.clone(), m.clone())).cloned())
                .collect();
            members.sort_by(|a, b| a.server.cmp(&b.server));
            let r = Route {
                kind: RouteKind::Group,
                namespace: ns.clone(),
                name: name.clone(),
                backends: members,
                strategy: Some(g.strategy),
                group: Some(GroupPolicy {
                    failover: g.failover.clone(),
                    health: g.health.clone(),
                }),
            };
            routes.insert(r.path(), r);
        }
        RouteTable { routes }
    }

    pub fn get(&self, path: &str) -> Option<&Route> {
        self.routes.get(path)
    }

    /// The table as `hangar render -o routes` prints it (deterministic: routes by path, backends
    /// by server, tool names sorted).
    pub fn to_json(&self) -> Json {
        let routes: Vec<Json> = self
            .routes
            .values()
            .map(|r| {
                let backends: Vec<Json> = r
                    .backends
                    .iter()
                    .map(|b| {
                        let (mode, url) = match &b.upstream {
                            Upstream::Remote { url } => ("remote", url),
                            Upstream::Endpoints { service_url, .. } => ("endpoints", service_url),
                        };
                        let mut tools = serde_json::Map::new();
                        if !b.tools.allow.is_empty() {
                            tools.insert("allow".into(), json!(b.tools.allow));
                        }
                        if !b.tools.deny.is_empty() {
                            tools.insert("deny".into(), json!(b.tools.deny));
                        }
                        if let Some(rl) = &b.tools.rate_limit {
                            tools.insert(
                                "rateLimit".into(),
                                json!({"requestsPerMinute": rl.requests_per_minute, "burst": rl.burst}),
                            );
                        }
                        let mut o = json!({
                            "server": b.server.id(),
                            "upstream": {"kind": mode, "url": url},
                            "transport": b.transport.as_str(),
                        });
                        if !tools.is_empty() {
                            o["tools"] = Json::Object(tools);
                        }
                        if let Some(a) = &b.activation {
                            o["activation"] = json!({
                                "startOnRequest": true,
                                "startupTimeout": crate::compile::units::format_duration(a.startup_timeout),
                                "idleTTL": crate::compile::units::format_duration(a.idle_ttl),
                            });
                        }
                        o
                    })
                    .collect();
                let mut o = json!({
                    "path": r.path(),
                    "kind": r.kind.as_str(),
                    "backends": backends,
                });
                if let Some(s) = r.strategy {
                    o["strategy"] = serde_json::to_value(s).unwrap_or(Json::Null);
                }
                o
            })
            .collect();
        json!({ "routes": routes })
    }

    /// The table as YAML.
    pub fn to_yaml(&self) -> String {
        crate::yaml::to_string(&self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> ToolPolicy {
        ToolPolicy {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
            rate_limit: None,
        }
    }

    #[test]
    fn deny_wins_and_an_empty_allow_list_allows_all() {
        let p = policy(&[], &["rm"]);
        assert!(p.allows("echo") && !p.allows("rm"));
        let p = policy(&["echo", "rm"], &["rm"]);
        assert!(p.allows("echo") && !p.allows("rm") && !p.allows("add"));
        assert!(!policy(&[], &[]).filters());
        assert!(policy(&["Echo"], &[]).allows("Echo") && !policy(&["Echo"], &[]).allows("echo"));
    }
}
