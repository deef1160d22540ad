//! The configuration's sections and keys, and what each key takes, read
//! off [`Config`]'s own `Deserialize` (never written out by hand): a
//! probing deserializer asks a struct for its field names, and a field for
//! the kind of value it deserializes. A new field of a section is a key,
//! with its kind, the moment it is declared. Touches nothing.

use std::cell::Cell;
use std::fmt;
use std::sync::LazyLock;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

use super::{Config, Key, Kind};

/// The configuration's sections, in the order `hearth config` prints them
/// (the order of [`Config`]'s fields).
pub static SECTIONS: LazyLock<&'static [&'static str]> =
    LazyLock::new(|| fields_at(&[]).unwrap_or_default());

/// Every key, section by section, in the order of the sections' fields.
pub static KEYS: LazyLock<Vec<Key>> = LazyLock::new(|| {
    SECTIONS
        .iter()
        .flat_map(|&section| {
            fields_at(&[section])
                .unwrap_or_default()
                .iter()
                .map(move |&name| Key {
                    section,
                    name,
                    kind: kind_at(&[section, name]).unwrap_or(Kind::Text),
                })
        })
        .collect()
});

/// What the probe found at the end of its path.
#[derive(Debug, Clone, Copy)]
enum Found {
    Nothing,
    Fields(&'static [&'static str]),
    Kind(Kind),
}

fn probe(path: &[&'static str]) -> Found {
    let found = Cell::new(Found::Nothing);
    // the probe always ends deserialization early: the error is expected
    let _ = Config::deserialize(Probe {
        path,
        found: &found,
    });
    found.get()
}

/// The field names of the struct at `path` (`[]`: `Config` itself).
fn fields_at(path: &[&'static str]) -> Option<&'static [&'static str]> {
    match probe(path) {
        Found::Fields(fields) => Some(fields),
        _ => None,
    }
}

/// The kind of value the field at `path` takes.
fn kind_at(path: &[&'static str]) -> Option<Kind> {
    match probe(path) {
        Found::Kind(kind) => Some(kind),
        _ => None,
    }
}

/// Why a probe stops: it never produces a value.
#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probed")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

/// Walks `path` through nested structs (each a map of one key), then
/// records what is asked of it there.
struct Probe<'a> {
    path: &'a [&'static str],
    found: &'a Cell<Found>,
}

impl Probe<'_> {
    /// Records `kind` when the path ends here; never yields a value.
    fn kind<T>(self, kind: Kind) -> Result<T, Stop> {
        if self.path.is_empty() {
            self.found.set(Found::Kind(kind));
        }
        Err(Stop)
    }
}

macro_rules! kinds {
    ($($method:ident => $kind:expr,)*) => {
        $(fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            self.kind($kind)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    kinds! {
        deserialize_any => Kind::Text,
        deserialize_bool => Kind::Bool,
        deserialize_u8 => Kind::Uint(i64::from(u8::MAX)),
        deserialize_u16 => Kind::Uint(i64::from(u16::MAX)),
        deserialize_u32 => Kind::Uint(i64::from(u32::MAX)),
        deserialize_u64 => Kind::Uint(i64::MAX),
        deserialize_u128 => Kind::Uint(i64::MAX),
        deserialize_i8 => Kind::Float,
        deserialize_i16 => Kind::Float,
        deserialize_i32 => Kind::Float,
        deserialize_i64 => Kind::Float,
        deserialize_i128 => Kind::Float,
        deserialize_f32 => Kind::Float,
        deserialize_f64 => Kind::Float,
        deserialize_char => Kind::Text,
        deserialize_str => Kind::Text,
        deserialize_string => Kind::Text,
        deserialize_bytes => Kind::Text,
        deserialize_byte_buf => Kind::Text,
        deserialize_unit => Kind::Text,
        deserialize_seq => Kind::Text,
        deserialize_map => Kind::Text,
        deserialize_identifier => Kind::Text,
        deserialize_ignored_any => Kind::Text,
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: V,
    ) -> Result<V::Value, Stop> {
        self.kind(Kind::Text)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Stop> {
        self.kind(Kind::Text)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        _: V,
    ) -> Result<V::Value, Stop> {
        self.kind(Kind::Text)
    }

    /// Choices (`format = "json"`) are written as strings.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        self.kind(Kind::Text)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        match self.path.split_first() {
            None => {
                self.found.set(Found::Fields(fields));
                Err(Stop)
            }
            Some((&key, rest)) => visitor.visit_map(OneKey {
                key: Some(key),
                rest,
                found: self.found,
            }),
        }
    }
}

/// A map of the one key the probe walks into.
struct OneKey<'a> {
    key: Option<&'static str>,
    rest: &'a [&'static str],
    found: &'a Cell<Found>,
}

impl<'de> MapAccess<'de> for OneKey<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        match self.key.take() {
            Some(key) => seed.deserialize(key.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        seed.deserialize(Probe {
            path: self.rest,
            found: self.found,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(path: &str) -> Kind {
        KEYS.iter()
            .find(|k| k.path() == path)
            .unwrap_or_else(|| panic!("no key {path}"))
            .kind
    }

    #[test]
    fn keys_and_kinds_come_from_the_structs() {
        assert_eq!(SECTIONS.first(), Some(&"server"));
        assert_eq!(SECTIONS.last(), Some(&"log"));
        assert_eq!(KEYS.first().map(Key::path).as_deref(), Some("server.world"));
        assert_eq!(kind("server.listen"), Kind::Text, "an address, as text");
        assert_eq!(
            kind("server.stop_after"),
            Kind::Text,
            "an optional duration"
        );
        assert_eq!(kind("database.url"), Kind::Text, "an optional string");
        assert_eq!(kind("database.migrate"), Kind::Bool);
        assert_eq!(kind("world.tick_rate"), Kind::Uint(i64::from(u32::MAX)));
        assert_eq!(kind("world.seed"), Kind::Uint(i64::MAX));
        assert_eq!(kind("llm.temperature"), Kind::Float);
        assert_eq!(kind("llm.structured"), Kind::Text, "a choice");
        assert_eq!(kind("log.format"), Kind::Text, "a choice");
        // every section's keys follow one another
        let mut seen: Vec<&str> = KEYS.iter().map(|k| k.section).collect();
        seen.dedup();
        assert_eq!(seen, SECTIONS.to_vec());
    }
}
