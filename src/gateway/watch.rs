//! In-cluster mode: the route table from the cluster. MCPServer and MCPServerGroup are watched
//! untyped (as the controller watches them) in the namespaces of `--namespace` (one watch each)
//! or cluster-wide, and compiled together with the same `compile()`; EndpointSlices labelled
//! `kubernetes.io/service-name` give container servers their ready pods. After each burst of
//! events the table is rebuilt ([`table`], pure) and swapped in whole.
//!
//! Ready (`/readyz`) only once every watch has listed: before that the table would miss routes
//! and answer 404 for servers that exist.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::DynamicObject;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};

use super::activator::Seen;
use super::proxy::Gateway;
use super::routes::{ReadyEndpoints, RouteTable};
use crate::compile::render::PORT_NAME;
use crate::compile::render::labels::{SCALED_BY_ANNOTATION, SCALED_BY_GATEWAY};
use crate::compile::{Inputs, compile};
use crate::source::objects::{compile_input, resource};
use crate::source::scope::Scope;

/// The label every EndpointSlice of a Service carries.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Events applied at most before a rebuild (a relist of many objects is one rebuild).
const BURST: usize = 1024;

/// One watch's objects by (namespace, name): replaced whole by each (re)list, then edited by
/// its events. `synced` once its first list is complete.
#[derive(Debug)]
pub struct Cache<T> {
    pub items: BTreeMap<(String, String), T>,
    relist: Option<BTreeMap<(String, String), T>>,
    pub synced: bool,
}

impl<T> Default for Cache<T> {
    fn default() -> Self {
        Cache {
            items: BTreeMap::new(),
            relist: None,
            synced: false,
        }
    }
}

impl<T> Cache<T> {
    /// Applies one watch event; `f` keeps what the table needs of an object.
    pub fn feed<K: kube::Resource>(&mut self, ev: Event<K>, f: impl Fn(&K) -> T) {
        let key = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
        match ev {
            Event::Init => self.relist = Some(BTreeMap::new()),
            Event::InitApply(o) => {
                let v = f(&o);
                self.relist
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key(&o), v);
            }
            Event::InitDone => {
                self.items = self.relist.take().unwrap_or_default();
                self.synced = true;
            }
            Event::Apply(o) => {
                let v = f(&o);
                self.items.insert(key(&o), v);
            }
            Event::Delete(o) => {
                self.items.remove(&key(&o));
            }
        }
    }
}

/// What the table needs of one EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    pub namespace: String,
    pub service: String,
    /// The `IP:PORT` of each ready endpoint on the MCP port (none when the slice has no such port).
    pub ready: Vec<String>,
}

/// The ready MCP addresses of one EndpointSlice. An endpoint is ready unless
/// `conditions.ready` is false (the API: unset means ready); the port is the one named as
/// hangar names a server's Service port, or the only port of a slice with one unnamed port.
pub fn slice(s: &EndpointSlice) -> Slice {
    let ports = s.ports.as_deref().unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| p.name.as_deref() == Some(PORT_NAME))
        .or(match ports {
            [only] if only.name.as_deref().unwrap_or_default().is_empty() => Some(only),
            _ => None,
        })
        .and_then(|p| p.port);
    let mut ready = Vec::new();
    if let Some(port) = port {
        for e in s.endpoints.iter().flatten() {
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &e.addresses {
                ready.push(if a.contains(':') {
                    format!("[{a}]:{port}")
                } else {
                    format!("{a}:{port}")
                });
            }
        }
    }
    Slice {
        namespace: s.namespace().unwrap_or_default(),
        service: s
            .labels()
            .get(SERVICE_NAME_LABEL)
            .cloned()
            .unwrap_or_default(),
        ready,
    }
}

/// Ready endpoints by Service, from its slices: sorted, none twice.
pub fn ready_endpoints<'a>(slices: impl IntoIterator<Item = &'a Slice>) -> ReadyEndpoints {
    let mut out = ReadyEndpoints::new();
    for s in slices.into_iter().filter(|s| !s.service.is_empty()) {
        out.entry((s.namespace.clone(), s.service.clone()))
            .or_default()
            .extend(s.ready.iter().cloned());
    }
    for v in out.values_mut() {
        v.sort();
        v.dedup();
    }
    out
}

