//! The health-check seam. Today a remote server is healthy when its endpoint accepts a TCP
//! connection; the MCP protocol probe replaces [`TcpProber`] behind the same trait.

use std::time::Duration;

use futures::future::BoxFuture;

/// The outcome of one health check, as the controller's state machine reads it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Check {
    pub ok: bool,
    pub message: String,
    pub tools: Option<Vec<String>>,
    pub validation: Option<crate::api::server::ValidationStatus>,
    /// What the check found wrong, as seed 002 (vitorbari's validator) counts it in
    /// `mcpserver_validation_issues_total{level,code}` and `mcp_validator_errors_total`.
    pub issues: Vec<Issue>,
}

/// One finding of a check: its level (`error`, `warning`) and an upper-case code
/// (`AUTH_REQUIRED`, `MISSING_CAPABILITY`, `TIMEOUT`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Issue {
    pub level: &'static str,
    pub code: String,
}

impl Issue {
    pub fn error(code: impl Into<String>) -> Issue {
        Issue {
            level: "error",
            code: code.into(),
        }
    }

    /// The code of a probe fault kind (`auth-required` -> `AUTH_REQUIRED`): seed 002's codes
    /// where the fault is the same one, in its spelling otherwise.
    pub fn of_fault(kind: &str) -> Issue {
        Issue::error(kind.to_ascii_uppercase().replace('-', "_"))
    }
}

/// What to check: the server's URL, how long a check may take, and headers to send (credentials
/// from a Secret: marked sensitive, never logged or shown in a message).
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub timeout: Duration,
    pub headers: http::HeaderMap,
}

pub trait Prober: Send + Sync {
    fn check<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Check>;
}

/// Reachability: a TCP connection to the endpoint's host and port within the timeout.
pub struct TcpProber;

impl Prober for TcpProber {
    fn check<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Check> {
        Box::pin(async move {
            let url = match url::Url::parse(&target.url) {
                Ok(u) => u,
                Err(e) => return fail(format!("bad endpoint {}: {e}", target.url)),
            };
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                return fail(format!("endpoint {} has no host or port", target.url));
            };
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            match tokio::time::timeout(
                target.timeout,
                tokio::net::TcpStream::connect((host.as_str(), port)),
            )
            .await
            {
                Ok(Ok(_)) => Check {
                    ok: true,
                    message: format!("{host}:{port} reachable"),
                    ..Check::default()
                },
                Ok(Err(e)) => fail(format!("{host}:{port}: {e}")),
                Err(_) => fail(format!(
                    "{host}:{port}: no connection within {}ms",
                    target.timeout.as_millis()
                )),
            }
        })
    }
}

fn fail(message: String) -> Check {
    Check {
        ok: false,
        message,
        ..Check::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reachable_and_refused() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let t = Target {
            url: format!("http://127.0.0.1:{port}/mcp"),
            timeout: Duration::from_secs(2),
            headers: http::HeaderMap::new(),
        };
        assert!(TcpProber.check(&t).await.ok);
        drop(l);
        let c = TcpProber.check(&t).await;
        assert!(!c.ok, "{c:?}");
        let bad = Target {
            url: "not a url".into(),
            timeout: Duration::from_secs(1),
            headers: http::HeaderMap::new(),
        };
        assert!(TcpProber.check(&bad).await.message.contains("bad endpoint"));
    }
}
