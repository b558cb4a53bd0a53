//! `hangar apply` and `hangar diff --cluster`: the compiler's bundle against a live cluster.

use serde_json::Value as Json;

use super::{Action, Applier, FIELD_MANAGER, Options, apply_bundle};
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
        println!("{} {}", c.id, c.action.past(dry));
    }
    for e in &report.errors {
        eprintln!("error: {e}");
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
    Ok(if report.errors.is_empty() { 0 } else { 1 })
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
        eprintln!("error: {e}");
    }
    Ok(if !report.errors.is_empty() {
        2
    } else if summary.differs() {
        1
    } else {
        0
    })
}
