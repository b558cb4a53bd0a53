//! What a container-mode MCPServer becomes: ServiceAccount, Deployment, Service, NetworkPolicy,
//! and where asked a HorizontalPodAutoscaler and a PodDisruptionBudget. Remote mode renders none.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    ClientIPConfig, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    KeyToPath, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, SeccompProfile, SecretVolumeSource, Service, ServiceAccount, ServicePort, ServiceSpec,
    SessionAffinityConfig, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::Sink;
use super::labels::{
    self, COMPONENT_SERVER, CONFIG_HASH_ANNOTATION, MCP_SERVER_POD_LABEL, SCALED_BY_ANNOTATION,
    SCALED_BY_GATEWAY, SERVER_LABEL,
};
use crate::api::server::{Mode, ServiceAffinity};
use crate::compile::resolve::{ResolvedServer, SOURCE_ANNOTATION};
use crate::compile::settings::whole_secs;

pub(super) const CONTAINER: &str = "mcp";
/// The name of the MCP port of a container server's Service (and so of its EndpointSlices' port).
pub const PORT_NAME: &str = "mcp";
pub(super) const METRICS_PORT_NAME: &str = "metrics";

fn meta(s: &ResolvedServer, labels: &BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(s.meta.name.clone()),
        namespace: Some(s.meta.namespace.clone()),
        labels: Some(labels.clone()),
        ..ObjectMeta::default()
    }
}

fn selector(s: &ResolvedServer) -> BTreeMap<String, String> {
    BTreeMap::from([(SERVER_LABEL.to_string(), s.meta.name.clone())])
}

