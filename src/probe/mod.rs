//! `hangar probe`: does a URL speak MCP, over which transport and protocol version, with which
//! tools?
//!
//! # Why a small client of our own, not `rmcp`
//!
//! The probe is a *diagnostic* client: its value is in saying precisely why a server is not MCP
//! (HTML page, 401, wrong content type, garbage JSON, a stream cut mid-response, a redirect to
//! another host, a hang) and in detecting the transport and protocol era the way the spec's
//! backwards-compatibility rules prescribe. `rmcp` is built to *use* a server: it folds these
//! cases into a few opaque transport errors, follows its own detection (or none), would need two
//! major versions side by side (its HTTP+SSE client is gone since 0.11) plus reqwest, and does not
//! let us cap body sizes or refuse redirects per request. The wire protocol a probe needs is
//! small (a handful of JSON-RPC requests, an SSE parser), so we write that part and use the HTTP
//! stack the crate already links for kube (hyper 1 + hyper-util + rustls with ring): no new
//! crates in the dependency graph, no redirects followed, every read bounded in bytes and time.
//!
//! # Detection (transport `auto`)
//!
//! 1. POST `server/discover` with 2026-07-28 per-request metadata. A result means a modern,
//!    stateless server. An `UnsupportedProtocolVersionError` (-32022) lists the server's
//!    versions: retry with a modern one we share, or fall back to `initialize` with a shared
//!    legacy one. Any other 4xx/5xx without a recognised modern error, or a non-modern JSON-RPC
//!    error, means a legacy server.
//! 2. POST `initialize` (2025-11-25 unless the server listed others): the 2025-03-26..2025-11-25
//!    streamable HTTP transport, with `Mcp-Session-Id`, JSON or SSE-framed responses.
//! 3. If that is refused with an HTTP error status, GET the URL as a 2024-11-05 HTTP+SSE stream,
//!    read its `endpoint` event, POST there and read the responses from the stream.
//!
//! 401/403, redirects, HTML, wrong content types and garbage stop detection at once: they are
//! answers, not a sign of another era. Forcing `streamable-http` skips step 3; forcing `sse` runs
//! step 3 only.

pub mod command;
pub mod error;
pub mod health;
pub mod http;
pub mod jsonrpc;
pub mod prober;
mod session;
pub mod sse;

use std::time::{Duration, Instant};

use serde::Serialize;

pub use error::{Fault, ProbeError};
pub use prober::McpProber;

/// Default cap on one response body (and on one SSE event): a valid server may list 100,000 tools
/// in one ~6 MB page. An SSE stream may carry [`session::SSE_STREAM_FACTOR`] times as much.
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// Default bound on the pages fetched per list (`tools/list`, ...); a list cut there is reported
/// in `truncated`.
pub const MAX_PAGES: usize = 1000;

/// Which transport to try.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportChoice {
    /// Modern streamable HTTP, then `initialize`, then legacy HTTP+SSE.
    #[default]
    Auto,
    /// Streamable HTTP only (modern `server/discover`, then `initialize`).
    StreamableHttp,
    /// Legacy HTTP+SSE (2024-11-05) only.
    Sse,
}

/// The transport a server was found to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    StreamableHttp,
    Sse,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::StreamableHttp => "streamable-http",
            Transport::Sse => "sse",
        }
    }
}

/// The outcome in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Speaks MCP: handshake (or discovery) and the lists of its declared features succeeded.
    Compliant,
    /// Answered 401/403: it may well be MCP, but we may not look without credentials.
    RequiresAuth,
    /// Answered, but not as an MCP server should.
    NotCompliant,
    /// No usable answer: refused, no route, TLS failure, or nothing within the timeout.
    Unreachable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Compliant => "compliant",
            Verdict::RequiresAuth => "requires-auth",
            Verdict::NotCompliant => "not-compliant",
            Verdict::Unreachable => "unreachable",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServerInfo {
    pub name: Option<String>,
    pub version: Option<String>,
}

