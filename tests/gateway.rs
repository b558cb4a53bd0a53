//! `hangar gateway` (the built binary) in front of real MCP servers on loopback: the Python SDK
//! server and the npm "everything" server, declared as remote-mode MCPServers in a local
//! manifest. Driven with plain HTTP requests and with the probe.
//!
//! Without the installed servers the tests are skipped with a note, unless HANGAR_REQUIRE_MCP=1
//! (as in `.ci/run`), where they fail. Every process listens on a free loopback port, so the
//! tests run in parallel.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value as Json, json};

use hangar::probe::http::{Body, Http};
use hangar::probe::{Probe, ProbeOptions, ProbeReport, TransportChoice, Verdict};
use support::{Proc, free_tcp_port, mcp_servers};

mod support;

const MODERN: &str = "2026-07-28";
const LEGACY: &str = "2025-11-25";

/// A scratch directory for one test (manifests, keys, logs).
fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("gateway-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A remote-mode MCPServer in namespace `t`.
fn remote(name: &str, port: u16, tools: &str) -> String {
    format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: {name}\n  namespace: t\nspec:\n  mode: remote\n  endpoint: http://127.0.0.1:{port}/mcp\n{tools}---\n"
    )
}

/// `hangar gateway DIR --listen 127.0.0.1:PORT ARGS...`, once /readyz answers.
fn gateway(dir: &Path, args: &[&str]) -> (Proc, String) {
    let port = free_tcp_port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join(format!("gateway-{port}.log"))).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hangar"));
    cmd.arg("gateway")
        .arg(dir.join("manifests"))
        .args(["--listen", &addr])
        .args(args);
    support::spawn_gateway(cmd, &addr, log)
}

fn manifests(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::write(dir.join("manifests/servers.yaml"), text).unwrap();
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The JSON-RPC response in the body: the JSON body, or the SSE event that has an `id`.
    fn rpc(&self) -> Json {
        support::rpc_response(&self.body)
            .unwrap_or_else(|| panic!("no JSON-RPC response in the body: {}", self.body))
    }

    fn error_code(&self) -> Option<i64> {
        self.rpc()["error"]["code"].as_i64()
    }

    fn tool_names(&self) -> Vec<String> {
        self.rpc()["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("no tools: {}", self.body))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    }
}

async fn send(
    http: &Http,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut b = http::Request::builder()
        .method(method)
        .uri(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        http.send(b.body(Full::new(body.into())).unwrap()),
    )
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

async fn post(http: &Http, url: &str, headers: &[(&str, &str)], body: &Json) -> Reply {
    send(
        http,
        "POST",
        url,
        headers,
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

/// An initialize-era session through the gateway: initialize, then `notifications/initialized`
/// (202). Returns the session token the client sees.
async fn open_session(http: &Http, url: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {},
        "clientInfo": {"name": "gateway-test", "version": "1"}}});
    let r = post(http, url, &[], &init).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.rpc()["result"]["protocolVersion"], LEGACY, "{}", r.body);
    let token = r
        .header("mcp-session-id")
        .expect("a session id")
        .to_string();
    let n = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = post(
        http,
        url,
        &[("mcp-session-id", &token), ("mcp-protocol-version", LEGACY)],
        &n,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    token
}

fn call(id: u64, tool: &str, args: Json) -> Json {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}})
}

fn list(id: u64) -> Json {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})
}

