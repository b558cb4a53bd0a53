//! What the gateway reads of a client's POST (pure: no I/O, fuzzable): is it JSON-RPC at all,
//! which method, which tool or resource, which protocol version in `_meta`, and do the 2026-07-28
//! routing headers (`Mcp-Method`, `Mcp-Name`, `MCP-Protocol-Version`) say the same as the body.
//! Policy and metering use the body's values, never the headers' (a header the body contradicts
//! is refused): an upstream executes what the body says.
//!
//! The message itself is forwarded as received, byte for byte.

use base64::Engine;
use http::{HeaderMap, StatusCode};
use serde_json::{Value as Json, json};

use crate::probe::jsonrpc::{MODERN_VERSIONS, code as mcp};

/// JSON-RPC error codes the gateway answers with. Its own are in -32000..-32019, which the MCP
/// specification leaves to implementations (it keeps -32020..-32099 for itself).
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const HEADER_MISMATCH: i64 = super::mcp::HEADER_MISMATCH;
    /// The upstream could not be reached, did not answer in time, or is not servable here.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32000;
    /// No MCP server or group is served at this path.
    pub const NO_ROUTE: i64 = -32001;
    /// The `Mcp-Session-Id` is not one this gateway issued for this route (or its backend left).
    pub const SESSION_NOT_FOUND: i64 = -32002;
    /// The tool is denied by the server's `tools.allowList`/`denyList`.
    pub const TOOL_DENIED: i64 = -32003;
    /// The server's `tools.rateLimit` is exhausted; see `Retry-After`.
    pub const RATE_LIMITED: i64 = -32004;
    /// A loopback gateway asked with a non-loopback `Host` or `Origin` (DNS rebinding).
    pub const FOREIGN_ORIGIN: i64 = -32005;
    /// The server's circuit breaker is open; see `Retry-After`.
    pub const CIRCUIT_OPEN: i64 = -32006;
    /// Fewer of the group's members are healthy than its `healthPolicy` needs; see `Retry-After`.
    pub const GROUP_UNHEALTHY: i64 = -32007;
    /// An on-demand server did not become ready within its `startupTimeout`, or too many
    /// requests already wait for it; see `Retry-After`.
    pub const NOT_STARTED: i64 = -32008;
}

/// The `_meta` key of a 2026-07-28 request's protocol version.
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// Most messages one batch may hold (batches are a 2025-03-26 feature).
pub const MAX_BATCH: usize = 1000;