/// Everything a probe found out. `-o json` prints exactly this.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    pub url: String,
    pub verdict: Verdict,
    pub compliant: bool,
    pub transport: Option<Transport>,
    pub protocol_version: Option<String>,
    /// Whether the server keeps a session (`Mcp-Session-Id` or an SSE stream); `false` for the
    /// stateless 2026-07-28 protocol.
    pub stateful: Option<bool>,
    pub requires_auth: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub www_authenticate: Option<String>,
    pub server_info: Option<ServerInfo>,
    pub capabilities: Vec<String>,
    pub tools: Vec<String>,
    pub resources_count: Option<usize>,
    pub prompts_count: Option<usize>,
    pub latency_ms: u64,
    pub error_kind: Option<&'static str>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// How the transport was found: one line per attempt that led to a fallback.
    pub detection: Vec<String>,
    /// Lists the probe did not read to their end (a page cap, a repeating cursor): their counts
    /// are lower bounds.
    pub truncated: Vec<String>,
    /// Whether any HTTP response arrived: a timeout after one is a misbehaving server, not an
    /// unreachable one.
    #[serde(skip)]
    pub answered: bool,
}

impl ProbeReport {
    /// Nothing found yet: not compliant until a probe says otherwise.
    fn start(url: &str) -> ProbeReport {
        ProbeReport {
            url: url.to_string(),
            verdict: Verdict::NotCompliant,
            compliant: false,
            transport: None,
            protocol_version: None,
            stateful: None,
            requires_auth: false,
            www_authenticate: None,
            server_info: None,
            capabilities: Vec::new(),
            tools: Vec::new(),
            resources_count: None,
            prompts_count: None,
            latency_ms: 0,
            error_kind: None,
            errors: Vec::new(),
            warnings: Vec::new(),
            detection: Vec::new(),
            truncated: Vec::new(),
            answered: false,
        }
    }

    /// One line for humans and for the status `message`.
    pub fn summary(&self) -> String {
        match self.verdict {
            Verdict::Compliant => {
                let name = self
                    .server_info
                    .as_ref()
                    .and_then(|s| s.name.clone())
                    .unwrap_or_else(|| "unnamed server".into());
                format!(
                    "MCP {} over {}: {name}, {} tools{}",
                    self.protocol_version.as_deref().unwrap_or("?"),
                    self.transport.map(Transport::as_str).unwrap_or("?"),
                    self.tools.len(),
                    if self.truncated.is_empty() {
                        String::new()
                    } else {
                        format!(" (at least; truncated: {})", self.truncated.join("; "))
                    }
                )
            }
            _ => format!(
                "{}: {}",
                self.verdict.as_str(),
                self.errors
                    .last()
                    .map(String::as_str)
                    .unwrap_or("no detail")
            ),
        }
    }
}

/// What to probe and how.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    pub url: String,
    pub transport: TransportChoice,
    /// Bounds the whole probe, every connect, request and read included.
    pub timeout: Duration,
    /// Extra request headers (e.g. `Authorization`); values are marked sensitive and never logged.
    pub headers: ::http::HeaderMap,
    pub max_body: usize,
    pub max_pages: usize,
    /// Start with this protocol version instead of the newest: a legacy one skips the modern
    /// attempt and goes straight to `initialize`; any other is sent to `server/discover` (an
    /// unknown one exercises the UnsupportedProtocolVersionError retry).
    pub protocol_version: Option<String>,
}

impl ProbeOptions {
    pub fn new(url: impl Into<String>, timeout: Duration) -> Self {
        ProbeOptions {
            url: url.into(),
            transport: TransportChoice::Auto,
            timeout,
            headers: ::http::HeaderMap::new(),
            max_body: MAX_BODY,
            max_pages: MAX_PAGES,
            protocol_version: None,
        }
    }
}

/// Headers the probe sets itself; a user may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "accept",
    "transfer-encoding",
    "connection",
    "mcp-protocol-version",
    "mcp-session-id",
    "mcp-method",
    "mcp-name",
];

