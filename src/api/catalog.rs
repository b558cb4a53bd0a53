//! The catalog: a list of MCP server definitions, read from files, a ConfigMap or a Git repo.
//!
//! ```yaml
//! servers:            # `providers:` accepted too
//!   - name: team-tools
//!     image: ghcr.io/team/mcp-tools:1.4.0
//! ```
//! Each entry is an MCPServer spec plus `name`, and optional `namespace`, `labels`, `annotations`.
//! `mode` may be left out: it is `container` when `image` is set and `remote` when `endpoint` is.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::server::MCPServerSpec;

/// Field names of a catalog entry that are not MCPServer spec fields.
pub const ENTRY_META_FIELDS: [&str; 4] = ["name", "namespace", "labels", "annotations"];

/// JSON Schema of a catalog document, for editors.
pub fn catalog_editor_schema() -> serde_json::Value {
    let mut root = catalog_schema();
    super::schema::to_json_schema(&mut root);
    root["$schema"] = serde_json::json!("https://json-schema.org/draft/2020-12/schema");
    root["$id"] = serde_json::json!("https://mcp-hangar.io/schema/catalog.json");
    root["title"] = serde_json::json!("hangar catalog");
    root
}

/// Schema of a catalog document (for editors and for the compiler's structural check).
pub fn catalog_schema() -> serde_json::Value {
    let spec = super::schema::spec_schema::<MCPServerSpec>();
    let mut entry = spec.clone();
    let string_map =
        serde_json::json!({"type": "object", "additionalProperties": {"type": "string"}});
    if let Some(props) = entry.get_mut("properties").and_then(|p| p.as_object_mut()) {
        props.insert(
            "name".into(),
            serde_json::json!({"type": "string", "description": "Name of the MCPServer this entry becomes (a DNS-1035 label)."}),
        );
        props.insert(
            "namespace".into(),
            serde_json::json!({"type": "string", "description": "Namespace; default: the source's namespace."}),
        );
        props.insert("labels".into(), string_map.clone());
        props.insert("annotations".into(), string_map);
    }
    if let Some(obj) = entry.as_object_mut() {
        obj.insert("required".into(), serde_json::json!(["name"]));
        obj.insert(
            "description".into(),
            "An MCP server definition: an MCPServer spec plus name, labels and annotations.".into(),
        );
    }
    let list = serde_json::json!({"type": "array", "items": entry});
    serde_json::json!({
        "type": "object",
        "description": "A catalog of MCP server definitions.",
        "properties": {"servers": list.clone(), "providers": list},
    })
}

/// A parsed catalog entry; `spec` is the raw spec fragment, merged by the compiler.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct CatalogEntryMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}
