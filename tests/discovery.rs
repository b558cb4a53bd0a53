//! MCPDiscoverySource against the real control plane: ConfigMap, Namespace and Annotations
//! discovery end to end, providerTemplate merge, Additive vs Authoritative, a bad entry skipped
//! alone, an unreadable source changing nothing, ownership (owner references, the sweep across namespaces,
//! hand-made servers never touched).

mod support;

use std::time::Duration;

use serde_json::Value as Json;
use support::{Env, env, wait_for};

const T: Duration = Duration::from_secs(90);

fn exists(e: &Env, ns: &str, name: &str) -> bool {
    e.get("mcpserver", ns, name).is_some()
}

fn ready_condition(e: &Env, ns: &str, source: &str) -> Option<Json> {
    let s = e.get("mcpdiscoverysource", ns, source)?;
    s["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
}

fn wait_reason(e: &Env, ns: &str, source: &str, reason: &str) -> Json {
    wait_for(&format!("{ns}/{source} Ready reason {reason}"), T, || {
        let c = ready_condition(e, ns, source)?;
        (c["reason"] == reason).then_some(c)
    })
}

/// A merge patch of a discovery source's spec.
fn patch_source(e: &Env, ns: &str, name: &str, patch: &str) {
    e.k(&[
        "patch",
        "mcpdiscoverysource",
        name,
        "-n",
        ns,
        "--type=merge",
        "-p",
        patch,
    ]);
}

fn catalog_cm(ns: &str, body: &str) -> String {
    let indented: String = body.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: catalog\n  namespace: {ns}\ndata:\n  providers.yaml: |\n{indented}"
    )
}

