//! The Helm chart (deploy/helm/hangar) with the real helm and the real control plane: lint and
//! template (default and every option), values.schema.json, `helm install` (CRDs, RBAC, the
//! Deployment under the restricted Pod Security level), the controller running as the chart's
//! ServiceAccount (its token, its RBAC) reconciling the examples, the same with one verb taken
//! out of the ClusterRole (which must fail), leader election between two controllers with a
//! failover, and `helm upgrade` keeping the servers running.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use support::{Controller, ControllerOpts, Env, env, text, wait_for, wait_state_of};

const CHART: &str = "deploy/helm/hangar";
const ALL_OPTIONS: &str = "deploy/helm/hangar/ci/all-options-values.yaml";
const T: Duration = Duration::from_secs(90);
fn helm_ok(e: &Env, args: &[&str]) -> String {
    let o = e.helm(args);
    assert!(o.status.success(), "helm {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The objects of a multi-document YAML stream (empty documents dropped).
fn objects(yaml: &str) -> Vec<Json> {
    serde_saphyr::from_multiple::<Json>(yaml)
        .unwrap_or_else(|err| panic!("helm output is not YAML: {err}\n{yaml}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// Whether an object belongs to the gateway (its own component label); `kinds` and `one` look at
/// the operator's objects only, the gateway's are checked by `gateway_objects`.
fn is_gateway(o: &Json) -> bool {
    o["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
}

fn gateway_objects(objs: &[Json]) -> Vec<Json> {
    objs.iter().filter(|o| is_gateway(o)).cloned().collect()
}

fn kinds(objs: &[Json]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for o in objs.iter().filter(|o| !is_gateway(o)) {
        *m.entry(o["kind"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    m
}

/// `helm template hangar CHART -n mcp-system` with `extra` arguments, as objects (and the text).
fn template(e: &Env, extra: &[&str]) -> (String, Vec<Json>) {
    let mut args = vec!["template", "hangar", CHART, "-n", "mcp-system"];
    args.extend_from_slice(extra);
    let out = helm_ok(e, &args);
    let objs = objects(&out);
    (out, objs)
}

/// The controller container's arguments include each of `want`.
fn assert_args(deploy: &Json, want: &[&str]) {
    let args = deploy["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    for a in want {
        assert!(args.contains(a), "{a} missing in {args}");
    }
}

fn one<'a>(objs: &'a [Json], kind: &str) -> &'a Json {
    let found: Vec<&Json> = objs
        .iter()
        .filter(|o| o["kind"] == kind && !is_gateway(o))
        .collect();
    assert_eq!(found.len(), 1, "one {kind} expected");
    found[0]
}

/// The CRDs helm renders are the files in crds/, byte for byte (the chart's crds/ is a link to
/// them, so they cannot drift).
fn assert_crds_are_the_generated_ones(e: &Env, rendered: &str) {
    for f in [
        "mcpservers.yaml",
        "mcpservergroups.yaml",
        "mcpdiscoverysources.yaml",
    ] {
        let want = std::fs::read_to_string(e.root.join("crds").join(f)).expect("crds/");
        assert!(
            rendered.contains(&format!("# Source: hangar/crds/{f}\n{want}")),
            "helm's crds/{f} differs from crds/{f}"
        );
    }
}

fn assert_restricted(deploy: &Json) {
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{pod}");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{pod}"
    );
    let c = &pod["containers"][0];
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"], false,
        "{c}"
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "{c}");
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
}

#[test]
fn lint_template_and_package_with_default_and_all_options() {
    let Some(e) = env() else { return };
    helm_ok(e, &["lint", "--strict", CHART]);
    helm_ok(e, &["lint", "--strict", CHART, "-f", ALL_OPTIONS]);

    // Defaults: the operator, its RBAC, the metrics Service and the dashboard; two replicas
    // with leader election; the CRDs from crds/.
    let (out, objs) = template(e, &["--include-crds"]);
    assert_crds_are_the_generated_ones(e, &out);
    let want: BTreeMap<String, usize> = [
        ("ClusterRole", 1),
        ("ClusterRoleBinding", 1),
        ("ConfigMap", 1),
        ("CustomResourceDefinition", 3),
        ("Deployment", 1),
        ("Role", 1),
        ("RoleBinding", 1),
        ("Service", 1),
        ("ServiceAccount", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(kinds(&objs), want);
    let deploy = one(&objs, "Deployment");
    assert_restricted(deploy);
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_args(
        deploy,
        &[
            "--leader-elect",
            "--leader-election-namespace=mcp-system",
            "--leader-election-lease-name=hangar",
            "--log-format=json",
            "--log-level=info",
            "--metrics-addr=0.0.0.0:8080",
        ],
    );
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "hangar:0.1.0"
    );
    // The read-only root has one writable cache, sized.
    let volumes = deploy["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(volumes.contains(r#""sizeLimit":"2Gi""#), "{volumes}");
    // No wildcard anywhere in the RBAC.
    for r in objs
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
    {
        assert!(!r["rules"].to_string().contains('*'), "{r}");
    }
    let dash = one(&objs, "ConfigMap");
    let board: Json = serde_json::from_str(dash["data"]["hangar.json"].as_str().unwrap_or(""))
        .expect("the dashboard is JSON");
    assert!(board["panels"].as_array().is_some_and(|p| p.len() >= 6));

    // Every option: monitoring objects, NetworkPolicies per namespace plus the operator's.
    let (_, objs) = template(e, &["-f", ALL_OPTIONS]);
    let k = kinds(&objs);
    assert_eq!(k.get("ServiceMonitor"), Some(&1), "{k:?}");
    assert_eq!(k.get("PrometheusRule"), Some(&1), "{k:?}");
    assert_eq!(k.get("NetworkPolicy"), Some(&3), "{k:?}");
    let rule = one(&objs, "PrometheusRule").to_string();
    for a in [
        "MCPServerDegraded",
        "MCPServerDead",
        "mcp_operator_provider_state{state=\\\"Dead\\\"} == 1",
        "{{ $labels.name }}",
    ] {
        assert!(rule.contains(a), "{a} missing in {rule}");
    }
    let deploy = one(&objs, "Deployment");
    assert_restricted(deploy);
    assert_eq!(deploy["metadata"]["name"], "mcp-hangar-operator");
    assert_eq!(deploy["spec"]["replicas"], 3);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "hangar-operator");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert!(pod["affinity"]["podAntiAffinity"].is_object());
    assert_args(
        deploy,
        &[
            "--metrics-addr=0.0.0.0:9090",
            "--leader-election-lease-duration=20s",
            "--health-check=tcp",
            "--namespace=mcp-servers,mcp-config",
            "--log-level=debug",
        ],
    );
    let isolation: Vec<&Json> = objs
        .iter()
        .filter(|o| {
            o["kind"] == "NetworkPolicy"
                && o["spec"]["podSelector"]["matchLabels"]["mcp-hangar.io/mcp_server"] == "true"
        })
        .collect();
    assert_eq!(
        isolation
            .iter()
            .map(|o| o["metadata"]["namespace"].as_str().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["mcp-servers", "mcp-config"]
    );

    // The packaged chart carries the CRDs as files (helm follows the link).
    let dir = e
        .root
        .join(format!("target/tmp/helm-package-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    helm_ok(
        e,
        &["package", CHART, "-d", dir.to_str().expect("utf-8 path")],
    );
    let tgz = dir.join("hangar-0.1.0.tgz");
    let listing = std::process::Command::new("tar")
        .arg("tzf")
        .arg(&tgz)
        .output()
        .expect("tar");
    let listing = String::from_utf8_lossy(&listing.stdout);
    for f in [
        "hangar/crds/mcpservers.yaml",
        "hangar/crds/mcpservergroups.yaml",
        "hangar/crds/mcpdiscoverysources.yaml",
        "hangar/values.schema.json",
        "hangar/dashboards/hangar.json",
    ] {
        assert!(listing.lines().any(|l| l == f), "{f} not in {listing}");
    }
    assert!(!listing.contains("hangar/ci/"), "{listing}");
    let packaged = helm_ok(
        e,
        &[
            "template",
            "hangar",
            tgz.to_str().expect("utf-8 path"),
            "--include-crds",
        ],
    );
    assert_crds_are_the_generated_ones(e, &packaged);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The bundled gateway: two restricted replicas of `hangar gateway --cluster` behind the Service
/// RELEASE-core (so the seed's `hangar.url=http://mcp-hangar-core:8080` names it), a session key
/// Secret mounted (generated, or the user's with hangar.existingSecret/secretKey), RBAC that only
/// reads MCPServer/Group and EndpointSlices, and the servers' NetworkPolicy letting it in;
/// hangar.url (an external gateway) or gateway.enabled=false installs none of it.
#[test]
fn the_gateway_is_installed_with_least_privilege_unless_an_external_one_is_named() {
    let Some(e) = env() else { return };
    let out = helm_ok(e, &["template", "mcp-hangar", CHART, "-n", "mcp-system"]);
    // The controller names each server's route on it in status (status.gatewayEndpoint).
    let controller = objects(&out)
        .into_iter()
        .find(|o| o["kind"] == "Deployment" && !is_gateway(o))
        .expect("the controller's Deployment");
    assert_args(
        &controller,
        &["--gateway-url=http://mcp-hangar-core.mcp-system.svc:8080"],
    );
    let objs = gateway_objects(&objects(&out));
    let mut k = BTreeMap::new();
    for o in &objs {
        *k.entry(o["kind"].as_str().unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    let want: BTreeMap<String, i32> = [
        ("ClusterRole", 1),
        ("ClusterRoleBinding", 1),
        ("Deployment", 1),
        ("Secret", 1),
        ("Service", 1),
        ("ServiceAccount", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(k, want);
    let svc = named(&objs, "Service", Some("mcp-system"), "mcp-hangar-core");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080, "{svc}");
    assert_eq!(
        svc["spec"]["selector"]["app.kubernetes.io/component"], "gateway",
        "{svc}"
    );
    let deploy = named(&objs, "Deployment", Some("mcp-system"), "mcp-hangar-core");
    assert_restricted(deploy);
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_args(
        deploy,
        &[
            "\"gateway\"",
            "--cluster",
            "--listen=0.0.0.0:8080",
            "--session-key-file=/etc/hangar/session/session-key",
        ],
    );
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "mcp-hangar-core");
    assert_eq!(
        pod["volumes"][0]["secret"]["secretName"],
        "mcp-hangar-core-session-key"
    );
    assert_eq!(
        pod["containers"][0]["readinessProbe"]["httpGet"]["path"],
        "/readyz"
    );
    let secret = named(
        &objs,
        "Secret",
        Some("mcp-system"),
        "mcp-hangar-core-session-key",
    );
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["session-key"].as_str().unwrap_or(""))
        .unwrap();
    assert!(key.len() >= 32, "a session key of {} bytes", key.len());
    // Reads, never writes; no Secret through the API (the key is a mounted volume).
    let cr = named(&objs, "ClusterRole", None, "mcp-hangar-core");
    for res in ["mcpservers", "mcpservergroups", "endpointslices"] {
        for verb in ["get", "list", "watch"] {
            assert!(grants(cr, res, verb), "no {verb} {res} in {cr}");
        }
        assert!(!grants(cr, res, "patch") && !grants(cr, res, "create"));
    }
    assert!(!grants(cr, "secrets", "get") && !grants(cr, "mcpservers/status", "patch"));
    // The activator: on-demand servers' Deployments watched and patched (last activity), and
    // scaled through the scale subresource; nothing created or deleted.
    for verb in ["list", "watch", "patch"] {
        assert!(
            grants(cr, "deployments", verb),
            "no {verb} deployments in {cr}"
        );
    }
    assert!(grants(cr, "deployments/scale", "patch"));
    assert!(!grants(cr, "deployments", "create") && !grants(cr, "deployments", "delete"));
    assert_eq!(cr["rules"].as_array().map(Vec::len), Some(4), "{cr}");
    let crb = named(&objs, "ClusterRoleBinding", None, "mcp-hangar-core");
    assert_eq!(crb["subjects"][0]["name"], "mcp-hangar-core", "{crb}");

    // watchNamespaces: the same reads as a Role in each, and --namespace.
    let (_, all) = template(e, &["--set", "watchNamespaces={team-a,team-b}"]);
    let objs = gateway_objects(&all);
    assert!(!objs.iter().any(|o| o["kind"] == "ClusterRole"));
    for ns in ["team-a", "team-b"] {
        let r = named(&objs, "Role", Some(ns), "hangar-core");
        assert!(grants(r, "endpointslices", "watch") && grants(r, "mcpservers", "list"));
        named(&objs, "RoleBinding", Some(ns), "hangar-core");
    }
    assert_args(
        named(&objs, "Deployment", Some("mcp-system"), "hangar-core"),
        &["--namespace=team-a,team-b"],
    );

    // The user's Secret and key: none generated, that one mounted.
    let (_, all) = template(
        e,
        &[
            "--set",
            "hangar.existingSecret=mcp-hangar-credentials",
            "--set",
            "hangar.secretKey=api-key",
        ],
    );
    let objs = gateway_objects(&all);
    assert!(!objs.iter().any(|o| o["kind"] == "Secret"));
    let deploy = named(&objs, "Deployment", Some("mcp-system"), "hangar-core");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0]["secret"]["secretName"],
        "mcp-hangar-credentials"
    );
    assert_args(deploy, &["--session-key-file=/etc/hangar/session/api-key"]);

    // NetworkPolicy: the servers' pods let the gateway in; the gateway's own policy.
    let (_, all) = template(
        e,
        &[
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "networkPolicy.namespaces={mcp-servers}",
        ],
    );
    let iso = named(
        &all,
        "NetworkPolicy",
        Some("mcp-servers"),
        "hangar-mcp-server-isolation",
    );
    let from = iso["spec"]["ingress"][0]["from"].to_string();
    assert!(
        from.contains(r#""app.kubernetes.io/component":"gateway""#),
        "{from}"
    );
    named(&all, "NetworkPolicy", Some("mcp-system"), "hangar-core");

    // An external gateway, or none: nothing of the gateway installed.
    for set in [
        "hangar.url=http://mcp-hangar-core.elsewhere:8080",
        "gateway.enabled=false",
    ] {
        let (out, all) = template(e, &["--set", set]);
        assert!(gateway_objects(&all).is_empty(), "{set}");
        let url = out.contains("--gateway-url=http://mcp-hangar-core.elsewhere:8080");
        assert_eq!(url, set.starts_with("hangar.url"), "{set}: {out}");
        assert_eq!(out.contains("--gateway-url"), url, "{set}");
        let (_, all) = template(
            e,
            &[
                "--set",
                set,
                "--set",
                "networkPolicy.enabled=true",
                "--set",
                "networkPolicy.namespaces={mcp-servers}",
            ],
        );
        let iso = named(
            &all,
            "NetworkPolicy",
            Some("mcp-servers"),
            "hangar-mcp-server-isolation",
        );
        assert!(!iso.to_string().contains("gateway"), "{set}: {iso}");
    }
}

/// The session key Secret is generated at install and kept by `helm upgrade` (looked up), so
/// sessions survive an upgrade. Real install; the gateway's pods are not waited for.
#[test]
fn the_generated_session_key_survives_an_upgrade() {
    let Some(e) = env() else { return };
    let _one = one_at_a_time();
    e.crds();
    let ns = e.namespace("gwkey", false);
    let release = format!("gwkey{}", std::process::id() % 100_000);
    helm_ok(e, &["install", &release, CHART, "-n", &ns, "--skip-crds"]);
    let secret = format!("{release}-hangar-core-session-key");
    let key = || {
        e.k(&[
            "get",
            "secret",
            &secret,
            "-n",
            &ns,
            "-o",
            "jsonpath={.data.session-key}",
        ])
    };
    let before = key();
    assert!(before.len() >= 44, "{before}");
    helm_ok(
        e,
        &[
            "upgrade",
            &release,
            CHART,
            "-n",
            &ns,
            "--skip-crds",
            "--set",
            "gateway.replicaCount=3",
        ],
    );
    assert_eq!(key(), before, "the upgrade changed the session key");
    let d = e.k(&[
        "get",
        "deployment",
        &format!("{release}-hangar-core"),
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(d, "3");
    helm_ok(e, &["uninstall", &release, "-n", &ns]);
    e.k(&["delete", "namespace", &ns, "--wait=false"]);
}

/// Whether any rule of `role` grants `verb` on `resource` (its API group aside).
fn grants(role: &Json, resource: &str, verb: &str) -> bool {
    role["rules"].as_array().into_iter().flatten().any(|r| {
        let has = |k: &str, v: &str| {
            r[k].as_array()
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(v)))
        };
        has("resources", resource) && has("verbs", verb)
    })
}

fn named<'a>(objs: &'a [Json], kind: &str, ns: Option<&str>, name: &str) -> &'a Json {
    objs.iter()
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"] == name
                && o["metadata"]["namespace"].as_str() == ns
        })
        .unwrap_or_else(|| panic!("no {kind} {ns:?}/{name}"))
}

/// The RBAC of both modes, as rendered: cluster-wide grants no Secret unless asked (by
/// namespace, or everywhere); with watchNamespaces everything namespaced is a Role per listed
/// namespace and the ClusterRole reads namespaces only.
#[test]
fn rbac_is_narrowed_in_both_modes() {
    let Some(e) = env() else { return };
    // Cluster-wide (the default): no Secret readable anywhere, no --namespace.
    let (_, objs) = template(e, &[]);
    let cr = one(&objs, "ClusterRole");
    assert!(!grants(cr, "secrets", "get"), "{cr}");
    assert!(grants(cr, "deployments", "create") && grants(cr, "namespaces", "watch"));
    let args =
        one(&objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(!args.contains("--namespace"), "{args}");
    // rbac.secretNamespaces: a Role reading Secrets in each listed namespace, nothing else.
    let (_, objs) = template(e, &["--set", "rbac.secretNamespaces={team-a,team-b}"]);
    assert!(!grants(one(&objs, "ClusterRole"), "secrets", "get"));
    for ns in ["team-a", "team-b"] {
        let r = named(&objs, "Role", Some(ns), "hangar-secrets");
        assert_eq!(
            r["rules"],
            json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}])
        );
        let b = named(&objs, "RoleBinding", Some(ns), "hangar-secrets");
        assert_eq!(b["subjects"][0]["namespace"], "mcp-system", "{b}");
    }
    // rbac.clusterWideSecrets: get (never list) in every namespace, by explicit choice.
    let (_, objs) = template(e, &["--set", "rbac.clusterWideSecrets=true"]);
    let cr = one(&objs, "ClusterRole");
    assert!(grants(cr, "secrets", "get") && !grants(cr, "secrets", "list"));

    // watchNamespaces: the controller's --namespace, a Role and RoleBinding per namespace with
    // all of the namespaced rules, and a ClusterRole that only reads namespaces.
    let (_, objs) = template(e, &["--set", "watchNamespaces={team-a,team-b}"]);
    let cr = one(&objs, "ClusterRole");
    assert_eq!(
        cr["rules"],
        json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}])
    );
    assert_args(one(&objs, "Deployment"), &["--namespace=team-a,team-b"]);
    for ns in ["team-a", "team-b"] {
        let r = named(&objs, "Role", Some(ns), "hangar");
        for (res, verb) in [
            ("deployments", "create"),
            ("serviceaccounts", "patch"),
            ("secrets", "get"),
            ("configmaps", "watch"),
            ("mcpservers/status", "patch"),
            ("events", "create"),
        ] {
            assert!(grants(r, res, verb), "{ns}: no {verb} {res} in {r}");
        }
        assert!(!grants(r, "secrets", "list") && !grants(r, "secrets", "watch"));
        named(&objs, "RoleBinding", Some(ns), "hangar");
    }
    let k = kinds(&objs);
    assert_eq!(
        k.get("Role"),
        Some(&3),
        "two namespaces and the lease: {k:?}"
    );
    assert_eq!(k.get("RoleBinding"), Some(&3), "{k:?}");
    // A namespace YAML would read as a boolean stays a name.
    let (_, objs) = template(e, &["--set", "watchNamespaces={y,on}"]);
    named(&objs, "Role", Some("y"), "hangar");
    named(&objs, "RoleBinding", Some("on"), "hangar");
    // No wildcard in either mode.
    for r in objs
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
    {
        assert!(!r["rules"].to_string().contains('*'), "{r}");
    }

    // Mixed modes are refused, saying what to do.
    for (args, want) in [
        (
            &[
                "--set",
                "watchNamespaces={a}",
                "--set",
                "rbac.secretNamespaces={b}",
            ][..],
            "rbac.secretNamespaces and rbac.clusterWideSecrets are for cluster-wide mode",
        ),
        (
            &[
                "--set",
                "watchNamespaces={a}",
                "--set",
                "operator.extraArgs={--namespace=b}",
            ],
            "list the namespaces in watchNamespaces alone",
        ),
        (
            &[
                "--set",
                "rbac.clusterWideSecrets=true",
                "--set",
                "rbac.secretNamespaces={b}",
            ],
            "redundant",
        ),
        (&["--set", "watchNamespaces={Team_A}"], "/watchNamespaces/0"),
    ] {
        let mut a = vec!["template", "hangar", CHART];
        a.extend_from_slice(args);
        let o = e.helm(&a);
        assert!(!o.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{args:?}: `{want}` not in:\n{err}");
    }
}

#[test]
fn values_schema_rejects_bad_values_with_a_clear_message() {
    let Some(e) = env() else { return };
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--set", "operator.logLevel=loud"],
            &[
                "/operator/logLevel",
                "must be one of 'error', 'warn', 'info'",
            ],
        ),
        (
            &["--set", "operator.metrics.port=http"],
            &["/operator/metrics/port", "integer"],
        ),
        (
            &["--set", "operator.metrics.port=80"],
            &["/operator/metrics/port", "minimum: got 80"],
        ),
        (
            &["--set", "operator.leaderElection.enabld=false"],
            &["/operator/leaderElection", "enabld"],
        ),
        (
            &["--set", "operator.leaderElection.leaseDuration=soon"],
            &["/operator/leaderElection/leaseDuration", "soon"],
        ),
        (&["--set", "replicaCount=-1"], &["/replicaCount"]),
        (
            &["--set", "image.pullPolicy=Sometimes"],
            &[
                "/image/pullPolicy",
                "must be one of 'Always', 'IfNotPresent'",
            ],
        ),
        (&["--set", "hangar.url=mcp-hangar-core"], &["/hangar/url"]),
        (
            &["--set", "hangar.existingSecret=Not_A_Name"],
            &["/hangar/existingSecret"],
        ),
        (
            &["--set", "gateway.port=80"],
            &["/gateway/port", "minimum: got 80"],
        ),
        (&["--set", "gateway.enabld=false"], &["/gateway", "enabld"]),
        (
            &[
                "--set",
                "replicaCount=2",
                "--set",
                "operator.leaderElection.enabled=false",
            ],
            &["replicaCount > 1 needs operator.leaderElection.enabled=true"],
        ),
    ];
    for (args, wants) in cases {
        let mut a = vec!["template", "hangar", CHART];
        a.extend_from_slice(args);
        let o = e.helm(&a);
        assert!(!o.status.success(), "{args:?} was accepted: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        for w in *wants {
            assert!(
                err.contains(w),
                "{args:?}: `{w}` not in the message:\n{err}"
            );
        }
    }
}

