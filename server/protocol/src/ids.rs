//! Request ids, agent and entity references, areas and destinations: the
//! identifiers clients and the server name things by. Pure data; touches
//! nothing.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::*;

/// A request's `id`, chosen by the client: a string of 1–64 characters or a
/// non-negative integer. Answers carry it back exactly as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestId {
    Number(u64),
    Text(String),
}

impl RequestId {
    /// A string id, if it has 1 to [`MAX_ID_CHARS`] characters.
    pub fn text(text: &str) -> Option<Self> {
        let chars = text.chars().count();
        (1..=MAX_ID_CHARS)
            .contains(&chars)
            .then(|| Self::Text(text.to_owned()))
    }

    pub(crate) fn of_json(value: &Json) -> Option<Self> {
        match value {
            Json::Number(n) => n.as_u64().map(Self::Number),
            Json::String(s) => Self::text(s),
            _ => None,
        }
    }
}

impl From<u64> for RequestId {
    fn from(n: u64) -> Self {
        Self::Number(n)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Number(n) => serializer.serialize_u64(*n),
            Self::Text(t) => serializer.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RequestIdVisitor)
    }
}

pub(crate) struct RequestIdVisitor;

impl Visitor<'_> for RequestIdVisitor {
    type Value = RequestId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a request id (a string of 1 to {MAX_ID_CHARS} characters or a non-negative integer)"
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RequestId, E> {
        Ok(RequestId::Number(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RequestId, E> {
        u64::try_from(v)
            .map(RequestId::Number)
            .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RequestId, E> {
        RequestId::text(v).ok_or_else(|| E::invalid_value(Unexpected::Str(v), &self))
    }
}

/// Whether an entity is an agent (a generative agent of the world) or a
/// character (a player's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Agent,
    Character,
}

/// An entity id on the wire: `a:<agent slug>` or `c:<character name>`.
///
/// Agent slugs are those of agent files (`[a-z0-9][a-z0-9_-]*`, at most 63
/// characters); character names are 1–64 ASCII letters, digits, `_`, `-`
/// or `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityRef {
    Agent(String),
    Character(String),
}

impl EntityRef {
    pub fn kind(&self) -> EntityKind {
        match self {
            Self::Agent(_) => EntityKind::Agent,
            Self::Character(_) => EntityKind::Character,
        }
    }

    /// The agent's slug or the character's name, without the prefix.
    pub fn name(&self) -> &str {
        match self {
            Self::Agent(slug) => slug,
            Self::Character(name) => name,
        }
    }
}

/// A string that is not an entity id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {}", quote(.found))]
pub struct BadEntityRef {
    expected: &'static str,
    found: String,
}

pub(crate) const ENTITY_EXPECTED: &str = "an entity id (`a:<agent slug>` or `c:<character name>`)";
pub(crate) const AGENT_EXPECTED: &str = "an agent id (`a:<agent slug>`)";

pub(crate) fn is_agent_slug(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && s.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

pub(crate) fn is_character_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl FromStr for EntityRef {
    type Err = BadEntityRef;

    fn from_str(s: &str) -> Result<Self, BadEntityRef> {
        if let Some(slug) = s.strip_prefix("a:")
            && is_agent_slug(slug)
        {
            return Ok(Self::Agent(slug.to_owned()));
        }
        if let Some(name) = s.strip_prefix("c:")
            && is_character_name(name)
        {
            return Ok(Self::Character(name.to_owned()));
        }
        Err(BadEntityRef {
            expected: ENTITY_EXPECTED,
            found: s.to_owned(),
        })
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Agent(slug) => write!(f, "a:{slug}"),
            Self::Character(name) => write!(f, "c:{name}"),
        }
    }
}

impl Serialize for EntityRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EntityRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParsedStr::<EntityRef>::new(ENTITY_EXPECTED))
    }
}

/// An agent's id on the wire, `a:<slug>`: an [`EntityRef`] that can only be
/// an agent, for the fields that name agents.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentRef(String);

impl AgentRef {
    /// The agent with this slug, if it is a valid slug.
    pub fn new(slug: &str) -> Option<Self> {
        is_agent_slug(slug).then(|| Self(slug.to_owned()))
    }

    pub fn slug(&self) -> &str {
        &self.0
    }
}

impl FromStr for AgentRef {
    type Err = BadEntityRef;

    fn from_str(s: &str) -> Result<Self, BadEntityRef> {
        match s.parse::<EntityRef>() {
            Ok(EntityRef::Agent(slug)) => Ok(Self(slug)),
            _ => Err(BadEntityRef {
                expected: AGENT_EXPECTED,
                found: s.to_owned(),
            }),
        }
    }
}

impl From<AgentRef> for EntityRef {
    fn from(agent: AgentRef) -> Self {
        Self::Agent(agent.0)
    }
}

impl fmt::Display for AgentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a:{}", self.0)
    }
}

impl Serialize for AgentRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AgentRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParsedStr::<AgentRef>::new(AGENT_EXPECTED))
    }
}

/// Deserializes a string through `FromStr`, saying what was expected.
pub(crate) struct ParsedStr<T> {
    expected: &'static str,
    marker: std::marker::PhantomData<T>,
}

impl<T> ParsedStr<T> {
    fn new(expected: &'static str) -> Self {
        Self {
            expected,
            marker: std::marker::PhantomData,
        }
    }
}

impl<T: FromStr> Visitor<'_> for ParsedStr<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse()
            .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
    }
}
