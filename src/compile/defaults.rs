//! The one place where defaults are decided. `resolve` writes every one of them out, so the
//! rendered output leaves nothing for the cluster to fill in that hangar could have decided.

use std::borrow::Cow;
use std::time::Duration;

use serde_json::{Value, json};

use super::node::{Node, Value as NodeValue};

use crate::api::server::Transport;

// Each duration is written twice: as the text `hangar render` prints and as the value
// `settings` decides with (a test holds the two equal).
pub const REPLICAS: i32 = 1;
pub const IDLE_TTL: &str = "5m";
pub const IDLE_TTL_D: Duration = Duration::from_secs(300);
pub const STARTUP_TIMEOUT: &str = "30s";
pub const STARTUP_TIMEOUT_D: Duration = Duration::from_secs(30);
pub const SHUTDOWN_GRACE_PERIOD: &str = "30s";
pub const SHUTDOWN_GRACE_PERIOD_D: Duration = Duration::from_secs(30);
pub const PORT: i32 = 8080;
pub const PATH_STREAMABLE: &str = "/mcp";
pub const PATH_SSE: &str = "/sse";
pub const HEALTH_INTERVAL: &str = "30s";
pub const HEALTH_INTERVAL_D: Duration = Duration::from_secs(30);
pub const HEALTH_TIMEOUT: &str = "5s";
pub const HEALTH_TIMEOUT_D: Duration = Duration::from_secs(5);
pub const HEALTH_FAILURE_THRESHOLD: i32 = 3;
pub const HEALTH_SUCCESS_THRESHOLD: i32 = 1;
pub const BREAKER_FAILURE_THRESHOLD: i32 = 5;
pub const BREAKER_RESET_TIMEOUT: &str = "30s";
pub const BREAKER_RESET_TIMEOUT_D: Duration = Duration::from_secs(30);
pub const BREAKER_HALF_OPEN_REQUESTS: i32 = 3;
pub const BREAKER_SUCCESS_THRESHOLD: i32 = 2;
pub const METRICS_PORT: i32 = 9090;
pub const HPA_MIN_REPLICAS: i32 = 1;
pub const HPA_MAX_REPLICAS: i32 = 5;
pub const HPA_TARGET_CPU: i32 = 80;
/// A disruption budget that names neither bound allows one pod down.
pub const PDB_MAX_UNAVAILABLE: i32 = 1;
pub const PROBE_AUTH_HEADER: &str = "Authorization";
pub const PROBE_AUTH_SCHEME: &str = "Bearer";
pub const PROBE_AUTH_KEY: &str = "token";
pub const FAILOVER_MAX_RETRIES: i32 = 2;
pub const FAILOVER_RETRY_DELAY: &str = "1s";
pub const FAILOVER_RETRY_DELAY_D: Duration = Duration::from_secs(1);
pub const GROUP_MIN_HEALTHY_PERCENTAGE: i32 = 50;
pub const GROUP_MIN_HEALTHY_COUNT: i32 = 1;
pub const GROUP_UNHEALTHY_THRESHOLD: i32 = 3;
pub const GROUP_BREAKER_FAILURE_THRESHOLD: i32 = 10;
pub const GROUP_BREAKER_RESET_TIMEOUT: &str = "1m";
pub const GROUP_BREAKER_RESET_TIMEOUT_D: Duration = Duration::from_secs(60);
pub const AFFINITY_TTL: &str = "10m";
pub const AFFINITY_TTL_D: Duration = Duration::from_secs(600);
pub const REFRESH_INTERVAL: &str = "1m";
pub const REFRESH_INTERVAL_D: Duration = Duration::from_secs(60);
pub const RUN_AS_USER: i64 = 65534;
/// Namespaces carrying this label may reach MCP server pods (the seed's isolation policy).
pub const CORE_NAMESPACE_LABEL: (&str, &str) = ("mcp-hangar.io/core", "true");

/// What the defaults of a server depend on, read from what the user said: merged JSON layers, or
/// one MCPServer's `spec` document.
pub trait SpecView {
    /// The field at `path`, when set (to anything but null).
    fn field(&self, path: &[&str]) -> Option<Field<'_>>;
}

/// A field of a [`SpecView`].
pub enum Field<'a> {
    Json(&'a Value),
    Node(&'a Node),
}

impl Field<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Field::Json(v) => v.as_str(),
            Field::Node(n) => n.as_str(),
        }
    }

    /// The value, when it is an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Field::Json(v) => v.as_i64(),
            Field::Node(n) => match n.value {
                NodeValue::Int(i) => Some(i),
                _ => None,
            },
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Field::Json(v) => (*v).clone(),
            Field::Node(n) => n.to_json(),
        }
    }
}

impl SpecView for Value {
    fn field(&self, path: &[&str]) -> Option<Field<'_>> {
        let mut cur = self;
        for k in path {
            cur = cur.get(k)?;
        }
        Some(Field::Json(cur))
    }
}

impl SpecView for Node {
    fn field(&self, path: &[&str]) -> Option<Field<'_>> {
        let mut cur = self;
        for k in path {
            cur = cur.get(k).filter(|v| !matches!(v.value, NodeValue::Null))?;
        }
        Some(Field::Node(cur))
    }
}

/// Defaults of an MCPServer spec, given what the user layers already say (some defaults depend
/// on other fields: the path on the transport, the pull policy on the image tag, the mode on
/// whether an image or an endpoint is given).
pub fn server(user: &Value) -> Value {
    server_base(user).into_owned()
}

