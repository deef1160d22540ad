//! JSON Schema checks (the `jsonschema` crate) turned into [`Problem`]s a
//! designer can act on: each error at the value it concerns, in words, with
//! "did you mean" for misspelt field names and enum values. Also the
//! describing of JSON values and schemas in those words. Pure: no I/O.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{JsonType, ValidationError, Validator};
use serde_json::Value;

use super::locate::{JsonPath, Seg};
use super::{Problem, Source, did_you_mean, quote};

/// Which schema errors a caller handles itself (and so drops here).
pub(super) type Skip = fn(&JsonPath, &ValidationErrorKind) -> bool;

/// A compiled schema and the schema itself (for field names and ranges).
pub(super) struct Checker {
    validator: Validator,
    schema: Value,
    skip: Skip,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker").finish_non_exhaustive()
    }
}

impl Checker {
    pub fn new(schema: Value, skip: Skip) -> Result<Self, String> {
        let validator = jsonschema::validator_for(&schema).map_err(|e| e.to_string())?;
        Ok(Self {
            validator,
            schema,
            skip,
        })
    }

    /// Checks `src.value`; adds a problem per error and says whether there
    /// were none (counting the skipped ones as errors too).
    pub fn check(&self, src: &Source, out: &mut Vec<Problem>) -> bool {
        let errors: Vec<ValidationError<'_>> = self.validator.iter_errors(&src.value).collect();
        // A value of the wrong type gets that one problem, not also the
        // enum or range it then fails; missing fields of one object make one
        // problem.
        let mistyped: Vec<&str> = errors
            .iter()
            .filter(|e| matches!(e.kind(), ValidationErrorKind::Type { .. }))
            .map(|e| e.instance_path().as_str())
            .collect();
        let mut missing: Vec<(&str, Vec<&str>)> = Vec::new();
        for err in &errors {
            let at = err.instance_path().as_str();
            match err.kind() {
                ValidationErrorKind::Required { property } => {
                    let name = property.as_str().unwrap_or_default();
                    match missing.iter_mut().find(|(p, _)| *p == at) {
                        Some((_, names)) => names.push(name),
                        None => missing.push((at, vec![name])),
                    }
                }
                ValidationErrorKind::Type { .. } => self.convert(src, err, out, 0),
                _ if mistyped.contains(&at) => {}
                _ => self.convert(src, err, out, 0),
            }
        }
        for (at, names) in missing {
            self.missing(src, at, &names, out);
        }
        errors.is_empty()
    }

    /// One problem for the required fields `names` missing from the object
    /// at `pointer`.
    fn missing(&self, src: &Source, pointer: &str, names: &[&str], out: &mut Vec<Problem>) {
        let path = JsonPath::from_pointer(pointer, Some(&src.value));
        let value = path.lookup(&src.value);
        let allowed = property_names(&schema_at(&self.schema, &path));
        let unknown: Vec<&str> = value
            .and_then(Value::as_object)
            .map(|o| {
                o.keys()
                    .map(String::as_str)
                    .filter(|k| !allowed.iter().any(|a| a == k))
                    .collect()
            })
            .unwrap_or_default();
        let hint = names.iter().find_map(|name| {
            hearth_suggest::closest(name, unknown.iter().copied())
                .map(|k| format!("is {} a misspelling of {}?", quote(k), quote(name)))
        });
        let quoted: Vec<String> = names.iter().map(|n| quote(n)).collect();
        let expected = match quoted.as_slice() {
            [one] => format!("the required field {one}"),
            _ => format!(
                "the required fields {}",
                list(&quoted, 12).replace(" or ", " and ")
            ),
        };
        let found = value.map_or_else(|| "nothing".to_owned(), describe_value);
        let found = if names.len() == 1 {
            format!("{found} without it")
        } else {
            format!("{found} without them")
        };
        out.push(src.problem(&path, expected, found).hint(hint));
    }

