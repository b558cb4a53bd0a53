//! The children of a container server (server.rs) printed straight as YAML, without building
//! the k8s-openapi objects and serialising them: the same text, field for field (k8s-openapi
//! prints fields in name order, `None` left out), written in the order `crate::yaml` prints.
//! server.rs stays the definition of what a server becomes (the controller applies its objects);
//! `direct_yaml_matches_compile_and_print` (tests/golden.rs) and the tests below hold the two
//! equal. HorizontalPodAutoscalers and PodDisruptionBudgets (few) are built and serialised.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};

use serde::Serialize;

use super::Printed;
use super::labels::{self, COMPONENT_SERVER, CONFIG_HASH_ANNOTATION, MCP_SERVER_POD_LABEL};
use super::server::{self, CONTAINER, METRICS_PORT_NAME, PORT_NAME};
use crate::api::server::{Mode, ServiceAffinity};
use crate::compile::resolve::ResolvedServer;
use crate::compile::settings::whole_secs;
use crate::yaml::{pad, write_field, write_str_key, write_str_value};

/// The entries of one block mapping whose entries sit at `ind`. `first`: the next key follows
/// what is already written (`- ` of a sequence item) instead of a new line's indent.
struct Map<'a> {
    out: &'a mut String,
    ind: usize,
    first: bool,
}

impl<'a> Map<'a> {
    /// The entries of a document body.
    fn top(out: &'a mut String) -> Self {
        Map {
            out,
            ind: 0,
            first: false,
        }
    }

    /// `key:` (an identifier: plain).
    fn key(&mut self, key: &str) {
        if self.first {
            self.first = false;
        } else {
            pad(self.out, self.ind);
        }
        self.out.push_str(key);
        self.out.push(':');
    }

    /// `key: text` where `text` is known to print plain.
    fn raw(&mut self, key: &str, text: &str) {
        self.key(key);
        self.out.push(' ');
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn str(&mut self, key: &str, v: &str) {
        self.key(key);
        self.out.push(' ');
        write_str_value(self.out, v, self.ind);
        self.out.push('\n');
    }

    fn num(&mut self, key: &str, v: impl Display) {
        self.key(key);
        self.out.push(' ');
        // Writing into a String cannot fail.
        let _ = write!(self.out, "{v}");
        self.out.push('\n');
    }

    fn bool(&mut self, key: &str, v: bool) {
        self.raw(key, if v { "true" } else { "false" });
    }

    /// `key:` and `v` as its serialisation prints it.
    fn ser<T: Serialize + ?Sized>(&mut self, key: &str, v: &T) {
        if self.first {
            self.first = false;
        } else {
            pad(self.out, self.ind);
        }
        write_field(self.out, self.ind, key, v);
    }

    /// `key:` and a non-empty mapping under it.
    fn map(&mut self, key: &str) -> Map<'_> {
        self.key(key);
        self.out.push('\n');
        Map {
            out: self.out,
            ind: self.ind + 2,
            first: false,
        }
    }

    /// `key:` and a mapping of strings (`{}` when empty).
    fn strings<'s>(&mut self, key: &str, entries: impl IntoIterator<Item = (&'s str, &'s str)>) {
        self.key(key);
        let ind = self.ind + 2;
        let mut empty = true;
        for (k, v) in entries {
            if empty {
                self.out.push('\n');
                empty = false;
            }
            pad(self.out, ind);
            write_str_key(self.out, k, ind);
            self.out.push_str(": ");
            write_str_value(self.out, v, ind);
            self.out.push('\n');
        }
        if empty {
            self.out.push_str(" {}\n");
        }
    }

    /// `key:` and a non-empty sequence under it (kubectl style: at the key's indent).
    fn seq(&mut self, key: &str) -> Seq<'_> {
        self.key(key);
        self.out.push('\n');
        Seq {
            out: self.out,
            ind: self.ind,
        }
    }

    /// `key:` and `{}`.
    fn empty_map(&mut self, key: &str) {
        self.raw(key, "{}");
    }
}

/// The items of a block sequence at `ind`.
struct Seq<'a> {
    out: &'a mut String,
    ind: usize,
}

impl Seq<'_> {
    /// `- ` and a mapping item.
    fn item(&mut self) -> Map<'_> {
        pad(self.out, self.ind);
        self.out.push_str("- ");
        Map {
            out: self.out,
            ind: self.ind + 2,
            first: true,
        }
    }

    /// `- text` where `text` is known to print plain.
    fn raw(&mut self, text: &str) {
        pad(self.out, self.ind);
        self.out.push_str("- ");
        self.out.push_str(text);
        self.out.push('\n');
    }
}

