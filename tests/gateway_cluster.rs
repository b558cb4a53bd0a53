//! `hangar gateway --cluster` (the built binary, on the host) against the real control plane
//! (deploy/testenv): MCPServers created, changed and deleted in the cluster change its routes
//! with no restart; a container-mode server is reached through a hand-made EndpointSlice
//! pointing at a real MCP server on loopback (kwok's pods do not run, so this is how its pod
//! addresses are tested on the host). The upstream is the Python SDK server on loopback.
//!
//! Skipped with a note without a cluster or the MCP servers, unless HANGAR_REQUIRE_CLUSTER=1 /
//! HANGAR_REQUIRE_MCP=1.

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value as Json, json};

use hangar::probe::http::{Body, Http};
use support::{Env, Proc, free_tcp_port, mcp_servers};

mod support;

const VERSION: &str = "2025-11-25";

/// `hangar gateway --cluster --namespace NS --listen 127.0.0.1:PORT`, once /readyz answers 200.
fn gateway(env: &Env, ns: &str, log: &str) -> (Proc, String) {
    let port = free_tcp_port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{log}-{}.log", std::process::id())),
    )
    .unwrap();
    let mut cmd = Command::new(&env.hangar);
    cmd.args(["gateway", "--cluster", "--namespace", ns, "--listen", &addr])
        .env("KUBECONFIG", &env.kubeconfig);
    support::spawn_gateway(cmd, &addr, log)
}

struct Reply {
    status: u16,
    session: Option<String>,
    body: String,
}

impl Reply {
    /// The JSON-RPC response: the JSON body, or the SSE event with an `id`.
    fn rpc(&self) -> Json {
        support::rpc_response(&self.body).unwrap_or(Json::Null)
    }

    fn tool_names(&self) -> Vec<String> {
        self.rpc()["result"]["tools"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn post(http: &Http, url: &str, session: Option<&str>, body: &Json) -> Reply {
    let mut b = http::Request::builder()
        .method("POST")
        .uri(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", VERSION);
    if let Some(s) = session {
        b = b.header("mcp-session-id", s);
    }
    let req = b
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), http.send(req))
        .await
        .expect("an answer within 20s")
        .expect("an HTTP response");
    let (p, incoming) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(20), Body::new(incoming, 16 << 20).all())
        .await
        .expect("the body within 20s")
        .expect("a body");
    Reply {
        status: p.status.as_u16(),
        session: p
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// initialize + notifications/initialized through the gateway; the session token.
async fn open_session(http: &Http, url: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": {},
        "clientInfo": {"name": "gateway-cluster-test", "version": "1"}}});
    let r = post(http, url, None, &init).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.session.expect("a session id");
    let n = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = post(http, url, Some(&token), &n).await;
    assert_eq!(r.status, 202, "{}", r.body);
    token
}

fn list(id: u64) -> Json {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})
}

fn call(id: u64, tool: &str) -> Json {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {"text": "hi"}}})
}

/// Polls `f` every 200 ms until it holds (15 s at most).
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: not after 15s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn remote(ns: &str, name: &str, port: u16, deny: &str) -> String {
    format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  mode: remote\n  endpoint: http://127.0.0.1:{port}/mcp\n  tools:\n    denyList: [{deny}]\n"
    )
}

/// Rewrites EndpointSlice NS/NAME in etcd: its first endpoint at 127.0.0.1, ready.
fn loopback_slice(env: &Env, ns: &str, name: &str) {
    let mut o: Json =
        serde_json::from_str(&env.k(&["get", "endpointslice", name, "-n", ns, "-o", "json"]))
            .unwrap();
    let meta = o["metadata"].as_object_mut().unwrap();
    meta.remove("resourceVersion");
    meta.remove("managedFields");
    o["endpoints"][0]["addresses"] = json!(["127.0.0.1"]);
    o["endpoints"][0]["conditions"] = json!({"ready": true, "serving": true});
    let ports = std::fs::read_to_string(env.state.join("ports")).unwrap();
    let etcd = ports
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("etcd="))
        .expect("the etcd port in the testenv's ports file");
    let out = Command::new(env.bin.join("etcdctl"))
        .arg(format!("--endpoints=http://127.0.0.1:{etcd}"))
        .args(["put", &format!("/registry/endpointslices/{ns}/{name}")])
        .arg(o.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "etcdctl put: {}", support::text(&out));
}

