//! Label selectors and resource quantities.

use super::*;

/// A quantity as a number (for comparisons only).
pub fn quantity_value(s: &str) -> Option<f64> {
    let idx = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(idx);
    let n: f64 = num.parse().ok()?;
    let mul = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mul)
}

/// Checks a label selector; `base` is the path of the selector in the document.
pub fn check_selector(sel: &LabelSelector, node: &Node, base: &[Seg], diags: &mut Diagnostics) {
    let at = |rest: &[Seg]| {
        let mut path = base.to_vec();
        path.extend_from_slice(rest);
        node.span_at(&path)
    };
    for (k, v) in sel.match_labels.iter().flatten() {
        let span = at(&[Seg::Key("matchLabels".into()), Seg::Key(k.clone())]);
        if let Err(e) = units::check_label_key(k) {
            diags.push(Diagnostic::error("invalid-selector", Some(span), e));
        }
        if let Err(e) = units::check_label_value(v) {
            diags.push(Diagnostic::error("invalid-selector", Some(span), e));
        }
    }
    for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
        check_requirement(
            req,
            &|rest: &[Seg]| {
                let mut r = vec![Seg::Key("matchExpressions".into()), Seg::Index(i)];
                r.extend_from_slice(rest);
                at(&r)
            },
            diags,
        );
    }
}

fn check_requirement(
    req: &LabelSelectorRequirement,
    at: &dyn Fn(&[Seg]) -> Span,
    diags: &mut Diagnostics,
) {
    if let Err(e) = units::check_label_key(&req.key) {
        diags.push(Diagnostic::error(
            "invalid-selector",
            Some(at(&[Seg::Key("key".into())])),
            e,
        ));
    }
    let n = req.values.as_ref().map_or(0, Vec::len);
    match req.operator.as_str() {
        "In" | "NotIn" if n == 0 => diags.push(Diagnostic::error(
            "invalid-selector",
            Some(at(&[Seg::Key("operator".into())])),
            format!("operator `{}` needs at least one value", req.operator),
        )),
        "Exists" | "DoesNotExist" if n > 0 => diags.push(Diagnostic::error(
            "invalid-selector",
            Some(at(&[Seg::Key("values".into())])),
            format!("operator `{}` takes no values", req.operator),
        )),
        "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
        other => {
            let mut d = Diagnostic::error(
                "invalid-selector",
                Some(at(&[Seg::Key("operator".into())])),
                format!(
                    "unknown selector operator `{other}`; expected In, NotIn, Exists or DoesNotExist"
                ),
            );
            if let Some(best) =
                crate::compile::diag::did_you_mean(other, ["In", "NotIn", "Exists", "DoesNotExist"])
            {
                d = d.hint(format!("did you mean `{best}`?"));
            }
            diags.push(d);
        }
    }
    for (j, v) in req.values.iter().flatten().enumerate() {
        if let Err(e) = units::check_label_value(v) {
            diags.push(Diagnostic::error(
                "invalid-selector",
                Some(at(&[Seg::Key("values".into()), Seg::Index(j)])),
                e,
            ));
        }
    }
}

/// True when `labels` match the selector.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|r| {
        let values = r.values.clone().unwrap_or_default();
        match r.operator.as_str() {
            "In" => labels.get(&r.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&r.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&r.key),
            "DoesNotExist" => !labels.contains_key(&r.key),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}
