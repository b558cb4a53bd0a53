//! The protocol flows: modern streamable HTTP, legacy streamable HTTP, legacy HTTP+SSE; transport
//! detection; paginated lists; the session's end.

use std::future::Future;

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use http_body_util::Full;
use serde_json::{Map, Value as Json, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use url::Url;

use super::error::{Fault, ProbeError};
use super::http::{Body, Http, Response, media_type};
use super::jsonrpc::{
    self, LEGACY_VERSIONS, MODERN_VERSIONS, Message, Pick, RpcError, clip, id_matches,
};
use super::sse::SseParser;
use super::{ProbeOptions, ProbeReport, ServerInfo, Transport, TransportChoice};

const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
const ACCEPT_BOTH: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");
const JSON_TYPE: HeaderValue = HeaderValue::from_static("application/json");
/// Cap on an error response's body: only read to look for a JSON-RPC error.
const ERROR_BODY_CAP: usize = 64 * 1024;
/// Total cap on a legacy SSE stream over one probe (events are capped one by one as well).
const SSE_STREAM_FACTOR: usize = 4;

/// The client identity sent in every handshake.
fn client_info() -> Json {
    json!({"name": "hangar-probe", "version": env!("CARGO_PKG_VERSION")})
}

/// How requests travel once the transport is known.
enum Mode {
    /// 2026-07-28: every POST carries its version in `_meta` and headers; no session.
    Modern { version: String },
    /// 2025-03-26..2025-11-25 streamable HTTP, after `initialize`.
    Streamable {
        version: String,
        session: Option<HeaderValue>,
    },
    /// 2024-11-05 HTTP+SSE: POST to the endpoint, responses on the stream.
    Sse {
        post: Uri,
        rx: mpsc::Receiver<Result<Json, Fault>>,
        _reader: AbortOnDrop,
    },
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What an answered POST of a JSON-RPC request said.
enum Reply {
    /// 2xx with a JSON-RPC response to our request.
    Answer {
        headers: HeaderMap,
        outcome: Result<Json, RpcError>,
    },
    /// An HTTP error status (not 401/403, not a redirect), with the JSON-RPC error it carried.
    Rejected {
        status: StatusCode,
        rpc: Option<RpcError>,
    },
}

/// Result of the modern attempt.
enum ModernOutcome {
    Established(Mode, Json),
    /// Not modern: fall back to `initialize`, with this version first.
    Legacy(Option<String>),
}

struct Session<'a> {
    http: &'a Http,
    opts: &'a ProbeOptions,
    url: Url,
    uri: Uri,
    deadline: Instant,
    next_id: u64,
    /// Whether any HTTP response arrived (a later timeout is then not "unreachable").
    answered: std::sync::atomic::AtomicBool,
}

pub(super) async fn run(
    http: &Http,
    opts: &ProbeOptions,
    deadline: Instant,
    report: &mut ProbeReport,
) -> Result<(), ProbeError> {
    let url = check_url(&opts.url).map_err(|f| ProbeError::new("URL", f))?;
    let uri: Uri = url
        .as_str()
        .parse()
        .map_err(|e| ProbeError::new("URL", Fault::InvalidUrl(format!("{e}"))))?;
    let mut s = Session {
        http,
        opts,
        url,
        uri,
        deadline,
        next_id: 0,
        answered: std::sync::atomic::AtomicBool::new(false),
    };
    let outcome = s.drive(report).await;
    report.answered = s.answered.load(std::sync::atomic::Ordering::Relaxed);
    outcome
}

fn check_url(raw: &str) -> Result<Url, Fault> {
    let mut url = Url::parse(raw).map_err(|e| Fault::InvalidUrl(format!("`{raw}`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Fault::InvalidUrl(format!(
            "scheme `{}` (use http or https)",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Fault::InvalidUrl("no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Fault::InvalidUrl(
            "credentials in the URL; pass them as a header instead".into(),
        ));
    }
    url.set_fragment(None);
    Ok(url)
}

/// serverInfo from an `initialize` result, or from `_meta` of a 2026-07-28 result.
fn server_info(result: &Json) -> Option<ServerInfo> {
    let info = result.get("serverInfo").or_else(|| {
        result
            .get("_meta")
            .and_then(|m| m.get("io.modelcontextprotocol/serverInfo"))
    })?;
    let field = |k: &str| info.get(k).and_then(Json::as_str).map(|s| clip(s, 200));
    Some(ServerInfo {
        name: field("name"),
        version: field("version"),
    })
}

impl Session<'_> {
    async fn drive(&mut self, report: &mut ProbeReport) -> Result<(), ProbeError> {
        let (mut mode, init) = self.establish(report).await?;
        let caps = init
            .get("capabilities")
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default();
        report.capabilities = caps.keys().cloned().collect();
        report.capabilities.sort();
        report.server_info = server_info(&init);
        let result = self.inventory(&mut mode, &caps, report).await;
        self.close(mode, report).await;
        result
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Bounds a step by the probe's deadline and names the step in its error.
    async fn bounded<T>(
        &self,
        step: &str,
        fut: impl Future<Output = Result<T, Fault>>,
    ) -> Result<T, ProbeError> {
        match tokio::time::timeout_at(self.deadline, fut).await {
            Ok(r) => r.map_err(|f| ProbeError::new(step, f)),
            Err(_) => Err(ProbeError::new(
                step,
                Fault::Timeout(self.opts.timeout.as_millis()),
            )),
        }
    }

    fn request(
        &self,
        method: Method,
        uri: &Uri,
        extra: &[(HeaderName, HeaderValue)],
        body: Option<&Json>,
    ) -> Result<super::http::Request, Fault> {
        let mut b = http::Request::builder().method(method).uri(uri.clone());
        for (k, v) in &self.opts.headers {
            b = b.header(k, v);
        }
        for (k, v) in extra {
            b = b.header(k, v);
        }
        let bytes = match body {
            Some(j) => {
                b = b.header(CONTENT_TYPE, JSON_TYPE);
                Bytes::from(serde_json::to_vec(j).map_err(|e| Fault::Http(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        b.body(Full::new(bytes))
            .map_err(|e| Fault::Http(e.to_string()))
    }

    async fn send(
        &self,
        step: &str,
        method: Method,
        uri: &Uri,
        extra: &[(HeaderName, HeaderValue)],
        body: Option<&Json>,
    ) -> Result<Response, ProbeError> {
        let req = self
            .request(method, uri, extra, body)
            .map_err(|f| ProbeError::new(step, f))?;
        tracing::debug!(step, "sending");
        let resp = self.bounded(step, self.http.send(req)).await?;
        self.answered
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(step, status = resp.status().as_u16(), "answered");
        self.refuse_auth_and_redirects(step, &resp)?;
        Ok(resp)
    }

    /// 401/403 and 3xx end the probe whatever the step.
    fn refuse_auth_and_redirects(&self, step: &str, resp: &Response) -> Result<(), ProbeError> {
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let www = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .map(|v| clip(&String::from_utf8_lossy(v.as_bytes()), 300));
            return Err(ProbeError::new(
                step,
                Fault::Auth {
                    status: status.as_u16(),
                    www_authenticate: www,
                },
            ));
        }
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| describe_location(&self.url, l))
                .unwrap_or_else(|| "(no Location)".into());
            return Err(ProbeError::new(
                step,
                Fault::Redirect {
                    status: status.as_u16(),
                    location,
                },
            ));
        }
        Ok(())
    }

    /// POSTs a JSON-RPC request and reads its response (JSON or an SSE stream).
    async fn post_request(
        &self,
        step: &str,
        uri: &Uri,
        extra: &[(HeaderName, HeaderValue)],
        body: &Json,
        id: u64,
    ) -> Result<Reply, ProbeError> {
        let mut headers = vec![(ACCEPT, ACCEPT_BOTH)];
        headers.extend_from_slice(extra);
        let resp = self
            .send(step, Method::POST, uri, &headers, Some(body))
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let (_, body) = resp.into_parts();
            let bytes =
                tokio::time::timeout_at(self.deadline, Body::new(body, ERROR_BODY_CAP).all())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
            return Ok(Reply::Rejected {
                status,
                rpc: rpc_error_in(&bytes),
            });
        }
        let (parts, body) = resp.into_parts();
        let outcome = match media_type(&parts.headers).as_deref() {
            Some("application/json") => {
                let bytes = self
                    .bounded(step, Body::new(body, self.opts.max_body).all())
                    .await?;
                response_in_json(&bytes, id).map_err(|f| ProbeError::new(step, f))?
            }
            Some("text/event-stream") => self.response_in_sse(step, body, id).await?,
            other => {
                let fault = wrong_type(other, "application/json or text/event-stream", status);
                return Err(ProbeError::new(step, fault));
            }
        };
        Ok(Reply::Answer {
            headers: parts.headers,
            outcome,
        })
    }

    async fn response_in_sse(
        &self,
        step: &str,
        body: hyper::body::Incoming,
        id: u64,
    ) -> Result<Result<Json, RpcError>, ProbeError> {
        let mut body = Body::new(body, self.opts.max_body.saturating_mul(SSE_STREAM_FACTOR));
        let mut parser = SseParser::new(self.opts.max_body);
        loop {
            let Some(chunk) = self.bounded(step, body.chunk()).await? else {
                return Err(ProbeError::new(step, Fault::Closed));
            };
            let events = parser
                .push(&chunk)
                .map_err(|e| ProbeError::new(step, sse_fault(e)))?;
            for ev in events {
                if ev.event != "message" {
                    continue;
                }
                let v: Json = serde_json::from_str(&ev.data)
                    .map_err(|e| ProbeError::new(step, bad_json(&e, ev.data.as_bytes())))?;
                if let Some(outcome) =
                    find_response(&v, id).map_err(|f| ProbeError::new(step, f))?
                {
                    return Ok(outcome);
                }
            }
        }
    }

    async fn establish(&mut self, report: &mut ProbeReport) -> Result<(Mode, Json), ProbeError> {
        let choice = self.opts.transport;
        let forced = self.opts.protocol_version.clone();
        let forced_legacy = forced.as_deref().filter(|v| jsonrpc::legacy_supported(v));
        let mut legacy_first = forced_legacy.map(str::to_string);
        if choice != TransportChoice::Sse {
            let modern = match forced_legacy {
                Some(v) => {
                    report
                        .detection
                        .push(format!("protocol version {v} asked for: initialize only"));
                    ModernOutcome::Legacy(legacy_first.clone())
                }
                None => self.try_modern(report, forced.as_deref()).await?,
            };
            match modern {
                ModernOutcome::Established(mode, result) => {
                    report.transport = Some(Transport::StreamableHttp);
                    report.stateful = Some(false);
                    return Ok((mode, result));
                }
                ModernOutcome::Legacy(v) => legacy_first = v,
            }
            match self.try_initialize(report, legacy_first.as_deref()).await? {
                Some((mode, result)) => {
                    report.transport = Some(Transport::StreamableHttp);
                    return Ok((mode, result));
                }
                None if choice == TransportChoice::StreamableHttp => {
                    return Err(ProbeError::new(
                        "streamable HTTP",
                        Fault::NotMcp(format!(
                            "neither server/discover nor initialize was accepted ({})",
                            report.detection.join("; ")
                        )),
                    ));
                }
                None => {}
            }
        }
        let (mode, result) = self.open_sse(report).await?;
        report.transport = Some(Transport::Sse);
        report.stateful = Some(true);
        Ok((mode, result))
    }

    fn modern_meta(version: &str) -> Json {
        json!({
            "io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientInfo": client_info(),
            "io.modelcontextprotocol/clientCapabilities": {},
        })
    }

    fn modern_headers(version: &str, method: &str) -> Vec<(HeaderName, HeaderValue)> {
        let mut h = Vec::new();
        if let Ok(v) = HeaderValue::from_str(version) {
            h.push((MCP_PROTOCOL_VERSION, v));
        }
        if let Ok(m) = HeaderValue::from_str(method) {
            h.push((MCP_METHOD, m));
        }
        h
    }

    async fn try_modern(
        &mut self,
        report: &mut ProbeReport,
        first: Option<&str>,
    ) -> Result<ModernOutcome, ProbeError> {
        let mut version = first.unwrap_or(MODERN_VERSIONS[0]).to_string();
        // At most one retry after an UnsupportedProtocolVersionError.
        for attempt in 0..2 {
            let step = format!("POST server/discover ({version})");
            let id = self.id();
            let body = jsonrpc::request(
                id,
                "server/discover",
                json!({"_meta": Self::modern_meta(&version)}),
            );
            let headers = Self::modern_headers(&version, "server/discover");
            let uri = self.uri.clone();
            let rpc = match self.post_request(&step, &uri, &headers, &body, id).await? {
                Reply::Answer {
                    outcome: Ok(result),
                    ..
                } => {
                    let supported = jsonrpc::string_list(result.get("supportedVersions"))
                        .ok_or_else(|| {
                            ProbeError::new(
                                &step,
                                Fault::Protocol(
                                    "the server/discover result has no supportedVersions list"
                                        .into(),
                                ),
                            )
                        })?;
                    if !result.get("capabilities").is_some_and(Json::is_object) {
                        return Err(ProbeError::new(
                            &step,
                            Fault::Protocol(
                                "the server/discover result has no capabilities object".into(),
                            ),
                        ));
                    }
                    if supported.contains(&version) {
                        report.protocol_version = Some(version.clone());
                        return Ok(ModernOutcome::Established(Mode::Modern { version }, result));
                    }
                    match jsonrpc::pick_version(&supported) {
                        Some(Pick::Modern(v)) if attempt == 0 => {
                            report.detection.push(format!(
                                "{step}: server lists {supported:?}; retrying with {v}"
                            ));
                            version = v;
                            continue;
                        }
                        Some(Pick::Legacy(v)) => {
                            report.detection.push(format!(
                                "{step}: server lists only legacy versions {supported:?}"
                            ));
                            return Ok(ModernOutcome::Legacy(Some(v)));
                        }
                        _ => return Err(no_common_version(&step, &supported)),
                    }
                }
                Reply::Answer {
                    outcome: Err(rpc), ..
                } => (rpc, None),
                Reply::Rejected { status, rpc } => match rpc {
                    Some(rpc) => (rpc, Some(status)),
                    None => {
                        report.detection.push(format!(
                            "{step}: HTTP {} without a modern JSON-RPC error, so not a 2026-07-28 server",
                            status.as_u16()
                        ));
                        return Ok(ModernOutcome::Legacy(None));
                    }
                },
            };
            let (rpc, status) = rpc;
            let http = status
                .map(|s| format!("HTTP {}, ", s.as_u16()))
                .unwrap_or_default();
            if !rpc.is_modern() {
                report.detection.push(format!(
                    "{step}: {http}{rpc}, not a modern error, so not a 2026-07-28 server"
                ));
                return Ok(ModernOutcome::Legacy(None));
            }
            if let Some(supported) = rpc.supported_versions() {
                match jsonrpc::pick_version(&supported) {
                    Some(Pick::Modern(v)) if attempt == 0 && v != version => {
                        report.detection.push(format!(
                            "{step}: unsupported version; server supports {supported:?}, retrying with {v}"
                        ));
                        version = v;
                        continue;
                    }
                    Some(Pick::Legacy(v)) => {
                        report.detection.push(format!(
                            "{step}: unsupported version; server supports {supported:?}, using initialize with {v}"
                        ));
                        return Ok(ModernOutcome::Legacy(Some(v)));
                    }
                    _ => return Err(no_common_version(&step, &supported)),
                }
            }
            // A modern server that rejected a well-formed discovery request.
            return Err(ProbeError::new(step, Fault::Rpc(Box::new(rpc))));
        }
        Err(ProbeError::new(
            "server/discover",
            Fault::Protocol("version negotiation did not settle".into()),
        ))
    }

    /// `initialize` over streamable HTTP; `None` when refused with an HTTP error (not this
    /// transport).
    async fn try_initialize(
        &mut self,
        report: &mut ProbeReport,
        first: Option<&str>,
    ) -> Result<Option<(Mode, Json)>, ProbeError> {
        let version = first.unwrap_or(LEGACY_VERSIONS[0]).to_string();
        let step = format!("POST initialize ({version})");
        let id = self.id();
        let body = initialize_body(id, &version);
        let uri = self.uri.clone();
        match self.post_request(&step, &uri, &[], &body, id).await? {
            Reply::Answer {
                headers,
                outcome: Ok(result),
            } => {
                let negotiated = negotiated(&step, &result)?;
                let session = headers.get(MCP_SESSION_ID).cloned().map(|mut v| {
                    v.set_sensitive(true);
                    v
                });
                report.stateful = Some(session.is_some());
                report.protocol_version = Some(negotiated.clone());
                let mut mode = Mode::Streamable {
                    version: negotiated,
                    session,
                };
                self.initialized(&mut mode, report).await?;
                Ok(Some((mode, result)))
            }
            Reply::Answer {
                outcome: Err(rpc), ..
            } => Err(ProbeError::new(step, Fault::Rpc(Box::new(rpc)))),
            Reply::Rejected { status, rpc } => {
                let why = rpc.map(|r| format!(" ({r})")).unwrap_or_default();
                report.detection.push(format!(
                    "{step}: HTTP {}{why}, so not streamable HTTP",
                    status.as_u16()
                ));
                Ok(None)
            }
        }
    }

    /// Sends `notifications/initialized`; an unexpected answer is a warning, not a failure.
    async fn initialized(
        &mut self,
        mode: &mut Mode,
        report: &mut ProbeReport,
    ) -> Result<(), ProbeError> {
        let step = "POST notifications/initialized";
        let body = jsonrpc::notification("notifications/initialized");
        let (uri, mut headers) = match mode {
            Mode::Modern { .. } => return Ok(()),
            Mode::Streamable { version, session } => {
                (self.uri.clone(), legacy_headers(version, session.as_ref()))
            }
            Mode::Sse { post, .. } => (post.clone(), Vec::new()),
        };
        headers.push((ACCEPT, ACCEPT_BOTH));
        let resp = self
            .send(step, Method::POST, &uri, &headers, Some(&body))
            .await?;
        let status = resp.status();
        let (_, b) = resp.into_parts();
        let _ = tokio::time::timeout_at(self.deadline, Body::new(b, ERROR_BODY_CAP).all()).await;
        if status != StatusCode::ACCEPTED && !status.is_success() {
            report.warnings.push(format!(
                "{step}: HTTP {} (expected 202 Accepted)",
                status.as_u16()
            ));
        }
        Ok(())
    }

    async fn open_sse(&mut self, report: &mut ProbeReport) -> Result<(Mode, Json), ProbeError> {
        let step = "GET (HTTP+SSE)";
        let came_from_fallback = !report.detection.is_empty();
        let uri = self.uri.clone();
        let resp = self
            .send(
                step,
                Method::GET,
                &uri,
                &[
                    (ACCEPT, HeaderValue::from_static("text/event-stream")),
                    (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                ],
                None,
            )
            .await?;
        let status = resp.status();
        let (parts, body) = resp.into_parts();
        let media = media_type(&parts.headers);
        if !status.is_success() {
            let fault = if came_from_fallback {
                Fault::NotMcp(format!(
                    "HTTP {} to GET; {}",
                    status.as_u16(),
                    report.detection.join("; ")
                ))
            } else {
                Fault::Status {
                    status: status.as_u16(),
                    detail: String::new(),
                }
            };
            return Err(ProbeError::new(step, fault));
        }
        if media.as_deref() != Some("text/event-stream") {
            return Err(ProbeError::new(
                step,
                wrong_type(media.as_deref(), "text/event-stream", status),
            ));
        }
        let mut body = Body::new(body, self.opts.max_body.saturating_mul(SSE_STREAM_FACTOR));
        let mut parser = SseParser::new(self.opts.max_body);
        // The first event must be `endpoint`.
        let (endpoint, mut pending) = loop {
            let Some(chunk) = self.bounded(step, body.chunk()).await? else {
                return Err(ProbeError::new(
                    step,
                    Fault::Protocol("the SSE stream ended before an `endpoint` event".into()),
                ));
            };
            let mut events = parser
                .push(&chunk)
                .map_err(|e| ProbeError::new(step, sse_fault(e)))?;
            if events.is_empty() {
                continue;
            }
            let first = events.remove(0);
            if first.event != "endpoint" {
                return Err(ProbeError::new(
                    step,
                    Fault::Protocol(format!(
                        "the first SSE event is `{}`, not `endpoint`",
                        clip(&first.event, 60)
                    )),
                ));
            }
            break (first.data, events);
        };
        let post = self.endpoint_uri(step, &endpoint)?;
        // Read the rest of the stream in the background; responses come back by channel.
        let (tx, rx) = mpsc::channel::<Result<Json, Fault>>(64);
        let reader = tokio::spawn(async move {
            let forward = |events: Vec<super::sse::SseEvent>| {
                let mut out = Vec::new();
                for ev in events.into_iter().filter(|e| e.event == "message") {
                    out.push(
                        serde_json::from_str::<Json>(&ev.data)
                            .map_err(|e| bad_json(&e, ev.data.as_bytes())),
                    );
                }
                out
            };
            for m in forward(std::mem::take(&mut pending)) {
                if tx.send(m).await.is_err() {
                    return;
                }
            }
            loop {
                let item = match body.chunk().await {
                    Ok(Some(chunk)) => match parser.push(&chunk) {
                        Ok(events) => {
                            for m in forward(events) {
                                if tx.send(m).await.is_err() {
                                    return;
                                }
                            }
                            continue;
                        }
                        Err(e) => sse_fault(e),
                    },
                    Ok(None) => Fault::Closed,
                    Err(f) => f,
                };
                let _ = tx.send(Err(item)).await;
                return;
            }
        });
        let mut mode = Mode::Sse {
            post,
            rx,
            _reader: AbortOnDrop(reader),
        };
        let version = self
            .opts
            .protocol_version
            .as_deref()
            .filter(|v| jsonrpc::legacy_supported(v))
            .unwrap_or(LEGACY_VERSIONS[LEGACY_VERSIONS.len() - 1]);
        let step = format!("initialize over HTTP+SSE ({version})");
        let id = self.id();
        let result = self
            .call_in(&mut mode, &step, initialize_body(id, version), id)
            .await?;
        let negotiated = negotiated(&step, &result)?;
        report.protocol_version = Some(negotiated);
        self.initialized(&mut mode, report).await?;
        Ok((mode, result))
    }

    /// The POST endpoint from an `endpoint` event: resolved against the URL, same origin only.
    fn endpoint_uri(&self, step: &str, endpoint: &str) -> Result<Uri, ProbeError> {
        let fault = |m: String| ProbeError::new(step, Fault::Protocol(m));
        let joined = self.url.join(endpoint.trim()).map_err(|e| {
            fault(format!(
                "bad `endpoint` event `{}`: {e}",
                clip(endpoint, 200)
            ))
        })?;
        if joined.origin() != self.url.origin() {
            return Err(fault(format!(
                "the `endpoint` event points to another origin ({}); not followed",
                joined.origin().ascii_serialization()
            )));
        }
        joined
            .as_str()
            .parse()
            .map_err(|e| fault(format!("bad `endpoint` event: {e}")))
    }

    /// Sends a request in the current mode and returns its result.
    async fn call(
        &mut self,
        mode: &mut Mode,
        method: &str,
        params: Json,
    ) -> Result<Json, ProbeError> {
        let id = self.id();
        let step = method.to_string();
        match mode {
            Mode::Modern { version } => {
                let mut params = params;
                if let Some(o) = params.as_object_mut() {
                    o.insert("_meta".into(), Self::modern_meta(version));
                }
                let body = jsonrpc::request(id, method, params);
                let headers = Self::modern_headers(version, method);
                let uri = self.uri.clone();
                self.answer(
                    &step,
                    self.post_request(&step, &uri, &headers, &body, id).await?,
                )
            }
            Mode::Streamable { version, session } => {
                let body = jsonrpc::request(id, method, params);
                let headers = legacy_headers(version, session.as_ref());
                let uri = self.uri.clone();
                self.answer(
                    &step,
                    self.post_request(&step, &uri, &headers, &body, id).await?,
                )
            }
            Mode::Sse { .. } => {
                let body = jsonrpc::request(id, method, params);
                self.call_in(mode, &step, body, id).await
            }
        }
    }

    fn answer(&self, step: &str, reply: Reply) -> Result<Json, ProbeError> {
        match reply {
            Reply::Answer {
                outcome: Ok(result),
                ..
            } => Ok(result),
            Reply::Answer {
                outcome: Err(rpc), ..
            } => Err(ProbeError::new(step, Fault::Rpc(Box::new(rpc)))),
            Reply::Rejected { status, rpc } => Err(ProbeError::new(
                step,
                Fault::Status {
                    status: status.as_u16(),
                    detail: rpc.map(|r| format!(" ({r})")).unwrap_or_default(),
                },
            )),
        }
    }

    /// HTTP+SSE: POST the request to the endpoint, then wait for its response on the stream.
    async fn call_in(
        &self,
        mode: &mut Mode,
        step: &str,
        body: Json,
        id: u64,
    ) -> Result<Json, ProbeError> {
        let Mode::Sse { post, rx, .. } = mode else {
            return Err(ProbeError::new(
                step,
                Fault::Protocol("not an SSE session".into()),
            ));
        };
        let resp = self
            .send(
                step,
                Method::POST,
                post,
                &[(ACCEPT, ACCEPT_BOTH)],
                Some(&body),
            )
            .await?;
        let status = resp.status();
        let (_, b) = resp.into_parts();
        let bytes = tokio::time::timeout_at(self.deadline, Body::new(b, ERROR_BODY_CAP).all())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        if !status.is_success() {
            return Err(ProbeError::new(
                step,
                Fault::Status {
                    status: status.as_u16(),
                    detail: rpc_error_in(&bytes)
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default(),
                },
            ));
        }
        loop {
            let next = self
                .bounded(step, async {
                    rx.recv().await.unwrap_or(Err(Fault::Closed))
                })
                .await?;
            if let Some(outcome) = find_response(&next, id).map_err(|f| ProbeError::new(step, f))? {
                return outcome.map_err(|rpc| ProbeError::new(step, Fault::Rpc(Box::new(rpc))));
            }
        }
    }

    /// Tools (names), resources and prompts (counts) the server declares.
    async fn inventory(
        &mut self,
        mode: &mut Mode,
        caps: &Map<String, Json>,
        report: &mut ProbeReport,
    ) -> Result<(), ProbeError> {
        if caps.contains_key("tools") {
            report.tools = self.list(mode, "tools/list", "tools", report).await?;
        }
        if caps.contains_key("resources") {
            report.resources_count = Some(
                self.list(mode, "resources/list", "resources", report)
                    .await?
                    .len(),
            );
        }
        if caps.contains_key("prompts") {
            report.prompts_count = Some(
                self.list(mode, "prompts/list", "prompts", report)
                    .await?
                    .len(),
            );
        }
        Ok(())
    }

    /// Follows `nextCursor` for at most `max_pages` pages; returns the items' names.
    async fn list(
        &mut self,
        mode: &mut Mode,
        method: &str,
        key: &str,
        report: &mut ProbeReport,
    ) -> Result<Vec<String>, ProbeError> {
        let mut names = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..self.opts.max_pages.max(1) {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let result = self.call(mode, method, params).await?;
            let Some(items) = result.get(key).and_then(Json::as_array) else {
                return Err(ProbeError::new(
                    method,
                    Fault::Protocol(format!("the result has no `{key}` array")),
                ));
            };
            for item in items {
                match item.get("name").and_then(Json::as_str) {
                    Some(n) => names.push(clip(n, 200)),
                    None => {
                        return Err(ProbeError::new(
                            method,
                            Fault::Protocol(format!("an item of `{key}` has no name")),
                        ));
                    }
                }
            }
            match result.get("nextCursor").and_then(Json::as_str) {
                Some(next) if !next.is_empty() => {
                    if !seen.insert(next.to_string()) {
                        report
                            .warnings
                            .push(format!("{method}: the server repeated cursor; stopped"));
                        return Ok(names);
                    }
                    cursor = Some(next.to_string());
                }
                _ => return Ok(names),
            }
        }
        report.warnings.push(format!(
            "{method}: stopped after {} pages; the list is incomplete",
            self.opts.max_pages
        ));
        Ok(names)
    }

    /// Ends a streamable HTTP session with DELETE (best effort, briefly bounded); an SSE stream
    /// is closed by dropping it.
    async fn close(&self, mode: Mode, report: &mut ProbeReport) {
        let Mode::Streamable {
            version,
            session: Some(session),
        } = mode
        else {
            return;
        };
        let step = "DELETE session";
        let headers = legacy_headers(&version, Some(&session));
        let short = Instant::now() + std::time::Duration::from_secs(2);
        let until = short.min(self.deadline + std::time::Duration::from_millis(200));
        let Ok(req) = self.request(Method::DELETE, &self.uri, &headers, None) else {
            return;
        };
        match tokio::time::timeout_at(until, self.http.send(req)).await {
            Ok(Ok(resp)) => {
                let s = resp.status();
                if !(s.is_success() || s == StatusCode::METHOD_NOT_ALLOWED) {
                    report.warnings.push(format!("{step}: HTTP {}", s.as_u16()));
                }
            }
            Ok(Err(f)) => report.warnings.push(format!("{step}: {f}")),
            Err(_) => report.warnings.push(format!("{step}: no answer")),
        }
    }
}

fn initialize_body(id: u64, version: &str) -> Json {
    jsonrpc::request(
        id,
        "initialize",
        json!({
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": client_info(),
        }),
    )
}

/// The version the server chose in its `initialize` result, if we speak it.
fn negotiated(step: &str, result: &Json) -> Result<String, ProbeError> {
    let Some(v) = result.get("protocolVersion").and_then(Json::as_str) else {
        return Err(ProbeError::new(
            step,
            Fault::Protocol("the initialize result has no protocolVersion".into()),
        ));
    };
    if !jsonrpc::legacy_supported(v) {
        return Err(ProbeError::new(
            step,
            Fault::Protocol(format!(
                "the server chose protocol version `{}`, which this probe does not speak ({})",
                clip(v, 40),
                LEGACY_VERSIONS.join(", ")
            )),
        ));
    }
    if !result.get("capabilities").is_some_and(Json::is_object) {
        return Err(ProbeError::new(
            step,
            Fault::Protocol("the initialize result has no capabilities object".into()),
        ));
    }
    Ok(v.to_string())
}

fn legacy_headers(version: &str, session: Option<&HeaderValue>) -> Vec<(HeaderName, HeaderValue)> {
    let mut h = Vec::new();
    if jsonrpc::sends_version_header(version)
        && let Ok(v) = HeaderValue::from_str(version)
    {
        h.push((MCP_PROTOCOL_VERSION, v));
    }
    if let Some(s) = session {
        h.push((MCP_SESSION_ID, s.clone()));
    }
    h
}

fn no_common_version(step: &str, supported: &[String]) -> ProbeError {
    ProbeError::new(
        step,
        Fault::Protocol(format!(
            "no protocol version in common: the server supports {supported:?}, this probe {:?}",
            MODERN_VERSIONS
                .iter()
                .chain(LEGACY_VERSIONS)
                .collect::<Vec<_>>()
        )),
    )
}

/// The JSON-RPC error in an error response's body, if it is one.
fn rpc_error_in(bytes: &[u8]) -> Option<RpcError> {
    let v: Json = serde_json::from_slice(bytes).ok()?;
    match jsonrpc::parse_message(&v).ok()? {
        Message::Response {
            outcome: Err(e), ..
        } => Some(e),
        _ => None,
    }
}

/// The response to request `id` in a JSON body.
fn response_in_json(bytes: &[u8], id: u64) -> Result<Result<Json, RpcError>, Fault> {
    if bytes.is_empty() {
        return Err(Fault::BadJsonRpc(
            "an empty body instead of a response".into(),
        ));
    }
    let v: Json = serde_json::from_slice(bytes).map_err(|e| bad_json(&e, bytes))?;
    find_response(&v, id)?
        .ok_or_else(|| Fault::BadJsonRpc(format!("the body holds no response to request {id}")))
}

/// The response to `id` among the messages of `v`; errors with a null id count (the server
/// could not tell which request failed). Notifications and requests are skipped.
fn find_response(v: &Json, id: u64) -> Result<Option<Result<Json, RpcError>>, Fault> {
    let messages = jsonrpc::parse_messages(v).map_err(Fault::BadJsonRpc)?;
    for m in messages {
        if let Message::Response { id: rid, outcome } = m
            && (id_matches(&rid, id) || (rid.is_null() && outcome.is_err()))
        {
            return Ok(Some(outcome));
        }
    }
    Ok(None)
}

fn bad_json(e: &serde_json::Error, bytes: &[u8]) -> Fault {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
    Fault::BadJson(format!("{e}; body starts `{}`", clip(&head, 80)))
}

fn sse_fault(e: super::sse::SseError) -> Fault {
    match e {
        super::sse::SseError::TooLarge(n) => Fault::TooLarge(n),
        other => Fault::Protocol(other.to_string()),
    }
}

fn wrong_type(media: Option<&str>, expected: &'static str, status: StatusCode) -> Fault {
    match media {
        Some("text/html" | "application/xhtml+xml") => Fault::NotMcp(format!(
            "HTTP {} with an HTML page (a web server, not an MCP endpoint)",
            status.as_u16()
        )),
        Some(m) => Fault::ContentType {
            got: clip(m, 80),
            expected,
        },
        None => Fault::ContentType {
            got: "(none)".into(),
            expected,
        },
    }
}

/// A redirect target for a message: scheme, host, port and path only (a query may hold tokens).
fn describe_location(base: &Url, location: &str) -> String {
    match base.join(location) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_username("");
            let _ = u.set_password(None);
            let other = if u.host_str() != base.host_str()
                || u.port_or_known_default() != base.port_or_known_default()
            {
                " (another host)"
            } else {
                ""
            };
            format!("{}{other}", clip(u.as_str(), 200))
        }
        Err(_) => "(an invalid Location)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:1/mcp").is_ok());
        for bad in [
            "ftp://x/",
            "http://u:p@x/",
            "not a url",
            "file:///etc/passwd",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_in_bodies() {
        let ok = response_in_json(br#"{"jsonrpc":"2.0","id":2,"result":{"a":1}}"#, 2).unwrap();
        assert_eq!(ok, Ok(json!({"a":1})));
        let batch = br#"[{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":"2","result":{}}]"#;
        assert!(response_in_json(batch, 2).unwrap().is_ok());
        assert!(matches!(
            response_in_json(br#"{"jsonrpc":"2.0","id":9,"result":{}}"#, 2),
            Err(Fault::BadJsonRpc(_))
        ));
        assert!(matches!(
            response_in_json(b"<html>", 2),
            Err(Fault::BadJson(_))
        ));
        assert!(matches!(
            response_in_json(b"", 2),
            Err(Fault::BadJsonRpc(_))
        ));
        let err = response_in_json(
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"no session"}}"#,
            2,
        )
        .unwrap();
        assert_eq!(err.unwrap_err().code, -32000);
    }

    #[test]
    fn server_info_both_eras() {
        let legacy = json!({"serverInfo": {"name": "a", "version": "1"}});
        assert_eq!(server_info(&legacy).unwrap().name.as_deref(), Some("a"));
        let modern =
            json!({"_meta": {"io.modelcontextprotocol/serverInfo": {"name": "b", "version": ""}}});
        assert_eq!(server_info(&modern).unwrap().name.as_deref(), Some("b"));
        assert!(server_info(&json!({})).is_none());
    }

    #[test]
    fn redirects_are_described_without_secrets() {
        let base = Url::parse("http://a.example/mcp").unwrap();
        assert_eq!(
            describe_location(&base, "http://evil.example/x?token=1"),
            "http://evil.example/x (another host)"
        );
        assert_eq!(describe_location(&base, "/mcp/"), "http://a.example/mcp/");
    }

    #[test]
    fn negotiation() {
        assert!(
            negotiated(
                "s",
                &json!({"protocolVersion": "2025-06-18", "capabilities": {}})
            )
            .is_ok()
        );
        assert!(
            negotiated(
                "s",
                &json!({"protocolVersion": "2099-01-01", "capabilities": {}})
            )
            .is_err()
        );
        assert!(negotiated("s", &json!({"capabilities": {}})).is_err());
        assert_eq!(legacy_headers("2025-03-26", None).len(), 0);
        let h = legacy_headers("2025-11-25", Some(&HeaderValue::from_static("s")));
        assert_eq!(h.len(), 2);
    }
}