    fn convert(
        &self,
        src: &Source,
        err: &ValidationError<'_>,
        out: &mut Vec<Problem>,
        depth: usize,
    ) {
        let path = JsonPath::from_pointer(err.instance_path().as_str(), Some(&src.value));
        let kind = err.kind();
        if (self.skip)(&path, kind) {
            return;
        }
        let value = path.lookup(&src.value);
        let found = value.map_or_else(|| "nothing".to_owned(), describe_value);
        let schemas = schema_at(&self.schema, &path);
        let problem = match kind {
            ValidationErrorKind::AdditionalProperties { unexpected }
            | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                let allowed = property_names(&schemas);
                for key in unexpected {
                    let hint =
                        did_you_mean(key, allowed.iter().map(String::as_str)).or_else(|| {
                            let quoted: Vec<String> = allowed.iter().map(|a| quote(a)).collect();
                            (!quoted.is_empty()).then(|| {
                                format!(
                                    "the fields here are {}",
                                    list(&quoted, 30).replace(" or ", " and ")
                                )
                            })
                        });
                    out.push(
                        src.problem_at_key(&path.at(key.as_str()), "a known field", quote(key))
                            .hint(hint),
                    );
                }
                return;
            }
            ValidationErrorKind::Required { property } => {
                self.missing(
                    src,
                    err.instance_path().as_str(),
                    &[property.as_str().unwrap_or_default()],
                    out,
                );
                return;
            }
            ValidationErrorKind::Type { kind } => {
                let expected = match kind {
                    TypeKind::Single(t) => type_phrase(*t).to_owned(),
                    TypeKind::Multiple(set) => {
                        set.iter().map(type_phrase).collect::<Vec<_>>().join(" or ")
                    }
                };
                src.problem(&path, expected, value.map_or(found, describe_typed))
            }
            ValidationErrorKind::Minimum { .. }
            | ValidationErrorKind::Maximum { .. }
            | ValidationErrorKind::ExclusiveMinimum { .. }
            | ValidationErrorKind::ExclusiveMaximum { .. } => {
                src.problem(&path, range_phrase(kind, &schemas), found)
            }
            ValidationErrorKind::MinLength { limit } => {
                let expected = if *limit == 1 {
                    "a non-empty string".to_owned()
                } else {
                    format!("a string of at least {limit} characters")
                };
                src.problem(&path, expected, length_phrase(value, found))
            }
            ValidationErrorKind::MaxLength { limit } => src.problem(
                &path,
                format!("a string of at most {limit} characters"),
                length_phrase(value, found),
            ),
            ValidationErrorKind::Pattern { pattern } => {
                src.problem(&path, pattern_phrase(&path, pattern), found)
            }
            ValidationErrorKind::Enum { options } => {
                let names: Vec<String> = options
                    .as_array()
                    .map(|a| a.iter().map(describe_value).collect())
                    .unwrap_or_default();
                let hint = enum_hint(value, options);
                src.problem(&path, format!("one of {}", list(&names, 12)), found)
                    .hint(hint)
            }
            ValidationErrorKind::Constant { expected_value } => {
                src.problem(&path, describe_value(expected_value), found)
            }
            ValidationErrorKind::AnyOf { context }
            | ValidationErrorKind::OneOfNotValid { context } => {
                // Report the errors of the one branch that fits the value's
                // type, when there is exactly one: they say more.
                let fitting: Vec<&Vec<ValidationError<'static>>> = context
                    .iter()
                    .filter(|branch| {
                        !branch.iter().any(|e| {
                            matches!(e.kind(), ValidationErrorKind::Type { .. })
                                && e.instance_path() == err.instance_path()
                        })
                    })
                    .collect();
                if let [branch] = fitting.as_slice()
                    && !branch.is_empty()
                    && depth < 8
                {
                    let mistyped: Vec<&str> = branch
                        .iter()
                        .filter(|e| matches!(e.kind(), ValidationErrorKind::Type { .. }))
                        .map(|e| e.instance_path().as_str())
                        .collect();
                    for e in branch.iter() {
                        let typed = matches!(e.kind(), ValidationErrorKind::Type { .. });
                        if typed || !mistyped.contains(&e.instance_path().as_str()) {
                            self.convert(src, e, out, depth + 1);
                        }
                    }
                    return;
                }
                let expected = schemas.first().map_or_else(
                    || "a value of another shape".to_owned(),
                    |s| describe_schema(&self.schema, s, 0),
                );
                let hint = schemas
                    .first()
                    .and_then(|s| enum_hint(value, &enum_values(&self.schema, s, 0)));
                src.problem(&path, expected, found).hint(hint)
            }
            other => src.problem(
                &path,
                format!("a value satisfying \"{}\"", other.keyword()),
                format!("{found} ({err})"),
            ),
        };
        out.push(problem);
    }
}

