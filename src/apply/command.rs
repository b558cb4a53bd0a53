//! `hangar apply` and `hangar diff --cluster`: the compiler's bundle against a live cluster.

use serde_json::Value as Json;

use super::{Action, Applier, FIELD_MANAGER, Options, apply_bundle};
use crate::compile::diag::printable;
use crate::compile::{Object, Role};
use crate::connect::{Connect, ConnectError, client};

/// The bodies `hangar apply` sends: what `hangar render` prints (Secrets unmasked), optionally
/// preceded by hangar's own CRDs.
pub fn bodies(objects: &[Object], with_crds: bool) -> Vec<Json> {
    let mut out = Vec::new();
    if with_crds {
        for crd in crate::api::schema::crds() {
            out.push(serde_json::to_value(crd).unwrap_or(Json::Null));
        }
    }
    out.extend(objects.iter().map(|o| o.body.clone()));
    out
}

#[derive(Clone, Debug)]
pub struct ApplyArgs {
    pub connect: Connect,
    pub field_manager: Option<String>,
    pub force_conflicts: bool,
    pub options: Options,
    /// `--wait`: after applying, wait this long for every applied MCPServer and MCPServerGroup
    /// to be Ready (or Cold, when it asks for zero replicas).
    pub wait: Option<std::time::Duration>,
}

/// Applies and prints one line per object; exit 0 when everything applied, 1 when some did not.
async fn applier(args: &ApplyArgs) -> Result<Applier, ConnectError> {
    Ok(Applier::new(
        client(&args.connect).await?,
        args.field_manager.as_deref().unwrap_or(FIELD_MANAGER),
        args.force_conflicts,
    ))
}

pub async fn apply(bodies: &[Json], args: &ApplyArgs) -> Result<u8, ConnectError> {
    let applier = applier(args).await?;
    let report = apply_bundle(&applier, bodies, &args.options).await;
    let dry = args.options.dry_run;
    for c in &report.changes {
        println!("{} {}", printable(&c.id), c.action.past(dry));
    }
    for e in &report.errors {
        eprintln!("error: {}", printable(&e.to_string()));
    }
    eprintln!(
        "{}{} created, {} configured, {} unchanged, {} left to the controller, {} pruned, {} failed",
        if dry { "dry run: " } else { "" },
        report.count(Action::Create),
        report.count(Action::Update),
        report.count(Action::Unchanged),
        report.count(Action::Delegated),
        report.count(Action::Prune),
        report.errors.len()
    );
    if !report.errors.is_empty() {
        return Ok(1);
    }
    match args.wait {
        Some(timeout) if !dry => Ok(wait(&applier, bodies, timeout).await),
        _ => Ok(0),
    }
}

fn secs(d: std::time::Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// `--wait`: 0 when every applied server and group is Ready (or Cold by design) within the
/// timeout; else 1, naming each that is not and why.
async fn wait(applier: &Applier, bodies: &[Json], timeout: std::time::Duration) -> u8 {
    use super::wait::{wait_ready, waits_for};
    let keys: Vec<_> = bodies.iter().filter_map(super::ObjectKey::of).collect();
    let n = keys.iter().filter(|k| waits_for(k)).count();
    if n == 0 {
        return 0;
    }
    eprintln!(
        "waiting up to {} for {n} MCPServer/MCPServerGroup object{} to be Ready",
        secs(timeout),
        if n == 1 { "" } else { "s" }
    );
    let t0 = std::time::Instant::now();
    let pending = wait_ready(applier, &keys, timeout, std::time::Duration::from_secs(1)).await;
    if pending.is_empty() {
        eprintln!("all {n} Ready after {}s", t0.elapsed().as_secs());
        return 0;
    }
    for (key, why) in &pending {
        eprintln!("not ready: {}: {}", printable(&key.id()), printable(why));
    }
    eprintln!(
        "error: {} of {n} not Ready within {}",
        pending.len(),
        secs(timeout)
    );
    1
}

/// What applying would change, as a diff of live objects against the server's dry run.
/// Exit 0 equal, 1 different, 2 when the cluster could not answer for some object.
pub async fn diff(bodies: &[Json], args: &ApplyArgs) -> Result<u8, ConnectError> {
    let applier = applier(args).await?;
    let mut opts = args.options.clone();
    opts.dry_run = true;
    let report = apply_bundle(&applier, bodies, &opts).await;
    let mut before = Vec::new();
    let mut after = Vec::new();
    for c in &report.changes {
        if let Some(l) = &c.live {
            before.push(Object::new(l.clone(), Role::Passthrough, None));
        }
        if let Some(r) = &c.result {
            after.push(Object::new(r.clone(), Role::Passthrough, None));
        }
    }
    let (text, summary) = crate::diff::diff(&before, &after);
    print!("{text}");
    eprintln!("{summary}");
    for e in &report.errors {
        eprintln!("error: {}", printable(&e.to_string()));
    }
    Ok(if !report.errors.is_empty() {
        2
    } else if summary.differs() {
        1
    } else {
        0
    })
}