#[test]
fn configmap_discovery_additive_authoritative_bad_entries_and_unreadable_sources() {
    let Some(e) = env() else { return };
    e.controller();
    let ns = e.namespace("cmdisc", false);
    e.apply_yaml(&catalog_cm(
        &ns,
        "providers:\n  - name: alpha\n    image: ghcr.io/example/alpha:1.0.0\n  - name: beta\n    image: ghcr.io/example/beta:1.0.0\n    resources:\n      requests:\n        cpu: 100m\n",
    ));
    // A server someone made by hand, in the same namespace: discovery never touches it.
    e.apply_yaml(&format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: handmade\n  namespace: {ns}\nspec:\n  mode: container\n  image: ghcr.io/example/handmade:1.0.0\n"
    ));
    e.apply_yaml(&format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata:\n  name: cm-source\n  namespace: {ns}\nspec:\n  type: ConfigMap\n  refreshInterval: 2s\n  configMapRef:\n    name: catalog\n  providerTemplate:\n    metadata:\n      labels:\n        team: platform\n    spec:\n      resources:\n        requests:\n          cpu: 50m\n          memory: 64Mi\n"
    ));
    wait_reason(e, &ns, "cm-source", "Synced");
    let alpha = e.get("mcpserver", &ns, "alpha").expect("alpha made");
    let beta = e.get("mcpserver", &ns, "beta").expect("beta made");
    // The template merged under each entry; the entry wins where both say something.
    assert_eq!(alpha["metadata"]["labels"]["team"], "platform", "{alpha}");
    assert_eq!(
        alpha["metadata"]["labels"]["mcp-hangar.io/discovered-by"],
        "cm-source"
    );
    assert_eq!(
        alpha["spec"]["resources"]["requests"]["cpu"], "50m",
        "{alpha}"
    );
    assert_eq!(
        beta["spec"]["resources"]["requests"]["cpu"], "100m",
        "{beta}"
    );
    assert_eq!(
        beta["spec"]["resources"]["requests"]["memory"], "64Mi",
        "{beta}"
    );
    assert_eq!(
        alpha["metadata"]["annotations"]["mcp-hangar.io/source"],
        format!("configmap:{ns}/catalog#providers.yaml")
    );
    let owner = &alpha["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "MCPDiscoverySource", "{alpha}");
    assert_eq!(owner["name"], "cm-source");
    // The generated server is reconciled like any other: it gets its Deployment.
    wait_for("alpha's Deployment", T, || {
        e.get("deployment", &ns, "alpha")
    });
    let src = e
        .get("mcpdiscoverysource", &ns, "cm-source")
        .expect("source");
    let cm = e.get("configmap", &ns, "catalog").expect("cm");
    assert_eq!(src["status"]["discoveredCount"], 2, "{}", src["status"]);
    assert_eq!(src["status"]["managedCount"], 2, "{}", src["status"]);
    assert_eq!(src["status"]["createdCount"], 2, "{}", src["status"]);
    assert_eq!(src["status"]["revision"], cm["metadata"]["resourceVersion"]);
    // Refreshes that find nothing new write nothing: no server, no status changes.
    // (The source's resourceVersion; for servers, when hangar-discovery last wrote them: their
    // status moves on as the server controller probes them.)
    let rv = |kind: &str, name: &str| {
        e.get(kind, &ns, name).map(|o| {
            if kind == "mcpdiscoverysource" {
                return o["metadata"]["resourceVersion"].clone();
            }
            o["metadata"]["managedFields"]
                .as_array()
                .and_then(|m| {
                    m.iter()
                        .find(|f| f["manager"] == "hangar-discovery")
                        .cloned()
                })
                .map(|f| f["time"].clone())
                .unwrap_or_default()
        })
    };
    let before = (
        rv("mcpdiscoverysource", "cm-source"),
        rv("mcpserver", "alpha"),
        rv("mcpserver", "beta"),
    );
    std::thread::sleep(Duration::from_secs(5));
    let after = (
        rv("mcpdiscoverysource", "cm-source"),
        rv("mcpserver", "alpha"),
        rv("mcpserver", "beta"),
    );
    assert_eq!(before.0, after.0, "no status write at steady state");
    assert_eq!(before.1, after.1, "no server write at steady state");
    assert_eq!(before.2, after.2, "no server write at steady state");

    // beta leaves the catalog, alpha changes, gamma is malformed: alpha is updated, gamma is
    // reported with its location and skipped alone, beta stays (Additive).
    e.apply_yaml(&catalog_cm(
        &ns,
        "providers:\n  - name: alpha\n    image: ghcr.io/example/alpha:2.0.0\n  - name: gamma\n    image: ghcr.io/example/gamma:1.0.0\n    idleTtl: 5m\n  - name: delta\n    endpoint: https://delta.example.com/mcp\n",
    ));
    let c = wait_reason(e, &ns, "cm-source", "PartiallySynced");
    let msg = c["message"].as_str().unwrap_or_default().to_string();
    assert!(
        msg.contains(&format!("configmap:{ns}/catalog#providers.yaml:4:")),
        "{msg}"
    );
    wait_for("alpha updated", T, || {
        let a = e.get("mcpserver", &ns, "alpha")?;
        (a["spec"]["image"] == "ghcr.io/example/alpha:2.0.0").then_some(())
    });
    assert!(exists(e, &ns, "delta"));
    assert!(!exists(e, &ns, "gamma"));
    assert!(exists(e, &ns, "beta"), "Additive mode never deletes");
    let src = e
        .get("mcpdiscoverysource", &ns, "cm-source")
        .expect("source");
    let gamma = src["status"]["discoveredProviders"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "gamma").cloned())
        .expect("gamma listed");
    assert_eq!(gamma["managed"], false, "{gamma}");
    let err = gamma["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("idleTTL"),
        "did-you-mean in the entry's error: {err}"
    );

    // Authoritative: beta (gone from the catalog) is deleted; gamma's failure deletes nothing;
    // the hand-made server is not this source's.
    patch_source(
        e,
        &ns,
        "cm-source",
        "{\"spec\":{\"mode\":\"Authoritative\"}}",
    );
    wait_for("beta deleted", T, || {
        (!exists(e, &ns, "beta")).then_some(())
    });
    assert!(exists(e, &ns, "alpha") && exists(e, &ns, "delta") && exists(e, &ns, "handmade"));

    // The ConfigMap goes missing: unreadable, not empty. Nothing is deleted.
    e.k(&["delete", "configmap", "catalog", "-n", &ns]);
    let c = wait_reason(e, &ns, "cm-source", "ConfigMapMissing");
    assert!(
        c["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not found"),
        "{c}"
    );
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        exists(e, &ns, "alpha") && exists(e, &ns, "delta"),
        "nothing deleted"
    );

    // Deleting the source itself removes what it made (owner references), not the rest.
    e.k(&["delete", "mcpdiscoverysource", "cm-source", "-n", &ns]);
    wait_for("generated servers collected", T, || {
        (!exists(e, &ns, "alpha") && !exists(e, &ns, "delta")).then_some(())
    });
    assert!(exists(e, &ns, "handmade"));
}

