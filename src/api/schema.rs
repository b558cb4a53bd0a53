//! Generated schemas: the CRDs (with the CEL rules and patterns the API server enforces), the
//! JSON Schemas for editors, and the structural schemas the compiler validates input against.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

use super::{Kind, MCPDiscoverySource, MCPServer, MCPServerGroup};

/// Fields holding durations ("500ms", "30s", "5m", "1h", "1h30m").
pub const DURATION_FIELDS: [&str; 9] = [
    "idleTTL",
    "startupTimeout",
    "shutdownGracePeriod",
    "interval",
    "timeout",
    "resetTimeout",
    "retryDelay",
    "ttl",
    "refreshInterval",
];

/// The pattern the API server checks durations against (the compiler checks them more precisely).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// The name rule: names become Service names, so they must be DNS-1035 labels.
const NAME_RULE: &str =
    "self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";

fn rule(rule: &str, message: &str) -> Value {
    json!({"rule": rule, "message": message})
}

/// The CRD of one kind, as applied to a cluster.
pub fn crd(kind: Kind) -> CustomResourceDefinition {
    let mut crd = match kind {
        Kind::Server => MCPServer::crd(),
        Kind::Group => MCPServerGroup::crd(),
        Kind::DiscoverySource => MCPDiscoverySource::crd(),
    };
    let (root_rules, spec_rules): (Vec<Value>, Vec<Value>) = match kind {
        Kind::Server => (
            vec![rule(
                NAME_RULE,
                "metadata.name must be a DNS-1035 label (at most 63 characters of a-z, 0-9 and '-', starting with a letter): it names the Service",
            )],
            vec![
                rule(
                    "self.mode != 'container' || has(self.image)",
                    "spec.image is required when spec.mode is container",
                ),
                rule(
                    "self.mode != 'remote' || has(self.endpoint)",
                    "spec.endpoint is required when spec.mode is remote",
                ),
            ],
        ),
        Kind::Group => (
            vec![rule(
                NAME_RULE,
                "metadata.name must be a DNS-1035 label (at most 63 characters of a-z, 0-9 and '-', starting with a letter): it names the group's Service",
            )],
            vec![],
        ),
        Kind::DiscoverySource => (
            vec![],
            vec![
                rule(
                    "self.type != 'ConfigMap' || has(self.configMapRef)",
                    "spec.configMapRef is required when spec.type is ConfigMap",
                ),
                rule(
                    "self.type != 'Git' || has(self.git)",
                    "spec.git is required when spec.type is Git",
                ),
            ],
        ),
    };
    for version in &mut crd.spec.versions {
        let Some(validation) = version.schema.as_mut() else {
            continue;
        };
        let Some(root) = validation.open_api_v3_schema.as_mut() else {
            continue;
        };
        let mut value = match serde_json::to_value(&*root) {
            Ok(v) => v,
            Err(_) => continue,
        };
        add_duration_patterns(&mut value);
        if !root_rules.is_empty() {
            value["x-kubernetes-validations"] = Value::Array(root_rules.clone());
        }
        if !spec_rules.is_empty() {
            value["properties"]["spec"]["x-kubernetes-validations"] =
                Value::Array(spec_rules.clone());
        }
        if let Ok(v) = serde_json::from_value(value) {
            *root = v;
        }
    }
    crd
}

/// All CRDs, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    Kind::ALL.iter().map(|k| crd(*k)).collect()
}

fn add_duration_patterns(schema: &mut Value) {
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, sub) in props.iter_mut() {
            if DURATION_FIELDS.contains(&name.as_str()) && sub.get("type") == Some(&json!("string"))
            {
                sub["pattern"] = json!(DURATION_PATTERN);
            }
            add_duration_patterns(sub);
        }
    }
    if let Some(items) = schema.get_mut("items") {
        add_duration_patterns(items);
    }
    if let Some(ap) = schema
        .get_mut("additionalProperties")
        .filter(|v| v.is_object())
    {
        add_duration_patterns(ap);
    }
}

/// The structural OpenAPI schema of a kind (the whole object: apiVersion, kind, metadata, spec, status).
pub fn structural(kind: Kind) -> Value {
    let crd = crd(kind);
    crd.spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null)
}

/// The structural schema of a spec type, from the CRD generator's settings (inlined, no `$ref`).
pub fn spec_schema<T>() -> Value
where
    T: schemars::JsonSchema,
{
    // The CRD holds exactly the inlined spec schema; take it from there so that both agree.
    let kind = match T::schema_name().as_ref() {
        "MCPServerGroupSpec" => Kind::Group,
        "MCPDiscoverySourceSpec" => Kind::DiscoverySource,
        _ => Kind::Server,
    };
    structural(kind)["properties"]["spec"].clone()
}

/// JSON Schema (draft 2020-12) of a whole document of a kind, for editors (yaml-language-server).
pub fn editor_schema(kind: Kind) -> Value {
    let mut root = structural(kind);
    if let Some(props) = root.get_mut("properties").and_then(Value::as_object_mut) {
        props.remove("status");
        props.insert("apiVersion".into(), json!({"const": super::API_VERSION}));
        props.insert("kind".into(), json!({"const": kind.name()}));
        props.insert(
            "metadata".into(),
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "namespace": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}}
                },
                "required": ["name"]
            }),
        );
    }
    root["required"] = json!(["apiVersion", "kind", "metadata", "spec"]);
    to_json_schema(&mut root);
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["$id"] = json!(format!(
        "https://mcp-hangar.io/schema/{}.json",
        kind.name().to_lowercase()
    ));
    root["title"] = json!(kind.name());
    root
}

/// Turns an OpenAPI structural schema into plain JSON Schema: closes objects (unknown fields are
/// errors), maps `nullable` and `x-kubernetes-int-or-string`, drops the Kubernetes extensions.
pub fn to_json_schema(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if obj.remove("x-kubernetes-int-or-string") == Some(Value::Bool(true)) {
        obj.insert("type".into(), json!(["integer", "string"]));
    }
    let preserve = obj.remove("x-kubernetes-preserve-unknown-fields") == Some(Value::Bool(true));
    obj.retain(|k, _| !k.starts_with("x-kubernetes-"));
    if obj.remove("nullable") == Some(Value::Bool(true)) {
        if let Some(Value::String(t)) = obj.get("type").cloned() {
            obj.insert("type".into(), json!([t, "null"]));
        }
    }
    if obj.contains_key("properties") && !obj.contains_key("additionalProperties") && !preserve {
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }
    for key in ["properties"] {
        if let Some(props) = obj.get_mut(key).and_then(Value::as_object_mut) {
            for sub in props.values_mut() {
                to_json_schema(sub);
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = obj.get_mut(key) {
            to_json_schema(sub);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(subs)) = obj.get_mut(key) {
            for sub in subs {
                to_json_schema(sub);
            }
        }
    }
}
