use super::*;

const SRC: &str = "src";
const NS: &str = "ns";

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn settings(spec: Json) -> SourceSettings {
    let spec: MCPDiscoverySourceSpec = serde_json::from_value(spec).expect("a valid spec");
    SourceSettings::decide(&spec)
}

fn server_body(name: &str, by: Option<&str>, url: &str) -> Json {
    let mut b = json!({
        "apiVersion": crate::api::API_VERSION,
        "kind": "MCPServer",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"url": url},
    });
    if let Some(by) = by {
        b["metadata"]["labels"] = json!({ DISCOVERED_BY_LABEL: by });
    }
    b
}

/// What the catalog yields: servers discovered by this source.
fn catalog(names: &[&str]) -> Vec<Object> {
    names
        .iter()
        .map(|n| {
            Object::new(
                server_body(n, Some(SRC), &format!("http://{n}")),
                Role::Resource,
                None,
            )
        })
        .collect()
}

/// A server in the cluster, made by source `by` (in namespace NS) from `url`.
fn live(name: &str, by: &str, url: &str) -> Arc<DynamicObject> {
    let mut body = server_body(name, None, url);
    body["metadata"]["labels"] = json!({
        DISCOVERED_BY_LABEL: by,
        DISCOVERED_BY_NAMESPACE_LABEL: NS,
    });
    // Owned as the source that made it owns what it makes.
    body["metadata"]["ownerReferences"] = json!([{
        "apiVersion": crate::api::API_VERSION,
        "kind": crate::api::Kind::DiscoverySource.name(),
        "name": by,
        "uid": if by == SRC { "uid-1" } else { "uid-other" },
        "controller": true,
        "blockOwnerDeletion": false,
    }]);
    Arc::new(serde_json::from_value(body).expect("an object"))
}

struct World {
    settings: SourceSettings,
    objects: Vec<Object>,
    skipped: BTreeSet<String>,
    cache: Vec<Arc<DynamicObject>>,
}

impl World {
    fn new(spec: Json, names: &[&str]) -> Self {
        World {
            settings: settings(spec),
            objects: catalog(names),
            skipped: BTreeSet::new(),
            cache: Vec::new(),
        }
    }

    fn plan(&self) -> Plan {
        let cached = |k: &ObjectKey| {
            self.cache
                .iter()
                .find(|o| o.name_any() == k.name && o.namespace() == k.namespace)
                .cloned()
        };
        let existing: Vec<(String, Arc<DynamicObject>)> = self
            .cache
            .iter()
            .map(|o| ("MCPServer".to_string(), o.clone()))
            .collect();
        plan(&PlanInput {
            name: SRC,
            ns: NS,
            uid: Some("uid-1"),
            settings: &self.settings,
            objects: &self.objects,
            skipped: &self.skipped,
            existing: &existing,
            cached: &cached,
        })
    }
}