/// One JSON-RPC message of the body, as far as the gateway cares.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    /// The message's id: a request's or a response's; `None` for a notification.
    pub id: Option<Json>,
    /// `None`: a response (the client answering a server's request: sampling, elicitation).
    pub method: Option<String>,
    /// `params.name` (tools/call, prompts/get) or `params.uri` (resources/read).
    pub name: Option<String>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]` (2026-07-28 requests).
    pub version: Option<String>,
}

impl Message {
    pub fn is_request(&self) -> bool {
        self.method.is_some() && self.id.is_some()
    }

    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("")
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    One(Message),
    Batch(Vec<Message>),
}

impl Body {
    pub fn messages(&self) -> &[Message] {
        match self {
            Body::One(m) => std::slice::from_ref(m),
            Body::Batch(v) => v,
        }
    }

    /// The id errors about the whole body carry: the single request's, else null.
    pub fn id(&self) -> Json {
        match self {
            Body::One(m) => m.id.clone().unwrap_or(Json::Null),
            Body::Batch(_) => Json::Null,
        }
    }
}

/// A request the gateway answers itself: HTTP status and a JSON-RPC error.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: i64,
    pub message: String,
    /// Boxed: a refusal travels in `Result`s on every path, and a JSON value is large.
    pub id: Box<Json>,
    pub data: Option<Box<Json>>,
}

impl Refusal {
    pub fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
            id: Box::new(Json::Null),
            data: None,
        }
    }

    pub fn with_id(mut self, id: Json) -> Self {
        self.id = Box::new(id);
        self
    }

    /// The JSON-RPC error response body.
    pub fn body(&self) -> Json {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            error["data"] = (**d).clone();
        }
        json!({"jsonrpc": "2.0", "id": *self.id, "error": error})
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, message)
}

fn message(v: &Json) -> Result<Message, Refusal> {
    let Some(o) = v.as_object() else {
        return Err(invalid("a JSON-RPC message must be an object"));
    };
    if o.get("jsonrpc").and_then(Json::as_str) != Some("2.0") {
        return Err(invalid("`jsonrpc` must be \"2.0\""));
    }
    let id = match o.get("id") {
        None => None,
        Some(id @ (Json::String(_) | Json::Number(_))) => Some(id.clone()),
        Some(_) => return Err(invalid("`id` must be a string or a number")),
    };
    let Some(method) = o.get("method") else {
        // A response to a server's request.
        let has = |k| o.contains_key(k);
        if id.is_none() || has("result") == has("error") {
            return Err(invalid(
                "a message without `method` must be a response: `id` and one of `result`/`error`",
            ));
        }
        return Ok(Message {
            id,
            ..Message::default()
        });
    };
    let Some(method) = method.as_str() else {
        return Err(invalid("`method` must be a string"));
    };
    let params = o.get("params");
    if params.is_some_and(|p| !p.is_object() && !p.is_array()) {
        return Err(invalid("`params` must be an object or an array"));
    }
    let field = |k: &str| params.and_then(|p| p.get(k)).and_then(Json::as_str);
    let name = match method {
        "tools/call" | "prompts/get" => field("name"),
        "resources/read" => field("uri"),
        _ => None,
    };
    let version = params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_VERSION))
        .and_then(Json::as_str);
    Ok(Message {
        id,
        method: Some(method.to_string()),
        name: name.map(str::to_string),
        version: version.map(str::to_string),
    })
}

/// Parses a POST body: one JSON-RPC message, or a batch.
pub fn parse(bytes: &[u8]) -> Result<Body, Refusal> {
    let v: Json = serde_json::from_slice(bytes).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            code::PARSE_ERROR,
            format!("the body is not JSON: {e}"),
        )
    })?;
    match &v {
        Json::Array(items) => {
            if items.is_empty() || items.len() > MAX_BATCH {
                return Err(invalid(format!(
                    "a batch must hold 1 to {MAX_BATCH} messages"
                )));
            }
            items
                .iter()
                .map(message)
                .collect::<Result<Vec<_>, _>>()
                .map(Body::Batch)
        }
        one => message(one).map(Body::One).map_err(|r| {
            let id = one.get("id").filter(|i| i.is_string() || i.is_number());
            r.with_id(id.cloned().unwrap_or(Json::Null))
        }),
    }
}

fn mismatch(id: &Json, message: String) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, code::HEADER_MISMATCH, message).with_id(id.clone())
}

/// A header's value as text; `Err` when it is not visible ASCII (and space/tab) or repeated.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, String> {
    let mut all = headers.get_all(name).iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(format!("{name} is given more than once"));
    }
    v.to_str()
        .map(Some)
        .map_err(|_| format!("{name} holds characters that are not visible ASCII"))
}

/// A value in the Base64 sentinel form `=?base64?...?=`, decoded; other values as they are.
fn decoded(v: &str) -> Result<String, String> {
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| "Mcp-Name holds a malformed =?base64?...?= value".to_string()),
        None => Ok(v.to_string()),
    }
}

/// Checks the routing headers against the body (2026-07-28, "Server Validation"): a header that
/// is present must match, and a modern request (one whose version, in the header or `_meta`, is a
/// 2026-07-28-era one) must carry `Mcp-Method`, and `Mcp-Name` where the method names something.
pub fn check_headers(body: &Body, headers: &HeaderMap) -> Result<(), Refusal> {
    let id = body.id();
    let get = |n: &str| header(headers, n).map_err(|e| mismatch(&id, e));
    let method_h = get("mcp-method")?;
    let name_h = get("mcp-name")?;
    let version_h = get("mcp-protocol-version")?;
    let m = match body {
        Body::One(m) => m,
        Body::Batch(_) => {
            if method_h.is_some() || name_h.is_some() {
                return Err(mismatch(
                    &id,
                    "Mcp-Method/Mcp-Name name one message; the body is a batch".into(),
                ));
            }
            return Ok(());
        }
    };
    if let (Some(h), Some(b)) = (version_h, m.version.as_deref()) {
        if h != b {
            return Err(mismatch(
                &id,
                format!("MCP-Protocol-Version header `{h}` does not match the body's `{b}`"),
            ));
        }
    }
    let modern = m
        .version
        .as_deref()
        .or(version_h)
        .is_some_and(|v| MODERN_VERSIONS.contains(&v));
    match (method_h, m.method.as_deref()) {
        (Some(h), Some(b)) if h != b => {
            return Err(mismatch(
                &id,
                format!("Mcp-Method header `{h}` does not match the body's method `{b}`"),
            ));
        }
        (Some(_), None) => {
            return Err(mismatch(
                &id,
                "Mcp-Method is given, but the body is a response".into(),
            ));
        }
        (None, Some(_)) if modern => {
            return Err(mismatch(
                &id,
                "a 2026-07-28 request must carry Mcp-Method".into(),
            ));
        }
        _ => {}
    }
    match (name_h, m.name.as_deref()) {
        (Some(h), b) => {
            let h = decoded(h).map_err(|e| mismatch(&id, e))?;
            if Some(h.as_str()) != b {
                return Err(mismatch(
                    &id,
                    format!(
                        "Mcp-Name header does not match the body's {}",
                        if m.method() == "resources/read" {
                            "params.uri"
                        } else {
                            "params.name"
                        }
                    ),
                ));
            }
        }
        (None, Some(_)) if modern => {
            return Err(mismatch(
                &id,
                format!("a 2026-07-28 {} request must carry Mcp-Name", m.method()),
            ));
        }
        _ => {}
    }
    Ok(())
}

/// Whether a host name (no port; IPv6 with or without brackets) is this machine's loopback.
fn loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// DNS-rebinding protection for a gateway listening on loopback (the spec's "servers MUST
/// validate the Origin header"): a browser tricked into calling a local port sends the
/// attacker's name in `Host` and `Origin`. A missing `Origin` is a non-browser client and fine;
/// `Host` is always sent by HTTP/1.1 clients and must name loopback.
pub fn check_local_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let refuse = || {
        Refusal::new(
            StatusCode::FORBIDDEN,
            code::FOREIGN_ORIGIN,
            "this gateway listens on loopback and serves only loopback Host and Origin names",
        )
    };
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok());
    if !host.is_some_and(|a| loopback_host(a.host())) {
        return Err(refuse());
    }
    if let Some(o) = headers.get(http::header::ORIGIN) {
        let ok = o
            .to_str()
            .ok()
            .and_then(|o| url::Url::parse(o).ok())
            .is_some_and(|u| u.host_str().is_some_and(loopback_host));
        if !ok {
            return Err(refuse());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn bodies_are_classified_or_refused_with_the_right_code() {
        let b =
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#)
                .unwrap();
        assert_eq!(b.messages()[0].name.as_deref(), Some("echo"));
        assert!(b.messages()[0].is_request());
        assert_eq!(parse(b"{").unwrap_err().code, code::PARSE_ERROR);
        for bad in [
            &br#"[]"#[..],
            br#"42"#,
            br#"{"id":1,"method":"x"}"#,
            br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
            br#"{"jsonrpc":"2.0","method":"x","params":3}"#,
        ] {
            let r = parse(bad).unwrap_err();
            assert_eq!(
                r.code,
                code::INVALID_REQUEST,
                "{}",
                String::from_utf8_lossy(bad)
            );
            assert_eq!(r.status, StatusCode::BAD_REQUEST);
        }
        let r = parse(br#"{"jsonrpc":"1","id":"a","method":"x"}"#).unwrap_err();
        assert_eq!(*r.id, json!("a"));
        let resp = parse(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#).unwrap();
        assert_eq!(resp.messages()[0].method, None);
        let batch = parse(br#"[{"jsonrpc":"2.0","method":"notifications/initialized"}]"#).unwrap();
        assert!(matches!(batch, Body::Batch(ref v) if v.len() == 1));
    }

    /// Mutated bodies and headers (bytes flipped, cut, duplicated) never panic the parser or
    /// the header checks; a fixed seed keeps it reproducible. (A fuzz target comes later.)
    #[test]
    fn mutated_input_never_panics() {
        let seeds: [&[u8]; 4] = [
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
            br#"[{"jsonrpc":"2.0","id":"a","method":"resources/read","params":{"uri":"file:///x"}},{"jsonrpc":"2.0","id":2,"result":{}}]"#,
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            br#"{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"m"}}"#,
        ];
        let mut rng = fastrand::Rng::with_seed(17);
        let hs = headers(&[
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?ZWNobw==?="),
            ("mcp-protocol-version", "2026-07-28"),
        ]);
        for i in 0..20_000 {
            let mut b = seeds[i % seeds.len()].to_vec();
            for _ in 0..rng.usize(1..6) {
                let at = rng.usize(..b.len().max(1));
                match rng.u8(..4) {
                    0 if !b.is_empty() => {
                        let last = b.len() - 1;
                        b[at.min(last)] = rng.u8(..);
                    }
                    1 => b.truncate(at),
                    2 => {
                        let c = b"{}[]\",:\\"[rng.usize(..8)];
                        b.insert(at.min(b.len()), c);
                    }
                    _ => {
                        let tail = b[at.min(b.len())..].to_vec();
                        b.extend_from_slice(&tail);
                    }
                }
            }
            if let Ok(body) = parse(&b) {
                let _ = check_headers(&body, &hs);
                let _ = check_headers(&body, &HeaderMap::new());
            }
        }
    }

    #[test]
    fn a_loopback_gateway_serves_loopback_names_only() {
        for ok in [
            vec![("host", "127.0.0.1:8080")],
            vec![("host", "localhost")],
            vec![("host", "[::1]:80"), ("origin", "http://localhost:3000")],
            vec![("host", "127.0.0.2:1"), ("origin", "http://[::1]:9")],
        ] {
            assert_eq!(check_local_origin(&headers(&ok)), Ok(()), "{ok:?}");
        }
        for bad in [
            vec![],
            vec![("host", "evil.example.com")],
            vec![("host", "127.0.0.1.evil.example.com:80")],
            vec![("host", "localhost"), ("origin", "http://evil.example.com")],
            vec![("host", "localhost"), ("origin", "null")],
        ] {
            let r = check_local_origin(&headers(&bad)).unwrap_err();
            assert_eq!(
                (r.status, r.code),
                (StatusCode::FORBIDDEN, code::FOREIGN_ORIGIN)
            );
        }
    }

    #[test]
    fn routing_headers_must_match_the_body() {
        let call = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#).unwrap();
        let ok = headers(&[
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
            ("mcp-protocol-version", "2026-07-28"),
        ]);
        assert_eq!(check_headers(&call, &ok), Ok(()));
        let b64 = headers(&[
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?ZWNobw==?="),
            ("mcp-protocol-version", "2026-07-28"),
        ]);
        assert_eq!(check_headers(&call, &b64), Ok(()));
        for bad in [
            vec![("mcp-method", "tools/list"), ("mcp-name", "echo")],
            vec![("mcp-method", "tools/call"), ("mcp-name", "rm")],
            vec![("mcp-method", "tools/call")],
            vec![("mcp-name", "echo")],
            vec![("mcp-method", "tools/call"), ("mcp-name", "=?base64?!!?=")],
            vec![
                ("mcp-method", "tools/call"),
                ("mcp-name", "echo"),
                ("mcp-protocol-version", "2025-11-25"),
            ],
            vec![
                ("mcp-method", "tools/call"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "echo"),
            ],
        ] {
            let r = check_headers(&call, &headers(&bad)).unwrap_err();
            assert_eq!(
                (r.status, r.code),
                (StatusCode::BAD_REQUEST, code::HEADER_MISMATCH),
                "{bad:?}"
            );
            assert_eq!(*r.id, json!(1));
        }
        // an initialize-era request needs no routing headers, but those it has must match
        let legacy = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert_eq!(
            check_headers(&legacy, &headers(&[("mcp-protocol-version", "2025-11-25")])),
            Ok(())
        );
        assert!(check_headers(&legacy, &headers(&[("mcp-method", "tools/call")])).is_err());
        // a modern version in the header alone makes the request modern
        assert!(
            check_headers(&legacy, &headers(&[("mcp-protocol-version", "2026-07-28")])).is_err()
        );
    }
}
