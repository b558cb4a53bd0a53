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

mod exchange;
mod handshake;

use exchange::*;
use handshake::*;

const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
const ACCEPT_BOTH: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");
const JSON_TYPE: HeaderValue = HeaderValue::from_static("application/json");
/// Cap on an error response's body: only read to look for a JSON-RPC error.
const ERROR_BODY_CAP: usize = 64 * 1024;
/// Total cap on an SSE stream, as a multiple of the body cap (events are capped one by one as
/// well).
pub const SSE_STREAM_FACTOR: usize = 4;
/// Same-origin redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

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
    /// Where the URL moved to (a same-origin redirect), used by the requests that follow.
    moved: std::sync::Mutex<Option<Uri>>,
    /// The redirects followed, for the report's `detection`.
    redirects: std::sync::Mutex<Vec<String>>,
    /// Whether an expired `Mcp-Session-Id` was already replaced (done at most once per probe).
    renewed: bool,
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
        moved: std::sync::Mutex::new(None),
        redirects: std::sync::Mutex::new(Vec::new()),
        renewed: false,
    };
    let outcome = s.drive(report).await;
    report.answered = s.answered.load(std::sync::atomic::Ordering::Relaxed);
    if let Ok(mut r) = s.redirects.lock() {
        report.detection.append(&mut r);
    }
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

    /// Sends a request in the current mode and returns its result. A 404 to a request that
    /// carried an `Mcp-Session-Id` means the server ended the session: the spec has the client
    /// start a new one (a fresh `initialize`, no session id), which is done once per probe; the
    /// request is then sent again in the new session.
    async fn call(
        &mut self,
        mode: &mut Mode,
        method: &str,
        params: Json,
        report: &mut ProbeReport,
    ) -> Result<Json, ProbeError> {
        match self.call_once(mode, method, params.clone()).await {
            Err(e) if session_expired(mode, &e) && !self.renewed => {
                self.renewed = true;
                self.renew(mode, method, report).await?;
                self.call_once(mode, method, params).await
            }
            other => other,
        }
    }

    /// A new streamable HTTP session after the server answered 404 to the old one's id.
    async fn renew(
        &mut self,
        mode: &mut Mode,
        method: &str,
        report: &mut ProbeReport,
    ) -> Result<(), ProbeError> {
        let Mode::Streamable { version, .. } = mode else {
            return Ok(());
        };
        let version = version.clone();
        tracing::debug!(method, "session expired (HTTP 404); starting a new one");
        match self.try_initialize(report, Some(&version)).await? {
            Some((new_mode, _)) => {
                report.warnings.push(format!(
                    "{method}: HTTP 404 to the Mcp-Session-Id (the server ended the session); \
                     started a new session and continued"
                ));
                *mode = new_mode;
                Ok(())
            }
            None => Err(ProbeError::new(
                method,
                Fault::Protocol(format!(
                    "the session expired (HTTP 404) and a new initialize was refused ({})",
                    report.detection.last().map(String::as_str).unwrap_or("")
                )),
            )),
        }
    }

    async fn call_once(
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
        let mut unique = std::collections::HashSet::new();
        let mut duplicates = 0usize;
        for _ in 0..self.opts.max_pages.max(1) {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let result = self.call(mode, method, params, report).await?;
            let Some(items) = result.get(key).and_then(Json::as_array) else {
                return Err(ProbeError::new(
                    method,
                    Fault::Protocol(format!("the result has no `{key}` array")),
                ));
            };
            for item in items {
                match item.get("name").and_then(Json::as_str) {
                    // A name listed twice (a server that ignores the cursor) counts once.
                    Some(n) if !unique.insert(n.to_string()) => duplicates += 1,
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
                        let why = format!("{method}: the server repeated a cursor; stopped");
                        report.warnings.push(why.clone());
                        report.truncated.push(why);
                        return Ok(names);
                    }
                    cursor = Some(next.to_string());
                }
                _ => {
                    if duplicates > 0 {
                        report.warnings.push(format!(
                            "{method}: {duplicates} names listed more than once (counted once)"
                        ));
                    }
                    return Ok(names);
                }
            }
        }
        let why = format!(
            "{method}: stopped after {} pages (--max-pages)",
            self.opts.max_pages
        );
        report.warnings.push(why.clone());
        report.truncated.push(why);
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

/// Whether `e` is the 404 of a request sent with an `Mcp-Session-Id`.
fn session_expired(mode: &Mode, e: &ProbeError) -> bool {
    matches!(
        mode,
        Mode::Streamable {
            session: Some(_),
            ..
        }
    ) && matches!(e.fault, Fault::Status { status: 404, .. })
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