fn names(writes: &[Write]) -> Vec<String> {
    writes
        .iter()
        .filter_map(|w| {
            w.body
                .pointer("/metadata/name")?
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

fn deleted(plan: &Plan) -> Vec<String> {
    plan.deletes.iter().map(|k| k.name.clone()).collect()
}

#[test]
fn globs() {
    assert!(glob("*", "x"));
    assert!(glob("team-*", "team-tools"));
    assert!(!glob("team-*", "docs"));
    assert!(glob("a?c", "abc"));
    assert!(!glob("a?c", "ac"));
}

#[test]
fn marks_labels_and_owner_only_within_the_namespace() {
    let owner = json!({"kind": "MCPDiscoverySource", "uid": "u"});
    let mut same = json!({"metadata": {"name": "a", "namespace": "ns"}, "status": {}});
    mark(&mut same, "src", "ns", Some(&owner));
    assert_eq!(same["metadata"]["labels"][DISCOVERED_BY_LABEL], "src");
    assert_eq!(same["metadata"]["ownerReferences"][0]["uid"], "u");
    assert!(same.get("status").is_none());
    let mut other = json!({"metadata": {"name": "a", "namespace": "team"}});
    mark(&mut other, "src", "ns", Some(&owner));
    assert_eq!(
        other["metadata"]["labels"][DISCOVERED_BY_NAMESPACE_LABEL],
        "ns"
    );
    assert!(other["metadata"].get("ownerReferences").is_none());
}

#[test]
fn additive_applies_what_is_new_or_changed_and_deletes_nothing() {
    let mut w = World::new(json!({"type": "ConfigMap"}), &["a", "b"]);
    w.cache = vec![
        live("b", SRC, "http://old"),
        live("gone", SRC, "http://gone"),
    ];
    let p = w.plan();
    assert_eq!(names(&p.writes), ["a", "b"]);
    assert!(
        !p.writes[0].checked,
        "not in the cache: read before it is applied"
    );
    assert!(p.writes[1].checked, "ours in the cache");
    assert!(p.deletes.is_empty(), "Additive never deletes");
    assert_eq!(p.kept, ["a", "b"]);
    let owner = &p.desired[0]["metadata"]["ownerReferences"][0];
    assert_eq!(owner["uid"], "uid-1");
    assert_eq!(owner["blockOwnerDeletion"], false);
}

#[test]
fn authoritative_deletes_only_what_it_made_and_no_longer_yields() {
    let mut w = World::new(
        json!({"type": "ConfigMap", "mode": "Authoritative"}),
        &["a"],
    );
    w.skipped.insert("broken".into());
    w.cache = vec![
        live("a", SRC, "http://a"),
        live("gone", SRC, "http://gone"),
        live("broken", SRC, "http://broken"),
        live("theirs", "other", "http://theirs"),
    ];
    let p = w.plan();
    assert!(p.writes.is_empty(), "a is as wanted already");
    assert_eq!(
        deleted(&p),
        ["gone"],
        "not what is still yielded, not a skipped entry's, not another source's"
    );
    assert_eq!(p.deletes[0].kind, "MCPServer");
    assert_eq!(p.deletes[0].namespace.as_deref(), Some(NS));
}

#[test]
fn a_server_of_another_source_is_refused_not_taken_over() {
    let mut w = World::new(
        json!({"type": "ConfigMap", "mode": "Authoritative"}),
        &["a"],
    );
    w.cache = vec![live("a", "other", "http://a")];
    let p = w.plan();
    assert!(p.writes.is_empty());
    assert!(p.deletes.is_empty());
    let why = p.refused.get(&format!("MCPServer/{NS}/a")).cloned();
    assert_eq!(
        why,
        Some((
            Category::Conflict,
            "MCPServer/ns/a exists and belongs to discovery source ns/other".to_string()
        ))
    );
}

#[test]
fn filters_include_exclude_and_max_providers() {
    let spec = json!({"type": "ConfigMap", "mode": "Authoritative", "filters": {
        "includePatterns": ["team-*"],
        "excludePatterns": ["team-b"],
        "maxProviders": 2,
    }});
    let w = World::new(spec, &["team-c", "docs", "team-a", "team-b", "team-d"]);
    let p = w.plan();
    assert_eq!(p.kept, ["team-a", "team-c"], "sorted, then the first two");
    assert_eq!(
        p.filtered_out.iter().cloned().collect::<Vec<_>>(),
        ["docs", "team-b", "team-d"]
    );
    assert_eq!(names(&p.writes), ["team-a", "team-c"]);
}

#[test]
fn servers_labelled_for_another_source_are_not_yielded_unless_gitops() {
    let mut w = World::new(json!({"type": "ConfigMap"}), &[]);
    w.objects = vec![
        Object::new(server_body("mine", Some(SRC), "u"), Role::Resource, None),
        Object::new(server_body("other", Some("x"), "u"), Role::Resource, None),
        Object::new(server_body("plain", None, "u"), Role::Resource, None),
        Object::new(json!({"kind": "ConfigMap"}), Role::Passthrough, None),
    ];
    let p = w.plan();
    assert_eq!(names(&p.writes), ["mine"]);
    assert_eq!(p.ignored.len(), 1);
    w.settings = settings(json!({"type": "Git", "git": {"url": "https://x/r.git"}}));
    assert_eq!(names(&w.plan().writes), ["mine", "plain"]);
}

fn sync(prev: &MCPDiscoverySourceStatus, plan: &Plan, applied: &Applied, now: i64) -> SyncDecision {
    sync_requested(prev, plan, applied, now, None)
}

fn sync_requested(
    prev: &MCPDiscoverySourceStatus,
    plan: &Plan,
    applied: &Applied,
    now: i64,
    requested: Option<&str>,
) -> SyncDecision {
    sync_status(&SyncInput {
        prev,
        ns: NS,
        generation: Some(1),
        plan,
        skipped: &[],
        revision: "r1",
        applied,
        managed: plan.kept.len(),
        now: at(now),
        elapsed: Duration::from_millis(5),
        refresh: Duration::from_secs(60),
        requested,
    })
}

#[test]
fn an_unchanged_source_writes_nothing() {
    let mut w = World::new(
        json!({"type": "ConfigMap", "mode": "Authoritative"}),
        &["a", "b"],
    );
    // First sync: both created, status written with an Event.
    let p = w.plan();
    let applied = Applied {
        created: 2,
        ..Applied::default()
    };
    let first = sync(&MCPDiscoverySourceStatus::default(), &p, &applied, 100);
    assert!(first.write);
    assert_eq!(first.status.created_count, Some(2));
    assert_eq!(first.events.len(), 1);
    assert_eq!(first.events[0].1, "Synced");
    assert_eq!(
        first
            .status
            .next_sync_time
            .as_ref()
            .map(|t| t.0.as_second()),
        Some(160)
    );
    // The cluster now has what the source yields (as the first plan marked it).
    w.cache = p
        .desired
        .iter()
        .map(|b| Arc::new(serde_json::from_value(b.clone()).expect("an object")))
        .collect();
    let again = w.plan();
    assert!(again.writes.is_empty() && again.deletes.is_empty() && again.refused.is_empty());
    let second = sync(&first.status, &again, &Applied::default(), 200);
    assert!(!second.write, "no status write at steady state");
    assert!(second.events.is_empty());
    assert_eq!(
        second.status.created_count,
        Some(2),
        "counters of the last change"
    );
}

#[test]
fn failures_are_listed_with_a_warning_once() {
    let w = World::new(json!({"type": "ConfigMap"}), &["a", "b"]);
    let p = w.plan();
    let mut applied = Applied {
        created: 1,
        ..Applied::default()
    };
    applied.failed(
        "MCPServer/ns/b".into(),
        Category::ApplyFailed,
        "refused".into(),
    );
    applied.failed("MCPServer/ns/c".into(), Category::Conflict, "theirs".into());
    applied.failed(
        "MCPServer/ns/d".into(),
        Category::ApplyFailed,
        "refused".into(),
    );
    assert_eq!(applied.category, Category::Conflict, "the worst is kept");
    let d = sync(&MCPDiscoverySourceStatus::default(), &p, &applied, 100);
    let providers = d.status.discovered_providers.clone().unwrap_or_default();
    let b = providers.iter().find(|p| p.name == "b");
    assert_eq!(b.and_then(|b| b.managed), Some(false));
    assert_eq!(b.and_then(|b| b.error.clone()).as_deref(), Some("refused"));
    let ready = d.status.conditions.clone().unwrap_or_default();
    assert_eq!(ready[0].reason, "PartiallySynced");
    assert_eq!(
        d.events.iter().map(|e| e.1).collect::<Vec<_>>(),
        ["Synced", "PartiallySynced"]
    );
    // The same failure again: status unchanged, no second Warning.
    let again = sync(&d.status, &p, &applied, 200);
    assert!(again.events.iter().all(|e| e.1 != "PartiallySynced"));
}

#[test]
fn a_held_sync_writes_once() {
    let held = Held {
        reason: "ConfigMapMissing",
        message: "gone; nothing was changed".into(),
        error: Some("gone".into()),
    };
    let prev = MCPDiscoverySourceStatus {
        revision: Some("r1".into()),
        ..Default::default()
    };
    let s = held_status(&prev, &held, Some(2), at(100), None);
    let s = s.expect("a change");
    assert_eq!(
        s.revision.as_deref(),
        Some("r1"),
        "the last good state stays"
    );
    assert_eq!(s.last_sync_error.as_deref(), Some("gone"));
    assert_eq!(s.observed_generation, Some(2));
    assert!(held_status(&s, &held, Some(2), at(200), None).is_none());
}

#[test]
fn a_requested_sync_is_acknowledged_once_and_kept() {
    // `mcp-hangar.io/requested-at`: the sync that ran for it writes the value to status (one
    // write even when nothing else changed); later syncs keep it and write nothing.
    let w = World::new(json!({"type": "ConfigMap"}), &["a"]);
    let p = w.plan();
    let first = sync(
        &MCPDiscoverySourceStatus::default(),
        &p,
        &Applied::default(),
        100,
    );
    let steady = sync(&first.status, &p, &Applied::default(), 160);
    assert!(!steady.write);
    let asked = sync_requested(&first.status, &p, &Applied::default(), 170, Some("t1"));
    assert!(asked.write, "the answer to a request is written");
    assert_eq!(
        asked.status.last_handled_requested_at.as_deref(),
        Some("t1")
    );
    let again = sync_requested(&asked.status, &p, &Applied::default(), 230, Some("t1"));
    assert!(!again.write, "an answered request is not answered again");
    let later = sync(&asked.status, &p, &Applied::default(), 290);
    assert_eq!(
        later.status.last_handled_requested_at.as_deref(),
        Some("t1")
    );
    // A sync that could not read the source answers the request too (with its reason).
    let held = Held {
        reason: "ConfigMapMissing",
        message: "gone".into(),
        error: Some("gone".into()),
    };
    let s = held_status(&asked.status, &held, Some(1), at(300), Some("t2")).expect("a change");
    assert_eq!(s.last_handled_requested_at.as_deref(), Some("t2"));
}

#[test]
fn ignored_objects_are_a_note_not_an_error() {
    // Issue 13.9: an informational note is not `lastSyncError` while Ready is True.
    let mut w = World::new(json!({"type": "ConfigMap"}), &[]);
    w.objects = vec![
        Object::new(server_body("mine", Some(SRC), "u"), Role::Resource, None),
        Object::new(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
            Role::Passthrough,
            None,
        ),
    ];
    let p = w.plan();
    assert_eq!(p.ignored.len(), 1);
    let d = sync(
        &MCPDiscoverySourceStatus::default(),
        &p,
        &Applied::default(),
        100,
    );
    assert_eq!(d.status.last_sync_error, None);
    let ready = &d.status.conditions.as_deref().unwrap_or_default()[0];
    assert_eq!(ready.status, "True");
    assert!(ready.message.contains("were ignored"), "{}", ready.message);
    assert!(d.events.iter().all(|e| !e.0), "no Warning: {:?}", d.events);
}
