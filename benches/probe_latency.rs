//! Probe latency on loopback, per transport, against the real MCP test servers (installed by
//! `deploy/testenv/mcp-servers.sh`): `cargo bench --bench probe_latency`.
//!
//! Each case runs `HANGAR_BENCH_PROBES` (default 200) full probes one after another with one
//! shared client (as the controller does: pooled connections, trust roots loaded once), after 5
//! warm-up probes, and prints a Markdown table: median, p90, p99, max. A full probe is the
//! handshake or discovery plus tools/resources/prompts lists (and the session's DELETE).
//!
//! See benches/README.md for results.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hangar::probe::{Probe, ProbeOptions, TransportChoice};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn start(mut cmd: Command, port: u16) -> Option<Proc> {
    let p = Proc(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?,
    );
    let until = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(p)
}

fn main() {
    let cache = std::env::var_os("HANGAR_MCP_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/hangar-mcp-servers"))
        })
        .unwrap_or_default();
    let python = cache.join("venv/bin/python");
    let everything =
        cache.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let server_py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/mcp/server.py");
    if !python.exists() || !everything.exists() {
        eprintln!("MCP test servers not installed: run deploy/testenv/mcp-servers.sh");
        return;
    }
    let n: usize = std::env::var("HANGAR_BENCH_PROBES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);

    let mut procs = Vec::new();
    let mut spawn_py = |t: &str| {
        let port = free_port();
        let mut c = Command::new(&python);
        c.arg(&server_py).arg(t).arg(port.to_string());
        procs.push(start(c, port));
        port
    };
    let py_http = spawn_py("streamable-http");
    let py_sse = spawn_py("sse");
    let mut spawn_ev = |t: &str| {
        let port = free_port();
        let mut c = Command::new("node");
        c.arg(&everything).arg(t).env("PORT", port.to_string());
        procs.push(start(c, port));
        port
    };
    let ev_http = spawn_ev("streamableHttp");
    let ev_sse = spawn_ev("sse");

    let cases: Vec<(&str, String, TransportChoice, Option<&str>)> = vec![
        (
            "python, 2026-07-28 stateless (auto)",
            format!("http://127.0.0.1:{py_http}/mcp"),
            TransportChoice::Auto,
            None,
        ),
        (
            "python, streamable HTTP 2025-11-25 (initialize + session)",
            format!("http://127.0.0.1:{py_http}/mcp"),
            TransportChoice::StreamableHttp,
            Some("2025-11-25"),
        ),
        (
            "python, HTTP+SSE 2024-11-05 (forced)",
            format!("http://127.0.0.1:{py_sse}/sse"),
            TransportChoice::Sse,
            None,
        ),
        (
            "python, HTTP+SSE (auto: 2 refused POSTs first)",
            format!("http://127.0.0.1:{py_sse}/sse"),
            TransportChoice::Auto,
            None,
        ),
        (
            "everything, streamable HTTP (auto: discover refused, initialize)",
            format!("http://127.0.0.1:{ev_http}/mcp"),
            TransportChoice::Auto,
            None,
        ),
        (
            "everything, HTTP+SSE 2024-11-05 (forced)",
            format!("http://127.0.0.1:{ev_sse}/sse"),
            TransportChoice::Sse,
            None,
        ),
    ];

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return;
        }
    };
    let probe = match Probe::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("probe client: {e}");
            return;
        }
    };
    println!("| case | probes | failures | median | p90 | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    for (name, url, transport, version) in cases {
        let mut opts = ProbeOptions::new(url, Duration::from_secs(10));
        opts.transport = transport;
        opts.protocol_version = version.map(str::to_string);
        let mut times = Vec::with_capacity(n);
        let mut failures = 0;
        rt.block_on(async {
            for _ in 0..5 {
                probe.run(&opts).await;
            }
            for _ in 0..n {
                let t = Instant::now();
                let r = probe.run(&opts).await;
                times.push(t.elapsed());
                if !r.compliant {
                    failures += 1;
                    eprintln!("{name}: {:?}", r.errors);
                }
            }
        });
        times.sort();
        let q = |p: f64| {
            let i = ((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1;
            format!("{:.1} ms", times[i].as_secs_f64() * 1e3)
        };
        println!(
            "| {name} | {n} | {failures} | {} | {} | {} | {} |",
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0)
        );
    }
}
