//! Group strategies, failover, health policy and circuit breakers of `hangar gateway` (the built
//! binary), in front of real MCP servers on loopback (the Python SDK and the npm "everything"
//! server as remote-mode MCPServers). Kept apart from `tests/gateway.rs` so both grow without
//! touching each other; the helpers are the same in small.
//!
//! Skipped with a note without the installed servers, unless HANGAR_REQUIRE_MCP=1.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value as Json, json};

use hangar::probe::http::{Body, Http};
use support::{Proc, free_tcp_port, mcp_servers};

mod support;

const MODERN: &str = "2026-07-28";
const LEGACY: &str = "2025-11-25";

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("gwpolicy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("manifests")).unwrap();
    d
}

/// A remote-mode MCPServer in namespace `t` with `labels` and extra `spec` lines.
fn remote(name: &str, port: u16, labels: &str, spec: &str) -> String {
    format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: {name}\n  namespace: t\n  labels: {{{labels}}}\nspec:\n  mode: remote\n  endpoint: http://127.0.0.1:{port}/mcp\n{spec}---\n"
    )
}

fn group(name: &str, label: &str, spec: &str) -> String {
    format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServerGroup\nmetadata:\n  name: {name}\n  namespace: t\nspec:\n  selector:\n    matchLabels: {{{label}: \"y\"}}\n{spec}---\n"
    )
}

fn gateway(dir: &Path, text: &str) -> (Proc, String) {
    std::fs::write(dir.join("manifests/servers.yaml"), text).unwrap();
    let port = free_tcp_port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("gateway.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hangar"));
    cmd.arg("gateway").arg(dir.join("manifests")).args([
        "--listen",
        &addr,
        "--upstream-timeout",
        "5s",
    ]);
    support::spawn_gateway(cmd, &addr, log)
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Reply {
    fn rpc(&self) -> Json {
        support::rpc_response(&self.body)
            .unwrap_or_else(|| panic!("no JSON-RPC response in the body: {}", self.body))
    }

    fn code(&self) -> Option<i64> {
        self.rpc()["error"]["code"].as_i64()
    }
}

async fn post(http: &Http, url: &str, headers: &[(&str, &str)], body: &Json) -> Reply {
    let mut b = http::Request::builder()
        .method("POST")
        .uri(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
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
        headers: p.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A stateless 2026-07-28 request with its routing headers.
async fn modern(http: &Http, url: &str, id: u64, method: &str, name: Option<&str>) -> Reply {
    let mut params = json!({"_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "gateway-test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }});
    let mut hs = vec![("mcp-protocol-version", MODERN), ("mcp-method", method)];
    if let Some(n) = name {
        params["name"] = json!(n);
        params["arguments"] = json!({"text": "hi"});
        hs.push(("mcp-name", n));
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    post(http, url, &hs, &body).await
}

fn metrics(base: &str) -> String {
    support::http_get(base.trim_start_matches("http://"), "/metrics")
        .unwrap()
        .1
}

fn client() -> Http {
    Http::new(Duration::from_secs(5)).unwrap()
}

/// RoundRobin spreads new sessions over a group's members; a group whose member is killed mid-run
/// keeps answering `tools/list` (failed over to the live member: 0 failed requests), while a
/// `tools/call` that lands on the dead member is answered with an error and not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_spread_sessions_fail_over_reads_and_never_repeat_calls() {
    let Some(s) = mcp_servers() else { return };
    let (pa, pb) = (free_tcp_port(), free_tcp_port());
    let a = s.python_on("streamable-http", pa);
    let _b = s.python_on("streamable-http", pb);
    let (_e, pe) = s.everything("streamableHttp");
    let dir = scratch("failover");
    // `fo` keeps a dead member in rotation (unhealthyThreshold and the breaker far away), so
    // every other request meets it.
    let keep = "  circuitBreaker: {failureThreshold: 1000}\n";
    let (_gw, base) = gateway(
        &dir,
        &[
            remote("a", pa, "fo: \"y\"", keep),
            remote("b", pb, "fo: \"y\", rr: \"y\"", keep),
            remote("e", pe, "rr: \"y\"", ""),
            group(
                "fo",
                "fo",
                "  failover: {maxRetries: 1, retryDelay: 20ms}\n  healthPolicy: {unhealthyThreshold: 1000}\n",
            ),
            group("rr", "rr", ""),
        ]
        .concat(),
    );
    let http = client();

    // RoundRobin: four new sessions, two on each member (told apart by serverInfo)
    let rr = format!("{base}/groups/t/rr/mcp");
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..4 {
        let init = json!({"jsonrpc": "2.0", "id": i, "method": "initialize", "params": {
            "protocolVersion": LEGACY, "capabilities": {},
            "clientInfo": {"name": "gateway-test", "version": "1"}}});
        let r = post(&http, &rr, &[], &init).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.headers.contains_key("mcp-session-id"));
        let name = r.rpc()["result"]["serverInfo"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        *seen.entry(name).or_default() += 1;
    }
    eprintln!("sessions by member: {seen:?}");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.values().all(|&n| n == 2), "{seen:?}");

    // failover: a is killed after 10 of 40 listings; none fails
    let fo = format!("{base}/groups/t/fo/mcp");
    let (n, mut failed) = (40u64, 0u64);
    let mut a = Some(a);
    let started = Instant::now();
    for i in 0..n {
        if i == 10 {
            drop(a.take());
        }
        let r = modern(&http, &fo, i, "tools/list", None).await;
        let ok = r.status == 200 && r.rpc()["result"]["tools"].is_array();
        if !ok {
            failed += 1;
            eprintln!("listing {i} failed: {} {}", r.status, r.body);
        }
    }
    eprintln!(
        "tools/list through a group with a member killed: {failed} failed of {n} in {:?}",
        started.elapsed()
    );
    assert_eq!(failed, 0);
    let m = metrics(&base);
    assert!(
        m.contains("hangar_gateway_failover_retries_total{namespace=\"t\",name=\"a\"}"),
        "{m}"
    );

    // tools/call: of two calls in a row one lands on the dead member, and it is not repeated
    let retries_before = retries(&metrics(&base));
    let (mut ok, mut refused) = (0, 0);
    for i in 0..2 {
        let r = modern(&http, &fo, 100 + i, "tools/call", Some("echo")).await;
        if r.status == 200 && r.code().is_none() {
            ok += 1;
        } else {
            assert_eq!((r.status, r.code()), (502, Some(-32000)), "{}", r.body);
            refused += 1;
        }
    }
    assert_eq!((ok, refused), (1, 1));
    assert_eq!(
        retries(&metrics(&base)),
        retries_before,
        "a tools/call was sent again"
    );
}

/// The sum of the failover retries counter.
fn retries(m: &str) -> u64 {
    m.lines()
        .filter(|l| l.starts_with("hangar_gateway_failover_retries_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A server's breaker opens after `failureThreshold` failures and then refuses at once (503,
/// -32006, Retry-After) without reaching the upstream; once the upstream is back it closes after
/// `resetTimeout`. A group with fewer healthy members than `minHealthyPercentage` answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_fails_fast_and_closes_and_an_unhealthy_group_answers_503() {
    let Some(s) = mcp_servers() else { return };
    let (ps, pc, pd) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    let solo = s.python_on("streamable-http", ps);
    let c = s.python_on("streamable-http", pc);
    let _d = s.python_on("streamable-http", pd);
    let dir = scratch("breaker");
    let (_gw, base) = gateway(
        &dir,
        &[
            remote(
                "solo",
                ps,
                "x: \"n\"",
                "  circuitBreaker: {failureThreshold: 2, resetTimeout: 2s, halfOpenRequests: 1, successThreshold: 1}\n",
            ),
            remote("c", pc, "strict: \"y\"", ""),
            remote("d", pd, "strict: \"y\"", ""),
            group(
                "strict",
                "strict",
                "  failover: {retryDelay: 10ms}\n  healthPolicy: {minHealthyPercentage: 100, unhealthyThreshold: 2}\n",
            ),
        ]
        .concat(),
    );
    let http = client();
    let url = format!("{base}/servers/t/solo/mcp");
    assert_eq!(modern(&http, &url, 1, "tools/list", None).await.status, 200);
    drop(solo);
    for i in 0..2 {
        let r = modern(&http, &url, 10 + i, "tools/list", None).await;
        assert_eq!((r.status, r.code()), (502, Some(-32000)), "{}", r.body);
    }
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let t = Instant::now();
        let r = modern(&http, &url, 20 + i, "tools/list", None).await;
        slowest = slowest.max(t.elapsed());
        assert_eq!((r.status, r.code()), (503, Some(-32006)), "{}", r.body);
        let after: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&after), "Retry-After {after}");
    }
    // The stream (GET) is guarded by the same breaker: answered at once, never forwarded.
    let req = http::Request::builder()
        .method("GET")
        .uri(&url)
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let get = tokio::time::timeout(Duration::from_secs(5), http.send(req))
        .await
        .expect("an answer within 5s")
        .expect("an HTTP response");
    assert_eq!(get.status(), 503, "GET with the breaker open");
    assert!(get.headers().contains_key("retry-after"));
    eprintln!("open breaker: slowest refusal of 5 took {slowest:?}");
    assert!(slowest < Duration::from_millis(10), "{slowest:?}");
    assert!(
        metrics(&base).contains("hangar_gateway_breaker_state{namespace=\"t\",name=\"solo\"} 1")
    );

    let _solo = s.python_on("streamable-http", ps);
    let back = Instant::now();
    let closed = loop {
        let r = modern(&http, &url, 30, "tools/list", None).await;
        if r.status == 200 {
            break back.elapsed();
        }
        assert_eq!(r.code(), Some(-32006), "{}", r.body);
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "still open after 10s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("breaker closed {closed:?} after the upstream came back");
    let m = metrics(&base);
    assert!(
        m.contains("hangar_gateway_breaker_state{namespace=\"t\",name=\"solo\"} 0"),
        "{m}"
    );
    for (from, to) in [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ] {
        assert!(
            m.contains(&format!("hangar_gateway_breaker_transitions_total{{namespace=\"t\",name=\"solo\",from=\"{from}\",to=\"{to}\"}} 1")),
            "{from}->{to}: {m}"
        );
    }
    let log = std::fs::read_to_string(dir.join("gateway.log")).unwrap();
    assert!(log.contains("circuit breaker changed state"), "{log}");

    // the group: c dies; its failures are failed over to d until c counts unhealthy, then the
    // group (100% needed) answers 503
    let g = format!("{base}/groups/t/strict/mcp");
    drop(c);
    let mut answers = Vec::new();
    for i in 0..10 {
        let r = modern(&http, &g, 40 + i, "tools/list", None).await;
        answers.push(r.status);
        if r.status == 503 {
            assert_eq!(r.code(), Some(-32007), "{}", r.body);
            assert!(r.headers.contains_key("retry-after"));
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
    }
    eprintln!("group answers as c fails: {answers:?}");
    assert_eq!(answers.last(), Some(&503), "{answers:?}");
}
