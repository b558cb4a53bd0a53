//! What can go wrong during a probe, precisely enough to tell a user (and the controller) why.

use std::error::Error as _;

use thiserror::Error;

use super::jsonrpc::RpcError;

/// A failed step: which step (`POST initialize`, `GET (HTTP+SSE)`, ...) and what went wrong.
#[derive(Clone, Debug, Error)]
#[error("{step}: {fault}")]
pub struct ProbeError {
    pub step: String,
    pub fault: Fault,
}

impl ProbeError {
    pub fn new(step: impl Into<String>, fault: Fault) -> Self {
        ProbeError {
            step: step.into(),
            fault,
        }
    }
}

#[derive(Clone, Debug, Error)]
pub enum Fault {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("connection refused")]
    Refused,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS failure: {0}")]
    Tls(String),
    #[error("no complete answer within {0} ms (timeout)")]
    Timeout(u128),
    #[error("HTTP {status}: authentication required{}", note(.www_authenticate))]
    Auth {
        status: u16,
        www_authenticate: Option<String>,
    },
    #[error("HTTP {status} redirect to {location} (redirects are not followed)")]
    Redirect { status: u16, location: String },
    #[error("response larger than {0} bytes (cut off)")]
    TooLarge(usize),
    #[error(
        "the response headers are too large (over the ~400 KiB an HTTP/1.1 client reads; a proxy or the server sends oversized headers)"
    )]
    HeadersTooLarge,
    #[error("connection closed before the response was complete")]
    Closed,
    #[error("unexpected content type `{got}` (expected {expected})")]
    ContentType { got: String, expected: &'static str },
    #[error("not an MCP endpoint: {0}")]
    NotMcp(String),
    #[error("the peer does not speak HTTP: {0}")]
    NotHttp(String),
    #[error("invalid JSON: {0}")]
    BadJson(String),
    #[error("invalid JSON-RPC: {0}")]
    BadJsonRpc(String),
    #[error("HTTP {status}{detail}")]
    Status { status: u16, detail: String },
    #[error("{0}")]
    Rpc(Box<RpcError>),
    #[error("{0}")]
    Protocol(String),
    #[error("HTTP client: {0}")]
    Http(String),
}

fn note(w: &Option<String>) -> String {
    match w {
        Some(w) => format!(" (WWW-Authenticate: {w})"),
        None => String::new(),
    }
}

impl Fault {
    /// A stable machine-readable name (the report's `errorKind`).
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::InvalidUrl(_) => "invalid-url",
            Fault::Refused => "connection-refused",
            Fault::Connect(_) => "connect",
            Fault::Tls(_) => "tls",
            Fault::Timeout(_) => "timeout",
            Fault::Auth { .. } => "auth-required",
            Fault::Redirect { .. } => "redirect",
            Fault::TooLarge(_) => "too-large",
            Fault::HeadersTooLarge => "headers-too-large",
            Fault::Closed => "closed",
            Fault::ContentType { .. } => "content-type",
            Fault::NotMcp(_) => "not-mcp",
            Fault::NotHttp(_) => "not-http",
            Fault::BadJson(_) => "bad-json",
            Fault::BadJsonRpc(_) => "bad-jsonrpc",
            Fault::Status { .. } => "http-status",
            Fault::Rpc(_) => "jsonrpc-error",
            Fault::Protocol(_) => "protocol",
            Fault::Http(_) => "http",
        }
    }

    /// Faults that mean the server could not be talked to at all.
    pub fn unreachable(&self) -> bool {
        matches!(
            self,
            Fault::Refused | Fault::Connect(_) | Fault::Tls(_) | Fault::Timeout(_)
        )
    }
}

/// Classifies an error from the HTTP stack by walking its chain: TLS anywhere wins, then I/O
/// kinds (refused, reset), then hyper's own kinds. The text is the chain's messages, which carry
/// no header values.
pub fn classify(e: &(dyn std::error::Error + 'static)) -> Fault {
    let links = chain(e);
    let text = chain_text(&links);
    if links
        .iter()
        .any(|l| l.downcast_ref::<rustls::Error>().is_some())
    {
        return Fault::Tls(text);
    }
    // Bytes that are not an HTTP response: a parse error, or (when the peer speaks first, like
    // SSH or SMTP) data on an idle connection, which hyper reports as an unexpected message
    // wrapped in a cancellation.
    for l in &links {
        if let Some(h) = l.downcast_ref::<hyper::Error>()
            && h.is_parse_too_large()
        {
            return Fault::HeadersTooLarge;
        }
    }
    for l in &links {
        if let Some(h) = l.downcast_ref::<hyper::Error>()
            && (h.is_parse()
                || h.is_parse_status()
                || (h.source().is_none() && h.to_string().contains("unexpected message")))
        {
            return Fault::NotHttp(text);
        }
    }
    for l in &links {
        if let Some(io) = l.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused => return Fault::Refused,
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    return Fault::Closed;
                }
                _ => {}
            }
        }
        if let Some(h) = l.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return Fault::Closed;
            }
        }
    }
    if let Some(c) = e.downcast_ref::<hyper_util::client::legacy::Error>()
        && c.is_connect()
    {
        return Fault::Connect(text);
    }
    Fault::Http(text)
}

/// The error and its causes. `io::Error::source` skips the error an `io::Error` wraps (it
/// returns the wrapped error's source), and TLS errors come wrapped twice, so descend through
/// `get_ref` as well.
fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        if out.len() > 16 {
            break;
        }
        out.push(err);
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    out
}

fn chain_text(links: &[&(dyn std::error::Error + 'static)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for l in links {
        let s = l.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}