fn metadata(
    m: &mut Map<'_>,
    s: &ResolvedServer,
    labels: &[(&str, &str)],
    annotations: Option<&str>,
) {
    let mut md = m.map("metadata");
    if let Some(hash) = annotations {
        md.strings("annotations", [(CONFIG_HASH_ANNOTATION, hash)]);
    }
    md.strings("labels", labels.iter().copied());
    md.str("name", &s.meta.name);
    md.str("namespace", &s.meta.namespace);
}

fn selector(m: &mut Map<'_>, key: &str, s: &ResolvedServer) {
    m.map(key).strings(
        "matchLabels",
        [(labels::SERVER_LABEL, s.meta.name.as_str())],
    );
}

/// Prints what [`server::children`] renders into `p`.
pub fn children(s: &ResolvedServer, p: &mut Printed) {
    let set = &s.settings;
    if set.mode == Mode::Remote {
        return;
    }
    let labels = labels::standard_pairs(&s.meta.name, COMPONENT_SERVER, labels::SERVER_LABEL);
    let (ns, name) = (Some(s.meta.namespace.as_str()), s.meta.name.as_str());
    if set.own_service_account {
        p.push("v1", "ServiceAccount", ns, name, |out| {
            let mut m = Map::top(out);
            // k8s-openapi prints a ServiceAccount's `kind` before its other fields.
            m.raw("apiVersion", "v1");
            m.raw("kind", "ServiceAccount");
            m.bool("automountServiceAccountToken", false);
            metadata(&mut m, s, &labels, None);
        });
    }
    p.push("apps/v1", "Deployment", ns, name, |out| {
        deployment(out, s, &labels)
    });
    p.push("v1", "Service", ns, name, |out| service(out, s, &labels));
    if let Some(np) = &set.network_policy {
        p.push("networking.k8s.io/v1", "NetworkPolicy", ns, name, |out| {
            network_policy(out, s, np, &labels)
        });
    }
    server::scaling(s, p);
}

fn probe(m: &mut Map<'_>, key: &str, period: i32, timeout: i32, failure: i32) {
    let mut p = m.map(key);
    p.num("failureThreshold", failure);
    p.num("periodSeconds", period);
    p.raw("successThreshold", "1");
    p.map("tcpSocket").raw("port", PORT_NAME);
    p.num("timeoutSeconds", timeout);
}

fn key_to_paths(m: &mut Map<'_>, items: &Option<Vec<crate::api::server::KeyToPath>>) {
    let Some(items) = items else {
        return;
    };
    if items.is_empty() {
        m.raw("items", "[]");
        return;
    }
    let mut seq = m.seq("items");
    for k in items {
        let mut i = seq.item();
        i.str("key", &k.key);
        i.str("path", &k.path);
    }
}