#[test]
fn namespace_discovery_follows_namespace_labels_and_cleans_up_across_namespaces() {
    let Some(e) = env() else { return };
    e.controller();
    let home = e.namespace("nsdisc-home", false);
    let team = e.namespace("nsdisc-team", false);
    let mark = format!("t{}", std::process::id());
    e.k(&[
        "label",
        "namespace",
        &team,
        &format!("hangar-test-disc={mark}"),
    ]);
    e.apply_yaml(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: team-catalog\n  namespace: {team}\n  labels:\n    mcp-hangar.io/catalog: \"true\"\ndata:\n  servers.yaml: |\n    servers:\n      - name: team-tools\n        image: ghcr.io/example/team-tools:1.0.0\n      - name: sneaky\n        namespace: {home}\n        image: ghcr.io/example/sneaky:1.0.0\n  README: not a catalog key\n"
    ));
    e.apply_yaml(&format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata:\n  name: teams\n  namespace: {home}\nspec:\n  type: Namespace\n  mode: Authoritative\n  refreshInterval: 1h\n  namespaceSelector:\n    matchLabels:\n      hangar-test-disc: {mark}\n  providerTemplate:\n    spec:\n      replicas: 2\n"
    ));
    let s = wait_for("team-tools in the team namespace", T, || {
        e.get("mcpserver", &team, "team-tools")
    });
    assert_eq!(s["spec"]["replicas"], 2, "{s}");
    assert_eq!(
        s["metadata"]["labels"]["mcp-hangar.io/discovered-by-namespace"],
        home.as_str()
    );
    assert!(
        s["metadata"].get("ownerReferences").is_none(),
        "no cross-namespace owner"
    );
    // An entry naming another namespace is refused, located, and skipped alone.
    let c = wait_reason(e, &home, "teams", "PartiallySynced");
    assert!(
        c["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("configmap:{team}/team-catalog#servers.yaml:4:")),
        "{c}"
    );
    assert!(!exists(e, &home, "sneaky"));
    let src = e.get("mcpdiscoverysource", &home, "teams").expect("source");
    assert!(
        src["metadata"].get("finalizers").is_none(),
        "no finalizer: {src}"
    );

    // The namespace stops matching (a watch, not the 1h refresh, notices): its servers go.
    e.k(&["label", "namespace", &team, "hangar-test-disc-"]);
    wait_for("team-tools deleted", T, || {
        (!exists(e, &team, "team-tools")).then_some(())
    });
    e.k(&[
        "label",
        "namespace",
        &team,
        &format!("hangar-test-disc={mark}"),
    ]);
    wait_for("team-tools back", T, || {
        e.get("mcpserver", &team, "team-tools")
    });

    // Deleting the source: what it made in other namespaces is swept up.
    e.k(&["delete", "mcpdiscoverysource", "teams", "-n", &home]);
    wait_for("cleanup across namespaces", T, || {
        (!exists(e, &team, "team-tools") && e.get("mcpdiscoverysource", &home, "teams").is_none())
            .then_some(())
    });
}