/// As [`server`], shared when it is one of the common sets of defaults.
pub fn server_base(user: &impl SpecView) -> Cow<'static, Value> {
    let str_of = |k: &str| {
        user.field(&[k])
            .and_then(|f| f.as_str().map(str::to_string))
    };
    let transport = str_of("transport");
    let sse = transport.as_deref() == Some(Transport::Sse.as_str());
    let mode = match str_of("mode") {
        Some(m) => m,
        None if user.field(&["endpoint"]).is_some() && user.field(&["image"]).is_none() => {
            "remote".into()
        }
        None => "container".into(),
    };
    // The common sets of defaults are built once: [remote, container, container with `Always`],
    // each for the streamable HTTP path and for SSE's.
    static TEMPLATES: std::sync::OnceLock<[[Value; 3]; 2]> = std::sync::OnceLock::new();
    let templates = TEMPLATES.get_or_init(|| {
        [PATH_STREAMABLE, PATH_SSE].map(|path| {
            let remote = base_defaults("remote", path);
            let mut container = remote.clone();
            merge_into(&mut container, &container_defaults("IfNotPresent"));
            container["mode"] = json!("container");
            let mut always = container.clone();
            always["imagePullPolicy"] = json!("Always");
            [remote, container, always]
        })
    });
    let by_path = &templates[usize::from(sse)];
    let mut d = if mode == "container" {
        let image = str_of("image").unwrap_or_default();
        Cow::Borrowed(
            &by_path[if crate::compile::units::image_is_latest(&image) {
                2
            } else {
                1
            }],
        )
    } else if mode == "remote" {
        Cow::Borrowed(&by_path[0])
    } else {
        // Any other mode (an error, reported later) keeps the defaults every server has.
        let mut d = by_path[0].clone();
        d["mode"] = json!(mode);
        Cow::Owned(d)
    };
    // The probe's credentials: where they go, once the user names a Secret.
    if user.field(&["validation", "auth"]).is_some() {
        d.to_mut()["validation"]["auth"] = json!({"header": PROBE_AUTH_HEADER, "scheme": PROBE_AUTH_SCHEME, "secretRef": {"key": PROBE_AUTH_KEY}});
    }
    // A rate limit's burst defaults to its per-minute rate.
    if let Some(rpm) = user.field(&["tools", "rateLimit", "requestsPerMinute"]) {
        let rpm = rpm.to_json();
        d.to_mut()["tools"]["rateLimit"] = json!({"requestsPerMinute": rpm, "burstSize": rpm});
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
            "successThreshold": HEALTH_SUCCESS_THRESHOLD
        },
        "circuitBreaker": {
            "enabled": true,
            "failureThreshold": BREAKER_FAILURE_THRESHOLD,
            "resetTimeout": BREAKER_RESET_TIMEOUT,
            "halfOpenRequests": BREAKER_HALF_OPEN_REQUESTS,
            "successThreshold": BREAKER_SUCCESS_THRESHOLD
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
        "hpa": {"enabled": false, "minReplicas": HPA_MIN_REPLICAS, "maxReplicas": HPA_MAX_REPLICAS, "targetCPUUtilizationPercentage": HPA_TARGET_CPU},
        "podDisruptionBudget": {"enabled": false},
        "sessionAffinity": "None",
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
        "failover": {"enabled": true, "maxRetries": FAILOVER_MAX_RETRIES, "retryDelay": FAILOVER_RETRY_DELAY, "retryOn": ["timeout", "connection_error"]},
        "healthPolicy": {
            "minHealthyPercentage": GROUP_MIN_HEALTHY_PERCENTAGE,
            "minHealthyCount": GROUP_MIN_HEALTHY_COUNT,
            "unhealthyThreshold": GROUP_UNHEALTHY_THRESHOLD
        },
        "circuitBreaker": {"enabled": false, "failureThreshold": GROUP_BREAKER_FAILURE_THRESHOLD, "resetTimeout": GROUP_BREAKER_RESET_TIMEOUT},
        "sessionAffinity": {"enabled": false, "type": "ClientIP", "ttl": AFFINITY_TTL},
    })
}

pub fn discovery_source(user: &Value) -> Value {
    let mut d = json!({
        "mode": "Additive",
        "refreshInterval": REFRESH_INTERVAL,
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
        Some("Git") if user.get("git").is_some() => d["git"] = json!({"ref": "HEAD", "path": "/"}),
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
    fn written_and_decided_durations_agree() {
        use crate::compile::units::parse_duration;
        for (text, d) in [
            (IDLE_TTL, IDLE_TTL_D),
            (STARTUP_TIMEOUT, STARTUP_TIMEOUT_D),
            (SHUTDOWN_GRACE_PERIOD, SHUTDOWN_GRACE_PERIOD_D),
            (HEALTH_INTERVAL, HEALTH_INTERVAL_D),
            (HEALTH_TIMEOUT, HEALTH_TIMEOUT_D),
            (BREAKER_RESET_TIMEOUT, BREAKER_RESET_TIMEOUT_D),
            (FAILOVER_RETRY_DELAY, FAILOVER_RETRY_DELAY_D),
            (GROUP_BREAKER_RESET_TIMEOUT, GROUP_BREAKER_RESET_TIMEOUT_D),
            (AFFINITY_TTL, AFFINITY_TTL_D),
            (REFRESH_INTERVAL, REFRESH_INTERVAL_D),
        ] {
            assert_eq!(parse_duration(text), Ok(d), "{text}");
        }
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
