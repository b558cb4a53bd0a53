//! Peer operators' resources converted to hangar's: vitorbari's `mcp.mcp-operator.io/v1`
//! MCPServer (seed 002) becomes an `mcp-hangar.io/v1alpha1` MCPServer before it is read, so it
//! goes through the same schema check, resolve, check and render as a native one.
//!
//! The converted document is built from the original's nodes, so every later diagnostic points
//! into the file the user wrote. A field is converted only where hangar has an exact equivalent;
//! a value that has the same effect as what hangar renders anyway (`service.type: ClusterIP`) is
//! accepted; anything else is a located error naming the field, with a hint saying what to write.

use super::diag::{Diagnostic, Diagnostics, Span, did_you_mean};
use super::node::{Node, Value};

/// vitorbari's mcp-operator (github.com/vitorbari/mcp-operator, `api/v1/mcpserver_types.go`).
pub const VITORBARI_GROUP: &str = "mcp.mcp-operator.io";
pub const VITORBARI_API_VERSION: &str = "mcp.mcp-operator.io/v1";
/// On a converted resource (and so on the MCPServer hangar renders): what it was converted from.
pub const CONVERTED_FROM_ANNOTATION: &str = "mcp-hangar.io/converted-from";

/// Whether an object is some MCP operator's (its API group's name contains `mcp`, or its kind
/// starts with `MCP`, as ToolHive's `toolhive.stacklok.dev` MCPServer): kinds hangar does not
/// convert are named in a warning rather than passed on silently. Ordinary Kubernetes kinds
/// are not.
pub fn is_mcp_kind(group: &str, kind: &str) -> bool {
    group.to_ascii_lowercase().contains("mcp") || kind.starts_with("MCP")
}

/// The seed operator's newer API (github.com/mcp-hangar/mcp-hangar-operator, `api/v1alpha2`):
/// hangar's fields, with durations as Go durations (`5m0s`, which hangar reads as they are),
/// tracing's `samplingRate` as a string, and a few additions hangar has no equivalent for.
pub const HANGAR_V1ALPHA2: &str = "mcp-hangar.io/v1alpha2";

/// What [`converts`] accepts, for messages.
pub const CONVERTED_KINDS: &str = "`mcp.mcp-operator.io/v1` MCPServer, `mcp-hangar.io/v1alpha2` MCPServer/MCPServerGroup/MCPDiscoverySource and `mcp.x-k8s.io/v1alpha1|v1beta1` MCPServer";

/// Whether `hangar` converts documents of this apiVersion and kind.
pub fn converts(api_version: &str, kind: &str) -> bool {
    match api_version {
        VITORBARI_API_VERSION => kind == "MCPServer",
        HANGAR_V1ALPHA2 => matches!(kind, "MCPServer" | "MCPServerGroup" | "MCPDiscoverySource"),
        SIG_V1ALPHA1 | SIG_V1BETA1 => kind == "MCPServer",
        _ => false,
    }
}

/// The Kubernetes SIG Apps lifecycle operator (github.com/kubernetes-sigs/mcp-lifecycle-operator,
/// `api/v1alpha1` and `api/v1beta1`, the same MCPServer fields).
pub const SIG_V1ALPHA1: &str = "mcp.x-k8s.io/v1alpha1";
pub const SIG_V1BETA1: &str = "mcp.x-k8s.io/v1beta1";

/// A SIG lifecycle operator MCPServer (`source`, `config`, `runtime`, `mcp`, ...) as hangar's.
fn sig_server(doc: &Node, av: &str, diags: &mut Diagnostics) -> Option<Converted> {
    let mut c = Conv {
        diags,
        what: if av == SIG_V1BETA1 {
            "mcp.x-k8s.io/v1beta1 MCPServer"
        } else {
            "mcp.x-k8s.io/v1alpha1 MCPServer"
        },
    };
    let mut top = Map::default();
    for (k, v) in entries(doc) {
        match k.key_text().as_ref() {
            "apiVersion" => top.put(
                "apiVersion",
                k.span,
                string(crate::api::API_VERSION, v.span),
            ),
            "metadata" => top.put(
                "metadata",
                k.span,
                with_provenance(v, &format!("{av} MCPServer")),
            ),
            "status" | "spec" => {}
            _ => top.put(&k.key_str(), k.span, v.clone()),
        }
    }
    let (Some(spec_key), Some(spec)) = (doc.key_node("spec"), doc.get("spec")) else {
        c.diags.push(
            Diagnostic::error(
                "missing-field",
                Some(doc.span),
                format!("missing required field `spec` of {}", c.what),
            )
            .hint("add `spec: {source: {type: ContainerImage, containerImage: {ref: ...}}, config: {port: ...}}`"),
        );
        return None;
    };
    let mut out = Map::default();
    out.put("mode", spec_key.span, string("container", spec_key.span));
    // The peer's Service pins clients to one pod unless the server says it is stateless.
    let stateless = spec
        .get("mcp")
        .and_then(|m| m.get("stateless"))
        .and_then(|s| c.boolean(s, "spec.mcp.stateless"))
        .unwrap_or(false);
    let affinity = if stateless { "None" } else { "ClientIP" };
    out.put(
        "sessionAffinity",
        spec_key.span,
        string(affinity, spec_key.span),
    );
    let mut resources_seen = false;
    for (k, v) in c.mapping(spec, "spec").to_vec() {
        match k.key_text().as_ref() {
            "source" => sig_source(&mut c, &v, &mut out),
            "config" => sig_config(&mut c, &v, &mut out),
            "runtime" => {
                for (rk, rv) in c.mapping(&v, "spec.runtime").to_vec() {
                    match rk.key_text().as_ref() {
                        "replicas" => out.put("replicas", rk.span, rv.clone()),
                        "resources" => {
                            resources_seen = true;
                            out.put("resources", rk.span, rv.clone());
                        }
                        "security" => {
                            for (sk, sv) in c.mapping(&rv, "spec.runtime.security").to_vec() {
                                match sk.key_text().as_ref() {
                                    "serviceAccountName" => out.put("serviceAccountName", sk.span, sv.clone()),
                                    "securityContext" => out.put("securityContext", sk.span, sv.clone()),
                                    "podSecurityContext" => c.no_equivalent(
                                        &sk,
                                        "spec.runtime.security.podSecurityContext",
                                        "hangar sets the pod's security context itself (runAsNonRoot, seccomp RuntimeDefault); put container settings in `securityContext`",
                                    ),
                                    _ => c.unknown(&sk, "spec.runtime.security", &["serviceAccountName", "podSecurityContext", "securityContext"]),
                                }
                            }
                        }
                        "health" => {
                            if !entries(&rv).is_empty() {
                                c.no_equivalent(
                                    &rk,
                                    "spec.runtime.health",
                                    "hangar renders its own probes (TCP on the MCP port) and the controller checks MCP itself; remove `health` (or set `healthCheck.enabled: false` in a hangar MCPServer for no probes)",
                                );
                            }
                        }
                        _ => c.unknown(&rk, "spec.runtime", &["replicas", "security", "resources", "health"]),
                    }
                }
            }
            "mcp" => {
                for (mk, _) in entries(&v) {
                    if mk.key_text() != "stateless" {
                        c.unknown(mk, "spec.mcp", &["stateless"]);
                    }
                }
            }
            "network" => {
                if !entries(&v).is_empty() {
                    c.no_equivalent(
                        &k,
                        "spec.network",
                        "hangar renders its own NetworkPolicy: allow client namespaces with `networkPolicy.allowedNamespaceLabels`, and limit egress to DNS and those namespaces with `networkPolicy.restrictEgress: true`",
                    );
                }
            }
            "transport" => c.no_equivalent(
                &k,
                "spec.transport",
                "hangar's probe speaks plain HTTP to in-cluster servers; serve MCP without TLS inside the cluster, or run it as `mode: remote` with an https `endpoint`",
            ),
            "gateway" => c.no_equivalent(
                &k,
                "spec.gateway",
                "hangar creates no MCPGatewayBinding; route to the server's Service with your own HTTPRoute or Ingress",
            ),
            "extraLabels" => {
                if !entries(&v).is_empty() {
                    c.no_equivalent(
                        &k,
                        "spec.extraLabels",
                        "hangar copies the server's own labels to its pods: move them to `metadata.labels`",
                    );
                }
            }
            "extraAnnotations" => {
                if !entries(&v).is_empty() {
                    c.no_equivalent(
                        &k,
                        "spec.extraAnnotations",
                        "hangar's Deployment, pods and Service carry no user annotations; remove them",
                    );
                }
            }
            _ => c.unknown(
                &k,
                "spec",
                &["source", "config", "runtime", "mcp", "network", "transport", "gateway", "extraLabels", "extraAnnotations"],
            ),
        }
    }
    if !resources_seen {
        // The peer's defaults when `runtime.resources` is not set, written out.
        let s = spec_key.span;
        let quantities = |cpu: &str, memory: &str| {
            let mut m = Map::default();
            m.put("cpu", s, string(cpu, s));
            m.put("memory", s, string(memory, s));
            m.node(s)
        };
        let mut r = Map::default();
        r.put("requests", s, quantities("50m", "64Mi"));
        r.put("limits", s, quantities("500m", "256Mi"));
        out.put("resources", s, r.node(s));
    }
    let summary = summary(&out);
    top.put("spec", spec_key.span, out.node(spec.span));
    Some(Converted {
        doc: top.node(doc.span),
        summary,
    })
}

