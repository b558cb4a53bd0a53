//! Establishing a session: `server/discover` (2026-07-28), `initialize` with version negotiation, or the legacy HTTP+SSE transport.

use super::*;

impl Session<'_> {
    pub(super) async fn establish(
        &mut self,
        report: &mut ProbeReport,
    ) -> Result<(Mode, Json), ProbeError> {
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

    pub(super) fn modern_meta(version: &str) -> Json {
        json!({
            "io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientInfo": client_info(),
            "io.modelcontextprotocol/clientCapabilities": {},
        })
    }

    pub(super) fn modern_headers(version: &str, method: &str) -> Vec<(HeaderName, HeaderValue)> {
        let mut h = Vec::new();
        if let Ok(v) = HeaderValue::from_str(version) {
            h.push((MCP_PROTOCOL_VERSION, v));
        }
        if let Ok(m) = HeaderValue::from_str(method) {
            h.push((MCP_METHOD, m));
        }
        h
    }

    pub(super) async fn try_modern(
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
                    // A legacy server may answer an era-ambiguous method with a catch-all
                    // result (the conformance suite's scenario servers answer `{}`): without a
                    // supportedVersions key it is no DiscoverResult, so not a modern server.
                    if result.get("supportedVersions").is_none() {
                        report.detection.push(format!(
                            "{step}: a result without supportedVersions (not a DiscoverResult), so not a 2026-07-28 server"
                        ));
                        return Ok(ModernOutcome::Legacy(None));
                    }
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
    pub(super) async fn try_initialize(
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
    pub(super) async fn initialized(
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

    pub(super) async fn open_sse(
        &mut self,
        report: &mut ProbeReport,
    ) -> Result<(Mode, Json), ProbeError> {
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
            let forward = |events: Vec<crate::probe::sse::SseEvent>| {
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
    pub(super) fn endpoint_uri(&self, step: &str, endpoint: &str) -> Result<Uri, ProbeError> {
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
}

pub(super) fn initialize_body(id: u64, version: &str) -> Json {
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
pub(super) fn negotiated(step: &str, result: &Json) -> Result<String, ProbeError> {
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

pub(super) fn legacy_headers(
    version: &str,
    session: Option<&HeaderValue>,
) -> Vec<(HeaderName, HeaderValue)> {
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

pub(super) fn no_common_version(step: &str, supported: &[String]) -> ProbeError {
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