/// `kubectl auth can-i --as WHO ARGS...`: whether the API server says yes.
fn can_i(e: &Env, who: &str, args: &[&str]) -> bool {
    let mut a = vec!["auth", "can-i", "--as", who];
    a.extend_from_slice(args);
    String::from_utf8_lossy(&e.kubectl(&a).stdout).trim() == "yes"
}

/// A kubeconfig with the test cluster and a token of `ns/sa` (nothing else).
fn service_account_kubeconfig(e: &Env, ns: &str, sa: &str) -> PathBuf {
    let token = e.k(&["create", "token", sa, "-n", ns, "--duration=2h"]);
    let view: Json =
        serde_json::from_str(&e.k(&["config", "view", "--raw", "--minify", "-o", "json"]))
            .expect("kubeconfig");
    let cluster = view["clusters"][0].clone();
    let kc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": sa, "user": {"token": token.trim()}}],
        "contexts": [{"name": sa, "context": {"cluster": cluster["name"], "user": sa, "namespace": ns}}],
        "current-context": sa,
    });
    let path = e
        .root
        .join(format!("target/tmp/kubeconfig-{sa}-{}", std::process::id()));
    std::fs::write(&path, kc.to_string()).expect("write kubeconfig");
    path
}

fn lease_holder(e: &Env, ns: &str, name: &str) -> String {
    e.get("lease", ns, name)
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The examples' MCPServers: (namespace, name, the state they settle in without a network).
fn example_servers(e: &Env) -> Vec<(String, String, Option<&'static str>)> {
    let out = e.hangar(&["render", "examples/", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let list: Json = serde_json::from_slice(&out.stdout).expect("render JSON");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|o| o["kind"] == "MCPServer")
        .map(|o| {
            let spec = &o["spec"];
            let want = match (spec["mode"].as_str(), spec["replicas"].as_i64()) {
                (Some("remote"), _) => None, // its endpoint is on the internet: not reachable here
                (_, Some(0)) => Some("Cold"),
                _ => Some("Ready"),
            };
            (
                o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                o["metadata"]["name"].as_str().unwrap_or("").to_string(),
                want,
            )
        })
        .collect()
}

fn server_yaml(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  mode: container\n  image: ghcr.io/example/mcp-{name}:1.0.0\n"
    )
}

/// A remote server whose checks send a token from the Secret `guard-token` of `ns` (its
/// endpoint is closed: the Secret read is what the test looks at).
fn guarded_yaml(ns: &str) -> String {
    format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: guarded\n  namespace: {ns}\nspec:\n  mode: remote\n  endpoint: http://127.0.0.1:9/mcp\n  healthCheck:\n    interval: 2s\n    timeout: 1s\n  validation:\n    auth:\n      secretRef:\n        name: guard-token\n"
    )
}