/// A 2026-07-28 stateless request: version, client info and capabilities in `_meta`.
fn modern(id: u64, method: &str, mut params: Json) -> Json {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "gateway-test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

async fn probe(url: &str, f: impl FnOnce(&mut ProbeOptions)) -> ProbeReport {
    let mut o = ProbeOptions::new(url, Duration::from_secs(15));
    f(&mut o);
    let r = Probe::new().unwrap().run(&o).await;
    eprintln!("{}", serde_json::to_string(&r).unwrap());
    r
}

fn client() -> Http {
    Http::new(Duration::from_secs(5)).unwrap()
}

/// Both servers through one gateway: the probe finds them compliant in both eras, as it does
/// directly; the operational endpoints answer; bad input is refused with the right status and
/// JSON-RPC code and never reaches an upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_servers_are_compliant_through_the_gateway_and_bad_input_is_refused() {
    let Some(s) = mcp_servers() else { return };
    let (_py, py_port) = s.python("streamable-http");
    let (_ev, ev_port) = s.everything("streamableHttp");
    let dir = scratch("compliant");
    manifests(
        &dir,
        &format!(
            "{}{}{}",
            remote("echo", py_port, "").replace(
                "  namespace: t\n",
                "  namespace: t\n  labels:\n    tier: a\n"
            ),
            remote("everything", ev_port, ""),
            "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServerGroup\nmetadata:\n  name: g\n  namespace: t\nspec:\n  selector:\n    matchLabels:\n      tier: a\n"
        ),
    );
    let (_gw, base) = gateway(&dir, &["--max-body", "64KiB"]);
    let echo = format!("{base}/servers/t/echo/mcp");
    let ev = format!("{base}/servers/t/everything/mcp");

    let r = probe(&echo, |_| {}).await;
    assert_eq!(r.verdict, Verdict::Compliant, "{r:?}");
    assert_eq!(r.protocol_version.as_deref(), Some(MODERN));
    assert_eq!(r.tools, vec!["echo".to_string(), "add".to_string()]);
    let r = probe(&echo, |o| {
        o.protocol_version = Some(LEGACY.into());
        o.transport = TransportChoice::StreamableHttp;
    })
    .await;
    assert_eq!(r.verdict, Verdict::Compliant, "{r:?}");
    assert_eq!(r.stateful, Some(true), "a sealed session, continued");
    // the group of one member serves the member, sessions included
    for version in [None, Some(LEGACY)] {
        let r = probe(&format!("{base}/groups/t/g/mcp"), |o| {
            o.protocol_version = version.map(str::to_string)
        })
        .await;
        assert_eq!(r.verdict, Verdict::Compliant, "{r:?}");
        assert_eq!(r.tools, vec!["echo".to_string(), "add".to_string()]);
    }
    let direct = probe(&format!("http://127.0.0.1:{ev_port}/mcp"), |_| {}).await;
    let through = probe(&ev, |_| {}).await;
    assert_eq!(through.verdict, Verdict::Compliant, "{through:?}");
    assert_eq!(through.tools, direct.tools);
    assert_eq!(through.protocol_version, direct.protocol_version);

    // the CLI probe through the gateway URL, too
    let out = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(["probe", "-o", "json", &echo])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let http = client();
    // operational endpoints
    let addr = base.trim_start_matches("http://");
    assert_eq!(support::http_get(addr, "/healthz").unwrap().0, 200);
    let (status, metrics) = support::http_get(addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("hangar_gateway_requests_total{route=\"/servers/t/echo/mcp\",mcp_method_name=\"tools/list\",status=\"200\"}"),
        "{metrics}"
    );

    // bad input: (what, method, url, headers, body, HTTP status, JSON-RPC code)
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"x\":\"{}\"}}}}",
        "a".repeat(70 * 1024)
    );
    type Case<'a> = (
        &'a str,
        &'a str,
        String,
        Vec<(&'a str, &'a str)>,
        String,
        u16,
        i64,
    );
    let cases: Vec<Case> = vec![
        (
            "not JSON",
            "POST",
            echo.clone(),
            vec![],
            "{\"jsonrpc\":".into(),
            400,
            -32700,
        ),
        (
            "not JSON-RPC",
            "POST",
            echo.clone(),
            vec![],
            "{\"id\":1,\"method\":\"ping\"}".into(),
            400,
            -32600,
        ),
        (
            "a bad id",
            "POST",
            echo.clone(),
            vec![],
            "{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"ping\"}".into(),
            400,
            -32600,
        ),
        (
            "an empty batch",
            "POST",
            echo.clone(),
            vec![],
            "[]".into(),
            400,
            -32600,
        ),
        (
            "over the cap",
            "POST",
            echo.clone(),
            vec![],
            big,
            413,
            -32600,
        ),
        (
            "an unknown route",
            "POST",
            format!("{base}/servers/t/nope/mcp"),
            vec![],
            serde_json::to_string(&list(1)).unwrap(),
            404,
            -32001,
        ),
        (
            "a path outside the contract",
            "GET",
            format!("{base}/admin"),
            vec![],
            String::new(),
            404,
            -32001,
        ),
        (
            "a method an endpoint does not take",
            "PUT",
            echo.clone(),
            vec![],
            String::new(),
            405,
            -32600,
        ),
        (
            "Mcp-Method against the body",
            "POST",
            echo.clone(),
            vec![
                ("mcp-protocol-version", MODERN),
                ("mcp-method", "tools/list"),
                ("mcp-name", "echo"),
            ],
            serde_json::to_string(&modern(1, "tools/call", json!({"name": "add"}))).unwrap(),
            400,
            -32020,
        ),
        (
            "Mcp-Name against the body",
            "POST",
            echo.clone(),
            vec![
                ("mcp-protocol-version", MODERN),
                ("mcp-method", "tools/call"),
                ("mcp-name", "echo"),
            ],
            serde_json::to_string(&modern(
                1,
                "tools/call",
                json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
            ))
            .unwrap(),
            400,
            -32020,
        ),
        (
            "a modern request without Mcp-Method",
            "POST",
            echo.clone(),
            vec![("mcp-protocol-version", MODERN)],
            serde_json::to_string(&modern(1, "tools/list", json!({}))).unwrap(),
            400,
            -32020,
        ),
        (
            "an unknown session",
            "POST",
            echo.clone(),
            vec![("mcp-session-id", "nope")],
            serde_json::to_string(&list(1)).unwrap(),
            404,
            -32002,
        ),
    ];
    for (what, method, url, headers, body, status, code) in cases {
        let r = send(&http, method, &url, &headers, body).await;
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert_eq!(r.error_code(), Some(code), "{what}: {}", r.body);
    }
    assert!(support::http_get(addr, "/metrics").unwrap().1.contains(
        "hangar_gateway_refusals_total{route=\"/servers/t/echo/mcp\",reason=\"header_mismatch\"} 3"
    ),);
    // a well-formed modern request with matching headers passes (the server checks them too)
    let r = post(
        &http,
        &echo,
        &[
            ("mcp-protocol-version", MODERN),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?YWRk?="),
        ],
        &modern(
            2,
            "tools/call",
            json!({"name": "add", "arguments": {"a": 2, "b": 3}}),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.rpc()["result"]["content"][0]["text"], "5", "{}", r.body);
}

