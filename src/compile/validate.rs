//! Structural validation of a document against the same OpenAPI schema the API server uses
//! (generated from `src/api`), collecting every error with its location: unknown fields (with a
//! did-you-mean), wrong types, enum values, ranges, missing required fields.
//!
//! The schema is first compiled into a [`Schema`] tree (once per process for the kinds hangar
//! reads): the walk then reads plain fields instead of looking up JSON keys per node, and the
//! path of a field is built only when a message needs it.

use std::borrow::Cow;

use serde_json::Value as Json;

use super::diag::{Diagnostic, Diagnostics, did_you_mean};
use super::node::{Node, Seg, Value, path_string};

/// The `type` of a schema, as far as validation reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Ty {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
    /// No type, or one validation does not check.
    #[default]
    Other,
}

/// An OpenAPI structural schema, compiled for validation: exactly the keywords [`validate`]
/// reads, with the meaning they have in the JSON schema (see [`Schema::compile`]).
#[derive(Clone, Debug, Default)]
pub struct Schema {
    ty: Ty,
    /// `x-kubernetes-preserve-unknown-fields: true`.
    preserve: bool,
    /// `x-kubernetes-int-or-string: true`.
    int_or_string: bool,
    /// Whether a `properties` key is present at all (whatever its value).
    has_properties: bool,
    /// `properties`, in schema order (did-you-mean prefers the first of equal candidates).
    properties: Option<Vec<(String, Schema)>>,
    /// `additionalProperties` when it is a schema.
    additional: Option<Box<Schema>>,
    /// `additionalProperties: true`.
    additional_any: bool,
    items: Option<Box<Schema>>,
    /// The string values of `enum`, when `enum` is a list.
    options: Option<Vec<String>>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    /// `format: int32`.
    int32: bool,
    /// The string values of `required`.
    required: Vec<String>,
}

impl Schema {
    /// Compiles a JSON schema (anything that is not a JSON object constrains nothing).
    pub fn compile(schema: &Json) -> Schema {
        let Some(obj) = schema.as_object() else {
            return Schema::default();
        };
        let sub = |key: &str| obj.get(key).map(|s| Box::new(Schema::compile(s)));
        let strings = |v: Option<&Json>| -> Option<Vec<String>> {
            v.and_then(Json::as_array).map(|a| {
                a.iter()
                    .filter_map(Json::as_str)
                    .map(str::to_string)
                    .collect()
            })
        };
        Schema {
            ty: match obj.get("type").and_then(Json::as_str) {
                Some("object") => Ty::Object,
                Some("array") => Ty::Array,
                Some("string") => Ty::String,
                Some("integer") => Ty::Integer,
                Some("number") => Ty::Number,
                Some("boolean") => Ty::Boolean,
                _ => Ty::Other,
            },
            preserve: obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Json::Bool(true)),
            int_or_string: obj.get("x-kubernetes-int-or-string") == Some(&Json::Bool(true)),
            has_properties: obj.contains_key("properties"),
            properties: obj.get("properties").and_then(Json::as_object).map(|p| {
                p.iter()
                    .map(|(k, v)| (k.clone(), Schema::compile(v)))
                    .collect()
            }),
            additional: obj
                .get("additionalProperties")
                .filter(|a| a.is_object())
                .map(|a| Box::new(Schema::compile(a))),
            additional_any: obj.get("additionalProperties") == Some(&Json::Bool(true)),
            items: sub("items"),
            options: strings(obj.get("enum")),
            minimum: obj.get("minimum").and_then(Json::as_f64),
            maximum: obj.get("maximum").and_then(Json::as_f64),
            int32: obj.get("format").and_then(Json::as_str) == Some("int32"),
            required: strings(obj.get("required")).unwrap_or_default(),
        }
    }

    fn property(&self, key: &str) -> Option<&Schema> {
        self.properties
            .as_ref()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, s)| s)
    }
}

/// One step of the path to the node being checked, borrowed from the document.
#[derive(Clone, Debug)]
enum Step<'a> {
    Key(Cow<'a, str>),
    Index(usize),
}