/// The server's labels without `hangar apply`'s inventory label: where a server was applied from
/// is not part of what it is, so it neither reaches its pods nor changes its config hash.
fn own_labels(l: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    l.iter()
        .filter(|(k, _)| k.as_str() != super::labels::INVENTORY_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The server's annotations without its provenance (`mcp-hangar.io/source`: the catalog, and
/// for Git the commit, it came from): a commit that leaves a server's definition as it was must
/// not roll its pods.
fn own_annotations(a: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    a.iter()
        .filter(|(k, _)| {
            k.as_str() != SOURCE_ANNOTATION
                && k.as_str() != crate::compile::convert::CONVERTED_FROM_ANNOTATION
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Short hash of the resolved definition: a change of anything the server is made from rolls its
/// pods (where it was found is not part of what it is).
pub fn config_hash(s: &ResolvedServer) -> String {
    // The JSON text is hashed in one go (hashing it write by write costs more than the hash).
    let mut text = Vec::with_capacity(4096);
    // The typed spec serialises to the same JSON text as its `to_value` (`spec_json`).
    // Serialising to a Vec cannot fail; were it to, the hash would still be deterministic.
    // The same text as the tuple (spec, labels, annotations), less the Service's session
    // affinity: the last field of the spec, and no part of the pods' configuration (so it
    // neither rolls them when it changes nor changed every hash when it was added).
    text.push(b'[');
    let _ = serde_json::to_writer(&mut text, &s.spec);
    if let Some(a) = s.spec.session_affinity {
        let field = format!(",\"sessionAffinity\":\"{}\"}}", a.as_str());
        if text.ends_with(field.as_bytes()) {
            text.truncate(text.len() - field.len());
            text.push(b'}');
        }
    }
    text.push(b',');
    let _ = serde_json::to_writer(&mut text, &own_labels(&s.meta.labels));
    text.push(b',');
    let _ = serde_json::to_writer(&mut text, &own_annotations(&s.meta.annotations));
    text.push(b']');
    let digest = Sha256::digest(&text);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hash = String::with_capacity(16);
    for b in digest.iter().take(8) {
        hash.push(HEX[usize::from(b >> 4)] as char);
        hash.push(HEX[usize::from(b & 0xf)] as char);
    }
    hash
}
/// Renders the objects a server runs as into `out`.
pub fn children(s: &ResolvedServer, out: &mut impl Sink) {
    let set = &s.settings;
    if set.mode == Mode::Remote {
        return;
    }
    let labels = labels::standard(&s.meta.name, COMPONENT_SERVER, SERVER_LABEL);
    if set.own_service_account {
        let sa = ServiceAccount {
            metadata: meta(s, &labels),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        };
        out.child(&sa, s.span);
    }
    out.child(&deployment(s, &labels), s.span);
    out.child(&service(s, &labels), s.span);
    if let Some(np) = &set.network_policy {
        out.child(&network_policy(s, np, &labels), s.span);
    }
    scaling(s, out);
}

/// The HorizontalPodAutoscaler and PodDisruptionBudget of a container server, where asked.
pub(super) fn scaling(s: &ResolvedServer, out: &mut impl Sink) {
    let set = &s.settings;
    if set.autoscaling.is_none() && set.disruption_budget.is_none() {
        return;
    }
    let labels = labels::standard(&s.meta.name, COMPONENT_SERVER, SERVER_LABEL);
    if let Some(h) = &set.autoscaling {
        let hpa = HorizontalPodAutoscaler {
            metadata: meta(s, &labels),
            spec: HorizontalPodAutoscalerSpec {
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: "Deployment".into(),
                    name: s.meta.name.clone(),
                },
                min_replicas: Some(h.min_replicas),
                max_replicas: h.max_replicas,
                metrics: Some(vec![MetricSpec {
                    type_: "Resource".into(),
                    resource: Some(ResourceMetricSource {
                        name: "cpu".into(),
                        target: MetricTarget {
                            type_: "Utilization".into(),
                            average_utilization: Some(h.target_cpu_utilization_percentage),
                            ..MetricTarget::default()
                        },
                    }),
                    ..MetricSpec::default()
                }]),
                ..HorizontalPodAutoscalerSpec::default()
            },
            ..HorizontalPodAutoscaler::default()
        };
        out.child(&hpa, s.span);
    }
    if let Some(p) = &set.disruption_budget {
        let pdb = PodDisruptionBudget {
            metadata: meta(s, &labels),
            spec: Some(PodDisruptionBudgetSpec {
                selector: Some(LabelSelector {
                    match_labels: Some(selector(s)),
                    ..LabelSelector::default()
                }),
                min_available: p.min_available.clone(),
                max_unavailable: p.max_unavailable.clone(),
                ..PodDisruptionBudgetSpec::default()
            }),
            ..PodDisruptionBudget::default()
        };
        out.child(&pdb, s.span);
    }
}

fn tcp_probe(period: i32, timeout: i32, failure: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(PORT_NAME.into()),
            host: None,
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failure),
        success_threshold: Some(1),
        // 0 is the API default and the server drops it; rendering it would make every apply differ.
        ..Probe::default()
    }
}

/// Whether the probes are on, and their timeout, interval, failure threshold, startup period
/// and startup failure threshold.
pub(super) fn probe_timing(s: &ResolvedServer) -> (bool, i32, i32, i32, i32, i32) {
    let set = &s.settings;
    let hc = &set.health;
    let timeout = whole_secs(hc.timeout).clamp(1, 3600) as i32;
    let interval = whole_secs(hc.interval).clamp(1, 3600) as i32;
    let failures = hc.failure_threshold.max(1);
    let startup = whole_secs(set.startup_timeout).max(1);
    // The kubelet runs the readiness probe as soon as the startup probe passes, so its period
    // bounds how long a listening server waits to be Ready: 1 s for an on-demand server, whose
    // first request is waiting for exactly that.
    let period: i64 = if set.on_demand { 1 } else { 2 };
    let startup_failures = ((startup + period - 1) / period).clamp(1, 100_000) as i32;
    (
        hc.enabled,
        timeout,
        interval,
        failures,
        period as i32,
        startup_failures,
    )
}

/// A read-only root file system still needs a writable /tmp for most servers: an emptyDir,
/// unless a volume of the server is mounted there.
pub(super) fn needs_tmp(s: &ResolvedServer) -> bool {
    s.settings.read_only_root_filesystem
        && !s
            .spec
            .volumes
            .iter()
            .flatten()
            .any(|v| v.mount_path == "/tmp")
}

fn deployment(s: &ResolvedServer, labels: &BTreeMap<String, String>) -> Deployment {
    let spec = &s.spec;
    let set = &s.settings;
    let hash = config_hash(s);
    let port = set.port;
    // Pod labels: the server's own labels (so groups can select its pods), then hangar's (which win).
    let mut pod_labels: BTreeMap<String, String> = own_labels(&s.meta.labels);
    pod_labels.extend(labels.clone());
    pod_labels.insert(MCP_SERVER_POD_LABEL.into(), "true".into());
    let annotations = BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_string(), hash.clone())]);

    let (probes, timeout, interval, failures, startup_period, startup_failures) = probe_timing(s);

    let mut ports = vec![ContainerPort {
        name: Some(PORT_NAME.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }];
    if let Some(metrics_port) = set.metrics_port {
        ports.push(ContainerPort {
            name: Some(METRICS_PORT_NAME.into()),
            container_port: metrics_port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        });
    }

    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for v in spec.volumes.iter().flatten() {
        let items = |items: &Option<Vec<crate::api::server::KeyToPath>>| {
            items.as_ref().map(|i| {
                i.iter()
                    .map(|k| KeyToPath {
                        key: k.key.clone(),
                        path: k.path.clone(),
                        mode: None,
                    })
                    .collect()
            })
        };
        volumes.push(Volume {
            name: v.name.clone(),
            persistent_volume_claim: v.persistent_volume_claim.as_ref().map(|p| {
                PersistentVolumeClaimVolumeSource {
                    claim_name: p.claim_name.clone(),
                    read_only: v.read_only.filter(|r| *r),
                }
            }),
            config_map: v.config_map.as_ref().map(|c| ConfigMapVolumeSource {
                name: c.name.clone(),
                items: items(&c.items),
                default_mode: Some(0o644),
                ..ConfigMapVolumeSource::default()
            }),
            secret: v.secret.as_ref().map(|c| SecretVolumeSource {
                secret_name: Some(c.secret_name.clone()),
                items: items(&c.items),
                default_mode: Some(0o644),
                ..SecretVolumeSource::default()
            }),
            empty_dir: v.empty_dir.as_ref().map(|e| EmptyDirVolumeSource {
                medium: e.medium.clone(),
                size_limit: e.size_limit.clone(),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: v.name.clone(),
            mount_path: v.mount_path.clone(),
            sub_path: v.sub_path.clone(),
            // `false` is the API default and dropped by the server: only `true` is written.
            read_only: v
                .read_only
                .unwrap_or(v.config_map.is_some() || v.secret.is_some())
                .then_some(true),
            ..VolumeMount::default()
        });
    }
    if needs_tmp(s) {
        volumes.push(Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        });
    }

    let container = Container {
        name: CONTAINER.into(),
        image: spec.image.clone(),
        image_pull_policy: spec.image_pull_policy.map(|p| format!("{p:?}")),
        command: spec.command.clone(),
        args: spec.args.clone(),
        working_dir: spec.working_dir.clone(),
        ports: Some(ports),
        env: spec.env.clone().filter(|e| !e.is_empty()),
        resources: spec.resources.clone(),
        security_context: spec.security_context.clone(),
        volume_mounts: Some(mounts).filter(|m| !m.is_empty()),
        startup_probe: probes.then(|| tcp_probe(startup_period, 1, startup_failures)),
        readiness_probe: probes.then(|| tcp_probe(interval.min(10), timeout, failures)),
        liveness_probe: probes.then(|| tcp_probe(interval, timeout, failures)),
        termination_message_path: Some("/dev/termination-log".into()),
        termination_message_policy: Some("File".into()),
        ..Container::default()
    };
    // Who sets the replicas when hangar does not: the HPA, or the gateway (on demand).
    let mut deployment_annotations = annotations.clone();
    if set.on_demand {
        deployment_annotations.insert(SCALED_BY_ANNOTATION.into(), SCALED_BY_GATEWAY.into());
    }
    Deployment {
        metadata: ObjectMeta {
            annotations: Some(deployment_annotations),
            ..meta(s, labels)
        },
        spec: Some(DeploymentSpec {
            replicas: if set.autoscaling.is_some() || set.on_demand {
                None
            } else {
                Some(set.replicas)
            },
            selector: LabelSelector {
                match_labels: Some(selector(s)),
                ..LabelSelector::default()
            },
            revision_history_limit: Some(10),
            progress_deadline_seconds: Some(600),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::String("25%".into())),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(set.service_account.clone()),
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(set.run_as_non_root),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes).filter(|v| !v.is_empty()),
                    image_pull_secrets: spec.image_pull_secrets.clone(),
                    node_selector: spec.node_selector.clone(),
                    tolerations: spec.tolerations.clone(),
                    affinity: spec.affinity.clone(),
                    priority_class_name: spec.priority_class_name.clone(),
                    termination_grace_period_seconds: Some(whole_secs(set.shutdown_grace_period)),
                    restart_policy: Some("Always".into()),
                    dns_policy: Some("ClusterFirst".into()),
                    scheduler_name: Some("default-scheduler".into()),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn service(s: &ResolvedServer, labels: &BTreeMap<String, String>) -> Service {
    let port = s.settings.port;
    let affinity = s.spec.session_affinity.unwrap_or_default();
    let mut ports = vec![ServicePort {
        name: Some(PORT_NAME.into()),
        port,
        target_port: Some(IntOrString::String(PORT_NAME.into())),
        protocol: Some("TCP".into()),
        app_protocol: Some("http".into()),
        ..ServicePort::default()
    }];
    if let Some(metrics_port) = s.settings.metrics_port {
        ports.push(ServicePort {
            name: Some(METRICS_PORT_NAME.into()),
            port: metrics_port,
            target_port: Some(IntOrString::String(METRICS_PORT_NAME.into())),
            protocol: Some("TCP".into()),
            app_protocol: Some("http".into()),
            ..ServicePort::default()
        });
    }
    Service {
        metadata: meta(s, labels),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector(s)),
            ports: Some(ports),
            session_affinity: Some(affinity.as_str().into()),
            // Kubernetes' own default timeout, written out: nothing left for the cluster to fill in.
            session_affinity_config: (affinity == ServiceAffinity::ClientIp).then_some(
                SessionAffinityConfig {
                    client_ip: Some(ClientIPConfig {
                        timeout_seconds: Some(10800),
                    }),
                },
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn network_policy(
    s: &ResolvedServer,
    np: &crate::compile::settings::NetworkPolicy,
    labels: &BTreeMap<String, String>,
) -> NetworkPolicy {
    let allowed = &np.allowed_namespace_labels;
    let mut from = vec![
        // Pods of the server's own namespace.
        NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..NetworkPolicyPeer::default()
        },
        // hangar's controller (the MCP probe), wherever it runs.
        NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector::default()),
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (
                        "app.kubernetes.io/part-of".to_string(),
                        "hangar".to_string(),
                    ),
                    (
                        "app.kubernetes.io/component".to_string(),
                        "controller".to_string(),
                    ),
                ])),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        },
    ];
    if !allowed.is_empty() {
        from.push(NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(allowed.clone()),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        });
    }
    let mut ports = vec![NetworkPolicyPort {
        port: Some(IntOrString::String(PORT_NAME.into())),
        protocol: Some("TCP".into()),
        end_port: None,
    }];
    if s.settings.metrics_port.is_some() {
        ports.push(NetworkPolicyPort {
            port: Some(IntOrString::String(METRICS_PORT_NAME.into())),
            protocol: Some("TCP".into()),
            end_port: None,
        });
    }
    let restrict_egress = np.restrict_egress;
    let egress = restrict_egress.then(|| {
        let mut rules = vec![NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector::default()),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(vec![
                NetworkPolicyPort {
                    port: Some(IntOrString::Int(53)),
                    protocol: Some("UDP".into()),
                    end_port: None,
                },
                NetworkPolicyPort {
                    port: Some(IntOrString::Int(53)),
                    protocol: Some("TCP".into()),
                    end_port: None,
                },
            ]),
        }];
        if !allowed.is_empty() {
            rules.push(NetworkPolicyEgressRule {
                to: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(LabelSelector {
                        match_labels: Some(allowed.clone()),
                        ..LabelSelector::default()
                    }),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: None,
            });
        }
        rules
    });
    let mut policy_types = vec!["Ingress".to_string()];
    if restrict_egress {
        policy_types.push("Egress".into());
    }
    NetworkPolicy {
        metadata: meta(s, labels),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector(s)),
                ..LabelSelector::default()
            }),
            policy_types: Some(policy_types),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(from),
                ports: Some(ports),
            }]),
            egress,
        }),
    }
}