/// A tool call whose SSE response carries progress notifications for two seconds: each event
/// reaches the client when the server sends it, not when the response ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_responses_stream_through_unbuffered() {
    let Some(s) = mcp_servers() else { return };
    let (_ev, port) = s.everything("streamableHttp");
    let dir = scratch("streaming");
    manifests(&dir, &remote("everything", port, ""));
    let (_gw, base) = gateway(&dir, &[]);
    let url = format!("{base}/servers/t/everything/mcp");
    let http = client();
    let token = open_session(&http, &url).await;
    let mut body = call(
        2,
        "trigger-long-running-operation",
        json!({"duration": 2, "steps": 4}),
    );
    body["params"]["_meta"] = json!({"progressToken": "p1"});
    let req = http::Request::builder()
        .method("POST")
        .uri(&url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", &token)
        .header("mcp-protocol-version", LEGACY)
        .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())))
        .unwrap();
    let started = Instant::now();
    let resp = http.send(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = Body::new(resp.into_body(), 1 << 20);
    let (mut first_progress, mut text) = (None, String::new());
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(20), body.chunk())
        .await
        .expect("the stream goes on within 20s")
        .unwrap()
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
        if first_progress.is_none() && text.contains("notifications/progress") {
            first_progress = Some(started.elapsed());
        }
    }
    let done = started.elapsed();
    let first = first_progress.unwrap_or_else(|| panic!("no progress event: {text}"));
    assert!(text.contains("\"id\":2"), "{text}");
    assert!(
        done >= Duration::from_millis(1900) && first + Duration::from_millis(900) < done,
        "first progress at {first:?}, response done at {done:?}: buffered"
    );
}