fn deployment(out: &mut String, s: &ResolvedServer, labels: &[(&str, &str)]) {
    let spec = &s.spec;
    let set = &s.settings;
    let hash = server::config_hash(s);
    // Pod labels: the server's own labels, then hangar's (which win), as server.rs decides.
    let mut pod_labels: BTreeMap<&str, &str> = s
        .meta
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != labels::INVENTORY_LABEL)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pod_labels.extend(labels.iter().copied());
    pod_labels.insert(MCP_SERVER_POD_LABEL, "true");
    let (probes, timeout, interval, failures, startup_period, startup_failures) =
        server::probe_timing(s);

    let mut m = Map::top(out);
    m.raw("apiVersion", "apps/v1");
    m.raw("kind", "Deployment");
    // Who sets the replicas when hangar does not: the HPA, or the gateway (on demand).
    {
        let mut md = m.map("metadata");
        let mut annotations = vec![(CONFIG_HASH_ANNOTATION, hash.as_str())];
        if set.on_demand {
            annotations.push((labels::SCALED_BY_ANNOTATION, labels::SCALED_BY_GATEWAY));
        }
        md.strings("annotations", annotations);
        md.strings("labels", labels.iter().copied());
        md.str("name", &s.meta.name);
        md.str("namespace", &s.meta.namespace);
    }
    let mut sp = m.map("spec");
    sp.raw("progressDeadlineSeconds", "600");
    if set.autoscaling.is_none() && !set.on_demand {
        sp.num("replicas", set.replicas);
    }
    sp.raw("revisionHistoryLimit", "10");
    selector(&mut sp, "selector", s);
    {
        let mut st = sp.map("strategy");
        let mut ru = st.map("rollingUpdate");
        ru.raw("maxSurge", "25%");
        ru.raw("maxUnavailable", "25%");
        st.raw("type", "RollingUpdate");
    }
    let mut t = sp.map("template");
    {
        let mut md = t.map("metadata");
        md.strings("annotations", [(CONFIG_HASH_ANNOTATION, hash.as_str())]);
        md.strings("labels", pod_labels);
    }
    let mut ps = t.map("spec");
    if let Some(a) = &spec.affinity {
        ps.ser("affinity", a);
    }
    ps.bool("automountServiceAccountToken", false);
    {
        let mut containers = ps.seq("containers");
        let mut c = containers.item();
        if let Some(v) = &spec.args {
            c.ser("args", v);
        }
        if let Some(v) = &spec.command {
            c.ser("command", v);
        }
        if let Some(env) = spec.env.as_ref().filter(|e| !e.is_empty()) {
            c.ser("env", env);
        }
        if let Some(image) = &spec.image {
            c.str("image", image);
        }
        if let Some(p) = spec.image_pull_policy {
            c.str("imagePullPolicy", &format!("{p:?}"));
        }
        if probes {
            probe(&mut c, "livenessProbe", interval, timeout, failures);
        }
        c.raw("name", CONTAINER);
        {
            let mut ports = c.seq("ports");
            let mut port = ports.item();
            port.num("containerPort", set.port);
            port.raw("name", PORT_NAME);
            port.raw("protocol", "TCP");
            if let Some(metrics_port) = set.metrics_port {
                let mut port = ports.item();
                port.num("containerPort", metrics_port);
                port.raw("name", METRICS_PORT_NAME);
                port.raw("protocol", "TCP");
            }
        }
        if probes {
            probe(
                &mut c,
                "readinessProbe",
                interval.min(10),
                timeout,
                failures,
            );
        }
        if let Some(r) = &spec.resources {
            c.ser("resources", r);
        }
        if let Some(sc) = &spec.security_context {
            c.ser("securityContext", sc);
        }
        if probes {
            probe(&mut c, "startupProbe", startup_period, 1, startup_failures);
        }
        c.raw("terminationMessagePath", "/dev/termination-log");
        c.raw("terminationMessagePolicy", "File");
        let volumes = spec.volumes.as_deref().unwrap_or_default();
        let tmp = server::needs_tmp(s);
        if !volumes.is_empty() || tmp {
            let mut mounts = c.seq("volumeMounts");
            for v in volumes {
                let mut vm = mounts.item();
                vm.str("mountPath", &v.mount_path);
                vm.str("name", &v.name);
                if v.read_only
                    .unwrap_or(v.config_map.is_some() || v.secret.is_some())
                {
                    vm.raw("readOnly", "true");
                }
                if let Some(sub) = &v.sub_path {
                    vm.str("subPath", sub);
                }
            }
            if tmp {
                let mut vm = mounts.item();
                vm.raw("mountPath", "/tmp");
                vm.raw("name", "tmp");
            }
        }
        if let Some(dir) = &spec.working_dir {
            c.str("workingDir", dir);
        }
    }
    ps.raw("dnsPolicy", "ClusterFirst");
    if let Some(v) = &spec.image_pull_secrets {
        ps.ser("imagePullSecrets", v);
    }
    if let Some(v) = &spec.node_selector {
        ps.ser("nodeSelector", v);
    }
    if let Some(v) = &spec.priority_class_name {
        ps.str("priorityClassName", v);
    }
    ps.raw("restartPolicy", "Always");
    ps.raw("schedulerName", "default-scheduler");
    {
        let mut sc = ps.map("securityContext");
        sc.bool("runAsNonRoot", set.run_as_non_root);
        sc.map("seccompProfile").raw("type", "RuntimeDefault");
    }
    ps.str("serviceAccountName", &set.service_account);
    ps.num(
        "terminationGracePeriodSeconds",
        whole_secs(set.shutdown_grace_period),
    );
    if let Some(v) = &spec.tolerations {
        ps.ser("tolerations", v);
    }
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let tmp = server::needs_tmp(s);
    if !volumes.is_empty() || tmp {
        let mut vs = ps.seq("volumes");
        for v in volumes {
            let mut vol = vs.item();
            if let Some(c) = &v.config_map {
                let mut cm = vol.map("configMap");
                cm.raw("defaultMode", "420");
                key_to_paths(&mut cm, &c.items);
                cm.str("name", &c.name);
            }
            if let Some(e) = &v.empty_dir {
                if e.medium.is_none() && e.size_limit.is_none() {
                    vol.empty_map("emptyDir");
                } else {
                    let mut ed = vol.map("emptyDir");
                    if let Some(medium) = &e.medium {
                        ed.str("medium", medium);
                    }
                    if let Some(size) = &e.size_limit {
                        ed.ser("sizeLimit", size);
                    }
                }
            }
            vol.str("name", &v.name);
            if let Some(pvc) = &v.persistent_volume_claim {
                let mut pv = vol.map("persistentVolumeClaim");
                pv.str("claimName", &pvc.claim_name);
                if v.read_only == Some(true) {
                    pv.raw("readOnly", "true");
                }
            }
            if let Some(c) = &v.secret {
                let mut sv = vol.map("secret");
                sv.raw("defaultMode", "420");
                key_to_paths(&mut sv, &c.items);
                sv.str("secretName", &c.secret_name);
            }
        }
        if tmp {
            let mut vol = vs.item();
            vol.empty_map("emptyDir");
            vol.raw("name", "tmp");
        }
    }
}

