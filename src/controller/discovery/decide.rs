//! The decide steps of discovery: pure functions, no I/O. [`plan`] turns what a source yields
//! (its compiled catalog), its filters and mode, and what the cluster has of it (the watch cache,
//! the objects it made) into the writes and deletions of one sync; [`sync_status`] turns what
//! applying them answered, with the previous status, into the next status and its Events;
//! [`held_status`] does that for a sync that stopped before applying anything.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::{Value as Json, json};

use super::super::pipeline::Category;
use super::super::state::{self, truncate};
use crate::api::discovery::{
    DiscoveredProvider, DiscoveryMode, MCPDiscoverySourceSpec, MCPDiscoverySourceStatus, SourceType,
};
use crate::apply::ObjectKey;
use crate::compile::isolate::Skipped;
use crate::compile::resolve::{DISCOVERED_BY_LABEL, DISCOVERED_BY_NAMESPACE_LABEL};
use crate::compile::settings::SourceSettings;
use crate::compile::{Object, Role};

/// At most this many entries are listed in `status.discoveredProviders`.
pub const MAX_LISTED: usize = 500;

/// Whether `o` carries the labels of source `ns/name`.
pub fn is_ours(o: &DynamicObject, name: &str, ns: &str) -> bool {
    let l = o.labels();
    l.get(DISCOVERED_BY_LABEL).map(String::as_str) == Some(name)
        && l.get(DISCOVERED_BY_NAMESPACE_LABEL).map(String::as_str) == Some(ns)
}

// ---------------------------------------------------------------------------------------------
// plan

/// What one sync starts from.
pub struct PlanInput<'a> {
    /// The source's name and namespace.
    pub name: &'a str,
    pub ns: &'a str,
    pub uid: Option<&'a str>,
    pub settings: &'a SourceSettings,
    /// The compiled catalog: what the source read, as objects.
    pub objects: &'a [Object],
    /// Names of the entries that did not compile (they keep what they had made).
    pub skipped: &'a BTreeSet<String>,
    /// What exists now that this source made, by kind (read in Authoritative mode only; only
    /// what carries this source's labels is ever deleted).
    pub existing: &'a [(String, Arc<DynamicObject>)],
    /// The watch cache of discovered MCPServers.
    pub cached: &'a dyn Fn(&ObjectKey) -> Option<Arc<DynamicObject>>,
}

/// An object to send: `checked` when the cache shows it as this source's already (no read is
/// needed to know it is not someone else's).
#[derive(Debug, PartialEq)]
pub struct Write {
    pub body: Json,
    pub checked: bool,
}

/// The writes and deletions of one sync.
#[derive(Debug, Default)]
pub struct Plan {
    /// Every object the source yields after filters, marked as its own (status lists them).
    pub desired: Vec<Json>,
    /// What differs from the cache, or is not in it.
    pub writes: Vec<Write>,
    /// Objects not sent (another owner has them, mostly): id -> what it is, why.
    pub refused: BTreeMap<String, (Category, String)>,
    /// Authoritative: what this source made and no longer yields.
    pub deletes: Vec<ObjectKey>,
    /// Names of the servers kept by the filters.
    pub kept: Vec<String>,
    /// Names of the servers left out by the filters (not pruned either).
    pub filtered_out: BTreeSet<String>,
    /// Objects of the catalog that discovery does not apply.
    pub ignored: Vec<String>,
}