/// Compiler input of the watched resources: one file each, groups after servers, in key order.
fn inputs<'a>(objs: impl IntoIterator<Item = (&'a DynamicObject, crate::api::Kind)>) -> Inputs {
    let mut all = Inputs {
        files: Vec::new(),
        default_namespace: "default".into(),
    };
    for (o, kind) in objs {
        all.files.extend(compile_input(o, kind.name()).files);
    }
    all
}

/// What the table was built from, and what was left out.
#[derive(Debug, Default, PartialEq)]
pub struct Built {
    pub table: RouteTable,
    /// Resources left out because they do not compile, as `KIND/NS/NAME`.
    pub left_out: Vec<String>,
}

/// The route table of the watched resources (pure). They compile together, as `hangar render`
/// compiles a directory; when they do not, each is compiled alone and those that fail are left
/// out (like the controller, one bad resource stops nothing else), the rest compiled together.
/// Resources in namespaces `scope` does not manage are left out as the controller leaves them.
pub fn table(
    scope: &Scope,
    servers: &[&DynamicObject],
    groups: &[&DynamicObject],
    endpoints: &ReadyEndpoints,
) -> Result<Built, String> {
    use crate::api::Kind;
    let managed = |o: &&&DynamicObject| scope.manages(&o.namespace().unwrap_or_default());
    let objs: Vec<(&DynamicObject, Kind)> = servers
        .iter()
        .filter(managed)
        .map(|o| (*o, Kind::Server))
        .chain(groups.iter().filter(managed).map(|o| (*o, Kind::Group)))
        .collect();
    let c = compile(&inputs(objs.iter().copied()));
    if c.bundle.is_some() {
        return Ok(Built {
            table: RouteTable::with_endpoints(&c.decided, endpoints),
            left_out: Vec::new(),
        });
    }
    let mut good = Vec::new();
    let mut left_out = Vec::new();
    for (o, kind) in objs {
        if compile(&compile_input(o, kind.name())).bundle.is_some() {
            good.push((o, kind));
        } else {
            left_out.push(format!(
                "{}/{}/{}",
                kind.name(),
                o.namespace().unwrap_or_default(),
                o.name_any()
            ));
        }
    }
    let c = compile(&inputs(good));
    match c.bundle {
        Some(_) => Ok(Built {
            table: RouteTable::with_endpoints(&c.decided, endpoints),
            left_out,
        }),
        None => Err(c.render_diagnostics()),
    }
}

/// Every cache of the watches.
#[derive(Default)]
struct State {
    servers: Vec<Cache<DynamicObject>>,
    groups: Vec<Cache<DynamicObject>>,
    slices: Vec<Cache<Slice>>,
    /// hangar's Deployments; those of on-demand servers kept for the activator.
    deployments: Vec<Cache<Option<Seen>>>,
}

/// What the activator needs of a Deployment: only an on-demand server's.
fn seen(d: &Deployment) -> Option<Seen> {
    let a = d.metadata.annotations.as_ref()?;
    (a.get(SCALED_BY_ANNOTATION).map(String::as_str) == Some(SCALED_BY_GATEWAY))
        .then(|| Seen::of(d))
}

impl State {
    fn synced(&self) -> bool {
        self.servers.iter().chain(&self.groups).all(|c| c.synced)
            && self.slices.iter().all(|c| c.synced)
            && self.deployments.iter().all(|c| c.synced)
    }

    fn on_demand(&self) -> BTreeMap<(String, String), Seen> {
        self.deployments
            .iter()
            .flat_map(|c| c.items.iter())
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .collect()
    }

    fn build(&self, scope: &Scope) -> Result<Built, String> {
        let servers: Vec<&DynamicObject> =
            self.servers.iter().flat_map(|c| c.items.values()).collect();
        let groups: Vec<&DynamicObject> =
            self.groups.iter().flat_map(|c| c.items.values()).collect();
        let eps = ready_endpoints(self.slices.iter().flat_map(|c| c.items.values()));
        table(scope, &servers, &groups, &eps)
    }
}

