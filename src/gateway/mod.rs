//! `hangar gateway`: the MCP data plane. It serves each MCPServer at `/servers/NS/NAME/mcp` and
//! each MCPServerGroup at `/groups/NS/NAME/mcp` (a fixed contract), proxies streamable HTTP to the
//! upstream, and enforces what the compiled model declares: tool allow/deny lists on `tools/list`
//! and `tools/call`, `tools.rateLimit` on `tools/call`. Session ids are sealed tokens
//! ([`session`]), so every gateway process holding the key serves every session.
//!
//! Two sources of the route table, one code path: local mode compiles local manifests exactly
//! as `hangar render` compiles them ([`routes::RouteTable::of`]); in-cluster mode (`--cluster`)
//! watches MCPServer/Group and EndpointSlices and compiles them with the same `compile()`
//! ([`watch`]), container servers reaching their ready pods. Either stores its table in the same
//! `ArcSwap`.
//!
//! Group strategies, failover and member health are in [`balance`], the per-server circuit
//! breaker in [`breaker`], the start on demand and idle stop of `replicas: 0` servers in
//! [`activator`]. Not yet: legacy HTTP+SSE upstreams.
//!
//! The layering: the gateway uses api, compile, source and probe; the CLI hands it a source.

pub mod activator;
pub mod balance;
pub mod breaker;
pub mod filter;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod request;
pub mod routes;
pub mod session;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::routing::get;

use routes::RouteTable;
use session::Sealer;

/// The environment variable that may hold the session key (base64), instead of a file.
pub const KEY_ENV: &str = "HANGAR_GATEWAY_SESSION_KEY";

#[derive(clap::Args, Debug, Clone)]
pub struct GatewayArgs {
    /// Address to serve MCP, /healthz, /readyz and /metrics on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The session-token key: a file holding at least 32 bytes, raw or base64 (a mounted Secret
    /// key works as it is). Repeat to rotate: the first seals, all open. Default: the variable
    /// HANGAR_GATEWAY_SESSION_KEY (base64), else a fresh key for this process only.
    #[arg(long = "session-key-file", value_name = "PATH")]
    pub session_key_files: Vec<PathBuf>,
    /// Largest request body accepted (and largest tools/list response filtered).
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = crate::probe::command::parse_size)]
    pub max_body: usize,
    /// Most requests held per on-demand server while it starts; past it, 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_held_requests: usize,
    /// Bound on waiting for an upstream's response headers (e.g. 30s, 2m).
    #[arg(long, value_name = "DUR", default_value = "120s", value_parser = crate::compile::units::parse_duration)]
    pub upstream_timeout: Duration,
    #[command(flatten)]
    pub log: crate::logging::LogArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] session::KeyError),
    #[error("{KEY_ENV} is not valid base64 of at least 32 bytes")]
    KeyEnv,
    #[error("cannot set up the upstream HTTP client: {0}")]
    Client(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(std::io::Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
}

/// Where the route table comes from.
pub enum Source {
    /// Local manifests, compiled; `reload`, when given, is polled for a new table (the CLI's
    /// re-read of changed manifests).
    Local {
        table: RouteTable,
        reload: Option<Box<dyn FnMut() -> Option<RouteTable> + Send>>,
    },
    /// The cluster: MCPServer, MCPServerGroup and EndpointSlices watched ([`watch`]).
    Cluster {
        connect: crate::connect::Connect,
        scope: crate::source::scope::Scope,
    },
}

/// The session keys from the arguments, the environment, or (local mode) a fresh one.
pub fn sealer(args: &GatewayArgs) -> Result<Sealer, GatewayError> {
    let mut materials = Vec::new();
    for p in &args.session_key_files {
        let raw = std::fs::read(p).map_err(|source| GatewayError::KeyFile {
            path: p.display().to_string(),
            source,
        })?;
        materials.push(session::key_material(&raw));
    }
    if materials.is_empty() {
        if let Some(v) = std::env::var_os(KEY_ENV).filter(|v| !v.is_empty()) {
            use base64::Engine;
            let k = base64::engine::general_purpose::STANDARD
                .decode(v.as_encoded_bytes().trim_ascii())
                .map_err(|_| GatewayError::KeyEnv)?;
            if k.len() < session::MIN_KEY_BYTES {
                return Err(GatewayError::KeyEnv);
            }
            materials.push(k);
        }
    }
    let generated = materials.is_empty();
    if generated {
        materials.push(session::generate_material()?);
    }
    let s = Sealer::new(&materials)?;
    if generated {
        tracing::warn!(
            key_id = %s.key_ids().join(","),
            "no session key given (--session-key-file or {KEY_ENV}): generated one for this process; its sessions end with it and no other gateway process can continue them"
        );
    } else {
        tracing::info!(key_ids = %s.key_ids().join(","), "session keys loaded");
    }
    Ok(s)
}

/// Serves the routes of `source` until Ctrl-C / SIGTERM; a new table replaces the current one
/// atomically.
pub fn main(args: GatewayArgs, source: Source) -> Result<u8, GatewayError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(GatewayError::Runtime)?;
    rt.block_on(serve(args, source))
}