fn sig_source(c: &mut Conv<'_>, v: &Node, out: &mut Map) {
    for (k, sv) in c.mapping(v, "spec.source").to_vec() {
        match k.key_text().as_ref() {
            "type" => c.only(
                &k,
                &sv,
                "spec.source.type",
                &["ContainerImage"],
                "hangar runs container images (`image`) or remote endpoints (`mode: remote`)",
            ),
            "containerImage" => {
                for (ik, iv) in c.mapping(&sv, "spec.source.containerImage").to_vec() {
                    match ik.key_text().as_ref() {
                        "ref" => out.put("image", ik.span, iv.clone()),
                        "pullPolicy" => out.put("imagePullPolicy", ik.span, iv.clone()),
                        "imagePullSecrets" => out.put("imagePullSecrets", ik.span, iv.clone()),
                        _ => c.unknown(
                            &ik,
                            "spec.source.containerImage",
                            &["ref", "pullPolicy", "imagePullSecrets"],
                        ),
                    }
                }
            }
            _ => c.unknown(&k, "spec.source", &["type", "containerImage"]),
        }
    }
}

fn sig_config(c: &mut Conv<'_>, v: &Node, out: &mut Map) {
    for (k, cv) in c.mapping(v, "spec.config").to_vec() {
        match k.key_text().as_ref() {
            "port" => out.put("port", k.span, cv.clone()),
            "path" => out.put("path", k.span, cv.clone()),
            "arguments" => out.put("args", k.span, cv.clone()),
            "env" => out.put("env", k.span, cv.clone()),
            "envFrom" => c.no_equivalent(
                &k,
                "spec.config.envFrom",
                "hangar sets variables one by one: list each in `env` with `valueFrom.secretKeyRef` or `configMapKeyRef`",
            ),
            "storage" => {
                let mut volumes = Vec::new();
                for (i, item) in seq(Some(&cv)).iter().enumerate() {
                    volumes.push(sig_storage(c, item, i));
                }
                out.put("volumes", k.span, Node::new(Value::Seq(volumes.into()), cv.span));
            }
            _ => c.unknown(&k, "spec.config", &["port", "arguments", "env", "envFrom", "storage", "path"]),
        }
    }
}

/// `storage[] {path, permissions, source {type, configMap | secret | emptyDir}}` as a hangar
/// volume named `storage-<i>`.
fn sig_storage(c: &mut Conv<'_>, item: &Node, i: usize) -> Node {
    let mut m = Map::default();
    let s = item.span;
    m.put("name", s, string(&format!("storage-{i}"), s));
    let mut read_only = true; // the peer's default: ReadOnly
    let mut ro_span = s;
    for (k, v) in entries(item) {
        match k.key_text().as_ref() {
            "path" => m.put("mountPath", k.span, v.clone()),
            "permissions" => {
                ro_span = v.span;
                match v.as_str() {
                    Some("ReadOnly") => read_only = true,
                    Some("ReadWrite") => read_only = false,
                    _ => c.only(
                        k,
                        v,
                        "spec.config.storage[].permissions",
                        &["ReadOnly", "ReadWrite"],
                        "hangar mounts read-only (`readOnly: true`) or read-write; RecursiveReadOnly has no equivalent",
                    ),
                }
            }
            "source" => {
                for (sk, sv) in entries(v) {
                    match sk.key_text().as_ref() {
                        "type" => {}
                        "configMap" => m.put(
                            "configMap",
                            sk.span,
                            source(
                                c,
                                sv,
                                &["name", "items"],
                                "configMap",
                                "spec.config.storage[].source",
                            ),
                        ),
                        "secret" => m.put(
                            "secret",
                            sk.span,
                            source(
                                c,
                                sv,
                                &["secretName", "items"],
                                "secret",
                                "spec.config.storage[].source",
                            ),
                        ),
                        "emptyDir" => m.put(
                            "emptyDir",
                            sk.span,
                            source(
                                c,
                                sv,
                                &["medium", "sizeLimit"],
                                "emptyDir",
                                "spec.config.storage[].source",
                            ),
                        ),
                        _ => c.unknown(
                            sk,
                            "spec.config.storage[].source",
                            &["type", "configMap", "secret", "emptyDir"],
                        ),
                    }
                }
            }
            _ => c.unknown(
                k,
                "spec.config.storage[]",
                &["path", "permissions", "source"],
            ),
        }
    }
    m.put(
        "readOnly",
        ro_span,
        Node::new(Value::Bool(read_only), ro_span),
    );
    m.node(s)
}