fn service(out: &mut String, s: &ResolvedServer, labels: &[(&str, &str)]) {
    let affinity = s.spec.session_affinity.unwrap_or_default();
    let mut m = Map::top(out);
    m.raw("apiVersion", "v1");
    m.raw("kind", "Service");
    metadata(&mut m, s, labels, None);
    let mut sp = m.map("spec");
    {
        let mut ports = sp.seq("ports");
        let mut port = ports.item();
        port.raw("appProtocol", "http");
        port.raw("name", PORT_NAME);
        port.num("port", s.settings.port);
        port.raw("protocol", "TCP");
        port.raw("targetPort", PORT_NAME);
        if let Some(metrics_port) = s.settings.metrics_port {
            let mut port = ports.item();
            port.raw("appProtocol", "http");
            port.raw("name", METRICS_PORT_NAME);
            port.num("port", metrics_port);
            port.raw("protocol", "TCP");
            port.raw("targetPort", METRICS_PORT_NAME);
        }
    }
    sp.strings("selector", [(labels::SERVER_LABEL, s.meta.name.as_str())]);
    sp.str("sessionAffinity", affinity.as_str());
    if affinity == ServiceAffinity::ClientIp {
        sp.map("sessionAffinityConfig")
            .map("clientIP")
            .raw("timeoutSeconds", "10800");
    }
    sp.raw("type", "ClusterIP");
}

fn network_policy(
    out: &mut String,
    s: &ResolvedServer,
    np: &crate::compile::settings::NetworkPolicy,
    labels: &[(&str, &str)],
) {
    let allowed = &np.allowed_namespace_labels;
    let allowed_labels = || allowed.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let mut m = Map::top(out);
    m.raw("apiVersion", "networking.k8s.io/v1");
    m.raw("kind", "NetworkPolicy");
    metadata(&mut m, s, labels, None);
    let mut sp = m.map("spec");
    if np.restrict_egress {
        let mut rules = sp.seq("egress");
        {
            let mut rule = rules.item();
            {
                let mut ports = rule.seq("ports");
                for protocol in ["UDP", "TCP"] {
                    let mut port = ports.item();
                    port.raw("port", "53");
                    port.raw("protocol", protocol);
                }
            }
            rule.seq("to").item().empty_map("namespaceSelector");
        }
        if !allowed.is_empty() {
            let mut rule = rules.item();
            let mut to = rule.seq("to");
            to.item()
                .map("namespaceSelector")
                .strings("matchLabels", allowed_labels());
        }
    }
    {
        let mut ingress = sp.seq("ingress");
        let mut rule = ingress.item();
        {
            let mut from = rule.seq("from");
            from.item().empty_map("podSelector");
            {
                let mut peer = from.item();
                peer.empty_map("namespaceSelector");
                peer.map("podSelector").strings(
                    "matchLabels",
                    [
                        ("app.kubernetes.io/component", "controller"),
                        ("app.kubernetes.io/part-of", "hangar"),
                    ],
                );
            }
            if !allowed.is_empty() {
                from.item()
                    .map("namespaceSelector")
                    .strings("matchLabels", allowed_labels());
            }
        }
        let mut ports = rule.seq("ports");
        let mut port = ports.item();
        port.raw("port", PORT_NAME);
        port.raw("protocol", "TCP");
        if s.settings.metrics_port.is_some() {
            let mut port = ports.item();
            port.raw("port", METRICS_PORT_NAME);
            port.raw("protocol", "TCP");
        }
    }
    selector(&mut sp, "podSelector", s);
    let mut types = sp.seq("policyTypes");
    types.raw("Ingress");
    if np.restrict_egress {
        types.raw("Egress");
    }
}

#[cfg(test)]
mod tests {
    use crate::compile::{FileRole, InputFile, Inputs, SourceFile, compile, compile_yaml};