/// A remote MCPServer created in the cluster becomes routable with its deny list enforced; a
/// changed deny list applies to the open session without a restart; deleted, its route is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_created_changed_and_deleted_in_the_cluster_change_the_routes() {
    let Some(env) = support::env() else { return };
    let Some(s) = mcp_servers() else { return };
    env.crds();
    let port = free_tcp_port();
    let _py = s.python_on("streamable-http", port);
    let ns = env.namespace("gwc-remote", false);
    let (_gw, base) = gateway(env, &ns, "gateway-cluster-remote");
    let url = format!("{base}/servers/{ns}/echo/mcp");
    let http = Http::new(Duration::from_secs(5)).unwrap();

    // Not there yet: the gateway's 404.
    let r = post(&http, &url, None, &list(1)).await;
    assert_eq!(r.status, 404, "{}", r.body);

    env.apply_yaml(&remote(&ns, "echo", port, "add"));
    eventually("the new server routed", || async {
        post(&http, &url, None, &list(1)).await.status != 404
    })
    .await;
    let token = open_session(&http, &url).await;
    let r = post(&http, &url, Some(&token), &list(2)).await;
    assert_eq!(r.tool_names(), vec!["echo"], "{}", r.body);
    let r = post(&http, &url, Some(&token), &call(3, "add")).await;
    assert_eq!(r.rpc()["error"]["code"], -32003, "{}", r.body);
    let r = post(&http, &url, Some(&token), &call(4, "echo")).await;
    assert!(r.rpc()["result"].is_object(), "{}", r.body);

    // The deny list changes in the cluster: the same session, the new policy.
    env.apply_yaml(&remote(&ns, "echo", port, "echo"));
    eventually("the changed deny list applied", || async {
        post(&http, &url, Some(&token), &list(5)).await.tool_names() == vec!["add"]
    })
    .await;
    let r = post(&http, &url, Some(&token), &call(6, "echo")).await;
    assert_eq!(r.rpc()["error"]["code"], -32003, "{}", r.body);

    env.k(&["delete", "mcpserver", "echo", "-n", &ns, "--wait=true"]);
    eventually("the deleted server's route gone", || async {
        post(&http, &url, Some(&token), &list(7)).await.status == 404
    })
    .await;
    let r = post(&http, &url, None, &list(8)).await;
    assert_eq!(r.rpc()["error"]["code"], -32001, "{}", r.body);
    env.k(&["delete", "namespace", &ns, "--wait=false"]);
}

/// A container-mode MCPServer whose Service (no selector) has a hand-made EndpointSlice on
/// 127.0.0.1:PORT of a real server: the gateway routes to it and pins the session there; while
/// the endpoint is not ready, a new session gets 503; removed, the open session is 404.
///
/// The API server refuses loopback addresses in an EndpointSlice, so the slice is created with
/// a documentation address (192.0.2.1, not ready: never dialled) and then rewritten in etcd,
/// past validation, to the ready 127.0.0.1:PORT; the gateway sees it through its watch as any
/// other update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_server_is_reached_through_its_endpoint_slice() {
    let Some(env) = support::env() else { return };
    let Some(s) = mcp_servers() else { return };
    env.crds();
    let port = free_tcp_port();
    let _py = s.python_on("streamable-http", port);
    let ns = env.namespace("gwc-slice", false);
    env.apply_yaml(&format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: box\n  namespace: {ns}\nspec:\n  mode: container\n  image: hangar.test/mcp-python:1\n  port: 8080\n  tools:\n    denyList: [add]\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: box\n  namespace: {ns}\nspec:\n  ports:\n  - name: mcp\n    port: 8080\n"
    ));
    env.apply_yaml(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: box-by-hand\n  namespace: {ns}\n  labels:\n    kubernetes.io/service-name: box\naddressType: IPv4\nports:\n- name: mcp\n  port: {port}\n  protocol: TCP\nendpoints:\n- addresses: [192.0.2.1]\n  conditions:\n    ready: false\n"
    ));
    let (_gw, base) = gateway(env, &ns, "gateway-cluster-slice");
    let url = format!("{base}/servers/{ns}/box/mcp");
    let http = Http::new(Duration::from_secs(5)).unwrap();
    // Routed, but its only endpoint is not ready.
    eventually("the container server routed, unavailable", || async {
        post(&http, &url, None, &list(1)).await.status == 503
    })
    .await;

    loopback_slice(env, &ns, "box-by-hand");
    // Reached: the server itself answers (a session-less tools/list is its own 400).
    eventually("the ready endpoint used", || async {
        let r = post(&http, &url, None, &list(1)).await;
        r.status == 400 && r.body.contains("Missing session ID")
    })
    .await;
    let token = open_session(&http, &url).await;
    let r = post(&http, &url, Some(&token), &list(2)).await;
    assert_eq!(r.tool_names(), vec!["echo"], "{}", r.body);
    let r = post(&http, &url, Some(&token), &call(3, "echo")).await;
    assert!(r.rpc()["result"].is_object(), "{}", r.body);

    // The pod address gone: the session on it is over (404), a new one has nowhere to go (503).
    env.k(&["delete", "endpointslice", "box-by-hand", "-n", &ns]);
    eventually("the session on the gone endpoint ended", || async {
        post(&http, &url, Some(&token), &list(4)).await.status == 404
    })
    .await;
    assert_eq!(post(&http, &url, None, &list(5)).await.status, 503);
    env.k(&["delete", "namespace", &ns, "--wait=false"]);
}
