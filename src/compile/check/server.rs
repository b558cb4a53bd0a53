//! Checks of one MCPServer: its units, references and workload (restricted Pod Security).

use super::*;

pub(super) fn check_server(s: &ResolvedServer, diags: &mut Diagnostics) {
    let spec = &s.spec;
    let name = &s.meta.name;
    let user = &s.user;
    let at = |path: &str| s.locate(&p(path));
    // An MCPServer without `mode` is reported by the schema ("missing required field"); its
    // mode's own checks would only say the same again in other words.
    let mode_missing =
        matches!(s.origin, crate::compile::resolve::Origin::Explicit) && !user.has("mode");
    match spec.mode {
        _ if mode_missing => {}
        Mode::Container => {
            match spec.image.as_deref() {
                None => diags.push(
                    Diagnostic::error("missing-image", Some(s.layers.first().map(|l| l.node().span).unwrap_or(s.span)), format!("server `{name}` runs in container mode but has no `image`"))
                        .hint("add `image: registry/repository:tag`, or set `mode: remote` with an `endpoint`"),
                ),
                Some(img) => {
                    if let Err(e) = units::check_image(img) {
                        diags.push(Diagnostic::error("invalid-image", Some(at("image")), e));
                    } else if units::image_is_latest(img) {
                        diags.push(
                            Diagnostic::warning("mutable-image", Some(at("image")), format!("image `{img}` has no fixed tag; every restart may run different code"))
                                .hint("pin a version tag or a digest"),
                        );
                    }
                }
            }
            if user.has("endpoint") {
                diags.push(Diagnostic::warning(
                    "ignored-field",
                    Some(at("endpoint")),
                    "`endpoint` is ignored in container mode (the Service is the endpoint)",
                ));
            }
        }
        Mode::Remote => {
            match spec.endpoint.as_deref() {
                None => diags.push(
                    Diagnostic::error(
                        "missing-endpoint",
                        Some(s.layers.first().map(|l| l.node().span).unwrap_or(s.span)),
                        format!("server `{name}` is in remote mode but has no `endpoint`"),
                    )
                    .hint("add `endpoint: https://host/mcp`"),
                ),
                Some(url) => match units::check_endpoint_url(url) {
                    Err(e) => diags.push(Diagnostic::error("invalid-url", Some(at("endpoint")), e)),
                    Ok(u) if u.scheme() == "http" && !is_cluster_local(&u) => diags.push(
                        Diagnostic::warning(
                            "insecure-endpoint",
                            Some(at("endpoint")),
                            format!("`{url}` is plain http outside the cluster"),
                        )
                        .hint("use https for endpoints outside the cluster"),
                    ),
                    Ok(_) => {}
                },
            }
            for field in [
                "image",
                "command",
                "args",
                "env",
                "volumes",
                "resources",
                "securityContext",
                "port",
                "hpa",
                "podDisruptionBudget",
                "networkPolicy",
                "sessionAffinity",
                "nodeSelector",
                "tolerations",
                "affinity",
                "serviceAccountName",
                "imagePullSecrets",
            ] {
                // A discovery source's template applies to every entry; only what the entry or the
                // MCPServer itself says is worth a warning.
                if user.has(field) && s.set_by(&p(field)) != Some("providerTemplate") {
                    diags.push(Diagnostic::warning(
                        "ignored-field",
                        Some(at(field)),
                        format!("`{field}` is ignored in remote mode (no workload is rendered)"),
                    ));
                }
            }
            let from_template = s.set_by(&p("replicas")) == Some("providerTemplate");
            if !from_template && user.i64_of("replicas").is_some_and(|r| r > 1) {
                diags.push(Diagnostic::warning(
                    "ignored-field",
                    Some(at("replicas")),
                    "`replicas` above 1 has no effect in remote mode",
                ));
            }
        }
    }
    // Durations.
    for (f, v) in [
        ("idleTTL", &spec.idle_ttl),
        ("startupTimeout", &spec.startup_timeout),
        ("shutdownGracePeriod", &spec.shutdown_grace_period),
    ] {
        duration(at(f), f, v.as_deref(), diags);
    }
    let hc = spec.health_check.clone().unwrap_or_default();
    let interval = duration(
        at("healthCheck.interval"),
        "healthCheck.interval",
        hc.interval.as_deref(),
        diags,
    );
    let timeout = duration(
        at("healthCheck.timeout"),
        "healthCheck.timeout",
        hc.timeout.as_deref(),
        diags,
    );
    if let (Some(i), Some(t)) = (interval, timeout) {
        if t > i {
            diags.push(Diagnostic::warning(
                "timeout-above-interval",
                Some(at("healthCheck.timeout")),
                "healthCheck.timeout is longer than healthCheck.interval; checks will overlap",
            ));
        }
        if i.as_millis() < 1000 {
            diags.push(Diagnostic::warning(
                "interval-too-short",
                Some(at("healthCheck.interval")),
                "health checks more often than once a second load the server; 10s or more is usual",
            ));
        }
    }
    let cb = spec.circuit_breaker.clone().unwrap_or_default();
    duration(
        at("circuitBreaker.resetTimeout"),
        "circuitBreaker.resetTimeout",
        cb.reset_timeout.as_deref(),
        diags,
    );
    if !s.spec.path.as_deref().unwrap_or("/").starts_with('/') {
        diags.push(
            Diagnostic::error(
                "invalid-path",
                Some(at("path")),
                "`path` must start with '/'",
            )
            .hint("e.g. `/mcp`"),
        );
    }
    if let Some(v) = &spec.validation {
        if v.enabled == Some(false) && v.strict_mode == Some(true) {
            diags.push(Diagnostic::warning(
                "strict-without-validation",
                Some(at("validation.strictMode")),
                "`validation.strictMode` has no effect while `validation.enabled` is false",
            ));
        }
        if let Some(a) = &v.auth {
            if let Err(err) = units::check_dns1123_subdomain(&a.secret_ref.name) {
                diags.push(Diagnostic::error(
                    "invalid-name",
                    Some(at("validation.auth.secretRef.name")),
                    format!("invalid Secret name: {err}"),
                ));
            }
            if let Some(h) = &a.header {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    diags.push(
                        Diagnostic::error(
                            "invalid-header",
                            Some(at("validation.auth.header")),
                            format!("`{h}` is not a valid HTTP header name"),
                        )
                        .hint("letters, digits and `-`, e.g. `Authorization` or `X-Api-Key`"),
                    );
                }
            }
        }
    }
    if let Some(t) = &spec.tools {
        let allow: BTreeSet<&String> = t.allow_list.iter().flatten().collect();
        for (i, d) in t.deny_list.iter().flatten().enumerate() {
            if allow.contains(d) {
                diags.push(Diagnostic::warning(
                    "tool-allowed-and-denied",
                    Some(at(&format!("tools.denyList.{i}"))),
                    format!("tool `{d}` is in both allowList and denyList; the deny wins"),
                ));
            }
        }
    }
    if spec.mode == Mode::Container {
        check_workload(s, diags);
    }
}

