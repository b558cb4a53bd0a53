//! The Service of an MCPServerGroup: one address in front of its members' pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, Service, ServicePort, ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Sink;
use super::labels::{self, COMPONENT_GROUP, GROUP_LABEL, MANAGED_BY, MCP_SERVER_POD_LABEL};
use crate::api::group::AffinityType;
use crate::compile::defaults;
use crate::compile::resolve::ResolvedGroup;
use crate::compile::settings::whole_secs;

pub fn service(g: &ResolvedGroup, out: &mut impl Sink) {
    let mut selector: BTreeMap<String, String> =
        g.settings.selector.match_labels.clone().unwrap_or_default();
    selector.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    selector.insert(MCP_SERVER_POD_LABEL.into(), "true".into());
    // The Service keeps a client on one member by address; header affinity is the gateway's.
    let affinity = g
        .settings
        .session_affinity
        .as_ref()
        .filter(|a| a.kind != AffinityType::Header);
    let timeout = affinity.map(|a| whole_secs(a.ttl).clamp(1, 86400) as i32);
    let svc = Service {
        metadata: ObjectMeta {
            name: Some(g.meta.name.clone()),
            namespace: Some(g.meta.namespace.clone()),
            labels: Some(labels::standard(&g.meta.name, COMPONENT_GROUP, GROUP_LABEL)),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some("mcp".into()),
                port: defaults::PORT,
                target_port: Some(IntOrString::String("mcp".into())),
                protocol: Some("TCP".into()),
                app_protocol: Some("http".into()),
                ..ServicePort::default()
            }]),
            session_affinity: Some(
                if affinity.is_some() {
                    "ClientIP"
                } else {
                    "None"
                }
                .into(),
            ),
            session_affinity_config: timeout.map(|t| SessionAffinityConfig {
                client_ip: Some(ClientIPConfig {
                    timeout_seconds: Some(t),
                }),
            }),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    out.child(&svc, g.node.span);
}