/// Converts a document [`converts`] accepts (its apiVersion and kind read from it).
pub fn convert(doc: &Node, diags: &mut Diagnostics) -> Option<Converted> {
    let av = doc.get("apiVersion").and_then(Node::as_str).unwrap_or("");
    let kind = doc.get("kind").and_then(Node::as_str).unwrap_or("");
    match av {
        VITORBARI_API_VERSION => vitorbari_server(doc, diags),
        HANGAR_V1ALPHA2 => Some(hangar_v1alpha2(doc, kind, diags)),
        SIG_V1ALPHA1 | SIG_V1BETA1 => sig_server(doc, av, diags),
        _ => None,
    }
}

/// An `mcp-hangar.io/v1alpha2` MCPServer, MCPServerGroup or MCPDiscoverySource as v1alpha1.
fn hangar_v1alpha2(doc: &Node, kind: &str, diags: &mut Diagnostics) -> Converted {
    let mut c = Conv {
        diags,
        what: match kind {
            "MCPServerGroup" => "mcp-hangar.io/v1alpha2 MCPServerGroup",
            "MCPDiscoverySource" => "mcp-hangar.io/v1alpha2 MCPDiscoverySource",
            _ => "mcp-hangar.io/v1alpha2 MCPServer",
        },
    };
    let mut top = Map::default();
    for (k, v) in entries(doc) {
        match k.key_text().as_ref() {
            "apiVersion" => top.put(
                "apiVersion",
                k.span,
                string(crate::api::API_VERSION, v.span),
            ),
            "metadata" => top.put(
                "metadata",
                k.span,
                with_provenance(v, &format!("{HANGAR_V1ALPHA2} {kind}")),
            ),
            "status" => {}
            "spec" if kind == "MCPServer" => {
                top.put("spec", k.span, v1alpha2_server_spec(&mut c, v, "spec"))
            }
            "spec" if kind == "MCPDiscoverySource" => {
                let mut spec = Map {
                    entries: entries(v).to_vec(),
                };
                if let Some(t) = v.get("providerTemplate") {
                    let mut tmpl = Map {
                        entries: entries(t).to_vec(),
                    };
                    if let (Some(sk), Some(sv)) = (t.key_node("spec"), t.get("spec")) {
                        let conv = v1alpha2_server_spec(&mut c, sv, "spec.providerTemplate.spec");
                        tmpl.put("spec", sk.span, conv);
                    }
                    let tk = v.key_node("providerTemplate").map_or(t.span, |n| n.span);
                    spec.put("providerTemplate", tk, tmpl.node(t.span));
                }
                top.put("spec", k.span, spec.node(v.span));
            }
            _ => top.put(&k.key_str(), k.span, v.clone()),
        }
    }
    Converted {
        doc: top.node(doc.span),
        summary: "the same fields".into(),
    }
}

/// A v1alpha2 MCPServer spec as v1alpha1: `samplingRate` a number; `capabilities` and
/// `securityContext.fsGroup` errors (no equivalent); everything else as it is (hangar's schema
/// check then reads it).
fn v1alpha2_server_spec(c: &mut Conv<'_>, spec: &Node, path: &str) -> Node {
    let mut out = Map::default();
    for (k, v) in c.mapping(spec, path).to_vec() {
        match k.key_text().as_ref() {
            "capabilities" => c.no_equivalent(
                &k,
                &format!("{path}.capabilities"),
                "hangar enforces no capability declarations: remove `capabilities`; `networkPolicy.restrictEgress: true` limits egress to DNS and the allowed namespaces, `tools.allowList`/`denyList` filter tools",
            ),
            "securityContext" => {
                let mut sc = Map::default();
                for (sk, sv) in entries(&v) {
                    if sk.key_text() == "fsGroup" {
                        c.no_equivalent(
                            sk,
                            &format!("{path}.securityContext.fsGroup"),
                            "hangar's securityContext is the container's, which has no fsGroup; remove it",
                        );
                    } else {
                        sc.put(&sk.key_str(), sk.span, sv.clone());
                    }
                }
                let node = if matches!(v.value, Value::Map(_)) { sc.node(v.span) } else { v.clone() };
                out.put("securityContext", k.span, node);
            }
            "observability" => {
                let mut obs = Map {
                    entries: entries(&v).to_vec(),
                };
                if let (Some(tk), Some(t)) = (v.key_node("tracing"), v.get("tracing")) {
                    let mut tracing = Map {
                        entries: entries(t).to_vec(),
                    };
                    if let (Some(rk), Some(r)) = (t.key_node("samplingRate"), t.get("samplingRate")) {
                        if let Value::Str(text) = &r.value {
                            match text.trim().parse::<f64>() {
                                Ok(f) if (0.0..=1.0).contains(&f) => {
                                    tracing.put("samplingRate", rk.span, Node::new(Value::Float(f), r.span))
                                }
                                _ => {
                                    tracing.entries.retain(|(k, _)| k.key_text() != "samplingRate");
                                    c.diags.push(Diagnostic::error(
                                    "type-mismatch",
                                    Some(r.span),
                                    format!("`{path}.observability.tracing.samplingRate` must be a number from 0 to 1, found {}", r.describe()),
                                ));
                                }
                            }
                        }
                    }
                    obs.put("tracing", tk.span, tracing.node(t.span));
                }
                out.put("observability", k.span, obs.node(v.span));
            }
            _ => out.put(&k.key_str(), k.span, v.clone()),
        }
    }
    out.node(spec.span)
}

fn key(name: &str, span: Span) -> Node {
    Node::new(Value::Str(name.into()), span)
}

fn string(value: &str, span: Span) -> Node {
    Node::new(Value::Str(value.into()), span)
}

/// A mapping under construction.
#[derive(Default)]
struct Map {
    entries: Vec<(Node, Node)>,
}

