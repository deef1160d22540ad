//! The ordered JSON tree a frame is read into, and the deserializer over it
//! that names the field being read in errors. Pure data; touches nothing.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, Expected, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};

use crate::*;

/// JSON as read from a frame: object members in order, duplicate keys
/// refused (`serde_json::Value` keeps the last of them silently).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub(crate) fn unexpected(&self) -> Unexpected<'_> {
        match self {
            Self::Null => Unexpected::Unit,
            Self::Bool(b) => Unexpected::Bool(*b),
            Self::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Unexpected::Unsigned(u)
                } else if let Some(i) = n.as_i64() {
                    Unexpected::Signed(i)
                } else {
                    Unexpected::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Self::String(s) => Unexpected::Str(s),
            Self::Array(_) => Unexpected::Seq,
            Self::Object(_) => Unexpected::Map,
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

pub(crate) struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format_args!(
                    "duplicate field {}",
                    quote(&key)
                )));
            }
            let value = map.next_value()?;
            members.push((key, value));
        }
        Ok(Json::Object(members))
    }
}

/// A deserialization error and the field it happened in.
#[derive(Debug)]
pub(crate) struct FieldError {
    /// Innermost first: `["w", "area"]` is `area.w`.
    path: Vec<String>,
    message: String,
}

impl FieldError {
    fn within(mut self, segment: String) -> Self {
        self.path.push(segment);
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            return f.write_str(&self.message);
        }
        let mut path = String::new();
        for segment in self.path.iter().rev() {
            if !path.is_empty() && !segment.starts_with('[') {
                path.push('.');
            }
            path.push_str(segment);
        }
        write!(f, "field `{path}`: {}", self.message)
    }
}

impl std::error::Error for FieldError {}

impl de::Error for FieldError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            path: Vec::new(),
            message: clip(&msg.to_string(), MAX_DETAIL_CHARS),
        }
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::custom(format_args!(
            "expected {}, found {}",
            in_words(exp),
            describe(unexp)
        ))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::invalid_type(unexp, exp)
    }

    fn invalid_length(len: usize, exp: &dyn Expected) -> Self {
        Self::custom(format_args!(
            "expected {}, found {len} items",
            in_words(exp)
        ))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format_args!(
            "unknown value {}; expected {}",
            quote(variant),
            list(expected)
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let hint = match closest(field, expected) {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("the fields are {}", list(expected)),
        };
        Self::custom(format_args!("unknown field {}; {hint}", quote(field)))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format_args!("missing field `{field}`"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::custom(format_args!("duplicate field `{field}`"))
    }
}

/// What serde expected, in words for clients.
pub(crate) fn in_words(exp: &dyn Expected) -> String {
    let words = exp.to_string();
    match words.as_str() {
        "f32" | "f64" => "a number".to_owned(),
        "u8" => "an integer from 0 to 255".to_owned(),
        "u32" => "an integer from 0 to 4294967295".to_owned(),
        "u64" | "usize" => "a non-negative integer".to_owned(),
        "i32" | "i64" => "an integer".to_owned(),
        "a borrowed string" => "a string".to_owned(),
        w if w.starts_with("struct ") => "an object".to_owned(),
        _ => words,
    }
}

/// What a client sent, in words, quoting at most a little of it.
pub(crate) fn describe(unexp: Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Bool(b) => format!("`{b}`"),
        Unexpected::Unsigned(n) => format!("the number {n}"),
        Unexpected::Signed(n) => format!("the number {n}"),
        Unexpected::Float(n) => format!("the number {n}"),
        Unexpected::Str(s) => format!("the string {}", quote(s)),
        Unexpected::Unit => "null".to_owned(),
        Unexpected::Seq => "an array".to_owned(),
        Unexpected::Map => "an object".to_owned(),
        other => other.to_string(),
    }
}

/// Client input quoted as a JSON string, clipped.
pub(crate) fn quote(text: &str) -> String {
    serde_json::Value::String(clip(text, MAX_QUOTED_CHARS)).to_string()
}

