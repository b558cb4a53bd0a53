//! `hangar probe` against real MCP servers on loopback (the Python SDK and the npm "everything"
//! server, installed by `deploy/testenv/mcp-servers.sh`) and against hostile servers written here.
//!
//! Without the installed servers, the real-server tests are skipped with a note, unless
//! HANGAR_REQUIRE_MCP=1 (as in `.ci/run`), where they fail. Every server listens on a free port,
//! so the tests run in parallel.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar::controller::health::{Prober, Target};
use hangar::probe::{
    McpProber, Probe, ProbeOptions, ProbeReport, Transport, TransportChoice, Verdict,
};
use support::{free_tcp_port, mcp_servers, start_listening};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod support;

// ---------------------------------------------------------------- real servers

async fn run(url: &str, f: impl FnOnce(&mut ProbeOptions)) -> ProbeReport {
    let mut o = ProbeOptions::new(url, Duration::from_secs(10));
    f(&mut o);
    let r = Probe::new().unwrap().run(&o).await;
    eprintln!("{}", serde_json::to_string(&r).unwrap());
    r
}

fn assert_echo_server(r: &ProbeReport) {
    assert_eq!(r.verdict, Verdict::Compliant, "{r:?}");
    assert!(r.compliant && !r.requires_auth);
    assert_eq!(r.tools, vec!["echo".to_string(), "add".to_string()]);
    assert_eq!(
        r.server_info.as_ref().unwrap().name.as_deref(),
        Some("test-echo")
    );
    assert!(
        r.capabilities.contains(&"tools".to_string()),
        "{:?}",
        r.capabilities
    );
    assert_eq!(r.resources_count, Some(0));
    assert_eq!(r.prompts_count, Some(0));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_streamable_http() {
    let Some(s) = mcp_servers() else { return };
    let (_p, port) = s.python("streamable-http");
    let url = format!("http://127.0.0.1:{port}/mcp");

    // auto: the SDK is dual-era, so the modern stateless protocol wins
    let r = run(&url, |_| {}).await;
    assert_echo_server(&r);
    assert_eq!(r.transport, Some(Transport::StreamableHttp));
    assert_eq!(r.protocol_version.as_deref(), Some("2026-07-28"));
    assert_eq!(r.stateful, Some(false));
    assert!(r.detection.is_empty(), "{:?}", r.detection);

    // an unknown version first: UnsupportedProtocolVersionError (-32022), then a retry
    let r = run(&url, |o| o.protocol_version = Some("2099-01-01".into())).await;
    assert_echo_server(&r);
    assert_eq!(r.protocol_version.as_deref(), Some("2026-07-28"));
    assert!(
        r.detection[0].contains("retrying with 2026-07-28"),
        "{:?}",
        r.detection
    );

    // the legacy handshake: initialize, Mcp-Session-Id, SSE-framed responses, DELETE
    for v in ["2025-11-25", "2025-06-18", "2025-03-26"] {
        let r = run(&url, |o| {
            o.protocol_version = Some(v.into());
            o.transport = TransportChoice::StreamableHttp;
        })
        .await;
        assert_echo_server(&r);
        assert_eq!(r.protocol_version.as_deref(), Some(v));
        assert_eq!(r.stateful, Some(true));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    // forcing the legacy SSE transport on a streamable endpoint fails clearly
    let r = run(&url, |o| o.transport = TransportChoice::Sse).await;
    assert_eq!(r.verdict, Verdict::NotCompliant);
}

/// `stateless_http=True`: initialize-era clients get no session either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_stateless_streamable_http() {
    let Some(s) = mcp_servers() else { return };
    let (_p, port) = s.python("streamable-http-stateless");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let r = run(&url, |_| {}).await;
    assert_echo_server(&r);
    assert_eq!(r.protocol_version.as_deref(), Some("2026-07-28"));
    let r = run(&url, |o| o.protocol_version = Some("2025-11-25".into())).await;
    assert_echo_server(&r);
    assert_eq!(r.protocol_version.as_deref(), Some("2025-11-25"));
    assert_eq!(r.stateful, Some(false), "no Mcp-Session-Id");
}

/// `json_response=True`: the initialize-era exchange with application/json bodies, not SSE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_json_responses() {
    let Some(s) = mcp_servers() else { return };
    let (_p, port) = s.python("streamable-http-json");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let r = run(&url, |o| o.protocol_version = Some("2025-06-18".into())).await;
    assert_echo_server(&r);
    assert_eq!(r.protocol_version.as_deref(), Some("2025-06-18"));
    assert_eq!(r.stateful, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_sse() {
    let Some(s) = mcp_servers() else { return };
    let (_p, port) = s.python("sse");
    let url = format!("http://127.0.0.1:{port}/sse");
    for choice in [TransportChoice::Auto, TransportChoice::Sse] {
        let r = run(&url, |o| o.transport = choice).await;
        assert_echo_server(&r);
        assert_eq!(r.transport, Some(Transport::Sse));
        assert_eq!(r.protocol_version.as_deref(), Some("2025-11-25"));
        if choice == TransportChoice::Auto {
            // POST server/discover and POST initialize were refused before the GET
            assert_eq!(r.detection.len(), 2, "{:?}", r.detection);
        }
    }
    let r = run(&url, |o| o.transport = TransportChoice::StreamableHttp).await;
    assert_eq!(r.verdict, Verdict::NotCompliant, "{r:?}");
    assert_eq!(r.error_kind, Some("not-mcp"));
}

fn assert_everything(r: &ProbeReport) {
    assert_eq!(r.verdict, Verdict::Compliant, "{r:?}");
    assert_eq!(
        r.server_info.as_ref().unwrap().name.as_deref(),
        Some("mcp-servers/everything")
    );
    assert!(r.tools.len() >= 10, "{:?}", r.tools);
    assert!(r.tools.iter().any(|t| t == "echo"), "{:?}", r.tools);
    for c in ["tools", "resources", "prompts", "logging", "completions"] {
        assert!(
            r.capabilities.iter().any(|x| x == c),
            "{c} in {:?}",
            r.capabilities
        );
    }
    assert!(r.resources_count.unwrap() >= 1, "{:?}", r.resources_count);
    assert!(r.prompts_count.unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_streamable_http() {
    let Some(s) = mcp_servers() else { return };
    let (_p, port) = s.everything("streamableHttp");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let r = run(&url, |_| {}).await;
    assert_everything(&r);
    // legacy only: server/discover is refused without a modern error, initialize is accepted
    assert_eq!(r.transport, Some(Transport::StreamableHttp));
    assert_eq!(r.protocol_version.as_deref(), Some("2025-11-25"));
    assert_eq!(r.stateful, Some(true));
    assert_eq!(r.detection.len(), 1, "{:?}", r.detection);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_sse() {
    let Some(s) = mcp_servers() else { return };
    let (_p, port) = s.everything("sse");
    let r = run(&format!("http://127.0.0.1:{port}/sse"), |_| {}).await;
    assert_everything(&r);
    assert_eq!(r.transport, Some(Transport::Sse));
    // Asked for the newest, the server says what it speaks (not the transport's first version).
    assert_eq!(r.protocol_version.as_deref(), Some("2025-11-25"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_prober_fills_the_validation_status() {
    let Some(s) = mcp_servers() else { return };
    let (_p, port) = s.python("streamable-http");
    let prober = McpProber::new().unwrap();
    let t = Target {
        url: format!("http://127.0.0.1:{port}/mcp"),
        timeout: Duration::from_secs(10),
        headers: http::HeaderMap::new(),
    };
    let c = prober.check(&t).await;
    assert!(c.ok, "{c:?}");
    assert_eq!(c.tools, Some(vec!["echo".to_string(), "add".to_string()]));
    let v = c.validation.unwrap();
    assert_eq!(v.compliant, Some(true));
    assert_eq!(v.transport.as_deref(), Some("streamable-http"));
    assert_eq!(v.protocol_version.as_deref(), Some("2026-07-28"));
    assert_eq!(v.requires_auth, Some(false));
    assert_eq!(v.server_info.unwrap().name.as_deref(), Some("test-echo"));

    let auth = hostile(|_| {
        Reply::Write(http(
            401,
            "application/json",
            "{}",
            "WWW-Authenticate: Bearer realm=\"x\"\r\n",
        ))
    })
    .await;
    let c = prober
        .check(&Target {
            url: auth,
            timeout: Duration::from_secs(5),
            headers: http::HeaderMap::new(),
        })
        .await;
    assert!(!c.ok);
    assert_eq!(c.tools, None);
    let v = c.validation.unwrap();
    assert_eq!(v.requires_auth, Some(true));
    assert_eq!(v.compliant, Some(false));
    assert!(c.message.contains("requires-auth"), "{}", c.message);
}

#[test]
fn cli_probe_exit_codes_and_json() {
    let bin = env!("CARGO_BIN_EXE_hangar");
    let rt = tokio::runtime::Runtime::new().unwrap();
    // 2: usage errors
    for args in [
        vec!["probe", "http://127.0.0.1:1/mcp", "--timeout", "soon"],
        vec!["probe", "http://127.0.0.1:1/mcp", "--header", "no-colon"],
        vec!["probe", "ftp://127.0.0.1/"],
    ] {
        let o = Command::new(bin).args(&args).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // 1: requires auth, with the reason; the header's value is never printed
    let url = rt.block_on(hostile(|_| {
        Reply::Write(http(401, "text/plain", "no", "WWW-Authenticate: Bearer resource_metadata=\"http://127.0.0.1/.well-known/oauth-protected-resource\"\r\n"))
    }));
    let o = Command::new(bin)
        .args([
            "probe",
            &url,
            "--header",
            "Authorization: Bearer s3cr3t-token",
            "--timeout",
            "5s",
        ])
        .env("HANGAR_LOG", "trace")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        out.contains("requires authentication") && out.contains("HTTP 401"),
        "{out}"
    );
    assert!(
        !out.contains("s3cr3t") && !err.contains("s3cr3t"),
        "secret leaked:\n{out}\n{err}"
    );
    // 0 and the JSON contract, against a real server
    let Some(s) = mcp_servers() else { return };
    let (_p, port) = s.python("streamable-http");
    let o = Command::new(bin)
        .args([
            "probe",
            &format!("http://127.0.0.1:{port}/mcp"),
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["compliant"], true);
    assert_eq!(j["transport"], "streamable-http");
    assert_eq!(j["protocolVersion"], "2026-07-28");
    assert_eq!(j["requiresAuth"], false);
    assert_eq!(j["serverInfo"]["name"], "test-echo");
    assert_eq!(j["tools"], serde_json::json!(["echo", "add"]));
    assert!(
        j["capabilities"]
            .as_array()
            .unwrap()
            .contains(&"tools".into())
    );
    assert_eq!(j["errors"], serde_json::json!([]));
    assert!(j["latencyMs"].is_u64());
    let o = Command::new(bin)
        .args(["probe", &format!("http://127.0.0.1:{port}/mcp")])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("MCP compliant") && out.contains("echo, add"),
        "{out}"
    );
}

// ---------------------------------------------------------------- hostile servers

/// What a hostile server does with one request.
enum Reply {
    /// Write these bytes and close.
    Write(Vec<u8>),
    /// Write these bytes, then keep the connection open and silent.
    WriteAndHang(Vec<u8>),
    /// Stream `n` bytes of `byte` as the body of a 200 JSON response, then close.
    Flood(usize),
}

struct Req {
    method: String,
    path: String,
    body: String,
    /// The request line and headers.
    head: String,
}

impl Req {
    /// A header's value (names compared case-insensitively).
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn http(status: u16, content_type: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A loopback HTTP/1.1 server answering every request with `f`; returns its URL.
async fn hostile(f: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", l.local_addr().unwrap());
    let f = Arc::new(f);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            let f = f.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // head, then a Content-Length body
                let head_end = loop {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let req = Req {
                    method: head.split(' ').next().unwrap_or_default().to_string(),
                    path: head.split(' ').nth(1).unwrap_or_default().to_string(),
                    body: String::from_utf8_lossy(&buf[head_end..]).to_string(),
                    head,
                };
                match f(&req) {
                    Reply::Write(b) => {
                        let _ = sock.write_all(&b).await;
                        let _ = sock.shutdown().await;
                    }
                    Reply::WriteAndHang(b) => {
                        let _ = sock.write_all(&b).await;
                        tokio::time::sleep(Duration::from_secs(600)).await;
                    }
                    Reply::Flood(n) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n\r\n"
                        );
                        let _ = sock.write_all(head.as_bytes()).await;
                        let block = vec![b' '; 64 * 1024];
                        let mut sent = 0;
                        while sent < n {
                            let k = block.len().min(n - sent);
                            if sock.write_all(&block[..k]).await.is_err() {
                                return;
                            }
                            sent += k;
                        }
                    }
                }
            });
        }
    });
    url
}

async fn quick(url: &str) -> ProbeReport {
    let mut o = ProbeOptions::new(url, Duration::from_secs(2));
    o.transport = TransportChoice::Auto;
    let r = Probe::new().unwrap().run(&o).await;
    eprintln!("{}", serde_json::to_string(&r).unwrap());
    assert!(!r.compliant);
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    r
}

#[tokio::test]
async fn hostile_plain_web_server() {
    let url = hostile(|_| {
        Reply::Write(http(
            200,
            "text/html; charset=utf-8",
            "<!doctype html><html>hi</html>",
            "",
        ))
    })
    .await;
    let r = quick(&url).await;
    assert_eq!(r.verdict, Verdict::NotCompliant);
    assert_eq!(r.error_kind, Some("not-mcp"));
    assert!(r.errors[0].contains("HTML page"), "{:?}", r.errors);

    // a web server without this path: 404 to POST and GET alike
    let url = hostile(|_| Reply::Write(http(404, "text/html", "<h1>Not Found</h1>", ""))).await;
    let r = quick(&url).await;
    assert_eq!(r.error_kind, Some("not-mcp"));
    assert_eq!(r.detection.len(), 2, "{:?}", r.detection);
    assert!(r.errors[0].contains("HTTP 404 to GET"), "{:?}", r.errors);
}

#[tokio::test]
async fn hostile_requires_auth() {
    let url = hostile(|_| {
        Reply::Write(http(401, "application/json", r#"{"error":"invalid_token"}"#, "WWW-Authenticate: Bearer resource_metadata=\"http://127.0.0.1/.well-known/oauth-protected-resource\"\r\n"))
    })
    .await;
    let r = quick(&url).await;
    assert_eq!(r.verdict, Verdict::RequiresAuth);
    assert!(r.requires_auth);
    assert_eq!(r.error_kind, Some("auth-required"));
    assert!(
        r.www_authenticate
            .as_deref()
            .unwrap()
            .starts_with("Bearer resource_metadata=")
    );
    // 403 with a challenge: auth.
    let url = hostile(|_| {
        Reply::Write(http(
            403,
            "text/plain",
            "forbidden",
            "WWW-Authenticate: Bearer error=\"insufficient_scope\"\r\n",
        ))
    })
    .await;
    assert_eq!(quick(&url).await.verdict, Verdict::RequiresAuth);
    // 403 without a challenge to a request without credentials: a DNS-rebinding guard, not auth.
    let url = hostile(|_| Reply::Write(http(403, "text/plain", "Invalid Host header", ""))).await;
    let r = quick(&url).await;
    assert_eq!(r.verdict, Verdict::NotCompliant, "{r:?}");
    assert!(!r.requires_auth);
    assert_eq!(r.error_kind, Some("http-status"));
    assert!(
        r.errors[0].contains("not asking for authentication"),
        "{:?}",
        r.errors
    );
    // ... but with credentials sent, the credentials were refused.
    let mut o = ProbeOptions::new(&url, Duration::from_secs(2));
    let mut v = http::HeaderValue::from_static("Bearer wrong");
    v.set_sensitive(true);
    o.headers.insert(http::header::AUTHORIZATION, v);
    let r = Probe::new().unwrap().run(&o).await;
    assert_eq!(r.verdict, Verdict::RequiresAuth, "{r:?}");
}

#[tokio::test]
async fn hostile_never_answers() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", l.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s); // accept, read nothing, answer nothing
        }
    });
    let mut o = ProbeOptions::new(&url, Duration::from_millis(800));
    o.transport = TransportChoice::Auto;
    let t = Instant::now();
    let r = Probe::new().unwrap().run(&o).await;
    let took = t.elapsed();
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(r.verdict, Verdict::Unreachable, "{r:?}");
    assert_eq!(r.error_kind, Some("timeout"));
    assert!(r.errors[0].contains("800 ms"), "{:?}", r.errors);

    // headers sent, then silence on an SSE response
    let url = hostile(|_| {
        Reply::WriteAndHang(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n: keep-alive\n\n".to_vec(),
        )
    })
    .await;
    let t = Instant::now();
    let r = quick(&url).await;
    assert!(
        t.elapsed() < Duration::from_millis(2700),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(r.error_kind, Some("timeout"));
}

#[tokio::test]
async fn hostile_garbage_json() {
    let url =
        hostile(|_| Reply::Write(http(200, "application/json", "{\"jsonrpc\": 2.0, oops", "")))
            .await;
    let r = quick(&url).await;
    assert_eq!(r.verdict, Verdict::NotCompliant);
    assert_eq!(r.error_kind, Some("bad-json"));
    assert!(r.errors[0].contains("invalid JSON"), "{:?}", r.errors);

    // valid JSON, not JSON-RPC
    let url =
        hostile(|_| Reply::Write(http(200, "application/json", r#"{"status":"ok"}"#, ""))).await;
    let r = quick(&url).await;
    assert_eq!(r.error_kind, Some("bad-jsonrpc"));
    assert!(
        r.errors[0].contains("no `jsonrpc` member"),
        "{:?}",
        r.errors
    );
}

#[tokio::test]
async fn hostile_closes_mid_stream() {
    // an SSE response cut inside the event that carries the response
    let url = hostile(|_| {
        Reply::Write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"res".to_vec())
    })
    .await;
    let r = quick(&url).await;
    assert_eq!(r.error_kind, Some("closed"), "{r:?}");
    assert!(r.errors[0].contains("connection closed"), "{:?}", r.errors);

    // a JSON body shorter than its Content-Length
    let url = hostile(|_| {
        Reply::Write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"jsonrpc\":\"2.0\",".to_vec())
    })
    .await;
    assert_eq!(quick(&url).await.error_kind, Some("closed"));
}

#[tokio::test]
async fn hostile_wrong_content_type() {
    let body = r#"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"],"capabilities":{}}}"#;
    let url = hostile(move |_| Reply::Write(http(200, "text/plain", body, ""))).await;
    let r = quick(&url).await;
    assert_eq!(r.verdict, Verdict::NotCompliant);
    assert_eq!(r.error_kind, Some("content-type"));
    assert!(r.errors[0].contains("`text/plain`"), "{:?}", r.errors);
}

#[tokio::test]
async fn hostile_redirects_to_another_host() {
    let url = hostile(|_| {
        Reply::Write(http(
            307,
            "text/plain",
            "",
            "Location: http://203.0.113.9:8080/mcp?token=abc\r\n",
        ))
    })
    .await;
    let r = quick(&url).await;
    assert_eq!(r.verdict, Verdict::NotCompliant);
    assert_eq!(r.error_kind, Some("redirect"));
    let e = &r.errors[0];
    assert!(
        e.contains("307")
            && e.contains("203.0.113.9:8080/mcp (another host)")
            && e.contains("not followed"),
        "{e}"
    );
    assert!(!e.contains("token"), "{e}");
}

#[tokio::test]
async fn hostile_oversized_response() {
    let url = hostile(|_| Reply::Flood(17 * 1024 * 1024)).await;
    let mut o = ProbeOptions::new(&url, Duration::from_secs(10));
    o.transport = TransportChoice::StreamableHttp;
    let r = Probe::new().unwrap().run(&o).await;
    assert_eq!(r.error_kind, Some("too-large"), "{r:?}");
    assert!(r.errors[0].contains("16777216"), "{:?}", r.errors);
    // Headers of 1 MiB: too large headers, not "does not speak HTTP".
    let huge = format!("X-Big: {}\r\n", "a".repeat(1 << 20));
    let url = hostile(move |_| Reply::Write(http(200, "application/json", "{}", &huge))).await;
    let r = quick(&url).await;
    assert_eq!(r.error_kind, Some("headers-too-large"), "{r:?}");
}

/// A scripted legacy server (streamable HTTP, `initialize`): `discover` answers what `f` says,
/// `tools/list` pages through `pages(cursor)` -> (names, next cursor).
async fn scripted(
    discover: serde_json::Value,
    accept: &'static [&'static str],
    pages: impl Fn(Option<&str>) -> (Vec<String>, Option<String>) + Send + Sync + 'static,
) -> String {
    hostile(move |req| {
        let v: serde_json::Value = serde_json::from_str(&req.body).unwrap_or_default();
        let id = v["id"].clone();
        let body = match (req.method.as_str(), v["method"].as_str()) {
            ("POST", Some("server/discover")) => {
                let mut d = discover.clone();
                d["id"] = id;
                d
            }
            ("POST", Some("initialize")) => {
                let asked = v["params"]["protocolVersion"].as_str().unwrap_or_default();
                if !accept.contains(&asked) {
                    let e = serde_json::json!({"jsonrpc":"2.0","id":id,"error":{"code":-32022,"message":"Unsupported protocol version","data":{"supported":accept,"requested":asked}}});
                    return Reply::Write(http(400, "application/json", &e.to_string(), ""));
                }
                serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":asked,"capabilities":{"tools":{}},"serverInfo":{"name":"scripted","version":"1"}}})
            }
            ("POST", Some("notifications/initialized")) => {
                return Reply::Write(http(202, "text/plain", "", ""));
            }
            ("POST", Some("tools/list")) => {
                let (names, next) = pages(v["params"]["cursor"].as_str());
                let tools: Vec<_> = names.iter().map(|n| serde_json::json!({"name": n, "inputSchema": {"type": "object"}})).collect();
                let mut r = serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"tools":tools}});
                if let Some(n) = next {
                    r["result"]["nextCursor"] = n.into();
                }
                r
            }
            _ => return Reply::Write(http(405, "text/plain", "", "")),
        };
        Reply::Write(http(200, "application/json", &body.to_string(), ""))
    })
    .await
}