impl Map {
    fn put(&mut self, name: &str, key_span: Span, value: Node) {
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| k.key_text() == name) {
            slot.1 = value;
        } else {
            self.entries.push((key(name, key_span), value));
        }
    }

    fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.key_text() == name)
    }

    fn node(self, span: Span) -> Node {
        Node::new(Value::Map(self.entries.into()), span)
    }
}

fn entries(n: &Node) -> &[(Node, Node)] {
    match &n.value {
        Value::Map(e) => e,
        _ => &[],
    }
}

/// What the peer's field path is called in messages: `spec.transport.config.http.sse`.
struct Conv<'a> {
    diags: &'a mut Diagnostics,
    what: &'static str,
}

impl Conv<'_> {
    fn no_equivalent(&mut self, k: &Node, path: &str, hint: impl Into<String>) {
        self.diags.push(
            Diagnostic::error(
                "no-equivalent",
                Some(k.span),
                format!(
                    "`{path}` of {} has no equivalent in hangar's MCPServer",
                    self.what
                ),
            )
            .hint(hint),
        );
    }

    fn unknown(&mut self, k: &Node, path: &str, known: &[&str]) {
        let name = k.key_str();
        let mut d = Diagnostic::error(
            "unknown-field",
            Some(k.span),
            format!("unknown field `{path}.{name}` in {}", self.what),
        );
        d = match did_you_mean(&name, known.iter().copied()) {
            Some(best) => d.hint(format!("did you mean `{best}`?")),
            None => d.hint(format!("{path} has: {}", known.join(", "))),
        };
        self.diags.push(d);
    }

    /// The value must be a mapping: else an error, and no entries.
    fn mapping<'n>(&mut self, v: &'n Node, path: &str) -> &'n [(Node, Node)] {
        match &v.value {
            Value::Map(e) => e,
            Value::Null => &[],
            _ => {
                self.diags.push(Diagnostic::error(
                    "type-mismatch",
                    Some(v.span),
                    format!("`{path}` must be a mapping, found {}", v.describe()),
                ));
                &[]
            }
        }
    }

    fn boolean(&mut self, v: &Node, path: &str) -> Option<bool> {
        match v.value {
            Value::Bool(b) => Some(b),
            Value::Null => None,
            _ => {
                self.diags.push(Diagnostic::error(
                    "type-mismatch",
                    Some(v.span),
                    format!("`{path}` must be a boolean, found {}", v.describe()),
                ));
                None
            }
        }
    }

    /// A value that is accepted only when it equals what hangar does anyway.
    fn only(&mut self, k: &Node, v: &Node, path: &str, accepted: &[&str], hint: &str) {
        let text = match &v.value {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => return,
            _ => String::new(),
        };
        if !accepted.contains(&text.as_str()) {
            self.diags.push(
                Diagnostic::error(
                    "no-equivalent",
                    Some(v.span),
                    format!(
                        "`{path}: {text}` of {} has no equivalent in hangar's MCPServer (hangar renders {})",
                        self.what,
                        accepted.first().copied().unwrap_or("nothing")
                    ),
                )
                .hint(hint.to_string())
                .note(Some(k.span), "set here"),
            );
        }
    }
}

/// A summary of a conversion, for the warning that says what the resource became.
pub struct Converted {
    pub doc: Node,
    pub summary: String,
}

/// Converts a vitorbari `mcp.mcp-operator.io/v1` MCPServer document into a hangar
/// `mcp-hangar.io/v1alpha1` MCPServer document. Errors go to `diags`; the document is returned
/// even then, so the rest of it is still checked.
pub fn vitorbari_server(doc: &Node, diags: &mut Diagnostics) -> Option<Converted> {
    let mut c = Conv {
        diags,
        what: "mcp.mcp-operator.io/v1 MCPServer",
    };
    let mut top = Map::default();
    for (k, v) in entries(doc) {
        match k.key_text().as_ref() {
            "apiVersion" => top.put(
                "apiVersion",
                k.span,
                string(crate::api::API_VERSION, v.span),
            ),
            "kind" => top.put("kind", k.span, v.clone()),
            "metadata" => top.put(
                "metadata",
                k.span,
                with_provenance(v, &format!("{VITORBARI_API_VERSION} MCPServer")),
            ),
            // Written by the peer's controller; hangar's own status replaces it.
            "status" => {}
            "spec" => {}
            _ => top.put(&k.key_str(), k.span, v.clone()),
        }
    }
    let (spec_key, spec) = match (doc.key_node("spec"), doc.get("spec")) {
        (Some(k), Some(v)) => (k, v),
        _ => {
            c.diags.push(
                Diagnostic::error(
                    "missing-field",
                    Some(doc.span),
                    "missing required field `spec` of mcp.mcp-operator.io/v1 MCPServer",
                )
                .hint("add `spec: {image: ...}`"),
            );
            return None;
        }
    };
    let out = server_spec(&mut c, spec_key, spec);
    let summary = summary(&out);
    top.put("spec", spec_key.span, out.node(spec.span));
    Some(Converted {
        doc: top.node(doc.span),
        summary,
    })
}

fn summary(spec: &Map) -> String {
    let get = |name: &str| {
        spec.entries
            .iter()
            .find(|(k, _)| k.key_text() == name)
            .map(|(_, v)| match &v.value {
                Value::Str(s) => s.to_string(),
                Value::Int(i) => i.to_string(),
                _ => String::new(),
            })
    };
    let mut parts = vec!["mode container".to_string()];
    for (field, label) in [
        ("transport", "transport"),
        ("port", "port"),
        ("path", "path"),
        ("replicas", "replicas"),
    ] {
        if let Some(v) = get(field) {
            parts.push(format!("{label} {v}"));
        }
    }
    parts.join(", ")
}

/// The metadata with `mcp-hangar.io/converted-from` added to its annotations.
fn with_provenance(meta: &Node, from: &str) -> Node {
    let Value::Map(items) = &meta.value else {
        return meta.clone();
    };
    let mut m = Map {
        entries: items.to_vec(),
    };
    let mut annotations = Map::default();
    let mut ann_span = meta.span;
    if let Some((k, v)) = items.iter().find(|(k, _)| k.key_text() == "annotations") {
        ann_span = k.span;
        if let Value::Map(a) = &v.value {
            annotations.entries = a.to_vec();
        } else if !matches!(v.value, Value::Null) {
            // Not a mapping: left for read_meta to report.
            return meta.clone();
        }
    }
    annotations.put(CONVERTED_FROM_ANNOTATION, ann_span, string(from, ann_span));
    m.put("annotations", ann_span, annotations.node(ann_span));
    m.node(meta.span)
}