#[test]
fn annotated_services_become_remote_servers() {
    let Some(e) = env() else { return };
    e.controller();
    let ns = e.namespace("anndisc", false);
    let svc = |name: &str, annotations: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations:\n{annotations}\nspec:\n  ports:\n    - name: web\n      port: 80\n    - name: mcp\n      port: 8080\n"
        )
    };
    e.apply_yaml(&svc(
        "tools",
        "    mcp-hangar.io/provider: \"true\"\n    mcp-hangar.io/path: /v1/mcp",
    ));
    e.apply_yaml(&svc("plain", "    other: x"));
    e.apply_yaml(&format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata:\n  name: annotated\n  namespace: {ns}\nspec:\n  type: Annotations\n  refreshInterval: 1h\n"
    ));
    let s = wait_for("tools discovered", T, || e.get("mcpserver", &ns, "tools"));
    assert_eq!(s["spec"]["mode"], "remote", "{s}");
    assert_eq!(
        s["spec"]["endpoint"],
        format!("http://tools.{ns}.svc:8080/v1/mcp"),
        "{s}"
    );
    assert_eq!(
        s["metadata"]["annotations"]["mcp-hangar.io/source"],
        format!("service:{ns}/tools")
    );
    assert!(!exists(e, &ns, "plain"));
    // Annotating a Service is noticed through the watch (the refresh is 1h).
    e.k(&[
        "annotate",
        "service",
        "plain",
        "-n",
        &ns,
        "mcp-hangar.io/provider=true",
    ]);
    wait_for("plain discovered", T, || e.get("mcpserver", &ns, "plain"));
    // A generated server deleted by hand comes back.
    e.k(&["delete", "mcpserver", "tools", "-n", &ns]);
    wait_for("tools recreated", T, || e.get("mcpserver", &ns, "tools"));
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let o = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("run git");
    assert!(o.status.success(), "git {args:?}: {}", support::text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn write(dir: &std::path::Path, path: &str, text: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

#[test]
fn git_source_keeps_the_cluster_equal_to_the_repository() {
    let Some(e) = env() else { return };
    e.controller();
    let ns = e.namespace("gitops", false);
    let repo = e
        .root
        .join(format!("target/tmp/gitops-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&repo);
    std::fs::create_dir_all(&repo).expect("repo dir");
    git(&repo, &["init", "-q", "-b", "main"]);
    write(
        &repo,
        "servers/catalog.yaml",
        "servers:\n  - name: cat-a\n    image: ghcr.io/example/cat-a:1.0.0\n",
    );
    write(
        &repo,
        "servers/resources.yaml",
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: explicit-b\nspec:\n  mode: remote\n  endpoint: https://b.example.com/mcp\n---\napiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServerGroup\nmetadata:\n  name: grp\nspec:\n  selector:\n    matchLabels:\n      team: x\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: not-applied\n",
    );
    write(&repo, "README.md", "not read\n");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "first"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    let source = format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata:\n  name: repo\n  namespace: {ns}\nspec:\n  type: Git\n  mode: Authoritative\n  refreshInterval: 2s\n  git:\n    url: file://{}\n    ref: main\n    path: servers\n  providerTemplate:\n    metadata:\n      labels:\n        team: x\n    spec:\n      replicas: 2\n",
        repo.display()
    );
    e.apply_yaml(&source);
    wait_reason(e, &ns, "repo", "Synced");
    let src = e.get("mcpdiscoverysource", &ns, "repo").expect("source");
    assert_eq!(
        src["status"]["revision"],
        first.as_str(),
        "{}",
        src["status"]
    );
    assert!(
        src["status"]["conditions"]
            .to_string()
            .contains("Namespace/not-applied"),
        "ignored objects are named: {}",
        src["status"]
    );
    let a = e
        .get("mcpserver", &ns, "cat-a")
        .expect("catalog entry applied");
    assert_eq!(
        a["spec"]["replicas"], 2,
        "template applies to the repo's catalog: {a}"
    );
    let b = e
        .get("mcpserver", &ns, "explicit-b")
        .expect("resource applied");
    assert!(e.get("mcpservergroup", &ns, "grp").is_some());
    assert!(e.get("namespace", "", "not-applied").is_none());

    // What `hangar render` prints for the source (fetching the same commit) is what was applied.
    let src_file = repo.with_extension("source.yaml");
    std::fs::write(&src_file, &source).expect("source file");
    let out = e.hangar(&[
        "render",
        &src_file.display().to_string(),
        "--fetch-git",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", support::text(&out));
    let rendered: Json = serde_json::from_slice(&out.stdout).expect("json");
    for live in [&a, &b] {
        let name = live["metadata"]["name"].as_str().unwrap_or_default();
        let r = rendered["items"]
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .find(|o| o["kind"] == "MCPServer" && o["metadata"]["name"] == name)
                    .cloned()
            })
            .unwrap_or_else(|| panic!("{name} not rendered"));
        assert_eq!(r["spec"], live["spec"], "{name}: render == applied");
    }

    // A new commit appears within a refresh or two.
    write(
        &repo,
        "servers/catalog.yaml",
        "servers:\n  - name: cat-a\n    image: ghcr.io/example/cat-a:1.0.0\n  - name: cat-c\n    image: ghcr.io/example/cat-c:1.0.0\n",
    );
    git(&repo, &["commit", "-qam", "add cat-c"]);
    let second = git(&repo, &["rev-parse", "HEAD"]);
    wait_for("cat-c applied", T, || e.get("mcpserver", &ns, "cat-c"));
    wait_for("revision = second commit", T, || {
        let s = e.get("mcpdiscoverysource", &ns, "repo")?;
        (s["status"]["revision"] == second.as_str()).then_some(())
    });

    // A bad commit (broken YAML outside any entry) changes nothing.
    write(&repo, "servers/resources.yaml", "apiVersion: [\n");
    git(&repo, &["commit", "-qam", "broken"]);
    let c = wait_reason(e, &ns, "repo", "InvalidContent");
    assert!(
        c["message"]
            .as_str()
            .unwrap_or_default()
            .contains("does not compile"),
        "{c}"
    );
    std::thread::sleep(Duration::from_secs(5));
    for name in ["cat-a", "explicit-b", "cat-c"] {
        assert!(exists(e, &ns, name), "{name} kept after a bad commit");
    }

    // A missing ref: unreadable, nothing deleted.
    patch_source(
        e,
        &ns,
        "repo",
        "{\"spec\":{\"git\":{\"ref\":\"no-such-branch\"}}}",
    );
    wait_reason(e, &ns, "repo", "RefNotFound");
    assert!(exists(e, &ns, "cat-a") && exists(e, &ns, "cat-c"));

    // Force-pushed back to the first commit: the cluster follows (Authoritative: cat-c goes).
    git(&repo, &["reset", "-q", "--hard", &first]);
    patch_source(e, &ns, "repo", "{\"spec\":{\"git\":{\"ref\":\"main\"}}}");
    wait_for("cat-c deleted after the force-push", T, || {
        (!exists(e, &ns, "cat-c")).then_some(())
    });
    let s = e.get("mcpdiscoverysource", &ns, "repo").expect("source");
    assert_eq!(s["status"]["revision"], first.as_str());
    assert!(exists(e, &ns, "cat-a") && exists(e, &ns, "explicit-b"));
}

#[test]
fn git_daemon_source_follows_new_commits_within_a_refresh() {
    // The repository is on `master` and the source names no `ref`: the remote HEAD is read
    // (issue 13.10; a `main` default gave RefNotFound).
    let Some(e) = env() else { return };
    e.controller();
    let ns = e.namespace("gitd", false);
    let base = e
        .root
        .join(format!("target/tmp/gitd-{}", std::process::id()));
    let repo = base.join("catalogs");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&repo).expect("repo dir");
    git(&repo, &["init", "-q", "-b", "master"]);
    write(
        &repo,
        "prod.yaml",
        "servers:\n  - name: d-one\n    image: ghcr.io/example/d-one:1.0.0\n",
    );
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "one"]);
    let port = support::free_tcp_port();
    let _daemon = support::start_listening(support::git_daemon(&base, port), port);
    e.apply_yaml(&format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata:\n  name: daemon\n  namespace: {ns}\nspec:\n  type: Git\n  refreshInterval: 3s\n  git:\n    url: git://127.0.0.1:{port}/catalogs\n"
    ));
    wait_reason(e, &ns, "daemon", "Synced");
    assert!(exists(e, &ns, "d-one"));
    // What rolls d-one's pods: its config hash, on the pod template.
    let pod_hash = || {
        let d = e.get("deployment", &ns, "d-one")?;
        d.pointer("/spec/template/metadata/annotations/mcp-hangar.io~1config-hash")?
            .as_str()
            .map(str::to_string)
    };
    let hash_before = wait_for("d-one's Deployment", T, pod_hash);
    write(
        &repo,
        "prod.yaml",
        "servers:\n  - name: d-one\n    image: ghcr.io/example/d-one:1.0.0\n  - name: d-two\n    image: ghcr.io/example/d-two:1.0.0\n",
    );
    git(&repo, &["commit", "-qam", "two"]);
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let t0 = std::time::Instant::now();
    wait_for("d-two applied", T, || e.get("mcpserver", &ns, "d-two"));
    // Within about one refresh (3 s), with room for a loaded machine.
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t0.elapsed()
    );
    wait_for("revision = HEAD", T, || {
        let s = e.get("mcpdiscoverysource", &ns, "daemon")?;
        (s["status"]["revision"] == head.as_str()).then_some(())
    });
    // A commit that leaves d-one's definition as it was does not roll it: provenance (the
    // commit in `mcp-hangar.io/source`) is recorded on the MCPServer but not hashed.
    wait_for("d-one's source annotation names the new commit", T, || {
        let s = e.get("mcpserver", &ns, "d-one")?;
        let source = s
            .pointer("/metadata/annotations/mcp-hangar.io~1source")?
            .as_str()?;
        source.contains(&head[..7]).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        pod_hash(),
        Some(hash_before),
        "a commit that did not change d-one rolled it"
    );
}