async fn serve(args: GatewayArgs, source: Source) -> Result<u8, GatewayError> {
    let sealer = sealer(&args)?;
    // Local mode is ready once its table is compiled, which it is before we listen; in-cluster
    // mode once every watch has listed.
    let ready = Arc::new(AtomicBool::new(false));
    let (table, reload, cluster) = match source {
        Source::Local { table, reload } => {
            ready.store(true, Ordering::SeqCst);
            (table, reload, None)
        }
        Source::Cluster { connect, scope } => {
            let client = crate::connect::client(&connect).await?;
            (RouteTable::default(), None, Some((client, scope)))
        }
    };
    let http =
        crate::probe::http::Http::new(Duration::from_secs(5)).map_err(GatewayError::Client)?;
    let routes = table.routes.len();
    let gw = Arc::new(proxy::Gateway {
        routes: ArcSwap::from_pointee(table),
        sealer,
        limits: policy::Limits::default(),
        balancer: balance::Balancer::default(),
        breakers: breaker::Breakers::default(),
        activator: Arc::new(activator::Activator::new(
            cluster.as_ref().map(|(c, _)| c.clone()),
            args.max_held_requests,
        )),
        metrics: metrics::Metrics::default(),
        http,
        config: proxy::Config {
            max_body: args.max_body,
            upstream_timeout: args.upstream_timeout,
            loopback: args.listen.ip().is_loopback(),
        },
    });
    if let Some(mut reload) = reload {
        let gw = Arc::clone(&gw);
        // A blocking reader (it compiles files): on its own thread, polled once a second.
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                if Arc::strong_count(&gw) == 1 {
                    return;
                }
                if let Some(t) = reload() {
                    let n = t.routes.len();
                    if **gw.routes.load() != t {
                        gw.routes.store(Arc::new(t));
                        tracing::info!(routes = n, "route table replaced");
                    }
                }
            }
        });
    }
    if let Some((client, scope)) = cluster {
        tokio::spawn(activator::sweep(Arc::clone(&gw) as Arc<dyn activator::Host>));
        tokio::spawn(watch::run(
            client,
            scope,
            Arc::clone(&gw),
            Arc::clone(&ready),
        ));
    }
    let m = Arc::clone(&gw);
    let r = Arc::clone(&ready);
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = r.load(Ordering::SeqCst);
                async move {
                    if ready {
                        (http::StatusCode::OK, "ok\n")
                    } else {
                        (
                            http::StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: the first sync of the watches is not done\n",
                        )
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let m = Arc::clone(&m);
                async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.metrics.encode(),
                    )
                }
            }),
        )
        .fallback(proxy::handle)
        .with_state(Arc::clone(&gw));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| GatewayError::Listen {
            addr: args.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(%addr, routes, "gateway listening");
    // No Nagle: a streamed response is written as headers, then body frames; with Nagle on, the
    // second small write waits for the client's delayed ACK (~40 ms a response).
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    // No graceful drain: SSE streams are long-lived by design, and a client reconnects (to any
    // replica: the session is in its token).
    tokio::select! {
        r = axum::serve(listener, app) => r.map_err(GatewayError::Serve).map(|()| 0),
        () = shutdown() => {
            tracing::info!("gateway stopping");
            Ok(0)
        }
    }
}

async fn shutdown() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
