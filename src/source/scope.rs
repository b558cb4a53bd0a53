//! The namespaces one controller manages (`--namespace`), decided once at start and asked by
//! every step that touches a namespace: the watches, discovery's selectors and writes, and the
//! reconciles (which refuse a resource outside it with a status saying why).
//!
//! RBAC is the fence (the chart grants a Role per listed namespace); this is what makes the
//! controller say so clearly instead of failing on a 403, and what keeps a cluster-wide
//! controller, which RBAC cannot fence off the system namespaces, out of them.

use std::collections::BTreeSet;

use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;

/// Namespaces of Kubernetes itself: a cluster-wide controller leaves what is in them alone; a
/// namespaced one manages them only when they are listed.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Where the chart sets `--namespace` (named in messages, so the fix is one lookup away).
const CHART_NAMESPACES: &str = "watchNamespaces";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (one cluster-wide watch per kind) but [`SYSTEM_NAMESPACES`].
    Cluster,
    /// These namespaces only (a watch each), sorted, none twice, at least one.
    Namespaces(Vec<String>),
}

impl Scope {
    /// The scope `--namespace` asks for (empty: the whole cluster).
    pub fn new(namespaces: &[String]) -> Scope {
        let set: BTreeSet<String> = namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        if set.is_empty() {
            Scope::Cluster
        } else {
            Scope::Namespaces(set.into_iter().collect())
        }
    }

    /// Whether objects of `ns` are watched (a cluster-wide controller sees the system
    /// namespaces too, to refuse what is there).
    pub fn watches(&self, ns: &str) -> bool {
        match self {
            Scope::Cluster => true,
            Scope::Namespaces(l) => l.iter().any(|n| n == ns),
        }
    }

    pub fn manages(&self, ns: &str) -> bool {
        self.refusal(ns).is_none()
    }

    /// Why objects of `ns` are not managed here (None: they are).
    pub fn refusal(&self, ns: &str) -> Option<String> {
        match self {
            Scope::Cluster if SYSTEM_NAMESPACES.contains(&ns) => Some(format!(
                "namespace {ns} is a system namespace: a cluster-wide hangar controller manages nothing there; list it with --namespace (Helm chart: {CHART_NAMESPACES}) to manage it"
            )),
            Scope::Cluster => None,
            Scope::Namespaces(_) if self.watches(ns) => None,
            Scope::Namespaces(l) => Some(format!(
                "namespace {ns} is not managed by this controller (--namespace {}); add it there (Helm chart: {CHART_NAMESPACES})",
                l.join(",")
            )),
        }
    }

    /// The status message of a Secret read that RBAC forbade: which Secret, and what to set.
    pub fn secret_forbidden(&self, ns: &str, name: &str) -> String {
        let fix = match self {
            Scope::Cluster => format!(
                "with the Helm chart, add {ns} to rbac.secretNamespaces (or set rbac.clusterWideSecrets=true)"
            ),
            Scope::Namespaces(_) => format!(
                "the controller's Role in {ns} must allow `get` on secrets (the Helm chart's does: list {ns} in {CHART_NAMESPACES})"
            ),
        };
        format!("the controller may not read Secret {ns}/{name} (forbidden by RBAC); {fix}")
    }

    /// An API of a kind known at run time, per watched namespace (one cluster-wide in
    /// [`Scope::Cluster`]).
    pub fn dynamic(&self, c: &Client, ar: &ApiResource) -> Vec<Api<DynamicObject>> {
        match self {
            Scope::Cluster => vec![Api::all_with(c.clone(), ar)],
            Scope::Namespaces(l) => l
                .iter()
                .map(|ns| Api::namespaced_with(c.clone(), ns, ar))
                .collect(),
        }
    }

    /// An API of a namespaced kind, per watched namespace.
    pub fn typed<K>(&self, c: &Client) -> Vec<Api<K>>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match self {
            Scope::Cluster => vec![Api::all(c.clone())],
            Scope::Namespaces(l) => l.iter().map(|ns| Api::namespaced(c.clone(), ns)).collect(),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Cluster => write!(f, "all but {}", SYSTEM_NAMESPACES.join(", ")),
            Scope::Namespaces(l) => write!(f, "{}", l.join(", ")),
        }
    }
}

/// Whether an API answer is RBAC's 403.
pub fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_wide_refuses_the_system_namespaces_only() {
        let s = Scope::new(&[]);
        assert_eq!(s, Scope::Cluster);
        assert!(s.manages("team-a") && s.watches("kube-system"));
        for ns in SYSTEM_NAMESPACES {
            let why = s.refusal(ns).unwrap_or_default();
            assert!(why.contains(ns) && why.contains("watchNamespaces"), "{why}");
        }
    }

    #[test]
    fn listed_namespaces_are_all_that_is_managed_system_ones_too() {
        let s = Scope::new(&["b".into(), "kube-system".into(), "b".into(), " ".into()]);
        assert_eq!(s, Scope::Namespaces(vec!["b".into(), "kube-system".into()]));
        assert!(s.manages("b") && s.manages("kube-system"));
        assert!(!s.watches("c"));
        let why = s.refusal("c").unwrap_or_default();
        assert!(why.contains("--namespace b,kube-system"), "{why}");
    }

    #[test]
    fn a_forbidden_secret_names_itself_and_the_value_to_set() {
        let m = Scope::Cluster.secret_forbidden("team", "token");
        assert!(m.contains("Secret team/token") && m.contains("rbac.secretNamespaces"));
        let m = Scope::new(&["team".into()]).secret_forbidden("team", "token");
        assert!(m.contains("Secret team/token") && m.contains("watchNamespaces"));
    }
}