/// Step 3: the desired set and what it takes to get there.
pub fn plan(input: &PlanInput) -> Plan {
    let (name, ns) = (input.name, input.ns);
    let gitops = input.settings.type_ == SourceType::Git;
    let mut desired: Vec<Json> = input
        .objects
        .iter()
        .filter(|o| o.role == Role::Resource && yields(o, name, ns, gitops))
        .map(|o| o.body.clone())
        .collect();
    let ignored = input
        .objects
        .iter()
        .filter(|o| o.role == Role::Passthrough)
        .map(|o| format!("{}/{}", o.kind, o.name))
        .collect();
    let (kept, filtered_out) = apply_filters(&input.settings.spec, &mut desired);
    let owner = input
        .uid
        .filter(|_| input.settings.controller_owned)
        .map(|uid| {
            json!({
                "apiVersion": crate::api::API_VERSION,
                "kind": crate::api::Kind::DiscoverySource.name(),
                "name": name,
                "uid": uid,
                "controller": true,
                "blockOwnerDeletion": input.settings.block_owner_deletion,
            })
        });
    for body in &mut desired {
        mark(body, name, ns, owner.as_ref());
    }
    let mut writes = Vec::new();
    let mut refused = BTreeMap::new();
    for body in &desired {
        let Some(key) = ObjectKey::of(body) else {
            refused.insert(
                String::new(),
                (
                    Category::ApplyFailed,
                    "object without apiVersion/kind/name".into(),
                ),
            );
            continue;
        };
        let cached = (key.kind == "MCPServer")
            .then(|| (input.cached)(&key))
            .flatten();
        match cached {
            None => writes.push(Write {
                body: body.clone(),
                checked: false,
            }),
            Some(live) if !is_ours(&live, name, ns) => {
                refused.insert(
                    key.id(),
                    (Category::Conflict, belongs_elsewhere(&key, &live)),
                );
            }
            Some(live) if !same(&crate::apply::to_json(&live), body) => writes.push(Write {
                body: body.clone(),
                checked: true,
            }),
            Some(_) => {}
        }
    }
    let deletes = match input.settings.mode {
        DiscoveryMode::Authoritative => deletions(input, &desired),
        _ => Vec::new(),
    };
    Plan {
        desired,
        writes,
        refused,
        deletes,
        kept,
        filtered_out,
        ignored,
    }
}

/// Whether a resource of the catalog is this source's to apply: its own MCPServers (from Git
/// also unlabelled ones, groups, and other sources).
fn yields(o: &Object, name: &str, ns: &str, gitops: bool) -> bool {
    match o.kind.as_str() {
        "MCPServer" => {
            let by = o
                .body
                .pointer(&format!(
                    "/metadata/labels/{}",
                    DISCOVERED_BY_LABEL.replace('/', "~1")
                ))
                .and_then(Json::as_str);
            by == Some(name) || (gitops && by.is_none())
        }
        "MCPServerGroup" => gitops,
        "MCPDiscoverySource" => {
            gitops && !(o.name == name && o.namespace.as_deref().unwrap_or_default() == ns)
        }
        _ => false,
    }
}

/// Authoritative: what this source made and no longer yields; not what it cannot read now (a
/// skipped entry keeps what it had).
fn deletions(input: &PlanInput, desired: &[Json]) -> Vec<ObjectKey> {
    let wanted: BTreeSet<(String, String, String)> = desired
        .iter()
        .filter_map(ObjectKey::of)
        .map(|k| (k.kind, k.namespace.unwrap_or_default(), k.name))
        .collect();
    input
        .existing
        .iter()
        .filter(|(_, live)| is_ours(live, input.name, input.ns))
        .map(|(kind, live)| ObjectKey {
            api_version: crate::api::API_VERSION.into(),
            kind: kind.clone(),
            namespace: live.namespace(),
            name: live.name_any(),
        })
        .filter(|k| {
            let key = (
                k.kind.clone(),
                k.namespace.clone().unwrap_or_default(),
                k.name.clone(),
            );
            let skipped = k.kind == "MCPServer" && input.skipped.contains(&k.name);
            !(wanted.contains(&key) || skipped)
        })
        .collect()
}

fn belongs_elsewhere(key: &ObjectKey, live: &DynamicObject) -> String {
    let l = |k: &str| live.labels().get(k).cloned().unwrap_or_default();
    format!(
        "{} exists and belongs to discovery source {}/{}",
        key.id(),
        l(DISCOVERED_BY_NAMESPACE_LABEL),
        l(DISCOVERED_BY_LABEL)
    )
}

/// Whether the live object `lj` is what `body` asks for already: the same spec, its labels,
/// annotations and owner references.
fn same(lj: &Json, body: &Json) -> bool {
    let owners_ok = match body.pointer("/metadata/ownerReferences") {
        Some(o) => lj.pointer("/metadata/ownerReferences") == Some(o),
        None => true,
    };
    lj.get("spec") == body.get("spec")
        && contains(
            lj.pointer("/metadata/labels"),
            body.pointer("/metadata/labels"),
        )
        && contains(
            lj.pointer("/metadata/annotations"),
            body.pointer("/metadata/annotations"),
        )
        && owners_ok
}