/// Parses `Name: value` into a header whose value is marked sensitive.
pub fn parse_header(s: &str) -> Result<(::http::HeaderName, ::http::HeaderValue), String> {
    let Some((name, value)) = s.split_once(':') else {
        return Err("a header is written `Name: value`".into());
    };
    let name = name.trim();
    let hn = ::http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not a valid header name"))?;
    if RESERVED_HEADERS.contains(&hn.as_str()) {
        return Err(format!("header `{name}` is set by the probe itself"));
    }
    let mut hv = ::http::HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of header `{name}` has invalid characters"))?;
    hv.set_sensitive(true);
    Ok((hn, hv))
}

/// A reusable prober: holds the HTTP client (connection pool, trust roots).
#[derive(Clone)]
pub struct Probe {
    http: http::Http,
}

impl Probe {
    pub fn new() -> Result<Probe, String> {
        Ok(Probe {
            http: http::Http::new(Duration::from_secs(30))?,
        })
    }

    /// Runs one probe. Never hangs: everything is bounded by `opts.timeout`.
    pub async fn run(&self, opts: &ProbeOptions) -> ProbeReport {
        let start = Instant::now();
        let mut report = ProbeReport::start(&opts.url);
        // The session bounds each step by the deadline; this outer bound is a second guard.
        let deadline = tokio::time::Instant::now() + opts.timeout;
        let grace = deadline + Duration::from_millis(250);
        let outcome =
            tokio::time::timeout_at(grace, session::run(&self.http, opts, deadline, &mut report))
                .await
                .unwrap_or_else(|_| {
                    Err(ProbeError::new(
                        "probe",
                        Fault::Timeout(opts.timeout.as_millis()),
                    ))
                });
        report.latency_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        match outcome {
            Ok(()) => {
                report.verdict = Verdict::Compliant;
                report.compliant = true;
            }
            Err(e) => {
                report.verdict = match &e.fault {
                    Fault::Auth {
                        www_authenticate, ..
                    } => {
                        report.requires_auth = true;
                        report.www_authenticate = www_authenticate.clone();
                        Verdict::RequiresAuth
                    }
                    f if f.unreachable() && !report.answered => Verdict::Unreachable,
                    _ => Verdict::NotCompliant,
                };
                report.error_kind = Some(e.fault.kind());
                report.errors.push(e.to_string());
            }
        }
        tracing::debug!(url = %report.url, verdict = report.verdict.as_str(), latency_ms = report.latency_ms, "probe done");
        report
    }
}

/// Probes once with a fresh client.
pub async fn probe(opts: &ProbeOptions) -> ProbeReport {
    match Probe::new() {
        Ok(p) => p.run(opts).await,
        Err(e) => {
            let mut r = Probe::failed(opts, ProbeError::new("setup", Fault::Http(e)));
            r.verdict = Verdict::NotCompliant;
            r
        }
    }
}

impl Probe {
    fn failed(opts: &ProbeOptions, e: ProbeError) -> ProbeReport {
        let mut r = ProbeReport::start(&opts.url);
        r.error_kind = Some(e.fault.kind());
        r.errors = vec![e.to_string()];
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_are_sensitive() {
        let (n, v) = parse_header("Authorization: Bearer abc").unwrap();
        assert_eq!(n.as_str(), "authorization");
        assert!(v.is_sensitive());
        assert_eq!(v.to_str().unwrap(), "Bearer abc");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Bad Name: x").is_err());
        assert!(
            parse_header("Mcp-Session-Id: x")
                .unwrap_err()
                .contains("set by the probe")
        );
        assert!(parse_header("X-A: a\u{7f}b").is_err());
    }

    #[test]
    fn report_serialises_camel_case() {
        let r = Probe::failed(
            &ProbeOptions::new("http://x", Duration::from_secs(1)),
            ProbeError::new("POST server/discover", Fault::Refused),
        );
        let j = serde_json::to_value(&r).unwrap();
        for k in [
            "url",
            "compliant",
            "transport",
            "protocolVersion",
            "requiresAuth",
            "serverInfo",
            "capabilities",
            "tools",
            "errors",
            "latencyMs",
            "resourcesCount",
            "promptsCount",
        ] {
            assert!(j.get(k).is_some(), "{k} missing in {j}");
        }
        assert_eq!(j["errorKind"], "connection-refused");
        assert_eq!(j["errors"][0], "POST server/discover: connection refused");
    }
}