/// The Ready condition of a resource: (reason, message), once it has one that is False.
fn ready_condition(e: &Env, kind: &str, ns: &str, name: &str) -> Option<(String, String)> {
    let o = e.get(kind, ns, name)?;
    let c = o["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready" && c["status"] == "False")?
        .clone();
    Some((
        c["reason"].as_str()?.to_string(),
        c["message"].as_str()?.to_string(),
    ))
}

fn uid(e: &Env, kind: &str, ns: &str, name: &str) -> String {
    e.get(kind, ns, name)
        .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("{kind} {ns}/{name} missing"))
}

/// Waits (30 s at most) until `ctl` leads; how long after `since`.
fn leads_after(ctl: &Controller, since: Instant) -> Duration {
    wait_for(
        "a follower takes the lease",
        Duration::from_secs(30),
        || (ctl.metric("hangar_leader ") == 1.0).then_some(()),
    );
    since.elapsed()
}

fn log_has(ctl: &Controller, needle: &str) -> bool {
    std::fs::read_to_string(&ctl.log).is_ok_and(|l| l.contains(needle))
}

/// Waits until `ctl`'s log has `needle` (or panics with the log).
fn wait_log(ctl: &Controller, needle: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        if log_has(ctl, needle) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "`{needle}` not in the controller log within {timeout:?}:\n{}",
            ctl.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The cluster tests one at a time: the install test starts by deleting the CRDs.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The chart with `watchNamespaces`: each denial proved by the API server (`kubectl auth can-i`
/// as the chart's ServiceAccount), then the controller as that ServiceAccount, with the
/// `--namespace` the chart gives it, reconciles servers in both listed namespaces, discovers
/// into the listed ones only, and leaves an unlisted namespace alone.
#[test]
fn namespaced_install_manages_only_the_listed_namespaces() {
    let Some(e) = env() else { return };
    let _one = one_at_a_time();
    let pid = std::process::id() % 100_000;
    let release = format!("hangar-ns-{pid}");
    let ns = e.namespace("hangar-ns-system", true);
    let (a, b, c) = (
        e.namespace("watched-a", false),
        e.namespace("watched-b", false),
        e.namespace("unwatched", false),
    );
    let list = format!("watchNamespaces={{{a},{b}}}");
    helm_ok(
        e,
        &[
            "install",
            &release,
            CHART,
            "-n",
            &ns,
            "--set",
            &list,
            "--set",
            "replicaCount=1",
            "--set",
            "operator.leaderElection.enabled=false",
        ],
    );
    e.wait_crds_established();

    let who = format!("system:serviceaccount:{ns}:{release}");
    let can = |args: &[&str]| can_i(e, &who, args);
    for yes in [
        &["create", "deployments.apps", "-n", &a][..],
        &["patch", "serviceaccounts", "-n", &b],
        &["get", "secrets", "-n", &a],
        &["get", "secrets", "-n", &b],
        &["watch", "mcpservers.mcp-hangar.io", "-n", &b],
        &["patch", "mcpservers.mcp-hangar.io/status", "-n", &a],
        &["create", "events.events.k8s.io", "-n", &b],
        &["watch", "configmaps", "-n", &a],
        &["list", "namespaces"],
    ] {
        assert!(can(yes), "{who} cannot {yes:?}");
    }
    for no in [
        &["get", "secrets", "-n", "kube-system"][..],
        &["get", "secrets", "-n", &c],
        &["get", "secrets", "-n", &ns],
        &["list", "secrets", "-n", &a],
        &["watch", "secrets", "-n", &b],
        &["list", "secrets", "-A"],
        &["create", "deployments.apps", "-n", "kube-system"],
        &["create", "serviceaccounts", "-n", "kube-system"],
        &["create", "deployments.apps", "-n", &c],
        &["patch", "mcpservers.mcp-hangar.io/status", "-n", &c],
        &["list", "mcpservers.mcp-hangar.io", "-A"],
        &["list", "configmaps", "-n", &c],
        &["create", "events.events.k8s.io", "-n", &c],
        &["update", "namespaces"],
        &["create", "pods", "-n", &a],
    ] {
        assert!(!can(no), "{who} may {no:?}");
    }

    // The controller as the chart runs it: its ServiceAccount, its --namespace.
    let deploy = e.get("deployment", &ns, &release).expect("deployment");
    let args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let flag = args
        .iter()
        .filter_map(Json::as_str)
        .find(|a| a.starts_with("--namespace="))
        .expect("--namespace in the chart's args")
        .to_string();
    assert_eq!(flag, format!("--namespace={a},{b}"));
    let kubeconfig = service_account_kubeconfig(e, &ns, &release);
    let ctl = Controller::spawn(
        e,
        &ControllerOpts {
            kubeconfig: Some(&kubeconfig),
            args: &[&flag],
            name: "helm-namespaced",
            ..Default::default()
        },
    );
    ctl.wait_ready(T);
    for n in [&a, &b, &c] {
        e.apply_yaml(&server_yaml(n, "alpha"));
    }
    // A Secret of a listed namespace is readable: the check says it is missing, not forbidden.
    e.apply_yaml(&guarded_yaml(&a));
    // Discovery from a into every namespace labelled for this test: b gets its server, c (not
    // listed) is not even matched.
    let mark = format!("ns-{pid}");
    for n in [&b, &c] {
        e.k(&["label", "namespace", n, &format!("hangar-test-rbac={mark}")]);
        e.apply_yaml(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: catalog\n  namespace: {n}\n  labels:\n    mcp-hangar.io/catalog: \"true\"\ndata:\n  servers.yaml: |\n    servers:\n      - name: found\n        image: ghcr.io/example/found:1.0.0\n"
        ));
    }
    e.apply_yaml(&format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata:\n  name: teams\n  namespace: {a}\nspec:\n  type: Namespace\n  mode: Authoritative\n  refreshInterval: 1h\n  namespaceSelector:\n    matchLabels:\n      hangar-test-rbac: {mark}\n"
    ));
    wait_state_of(e, &ctl, &a, "alpha", "Ready", T);
    wait_state_of(e, &ctl, &b, "alpha", "Ready", T);
    wait_state_of(e, &ctl, &b, "found", "Ready", T);
    wait_for("the missing Secret of a listed namespace", T, || {
        let (_, m) = ready_condition(e, "mcpserver", &a, "guarded")?;
        m.contains(&format!("Secret {a}/guard-token not found"))
            .then_some(())
    });
    // c: nothing read, nothing written, no status (a few more seconds to be sure).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(support::state_of(e, &c, "alpha"), None);
    assert!(e.get("mcpserver", &c, "found").is_none());
    assert!(e.get("deployment", &c, "alpha").is_none());
    assert!(ctl.alive(), "{}", ctl.log_tail());
    assert!(!log_has(&ctl, "forbidden"), "a 403:\n{}", ctl.log_tail());

    drop(ctl);
    helm_ok(e, &["uninstall", &release, "-n", &ns, "--wait"]);
    e.k(&["delete", "namespace", &a, &b, &c, &ns, "--wait=false"]);
    let _ = std::fs::remove_file(&kubeconfig);
}