/// Whether `want` (a map of labels or annotations) is contained in `have`.
fn contains(have: Option<&Json>, want: Option<&Json>) -> bool {
    let Some(w) = want.and_then(Json::as_object) else {
        return true;
    };
    let h = have.and_then(Json::as_object);
    w.iter().all(|(k, v)| h.and_then(|h| h.get(k)) == Some(v))
}

/// `spec.filters`: include/exclude globs over server names and `maxProviders`. Returns the names
/// kept and the names left out (status lists them as left out).
pub fn apply_filters(
    spec: &MCPDiscoverySourceSpec,
    desired: &mut Vec<Json>,
) -> (Vec<String>, BTreeSet<String>) {
    let f = spec.filters.clone().unwrap_or_default();
    let include = f.include_patterns.unwrap_or_default();
    let exclude = f.exclude_patterns.unwrap_or_default();
    let mut out = BTreeSet::new();
    let mut kept_servers = 0usize;
    let max = f.max_providers.map(|m| m.max(0) as usize);
    desired.sort_by_key(|b| ObjectKey::of(b).map(|k| (k.kind, k.namespace, k.name)));
    desired.retain(|b| {
        if b["kind"] != "MCPServer" {
            return true;
        }
        let name = b
            .pointer("/metadata/name")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        let inc = include.is_empty() || include.iter().any(|p| glob(p, &name));
        let exc = exclude.iter().any(|p| glob(p, &name));
        let room = max.is_none_or(|m| kept_servers < m);
        if inc && !exc && room {
            kept_servers += 1;
            true
        } else {
            out.insert(name);
            false
        }
    });
    let names = desired
        .iter()
        .filter(|b| b["kind"] == "MCPServer")
        .filter_map(|b| b.pointer("/metadata/name").and_then(Json::as_str))
        .map(str::to_string)
        .collect();
    (names, out)
}

