//! Semantic checks over resolved definitions: units, references, cross-field rules, and the
//! restricted Pod Security profile. Every problem is reported, located at the layer that set it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::diag::{Diagnostic, Diagnostics, Span};
use super::node::{Node, Seg};
use super::resolve::{Resolved, ResolvedGroup, ResolvedServer, ResolvedSource};
use super::units;
use crate::api::discovery::SourceType;
use crate::api::group::AffinityType;
use crate::api::server::Mode;

mod group;
mod selector;
mod server;
mod source;

use group::check_group;
pub use selector::{check_selector, quantity_value, selector_matches};
use server::check_server;
use source::check_source;

fn p(path: &str) -> Vec<Seg> {
    path.split('.')
        .map(|s| match s.parse::<usize>() {
            Ok(i) => Seg::Index(i),
            Err(_) => Seg::Key(s.to_string()),
        })
        .collect()
}

pub fn check(resolved: &Resolved, diags: &mut Diagnostics) {
    use rayon::prelude::*;
    let per_server: Vec<Diagnostics> = resolved
        .servers
        .par_iter()
        .map(|s| {
            let mut d = Diagnostics::default();
            check_server(s, &mut d);
            d
        })
        .collect();
    for d in per_server {
        diags.extend(d);
    }
    for g in &resolved.groups {
        check_group(g, resolved, diags);
    }
    for s in &resolved.sources {
        check_source(s, diags);
    }
}

fn duration(
    span: Span,
    what: &str,
    value: Option<&str>,
    diags: &mut Diagnostics,
) -> Option<std::time::Duration> {
    let v = value?;
    match units::parse_duration(v) {
        Ok(d) => Some(d),
        Err(e) => {
            diags.push(
                Diagnostic::error(
                    "invalid-duration",
                    Some(span),
                    format!("invalid duration in `{what}`: {e}"),
                )
                .hint("durations look like 500ms, 30s, 5m, 1h or 1h30m"),
            );
            None
        }
    }
}