/// `tools.denyList` and `tools.rateLimit` from the manifest: the denied tool is absent from
/// `tools/list` (both eras) and its call refused without reaching the server; with
/// `requestsPerMinute: 30` the 31st call within the minute is refused with 429 and Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_tools_are_hidden_and_refused_and_the_rate_limit_holds() {
    let Some(s) = mcp_servers() else { return };
    let (_py, port) = s.python("streamable-http");
    let dir = scratch("policy");
    manifests(
        &dir,
        &remote(
            "echo",
            port,
            "  tools:\n    denyList: [add]\n    rateLimit:\n      requestsPerMinute: 30\n",
        ),
    );
    let (_gw, base) = gateway(&dir, &[]);
    let url = format!("{base}/servers/t/echo/mcp");
    let http = client();
    let token = open_session(&http, &url).await;
    let sess = [
        ("mcp-session-id", token.as_str()),
        ("mcp-protocol-version", LEGACY),
    ];

    // initialize era: an SSE-framed listing, filtered
    let r = post(&http, &url, &sess, &list(2)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.tool_names(), vec!["echo"]);
    // 2026-07-28: a stateless listing, filtered too
    let r = post(
        &http,
        &url,
        &[
            ("mcp-protocol-version", MODERN),
            ("mcp-method", "tools/list"),
        ],
        &modern(3, "tools/list", json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.tool_names(), vec!["echo"]);

    // the denied tool's call is answered by the gateway, in both eras
    let r = post(&http, &url, &sess, &call(4, "add", json!({"a": 1, "b": 2}))).await;
    assert_eq!(
        (r.status, r.error_code()),
        (200, Some(-32003)),
        "{}",
        r.body
    );
    assert_eq!(r.rpc()["id"], 4);
    let r = post(
        &http,
        &url,
        &[
            ("mcp-protocol-version", MODERN),
            ("mcp-method", "tools/call"),
            ("mcp-name", "add"),
        ],
        &modern(
            5,
            "tools/call",
            json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
        ),
    )
    .await;
    assert_eq!(r.error_code(), Some(-32003), "{}", r.body);

    // 30 calls pass (the refused ones above took nothing from the bucket), the 31st does not
    let started = Instant::now();
    for i in 0..30 {
        let r = post(
            &http,
            &url,
            &sess,
            &call(10 + i, "echo", json!({"text": format!("hi {i}")})),
        )
        .await;
        assert_eq!(r.status, 200, "call {i}: {}", r.body);
        assert_eq!(
            r.rpc()["result"]["content"][0]["text"],
            format!("hi {i}"),
            "{}",
            r.body
        );
    }
    let r = post(
        &http,
        &url,
        &sess,
        &call(99, "echo", json!({"text": "one too many"})),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the calls took over a minute"
    );
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.error_code(), Some(-32004), "{}", r.body);
    assert_eq!(r.rpc()["id"], 99);
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // listings are not metered
    assert_eq!(post(&http, &url, &sess, &list(100)).await.status, 200);
    let metrics = support::http_get(base.trim_start_matches("http://"), "/metrics")
        .unwrap()
        .1;
    assert!(metrics.contains("reason=\"tool_denied\"} 2"), "{metrics}");
    assert!(metrics.contains("reason=\"rate_limited\"} 1"), "{metrics}");
}