fn enum_hint(value: Option<&Value>, options: &Value) -> Option<String> {
    let word = value?.as_str()?;
    let options = options.as_array()?;
    did_you_mean(word, options.iter().filter_map(Value::as_str))
}

/// "a", "b" and "c"; with "…" past `max`.
pub(super) fn list(names: &[String], max: usize) -> String {
    let mut shown: Vec<&str> = names.iter().take(max).map(String::as_str).collect();
    if names.len() > max {
        shown.push("…");
    }
    match shown.as_slice() {
        [] => "nothing".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn type_phrase(t: JsonType) -> &'static str {
    match t {
        JsonType::Null => "null",
        JsonType::Boolean => "true or false",
        JsonType::Integer => "an integer",
        JsonType::Number => "a number",
        JsonType::String => "a string",
        JsonType::Array => "an array",
        JsonType::Object => "an object",
    }
}

/// A value in a few words: strings and numbers as written, containers by kind.
pub(super) fn describe_value(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Array(a) if a.is_empty() => "an empty array".to_owned(),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(o) if o.is_empty() => "an empty object".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// [`describe_value`] naming the type of scalars too: `"30" (a string)`.
fn describe_typed(v: &Value) -> String {
    match v {
        Value::String(_) => format!("{} (a string)", describe_value(v)),
        Value::Number(n) if n.is_f64() => format!("{n} (a number with a fraction)"),
        Value::Number(n) => format!("{n} (a number)"),
        Value::Bool(b) => format!("{b} (a boolean)"),
        _ => describe_value(v),
    }
}

fn length_phrase(value: Option<&Value>, found: String) -> String {
    match value.and_then(Value::as_str) {
        Some("") => "an empty string".to_owned(),
        Some(s) if s.chars().count() > 40 => {
            format!("a string of {} characters", s.chars().count())
        }
        _ => found,
    }
}

fn number_text(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}

fn range_phrase(kind: &ValidationErrorKind, schemas: &[&Value]) -> String {
    let integer = schemas.iter().any(|s| match s.get("type") {
        Some(Value::String(t)) => t == "integer",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
        _ => false,
    });
    let noun = if integer { "an integer" } else { "a number" };
    let min = schemas.iter().find_map(|s| s.get("minimum"));
    let max = schemas.iter().find_map(|s| s.get("maximum"));
    match (kind, min, max) {
        (
            ValidationErrorKind::Minimum { .. } | ValidationErrorKind::Maximum { .. },
            Some(lo),
            Some(hi),
        ) => {
            format!("{noun} from {} to {}", number_text(lo), number_text(hi))
        }
        (ValidationErrorKind::Minimum { limit }, _, _) => {
            format!("{noun} of at least {}", number_text(limit))
        }
        (ValidationErrorKind::Maximum { limit }, _, _) => {
            format!("{noun} of at most {}", number_text(limit))
        }
        (ValidationErrorKind::ExclusiveMinimum { limit }, _, _) => {
            format!("{noun} greater than {}", number_text(limit))
        }
        (ValidationErrorKind::ExclusiveMaximum { limit }, _, _) => {
            format!("{noun} less than {}", number_text(limit))
        }
        _ => noun.to_owned(),
    }
}

fn pattern_phrase(path: &JsonPath, pattern: &str) -> String {
    let in_relationship = path.0.first() == Some(&Seg::Key("relationships".to_owned()));
    match path.last_key() {
        Some("id") if path.0.len() == 1 => {
            "an id of lowercase letters, digits, '-' and '_', starting with a letter or digit (at most 63 characters)".to_owned()
        }
        Some("type") if in_relationship => "a lowercase word such as \"friend\" (letters, '-' and '_')".to_owned(),
        _ => format!("a string matching /{pattern}/"),
    }
}

/// Follows local `$ref`s ("#/$defs/X").
fn resolve<'s>(root: &'s Value, mut schema: &'s Value) -> &'s Value {
    for _ in 0..32 {
        match schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
        {
            Some(pointer) => match root.pointer(pointer) {
                Some(target) => schema = target,
                None => break,
            },
            None => break,
        }
    }
    schema
}

/// `schema` and every schema it combines with (refs, anyOf, oneOf, allOf,
/// then/else), each resolved.
fn expand<'s>(root: &'s Value, schema: &'s Value, out: &mut Vec<&'s Value>, depth: usize) {
    if depth > 16 {
        return;
    }
    let schema = resolve(root, schema);
    out.push(schema);
    for key in ["anyOf", "oneOf", "allOf"] {
        for branch in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            expand(root, branch, out, depth + 1);
        }
    }
    for key in ["then", "else"] {
        if let Some(branch) = schema.get(key) {
            expand(root, branch, out, depth + 1);
        }
    }
}