/// A legacy server answering `server/discover` with `{}` (as some answer any method) is legacy:
/// the probe falls back to `initialize`. Its one `tools/list` page of 100,000 tools (~6 MB) is
/// valid and read whole.
#[tokio::test]
async fn empty_discover_result_falls_back_and_a_huge_page_is_read() {
    let url = scripted(
        serde_json::json!({"jsonrpc":"2.0","result":{}}),
        &["2025-11-25"],
        |_| ((0..100_000).map(|i| format!("tool_{i:06}")).collect(), None),
    )
    .await;
    let r = Probe::new()
        .unwrap()
        .run(&ProbeOptions::new(&url, Duration::from_secs(20)))
        .await;
    assert_eq!(r.verdict, Verdict::Compliant, "{:?}", r.errors);
    assert_eq!(r.protocol_version.as_deref(), Some("2025-11-25"));
    assert_eq!(r.tools.len(), 100_000);
    assert!(r.truncated.is_empty(), "{:?}", r.truncated);
    assert!(
        r.detection[0].contains("not a server/discover result"),
        "{:?}",
        r.detection
    );
}

/// `initialize` refused with -32022 listing the versions the server speaks: retried with one of
/// them, not taken for another transport.
#[tokio::test]
async fn initialize_retries_with_a_version_the_server_lists() {
    let not_modern =
        serde_json::json!({"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"}});
    let url = scripted(not_modern, &["2025-03-26"], |_| (vec!["a".into()], None)).await;
    let r = Probe::new()
        .unwrap()
        .run(&ProbeOptions::new(&url, Duration::from_secs(5)))
        .await;
    assert_eq!(r.verdict, Verdict::Compliant, "{r:?}");
    assert_eq!(r.transport, Some(Transport::StreamableHttp));
    assert_eq!(r.protocol_version.as_deref(), Some("2025-03-26"));
    assert!(
        r.detection
            .iter()
            .any(|d| d.contains("retrying with 2025-03-26")),
        "{:?}",
        r.detection
    );
}