/// `*` and `?` globs, in time linear in `|pattern| x |s|` at worst (no backtracking blow-up: a
/// `*` only ever resumes from the last one seen, which is enough for globs without classes).
pub fn glob(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    let (mut pi, mut si) = (0, 0);
    // The last `*` seen and where in `s` it was tried from.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == '?' || c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                // Let the last `*` take one more character, and go on from there.
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Labels (and, within the source's namespace, the owner reference) that make an object this
/// source's; `status` is never applied.
pub fn mark(body: &mut Json, name: &str, ns: &str, owner: Option<&Json>) {
    if let Some(o) = body.as_object_mut() {
        o.remove("status");
    }
    let same_ns = body.pointer("/metadata/namespace").and_then(Json::as_str) == Some(ns);
    let Some(meta) = body.get_mut("metadata").and_then(Json::as_object_mut) else {
        return;
    };
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if let Some(l) = labels.as_object_mut() {
        l.insert(DISCOVERED_BY_LABEL.into(), json!(name));
        l.insert(DISCOVERED_BY_NAMESPACE_LABEL.into(), json!(ns));
    }
    if let (Some(owner), true) = (owner, same_ns) {
        meta.insert("ownerReferences".into(), json!([owner]));
    }
}

// ---------------------------------------------------------------------------------------------
// status

/// What applying a plan answered.
#[derive(Debug, Default)]
pub struct Applied {
    pub created: i32,
    pub updated: i32,
    pub deleted: i32,
    /// Objects not applied (or not deleted): id -> why.
    pub errors: BTreeMap<String, String>,
    /// Conflict when an object is someone else's, ApplyFailed when the API server refused one,
    /// Ok otherwise.
    pub category: Category,
}

impl Applied {
    /// Counts a failure, keeping the worst category (Conflict over ApplyFailed).
    pub fn failed(&mut self, id: String, category: Category, message: String) {
        self.errors.insert(id, message);
        if self.category != Category::Conflict {
            self.category = category;
        }
    }
}

/// What a finished sync's status is made of.
pub struct SyncInput<'a> {
    pub prev: &'a MCPDiscoverySourceStatus,
    /// The source's namespace (servers there are listed by name alone).
    pub ns: &'a str,
    pub generation: Option<i64>,
    pub plan: &'a Plan,
    pub skipped: &'a [Skipped],
    pub revision: &'a str,
    pub applied: &'a Applied,
    /// Servers the watch cache shows as this source's.
    pub managed: usize,
    pub now: Timestamp,
    pub elapsed: Duration,
    pub refresh: Duration,
    /// The source's `mcp-hangar.io/requested-at` annotation: this sync handles it.
    pub requested: Option<&'a str>,
}

/// An Event to publish: warning or not, reason, note.
pub type Note = (bool, &'static str, String);

/// The next status; written (with `events` after it) only when `write`.
#[derive(Debug)]
pub struct SyncDecision {
    pub status: MCPDiscoverySourceStatus,
    pub write: bool,
    pub events: Vec<Note>,
}

/// Step 5: status after a sync: what was found, what is managed, what went wrong. Times move
/// only with a write that is due anyway (no writes at steady state).
pub fn sync_status(i: &SyncInput) -> SyncDecision {
    let (prev, a) = (i.prev, i.applied);
    let now = state::now_secs(i.now);
    let mut providers = providers(i, Time(now));
    providers.sort_by(|a, b| a.name.cmp(&b.name));
    let discovered = providers.len() as i32;
    providers.truncate(MAX_LISTED);

    let changed = a.created + a.updated + a.deleted > 0;
    let problems = problems(i);
    let ok = i.skipped.is_empty() && a.errors.is_empty();
    let counter = |n: i32, was: Option<i32>| if changed { Some(n) } else { was };
    let (created, updated, deleted) = (
        counter(a.created, prev.created_count),
        counter(a.updated, prev.updated_count),
        counter(a.deleted, prev.deleted_count),
    );
    // The counts of the last change, as the status counters show them (a sync that changes
    // nothing leaves both as they were: no write at steady state, no contradiction).
    let summary = format!(
        "revision {}: {} discovered, {} created, {} updated, {} deleted",
        i.revision,
        i.plan.kept.len(),
        created.unwrap_or(0),
        updated.unwrap_or(0),
        deleted.unwrap_or(0)
    );
    // Errors (in `lastSyncError` too), then notes (the Ready message alone).
    let message = std::iter::once(summary.clone())
        .chain(problems.iter().cloned())
        .chain(notes(i))
        .collect::<Vec<_>>()
        .join("; ");
    let mut next = MCPDiscoverySourceStatus {
        discovered_count: Some(discovered),
        managed_count: Some(i.managed as i32),
        discovered_providers: Some(providers),
        last_sync_time: prev.last_sync_time.clone(),
        last_sync_duration: prev.last_sync_duration.clone(),
        last_sync_error: (!problems.is_empty()).then(|| truncate(&problems.join("; "), 4000)),
        next_sync_time: prev.next_sync_time.clone(),
        revision: Some(i.revision.to_string()),
        observed_generation: i.generation,
        conditions: Some(vec![state::condition(
            prev.conditions.as_deref().unwrap_or_default(),
            state::READY,
            ok,
            if ok { "Synced" } else { "PartiallySynced" },
            &truncate(&message, 4000),
            i.generation,
            now,
        )]),
        created_count: created,
        updated_count: updated,
        deleted_count: deleted,
        last_handled_requested_at: handled(prev, i.requested),
    };
    let write = next != *prev || prev.last_sync_time.is_none();
    let mut events = Vec::new();
    if write {
        next.last_sync_time = Some(Time(now));
        next.last_sync_duration = Some(format!("{}ms", i.elapsed.as_millis()));
        next.next_sync_time = Some(Time(
            now.checked_add(
                k8s_openapi::jiff::SignedDuration::try_from(i.refresh).unwrap_or_default(),
            )
            .unwrap_or(now),
        ));
        if changed {
            events.push((false, "Synced", summary));
        }
        if !problems.is_empty() && prev.last_sync_error != next.last_sync_error {
            events.push((true, "PartiallySynced", problems.join("; ")));
        }
    }
    SyncDecision {
        status: next,
        write,
        events,
    }
}

/// `status.discoveredProviders`, unsorted: the servers kept, the entries skipped, the names
/// filtered out. Each keeps the time it was first seen.
fn providers(i: &SyncInput, now: Time) -> Vec<DiscoveredProvider> {
    let prev_at: BTreeMap<String, Time> = i
        .prev
        .discovered_providers
        .iter()
        .flatten()
        .filter_map(|p| Some((p.name.clone(), p.discovered_at.clone()?)))
        .collect();
    let at = |label: &str| Some(prev_at.get(label).cloned().unwrap_or(now.clone()));
    let errors = &i.applied.errors;
    let mut out: Vec<DiscoveredProvider> = Vec::new();
    for body in i.plan.desired.iter().filter(|b| b["kind"] == "MCPServer") {
        let Some(k) = ObjectKey::of(body) else {
            continue;
        };
        let label = if k.namespace.as_deref() == Some(i.ns) {
            k.name.clone()
        } else {
            format!("{}/{}", k.namespace.clone().unwrap_or_default(), k.name)
        };
        out.push(DiscoveredProvider {
            discovered_at: at(&label),
            source: body
                .pointer("/metadata/annotations/mcp-hangar.io~1source")
                .and_then(Json::as_str)
                .map(str::to_string),
            managed: Some(!errors.contains_key(&k.id())),
            error: errors.get(&k.id()).cloned(),
            name: label,
        });
    }
    for s in i.skipped {
        let label = s.name.clone().unwrap_or_else(|| s.location.clone());
        out.push(DiscoveredProvider {
            discovered_at: at(&label),
            source: Some(s.file.clone()),
            managed: Some(false),
            error: Some(truncate(s.message.trim(), 1000)),
            name: label,
        });
    }
    for n in &i.plan.filtered_out {
        out.push(DiscoveredProvider {
            discovered_at: at(n),
            source: None,
            managed: Some(false),
            error: Some("left out by spec.filters".into()),
            name: n.clone(),
        });
    }
    out
}

/// What went wrong in a sync, one line per kind of problem.
fn problems(i: &SyncInput) -> Vec<String> {
    let listed = |what: &str, items: Vec<String>, sep: &str| {
        (!items.is_empty()).then(|| format!("{} {what}: {}", items.len(), items.join(sep)))
    };
    let mut problems: Vec<String> = Vec::new();
    problems.extend(listed(
        "entries skipped",
        i.skipped.iter().map(|s| s.location.clone()).collect(),
        ", ",
    ));
    problems.extend(listed(
        "objects not applied",
        i.applied
            .errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect(),
        "; ",
    ));
    problems
}

/// What the sync leaves alone on purpose: said in the Ready message, never as an error.
fn notes(i: &SyncInput) -> Option<String> {
    (!i.plan.ignored.is_empty()).then(|| {
        format!(
            "{} objects that discovery does not apply were ignored: {}",
            i.plan.ignored.len(),
            i.plan.ignored.join(", ")
        )
    })
}

/// `lastHandledRequestedAt` after a sync that ran: the request it answered, else the last one.
fn handled(prev: &MCPDiscoverySourceStatus, requested: Option<&str>) -> Option<String> {
    requested
        .map(str::to_string)
        .or_else(|| prev.last_handled_requested_at.clone())
}

/// Why a sync stopped before applying anything.
#[derive(Debug)]
pub struct Held {
    pub reason: &'static str,
    pub message: String,
    /// `lastSyncError`, and the note of a Warning Event (None: no error, no Event).
    pub error: Option<String>,
}

/// The status of a sync that changed nothing in the cluster, when it differs from `prev` (None:
/// nothing to write).
/// `requested`: the `mcp-hangar.io/requested-at` this attempt answers (None when paused: a
/// paused source runs no sync, asked for or not).
pub fn held_status(
    prev: &MCPDiscoverySourceStatus,
    held: &Held,
    generation: Option<i64>,
    now: Timestamp,
    requested: Option<&str>,
) -> Option<MCPDiscoverySourceStatus> {
    let mut s = prev.clone();
    s.observed_generation = generation;
    s.last_handled_requested_at = handled(prev, requested);
    if held.error.is_some() {
        s.last_sync_error = held.error.clone();
    }
    s.conditions = Some(vec![state::condition(
        prev.conditions.as_deref().unwrap_or_default(),
        state::READY,
        false,
        held.reason,
        &held.message,
        generation,
        state::now_secs(now),
    )]);
    (s != *prev).then_some(s)
}

#[cfg(test)]
mod tests;