/// The one cluster test, in order (its steps share the release): install; the ClusterRole as
/// shipped reconciles the examples; leader election and failover; upgrade; the ClusterRole
/// minus one verb fails.
#[test]
fn helm_install_gives_a_working_least_privilege_operator() {
    let Some(e) = env() else { return };
    let _one = one_at_a_time();
    let t0 = Instant::now();
    let pid = std::process::id() % 100_000;
    let release = format!("hangar-{pid}");
    let ns = e.namespace("hangar-system", true);

    // A clean slate, so that the install must create the CRDs (other test binaries installed
    // them with `hangar crds`); deleting them deletes their resources.
    let mut delete = vec!["delete", "crd", "--ignore-not-found", "--timeout=120s"];
    delete.extend(support::CRDS);
    e.k(&delete);
    // `helm install|upgrade` of the release, with the test's short lease.
    let release_cmd = |verb: &str, extra: &[&str]| {
        let mut args = vec![verb, &release, CHART, "-n", &ns];
        args.extend_from_slice(&["--set", "operator.leaderElection.leaseDuration=6s"]);
        args.extend_from_slice(extra);
        helm_ok(e, &args);
    };
    release_cmd("install", &[]);
    e.wait_crds_established();
    for (kind, name) in [
        ("serviceaccount", release.clone()),
        ("role", format!("{release}-leader-election")),
        ("rolebinding", format!("{release}-leader-election")),
        ("deployment", release.clone()),
        ("service", format!("{release}-metrics")),
        ("configmap", format!("{release}-dashboard")),
    ] {
        assert!(e.get(kind, &ns, &name).is_some(), "{kind} {ns}/{name}");
    }
    e.k(&["get", "clusterrole", &release]);
    e.k(&["get", "clusterrolebinding", &release]);
    // The pods pass the namespace's restricted Pod Security level (else the ReplicaSet gets
    // none).
    wait_for("the chart's two controller pods", T, || {
        let selector =
            format!("app.kubernetes.io/instance={release},app.kubernetes.io/component=operator");
        (e.names("pods", &ns, &selector).len() == 2).then_some(())
    });
    // The gateway's two pods pass the restricted level too (kwok's pods run nothing: not waited
    // for Ready); its ServiceAccount reads what it watches and nothing else.
    wait_for("the chart's two gateway pods", T, || {
        let selector =
            format!("app.kubernetes.io/instance={release},app.kubernetes.io/component=gateway");
        (e.names("pods", &ns, &selector).len() == 2).then_some(())
    });
    let gw = format!("system:serviceaccount:{ns}:{release}-core");
    for yes in [
        &["watch", "mcpservers.mcp-hangar.io", "-A"][..],
        &["list", "mcpservergroups.mcp-hangar.io", "-A"],
        &["watch", "endpointslices.discovery.k8s.io", "-A"],
    ] {
        assert!(can_i(e, &gw, yes), "the gateway may not {yes:?}");
    }
    for no in [
        &["get", "secrets", "-n", &ns][..],
        &["patch", "mcpservers.mcp-hangar.io", "-A"],
        &["patch", "mcpservers.mcp-hangar.io/status", "-A"],
        &["list", "pods", "-A"],
        &["create", "deployments.apps", "-n", &ns],
    ] {
        assert!(!can_i(e, &gw, no), "the gateway may {no:?}");
    }

    // What the ServiceAccount may do: what hangar calls, nothing more; no Secret anywhere
    // (cluster-wide mode without rbac.secretNamespaces).
    let who = format!("system:serviceaccount:{ns}:{release}");
    let can = |args: &[&str]| can_i(e, &who, args);
    for yes in [
        &["patch", "deployments.apps", "-A"][..],
        &["create", "networkpolicies.networking.k8s.io", "-n", "x"],
        &["watch", "mcpservers.mcp-hangar.io", "-A"],
        &["patch", "mcpservers.mcp-hangar.io/status", "-A"],
        &["create", "events.events.k8s.io", "-n", "x"],
        &["create", "leases.coordination.k8s.io", "-n", &ns],
        &[
            "update",
            &format!("leases.coordination.k8s.io/{release}"),
            "-n",
            &ns,
        ],
    ] {
        assert!(can(yes), "{who} cannot {yes:?}");
    }
    for no in [
        &["create", "pods", "-n", "x"][..],
        &["get", "secrets", "-n", "x"],
        &["get", "secrets", "-n", "kube-system"],
        &["get", "secrets", "-A"],
        &["list", "secrets", "-n", "x"],
        &["watch", "secrets", "-A"],
        &["update", "deployments.apps", "-n", "x"],
        &["create", "clusterroles.rbac.authorization.k8s.io"],
        &["delete", "customresourcedefinitions.apiextensions.k8s.io"],
        &["create", "leases.coordination.k8s.io", "-n", "x"],
        &["update", "leases.coordination.k8s.io/other", "-n", &ns],
        &["*", "*"],
    ] {
        assert!(!can(no), "{who} may {no:?}");
    }
    let kubeconfig = service_account_kubeconfig(e, &ns, &release);

    // Two controllers as the chart's ServiceAccount, with leader election as the chart runs
    // it (its Lease name, a 6 s lease): one becomes the leader, the other stands by.
    let lease_args = [
        "--leader-elect",
        "--leader-election-namespace",
        &ns,
        "--leader-election-lease-name",
        &release,
        "--leader-election-lease-duration",
        "6s",
        "--log-format",
        "json",
    ];
    let candidate = |name: &'static str| {
        let opts = ControllerOpts {
            kubeconfig: Some(&kubeconfig),
            args: &lease_args,
            name,
            ..Default::default()
        };
        Controller::spawn(e, &opts)
    };
    let a = candidate("helm-a");
    let b = candidate("helm-b");
    a.wait_ready(T);
    b.wait_ready(T);
    let (leader, follower) = wait_for("one leader", T, || {
        match (a.metric("hangar_leader "), b.metric("hangar_leader ")) {
            (x, y) if x == 1.0 && y == 0.0 => Some((&a, &b)),
            (x, y) if x == 0.0 && y == 1.0 => Some((&b, &a)),
            _ => None,
        }
    });
    leader.wait_ready(T);
    assert!(
        lease_holder(e, &ns, &release).contains(&format!("_{}_", leader.pid())),
        "lease holder {}",
        lease_holder(e, &ns, &release)
    );

    // The examples, reconciled by the leader as the chart's ServiceAccount.
    let applied = e.hangar(&["apply", "examples/"]);
    assert!(applied.status.success(), "{}", text(&applied));
    let servers = example_servers(e);
    assert!(servers.iter().filter(|s| s.2 == Some("Ready")).count() >= 3);
    for (sns, name, want) in &servers {
        match want {
            Some(w) => wait_state_of(e, leader, sns, name, w, T),
            None => {
                wait_for(&format!("a status on {sns}/{name}"), T, || {
                    support::state_of(e, sns, name)
                });
            }
        }
    }
    // kube-system: RBAC cannot fence a cluster-wide controller off it, so the controller itself
    // refuses (a status naming the value to set, a Warning Event) and creates nothing there.
    e.apply_yaml(&server_yaml("kube-system", "intruder"));
    let (reason, msg) = wait_for("a refusal in kube-system", T, || {
        ready_condition(e, "mcpserver", "kube-system", "intruder")
    });
    assert_eq!(reason, "NamespaceNotManaged", "{msg}");
    assert!(msg.contains("watchNamespaces"), "{msg}");
    assert!(e.get("deployment", "kube-system", "intruder").is_none());
    assert!(e.get("serviceaccount", "kube-system", "intruder").is_none());
    e.k(&["delete", "mcpserver", "intruder", "-n", "kube-system"]);

    // Only the leader writes; the follower has reconciled nothing.
    assert!(leader.metric("hangar_api_writes_total") > 0.0);
    assert_eq!(follower.metric("hangar_api_writes_total"), 0.0);
    assert_eq!(follower.metric("mcp_operator_reconcile_total"), 0.0);
    // Structured logs: every line of the leader's log is a JSON object with a level.
    let log = std::fs::read_to_string(&leader.log).unwrap_or_default();
    let mut lines = 0;
    for l in log.lines().filter(|l| l.starts_with('{')) {
        let j: Json = serde_json::from_str(l).unwrap_or_else(|err| panic!("{err}: {l}"));
        assert!(j["level"].is_string() && j["timestamp"].is_string(), "{l}");
        lines += 1;
    }
    assert!(lines > 0 && log.contains("became the leader"), "{log}");

    // The leader dies (SIGKILL: no release): the follower takes over within the lease time
    // (6 s, plus its retry period and a loaded machine's slack).
    let (ready_ns, ready_name) = servers
        .iter()
        .find(|s| s.2 == Some("Ready"))
        .map(|s| (s.0.clone(), s.1.clone()))
        .expect("a Ready example");
    let killed = Instant::now();
    leader.kill();
    let failover = leads_after(follower, killed);
    eprintln!("failover after the leader's SIGKILL: {failover:?} (lease 6 s)");
    assert!(failover < Duration::from_secs(25), "{failover:?}");
    assert!(
        lease_holder(e, &ns, &release).contains(&format!("_{}_", follower.pid())),
        "lease holder {}",
        lease_holder(e, &ns, &release)
    );
    let fresh = e.namespace("after-failover", false);
    e.apply_yaml(&server_yaml(&fresh, "beta"));
    wait_state_of(e, follower, &fresh, "beta", "Ready", T);

    // A Secret in a namespace rbac.secretNamespaces does not list: the check fails with a
    // message naming the Secret and the value to set (not a bare 403).
    e.apply_yaml(&guarded_yaml(&fresh));
    let forbidden = wait_for("a forbidden Secret in status", T, || {
        let (_, m) = ready_condition(e, "mcpserver", &fresh, "guarded")?;
        m.contains("may not read Secret").then_some(m)
    });
    assert!(
        forbidden.contains(&format!("Secret {fresh}/guard-token"))
            && forbidden.contains(&format!("add {fresh} to rbac.secretNamespaces")),
        "{forbidden}"
    );
    // The same for a Git source's credentials (read before any fetch).
    e.apply_yaml(&format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata:\n  name: from-git\n  namespace: {fresh}\nspec:\n  type: Git\n  refreshInterval: 5s\n  git:\n    url: https://127.0.0.1:9/team/catalog.git\n    secretRef:\n      name: git-creds\n"
    ));
    let (reason, msg) = wait_for("a forbidden git.secretRef", T, || {
        ready_condition(e, "mcpdiscoverysource", &fresh, "from-git")
    });
    assert_eq!(reason, "SecretForbidden", "{msg}");
    assert!(
        msg.contains(&format!("Secret {fresh}/git-creds")) && msg.contains("rbac.secretNamespaces"),
        "{msg}"
    );

    // Upgrade with other values: the release's ServiceAccount, RBAC and the servers stay (same
    // objects, still Ready), and the running controller's token still works; the Secrets of
    // `fresh` become readable (by name), no others.
    let before = (
        uid(e, "serviceaccount", &ns, &release),
        uid(e, "deployment", &ready_ns, &ready_name),
        uid(e, "deployment", &fresh, "beta"),
    );
    let only = format!("networkPolicy.namespaces={{{fresh}}}");
    let secrets = format!("rbac.secretNamespaces={{{fresh}}}");
    release_cmd(
        "upgrade",
        &[
            "--set",
            "operator.logLevel=debug",
            "--set",
            "replicaCount=3",
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            &only,
            "--set",
            "dashboard.enabled=false",
            "--set",
            &secrets,
        ],
    );
    assert!(can(&["get", "secrets", "-n", &fresh]));
    for no in [
        &["list", "secrets", "-n", &fresh][..],
        &["get", "secrets", "-n", "kube-system"],
        &["get", "secrets", "-n", "x"],
    ] {
        assert!(!can(no), "{who} may {no:?} after the upgrade");
    }
    // Now the Secrets are read: they are missing, and status says so.
    wait_for("the Secret read after the upgrade", T, || {
        let (_, m) = ready_condition(e, "mcpserver", &fresh, "guarded")?;
        m.contains(&format!("Secret {fresh}/guard-token not found"))
            .then_some(())
    });
    wait_for("the Git Secret read after the upgrade", T, || {
        let (r, _) = ready_condition(e, "mcpdiscoverysource", &fresh, "from-git")?;
        (r == "SecretMissing").then_some(())
    });
    let deploy = e.get("deployment", &ns, &release).expect("deployment");
    assert_eq!(deploy["spec"]["replicas"], 3);
    assert!(deploy.to_string().contains("--log-level=debug"));
    assert!(
        e.get("configmap", &ns, &format!("{release}-dashboard"))
            .is_none()
    );
    assert!(
        e.get(
            "networkpolicy",
            &fresh,
            &format!("{release}-mcp-server-isolation")
        )
        .is_some()
    );
    let after = (
        uid(e, "serviceaccount", &ns, &release),
        uid(e, "deployment", &ready_ns, &ready_name),
        uid(e, "deployment", &fresh, "beta"),
    );
    assert_eq!(before, after, "the upgrade replaced objects");
    wait_state_of(e, follower, &ready_ns, &ready_name, "Ready", T);
    wait_state_of(e, follower, &fresh, "beta", "Ready", T);
    e.apply_yaml(&server_yaml(&fresh, "gamma"));
    wait_state_of(e, follower, &fresh, "gamma", "Ready", T);
    assert!(follower.alive(), "{}", follower.log_tail());

    // A graceful stop (SIGTERM, as in a rolling update) releases the Lease: a new follower takes
    // over at its next retry, well before the 6 s an unreleased Lease takes.
    let c = candidate("helm-c");
    c.wait_ready(T);
    assert_eq!(c.metric("hangar_leader "), 0.0);
    let stopped = Instant::now();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &follower.pid().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let handover = leads_after(&c, stopped);
    eprintln!("handover after the leader's SIGTERM: {handover:?} (lease 6 s)");
    assert!(handover < Duration::from_secs(4), "{handover:?}");
    let status = follower
        .child
        .lock()
        .ok()
        .and_then(|mut ch| ch.wait().ok())
        .and_then(|st| st.code());
    assert_eq!(status, Some(0), "{}", follower.log_tail());
    assert!(
        log_has(follower, "released the leader lease"),
        "{}",
        follower.log_tail()
    );

    drop(a);
    drop(b);
    drop(c);
    // The test can fail (no other controller runs now): the ClusterRole without `patch` on
    // mcpservers/status, bound to another ServiceAccount, does not get a server to Ready (its
    // status writes are forbidden).
    {
        let mut role: Json =
            serde_json::from_str(&e.k(&["get", "clusterrole", &release, "-o", "json"]))
                .expect("role");
        let crippled = format!("{release}-minus-one");
        let mut removed = false;
        for r in role["rules"].as_array_mut().expect("rules") {
            if r["resources"].to_string().contains("mcpservers/status")
                && let Some(verbs) = r["verbs"].as_array_mut()
            {
                let n = verbs.len();
                verbs.retain(|v| v != "patch");
                removed = verbs.len() < n;
            }
        }
        assert!(removed, "no patch on mcpservers/status in {role}");
        let rules = role["rules"].clone();
        e.apply_yaml(
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": crippled}, "rules": rules})
            .to_string(),
        );
        e.k(&["create", "serviceaccount", &crippled, "-n", &ns]);
        e.k(&[
            "create",
            "clusterrolebinding",
            &crippled,
            "--clusterrole",
            &crippled,
            "--serviceaccount",
            &format!("{ns}:{crippled}"),
        ]);
        let neg = e.namespace("minus-one", false);
        let kc = service_account_kubeconfig(e, &ns, &crippled);
        let ctl = Controller::spawn(
            e,
            &ControllerOpts {
                kubeconfig: Some(&kc),
                args: &["--namespace", &neg],
                name: "helm-minus-one",
                ..Default::default()
            },
        );
        ctl.wait_ready(T);
        e.apply_yaml(&server_yaml(&neg, "alpha"));
        wait_log(&ctl, "cannot patch resource \"mcpservers/status\"", T);
        // Its children were created (those verbs are there), its status never written.
        assert!(e.get("deployment", &neg, "alpha").is_some());
        assert_eq!(support::state_of(e, &neg, "alpha"), None);
        drop(ctl);
        e.k(&["delete", "namespace", &neg, "--wait=false"]);
        e.k(&["delete", "clusterrolebinding,clusterrole", &crippled]);
    }

    helm_ok(e, &["uninstall", &release, "-n", &ns, "--wait"]);
    e.k(&["delete", "namespace", &fresh, &ns, "--wait=false"]);
    let _ = std::fs::remove_file(&kubeconfig);
    eprintln!("helm install test: {:?}", t0.elapsed());
}
