//! The gateway's reading of a client's POST: `request::parse` of the body, `check_headers` of the
//! routing headers against it, and `check_local_origin` of `Host`/`Origin`, on arbitrary bytes.
//! Nothing may panic, and every refusal must be a well-formed client error: a 4xx status, a
//! JSON-RPC error body whose id is a string, a number or null. When the checks pass, a routing
//! header that is present says what the body says (the gateway meters the body, so a header it
//! let through must never disagree).
//!
//! Input: header lines, a blank line, then the body. A header line starting with a digit `0`-`5`
//! names one of the headers the gateway reads (so mutations reach them without spelling names);
//! any other line is `name:value`. Lines that are not valid header names or values are skipped,
//! as the HTTP server would never deliver them.
#![no_main]

use hangar::gateway::request::{self, Body, Refusal};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::Value as Json;

const NAMES: [&str; 6] = [
    "mcp-method",
    "mcp-name",
    "mcp-protocol-version",
    "host",
    "origin",
    "mcp-session-id",
];

fn headers(section: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in section.split(|&b| b == b'\n').take(32) {
        let (name, value) = match line.first() {
            Some(d @ b'0'..=b'5') => (NAMES[usize::from(d - b'0')].as_bytes(), &line[1..]),
            _ => match line.iter().position(|&b| b == b':') {
                Some(i) => (&line[..i], &line[i + 1..]),
                None => continue,
            },
        };
        let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) else {
            continue;
        };
        h.append(n, v);
    }
    h
}

fn well_formed(r: &Refusal) {
    assert!(r.status.is_client_error(), "refused with {}", r.status);
    let b = r.body();
    assert_eq!(b["jsonrpc"], "2.0");
    assert!(matches!(*r.id, Json::Null | Json::String(_) | Json::Number(_)), "{:?}", r.id);
    assert!(b["error"]["code"].is_i64());
    // The body serialises (it is what the client receives).
    assert!(serde_json::to_vec(&b).is_ok());
}

fuzz_target!(|data: &[u8]| {
    let (section, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&b""[..], data),
    };
    let hs = headers(section);
    if let Err(r) = request::check_local_origin(&hs) {
        well_formed(&r);
    }
    let parsed = match request::parse(body) {
        Ok(b) => b,
        Err(r) => {
            well_formed(&r);
            return;
        }
    };
    if let Body::Batch(v) = &parsed {
        assert!(!v.is_empty() && v.len() <= request::MAX_BATCH);
    }
    let _ = hangar::gateway::balance::repeatable(&parsed);
    match request::check_headers(&parsed, &hs) {
        Err(r) => well_formed(&r),
        Ok(()) => {
            if let Body::One(m) = &parsed {
                if let Some(h) = hs.get("mcp-method").and_then(|v| v.to_str().ok()) {
                    assert_eq!(Some(h), m.method.as_deref(), "Mcp-Method let through");
                }
                if let Some(h) = hs.get("mcp-protocol-version").and_then(|v| v.to_str().ok()) {
                    if let Some(b) = m.version.as_deref() {
                        assert_eq!(h, b, "MCP-Protocol-Version let through");
                    }
                }
                if hs.contains_key("mcp-name") {
                    assert!(m.name.is_some(), "Mcp-Name let through for a body naming nothing");
                }
            }
        }
    }
});