#[test]
fn requested_at_annotation_syncs_a_git_source_now() {
    // Issue 13: "sync now", like Flux's `reconcile.fluxcd.io/requestedAt`. A source refreshing
    // hourly picks up a new commit as soon as it is annotated, and says so in status.
    let Some(e) = env() else { return };
    e.controller();
    let ns = e.namespace("syncnow", false);
    let repo = e
        .root
        .join(format!("target/tmp/syncnow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&repo);
    std::fs::create_dir_all(&repo).expect("repo dir");
    git(&repo, &["init", "-q", "-b", "trunk"]);
    let one = "servers:\n  - name: n-one\n    image: ghcr.io/example/n-one:1.0.0\n";
    write(&repo, "catalog.yaml", one);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "one"]);
    e.apply_yaml(&format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata:\n  name: hourly\n  namespace: {ns}\nspec:\n  type: Git\n  refreshInterval: 1h\n  git:\n    url: file://{}\n",
        repo.display()
    ));
    wait_reason(e, &ns, "hourly", "Synced");
    assert!(exists(e, &ns, "n-one"));
    write(
        &repo,
        "catalog.yaml",
        &format!("{one}  - name: n-two\n    image: ghcr.io/example/n-two:1.0.0\n"),
    );
    git(&repo, &["commit", "-qam", "two"]);
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let asked = format!("now-{}", std::process::id());
    let o = e.kubectl(&[
        "annotate",
        "--overwrite",
        "-n",
        &ns,
        "mcpdiscoverysource/hourly",
        &format!("mcp-hangar.io/requested-at={asked}"),
    ]);
    assert!(o.status.success(), "{}", support::text(&o));
    let t0 = std::time::Instant::now();
    wait_for("the request handled", T, || {
        let s = e.get("mcpdiscoverysource", &ns, "hourly")?;
        (s["status"]["lastHandledRequestedAt"] == asked.as_str()).then_some(s)
    });
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert!(
        exists(e, &ns, "n-two"),
        "the requested sync applied the new commit"
    );
    let s = e.get("mcpdiscoverysource", &ns, "hourly").expect("source");
    assert_eq!(s["status"]["revision"], head.as_str(), "{}", s["status"]);
}