/// At most `max` characters of `text`, with `…` when cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// "`a`, `b` or `c`".
pub(crate) fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.split_last() {
        None => "nothing".to_owned(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The candidate `word` most likely misspells, compared in snake case
/// (`moveTo` is `move_to`) by the server's one rule ([`hearth_suggest`]).
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    hearth_suggest::closest(&snake_case(word), candidates.iter().copied())
}

/// `moveTo`, `MoveTo`, `move-to` and `MOVE_TO` as `move_to`.
pub(crate) fn snake_case(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 4);
    let mut after_lower = false;
    for c in word.trim().chars() {
        if c.is_uppercase() {
            if after_lower {
                out.push('_');
            }
            out.extend(c.to_lowercase());
            after_lower = false;
        } else if matches!(c, '-' | ' ' | '.') {
            out.push('_');
            after_lower = false;
        } else {
            out.push(c);
            after_lower = c.is_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

impl<'de> Deserializer<'de> for Json {
    type Error = FieldError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self {
            Self::Null => visitor.visit_unit(),
            Self::Bool(b) => visitor.visit_bool(b),
            Self::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Self::String(s) => visitor.visit_string(s),
            Self::Array(items) => visit_items(items, visitor),
            Self::Object(members) => visit_members(members, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self {
            Self::Null => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    /// Structs are objects only (serde would also take arrays).
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        match self {
            Self::Object(members) => visit_members(members, visitor),
            other => Err(de::Error::invalid_type(other.unexpected(), &visitor)),
        }
    }

    /// Unit variants from strings.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        match self {
            Self::String(s) => {
                let access: de::value::StringDeserializer<FieldError> = s.into_deserializer();
                visitor.visit_enum(access)
            }
            other => Err(de::Error::invalid_type(other.unexpected(), &visitor)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
        ignored_any
    }
}

pub(crate) fn visit_items<'de, V: Visitor<'de>>(
    items: Vec<Json>,
    visitor: V,
) -> Result<V::Value, FieldError> {
    let len = items.len();
    let mut access = Items {
        items: items.into_iter(),
        index: 0,
    };
    let value = visitor.visit_seq(&mut access)?;
    if access.items.len() == 0 {
        Ok(value)
    } else {
        Err(de::Error::invalid_length(len, &"fewer items"))
    }
}

pub(crate) fn visit_members<'de, V: Visitor<'de>>(
    members: Vec<(String, Json)>,
    visitor: V,
) -> Result<V::Value, FieldError> {
    let len = members.len();
    let mut access = Members {
        members: members.into_iter(),
        value: None,
    };
    let value = visitor.visit_map(&mut access)?;
    if access.members.len() == 0 {
        Ok(value)
    } else {
        Err(de::Error::invalid_length(len, &"fewer fields"))
    }
}

/// An array's items, each error marked with its index.
pub(crate) struct Items {
    items: std::vec::IntoIter<Json>,
    index: usize,
}

impl<'de> SeqAccess<'de> for Items {
    type Error = FieldError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, FieldError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let index = self.index;
        self.index += 1;
        seed.deserialize(item)
            .map(Some)
            .map_err(|e| e.within(format!("[{index}]")))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// An object's members, each value's error marked with its key.
pub(crate) struct Members {
    members: std::vec::IntoIter<(String, Json)>,
    /// The member whose key was just read.
    value: Option<(String, Json)>,
}

impl<'de> MapAccess<'de> for Members {
    type Error = FieldError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, FieldError> {
        let Some((key, value)) = self.members.next() else {
            return Ok(None);
        };
        let key_reader: de::value::StrDeserializer<'_, FieldError> =
            key.as_str().into_deserializer();
        let read = seed.deserialize(key_reader)?;
        self.value = Some((key, value));
        Ok(Some(read))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, FieldError> {
        let Some((key, value)) = self.value.take() else {
            return Err(de::Error::custom("a value was read before its key"));
        };
        seed.deserialize(value)
            .map_err(|e| e.within(clip(&key, MAX_QUOTED_CHARS)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.members.len())
    }
}