    /// `text` compiles, and printing it directly gives what printing its objects gives.
    fn same(name: &str, text: &str) {
        let inputs = Inputs {
            files: vec![InputFile {
                file: SourceFile::new(format!("{name}.yaml"), text),
                role: FileRole::Inputs,
            }],
            default_namespace: "default".into(),
        };
        let c = compile(&inputs);
        let Some(bundle) = &c.bundle else {
            panic!("{name} does not compile:\n{}", c.render_diagnostics());
        };
        let y = compile_yaml(&inputs, false);
        let docs = y.docs.as_ref().map(|d| d.to_stream()).unwrap_or_default();
        let expected = crate::compile::to_yaml_stream(&bundle.objects, false);
        if expected != docs {
            let diff = similar::TextDiff::from_lines(&expected, &docs)
                .unified_diff()
                .header("objects", "printed")
                .to_string();
            panic!("{name}: printed differently:\n{diff}");
        }
    }

    const BASE: &str = "apiVersion: mcp-hangar.io/v1alpha1
kind: MCPServer
metadata:
  name: s
  namespace: ns
  labels:
    team: \"yes\"
    mcp-hangar.io/inventory: inv
    app.kubernetes.io/name: mine
  annotations:
    note: \"a: b\"
spec:
  mode: container
";

    #[test]
    fn printed_children_match_the_objects() {
        let variants: &[(&str, &str)] = &[
            ("image", "  image: ghcr.io/a/b:1.0\n"),
            (
                "on demand",
                "  image: ghcr.io/a/b:1.0\n  replicas: 0\n  idleTTL: 90s\n  startupTimeout: 7s\n",
            ),
            (
                "everything",
                "  image: \"123\"
  imagePullPolicy: Always
  imagePullSecrets:
    - name: pull
  command: [\"/bin/srv\", \"--x\"]
  args: [\"a b\", \"true\", \"\"]
  workingDir: /work dir
  port: 9000
  replicas: 3
  startupTimeout: 61s
  shutdownGracePeriod: 45s
  healthCheck:
    interval: 7s
    timeout: 3s
    failureThreshold: 4
  env: []
  resources:
    limits:
      cpu: \"1\"
  securityContext:
    readOnlyRootFilesystem: true
    runAsUser: 1000
  nodeSelector:
    disk: ssd
    \"on\": \"off\"
  tolerations:
    - key: dedicated
      operator: Equal
      value: mcp
      effect: NoSchedule
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions:
              - key: zone
                operator: In
                values: [a, b]
  priorityClassName: high
  observability:
    metrics:
      enabled: true
      port: 9090
  networkPolicy:
    restrictEgress: true
    allowedNamespaceLabels:
      team: a
      \"x/y\": \"1\"
  sessionAffinity: ClientIP
  volumes:
    - name: cfg
      mountPath: /etc/cfg
      configMap:
        name: cm
        items:
          - key: a
            path: b
    - name: cfg2
      mountPath: /etc/cfg2
      readOnly: false
      configMap:
        name: cm2
        items: []
    - name: sec
      mountPath: /etc/sec
      subPath: x
      secret:
        secretName: sec
    - name: pvc
      mountPath: /data
      readOnly: true
      persistentVolumeClaim:
        claimName: claim
    - name: pvc2
      mountPath: /data2
      persistentVolumeClaim:
        claimName: claim2
    - name: mem
      mountPath: /mem
      emptyDir:
        medium: Memory
        sizeLimit: 64Mi
    - name: disk
      mountPath: /disk
      readOnly: true
      emptyDir:
        medium: \"\"
  hpa:
    enabled: true
    maxReplicas: 5
  podDisruptionBudget:
    enabled: true
    maxUnavailable: 1
",
            ),
            (
                "tmp-volume",
                "  image: x
  volumes:
    - name: t
      mountPath: /tmp
      emptyDir: {}
",
            ),
            (
                "writable-no-probes",
                "  image: x
  serviceAccountName: shared
  securityContext:
    readOnlyRootFilesystem: false
  healthCheck:
    enabled: false
  networkPolicy:
    enabled: false
  env:
    - name: A
      value: \"1\"
",
            ),
            (
                "egress-only",
                "  image: x
  networkPolicy:
    restrictEgress: true
    allowedNamespaceLabels: {}
  podDisruptionBudget:
    enabled: true
    minAvailable: 50%
",
            ),
            ("remote", "  mode: remote\n  endpoint: https://h/mcp\n"),
        ];
        for (name, spec) in variants {
            let text = if *name == "remote" {
                BASE.replace("  mode: container\n", spec)
            } else {
                format!("{BASE}{spec}")
            };
            same(name, &text);
        }
    }
}