fn is_cluster_local(u: &url::Url) -> bool {
    u.host_str().is_some_and(|h| {
        h.ends_with(".svc")
            || h.ends_with(".cluster.local")
            || h == "localhost"
            || h.starts_with("127.")
            || !h.contains('.')
    })
}

fn check_workload(s: &ResolvedServer, diags: &mut Diagnostics) {
    let spec = &s.spec;
    let at = |path: &str| s.locate(&p(path));
    // Env: unique names, one source each, valid references.
    let mut env_names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, e) in spec.env.iter().flatten().enumerate() {
        if e.name.is_empty() || e.name.contains('=') {
            diags.push(Diagnostic::error(
                "invalid-env",
                Some(at(&format!("env.{i}.name"))),
                format!("invalid environment variable name `{}`", e.name),
            ));
        }
        if let Some(first) = env_names.insert(e.name.as_str(), i) {
            diags.push(
                Diagnostic::error(
                    "duplicate-env",
                    Some(at(&format!("env.{i}.name"))),
                    format!("environment variable `{}` is set twice", e.name),
                )
                .note(Some(at(&format!("env.{first}.name"))), "first set here")
                .hint("server-side apply rejects duplicate names in `env`; keep one"),
            );
        }
        if e.value.is_some() && e.value_from.is_some() {
            diags.push(Diagnostic::error(
                "invalid-env",
                Some(at(&format!("env.{i}"))),
                format!("`env` entry `{}` has both `value` and `valueFrom`", e.name),
            ));
        }
        if let Some(vf) = &e.value_from {
            if let Some(r) = &vf.secret_key_ref {
                if let Err(err) = units::check_dns1123_subdomain(&r.name) {
                    diags.push(Diagnostic::error(
                        "invalid-name",
                        Some(at(&format!("env.{i}.valueFrom.secretKeyRef.name"))),
                        format!("invalid Secret name: {err}"),
                    ));
                }
            }
            if let Some(r) = &vf.config_map_key_ref {
                if let Err(err) = units::check_dns1123_subdomain(&r.name) {
                    diags.push(Diagnostic::error(
                        "invalid-name",
                        Some(at(&format!("env.{i}.valueFrom.configMapKeyRef.name"))),
                        format!("invalid ConfigMap name: {err}"),
                    ));
                }
            }
            let sources = [
                vf.secret_key_ref.is_some(),
                vf.config_map_key_ref.is_some(),
                vf.field_ref.is_some(),
                vf.resource_field_ref.is_some(),
            ];
            if sources.iter().filter(|b| **b).count() != 1 {
                diags.push(Diagnostic::error("invalid-env", Some(at(&format!("env.{i}.valueFrom"))), "`valueFrom` needs exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef"));
            }
        }
        if let Some(v) = &e.value {
            let upper = e.name.to_uppercase();
            if (upper.contains("TOKEN")
                || upper.contains("SECRET")
                || upper.contains("PASSWORD")
                || upper.ends_with("_KEY"))
                && !v.is_empty()
                && !v.starts_with("$(")
            {
                diags.push(
                    Diagnostic::warning(
                        "secret-in-plain-env",
                        Some(at(&format!("env.{i}.value"))),
                        format!(
                            "`{}` looks like a secret but is written in plain text",
                            e.name
                        ),
                    )
                    .hint("store it in a Secret and use `valueFrom.secretKeyRef`"),
                );
            }
        }
    }
    // Resources: quantities, requests <= limits.
    if let Some(r) = &spec.resources {
        for (kind, map) in [("requests", &r.requests), ("limits", &r.limits)] {
            for (res, q) in map.iter().flatten() {
                if let Err(e) = units::check_quantity(&q.0) {
                    diags.push(Diagnostic::error(
                        "invalid-quantity",
                        Some(at(&format!("resources.{kind}.{res}"))),
                        format!("invalid `resources.{kind}.{res}`: {e}"),
                    ));
                }
            }
        }
        for (res, req) in r.requests.iter().flatten() {
            let Some(lim) = r.limits.as_ref().and_then(|l| l.get(res)) else {
                continue;
            };
            if let (Some(a), Some(b)) = (quantity_value(&req.0), quantity_value(&lim.0)) {
                if a > b {
                    diags.push(
                        Diagnostic::error(
                            "request-above-limit",
                            Some(at(&format!("resources.requests.{res}"))),
                            format!("`{res}` request {} is above its limit {}", req.0, lim.0),
                        )
                        .note(Some(at(&format!("resources.limits.{res}"))), "the limit")
                        .hint("the API server rejects a request above its limit"),
                    );
                }
            }
        }
    }
    // Volumes: names, one source, mount paths.
    let mut vol_names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut mounts: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if let Err(e) = units::check_dns1123_label(&v.name) {
            diags.push(Diagnostic::error(
                "invalid-name",
                Some(at(&format!("volumes.{i}.name"))),
                format!("invalid volume name: {e}"),
            ));
        }
        if v.name == "tmp" {
            diags.push(
                Diagnostic::error(
                    "reserved-name",
                    Some(at(&format!("volumes.{i}.name"))),
                    "volume name `tmp` is reserved for hangar's writable /tmp",
                )
                .hint("choose another name"),
            );
        }
        if let Some(first) = vol_names.insert(v.name.as_str(), i) {
            diags.push(
                Diagnostic::error(
                    "duplicate-volume",
                    Some(at(&format!("volumes.{i}.name"))),
                    format!("volume `{}` is defined twice", v.name),
                )
                .note(
                    Some(at(&format!("volumes.{first}.name"))),
                    "first defined here",
                ),
            );
        }
        if !v.mount_path.starts_with('/') {
            diags.push(Diagnostic::error(
                "invalid-path",
                Some(at(&format!("volumes.{i}.mountPath"))),
                format!("mountPath `{}` must be absolute", v.mount_path),
            ));
        }
        if let Some(first) = mounts.insert(v.mount_path.as_str(), i) {
            diags.push(
                Diagnostic::error(
                    "duplicate-mount",
                    Some(at(&format!("volumes.{i}.mountPath"))),
                    format!("two volumes are mounted at `{}`", v.mount_path),
                )
                .note(
                    Some(at(&format!("volumes.{first}.mountPath"))),
                    "first mounted here",
                ),
            );
        }
        let n = [
            v.persistent_volume_claim.is_some(),
            v.config_map.is_some(),
            v.secret.is_some(),
            v.empty_dir.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if n != 1 {
            diags.push(
                Diagnostic::error(
                    "volume-source",
                    Some(at(&format!("volumes.{i}"))),
                    format!("volume `{}` needs exactly one source, found {n}", v.name),
                )
                .hint("one of: persistentVolumeClaim, configMap, secret, emptyDir"),
            );
        }
        if let Some(e) = &v.empty_dir {
            if let Some(q) = &e.size_limit {
                if let Err(err) = units::check_quantity(&q.0) {
                    diags.push(Diagnostic::error(
                        "invalid-quantity",
                        Some(at(&format!("volumes.{i}.emptyDir.sizeLimit"))),
                        err,
                    ));
                }
            }
            if let Some(m) = &e.medium {
                if !m.is_empty() && m != "Memory" {
                    diags.push(Diagnostic::error(
                        "unknown-enum-value",
                        Some(at(&format!("volumes.{i}.emptyDir.medium"))),
                        format!("emptyDir medium `{m}` must be \"\" or `Memory`"),
                    ));
                }
            }
        }
        for (path, name) in [
            ("configMap.name", v.config_map.as_ref().map(|c| &c.name)),
            (
                "secret.secretName",
                v.secret.as_ref().map(|c| &c.secret_name),
            ),
            (
                "persistentVolumeClaim.claimName",
                v.persistent_volume_claim.as_ref().map(|c| &c.claim_name),
            ),
        ] {
            if let Some(name) = name {
                if let Err(e) = units::check_dns1123_subdomain(name) {
                    diags.push(Diagnostic::error(
                        "invalid-name",
                        Some(at(&format!("volumes.{i}.{path}"))),
                        e,
                    ));
                }
            }
        }
    }
    // Names that must be valid references.
    if let Some(sa) = &spec.service_account_name {
        if let Err(e) = units::check_dns1123_subdomain(sa) {
            diags.push(Diagnostic::error(
                "invalid-name",
                Some(at("serviceAccountName")),
                format!("invalid serviceAccountName: {e}"),
            ));
        }
    }
    for (i, ps) in spec.image_pull_secrets.iter().flatten().enumerate() {
        if let Err(e) = units::check_dns1123_subdomain(&ps.name) {
            diags.push(Diagnostic::error(
                "invalid-name",
                Some(at(&format!("imagePullSecrets.{i}.name"))),
                format!("invalid image pull Secret name: {e}"),
            ));
        }
    }
    for (k, v) in spec.node_selector.iter().flatten() {
        let span = at(&format!("nodeSelector.{k}"));
        if let Err(e) = units::check_label_key(k) {
            diags.push(Diagnostic::error("invalid-label", Some(span), e));
        }
        if let Err(e) = units::check_label_value(v) {
            diags.push(Diagnostic::error("invalid-label", Some(span), e));
        }
    }
    // Ports.
    let port = s.settings.port;
    if let Some(m) = spec.observability.as_ref().and_then(|o| o.metrics.as_ref()) {
        if m.enabled == Some(true) && m.port == Some(port) {
            diags.push(
                Diagnostic::error(
                    "port-conflict",
                    Some(at("observability.metrics.port")),
                    format!("metrics port {port} is also the MCP port"),
                )
                .hint("use another port for metrics"),
            );
        }
    }
    // Autoscaling and disruption budget.
    if let Some(h) = spec.hpa.as_ref().filter(|h| h.enabled == Some(true)) {
        let (min, max) = (h.min_replicas.unwrap_or(1), h.max_replicas.unwrap_or(1));
        if min > max {
            diags.push(
                Diagnostic::error(
                    "hpa-range",
                    Some(at("hpa.minReplicas")),
                    format!("hpa.minReplicas ({min}) is above hpa.maxReplicas ({max})"),
                )
                .note(Some(at("hpa.maxReplicas")), "maxReplicas"),
            );
        }
        let has_cpu_request = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .is_some_and(|r| r.contains_key("cpu"));
        if !has_cpu_request {
            diags.push(
                Diagnostic::warning("hpa-without-requests", Some(at("hpa.enabled")), "the autoscaler measures CPU against requests, but `resources.requests.cpu` is not set")
                    .hint("set resources.requests.cpu, or the HPA cannot compute utilization"),
            );
        }
        if s.user.has("replicas") {
            diags.push(Diagnostic::warning("ignored-field", Some(at("replicas")), "`replicas` is ignored while hpa.enabled is true (the autoscaler owns the replica count)"));
        }
    }
    if let Some(pdb) = spec
        .pod_disruption_budget
        .as_ref()
        .filter(|p| p.enabled == Some(true))
    {
        if pdb.min_available.is_some() && pdb.max_unavailable.is_some() {
            diags.push(Diagnostic::error(
                "pdb-both",
                Some(at("podDisruptionBudget.minAvailable")),
                "set either podDisruptionBudget.minAvailable or maxUnavailable, not both",
            ));
        }
        if spec.replicas.unwrap_or(1) <= 1
            && pdb.min_available.is_some()
            && spec.hpa.as_ref().and_then(|h| h.enabled) != Some(true)
        {
            diags.push(Diagnostic::warning(
                "pdb-blocks-drain",
                Some(at("podDisruptionBudget.minAvailable")),
                "with one replica, minAvailable blocks every voluntary eviction (node drains hang)",
            ));
        }
    }
    // The restricted Pod Security profile: overrides that break it are allowed, but said.
    if let Some(sc) = &spec.security_context {
        let mut broken = Vec::new();
        if sc.privileged == Some(true) {
            broken.push(("securityContext.privileged", "privileged containers"));
        }
        if sc.allow_privilege_escalation == Some(true) {
            broken.push((
                "securityContext.allowPrivilegeEscalation",
                "privilege escalation",
            ));
        }
        if sc.run_as_non_root == Some(false) {
            broken.push(("securityContext.runAsNonRoot", "running as root"));
        }
        if sc.run_as_user == Some(0) {
            if sc.run_as_non_root != Some(false) {
                diags.push(
                    Diagnostic::error("root-with-run-as-non-root", Some(at("securityContext.runAsUser")), "runAsUser 0 (root) contradicts runAsNonRoot: the pod would never start")
                        .hint("pick a non-zero user, or also set runAsNonRoot: false (not allowed under the restricted profile)"),
                );
            } else {
                broken.push(("securityContext.runAsUser", "running as root"));
            }
        }
        if let Some(caps) = &sc.capabilities {
            if !caps.drop.iter().flatten().any(|c| c == "ALL") {
                broken.push((
                    "securityContext.capabilities.drop",
                    "keeping capabilities (drop must include ALL)",
                ));
            }
            if caps.add.iter().flatten().any(|c| c != "NET_BIND_SERVICE") {
                broken.push((
                    "securityContext.capabilities.add",
                    "adding capabilities other than NET_BIND_SERVICE",
                ));
            }
        }
        if sc
            .seccomp_profile
            .as_ref()
            .is_some_and(|p| p.type_ == "Unconfined")
        {
            broken.push((
                "securityContext.seccompProfile",
                "an Unconfined seccomp profile",
            ));
        }
        for (path, what) in broken {
            diags.push(
                Diagnostic::warning("not-restricted", Some(at(path)), format!("{what} breaks the restricted Pod Security Standard"))
                    .hint("namespaces enforcing `pod-security.kubernetes.io/enforce: restricted` will reject these pods"),
            );
        }
    }
}