#[test]
fn an_emptied_configmap_never_deletes_what_an_authoritative_source_made() {
    // Issue 19.1: "", a comment, `null`, `---` or `providers:` with no value is not "0 servers":
    // the sync is held (EmptyCatalog) and everything stays; only `servers: []` removes them.
    let Some(e) = env() else { return };
    e.controller();
    let ns = e.namespace("emptycm", false);
    let two = "providers:\n  - name: keep-a\n    image: ghcr.io/example/a:1.0.0\n  - name: keep-b\n    image: ghcr.io/example/b:1.0.0\n";
    e.apply_yaml(&catalog_cm(&ns, two));
    e.apply_yaml(&format!(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata:\n  name: auth\n  namespace: {ns}\nspec:\n  type: ConfigMap\n  mode: Authoritative\n  refreshInterval: 2s\n  configMapRef:\n    name: catalog\n"
    ));
    wait_reason(e, &ns, "auth", "Synced");
    assert!(exists(e, &ns, "keep-a") && exists(e, &ns, "keep-b"));
    let set_catalog = |text: &str| {
        let data = serde_json::json!({"data": {"providers.yaml": text}}).to_string();
        e.k(&[
            "patch",
            "configmap",
            "catalog",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            &data,
        ]);
    };
    for blank in [
        "",
        "# nothing here yet\n",
        "null\n",
        "---\n",
        "providers:\n",
    ] {
        set_catalog(blank);
        let c = wait_reason(e, &ns, "auth", "EmptyCatalog");
        assert!(
            c["message"]
                .as_str()
                .unwrap_or_default()
                .contains("servers: []"),
            "{c}"
        );
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            exists(e, &ns, "keep-a") && exists(e, &ns, "keep-b"),
            "{blank:?} deleted the servers"
        );
        // Back to the two servers before the next blank variant.
        set_catalog(two);
        wait_reason(e, &ns, "auth", "Synced");
    }
    // An explicit empty list is a positive "no servers": an Authoritative source deletes them.
    set_catalog("servers: []\n");
    wait_for("servers: [] deletes them", T, || {
        (!exists(e, &ns, "keep-a") && !exists(e, &ns, "keep-b")).then_some(())
    });
    let s = e.get("mcpdiscoverysource", &ns, "auth").expect("source");
    assert_eq!(s["status"]["deletedCount"], 2, "{}", s["status"]);
}
