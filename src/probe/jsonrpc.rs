//! JSON-RPC 2.0 messages as MCP uses them, and protocol-version selection (pure).

use serde_json::{Value as Json, json};

/// The JSON-RPC error codes the probe recognises.
pub mod code {
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    /// 2026-07-28: HTTP headers do not match the body, or are missing.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28: the server requires a client capability that was not declared.
    pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
    /// 2026-07-28: `data.supported` lists the versions the server speaks.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// Modern (per-request metadata, stateless) versions we speak, most preferred first.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];
/// Legacy (`initialize` handshake) versions we speak, most preferred first.
pub const LEGACY_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Json>,
}

impl RpcError {
    /// An error only a modern (2026-07-28+) server sends: it identifies the server's era, so a
    /// dual-era client retries or corrects instead of falling back to `initialize`.
    pub fn is_modern(&self) -> bool {
        matches!(
            self.code,
            code::HEADER_MISMATCH
                | code::MISSING_REQUIRED_CLIENT_CAPABILITY
                | code::UNSUPPORTED_PROTOCOL_VERSION
        )
    }

    /// The versions an error to `initialize` lists as supported: `data.supported` of an
    /// UnsupportedProtocolVersionError (-32022), or of an invalid-params error (-32602) that
    /// carries the same list, as some SDKs send.
    pub fn initialize_supported_versions(&self) -> Option<Vec<String>> {
        if self.code != code::UNSUPPORTED_PROTOCOL_VERSION && self.code != code::INVALID_PARAMS {
            return None;
        }
        strings(self.data.as_ref()?.get("supported")?)
    }

    /// `data.supported` of an UnsupportedProtocolVersionError.
    pub fn supported_versions(&self) -> Option<Vec<String>> {
        if self.code != code::UNSUPPORTED_PROTOCOL_VERSION {
            return None;
        }
        strings(self.data.as_ref()?.get("supported")?)
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "JSON-RPC error {}: {}",
            self.code,
            clip(&self.message, 300)
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A response; `id` is `Null` for errors the server could not attribute to a request.
    Response {
        id: Json,
        outcome: Result<Json, RpcError>,
    },
    Request {
        id: Json,
        method: String,
    },
    Notification {
        method: String,
    },
}

/// Parses one JSON-RPC message (not a batch).
pub fn parse_message(v: &Json) -> Result<Message, String> {
    let Some(o) = v.as_object() else {
        return Err(format!("expected a JSON object, got {}", kind(v)));
    };
    match o.get("jsonrpc") {
        Some(Json::String(s)) if s == "2.0" => {}
        Some(other) => return Err(format!("`jsonrpc` is {other}, not \"2.0\"")),
        None => return Err("no `jsonrpc` member".into()),
    }
    if let Some(method) = o.get("method") {
        let Some(method) = method.as_str() else {
            return Err("`method` is not a string".into());
        };
        return Ok(match o.get("id") {
            Some(id) if !id.is_null() => Message::Request {
                id: id.clone(),
                method: method.to_string(),
            },
            _ => Message::Notification {
                method: method.to_string(),
            },
        });
    }
    let id = match o.get("id") {
        Some(id @ (Json::String(_) | Json::Number(_) | Json::Null)) => id.clone(),
        Some(other) => return Err(format!("`id` is {}, not a string or number", kind(other))),
        None => return Err("a response without `id`".into()),
    };
    let outcome = match (o.get("result"), o.get("error")) {
        (Some(r), None) => Ok(r.clone()),
        (None, Some(e)) => Err(parse_error(e)?),
        (Some(_), Some(_)) => return Err("both `result` and `error`".into()),
        (None, None) => return Err("neither `result` nor `error`".into()),
    };
    Ok(Message::Response { id, outcome })
}

/// Parses a body: one message or a batch (an array, allowed by 2025-03-26).
pub fn parse_messages(v: &Json) -> Result<Vec<Message>, String> {
    match v {
        Json::Array(items) if items.is_empty() => Err("an empty batch".into()),
        Json::Array(items) => items.iter().map(parse_message).collect(),
        _ => Ok(vec![parse_message(v)?]),
    }
}

fn parse_error(e: &Json) -> Result<RpcError, String> {
    let code = e
        .get("code")
        .and_then(Json::as_i64)
        .ok_or("`error.code` is not an integer")?;
    let message = e
        .get("message")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(RpcError {
        code,
        message,
        data: e.get("data").cloned(),
    })
}

/// Whether a response `id` answers request `want`.
pub fn id_matches(id: &Json, want: u64) -> bool {
    match id {
        Json::Number(n) => n.as_u64() == Some(want),
        Json::String(s) => s.parse::<u64>().ok() == Some(want),
        _ => false,
    }
}

pub fn request(id: u64, method: &str, params: Json) -> Json {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

pub fn notification(method: &str) -> Json {
    json!({"jsonrpc": "2.0", "method": method})
}

/// What to speak, given the versions a server lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pick {
    Modern(String),
    Legacy(String),
}

/// The most preferred version both sides speak: modern first, then legacy.
pub fn pick_version(supported: &[String]) -> Option<Pick> {
    let has = |v: &&&str| supported.iter().any(|s| s == **v);
    if let Some(v) = MODERN_VERSIONS.iter().find(has) {
        return Some(Pick::Modern((*v).to_string()));
    }
    LEGACY_VERSIONS
        .iter()
        .find(has)
        .map(|v| Pick::Legacy((*v).to_string()))
}

/// A version the server chose in its `initialize` result that we can speak.
pub fn legacy_supported(version: &str) -> bool {
    LEGACY_VERSIONS.contains(&version)
}

/// Whether a legacy version carries the `MCP-Protocol-Version` header (2025-06-18 onwards).
pub fn sends_version_header(version: &str) -> bool {
    version >= "2025-06-18"
}

fn strings(v: &Json) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|s| s.as_str().map(str::to_string))
        .collect()
}