enum Msg {
    Server(usize, Event<DynamicObject>),
    Group(usize, Event<DynamicObject>),
    Slice(usize, Event<EndpointSlice>),
    Deployment(usize, Box<Event<Deployment>>),
    Failed(&'static str, watcher::Error),
}

impl State {
    /// Applies one event; whether it may change the route table (a Deployment's does not).
    fn apply(&mut self, m: Msg) -> bool {
        let keep = |o: &DynamicObject| o.clone();
        let routed = !matches!(m, Msg::Deployment(..) | Msg::Failed(..));
        match m {
            Msg::Server(i, ev) => {
                if let Some(c) = self.servers.get_mut(i) {
                    c.feed(ev, keep);
                }
            }
            Msg::Group(i, ev) => {
                if let Some(c) = self.groups.get_mut(i) {
                    c.feed(ev, keep);
                }
            }
            Msg::Slice(i, ev) => {
                if let Some(c) = self.slices.get_mut(i) {
                    c.feed(ev, slice);
                }
            }
            Msg::Deployment(i, ev) => {
                if let Some(c) = self.deployments.get_mut(i) {
                    c.feed(*ev, seen);
                }
            }
            // The watch retries with backoff; the table stays as it is meanwhile.
            Msg::Failed(kind, e) => tracing::warn!(kind, error = %e, "watch failed; retrying"),
        }
        routed
    }
}

/// Watches the cluster and keeps `gw.routes` current until the watches end; sets `ready` after
/// the first full sync.
pub async fn run(client: Client, scope: Scope, gw: Arc<Gateway>, ready: Arc<AtomicBool>) {
    use crate::api::Kind;
    let wc = watcher::Config::default();
    let sc = watcher::Config::default().labels(SERVICE_NAME_LABEL);
    let servers = scope.dynamic(&client, &resource(Kind::Server));
    let groups = scope.dynamic(&client, &resource(Kind::Group));
    let slices = scope.typed::<EndpointSlice>(&client);
    let deployments = scope.typed::<Deployment>(&client);
    let dc = watcher::Config::default().labels("app.kubernetes.io/managed-by=hangar");
    let mut state = State {
        servers: servers.iter().map(|_| Cache::default()).collect(),
        groups: groups.iter().map(|_| Cache::default()).collect(),
        slices: slices.iter().map(|_| Cache::default()).collect(),
        deployments: deployments.iter().map(|_| Cache::default()).collect(),
    };
    let mut watches: Vec<futures::stream::BoxStream<'static, Msg>> = Vec::new();
    for (i, api) in servers.into_iter().enumerate() {
        watches.push(
            watcher::watcher(api, wc.clone())
                .default_backoff()
                .map(move |r| {
                    r.map_or_else(|e| Msg::Failed("MCPServer", e), |ev| Msg::Server(i, ev))
                })
                .boxed(),
        );
    }
    for (i, api) in groups.into_iter().enumerate() {
        watches.push(
            watcher::watcher(api, wc.clone())
                .default_backoff()
                .map(move |r| {
                    r.map_or_else(|e| Msg::Failed("MCPServerGroup", e), |ev| Msg::Group(i, ev))
                })
                .boxed(),
        );
    }
    for (i, api) in slices.into_iter().enumerate() {
        watches.push(
            watcher::watcher(api, sc.clone())
                .default_backoff()
                .map(move |r| {
                    r.map_or_else(|e| Msg::Failed("EndpointSlice", e), |ev| Msg::Slice(i, ev))
                })
                .boxed(),
        );
    }
    for (i, api) in deployments.into_iter().enumerate() {
        watches.push(
            watcher::watcher(api, dc.clone())
                .default_backoff()
                .map(move |r| {
                    r.map_or_else(
                        |e| Msg::Failed("Deployment", e),
                        |ev| Msg::Deployment(i, Box::new(ev)),
                    )
                })
                .boxed(),
        );
    }
    let mut events = futures::stream::select_all(watches);
    tracing::info!(namespaces = %scope, "watching MCPServer, MCPServerGroup, EndpointSlice and Deployment");
    let mut last_left_out: Vec<String> = Vec::new();
    // Ends when every watch ends (they retry forever, so: when the process stops).
    let mut built = false;
    while let Some(m) = events.next().await {
        let mut routed = state.apply(m);
        // The rest of the burst already here, bounded, then one rebuild.
        for _ in 0..BURST {
            match events.next().now_or_never() {
                Some(Some(m)) => routed |= state.apply(m),
                _ => break,
            }
        }
        if !state.synced() {
            continue;
        }
        gw.activator.observe(state.on_demand());
        if built && !routed {
            continue;
        }
        built = true;
        match state.build(&scope) {
            Ok(b) => {
                if b.left_out != last_left_out && !b.left_out.is_empty() {
                    tracing::warn!(left_out = %b.left_out.join(", "), "resources that do not compile are not routed (their status says why)");
                }
                last_left_out = b.left_out;
                if **gw.routes.load() != b.table {
                    let n = b.table.routes.len();
                    gw.routes.store(Arc::new(b.table));
                    tracing::info!(routes = n, "route table replaced");
                }
                if !ready.swap(true, Ordering::SeqCst) {
                    tracing::info!("first full sync done: ready");
                }
            }
            Err(diagnostics) => {
                tracing::warn!(%diagnostics, "watched resources do not compile; keeping the current routes");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use kube::api::ObjectMeta;
    use serde_json::json;

    fn obj(
        kind: crate::api::Kind,
        ns: &str,
        name: &str,
        labels: &[(&str, &str)],
        spec: serde_json::Value,
    ) -> DynamicObject {
        let mut o = DynamicObject::new(name, &resource(kind)).within(ns);
        o.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        o.data = json!({ "spec": spec });
        o
    }

    fn remote(ns: &str, name: &str, deny: &[&str]) -> DynamicObject {
        obj(
            crate::api::Kind::Server,
            ns,
            name,
            &[("team", "a")],
            json!({"mode": "remote", "endpoint": format!("http://127.0.0.1:9/{name}"), "tools": {"denyList": deny}}),
        )
    }

    fn container(ns: &str, name: &str) -> DynamicObject {
        obj(
            crate::api::Kind::Server,
            ns,
            name,
            &[("team", "a")],
            json!({"mode": "container", "image": "hangar.test/mcp-python:1", "port": 8080}),
        )
    }

    fn eps(s: &EndpointSlice) -> Slice {
        slice(s)
    }

    fn endpoint_slice(
        ns: &str,
        svc: &str,
        port_name: Option<&str>,
        eps: &[(&str, Option<bool>)],
    ) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{svc}-abc")),
                namespace: Some(ns.into()),
                labels: Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into()),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: Some(
                eps.iter()
                    .map(|(a, ready)| Endpoint {
                        addresses: vec![a.to_string()],
                        conditions: Some(EndpointConditions {
                            ready: *ready,
                            ..EndpointConditions::default()
                        }),
                        ..Endpoint::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![EndpointPort {
                name: port_name.map(str::to_string),
                port: Some(8080),
                ..EndpointPort::default()
            }]),
        }
    }

    #[test]
    fn a_slice_gives_its_ready_endpoints_on_the_mcp_port() {
        let s = eps(&endpoint_slice(
            "ns",
            "echo",
            Some("mcp"),
            &[
                ("10.0.0.2", Some(true)),
                ("10.0.0.3", Some(false)),
                ("10.0.0.1", None),
            ],
        ));
        assert_eq!(s.service, "echo");
        assert_eq!(s.ready, vec!["10.0.0.2:8080", "10.0.0.1:8080"]);
        let other = eps(&endpoint_slice(
            "ns",
            "echo",
            Some("metrics"),
            &[("10.0.0.2", Some(true))],
        ));
        assert!(other.ready.is_empty());
        let e = ready_endpoints([
            &s,
            &eps(&endpoint_slice(
                "ns",
                "echo",
                None,
                &[("10.0.0.1", Some(true))],
            )),
        ]);
        assert_eq!(
            e[&("ns".to_string(), "echo".to_string())],
            vec!["10.0.0.1:8080", "10.0.0.2:8080"]
        );
    }

    #[test]
    fn the_table_is_a_function_of_the_resources_and_the_endpoints() {
        let scope = Scope::Cluster;
        let a = remote("team", "alpha", &["rm"]);
        let c = container("team", "box");
        let g = obj(
            crate::api::Kind::Group,
            "team",
            "all",
            &[],
            json!({"selector": {"matchLabels": {"team": "a"}}}),
        );
        let none = ReadyEndpoints::new();
        let b = table(&scope, &[&a, &c], &[&g], &none).unwrap();
        assert!(b.left_out.is_empty());
        let t = &b.table;
        let alpha = t.get("/servers/team/alpha/mcp").unwrap();
        assert!(alpha.backends[0].tools.deny.contains("rm"));
        assert_eq!(t.get("/groups/team/all/mcp").unwrap().backends.len(), 2);
        let boxed = &t.get("/servers/team/box/mcp").unwrap().backends[0].upstream;
        assert!(boxed.target(None, 0).is_err());
        // The same inputs, the same table; endpoints reach the container server only.
        assert_eq!(table(&scope, &[&a, &c], &[&g], &none).unwrap(), b);
        let mut eps = ReadyEndpoints::new();
        eps.insert(
            ("team".into(), "box".into()),
            vec!["10.0.0.1:8080".into(), "10.0.0.2:8080".into()],
        );
        let t2 = table(&scope, &[&a, &c], &[&g], &eps).unwrap().table;
        assert_eq!(
            t2.get("/servers/team/alpha/mcp"),
            t.get("/servers/team/alpha/mcp")
        );
        let up = &t2.get("/servers/team/box/mcp").unwrap().backends[0].upstream;
        assert_eq!(up.target(None, 1).unwrap().url, "http://10.0.0.2:8080/mcp");
        assert_eq!(
            up.target(None, 2).unwrap().endpoint.as_deref(),
            Some("10.0.0.1:8080")
        );
        assert_eq!(
            up.target(Some("10.0.0.2:8080"), 0).unwrap().url,
            "http://10.0.0.2:8080/mcp"
        );
        assert_eq!(
            up.target(Some("10.0.0.9:8080"), 0),
            Err(super::super::routes::NoTarget::SessionEndpointGone)
        );
    }

    #[test]
    fn a_resource_that_does_not_compile_is_left_out_and_the_rest_served() {
        let a = remote("team", "alpha", &[]);
        let bad = obj(
            crate::api::Kind::Server,
            "team",
            "broken",
            &[],
            json!({"mode": "remote"}),
        );
        let b = table(&Scope::Cluster, &[&a, &bad], &[], &ReadyEndpoints::new()).unwrap();
        assert_eq!(b.left_out, vec!["MCPServer/team/broken"]);
        assert!(b.table.get("/servers/team/alpha/mcp").is_some());
        assert!(b.table.get("/servers/team/broken/mcp").is_none());
        // Outside the scope: not routed.
        let s = Scope::new(&["other".into()]);
        assert!(
            table(&s, &[&a], &[], &ReadyEndpoints::new())
                .unwrap()
                .table
                .routes
                .is_empty()
        );
        let sys = remote("kube-system", "alpha", &[]);
        assert!(
            table(&Scope::Cluster, &[&sys], &[], &ReadyEndpoints::new())
                .unwrap()
                .table
                .routes
                .is_empty()
        );
    }

    #[test]
    fn a_cache_is_replaced_by_a_relist_and_edited_by_events() {
        let mut c: Cache<DynamicObject> = Cache::default();
        let a = remote("ns", "a", &[]);
        let b = remote("ns", "b", &[]);
        c.feed(Event::Init, Clone::clone);
        c.feed(Event::InitApply(a.clone()), Clone::clone);
        assert!(!c.synced && c.items.is_empty());
        c.feed(Event::InitDone, Clone::clone);
        assert!(c.synced && c.items.len() == 1);
        c.feed(Event::Apply(b.clone()), Clone::clone);
        c.feed(Event::Delete(a.clone()), Clone::clone);
        assert_eq!(
            c.items.keys().map(|k| k.1.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        // A relist (after a watch error) replaces everything once it is complete.
        c.feed(Event::Init, Clone::clone);
        c.feed(Event::InitApply(a), Clone::clone);
        assert_eq!(c.items.len(), 1);
        c.feed(Event::InitDone, Clone::clone);
        assert_eq!(
            c.items.keys().map(|k| k.1.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
    }
}
