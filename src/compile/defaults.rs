//! The one place where defaults are decided. `resolve` writes every one of them out, so the
//! rendered output leaves nothing for the cluster to fill in that hangar could have decided.

use serde_json::{Value, json};

use crate::api::server::Transport;

pub const REPLICAS: i32 = 1;
pub const IDLE_TTL: &str = "5m";
pub const STARTUP_TIMEOUT: &str = "30s";
pub const SHUTDOWN_GRACE_PERIOD: &str = "30s";
pub const PORT: i32 = 8080;
pub const PATH_STREAMABLE: &str = "/mcp";
pub const PATH_SSE: &str = "/sse";
pub const HEALTH_INTERVAL: &str = "30s";
pub const HEALTH_TIMEOUT: &str = "5s";
pub const HEALTH_FAILURE_THRESHOLD: i32 = 3;
pub const METRICS_PORT: i32 = 9090;
pub const RUN_AS_USER: i64 = 65534;
/// Namespaces carrying this label may reach MCP server pods (the seed's isolation policy).
pub const CORE_NAMESPACE_LABEL: (&str, &str) = ("mcp-hangar.io/core", "true");

/// Defaults of an MCPServer spec, given what the user layers already say (some defaults depend
/// on other fields: the path on the transport, the pull policy on the image tag, the mode on
/// whether an image or an endpoint is given).
pub fn server(user: &Value) -> Value {
    let transport = user
        .get("transport")
        .and_then(Value::as_str)
        .unwrap_or("auto");
    let path = if transport == Transport::Sse.as_str() {
        PATH_SSE
    } else {
        PATH_STREAMABLE
    };
    let mode = match user.get("mode").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None if user.get("endpoint").is_some() && user.get("image").is_none() => "remote".into(),
        None => "container".into(),
    };
    // The fixed defaults are built once; each server clones them (cheaper than building them).
    static TEMPLATES: std::sync::OnceLock<(Value, Value)> = std::sync::OnceLock::new();
    let (remote, container) = TEMPLATES.get_or_init(|| {
        let remote = base_defaults("remote", PATH_STREAMABLE);
        let mut container = remote.clone();
        merge_into(&mut container, &container_defaults("IfNotPresent"));
        (remote, container)
    });
    let mut d = if mode == "container" {
        let image = user.get("image").and_then(Value::as_str).unwrap_or("");
        let mut d = container.clone();
        if crate::compile::units::image_is_latest(image) {
            d["imagePullPolicy"] = json!("Always");
        }
        d
    } else {
        remote.clone()
    };
    if mode != "remote" {
        d["mode"] = json!(mode);
    }
    if path != PATH_STREAMABLE {
        d["path"] = json!(path);
    }
    // The probe's credentials: where they go, once the user names a Secret.
    if user.pointer("/validation/auth").is_some() {
        d["validation"]["auth"] =
            json!({"header": "Authorization", "scheme": "Bearer", "secretRef": {"key": "token"}});
    }
    // A rate limit's burst defaults to its per-minute rate.
    if let Some(rpm) = user.pointer("/tools/rateLimit/requestsPerMinute").cloned() {
        d["tools"]["rateLimit"] = json!({"requestsPerMinute": rpm, "burstSize": rpm});
    }
    d
}

/// The defaults of every server, given its mode and path.
fn base_defaults(mode: &str, path: &str) -> Value {
    json!({
        "mode": mode,
        "replicas": REPLICAS,
        "idleTTL": IDLE_TTL,
        "startupTimeout": STARTUP_TIMEOUT,
        "shutdownGracePeriod": SHUTDOWN_GRACE_PERIOD,
        "healthCheck": {
            "enabled": true,
            "interval": HEALTH_INTERVAL,
            "timeout": HEALTH_TIMEOUT,
            "failureThreshold": HEALTH_FAILURE_THRESHOLD,
            "successThreshold": 1
        },
        "circuitBreaker": {
            "enabled": true,
            "failureThreshold": 5,
            "resetTimeout": "30s",
            "halfOpenRequests": 3,
            "successThreshold": 2
        },
        "tools": {"allowList": [], "denyList": []},
        "transport": "auto",
        "path": path,
        "validation": {"enabled": true, "strictMode": false, "requiredCapabilities": []},
    })
}

/// The further defaults of a container-mode server, given its image pull policy.
fn container_defaults(policy: &str) -> Value {
    json!({
        "imagePullPolicy": policy,
        "port": PORT,
        "env": [],
        "volumes": [],
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": RUN_AS_USER,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}
        },
        "observability": {
            "metrics": {"enabled": false, "port": METRICS_PORT},
            "tracing": {"enabled": false, "samplingRate": 0.1}
        },
        "hpa": {"enabled": false, "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 80},
        "podDisruptionBudget": {"enabled": false},
        "networkPolicy": {
            "enabled": true,
            "allowedNamespaceLabels": {CORE_NAMESPACE_LABEL.0: CORE_NAMESPACE_LABEL.1},
            "restrictEgress": false
        }
    })
}

pub fn group() -> Value {
    json!({
        "strategy": "RoundRobin",
        "failover": {"enabled": true, "maxRetries": 2, "retryDelay": "1s", "retryOn": ["timeout", "connection_error"]},
        "healthPolicy": {"minHealthyPercentage": 50, "unhealthyThreshold": 3},
        "circuitBreaker": {"enabled": false, "failureThreshold": 10, "resetTimeout": "1m"},
        "sessionAffinity": {"enabled": false, "type": "ClientIP", "ttl": "10m"},
    })
}

pub fn discovery_source(user: &Value) -> Value {
    let mut d = json!({
        "mode": "Additive",
        "refreshInterval": "1m",
        "paused": false,
        "ownership": {"controller": true, "blockDeletion": false},
    });
    match user.get("type").and_then(Value::as_str) {
        Some("Namespace") => {
            d["namespaceSelector"] =
                json!({"excludeNamespaces": ["kube-system", "kube-public", "kube-node-lease"]});
        }
        Some("ConfigMap") if user.get("configMapRef").is_some() => {
            d["configMapRef"] = json!({"key": "providers.yaml"})
        }
        Some("Annotations") => {
            d["annotations"] = json!({"annotationPrefix": "mcp-hangar.io", "requiredAnnotations": ["mcp-hangar.io/provider"]});
        }
        Some("ServiceDiscovery") => {
            d["serviceDiscovery"] = json!({"portName": "mcp", "protocol": "http"})
        }
        Some("Git") if user.get("git").is_some() => d["git"] = json!({"ref": "main", "path": "/"}),
        _ => {}
    }
    d
}

/// Deep merge: mappings merge key by key, `over` wins; lists and scalars are replaced whole.
pub fn merge_into(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => merge_into(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_deep_for_maps_and_replaces_lists() {
        let mut base = json!({"a": {"x": 1, "y": [1, 2]}, "b": 1});
        merge_into(&mut base, &json!({"a": {"y": [3]}, "c": 2}));
        assert_eq!(base, json!({"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}));
    }

    #[test]
    fn dependent_defaults() {
        assert_eq!(
            server(&json!({"transport": "sse", "image": "x"}))["path"],
            "/sse"
        );
        assert_eq!(
            server(&json!({"image": "x:1.0"}))["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(server(&json!({"image": "x"}))["imagePullPolicy"], "Always");
        assert_eq!(
            server(&json!({"endpoint": "https://h/mcp"}))["mode"],
            "remote"
        );
        assert!(
            server(&json!({"endpoint": "https://h/mcp"}))
                .get("port")
                .is_none()
        );
    }
}
