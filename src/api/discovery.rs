//! `MCPDiscoverySource`: where MCP servers are found (namespaces, ConfigMaps, Git, annotations).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, LabelSelector, LabelSelectorRequirement, Time,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::server::MCPServerSpec;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "mcp-hangar.io",
    version = "v1alpha1",
    kind = "MCPDiscoverySource",
    plural = "mcpdiscoverysources",
    singular = "mcpdiscoverysource",
    shortname = "mcpds",
    namespaced,
    status = "MCPDiscoverySourceStatus",
    doc = "A source of MCP server definitions: namespaces, a ConfigMap catalog, a Git repository or annotated Services.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(
        name = "Discovered",
        type_ = "integer",
        json_path = ".status.discoveredCount"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Revision", type_ = "string", json_path = ".status.revision"),
    printcolumn(name = "Last Sync", type_ = "date", json_path = ".status.lastSyncTime"),
    printcolumn(
        name = "Message",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].message"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MCPDiscoverySourceSpec {
    #[serde(rename = "type")]
    pub type_: SourceType,
    /// Default `Additive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<DiscoveryMode>,
    /// Default `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<String>,
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<AnnotationsSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_discovery: Option<ServiceDiscovery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
    /// Merged under every discovered server (the discovered entry wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_template: Option<ProviderTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<Ownership>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SourceType {
    Namespace,
    ConfigMap,
    Annotations,
    ServiceDiscovery,
    Git,
}

impl SourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Namespace => "Namespace",
            SourceType::ConfigMap => "ConfigMap",
            SourceType::Annotations => "Annotations",
            SourceType::ServiceDiscovery => "ServiceDiscovery",
            SourceType::Git => "Git",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DiscoveryMode {
    #[default]
    Additive,
    Authoritative,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
    /// Default `[kube-system, kube-public, kube-node-lease]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_namespaces: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapRef {
    pub name: String,
    /// Default: the source's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Default `providers.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnnotationsSource {
    /// Default `mcp-hangar.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_prefix: Option<String>,
    /// Default `[mcp-hangar.io/provider]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_annotations: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDiscovery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Default `mcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// Default `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<UrlScheme>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UrlScheme {
    Http,
    Https,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// `https://`, `ssh://`, `git://` or `file://` URL of the repository.
    pub url: String,
    /// Branch, tag, `refs/...` name or commit SHA. Default `HEAD`: the branch the remote's HEAD
    /// names (what `git clone` checks out), be it `main`, `master` or another.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub ref_: Option<String>,
    /// Directory (or file) in the repository holding catalogs and resources. Default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Secret with credentials: `token`, or `username` + `password`, or `ssh-privatekey` (+ `known_hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Filters {
    /// Glob patterns over server names; empty means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_patterns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_patterns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_providers: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// An MCPServer spec fragment merged under each discovered server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<TemplateSpec>,
}

/// An MCPServer spec fragment where every field, `mode` included, is optional. Kept as JSON so
/// that the compiler can merge it field by field under each discovered entry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(transparent)]
pub struct TemplateSpec(pub serde_json::Value);

impl JsonSchema for TemplateSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TemplateSpec".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = MCPServerSpec::json_schema(generator);
        schema.remove("required");
        schema.insert(
            "description".into(),
            "An MCPServer spec fragment (every field optional) merged under each discovered server.".into(),
        );
        schema
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ownership {
    /// Generated MCPServers get an owner reference to the source. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    /// Owner reference with blockOwnerDeletion. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_deletion: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPDiscoverySourceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered_providers: Option<Vec<DiscoveredProvider>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sync_time: Option<Time>,
    /// Commit SHA (Git) or resourceVersion (ConfigMap) of the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Objects created by the last sync that changed anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_count: Option<i32>,
    /// Objects updated by the last sync that changed anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_count: Option<i32>,
    /// Objects deleted (Authoritative mode) by the last sync that changed anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_count: Option<i32>,
    /// The value of the `mcp-hangar.io/requested-at` annotation the last sync ran for: once it
    /// equals what was written there, the sync asked for has run (its outcome is in `conditions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,
}

/// Set (to any new value, e.g. a timestamp) on an MCPDiscoverySource to sync it now rather than
/// at its next `refreshInterval`, like Flux's `reconcile.fluxcd.io/requestedAt`; status
/// `lastHandledRequestedAt` echoes the value when that sync has run.
pub const REQUESTED_AT_ANNOTATION: &str = "mcp-hangar.io/requested-at";

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredProvider {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
