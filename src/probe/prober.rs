//! [`McpProber`]: the MCP protocol probe behind the controller's health-check seam.

use futures::future::BoxFuture;

use super::health::{Check, Issue, Prober, Target};
use super::{Probe, ProbeOptions, ProbeReport, TransportChoice, Verdict};
use crate::api::server::{ServerInfo, ValidationStatus};

/// Checks a server by probing it as an MCP client. A server is healthy when it is compliant.
pub struct McpProber {
    probe: Probe,
    pub transport: TransportChoice,
    /// Extra headers (e.g. `Authorization` from a Secret); never logged.
    pub headers: http::HeaderMap,
}

impl McpProber {
    pub fn new() -> Result<Self, String> {
        Ok(McpProber {
            probe: Probe::new()?,
            transport: TransportChoice::Auto,
            headers: http::HeaderMap::new(),
        })
    }
}

impl Prober for McpProber {
    fn check<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Check> {
        Box::pin(async move {
            let mut opts = ProbeOptions::new(target.url.clone(), target.timeout);
            opts.transport = self.transport;
            opts.headers = self.headers.clone();
            for (k, v) in &target.headers {
                opts.headers.insert(k.clone(), v.clone());
            }
            check_of(&self.probe.run(&opts).await)
        })
    }
}

/// The controller's view of a probe report.
pub fn check_of(r: &ProbeReport) -> Check {
    let message = r.summary();
    Check {
        ok: r.verdict == Verdict::Compliant,
        message: message.clone(),
        tools: (r.verdict == Verdict::Compliant).then(|| r.tools.clone()),
        validation: Some(ValidationStatus {
            compliant: Some(r.compliant),
            transport: r.transport.map(|t| t.as_str().to_string()),
            protocol_version: r.protocol_version.clone(),
            requires_auth: Some(r.requires_auth),
            server_info: r.server_info.as_ref().map(|i| ServerInfo {
                name: i.name.clone(),
                version: i.version.clone(),
            }),
            capabilities: Some(r.capabilities.clone()),
            truncated: Some(r.truncated.clone()).filter(|t| !t.is_empty()),
            message: Some(message),
        }),
        issues: r.error_kind.map(Issue::of_fault).into_iter().collect(),
    }
}