const SPEC_FIELDS: [&str; 15] = [
    "image",
    "command",
    "args",
    "replicas",
    "resources",
    "security",
    "service",
    "healthCheck",
    "environment",
    "podTemplate",
    "hpa",
    "transport",
    "validation",
    "metrics",
    "sidecar",
];

fn server_spec(c: &mut Conv<'_>, spec_key: &Node, spec: &Node) -> Map {
    let mut out = Map::default();
    out.put("mode", spec_key.span, string("container", spec_key.span));
    let fields = c.mapping(spec, "spec").to_vec();
    // The transport first: the port and protocol decide what other fields may say.
    let mut port: i64 = 8080;
    let mut protocol = "auto".to_string();
    if let Some(t) = spec.get("transport") {
        let (p, proto) = transport(c, t, &mut out);
        port = p;
        protocol = proto;
    }
    for (k, v) in &fields {
        let name = k.key_str();
        match name.as_str() {
            "image" | "command" | "args" | "replicas" | "resources" => {
                out.put(&name, k.span, v.clone())
            }
            "environment" => out.put("env", k.span, v.clone()),
            "transport" => {}
            "security" => security(c, v, &mut out),
            "service" => service(c, v, port),
            "healthCheck" => health_check(c, v, &mut out),
            "podTemplate" => pod_template(c, v, &mut out),
            "hpa" => hpa(c, v, &mut out),
            "validation" => validation(c, v, &protocol, &mut out),
            "metrics" => {
                let enabled = v
                    .get("enabled")
                    .and_then(|e| c.boolean(e, "spec.metrics.enabled"));
                if enabled != Some(false) {
                    c.no_equivalent(k, "spec.metrics", "hangar injects no metrics sidecar proxy: remove `metrics`; if the server exports Prometheus metrics itself, write `observability: {metrics: {enabled: true, port: N}}` in a hangar MCPServer (`hangar import` writes one)");
                }
            }
            "sidecar" => c.no_equivalent(
                k,
                "spec.sidecar",
                "hangar injects no metrics sidecar proxy: remove `sidecar`",
            ),
            _ => c.unknown(k, "spec", &SPEC_FIELDS),
        }
    }
    out
}

/// `transport {type, protocol, config.http {port, path, sessionManagement, sse}}`; returns the
/// port and protocol.
fn transport(c: &mut Conv<'_>, t: &Node, out: &mut Map) -> (i64, String) {
    let mut port = 8080;
    let mut protocol = "auto".to_string();
    let fields = c.mapping(t, "spec.transport").to_vec();
    for (k, v) in &fields {
        match k.key_text().as_ref() {
            "type" => c.only(
                k,
                v,
                "spec.transport.type",
                &["http"],
                "hangar serves MCP over HTTP only (streamable HTTP or SSE); remove `type` or set it to `http`",
            ),
            "protocol" => {
                if let Some(p) = v.as_str() {
                    protocol = p.to_string();
                }
                // auto | streamable-http | sse: hangar's `transport` has the same values (the
                // schema check reports any other).
                out.put("transport", k.span, v.clone());
            }
            "config" => {
                let cfg = c.mapping(v, "spec.transport.config").to_vec();
                for (ck, cv) in &cfg {
                    if ck.key_text() != "http" {
                        c.unknown(ck, "spec.transport.config", &["http"]);
                        continue;
                    }
                    let http = c.mapping(cv, "spec.transport.config.http").to_vec();
                    for (hk, hv) in &http {
                        match hk.key_text().as_ref() {
                            "port" => {
                                if let Value::Int(p) = hv.value {
                                    port = p;
                                }
                                out.put("port", hk.span, hv.clone());
                            }
                            "path" => out.put("path", hk.span, hv.clone()),
                            "sessionManagement" => {
                                let path = "spec.transport.config.http.sessionManagement";
                                if c.boolean(hv, path) == Some(true) {
                                    // The peer pins each client to one pod (ClientIP affinity
                                    // on the Service).
                                    out.put("sessionAffinity", hk.span, string("ClientIP", hv.span));
                                }
                            }
                            "sse" => sse(c, hk, hv, out, t),
                            _ => c.unknown(
                                hk,
                                "spec.transport.config.http",
                                &["port", "path", "sessionManagement", "sse"],
                            ),
                        }
                    }
                }
            }
            _ => c.unknown(k, "spec.transport", &["type", "protocol", "config"]),
        }
    }
    (port, protocol)
}

/// `sse {enableSessionAffinity, terminationGracePeriodSeconds, maxSurge}`: the peer applies
/// them when SSE is the transport. With `protocol: sse` hangar applies them too; with `auto`
/// the peer decides at run time, which a render cannot.
fn sse(c: &mut Conv<'_>, k: &Node, v: &Node, out: &mut Map, transport: &Node) {
    let protocol = transport
        .get("protocol")
        .and_then(Node::as_str)
        .unwrap_or("auto");
    let fields = c.mapping(v, "spec.transport.config.http.sse").to_vec();
    if protocol != "sse" {
        if fields.is_empty() {
            return;
        }
        c.no_equivalent(
            k,
            "spec.transport.config.http.sse",
            format!(
                "the peer applies these settings only when SSE is detected at run time (protocol `{protocol}`); hangar decides at render: set `transport.protocol: sse` to keep them, or remove `sse`"
            ),
        );
        return;
    }
    let mut grace = None;
    for (sk, sv) in &fields {
        match sk.key_text().as_ref() {
            "enableSessionAffinity" => {
                let path = "spec.transport.config.http.sse.enableSessionAffinity";
                if c.boolean(sv, path) == Some(true) {
                    out.put("sessionAffinity", sk.span, string("ClientIP", sv.span));
                }
            }
            "terminationGracePeriodSeconds" => match sv.value {
                Value::Int(s) if s >= 1 => grace = Some((sk.span, sv.span, s)),
                _ => c.diags.push(Diagnostic::error(
                    "type-mismatch",
                    Some(sv.span),
                    format!(
                        "`spec.transport.config.http.sse.terminationGracePeriodSeconds` must be a positive integer, found {}",
                        sv.describe()
                    ),
                )),
            },
            "maxSurge" => c.only(
                sk,
                sv,
                "spec.transport.config.http.sse.maxSurge",
                &["25%"],
                "hangar's Deployments roll with maxSurge 25%; remove `maxSurge`",
            ),
            _ => c.unknown(
                sk,
                "spec.transport.config.http.sse",
                &[
                    "enableSessionAffinity",
                    "terminationGracePeriodSeconds",
                    "maxSurge",
                ],
            ),
        }
    }
    // The peer's SSE grace period defaults to 60 seconds.
    let (ks, vs, secs) = grace.unwrap_or((k.span, v.span, 60));
    out.put("shutdownGracePeriod", ks, string(&format!("{secs}s"), vs));
}