/// A cursor that repeats stops the listing without counting a name twice; a list longer than
/// `max_pages` is reported as truncated.
#[tokio::test]
async fn repeating_cursors_and_page_caps_are_truncation_not_wrong_counts() {
    let not_modern =
        serde_json::json!({"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"}});
    // Ignores the cursor: the same page and cursor every time.
    let url = scripted(not_modern.clone(), &["2025-11-25"], |_| {
        (vec!["a".into(), "b".into()], Some("again".into()))
    })
    .await;
    let r = Probe::new()
        .unwrap()
        .run(&ProbeOptions::new(&url, Duration::from_secs(5)))
        .await;
    assert_eq!(r.verdict, Verdict::Compliant, "{r:?}");
    assert_eq!(r.tools, ["a", "b"]);
    assert_eq!(r.truncated.len(), 1, "{:?}", r.truncated);
    assert!(r.summary().contains("truncated"), "{}", r.summary());
    // Ten pages, a cap of three.
    let url = scripted(not_modern, &["2025-11-25"], |c| {
        let page: u32 = c.and_then(|c| c.parse().ok()).unwrap_or(0);
        (
            vec![format!("t{page}")],
            (page < 9).then(|| (page + 1).to_string()),
        )
    })
    .await;
    let mut o = ProbeOptions::new(&url, Duration::from_secs(5));
    o.max_pages = 3;
    let r = Probe::new().unwrap().run(&o).await;
    assert_eq!(r.tools, ["t0", "t1", "t2"]);
    assert!(
        r.truncated[0].contains("stopped after 3 pages"),
        "{:?}",
        r.truncated
    );
    let c = hangar::probe::prober::check_of(&r);
    assert_eq!(
        c.validation.and_then(|v| v.truncated).map(|t| t.len()),
        Some(1)
    );
}

