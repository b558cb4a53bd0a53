//! Structural validation of a document against the same OpenAPI schema the API server uses
//! (generated from `src/api`), collecting every error with its location: unknown fields (with a
//! did-you-mean), wrong types, enum values, ranges, missing required fields.

use serde_json::Value as Json;

use super::diag::{Diagnostic, Diagnostics, did_you_mean};
use super::node::{Node, Seg, Value, path_string};

/// Validates `node` against `schema`; `path` names the node in messages.
pub fn validate(node: &Node, schema: &Json, path: &mut Vec<Seg>, diags: &mut Diagnostics) {
    if matches!(node.value, Value::Null) {
        // An empty field means "unset", as for the API server.
        return;
    }
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Json::Bool(true))
        && schema.get("properties").is_none()
    {
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Json::Bool(true)) {
        if !matches!(node.value, Value::Int(_) | Value::Str(_)) {
            type_error(node, "an integer or a string", path, diags);
        }
        return;
    }
    let ty = schema.get("type").and_then(Json::as_str).unwrap_or("");
    match ty {
        "object" => validate_object(node, schema, path, diags),
        "array" => match &node.value {
            Value::Seq(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        path.push(Seg::Index(i));
                        validate(item, item_schema, path, diags);
                        path.pop();
                    }
                }
            }
            _ => type_error(node, "a list", path, diags),
        },
        "string" => match &node.value {
            Value::Str(s) => check_enum(node, s, schema, path, diags),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => {
                let d = type_diag(node, "a string", path).hint(format!(
                    "quote the value to make it a string: \"{}\"",
                    scalar_text(node)
                ));
                diags.push(d);
            }
            _ => type_error(node, "a string", path, diags),
        },
        "integer" => match &node.value {
            Value::Int(i) => check_range(node, *i as f64, schema, path, diags),
            Value::Float(f) if f.fract() == 0.0 && f.is_finite() => {
                check_range(node, *f, schema, path, diags)
            }
            Value::Str(s) if s.parse::<i64>().is_ok() => {
                diags.push(
                    type_diag(node, "an integer", path).hint(format!("remove the quotes: {s}")),
                );
            }
            _ => type_error(node, "an integer", path, diags),
        },
        "number" => match &node.value {
            Value::Int(i) => check_range(node, *i as f64, schema, path, diags),
            Value::Float(f) => check_range(node, *f, schema, path, diags),
            _ => type_error(node, "a number", path, diags),
        },
        "boolean" => match &node.value {
            Value::Bool(_) => {}
            Value::Str(s)
                if matches!(s.as_str(), "true" | "false" | "yes" | "no" | "on" | "off") =>
            {
                let fixed = matches!(s.as_str(), "true" | "yes" | "on");
                diags.push(
                    type_diag(node, "a boolean", path)
                        .hint(format!("write `{fixed}` without quotes")),
                );
            }
            _ => type_error(node, "a boolean", path, diags),
        },
        _ => {}
    }
}

fn scalar_text(node: &Node) -> String {
    match &node.value {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => s.clone(),
        _ => String::new(),
    }
}

fn field_name(path: &[Seg]) -> String {
    if path.is_empty() {
        "the document".to_string()
    } else {
        format!("`{}`", path_string(path))
    }
}

fn type_diag(node: &Node, expected: &str, path: &[Seg]) -> Diagnostic {
    Diagnostic::error(
        "type-mismatch",
        Some(node.span),
        format!(
            "{} must be {expected}, found {}",
            field_name(path),
            node.describe()
        ),
    )
}

fn type_error(node: &Node, expected: &str, path: &[Seg], diags: &mut Diagnostics) {
    diags.push(type_diag(node, expected, path));
}

fn check_enum(node: &Node, s: &str, schema: &Json, path: &[Seg], diags: &mut Diagnostics) {
    let Some(options) = schema.get("enum").and_then(Json::as_array) else {
        return;
    };
    let options: Vec<&str> = options.iter().filter_map(Json::as_str).collect();
    if options.contains(&s) {
        return;
    }
    let mut d = Diagnostic::error(
        "unknown-enum-value",
        Some(node.span),
        format!(
            "{} has an unknown value `{s}`; expected one of: {}",
            field_name(path),
            options.join(", ")
        ),
    );
    if let Some(best) = did_you_mean(s, options.iter().copied()) {
        d = d.hint(format!("did you mean `{best}`?"));
    }
    diags.push(d);
}