fn security(c: &mut Conv<'_>, v: &Node, out: &mut Map) {
    let mut sc = Map::default();
    for (k, sv) in c.mapping(v, "spec.security").to_vec() {
        let name = k.key_str();
        match name.as_str() {
            "runAsUser" | "runAsGroup" | "readOnlyRootFilesystem" | "runAsNonRoot"
            | "allowPrivilegeEscalation" => sc.put(&name, k.span, sv.clone()),
            "fsGroup" => c.no_equivalent(
                &k,
                "spec.security.fsGroup",
                "hangar sets no pod-level fsGroup; remove it (volumes hangar mounts are readable by the server's user: configMap/secret mode 0644, emptyDir)",
            ),
            _ => c.unknown(
                &k,
                "spec.security",
                &[
                    "runAsUser",
                    "runAsGroup",
                    "readOnlyRootFilesystem",
                    "runAsNonRoot",
                    "allowPrivilegeEscalation",
                    "fsGroup",
                ],
            ),
        }
    }
    if !sc.entries.is_empty() {
        out.put("securityContext", v.span, sc.node(v.span));
    }
}

fn service(c: &mut Conv<'_>, v: &Node, port: i64) {
    let port_text = port.to_string();
    for (k, sv) in c.mapping(v, "spec.service").to_vec() {
        match k.key_text().as_ref() {
            "type" => c.only(
                &k,
                &sv,
                "spec.service.type",
                &["ClusterIP"],
                "hangar renders a ClusterIP Service; expose it with an Ingress or Gateway, or remove `type`",
            ),
            "port" => c.only(
                &k,
                &sv,
                "spec.service.port",
                &[port_text.as_str()],
                "hangar's Service listens on the server's port (`transport.config.http.port`); remove `service.port` or make them equal",
            ),
            "targetPort" => c.only(
                &k,
                &sv,
                "spec.service.targetPort",
                &[port_text.as_str(), "http"],
                "hangar's Service targets the server's port; remove `targetPort`",
            ),
            "protocol" => c.only(
                &k,
                &sv,
                "spec.service.protocol",
                &["TCP"],
                "MCP runs over TCP; remove `protocol`",
            ),
            "annotations" => {
                if !entries(&sv).is_empty() {
                    c.no_equivalent(
                        &k,
                        "spec.service.annotations",
                        "hangar renders its Service without annotations; remove them (or patch the rendered Service)",
                    );
                }
            }
            _ => c.unknown(
                &k,
                "spec.service",
                &["type", "port", "targetPort", "protocol", "annotations"],
            ),
        }
    }
}

fn health_check(c: &mut Conv<'_>, v: &Node, out: &mut Map) {
    let mut hc = Map::default();
    for (k, hv) in c.mapping(v, "spec.healthCheck").to_vec() {
        match k.key_text().as_ref() {
            "enabled" => {
                if matches!(hv.value, Value::Bool(true)) {
                    c.diags.push(
                        Diagnostic::warning(
                            "converted-differs",
                            Some(k.span),
                            "the peer probes `GET /health` here; hangar's probes check the MCP port over TCP, and its controller checks MCP itself",
                        )
                        .hint("keep `enabled: true` for hangar's probes, or write `enabled: false` for none"),
                    );
                }
                hc.put("enabled", k.span, hv.clone())
            }
            "path" | "port" => c.no_equivalent(
                &k,
                &format!("spec.healthCheck.{}", k.key_str()),
                "hangar's probes check the MCP port (TCP) and the controller checks MCP itself: no HTTP health path; remove it",
            ),
            _ => c.unknown(&k, "spec.healthCheck", &["enabled", "path", "port"]),
        }
    }
    if !hc.entries.is_empty() {
        out.put("healthCheck", v.span, hc.node(v.span));
    }
}

fn hpa(c: &mut Conv<'_>, v: &Node, out: &mut Map) {
    let mut h = Map::default();
    for (k, hv) in c.mapping(v, "spec.hpa").to_vec() {
        let name = k.key_str();
        match name.as_str() {
            "enabled" | "minReplicas" | "maxReplicas" | "targetCPUUtilizationPercentage" => {
                h.put(&name, k.span, hv.clone())
            }
            "targetMemoryUtilizationPercentage" | "scaleUpBehavior" | "scaleDownBehavior" => c
                .no_equivalent(
                    &k,
                    &format!("spec.hpa.{name}"),
                    "hangar's HPA scales on CPU (`targetCPUUtilizationPercentage`) with the default behaviour; remove it",
                ),
            _ => c.unknown(
                &k,
                "spec.hpa",
                &[
                    "enabled",
                    "minReplicas",
                    "maxReplicas",
                    "targetCPUUtilizationPercentage",
                    "targetMemoryUtilizationPercentage",
                    "scaleUpBehavior",
                    "scaleDownBehavior",
                ],
            ),
        }
    }
    if !h.entries.is_empty() {
        out.put("hpa", v.span, h.node(v.span));
    }
}

fn validation(c: &mut Conv<'_>, v: &Node, protocol: &str, out: &mut Map) {
    let mut val = Map::default();
    for (k, vv) in c.mapping(v, "spec.validation").to_vec() {
        let name = k.key_str();
        match name.as_str() {
            "enabled" | "strictMode" | "requiredCapabilities" => {
                val.put(&name, k.span, vv.clone())
            }
            "transportProtocol" => c.only(
                &k,
                &vv,
                "spec.validation.transportProtocol",
                &[protocol],
                "hangar validates the transport the server is configured with (`transport.protocol`); remove `transportProtocol` or make them equal",
            ),
            _ => c.unknown(
                &k,
                "spec.validation",
                &[
                    "enabled",
                    "transportProtocol",
                    "strictMode",
                    "requiredCapabilities",
                ],
            ),
        }
    }
    if !val.entries.is_empty() {
        out.put("validation", v.span, val.node(v.span));
    }
}

const POD_TEMPLATE_FIELDS: [&str; 9] = [
    "labels",
    "annotations",
    "nodeSelector",
    "tolerations",
    "affinity",
    "serviceAccountName",
    "imagePullSecrets",
    "volumes",
    "volumeMounts",
];