pub fn string_list(v: Option<&Json>) -> Option<Vec<String>> {
    strings(v?)
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// At most `max` characters of `s`, marked when cut; for messages from the network.
pub fn clip(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_requests_notifications() {
        let r = parse_message(&json!({"jsonrpc":"2.0","id":1,"result":{"x":1}})).unwrap();
        assert_eq!(
            r,
            Message::Response {
                id: json!(1),
                outcome: Ok(json!({"x":1}))
            }
        );
        let e = parse_message(&json!({"error":{"code":-32000,"message":"Bad Request: Server not initialized"},"id":null,"jsonrpc":"2.0"})).unwrap();
        let Message::Response {
            id,
            outcome: Err(err),
        } = e
        else {
            panic!()
        };
        assert!(id.is_null());
        assert_eq!(err.code, -32000);
        assert!(!err.is_modern());
        assert!(matches!(
            parse_message(&json!({"jsonrpc":"2.0","method":"notifications/message","params":{}})),
            Ok(Message::Notification { .. })
        ));
        assert!(matches!(
            parse_message(&json!({"jsonrpc":"2.0","id":"a","method":"ping"})),
            Ok(Message::Request { .. })
        ));
    }

    #[test]
    fn malformed() {
        for bad in [
            json!([1, 2]),
            json!("x"),
            json!({"id":1,"result":{}}),
            json!({"jsonrpc":"1.0","id":1,"result":{}}),
            json!({"jsonrpc":"2.0","result":{}}),
            json!({"jsonrpc":"2.0","id":1}),
            json!({"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1}}),
            json!({"jsonrpc":"2.0","id":{},"result":1}),
            json!({"jsonrpc":"2.0","id":1,"error":{"message":"no code"}}),
        ] {
            assert!(parse_messages(&bad).is_err(), "{bad}");
        }
        assert_eq!(parse_messages(&json!([])), Err("an empty batch".into()));
    }

    #[test]
    fn modern_errors_and_supported_versions() {
        let e = parse_message(&json!({"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"Unsupported protocol version","data":{"supported":["2026-07-28","2025-11-25"],"requested":"1900-01-01"}}})).unwrap();
        let Message::Response {
            outcome: Err(err), ..
        } = e
        else {
            panic!()
        };
        assert!(err.is_modern());
        assert_eq!(
            err.supported_versions().unwrap(),
            vec!["2026-07-28".to_string(), "2025-11-25".to_string()]
        );
    }

    #[test]
    fn version_selection() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            pick_version(&v(&["2025-11-25", "2026-07-28"])),
            Some(Pick::Modern("2026-07-28".into()))
        );
        assert_eq!(
            pick_version(&v(&["2025-06-18", "2025-03-26"])),
            Some(Pick::Legacy("2025-06-18".into()))
        );
        assert_eq!(pick_version(&v(&["2099-01-01"])), None);
        assert!(legacy_supported("2024-11-05"));
        assert!(!legacy_supported("2026-07-28"));
        assert!(sends_version_header("2025-11-25"));
        assert!(!sends_version_header("2025-03-26"));
        assert!(id_matches(&json!(3), 3));
        assert!(id_matches(&json!("3"), 3));
        assert!(!id_matches(&json!(null), 3));
        assert_eq!(clip("ab\ncd", 3), "ab …");
    }
}