/// Two gateway processes with the same key file: a session opened on one continues on the other
/// (POST, GET stream, DELETE), with no shared store. A token sealed under another key, or
/// altered by one character, is refused with 404 and never forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_with_one_key_share_sessions_and_refuse_tampered_tokens() {
    let Some(s) = mcp_servers() else { return };
    let (_py, port) = s.python("streamable-http");
    let dir = scratch("sessions");
    manifests(&dir, &remote("echo", port, ""));
    let key = dir.join("session.key");
    std::fs::write(&key, "Zm9yIHRlc3RzIG9ubHk6IDMyIGJ5dGVzIG9mIGtleSEhIQ==\n").unwrap();
    let key = key.to_str().unwrap();
    let (_a, a) = gateway(&dir, &["--session-key-file", key, "--log-level", "trace"]);
    let (_b, b) = gateway(&dir, &["--session-key-file", key]);
    let other_key = dir.join("other.key");
    std::fs::write(&other_key, [7u8; 32]).unwrap();
    let (_c, c) = gateway(&dir, &["--session-key-file", other_key.to_str().unwrap()]);
    let path = "/servers/t/echo/mcp";
    let http = client();

    let token = open_session(&http, &format!("{a}{path}")).await;
    let sess = [
        ("mcp-session-id", token.as_str()),
        ("mcp-protocol-version", LEGACY),
    ];
    let r = post(
        &http,
        &format!("{b}{path}"),
        &sess,
        &call(2, "echo", json!({"text": "on b"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.rpc()["result"]["content"][0]["text"], "on b");
    assert_eq!(
        r.header("mcp-session-id"),
        Some(token.as_str()),
        "the client's token is kept"
    );

    // the server-to-client stream on b: opened, SSE, then dropped by us
    let get = http::Request::builder()
        .method("GET")
        .uri(format!("{b}{path}"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &token)
        .header("mcp-protocol-version", LEGACY)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), http.send(get))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        hangar::probe::http::media_type(resp.headers()).as_deref() == Some("text/event-stream")
    );
    drop(resp);

    // another key, and a token altered in one character: 404, as for a session that ended
    let r = post(&http, &format!("{c}{path}"), &sess, &list(3)).await;
    assert_eq!(
        (r.status, r.error_code()),
        (404, Some(-32002)),
        "{}",
        r.body
    );
    let mut chars: Vec<char> = token.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    let r = post(
        &http,
        &format!("{a}{path}"),
        &[
            ("mcp-session-id", &tampered),
            ("mcp-protocol-version", LEGACY),
        ],
        &list(4),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code()),
        (404, Some(-32002)),
        "{}",
        r.body
    );

    // DELETE on b ends the upstream session; a then gets the upstream's 404 for it
    let r = send(&http, "DELETE", &format!("{b}{path}"), &sess, Bytes::new()).await;
    assert!(
        r.status == 200 || r.status == 204,
        "DELETE: {} {}",
        r.status,
        r.body
    );
    let r = post(&http, &format!("{a}{path}"), &sess, &list(5)).await;
    assert_eq!(r.status, 404, "{}", r.body);

    // a's log, at trace level, holds no token, no key, no header value a client sent
    let a_port = a.rsplit(':').next().unwrap();
    let log = std::fs::read_to_string(dir.join(format!("gateway-{a_port}.log"))).unwrap();
    assert!(log.contains("session keys loaded"), "{log}");
    for secret in [
        token.as_str(),
        tampered.as_str(),
        "Zm9yIHRlc3Rz",
        "for tests only",
    ] {
        assert!(!log.contains(secret), "the log holds a secret: {secret}");
    }
}

/// The official conformance suite's server scenarios (`server --url`), run against the everything
/// server directly and through the gateway in one test: every scenario that passes directly
/// passes through the gateway, and the same ones fail (the suite's scenarios expect its own
/// fixture tools and prompts, which the everything server does not all have), except the
/// DNS-rebinding check, which the gateway passes on its own.
#[test]
fn conformance_server_scenarios_pass_through_the_gateway_as_they_pass_directly() {
    let Some(s) = mcp_servers() else { return };
    let Some(c) = support::conformance_suite() else {
        return;
    };
    let (_ev, port) = s.everything("streamableHttp");
    let dir = scratch("conformance");
    manifests(&dir, &remote("everything", port, ""));
    let (_gw, base) = gateway(&dir, &[]);
    let run = |url: &str, out: &str| -> Vec<(String, bool)> {
        let mut child = Command::new(&c.node)
            .arg(&c.cli)
            .args(["server", "--url", url, "-o"])
            .arg(dir.join(out))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
            s
        });
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(180) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the conformance suite ran over 180s against {url}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = reader.join().unwrap();
        // `✓ NAME: N passed, M failed` / `✗ ...`, one line per scenario
        let verdicts: Vec<(String, bool)> = text
            .lines()
            .filter_map(|l| {
                let (pass, rest) = if let Some(r) = l.strip_prefix("✓ ") {
                    (true, r)
                } else {
                    (false, l.strip_prefix("✗ ")?)
                };
                Some((rest.split(':').next()?.to_string(), pass))
            })
            .collect();
        eprintln!("== conformance against {url}\n{text}");
        verdicts
    };
    let direct = run(&format!("http://127.0.0.1:{port}/mcp"), "direct");
    let through = run(&format!("{base}/servers/t/everything/mcp"), "through");
    assert!(
        direct.len() >= 20,
        "the suite listed too few scenarios: {direct:?}"
    );
    let passed = direct.iter().filter(|(_, p)| *p).count();
    assert!(
        passed >= 10,
        "only {passed} scenarios pass directly: {direct:?}"
    );
    let names = |v: &[(String, bool)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&through), names(&direct), "the same scenarios");
    for ((name, d), (_, t)) in direct.iter().zip(&through) {
        assert!(
            !d || *t,
            "{name} passes directly but not through the gateway"
        );
        // the gateway adds DNS-rebinding protection the everything server lacks
        let better = name == "dns-rebinding-protection";
        assert!(
            *t == *d || (better && *t),
            "{name}: directly {d}, through {t}"
        );
    }
}