fn pod_template(c: &mut Conv<'_>, v: &Node, out: &mut Map) {
    let fields = c.mapping(v, "spec.podTemplate").to_vec();
    for (k, pv) in &fields {
        let name = k.key_str();
        match name.as_str() {
            "nodeSelector" | "tolerations" | "affinity" | "serviceAccountName"
            | "imagePullSecrets" => out.put(&name, k.span, pv.clone()),
            "labels" => {
                if !entries(pv).is_empty() {
                    c.no_equivalent(
                        k,
                        "spec.podTemplate.labels",
                        "hangar copies the server's own labels to its pods: move them to `metadata.labels`",
                    );
                }
            }
            "annotations" => {
                if !entries(pv).is_empty() {
                    c.no_equivalent(
                        k,
                        "spec.podTemplate.annotations",
                        "hangar's pods carry only its config hash annotation; remove them",
                    );
                }
            }
            "volumes" | "volumeMounts" => {}
            _ => c.unknown(k, "spec.podTemplate", &POD_TEMPLATE_FIELDS),
        }
    }
    let volumes = v.get("volumes");
    let mounts = v.get("volumeMounts");
    if volumes.is_some() || mounts.is_some() {
        let span = v
            .key_node("volumes")
            .or(v.key_node("volumeMounts"))
            .map_or(v.span, |n| n.span);
        let list = join_volumes(c, volumes, mounts);
        out.put("volumes", span, Node::new(Value::Seq(list.into()), span));
    }
}

fn seq(n: Option<&Node>) -> &[Node] {
    match n.map(|n| &n.value) {
        Some(Value::Seq(items)) => items,
        _ => &[],
    }
}

/// The peer's `volumes[]` and `volumeMounts[]` (Kubernetes types) joined by name into hangar's
/// `volumes[] {name, mountPath, subPath, readOnly, <source>}`.
fn join_volumes(c: &mut Conv<'_>, volumes: Option<&Node>, mounts: Option<&Node>) -> Vec<Node> {
    let mut out = Vec::new();
    let mounts = seq(mounts);
    let mut used = vec![false; mounts.len()];
    for vol in seq(volumes) {
        let Some(name) = vol.get("name").and_then(Node::as_str) else {
            c.diags.push(Diagnostic::error(
                "missing-field",
                Some(vol.span),
                "a `spec.podTemplate.volumes[]` entry needs a `name`",
            ));
            continue;
        };
        let mut m = Map::default();
        for (k, sv) in entries(vol) {
            let key_name = k.key_str();
            match key_name.as_str() {
                "name" => m.put("name", k.span, sv.clone()),
                "configMap" => m.put(
                    "configMap",
                    k.span,
                    source(
                        c,
                        sv,
                        &["name", "items"],
                        "configMap",
                        "spec.podTemplate.volumes[]",
                    ),
                ),
                "secret" => m.put(
                    "secret",
                    k.span,
                    source(
                        c,
                        sv,
                        &["secretName", "items"],
                        "secret",
                        "spec.podTemplate.volumes[]",
                    ),
                ),
                "emptyDir" => m.put(
                    "emptyDir",
                    k.span,
                    source(
                        c,
                        sv,
                        &["medium", "sizeLimit"],
                        "emptyDir",
                        "spec.podTemplate.volumes[]",
                    ),
                ),
                "persistentVolumeClaim" => m.put(
                    "persistentVolumeClaim",
                    k.span,
                    source(
                        c,
                        sv,
                        &["claimName", "readOnly"],
                        "persistentVolumeClaim",
                        "spec.podTemplate.volumes[]",
                    ),
                ),
                other => c.no_equivalent(
                    k,
                    &format!("spec.podTemplate.volumes[].{other}"),
                    "hangar mounts configMap, secret, emptyDir and persistentVolumeClaim volumes",
                ),
            }
        }
        let mut found = 0;
        for (i, mount) in mounts.iter().enumerate() {
            if mount.get("name").and_then(Node::as_str) != Some(name) {
                continue;
            }
            found += 1;
            if found > 1 {
                c.no_equivalent(
                    mount,
                    "spec.podTemplate.volumeMounts[]",
                    format!(
                        "hangar mounts each volume once; `{name}` is mounted twice: keep one mount"
                    ),
                );
                used[i] = true;
                continue;
            }
            used[i] = true;
            for (k, mv) in entries(mount) {
                let key_name = k.key_str();
                match key_name.as_str() {
                    "name" => {}
                    "mountPath" | "subPath" | "readOnly" => m.put(&key_name, k.span, mv.clone()),
                    other => c.no_equivalent(
                        k,
                        &format!("spec.podTemplate.volumeMounts[].{other}"),
                        "hangar's volume mounts have mountPath, subPath and readOnly",
                    ),
                }
            }
        }
        if found == 0 {
            c.no_equivalent(
                vol,
                "spec.podTemplate.volumes[]",
                format!("hangar mounts every volume it renders: add a `volumeMounts` entry for `{name}`, or remove the volume"),
            );
        }
        out.push(m.node(vol.span));
    }
    for (i, mount) in mounts.iter().enumerate() {
        if !used[i] {
            c.diags.push(Diagnostic::error(
                "unknown-volume",
                Some(mount.span),
                "this `spec.podTemplate.volumeMounts[]` entry names no volume of `spec.podTemplate.volumes`",
            ));
        }
    }
    out
}

/// A volume source: the fields hangar has are kept, others are errors.
fn source(c: &mut Conv<'_>, v: &Node, allowed: &[&str], what: &str, at: &str) -> Node {
    let mut m = Map::default();
    for (k, sv) in entries(v) {
        let name = k.key_str();
        if allowed.contains(&name.as_str()) {
            if name == "readOnly" {
                // hangar reads readOnly from the mount; the claim's own flag says the same.
                continue;
            }
            m.put(&name, k.span, sv.clone());
        } else {
            c.no_equivalent(
                k,
                &format!("{at}.{what}.{name}"),
                format!("hangar's {what} volumes have {}", allowed.join(", ")),
            );
        }
    }
    if m.has("items") {
        // items[] {key, path}: `mode` has no equivalent.
        if let Some((_, items)) = m.entries.iter().find(|(k, _)| k.key_text() == "items") {
            for item in seq(Some(items)) {
                for (k, _) in entries(item) {
                    if !matches!(k.key_text().as_ref(), "key" | "path") {
                        c.diags.push(
                            Diagnostic::error(
                                "no-equivalent",
                                Some(k.span),
                                format!("`items[].{}` of a {what} volume has no equivalent in hangar's MCPServer", k.key_str()),
                            )
                            .hint("hangar's items have key and path (files are mode 0644)"),
                        );
                    }
                }
            }
        }
    }
    m.node(v.span)
}

/// One input file as `hangar import` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedFile {
    /// The input's path (as diagnostics name it).
    pub source: String,
    /// Where it goes under `--out-dir`: the input's path under its PATH argument, with `.yaml`
    /// for a rewritten JSON file.
    pub relative: String,
    /// The text: a header comment naming the source, then the documents.
    pub text: String,
    /// Resources converted in it (0: the file is copied as it is).
    pub converted: usize,
    /// Whether the text shows Secret values (`hangar import` masks them on stdout).
    pub secrets: bool,
}

