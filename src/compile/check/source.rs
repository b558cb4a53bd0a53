//! Checks of one MCPDiscoverySource.

use super::*;

pub(super) fn check_source(s: &ResolvedSource, diags: &mut Diagnostics) {
    let at = |path: &str| {
        let mut full = vec![Seg::Key("spec".into())];
        full.extend(p(path));
        s.node.span_at(&full)
    };
    let user = s.node.get("spec");
    let has = |f: &str| user.and_then(|u| u.get(f)).is_some();
    duration(
        at("refreshInterval"),
        "refreshInterval",
        s.spec.refresh_interval.as_deref(),
        diags,
    );
    if s.settings.refresh_interval.as_secs() < 5 {
        diags.push(Diagnostic::warning(
            "refresh-too-often",
            Some(at("refreshInterval")),
            "refreshing more often than every 5s loads the API server and the source",
        ));
    }
    let ty = s.spec.type_;
    let relevant: &[(&str, SourceType)] = &[
        ("configMapRef", SourceType::ConfigMap),
        ("git", SourceType::Git),
        ("annotations", SourceType::Annotations),
        ("serviceDiscovery", SourceType::ServiceDiscovery),
    ];
    for (field, t) in relevant {
        if has(field) && *t != ty {
            diags.push(Diagnostic::warning(
                "ignored-field",
                Some(at(field)),
                format!("`{field}` is ignored for a source of type {}", ty.as_str()),
            ));
        }
    }
    match ty {
        SourceType::ConfigMap => {
            if !has("configMapRef") {
                diags.push(Diagnostic::error(
                    "missing-field",
                    Some(at("type")),
                    "a ConfigMap source needs `configMapRef {name, namespace}`",
                ));
            } else if let Some(r) = &s.spec.config_map_ref {
                if let Err(e) = units::check_dns1123_subdomain(&r.name) {
                    diags.push(Diagnostic::error(
                        "invalid-name",
                        Some(at("configMapRef.name")),
                        format!("invalid ConfigMap name: {e}"),
                    ));
                }
                if let Some(ns) = &r.namespace {
                    if let Err(e) = units::check_dns1123_label(ns) {
                        diags.push(Diagnostic::error(
                            "invalid-name",
                            Some(at("configMapRef.namespace")),
                            format!("invalid namespace: {e}"),
                        ));
                    }
                }
            }
        }
        SourceType::Git => match (&s.spec.git, has("git")) {
            (Some(g), true) => {
                if let Err(e) = units::check_git_url(&g.url) {
                    diags.push(Diagnostic::error("invalid-url", Some(at("git.url")), e));
                }
                if let Some(r) = &g.ref_ {
                    if r.is_empty()
                        || r.contains("..")
                        || r.contains(char::is_whitespace)
                        || r.ends_with('/')
                    {
                        diags.push(Diagnostic::error(
                            "invalid-ref",
                            Some(at("git.ref")),
                            format!("`{r}` is not a valid Git ref"),
                        ));
                    }
                }
                if let Some(sr) = &g.secret_ref {
                    if let Err(e) = units::check_dns1123_subdomain(&sr.name) {
                        diags.push(Diagnostic::error(
                            "invalid-name",
                            Some(at("git.secretRef.name")),
                            format!("invalid Secret name: {e}"),
                        ));
                    }
                }
            }
            _ => diags.push(Diagnostic::error(
                "missing-field",
                Some(at("type")),
                "a Git source needs `git {url, ref, path}`",
            )),
        },
        SourceType::Namespace => {
            let sel = s.spec.namespace_selector.clone().unwrap_or_default();
            if sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                && sel.match_expressions.as_ref().is_none_or(Vec::is_empty)
            {
                diags.push(
                    Diagnostic::warning("selects-all-namespaces", Some(at("type")), "this Namespace source has no namespaceSelector labels: it reads every namespace")
                        .hint("add namespaceSelector.matchLabels, e.g. `mcp-hangar.io/enabled: \"true\"`"),
                );
            }
            let as_selector = LabelSelector {
                match_labels: sel.match_labels.clone(),
                match_expressions: sel.match_expressions.clone(),
            };
            check_selector(&as_selector, &s.node, &p("spec.namespaceSelector"), diags);
        }
        SourceType::Annotations | SourceType::ServiceDiscovery => {}
    }
    if let Some(f) = &s.spec.filters {
        for (list, pats) in [
            ("includePatterns", &f.include_patterns),
            ("excludePatterns", &f.exclude_patterns),
        ] {
            for (i, pat) in pats.iter().flatten().enumerate() {
                if pat.is_empty() || pat.contains(char::is_whitespace) {
                    diags.push(Diagnostic::error(
                        "invalid-pattern",
                        Some(at(&format!("filters.{list}.{i}"))),
                        format!("invalid name pattern `{pat}`"),
                    ));
                }
            }
        }
    }
}