fn check_range(node: &Node, v: f64, schema: &Json, path: &[Seg], diags: &mut Diagnostics) {
    let min = schema.get("minimum").and_then(Json::as_f64);
    let max = schema.get("maximum").and_then(Json::as_f64);
    let fmt = |x: f64| {
        if x.fract() == 0.0 {
            format!("{}", x as i64)
        } else {
            x.to_string()
        }
    };
    if let Some(min) = min.filter(|m| v < *m) {
        diags.push(Diagnostic::error(
            "out-of-range",
            Some(node.span),
            format!(
                "{} must be at least {}, found {}",
                field_name(path),
                fmt(min),
                fmt(v)
            ),
        ));
    }
    if let Some(max) = max.filter(|m| v > *m) {
        diags.push(Diagnostic::error(
            "out-of-range",
            Some(node.span),
            format!(
                "{} must be at most {}, found {}",
                field_name(path),
                fmt(max),
                fmt(v)
            ),
        ));
    }
    if schema.get("format").and_then(Json::as_str) == Some("int32")
        && (v > i32::MAX as f64 || v < i32::MIN as f64)
    {
        diags.push(Diagnostic::error(
            "out-of-range",
            Some(node.span),
            format!("{} does not fit in a 32-bit integer", field_name(path)),
        ));
    }
}

fn validate_object(node: &Node, schema: &Json, path: &mut Vec<Seg>, diags: &mut Diagnostics) {
    let Value::Map(entries) = &node.value else {
        type_error(node, "a mapping", path, diags);
        return;
    };
    let props = schema.get("properties").and_then(Json::as_object);
    let additional = schema.get("additionalProperties");
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Json::Bool(true));
    for (k, v) in entries {
        let key = k.key_str();
        path.push(Seg::Key(key.clone()));
        match (props.and_then(|p| p.get(&key)), additional) {
            (Some(sub), _) => validate(v, sub, path, diags),
            (None, Some(sub)) if sub.is_object() => validate(v, sub, path, diags),
            (None, Some(Json::Bool(true))) => {}
            (None, _) if preserve => {}
            (None, _) => {
                let parent = &path[..path.len() - 1];
                let within = if parent.is_empty() {
                    String::new()
                } else {
                    format!(" in `{}`", path_string(parent))
                };
                let mut d = Diagnostic::error(
                    "unknown-field",
                    Some(k.span),
                    format!("unknown field `{key}`{within}"),
                );
                let names: Vec<&str> = props
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                if let Some(best) = did_you_mean(&key, names.iter().copied()) {
                    d.message = format!("{}, did you mean `{best}`?", d.message);
                } else if !names.is_empty() {
                    let mut sorted = names.clone();
                    sorted.sort_unstable();
                    let list = if sorted.len() > 12 {
                        format!("{}, ...", sorted[..12].join(", "))
                    } else {
                        sorted.join(", ")
                    };
                    d = d.hint(format!("known fields here: {list}"));
                }
                diags.push(d);
            }
        }
        path.pop();
    }
    if let Some(required) = schema.get("required").and_then(Json::as_array) {
        for r in required.iter().filter_map(Json::as_str) {
            let present = entries
                .iter()
                .any(|(k, v)| k.key_str() == r && !matches!(v.value, Value::Null));
            if !present {
                let within = if path.is_empty() {
                    String::new()
                } else {
                    format!(" in `{}`", path_string(path))
                };
                diags.push(Diagnostic::error(
                    "missing-field",
                    Some(node.span),
                    format!("missing required field `{r}`{within}"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::load::load_yaml;

    fn check(text: &str, schema: Json) -> Diagnostics {
        let mut d = Diagnostics::default();
        let docs = load_yaml(0, text, &mut d).docs;
        for doc in &docs {
            validate(doc, &schema, &mut Vec::new(), &mut d);
        }
        d
    }

    #[test]
    fn reports_all_errors() {
        let schema = serde_json::json!({
            "type": "object",
            "required": ["mode"],
            "properties": {
                "mode": {"type": "string", "enum": ["container", "remote"]},
                "replicas": {"type": "integer", "minimum": 0},
                "idleTTL": {"type": "string"}
            }
        });
        let d = check(
            "mode: contaner\nreplicas: -1\nidleTtl: 5m\n",
            schema.clone(),
        );
        let codes: Vec<&str> = d.items.iter().map(|x| x.code).collect();
        assert_eq!(
            codes,
            ["unknown-enum-value", "out-of-range", "unknown-field"]
        );
        assert!(d.items[2].message.contains("did you mean `idleTTL`"));
        let d = check("replicas: \"3\"\n", schema);
        let codes: Vec<&str> = d.items.iter().map(|x| x.code).collect();
        assert_eq!(codes, ["type-mismatch", "missing-field"]);
    }
}