/// A same-origin redirect (the Python SDK's `/mcp/` -> `/mcp` 307) is followed, and the moved
/// URL is used for the rest of the session; another origin still is not (see above).
#[tokio::test]
async fn same_origin_redirects_are_followed() {
    let url = hostile(|req| {
        if req.path == "/mcp/" {
            return Reply::Write(http(307, "text/plain", "", "Location: /mcp\r\n"));
        }
        let v: serde_json::Value = serde_json::from_str(&req.body).unwrap_or_default();
        let id = v["id"].clone();
        let body = match v["method"].as_str() {
            Some("server/discover") => serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"moved","version":"1"}}}}),
            Some("tools/list") => serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"tools":[{"name":"x","inputSchema":{"type":"object"}}]}}),
            _ => return Reply::Write(http(405, "text/plain", "", "")),
        };
        Reply::Write(http(200, "application/json", &body.to_string(), ""))
    })
    .await;
    let r = Probe::new()
        .unwrap()
        .run(&ProbeOptions::new(
            format!("{url}/"),
            Duration::from_secs(5),
        ))
        .await;
    assert_eq!(r.verdict, Verdict::Compliant, "{r:?}");
    assert_eq!(r.tools, ["x"]);
    let followed: Vec<_> = r
        .detection
        .iter()
        .filter(|d| d.contains("followed HTTP 307"))
        .collect();
    assert_eq!(
        followed.len(),
        1,
        "the moved URL is reused: {:?}",
        r.detection
    );
}