/// The gateway re-reads its inputs: a new deny list takes effect without a restart, and an edit
/// that does not compile leaves the last good routes in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_manifest_replaces_the_routes_and_a_broken_one_keeps_them() {
    let Some(s) = mcp_servers() else { return };
    let (_py, port) = s.python("streamable-http");
    let dir = scratch("reload");
    manifests(&dir, &remote("echo", port, ""));
    let (_gw, base) = gateway(&dir, &[]);
    let url = format!("{base}/servers/t/echo/mcp");
    let http = client();
    let token = open_session(&http, &url).await;
    let sess = [
        ("mcp-session-id", token.as_str()),
        ("mcp-protocol-version", LEGACY),
    ];
    assert_eq!(
        post(&http, &url, &sess, &list(2)).await.tool_names(),
        vec!["echo", "add"]
    );

    manifests(
        &dir,
        &remote("echo", port, "  tools:\n    denyList: [echo]\n"),
    );
    let start = Instant::now();
    loop {
        let names = post(&http, &url, &sess, &list(3)).await.tool_names();
        if names == vec!["add"] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "still {names:?} after 15s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // the session opened before the change goes on under the new policy
    let r = post(&http, &url, &sess, &call(4, "echo", json!({"text": "x"}))).await;
    assert_eq!(r.error_code(), Some(-32003), "{}", r.body);

    manifests(
        &dir,
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: echo\nspec:\n  mode: remote\n  endpoint: not a url\n",
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        post(&http, &url, &sess, &list(5)).await.tool_names(),
        vec!["add"]
    );
}

/// Upstreams that fail: one that accepts and never answers (504 after --upstream-timeout), one
/// that is not listening (502), both with the JSON-RPC code -32000 and the request's id; and a
/// container server, which only an in-cluster gateway reaches (503). Needs no MCP server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_upstreams_get_gateway_errors_not_hangs() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        // accept and hold connections, answering nothing, for as long as the test runs
        let mut conns = Vec::new();
        for c in silent.incoming().take(8) {
            match c {
                Ok(c) => conns.push(c),
                Err(_) => break,
            }
        }
        conns.len()
    });
    let closed_port = free_tcp_port();
    let dir = scratch("failing");
    manifests(
        &dir,
        &format!(
            "{}{}{}",
            remote("silent", silent_port, ""),
            remote("closed", closed_port, ""),
            "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: pod\n  namespace: t\nspec:\n  mode: container\n  image: example/mcp:1\n"
        ),
    );
    let (_gw, base) = gateway(&dir, &["--upstream-timeout", "1s"]);
    let http = client();
    for (name, status) in [("silent", 504), ("closed", 502), ("pod", 503)] {
        let started = Instant::now();
        let r = post(
            &http,
            &format!("{base}/servers/t/{name}/mcp"),
            &[],
            &list(7),
        )
        .await;
        assert_eq!(r.status, status, "{name}: {}", r.body);
        assert_eq!(r.error_code(), Some(-32000), "{name}: {}", r.body);
        assert_eq!(r.rpc()["id"], 7, "{name}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name} took {:?}",
            started.elapsed()
        );
    }
    drop(held);
}