/// Every schema that may apply to the value at `path`.
pub(super) fn schema_at<'s>(root: &'s Value, path: &JsonPath) -> Vec<&'s Value> {
    let mut here = Vec::new();
    expand(root, root, &mut here, 0);
    for seg in &path.0 {
        let mut next = Vec::new();
        for s in &here {
            let child = match seg {
                Seg::Key(k) => s
                    .get("properties")
                    .and_then(|p| p.get(k))
                    .or_else(|| s.get("additionalProperties").filter(|a| a.is_object())),
                Seg::Index(i) => s
                    .get("prefixItems")
                    .and_then(|p| p.get(*i))
                    .or_else(|| s.get("items").filter(|a| a.is_object())),
            };
            if let Some(child) = child {
                expand(root, child, &mut next, 0);
            }
        }
        here = next;
    }
    here
}

/// The field names the schemas allow, in schema order, without repeats.
fn property_names(schemas: &[&Value]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in schemas {
        for name in s
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|p| p.keys())
        {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

/// Every `enum` value of a schema and its branches.
fn enum_values(root: &Value, schema: &Value, depth: usize) -> Value {
    let mut all = Vec::new();
    let mut schemas = Vec::new();
    expand(root, schema, &mut schemas, depth);
    for s in schemas {
        if let Some(values) = s.get("enum").and_then(Value::as_array) {
            all.extend(values.iter().cloned());
        }
    }
    Value::Array(all)
}

/// What a schema accepts, in words.
pub(super) fn describe_schema(root: &Value, schema: &Value, depth: usize) -> String {
    let schema = resolve(root, schema);
    if depth > 4 {
        return "a value of another shape".to_owned();
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = values.iter().map(describe_value).collect();
        return format!("one of {}", list(&names, 12));
    }
    if let Some(value) = schema.get("const") {
        return describe_value(value);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            let parts: Vec<String> = branches
                .iter()
                .map(|b| describe_schema(root, b, depth + 1))
                .collect();
            return parts.join(", or ");
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let phrases: Vec<String> = types
        .iter()
        .map(|t| match *t {
            "array" => match schema.get("items") {
                Some(items) if items.is_object() => {
                    match resolve(root, items).get("enum").and_then(Value::as_array) {
                        Some(values) => format!(
                            "a list of values from {}",
                            values
                                .iter()
                                .map(describe_value)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        None => format!("a list of {}", describe_schema(root, items, depth + 1)),
                    }
                }
                _ => "an array".to_owned(),
            },
            "null" => "null".to_owned(),
            "boolean" => "true or false".to_owned(),
            "integer" => "an integer".to_owned(),
            "number" => "a number".to_owned(),
            "string" => "a string".to_owned(),
            "object" => "an object".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    if phrases.is_empty() {
        "a value of another shape".to_owned()
    } else {
        phrases.join(" or ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_found_through_refs_and_combinators() {
        let schema = crate::agent::schema();
        let p = JsonPath::root().at("schedule").at(0).at("days");
        let at = schema_at(&schema, &p);
        assert!(!at.is_empty());
        let words = describe_schema(&schema, at[0], 0);
        assert!(
            words.contains("\"weekdays\"") && words.contains("a list of"),
            "{words}"
        );
        let p = JsonPath::root().at("memories").at(3).at("importance");
        let at = schema_at(&schema, &p);
        assert!(
            at.iter()
                .any(|s| s.get("maximum") == Some(&serde_json::json!(10))),
            "{at:?}"
        );
        let names = property_names(&schema_at(&schema, &JsonPath::root().at("goals")));
        assert_eq!(names, vec!["primary".to_owned(), "secondary".to_owned()]);
    }

    #[test]
    fn lists_read_naturally() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(list(&names(&["a"]), 3), "a");
        assert_eq!(list(&names(&["a", "b", "c"]), 3), "a, b or c");
        assert_eq!(list(&names(&["a", "b", "c", "d"]), 2), "a, b or …");
    }
}