/// The path so far as [`Seg`]s (only built for messages).
fn segs(path: &[Step<'_>]) -> Vec<Seg> {
    path.iter()
        .map(|s| match s {
            Step::Key(k) => Seg::Key(k.to_string()),
            Step::Index(i) => Seg::Index(*i),
        })
        .collect()
}

/// Validates `node` against `schema`; `path` names the node in messages.
pub fn validate(node: &Node, schema: &Schema, path: &[Seg], diags: &mut Diagnostics) {
    let mut steps: Vec<Step<'_>> = path
        .iter()
        .map(|s| match s {
            Seg::Key(k) => Step::Key(Cow::Borrowed(k.as_str())),
            Seg::Index(i) => Step::Index(*i),
        })
        .collect();
    check(node, schema, &mut steps, diags);
}

fn check<'a>(node: &'a Node, schema: &Schema, path: &mut Vec<Step<'a>>, diags: &mut Diagnostics) {
    if matches!(node.value, Value::Null) {
        // An empty field means "unset", as for the API server.
        return;
    }
    if schema.preserve && !schema.has_properties {
        return;
    }
    if schema.int_or_string {
        if !matches!(node.value, Value::Int(_) | Value::Str(_)) {
            type_error(node, "an integer or a string", path, diags);
        }
        return;
    }
    match schema.ty {
        Ty::Object => validate_object(node, schema, path, diags),
        Ty::Array => match &node.value {
            Value::Seq(items) => {
                if let Some(item_schema) = &schema.items {
                    for (i, item) in items.iter().enumerate() {
                        path.push(Step::Index(i));
                        check(item, item_schema, path, diags);
                        path.pop();
                    }
                }
            }
            _ => type_error(node, "a list", path, diags),
        },
        Ty::String => match &node.value {
            Value::Str(s) => check_enum(node, s, schema, path, diags),
            Value::Int(_) | Value::Float(_) if is_duration_field(path) => {
                // `interval: 30` quoted is still no duration: it needs a unit.
                let d = type_diag(node, "a duration", path).hint(format!(
                    "a duration is a string with a unit: \"{}s\" (durations look like 500ms, 30s, 5m, 1h or 1h30m)",
                    scalar_text(node)
                ));
                diags.push(d);
            }
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => {
                let d = type_diag(node, "a string", path).hint(format!(
                    "quote the value to make it a string: \"{}\"",
                    scalar_text(node)
                ));
                diags.push(d);
            }
            _ => type_error(node, "a string", path, diags),
        },
        Ty::Integer => match &node.value {
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
        Ty::Number => match &node.value {
            Value::Int(i) => check_range(node, *i as f64, schema, path, diags),
            Value::Float(f) => check_range(node, *f, schema, path, diags),
            _ => type_error(node, "a number", path, diags),
        },
        Ty::Boolean => match &node.value {
            Value::Bool(_) => {}
            Value::Str(s) if matches!(&**s, "true" | "false" | "yes" | "no" | "on" | "off") => {
                let fixed = matches!(&**s, "true" | "yes" | "on");
                diags.push(
                    type_diag(node, "a boolean", path)
                        .hint(format!("write `{fixed}` without quotes")),
                );
            }
            _ => type_error(node, "a boolean", path, diags),
        },
        Ty::Other => {}
    }
}

/// Whether the field holds a duration (`interval`, `timeout`, `startupTimeout`, `idleTTL`,
/// `refreshInterval`...), by its name: the string fields hangar parses as durations.
fn is_duration_field(path: &[Step<'_>]) -> bool {
    let Some(Step::Key(k)) = path.last() else {
        return false;
    };
    let k = k.to_ascii_lowercase();
    ["interval", "timeout", "ttl", "duration", "period", "delay"]
        .iter()
        .any(|w| k.ends_with(w))
}

fn scalar_text(node: &Node) -> String {
    match &node.value {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => s.to_string(),
        _ => String::new(),
    }
}

fn field_name(path: &[Step<'_>]) -> String {
    if path.is_empty() {
        "the document".to_string()
    } else {
        format!("`{}`", path_string(&segs(path)))
    }
}

fn type_diag(node: &Node, expected: &str, path: &[Step<'_>]) -> Diagnostic {
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

fn type_error(node: &Node, expected: &str, path: &[Step<'_>], diags: &mut Diagnostics) {
    diags.push(type_diag(node, expected, path));
}

fn check_enum(node: &Node, s: &str, schema: &Schema, path: &[Step<'_>], diags: &mut Diagnostics) {
    let Some(options) = &schema.options else {
        return;
    };
    if options.iter().any(|o| o == s) {
        return;
    }
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
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

fn check_range(node: &Node, v: f64, schema: &Schema, path: &[Step<'_>], diags: &mut Diagnostics) {
    let fmt = |x: f64| {
        if x.fract() == 0.0 {
            format!("{}", x as i64)
        } else {
            x.to_string()
        }
    };
    if let Some(min) = schema.minimum.filter(|m| v < *m) {
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
    if let Some(max) = schema.maximum.filter(|m| v > *m) {
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
    if schema.int32 && (v > i32::MAX as f64 || v < i32::MIN as f64) {
        diags.push(Diagnostic::error(
            "out-of-range",
            Some(node.span),
            format!("{} does not fit in a 32-bit integer", field_name(path)),
        ));
    }
}

fn validate_object<'a>(
    node: &'a Node,
    schema: &Schema,
    path: &mut Vec<Step<'a>>,
    diags: &mut Diagnostics,
) {
    let Value::Map(entries) = &node.value else {
        type_error(node, "a mapping", path, diags);
        return;
    };
    for (k, v) in entries {
        let key = k.key_text();
        match (schema.property(&key), &schema.additional) {
            (Some(sub), _) => {
                path.push(Step::Key(key));
                check(v, sub, path, diags);
                path.pop();
            }
            (None, Some(sub)) => {
                path.push(Step::Key(key));
                check(v, sub, path, diags);
                path.pop();
            }
            (None, None) if schema.additional_any || schema.preserve => {}
            (None, None) => {
                let within = if path.is_empty() {
                    String::new()
                } else {
                    format!(" in `{}`", path_string(&segs(path)))
                };
                let mut d = Diagnostic::error(
                    "unknown-field",
                    Some(k.span),
                    format!("unknown field `{key}`{within}"),
                );
                let names: Vec<&str> = schema
                    .properties
                    .iter()
                    .flatten()
                    .map(|(k, _)| k.as_str())
                    .collect();
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
    }
    for r in &schema.required {
        let present = entries
            .iter()
            .any(|(k, v)| k.key_text() == r.as_str() && !matches!(v.value, Value::Null));
        if !present {
            let within = if path.is_empty() {
                String::new()
            } else {
                format!(" in `{}`", path_string(&segs(path)))
            };
            diags.push(Diagnostic::error(
                "missing-field",
                Some(node.span),
                format!("missing required field `{r}`{within}"),
            ));
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
        let schema = Schema::compile(&schema);
        for doc in &docs {
            validate(doc, &schema, &[], &mut d);
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

    #[test]
    fn paths_name_nested_fields_and_keep_the_prefix() {
        let schema = Schema::compile(&serde_json::json!({
            "type": "object",
            "properties": {"env": {"type": "array", "items": {
                "type": "object", "properties": {"name": {"type": "string"}}}}}
        }));
        let mut d = Diagnostics::default();
        let docs = load_yaml(0, "env:\n- name: 1\n- nme: x\n", &mut d).docs;
        let prefix = [Seg::Key("servers".into()), Seg::Index(2)];
        validate(&docs[0], &schema, &prefix, &mut d);
        let messages: Vec<&str> = d.items.iter().map(|x| x.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`servers[2].env[0].name` must be a string, found an integer `1`",
                "unknown field `nme` in `servers[2].env[1]`, did you mean `name`?",
            ]
        );
    }
}