#[tokio::test]
async fn unreachable_refused_tls_and_not_http() {
    let port = free_tcp_port();
    let r = quick(&format!("http://127.0.0.1:{port}/mcp")).await;
    assert_eq!(r.verdict, Verdict::Unreachable);
    assert_eq!(r.error_kind, Some("connection-refused"));

    // https to a plain HTTP server (which answers the ClientHello with a 400): TLS fails
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/mcp", l.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).await;
            let _ = s
                .write_all(&http(400, "text/plain", "Bad Request", ""))
                .await;
        }
    });
    let r = quick(&url).await;
    assert_eq!(r.verdict, Verdict::Unreachable);
    assert_eq!(r.error_kind, Some("tls"), "{r:?}");

    // a TCP service that is not HTTP
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", l.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.9\r\n").await;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                drop(s);
            });
        }
    });
    let r = quick(&url).await;
    assert_eq!(r.error_kind, Some("not-http"), "{r:?}");
}

/// A scripted dual-era server that lists only legacy versions in its -32022 error: the probe
/// falls back to `initialize` with the version the server named, then pages through tools.
#[tokio::test]
async fn version_negotiation_and_pagination() {
    let url = hostile(|req| {
        let v: serde_json::Value = serde_json::from_str(&req.body).unwrap_or_default();
        let id = v["id"].clone();
        let body = match (req.method.as_str(), v["method"].as_str()) {
            ("POST", Some("server/discover")) => {
                return Reply::Write(http(400, "application/json", &serde_json::json!({"jsonrpc":"2.0","id":id,"error":{"code":-32022,"message":"Unsupported protocol version","data":{"supported":["2025-06-18"],"requested":"2026-07-28"}}}).to_string(), ""));
            }
            ("POST", Some("initialize")) => {
                assert_eq!(v["params"]["protocolVersion"], "2025-06-18");
                serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"scripted","version":"1"}}})
            }
            ("POST", Some("notifications/initialized")) => return Reply::Write(http(202, "text/plain", "", "")),
            ("POST", Some("tools/list")) => {
                let page: u32 = v["params"]["cursor"].as_str().and_then(|c| c.parse().ok()).unwrap_or(0);
                let mut r = serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"tools":[{"name":format!("t{page}")}]}});
                if page < 2 {
                    r["result"]["nextCursor"] = (page + 1).to_string().into();
                }
                r
            }
            _ => return Reply::Write(http(405, "text/plain", "", "")),
        };
        Reply::Write(http(200, "application/json", &body.to_string(), ""))
    })
    .await;
    let o = ProbeOptions::new(&url, Duration::from_secs(5));
    let r = Probe::new().unwrap().run(&o).await;
    assert_eq!(r.verdict, Verdict::Compliant, "{r:?}");
    assert_eq!(r.protocol_version.as_deref(), Some("2025-06-18"));
    assert_eq!(r.tools, vec!["t0", "t1", "t2"]);
    assert_eq!(r.stateful, Some(false));
    assert!(
        r.detection[0].contains("-32022") || r.detection[0].contains("unsupported version"),
        "{:?}",
        r.detection
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prober_sends_the_target_headers() {
    let Some(s) = mcp_servers() else { return };
    let port = free_tcp_port();
    let mut cmd = Command::new(&s.python);
    cmd.arg(&s.script)
        .arg("streamable-http-auth")
        .arg(port.to_string())
        .env("MCP_TOKEN", "t0ken");
    let _p = start_listening(cmd, port);
    let prober = McpProber::new().unwrap();
    let mut t = Target {
        url: format!("http://127.0.0.1:{port}/mcp"),
        timeout: Duration::from_secs(10),
        headers: http::HeaderMap::new(),
    };
    let c = prober.check(&t).await;
    assert!(!c.ok, "{c:?}");
    assert_eq!(c.validation.and_then(|v| v.requires_auth), Some(true));
    let mut v = http::HeaderValue::from_static("Bearer t0ken");
    v.set_sensitive(true);
    t.headers.insert(http::header::AUTHORIZATION, v);
    let c = prober.check(&t).await;
    assert!(c.ok, "{c:?}");
    assert_eq!(c.tools, Some(vec!["echo".to_string(), "add".to_string()]));
    assert!(!c.message.contains("t0ken"), "{}", c.message);
}

/// A legacy streamable HTTP server whose sessions expire: it answers 404 to a request carrying
/// an expired `Mcp-Session-Id`. `expire_all`: every session expires on its first listing page
/// after the first; otherwise only the first session does (mid-way through tools/list).
fn expiring_sessions(
    expire_all: bool,
) -> (
    impl Fn(&Req) -> Reply + Send + Sync + 'static,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sessions = AtomicUsize::new(0);
    let seen = log.clone();
    let f = move |req: &Req| {
        let v: serde_json::Value = serde_json::from_str(&req.body).unwrap_or_default();
        let id = v["id"].clone();
        let method = v["method"].as_str().unwrap_or_default().to_string();
        let sid = req.header("mcp-session-id").map(str::to_string);
        seen.lock().unwrap().push(format!(
            "{} {method} {}",
            req.method,
            sid.as_deref().unwrap_or("-")
        ));
        let live = |s: &str| {
            let n = sessions.load(Ordering::SeqCst);
            s == format!("s{n}") && !(n == 1 || expire_all)
        };
        let ok = |result: serde_json::Value, extra: &str| {
            let body = serde_json::json!({"jsonrpc":"2.0","id":id,"result":result}).to_string();
            Reply::Write(http(200, "application/json", &body, extra))
        };
        match (req.method.as_str(), method.as_str(), sid.as_deref()) {
            ("POST", "server/discover", _) => Reply::Write(http(400, "text/plain", "no", "")),
            ("POST", "initialize", None) => {
                let n = sessions.fetch_add(1, Ordering::SeqCst) + 1;
                ok(
                    serde_json::json!({"protocolVersion":"2025-11-25","capabilities":{"tools":{},"prompts":{}},"serverInfo":{"name":"expiring","version":"1"}}),
                    &format!("Mcp-Session-Id: s{n}\r\n"),
                )
            }
            ("POST", "notifications/initialized", Some(_)) => {
                Reply::Write(http(202, "text/plain", "", ""))
            }
            ("POST", "tools/list", Some(s)) => {
                let cursor = v["params"]["cursor"].as_str();
                match cursor {
                    // the first page is served by every session
                    None => ok(
                        serde_json::json!({"tools":[{"name":"a"}],"nextCursor":"2"}),
                        "",
                    ),
                    Some("2") if live(s) => ok(serde_json::json!({"tools":[{"name":"b"}]}), ""),
                    Some(_) => Reply::Write(http(404, "text/plain", "session expired", "")),
                }
            }
            ("POST", "prompts/list", Some(s)) if live(s) => {
                ok(serde_json::json!({"prompts":[{"name":"p"}]}), "")
            }
            ("DELETE", _, Some(_)) => Reply::Write(http(200, "text/plain", "", "")),
            _ => Reply::Write(http(404, "text/plain", "", "")),
        }
    };
    (f, log)
}

/// A 404 to a request carrying the session id, mid-way through tools/list: the probe starts a
/// new session once (initialize without a session id) and continues the listing in it.
#[tokio::test]
async fn session_expiry_mid_listing_starts_a_new_session_once() {
    let (f, log) = expiring_sessions(false);
    let url = hostile(f).await;
    let o = ProbeOptions::new(&url, Duration::from_secs(5));
    let r = Probe::new().unwrap().run(&o).await;
    let log = log.lock().unwrap().clone();
    assert_eq!(r.verdict, Verdict::Compliant, "{r:?} {log:?}");
    assert_eq!(r.tools, vec!["a", "b"], "{log:?}");
    assert_eq!(r.prompts_count, Some(1));
    assert_eq!(r.stateful, Some(true));
    assert!(
        r.warnings.len() == 1 && r.warnings[0].contains("started a new session"),
        "{:?}",
        r.warnings
    );
    assert_eq!(
        log,
        [
            "POST server/discover -",
            "POST initialize -",
            "POST notifications/initialized s1",
            "POST tools/list s1",
            "POST tools/list s1",
            "POST initialize -",
            "POST notifications/initialized s2",
            "POST tools/list s2",
            "POST prompts/list s2",
            "DELETE  s2",
        ]
    );
}

/// A server that expires every session: one new session, then the probe reports the 404
/// (no loop of handshakes).
#[tokio::test]
async fn session_expiry_is_retried_only_once() {
    let (f, log) = expiring_sessions(true);
    let url = hostile(f).await;
    let r = quick(&url).await;
    let log = log.lock().unwrap().clone();
    assert_eq!(r.verdict, Verdict::NotCompliant, "{r:?}");
    assert!(
        r.errors[0].contains("tools/list: HTTP 404"),
        "{:?}",
        r.errors
    );
    let handshakes = log.iter().filter(|l| l.contains("initialize -")).count();
    assert_eq!(handshakes, 2, "{log:?}");
}

/// A legacy server answering every request with a `{}` result (as the conformance suite's
/// `initialize` scenario server does, server/discover and notifications included): no
/// supportedVersions, so not a DiscoverResult; the probe falls back to `initialize`.
#[tokio::test]
async fn legacy_catch_all_result_to_discover_falls_back_to_initialize() {
    let url = hostile(|req| {
        let v: serde_json::Value = serde_json::from_str(&req.body).unwrap_or_default();
        let result = match v["method"].as_str() {
            Some("initialize") => serde_json::json!({"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"catch-all","version":"1"}}),
            Some("tools/list") => serde_json::json!({"tools":[]}),
            _ => serde_json::json!({}),
        };
        let body = serde_json::json!({"jsonrpc":"2.0","id":v["id"],"result":result});
        Reply::Write(http(200, "application/json", &body.to_string(), ""))
    })
    .await;
    let r = Probe::new()
        .unwrap()
        .run(&ProbeOptions::new(&url, Duration::from_secs(5)))
        .await;
    assert_eq!(r.verdict, Verdict::Compliant, "{r:?}");
    assert_eq!(r.protocol_version.as_deref(), Some("2025-11-25"));
    assert!(
        r.detection[0].contains("not a server/discover result"),
        "{:?}",
        r.detection
    );
}