/// What `hangar import` writes for each input file, in order, or nothing when the inputs do not
/// compile (the diagnostics are the compilation's). Pure: the caller writes the files.
pub fn import(
    inputs: &super::Inputs,
    mask_secrets: bool,
) -> (Vec<ImportedFile>, super::Compilation) {
    let c = super::compile(inputs);
    if c.bundle.is_none() {
        return (Vec::new(), c);
    }
    let mut out = Vec::new();
    for (i, input) in inputs.files.iter().enumerate() {
        if input.role != super::FileRole::Inputs {
            continue;
        }
        let file = &input.file;
        let mut scratch = Diagnostics::default();
        let docs = super::load::load_file(i, &file.path, &file.text, &mut scratch).docs;
        let mut from: Vec<String> = Vec::new();
        let mut secrets = false;
        let bodies: Vec<serde_json::Value> = docs
            .iter()
            .map(|d| hangar_json(d, &mut from, &mut secrets, &mut scratch))
            .collect();
        let origin = file.origin().to_string();
        let masked = mask_secrets && secrets;
        let converted = from.len();
        if converted == 0 && !masked {
            let header =
                format!("# hangar import: {origin} (nothing to convert; copied as it is)\n");
            let text = if file.path.ends_with(".json") || file.path.ends_with(".toml") {
                file.text.clone()
            } else {
                format!("{header}{}", file.text)
            };
            out.push(ImportedFile {
                source: file.path.clone(),
                relative: origin,
                text,
                converted,
                secrets,
            });
            continue;
        }
        let mut seen = std::collections::BTreeSet::new();
        from.retain(|f| seen.insert(f.clone()));
        let mut text = if converted == 0 {
            format!("# hangar import: {origin} (nothing to convert; Secret values masked)\n")
        } else {
            format!(
                "# hangar import: {origin}: {converted} resource{} converted to `{}` (from {}); other documents unchanged (comments are not kept)\n",
                if converted == 1 { "" } else { "s" },
                crate::api::API_VERSION,
                from.join(", ")
            )
        };
        for (n, body) in bodies.iter().enumerate() {
            if n > 0 {
                text.push_str("---\n");
            }
            let body = if mask_secrets {
                super::bundle::mask_secret(body, None)
            } else {
                body.clone()
            };
            crate::yaml::write_value(&mut text, &body, 0);
        }
        let relative = match origin.strip_suffix(".json") {
            Some(stem) => format!("{stem}.yaml"),
            None => origin,
        };
        out.push(ImportedFile {
            source: file.path.clone(),
            relative,
            text,
            converted,
            secrets,
        });
    }
    (out, c)
}

/// A document as hangar-native JSON: a convertible resource converted, a `v1 List` item by item,
/// anything else as it is.
fn hangar_json(
    doc: &Node,
    converted: &mut Vec<String>,
    secrets: &mut bool,
    diags: &mut Diagnostics,
) -> serde_json::Value {
    let av = doc.get("apiVersion").and_then(Node::as_str).unwrap_or("");
    let kind = doc.get("kind").and_then(Node::as_str).unwrap_or("");
    if converts(av, kind) {
        if let Some(conv) = convert(doc, diags) {
            converted.push(format!("`{av}` {kind}"));
            return conv.doc.to_json();
        }
    }
    if av == "v1" && kind == "List" {
        if let Some(Value::Seq(items)) = doc.get("items").map(|n| &n.value) {
            let mut list = doc.to_json();
            let items: Vec<serde_json::Value> = items
                .iter()
                .map(|it| hangar_json(it, converted, secrets, diags))
                .collect();
            list["items"] = serde_json::Value::Array(items);
            return list;
        }
    }
    if kind == "Secret" {
        *secrets = true;
    }
    doc.to_json()
}

#[cfg(test)]
mod tests {
    fn compiled(text: &str) -> crate::compile::Compilation {
        crate::compile::compile(&crate::compile::Inputs {
            files: vec![crate::compile::InputFile {
                file: crate::compile::SourceFile::new("x.yaml", text),
                role: crate::compile::FileRole::Inputs,
            }],
            ..Default::default()
        })
    }

    /// Odd shapes never panic, and every error they give is located.
    #[test]
    fn odd_peer_documents_give_located_errors() {
        let heads = [
            "apiVersion: mcp.mcp-operator.io/v1\nkind: MCPServer\n",
            "apiVersion: mcp.x-k8s.io/v1beta1\nkind: MCPServer\n",
            "apiVersion: mcp-hangar.io/v1alpha2\nkind: MCPServer\n",
            "apiVersion: mcp-hangar.io/v1alpha2\nkind: MCPDiscoverySource\n",
        ];
        let bodies = [
            "",
            "metadata: {name: a}\n",
            "metadata: {name: a}\nspec: [1, 2]\n",
            "metadata: {name: a}\nspec: {transport: x, security: 3, podTemplate: {volumes: [{}], volumeMounts: [{name: z}]}}\n",
            "metadata: {name: a}\nspec: {image: 'x:1', transport: {config: {http: {sse: {maxSurge: [1]}}}}, hpa: null}\n",
            "metadata: {name: a}\nspec: {source: 7, config: {storage: [{permissions: Recursive}, 3]}, mcp: {stateless: maybe}}\n",
            "metadata: {name: a, annotations: 5}\nspec: {observability: {tracing: {samplingRate: '2'}}, providerTemplate: {spec: [x]}}\n",
            "metadata: {name: a}\nspec: {image: 'x:1', bogus: 1, environment: {a: b}}\n",
        ];
        for head in heads {
            for body in bodies {
                let text = format!("{head}{body}");
                let c = compiled(&text);
                for d in &c.diagnostics.items {
                    assert!(d.span.is_some(), "{text}: unlocated: {}", d.message);
                }
                if body.contains("bogus") || body.contains("[1, 2]") {
                    assert!(c.bundle.is_none(), "{text}: {}", c.render_diagnostics());
                }
            }
        }
    }

    #[test]
    fn unknown_fields_are_named_with_a_suggestion() {
        let c = compiled(
            "apiVersion: mcp.mcp-operator.io/v1\nkind: MCPServer\nmetadata: {name: a}\nspec:\n  image: 'x:1'\n  replica: 2\n",
        );
        let text = c.render_diagnostics();
        assert!(
            text.contains("x.yaml:6:3: error: unknown field `spec.replica`")
                && text.contains("did you mean `replicas`?"),
            "{text}"
        );
    }
}
