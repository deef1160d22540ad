//! Protocol v1 of the game clients' WebSocket, as `docs/protocol.md`
//! specifies it: the messages each way, the error codes clients see, and the
//! decoding of a client's text frame into a checked [`ClientMessage`] (or the
//! [`ProtocolError`] to send back instead). Pure data: touches no world
//! state, no socket and no clock; [`decode`] never panics on any input.
//!
//! # Layout
//! - [`decode`] and [`encode`]: a client's frame to a [`ClientMessage`]; a
//!   [`ServerMessage`] to a frame.
//! - [`ClientMessage`]: what clients send, one body struct per `type`.
//!   Every field is checked before a message is returned: unknown, missing,
//!   wrongly typed and out-of-range fields are `bad_request`s naming the
//!   field (and the range).
//! - [`ServerMessage`]: what the server sends; plain data the hub fills
//!   ([`Entity`] keeps a full entity and computes its delta).
//! - [`ErrorCode`] and [`ProtocolError`]: errors as clients see them.
//!
//! [`decode`] first reads the frame into an ordered JSON tree (duplicate keys
//! are refused, so a typo never passes silently), recovers the request `id`
//! (so that every error to a request can carry it, even when the rest of the
//! frame is broken), dispatches on `type`, and deserializes the body through
//! a deserializer that tracks the field being read, to name it in errors.
//! `ClientMessage` also derives `Deserialize`, and `ServerMessage` derives
//! both ways, so Rust test clients can speak the protocol with `serde_json`.
//!
//! # Testing
//! The unit tests decode every example of `docs/protocol.md` and run a
//! property test (arbitrary strings, arbitrary JSON, mutated valid messages)
//! with a few hundred cases. The same property with one million cases is
//! `#[ignore]`d; run it in release (about 30 s once built) with
//!
//! ```text
//! cargo test -p hearth --release --lib net::protocol::tests::fuzz_decoder_one_million -- --ignored
//! ```

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use chrono::NaiveDateTime;
use serde::de::{
    self, DeserializeSeed, Deserializer, Expected, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};
use serde::{Deserialize, Serialize, Serializer};

/// The protocol's version.
pub const VERSION: u32 = 1;
/// The WebSocket subprotocol a client must offer.
pub const SUBPROTOCOL: &str = "hearth.v1.json";
/// Default of the `max message size` limit, in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Longest string request `id`, in characters.
pub const MAX_ID_CHARS: usize = 64;
/// Largest `w` and `h` of a subscribed rectangle, in tiles (a circle's `r`
/// is at most half of it).
pub const MAX_AREA_SIZE: f32 = 4096.0;
/// Largest coordinate a client may name, in tiles (areas may start at
/// negative coordinates down to its opposite; `move_to` targets may not).
pub const MAX_COORDINATE: f32 = 65_536.0;
/// Longest `say` text, in characters, after trimming.
pub const MAX_SAY_CHARS: usize = 500;
/// Longest `query` of `agent_memories` and `agent_prompt`, in characters.
pub const MAX_QUERY_CHARS: usize = 500;
/// Most memories `agent_memories` may ask for.
pub const MAX_MEMORIES_K: u32 = 50;
/// Memories `agent_memories` returns when it gives no `k` (as the
/// `hearth memories query` command does).
pub const DEFAULT_MEMORIES_K: u32 = 10;
/// Allowed `set_time_scale` scales: game minutes per real second.
pub const TIME_SCALES: std::ops::RangeInclusive<u32> = 1..=60;
/// Longest world, location or object name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest `hello` token, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Bytes of an oversized frame scanned for its request `id`.
const ID_SCAN_BYTES: usize = 1024;
/// Longest piece of client input quoted back in an error message.
const MAX_QUOTED_CHARS: usize = 40;
/// Longest detail of a `bad_request` message.
const MAX_DETAIL_CHARS: usize = 400;

// ---------------------------------------------------------------------------
// Identifiers

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

    fn of_json(value: &Json) -> Option<Self> {
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

struct RequestIdVisitor;

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

const ENTITY_EXPECTED: &str = "an entity id (`a:<agent slug>` or `c:<character name>`)";
const AGENT_EXPECTED: &str = "an agent id (`a:<agent slug>`)";

fn is_agent_slug(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && s.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_character_name(s: &str) -> bool {
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
struct ParsedStr<T> {
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

// ---------------------------------------------------------------------------
// Client messages

/// Declares [`ClientMessage`] from one list of `type` names and bodies:
/// the enum (its serde tags), [`CLIENT_TYPES`], `type_name` and the
/// decoder's dispatch on `type` all come from it, so a name is written once.
macro_rules! client_messages {
    ($($name:literal => $variant:ident($body:ty),)*) => {
        /// A message from a client. From [`decode`], checked: every field is
        /// present, of its type and within its range. Its derived
        /// `Deserialize` (for Rust clients in tests) checks types but not
        /// ranges.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum ClientMessage {
            $(#[serde(rename = $name)] $variant($body),)*
        }

        /// Every client message `type`, in the order of the specification.
        pub const CLIENT_TYPES: &[&str] = &[$($name),*];

        impl ClientMessage {
            /// The message's `type`.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $name,)*
                }
            }
        }

        /// Deserializes the body of a message of type `kind`; `None` when no
        /// message has that type.
        fn decode_body(kind: &str, body: Json) -> Option<Result<ClientMessage, FieldError>> {
            Some(match kind {
                $($name => <$body>::deserialize(body).map(ClientMessage::$variant),)*
                _ => return None,
            })
        }
    };
}

client_messages! {
    "hello" => Hello(Hello),
    "subscribe" => Subscribe(Subscribe),
    "unsubscribe" => Unsubscribe(Request),
    "move_to" => MoveTo(MoveTo),
    "say" => Say(Say),
    "start_conversation" => StartConversation(StartConversation),
    "end_conversation" => EndConversation(Request),
    "interact" => Interact(Interact),
    "agent_detail" => AgentDetail(AgentQuery),
    "agent_memories" => AgentMemories(MemoriesQuery),
    "agent_prompt" => AgentPrompt(PromptQuery),
    "pause" => Pause(Request),
    "resume" => Resume(Request),
    "set_time_scale" => SetTimeScale(SetTimeScale),
    "reload_content" => ReloadContent(Request),
}

impl ClientMessage {
    /// The request's id, which every answer to it carries.
    pub fn id(&self) -> &RequestId {
        match self {
            Self::Hello(m) => &m.id,
            Self::Subscribe(m) => &m.id,
            Self::MoveTo(m) => &m.id,
            Self::Say(m) => &m.id,
            Self::StartConversation(m) => &m.id,
            Self::Interact(m) => &m.id,
            Self::AgentDetail(m) => &m.id,
            Self::AgentMemories(m) => &m.id,
            Self::AgentPrompt(m) => &m.id,
            Self::SetTimeScale(m) => &m.id,
            Self::Unsubscribe(m)
            | Self::EndConversation(m)
            | Self::Pause(m)
            | Self::Resume(m)
            | Self::ReloadContent(m) => &m.id,
        }
    }

    /// Checks the ranges serde cannot express; trims `say` text.
    fn checked(mut self) -> Result<Self, String> {
        match &mut self {
            Self::Hello(m) => {
                check_name("world", &m.world)?;
                if let Some(token) = &m.token
                    && !(1..=MAX_TOKEN_BYTES).contains(&token.len())
                {
                    return Err(format!(
                        "field `token` must have 1 to {MAX_TOKEN_BYTES} bytes, found {}",
                        token.len()
                    ));
                }
            }
            Self::Subscribe(m) => {
                if let Some(area) = &m.area {
                    area.check()?;
                }
            }
            Self::MoveTo(m) => match &m.target {
                Destination::Tile { x, y } => {
                    check_number("x", *x, 0.0, MAX_COORDINATE)?;
                    check_number("y", *y, 0.0, MAX_COORDINATE)?;
                }
                Destination::Location(name) => check_name("location", name)?,
            },
            Self::Say(m) => {
                let trimmed = m.text.trim();
                let chars = trimmed.chars().count();
                if !(1..=MAX_SAY_CHARS).contains(&chars) {
                    return Err(format!(
                        "field `text` must have 1 to {MAX_SAY_CHARS} characters (leading and \
                         trailing spaces aside), found {chars}"
                    ));
                }
                if trimmed.len() != m.text.len() {
                    m.text = trimmed.to_owned();
                }
            }
            Self::Interact(m) => check_name("object", &m.object)?,
            Self::AgentMemories(m) => {
                check_chars("query", &m.query, 0, MAX_QUERY_CHARS)?;
                check_integer("k", m.k, 1, MAX_MEMORIES_K)?;
            }
            Self::AgentPrompt(m) => check_chars("query", &m.query, 0, MAX_QUERY_CHARS)?,
            Self::SetTimeScale(m) => {
                check_integer("scale", m.scale, *TIME_SCALES.start(), *TIME_SCALES.end())?;
            }
            Self::Unsubscribe(_)
            | Self::StartConversation(_)
            | Self::EndConversation(_)
            | Self::AgentDetail(_)
            | Self::Pause(_)
            | Self::Resume(_)
            | Self::ReloadContent(_) => {}
        }
        Ok(self)
    }
}

fn check_chars(field: &str, value: &str, min: usize, max: usize) -> Result<(), String> {
    let chars = value.chars().count();
    if (min..=max).contains(&chars) {
        Ok(())
    } else {
        Err(format!(
            "field `{field}` must have {min} to {max} characters, found {chars}"
        ))
    }
}

/// A name: not blank, at most [`MAX_NAME_CHARS`].
fn check_name(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("field `{field}` must not be blank"));
    }
    check_chars(field, value, 1, MAX_NAME_CHARS)
}

fn check_number(field: &str, value: f32, min: f32, max: f32) -> Result<(), String> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "field `{field}` must be a number from {min} to {max}, found {value}"
        ))
    }
}

fn check_integer(field: &str, value: u32, min: u32, max: u32) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "field `{field}` must be from {min} to {max}, found {value}"
        ))
    }
}

/// `hello`: the first frame of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub id: RequestId,
    pub world: String,
    /// What `POST /auth/login` returned; none for an anonymous spectator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `subscribe`: the area to watch, replacing any previous one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    pub id: RequestId,
    /// None: a player follows its character.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<Area>,
}

/// A request that carries nothing but its id (`unsubscribe`,
/// `end_conversation`, `pause`, `resume`, `reload_content`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub id: RequestId,
}

/// `move_to`: walk the player's character to a tile or a location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawMoveTo", into = "RawMoveTo")]
pub struct MoveTo {
    pub id: RequestId,
    pub target: Destination,
}

/// Where `move_to` goes: `x` and `y`, or `location`.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    Tile { x: f32, y: f32 },
    Location(String),
}

/// `move_to` as on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMoveTo {
    id: RequestId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    y: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    location: Option<String>,
}

impl TryFrom<RawMoveTo> for MoveTo {
    type Error = &'static str;

    fn try_from(raw: RawMoveTo) -> Result<Self, Self::Error> {
        let target = match (raw.x, raw.y, raw.location) {
            (Some(x), Some(y), None) => Destination::Tile { x, y },
            (None, None, Some(location)) => Destination::Location(location),
            (None, None, None) => return Err("missing field `x` and `y`, or `location`"),
            (_, _, Some(_)) => return Err("give either `x` and `y`, or `location`, not both"),
            (Some(_), None, None) => return Err("missing field `y` (with `x`)"),
            (None, Some(_), None) => return Err("missing field `x` (with `y`)"),
        };
        Ok(Self { id: raw.id, target })
    }
}

impl From<MoveTo> for RawMoveTo {
    fn from(m: MoveTo) -> Self {
        let (x, y, location) = match m.target {
            Destination::Tile { x, y } => (Some(x), Some(y), None),
            Destination::Location(name) => (None, None, Some(name)),
        };
        Self {
            id: m.id,
            x,
            y,
            location,
        }
    }
}

/// `say`: a line of the player's character.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Say {
    pub id: RequestId,
    /// Trimmed by [`decode`].
    pub text: String,
    /// None: everyone within talking distance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<EntityRef>,
}

/// `start_conversation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartConversation {
    pub id: RequestId,
    pub with: EntityRef,
}

/// `interact`: use an object of the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interact {
    pub id: RequestId,
    pub object: String,
}

/// `agent_detail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentQuery {
    pub id: RequestId,
    pub agent: AgentRef,
}

/// `agent_memories`: the top `k` memories for `query`, with their scores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoriesQuery {
    pub id: RequestId,
    pub agent: AgentRef,
    pub query: String,
    #[serde(default = "default_k")]
    pub k: u32,
}

fn default_k() -> u32 {
    DEFAULT_MEMORIES_K
}

/// `agent_prompt`: the prompt the agent's mind would be given for `query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptQuery {
    pub id: RequestId,
    pub agent: AgentRef,
    pub query: String,
}

/// `set_time_scale`: game minutes per real second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetTimeScale {
    pub id: RequestId,
    pub scale: u32,
}

/// A subscribed area, in tiles: a rectangle (`x`, `y`, `w`, `h`) or a circle
/// (`cx`, `cy`, `r`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawArea", into = "RawArea")]
pub enum Area {
    Rect { x: f32, y: f32, w: f32, h: f32 },
    Circle { cx: f32, cy: f32, r: f32 },
}

impl Area {
    pub fn centre(&self) -> (f32, f32) {
        match *self {
            Self::Rect { x, y, w, h } => (x + w / 2.0, y + h / 2.0),
            Self::Circle { cx, cy, .. } => (cx, cy),
        }
    }

    /// The circle's radius, or the rectangle's half-diagonal.
    pub fn radius(&self) -> f32 {
        match *self {
            Self::Rect { w, h, .. } => (w * w + h * h).sqrt() / 2.0,
            Self::Circle { r, .. } => r,
        }
    }

    /// Whether the point is in the area (edges included).
    pub fn contains(&self, px: f32, py: f32) -> bool {
        match *self {
            Self::Rect { x, y, w, h } => px >= x && px <= x + w && py >= y && py <= y + h,
            Self::Circle { cx, cy, r } => (px - cx).powi(2) + (py - cy).powi(2) <= r * r,
        }
    }

    /// Whether the point is farther from the centre than half the
    /// [`radius`](Self::radius): such entities may be updated every second
    /// tick only.
    pub fn is_far(&self, px: f32, py: f32) -> bool {
        let (cx, cy) = self.centre();
        let half = self.radius() / 2.0;
        (px - cx).powi(2) + (py - cy).powi(2) > half * half
    }

    fn check(&self) -> Result<(), String> {
        match *self {
            Self::Rect { x, y, w, h } => {
                check_number("area.x", x, -MAX_COORDINATE, MAX_COORDINATE)?;
                check_number("area.y", y, -MAX_COORDINATE, MAX_COORDINATE)?;
                check_number("area.w", w, 0.0, MAX_AREA_SIZE)?;
                check_number("area.h", h, 0.0, MAX_AREA_SIZE)
            }
            Self::Circle { cx, cy, r } => {
                check_number("area.cx", cx, -MAX_COORDINATE, MAX_COORDINATE)?;
                check_number("area.cy", cy, -MAX_COORDINATE, MAX_COORDINATE)?;
                check_number("area.r", r, 0.0, MAX_AREA_SIZE / 2.0)
            }
        }
    }
}

/// An area as on the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArea {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    y: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    w: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    h: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cx: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cy: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<f32>,
}

impl TryFrom<RawArea> for Area {
    type Error = String;

    fn try_from(a: RawArea) -> Result<Self, String> {
        let rect = [("x", a.x), ("y", a.y), ("w", a.w), ("h", a.h)];
        let circle = [("cx", a.cx), ("cy", a.cy), ("r", a.r)];
        let any = |fields: &[(&str, Option<f32>)]| fields.iter().any(|(_, v)| v.is_some());
        let missing = |fields: &[(&str, Option<f32>)]| {
            fields
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(name, _)| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (any(&rect), any(&circle)) {
            (true, true) => Err("an area is a rectangle (`x`, `y`, `w`, `h`) or a circle \
                                 (`cx`, `cy`, `r`), not both"
                .to_owned()),
            (false, false) => Err("an area needs `x`, `y`, `w` and `h` (a rectangle) or \
                                   `cx`, `cy` and `r` (a circle)"
                .to_owned()),
            (true, false) => match (a.x, a.y, a.w, a.h) {
                (Some(x), Some(y), Some(w), Some(h)) => Ok(Self::Rect { x, y, w, h }),
                _ => Err(format!("a rectangle misses {}", missing(&rect))),
            },
            (false, true) => match (a.cx, a.cy, a.r) {
                (Some(cx), Some(cy), Some(r)) => Ok(Self::Circle { cx, cy, r }),
                _ => Err(format!("a circle misses {}", missing(&circle))),
            },
        }
    }
}

impl From<Area> for RawArea {
    fn from(area: Area) -> Self {
        let none = Self {
            x: None,
            y: None,
            w: None,
            h: None,
            cx: None,
            cy: None,
            r: None,
        };
        match area {
            Area::Rect { x, y, w, h } => Self {
                x: Some(x),
                y: Some(y),
                w: Some(w),
                h: Some(h),
                ..none
            },
            Area::Circle { cx, cy, r } => Self {
                cx: Some(cx),
                cy: Some(cy),
                r: Some(r),
                ..none
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Server messages

/// Declares [`ServerMessage`] from one list of `type` names and variants:
/// the enum (its serde tags), [`SERVER_TYPES`] and `type_name` come from it.
macro_rules! server_messages {
    ($($name:literal => $variant:ident $body:tt,)*) => {
        /// A message from the server.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum ServerMessage {
            $(#[serde(rename = $name)] $variant $body,)*
        }

        /// Every server message `type`.
        pub const SERVER_TYPES: &[&str] = &[$($name),*];

        impl ServerMessage {
            /// The message's `type`.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => $name,)*
                }
            }
        }
    };
}

server_messages! {
    "welcome" => Welcome(Welcome),
    "snapshot" => Snapshot(Snapshot),
    "delta" => Delta(Delta),
    "event" => Event { tick: u64, event: Event },
    "ok" => Ok { id: RequestId },
    "error" => Error(ProtocolError),
    "agent_detail" => AgentDetail { id: RequestId, agent: AgentDetail },
    "agent_memories" => AgentMemories { id: RequestId, memories: Vec<ScoredMemory> },
    "agent_prompt" => AgentPrompt { id: RequestId, prompt: String, tokens: u32 },
}

impl ServerMessage {
    /// The id of the request this answers, if it answers one.
    pub fn id(&self) -> Option<&RequestId> {
        match self {
            Self::Welcome(w) => Some(&w.id),
            Self::Snapshot(s) => s.id.as_ref(),
            Self::Delta(_) | Self::Event { .. } => None,
            Self::Error(e) => e.id.as_ref(),
            Self::Ok { id }
            | Self::AgentDetail { id, .. }
            | Self::AgentMemories { id, .. }
            | Self::AgentPrompt { id, .. } => Some(id),
        }
    }
}

impl From<ProtocolError> for ServerMessage {
    fn from(error: ProtocolError) -> Self {
        Self::Error(error)
    }
}

/// A connection's role in its world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Designer,
    Player,
    Spectator,
}

/// `welcome`: the answer to `hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub id: RequestId,
    pub session: String,
    pub world: String,
    pub role: Role,
    /// The player's character's name (players only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub character: Option<String>,
    /// Where the viewer fetches the map from (same origin).
    pub map: String,
    /// Ticks per real second.
    pub tick_rate: u32,
    /// Game minutes per real second.
    pub time_scale: u32,
    pub game_time: NaiveDateTime,
    pub limits: Limits,
}

/// The connection's limits, as told in `welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub commands_per_second: u32,
}

/// `snapshot`: every entity in the subscribed area.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The `subscribe` it answers; none for a catch-up snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    pub tick: u64,
    pub game_time: NaiveDateTime,
    /// When the world finished the tick: Unix time in milliseconds (with a
    /// fraction), for measuring delivery latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<f64>,
    /// Full states (every field present).
    pub entities: Vec<EntityState>,
}

/// `delta`: what changed in the area during a tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub tick: u64,
    pub game_time: NaiveDateTime,
    /// When the world finished the tick: Unix time in milliseconds (with a
    /// fraction), for measuring delivery latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<f64>,
    /// Each with its changed fields only.
    #[serde(default)]
    pub changed: Vec<EntityState>,
    /// Full states.
    #[serde(default)]
    pub entered: Vec<EntityState>,
    #[serde(default)]
    pub left: Vec<EntityRef>,
}

/// Eight compass directions, as the world's `Facing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Facing {
    N,
    Ne,
    E,
    Se,
    S,
    Sw,
    W,
    Nw,
}

/// An entity on the wire: in full (snapshots, `entered`) every field is
/// present; in `changed`, only the changed ones. Fields that may be `null`
/// are `Option<Option<_>>`: absent, or present and possibly `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityState {
    pub id: EntityRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<EntityKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facing: Option<Facing>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub activity: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub location: Option<Option<String>>,
    /// −1 (low) to 1; null for characters.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub mood: Option<Option<f32>>,
    /// The line shown over the entity, for a few seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub speech: Option<Option<String>>,
}

/// A field that is present, `null` or not: `Some(None)` for `null`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl EntityState {
    /// Just the id: a change with nothing changed yet.
    pub fn id_only(id: EntityRef) -> Self {
        Self {
            id,
            kind: None,
            name: None,
            x: None,
            y: None,
            facing: None,
            activity: None,
            location: None,
            mood: None,
            speech: None,
        }
    }

    /// Whether any field besides the id is present.
    pub fn has_changes(&self) -> bool {
        *self != Self::id_only(self.id.clone())
    }
}

/// An entity in full, as the hub keeps it between ticks.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub id: EntityRef,
    pub name: String,
    pub x: f32,
    pub y: f32,
    pub facing: Facing,
    pub activity: Option<String>,
    pub location: Option<String>,
    pub mood: Option<f32>,
    pub speech: Option<String>,
}

impl Entity {
    /// The `changed` entry from `before` to `self`, if anything changed.
    pub fn changes_since(&self, before: &Entity) -> Option<EntityState> {
        fn diff<T: PartialEq + Clone>(now: &T, then: &T) -> Option<T> {
            (now != then).then(|| now.clone())
        }
        let change = EntityState {
            id: self.id.clone(),
            kind: None,
            name: diff(&self.name, &before.name),
            x: diff(&self.x, &before.x),
            y: diff(&self.y, &before.y),
            facing: diff(&self.facing, &before.facing),
            activity: diff(&self.activity, &before.activity),
            location: diff(&self.location, &before.location),
            mood: diff(&self.mood, &before.mood),
            speech: diff(&self.speech, &before.speech),
        };
        change.has_changes().then_some(change)
    }
}

impl From<Entity> for EntityState {
    fn from(e: Entity) -> Self {
        Self {
            kind: Some(e.id.kind()),
            id: e.id,
            name: Some(e.name),
            x: Some(e.x),
            y: Some(e.y),
            facing: Some(e.facing),
            activity: Some(e.activity),
            location: Some(e.location),
            mood: Some(e.mood),
            speech: Some(e.speech),
        }
    }
}

/// What happened to entities in the area (`event` messages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Speech {
        speaker: EntityRef,
        /// Empty: everyone within talking distance.
        #[serde(default)]
        to: Vec<EntityRef>,
        /// None for a line said outside a conversation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation: Option<u64>,
        text: String,
    },
    ConversationStarted {
        conversation: u64,
        participants: Vec<EntityRef>,
        #[serde(default)]
        location: Option<String>,
    },
    ConversationEnded {
        conversation: u64,
        participants: Vec<EntityRef>,
    },
    Reflection {
        agent: AgentRef,
        text: String,
    },
    Relationship {
        agent: AgentRef,
        other: EntityRef,
        affection: f32,
        trust: f32,
    },
    Plan {
        agent: AgentRef,
        goal: String,
    },
    /// To designers and admins: changed content files took effect in the
    /// live world.
    ContentReloaded {
        /// Agents whose definition changed.
        changed: Vec<AgentRef>,
        /// Agents that joined the world (new files, or files back).
        #[serde(default)]
        added: Vec<AgentRef>,
        /// Agents that left it (their files were removed).
        #[serde(default)]
        removed: Vec<AgentRef>,
        /// Agents that took up a changed schedule at once.
        #[serde(default)]
        rescheduled: Vec<AgentRef>,
        /// Agents that looked for a new way because the map changed under
        /// their path.
        #[serde(default)]
        repathed: Vec<AgentRef>,
        map: bool,
        lore: bool,
        prompts: bool,
    },
    /// To designers and admins: the content files have problems, so the
    /// world goes on with the last good version until they are fixed.
    ContentError {
        /// Every problem, in file and text order.
        problems: Vec<ContentProblem>,
        /// The problems (or why the reload was refused), in words.
        message: String,
    },
}

/// One problem of a content file (see `hearth validate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentProblem {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// JSONPath-like: `$.schedule[2].location`.
    pub path: String,
    pub expected: String,
    pub found: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// `agent_detail`'s answer: who the agent is and what it is up to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentDetail {
    pub id: AgentRef,
    pub name: String,
    pub age: u32,
    pub traits: BigFive,
    pub occupation: String,
    pub activity: Option<String>,
    pub plan: Option<PlanSummary>,
    pub schedule: Vec<ScheduleSlot>,
    pub relationships: Vec<Relation>,
}

/// Personality traits, each 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BigFive {
    pub openness: f32,
    pub conscientiousness: f32,
    pub extraversion: f32,
    pub agreeableness: f32,
    pub neuroticism: f32,
}

/// The agent's current plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    pub goal: String,
    pub steps: Vec<String>,
    /// Index into `steps` of the step under way.
    pub current: usize,
}

/// An entry of the agent's schedule for today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSlot {
    /// `HH:MM`.
    pub start: String,
    /// `HH:MM`.
    pub end: String,
    pub activity: String,
    #[serde(default)]
    pub location: Option<String>,
}

/// How the agent stands with someone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relation {
    pub with: EntityRef,
    pub kind: String,
    pub affection: f32,
    pub trust: f32,
}

/// A retrieved memory with every term of its score (`docs/memory.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredMemory {
    pub id: u64,
    pub kind: String,
    pub content: String,
    pub created: NaiveDateTime,
    /// 1 to 10.
    pub importance: u8,
    pub score: f32,
    pub recency: f32,
    pub importance_score: f32,
    pub relevance: f32,
    /// The emotion term, when the world weighs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emotion: Option<f32>,
}

// ---------------------------------------------------------------------------
// Errors

/// What went wrong, as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a JSON object.
    BadJson,
    /// A field is missing, unknown, or of the wrong type or range.
    BadRequest,
    /// `type` names no message of this protocol.
    UnknownType,
    /// A message before `hello`, or a second `hello`.
    NotReady,
    /// The token is invalid, expired or revoked.
    Unauthorized,
    /// The role does not allow it.
    Forbidden,
    /// The agent, character, location or object does not exist.
    NotFound,
    /// The agent is outside what this client can see.
    NotVisible,
    /// More commands than the connection's budget.
    RateLimited,
    /// The frame exceeds `max_message_bytes`.
    TooLarge,
    /// The world is paused, reloading, or the mind is busy.
    Unavailable,
    /// A bug.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        Self::BadJson,
        Self::BadRequest,
        Self::UnknownType,
        Self::NotReady,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::NotVisible,
        Self::RateLimited,
        Self::TooLarge,
        Self::Unavailable,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::BadRequest => "bad_request",
            Self::UnknownType => "unknown_type",
            Self::NotReady => "not_ready",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::NotVisible => "not_visible",
            Self::RateLimited => "rate_limited",
            Self::TooLarge => "too_large",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `error` message: its code, what happened in words, and the id of the
/// request it answers when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            id: None,
            code,
            message: message.into(),
        }
    }

    /// The same error, answering the request `id` (if known).
    pub fn with_id(mut self, id: Option<RequestId>) -> Self {
        self.id = id;
        self
    }
}

// ---------------------------------------------------------------------------
// Decoding and encoding

/// Reads a client's text frame of at most `max_bytes` into a checked
/// message, or the error to answer with (carrying the request `id` whenever
/// the frame had a readable one). Never panics.
pub fn decode(text: &str, max_bytes: usize) -> Result<ClientMessage, ProtocolError> {
    if text.len() > max_bytes {
        let id = recover_id(prefix(text, ID_SCAN_BYTES));
        return Err(ProtocolError::new(
            ErrorCode::TooLarge,
            format!(
                "the frame has {} bytes, over the limit of {max_bytes}",
                text.len()
            ),
        )
        .with_id(id));
    }
    let members = parse_object(text).map_err(|e| e.with_id(recover_id(text)))?;
    let id = members
        .iter()
        .find(|(key, _)| key == "id")
        .and_then(|(_, value)| RequestId::of_json(value));
    let fail = |code, message: String| ProtocolError::new(code, message).with_id(id.clone());

    let mut kind = None;
    let mut body = Vec::with_capacity(members.len());
    for (key, value) in members {
        if key == "type" {
            kind = Some(value);
        } else {
            body.push((key, value));
        }
    }
    let kind = match kind {
        Some(Json::String(kind)) => kind,
        Some(other) => {
            return Err(fail(
                ErrorCode::BadRequest,
                format!(
                    "field `type`: expected a string naming the message, found {}",
                    describe(other.unexpected())
                ),
            ));
        }
        None => {
            return Err(fail(
                ErrorCode::BadRequest,
                "missing field `type`".to_owned(),
            ));
        }
    };
    let Some(message) = decode_body(&kind, Json::Object(body)) else {
        return Err(fail(ErrorCode::UnknownType, unknown_type(&kind)));
    };
    message
        .map_err(|e| e.to_string())
        .and_then(ClientMessage::checked)
        .map_err(|detail| fail(ErrorCode::BadRequest, format!("{kind}: {detail}")))
}

/// The frame of a server message.
pub fn encode(msg: &ServerMessage) -> String {
    match serde_json::to_string(msg) {
        Ok(text) => text,
        Err(e) => {
            // Unreachable with these types (string keys only); answer
            // something a client can read rather than nothing.
            tracing::error!(error = %e, kind = msg.type_name(), "a server message failed to encode");
            let error = ProtocolError::new(
                ErrorCode::Internal,
                format!("a `{}` message failed to encode", msg.type_name()),
            )
            .with_id(msg.id().cloned());
            serde_json::to_string(&ServerMessage::Error(error)).unwrap_or_else(|_| {
                r#"{"type":"error","code":"internal","message":"encoding failed"}"#.to_owned()
            })
        }
    }
}

fn unknown_type(kind: &str) -> String {
    let shown = quote(kind);
    if SERVER_TYPES.contains(&kind) {
        return format!("unknown message type {shown}: the server sends it, clients do not");
    }
    match closest(kind, &CLIENT_TYPES) {
        Some(close) => format!("unknown message type {shown}; did you mean `{close}`?"),
        None => format!(
            "unknown message type {shown}; the types are {}",
            list(&CLIENT_TYPES)
        ),
    }
}

/// The frame as an object, or `bad_json` (or `bad_request` for a duplicate
/// key), with line and column.
fn parse_object(text: &str) -> Result<Vec<(String, Json)>, ProtocolError> {
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Object(members)) => Ok(members),
        Ok(other) => {
            let (line, column) = first_token(text);
            Err(ProtocolError::new(
                ErrorCode::BadJson,
                format!(
                    "expected a JSON object, found {} at line {line} column {column}",
                    describe(other.unexpected())
                ),
            ))
        }
        // Only the tree's own check fails as data: a duplicate key.
        Err(e) if e.is_data() => Err(ProtocolError::new(ErrorCode::BadRequest, e.to_string())),
        Err(e) => Err(ProtocolError::new(
            ErrorCode::BadJson,
            format!("not valid JSON: {e}"),
        )),
    }
}

/// 1-based line and column (in characters) of the first non-blank character.
fn first_token(text: &str) -> (usize, usize) {
    let (mut line, mut column) = (1, 1);
    for c in text.chars() {
        match c {
            '\n' => {
                line += 1;
                column = 1;
            }
            ' ' | '\t' | '\r' => column += 1,
            _ => break,
        }
    }
    (line, column)
}

/// The longest prefix of `text` of at most `max` bytes.
/// The request id of a frame that is not decoded (one refused before
/// reading, such as a rate-limited command), read from its first KiB.
pub fn recover_request_id(text: &str) -> Option<RequestId> {
    recover_id(prefix(text, ID_SCAN_BYTES))
}

fn prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The request id of a frame that may be broken or cut: the last top-level
/// `id` read before the frame ends or stops being JSON, if it is valid.
fn recover_id(text: &str) -> Option<RequestId> {
    struct Scan<'a>(&'a mut Option<RequestId>);

    impl<'de> Visitor<'de> for Scan<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(is_id) = map.next_key_seed(IsId)? {
                if is_id {
                    // The last `id` counts, as in `serde_json::Value`.
                    *self.0 = map.next_value::<MaybeId>()?.0;
                } else {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }

    let mut found = None;
    let mut json = serde_json::Deserializer::from_str(text);
    // Errors are expected: the frame is broken; what was read before stays.
    let _ = de::Deserializer::deserialize_map(&mut json, Scan(&mut found));
    found
}

/// Reads a key, telling whether it is `id`.
struct IsId;

impl<'de> DeserializeSeed<'de> for IsId {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for IsId {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == "id")
    }
}

/// Any JSON value, read as a request id if it is a valid one.
struct MaybeId(Option<RequestId>);

impl<'de> Deserialize<'de> for MaybeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MaybeIdVisitor)
    }
}

struct MaybeIdVisitor;

impl<'de> Visitor<'de> for MaybeIdVisitor {
    type Value = MaybeId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<MaybeId, E> {
        Ok(MaybeId(Some(RequestId::Number(v))))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<MaybeId, E> {
        Ok(MaybeId(u64::try_from(v).ok().map(RequestId::Number)))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<MaybeId, E> {
        Ok(MaybeId(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<MaybeId, E> {
        Ok(MaybeId(None))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<MaybeId, E> {
        Ok(MaybeId(RequestId::text(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<MaybeId, E> {
        Ok(MaybeId(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MaybeId, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(MaybeId(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MaybeId, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(MaybeId(None))
    }
}

// ---------------------------------------------------------------------------
// The JSON tree and its field-tracking deserializer

/// JSON as read from a frame: object members in order, duplicate keys
/// refused (`serde_json::Value` keeps the last of them silently).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn unexpected(&self) -> Unexpected<'_> {
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

struct JsonVisitor;

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
struct FieldError {
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
fn in_words(exp: &dyn Expected) -> String {
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
fn describe(unexp: Unexpected<'_>) -> String {
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
fn quote(text: &str) -> String {
    serde_json::Value::String(clip(text, MAX_QUOTED_CHARS)).to_string()
}

/// At most `max` characters of `text`, with `…` when cut.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// "`a`, `b` or `c`".
fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.split_last() {
        None => "nothing".to_owned(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The candidate `word` most likely misspells, if one is close: compared in
/// snake case (`moveTo` is `move_to`), within a Damerau–Levenshtein distance
/// of a third of the length (at least 1) or a Jaro–Winkler similarity of 0.9.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if word.is_empty() || word.len() > 64 {
        return None;
    }
    let word = snake_case(word);
    let mut best: Option<(usize, f64, &str)> = None;
    for &candidate in candidates {
        if candidate == word {
            return Some(candidate);
        }
        let distance = strsim::damerau_levenshtein(&word, candidate);
        let similarity = strsim::jaro_winkler(&word, candidate);
        let limit = (word.chars().count().max(candidate.len()) / 3).max(1);
        if distance > limit && similarity < 0.9 {
            continue;
        }
        if best.is_none_or(|(d, s, _)| distance < d || (distance == d && similarity > s)) {
            best = Some((distance, similarity, candidate));
        }
    }
    best.map(|(_, _, c)| c)
}

/// `moveTo`, `MoveTo`, `move-to` and `MOVE_TO` as `move_to`.
fn snake_case(word: &str) -> String {
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

fn visit_items<'de, V: Visitor<'de>>(items: Vec<Json>, visitor: V) -> Result<V::Value, FieldError> {
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

fn visit_members<'de, V: Visitor<'de>>(
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
struct Items {
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
struct Members {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use proptest::sample::Index;
    use proptest::test_runner::TestCaseError;
    use serde_json::{Value, json};

    use super::*;

    const MAX: usize = DEFAULT_MAX_MESSAGE_BYTES;
    const SPEC: &str = include_str!("../../../docs/protocol.md");

    fn ok(text: &str) -> ClientMessage {
        decode(text, MAX).unwrap_or_else(|e| panic!("{text} → {e}"))
    }

    fn err(text: &str) -> ProtocolError {
        match decode(text, MAX) {
            Ok(m) => panic!("{text} decoded as {m:?}"),
            Err(e) => e,
        }
    }

    /// An error of `code` whose message mentions every one of `words`.
    #[track_caller]
    fn assert_error(text: &str, code: ErrorCode, words: &[&str]) -> ProtocolError {
        let e = err(text);
        assert_eq!(e.code, code, "{text} → {e}");
        for word in words {
            assert!(e.message.contains(word), "{text} → {e}: no {word:?}");
        }
        e
    }

    /// The JSON examples of the specification: each value of its fenced
    /// `json` blocks (which must all be JSON), and inline code that parses
    /// as an object with a `type`. Original text, in document order.
    fn spec_examples() -> Vec<String> {
        use pulldown_cmark::{CodeBlockKind, Event as Md, Parser, Tag, TagEnd};
        let mut examples = Vec::new();
        let mut block: Option<String> = None;
        for event in Parser::new(SPEC) {
            match event {
                Md::Start(Tag::CodeBlock(CodeBlockKind::Fenced(lang))) if &*lang == "json" => {
                    block = Some(String::new());
                }
                Md::Text(text) => {
                    if let Some(b) = &mut block {
                        b.push_str(&text);
                    }
                }
                Md::End(TagEnd::CodeBlock) => {
                    let Some(b) = block.take() else { continue };
                    let mut stream = serde_json::Deserializer::from_str(&b).into_iter::<Value>();
                    let mut start = 0;
                    while let Some(value) = stream.next() {
                        if let Err(e) = value {
                            panic!("a json block of docs/protocol.md is not JSON: {e}\n{b}");
                        }
                        let end = stream.byte_offset();
                        examples.push(b[start..end].trim().to_owned());
                        start = end;
                    }
                }
                Md::Code(code) if code.starts_with('{') => {
                    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&code)
                        && m.contains_key("type")
                    {
                        examples.push(code.to_string());
                    }
                }
                _ => {}
            }
        }
        examples
    }

    fn type_of(text: &str) -> String {
        let value: Value = serde_json::from_str(text).unwrap();
        value["type"].as_str().unwrap().to_owned()
    }

    fn client_examples() -> Vec<String> {
        spec_examples()
            .into_iter()
            .filter(|t| decode(t, MAX).is_ok())
            .collect()
    }

    #[test]
    fn every_example_of_the_spec_decodes() {
        let mut client = BTreeSet::new();
        let mut server = BTreeSet::new();
        for text in spec_examples() {
            let kind = type_of(&text);
            let as_client = CLIENT_TYPES
                .contains(&kind.as_str())
                .then(|| decode(&text, MAX));
            let as_server = SERVER_TYPES
                .contains(&kind.as_str())
                .then(|| serde_json::from_str::<ServerMessage>(&text));
            match (as_client, as_server) {
                (Some(Ok(msg)), None | Some(Err(_))) => {
                    let derived: ClientMessage = serde_json::from_str(&text).unwrap();
                    assert_eq!(derived, msg, "serde's derive agrees with decode");
                    let value: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(serde_json::to_value(msg.id()).unwrap(), value["id"]);
                    assert_eq!(msg.type_name(), kind);
                    client.insert(kind);
                }
                (None | Some(Err(_)), Some(Ok(msg))) => {
                    let original: Value = serde_json::from_str(&text).unwrap();
                    let encoded: Value = serde_json::from_str(&encode(&msg)).unwrap();
                    assert_eq!(encoded, original, "encode gives the example back");
                    assert_eq!(msg.type_name(), kind);
                    server.insert(kind);
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert_eq!(client, CLIENT_TYPES.iter().map(|t| t.to_string()).collect());
        assert_eq!(server, SERVER_TYPES.iter().map(|t| t.to_string()).collect());
    }

    #[test]
    fn error_codes_are_those_of_the_spec() {
        let section = SPEC
            .split("\n## Errors")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .unwrap();
        let in_spec: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let ours: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(in_spec, ours);
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        }
    }

    #[test]
    fn client_types_are_serdes_names() {
        for text in client_examples() {
            let msg = ok(&text);
            let encoded: Value = serde_json::to_value(&msg).unwrap();
            assert_eq!(encoded["type"], msg.type_name());
            assert!(CLIENT_TYPES.contains(&msg.type_name()));
        }
    }

    #[test]
    fn bad_json_says_where() {
        let e = assert_error(
            r#"{"type": "say" "id": 1}"#,
            ErrorCode::BadJson,
            &["line 1", "column 16"],
        );
        assert_eq!(e.id, None);
        assert_error("", ErrorCode::BadJson, &["EOF", "line 1"]);
        assert_error("{", ErrorCode::BadJson, &["line 1"]);
        assert_error(
            r#"{"type": "pause", "id": 1,}"#,
            ErrorCode::BadJson,
            &["line 1", "column 27"],
        );
        assert_error(
            "[1, 2]",
            ErrorCode::BadJson,
            &["expected a JSON object", "an array", "line 1 column 1"],
        );
        assert_error(
            "\n  \"pause\"",
            ErrorCode::BadJson,
            &["the string \"pause\"", "line 2 column 3"],
        );
        assert_error("null", ErrorCode::BadJson, &["found null"]);
        assert_error("{} {}", ErrorCode::BadJson, &["trailing characters"]);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_error(&deep, ErrorCode::BadJson, &["recursion limit"]);
        assert_error(
            r#"{"type": "set_time_scale", "id": 1, "scale": 1e999}"#,
            ErrorCode::BadJson,
            &["out of range"],
        );
    }

    #[test]
    fn broken_frames_keep_their_id() {
        let e = err(r#"{"id": "r-1", "type": "say", "text": "unterminated"#);
        assert_eq!((e.code, e.id), (ErrorCode::BadJson, RequestId::text("r-1")));
        let e = err(r#"{"type": "say", "id": 12, "text": "hi",}"#);
        assert_eq!(e.id, Some(RequestId::Number(12)));
        let e = err(r#"{"id": [1, {"a": 2}], "type": "say", "id": 3, "#);
        assert_eq!(e.id, Some(RequestId::Number(3)), "the last id read");
        let e = err(r#"{"id": 3, "type": "say", "id": -3, "#);
        assert_eq!(e.id, None, "the last id counts, even invalid");
        let e = err(r#"{"type": "say", "text": "no id", "oops"#);
        assert_eq!(e.id, None);
    }

    #[test]
    fn too_large_before_parsing() {
        let text = format!(
            r#"{{"type": "say", "id": 7, "text": "{}"}}"#,
            "a".repeat(100)
        );
        let e = decode(&text, 64).unwrap_err();
        assert_eq!(e.code, ErrorCode::TooLarge);
        assert_eq!(e.id, Some(RequestId::Number(7)), "the id is still read");
        assert!(e.message.contains("64"), "{e}");
        assert!(decode(&text, text.len()).is_ok(), "the limit is inclusive");
        let e = decode(&"é".repeat(2000), 100).unwrap_err();
        assert_eq!((e.code, e.id), (ErrorCode::TooLarge, None));
    }

    #[test]
    fn unknown_types_suggest_the_closest() {
        let e = assert_error(
            r#"{"type": "sya", "id": 1}"#,
            ErrorCode::UnknownType,
            &["\"sya\"", "did you mean `say`?"],
        );
        assert_eq!(e.id, Some(RequestId::Number(1)));
        assert_error(
            r#"{"type": "moveTo", "id": 1}"#,
            ErrorCode::UnknownType,
            &["`move_to`"],
        );
        assert_error(
            r#"{"type": "SetTimeScale", "id": 1}"#,
            ErrorCode::UnknownType,
            &["`set_time_scale`"],
        );
        assert_error(
            r#"{"type": "subscirbe", "id": 1}"#,
            ErrorCode::UnknownType,
            &["`subscribe`"],
        );
        assert_error(
            r#"{"type": "welcome", "id": 1}"#,
            ErrorCode::UnknownType,
            &["the server sends it"],
        );
        assert_error(
            r#"{"type": "dance", "id": 1}"#,
            ErrorCode::UnknownType,
            &["the types are", "`hello`", "`reload_content`"],
        );
        let long = format!(r#"{{"type": "{}", "id": 1}}"#, "x".repeat(5000));
        let e = assert_error(&long, ErrorCode::UnknownType, &["…"]);
        assert!(
            e.message.len() < 1000,
            "long input is not echoed: {}",
            e.message.len()
        );
    }

    #[test]
    fn the_type_field_must_be_a_string() {
        let e = assert_error(
            r#"{"id": "x", "text": "hi"}"#,
            ErrorCode::BadRequest,
            &["missing field `type`"],
        );
        assert_eq!(e.id, RequestId::text("x"));
        assert_error(
            r#"{"type": 5, "id": 1}"#,
            ErrorCode::BadRequest,
            &["field `type`", "the number 5"],
        );
    }

    #[test]
    fn bad_requests_name_the_field() {
        let e = assert_error(
            r#"{"type": "say", "id": 5}"#,
            ErrorCode::BadRequest,
            &["say:", "missing field `text`"],
        );
        assert_eq!(e.id, Some(RequestId::Number(5)));
        assert_error(
            r#"{"type": "say", "text": "hi"}"#,
            ErrorCode::BadRequest,
            &["missing field `id`"],
        );
        assert_error(
            r#"{"type": "say", "id": 5, "txt": "hi"}"#,
            ErrorCode::BadRequest,
            &["unknown field \"txt\"", "did you mean `text`?"],
        );
        assert_error(
            r#"{"type": "pause", "id": 5, "now": true}"#,
            ErrorCode::BadRequest,
            &["unknown field \"now\"", "the fields are `id`"],
        );
        assert_error(
            r#"{"type": "say", "id": 5, "text": 42}"#,
            ErrorCode::BadRequest,
            &["field `text`", "expected a string", "the number 42"],
        );
        assert_error(
            r#"{"type": "say", "id": 5, "text": "hi", "to": "mei"}"#,
            ErrorCode::BadRequest,
            &["field `to`", "entity id", "\"mei\""],
        );
        assert_error(
            r#"{"type": "agent_detail", "id": 5, "agent": "c:ada"}"#,
            ErrorCode::BadRequest,
            &["field `agent`", "an agent id"],
        );
        assert_error(
            r#"{"type": "subscribe", "id": 2, "area": {"x": 0, "y": 0, "w": "40", "h": 30}}"#,
            ErrorCode::BadRequest,
            &["field `area.w`", "expected a number", "\"40\""],
        );
        assert_error(
            r#"{"type": "subscribe", "id": 2, "area": [0, 0, 40, 30]}"#,
            ErrorCode::BadRequest,
            &["field `area`", "expected an object", "an array"],
        );
        assert_error(
            r#"{"type": "subscribe", "id": 2, "area": {"x": 0, "y": 0, "w": 4}}"#,
            ErrorCode::BadRequest,
            &["field `area`", "misses `h`"],
        );
        assert_error(
            r#"{"type": "subscribe", "id": 2, "area": {"x": 0, "y": 0, "w": 4, "h": 4, "r": 3}}"#,
            ErrorCode::BadRequest,
            &["field `area`", "not both"],
        );
        assert_error(
            r#"{"type": "subscribe", "id": 2, "area": {"x": 0, "y": 0, "w": 4, "h": 4, "d": 3}}"#,
            ErrorCode::BadRequest,
            &["field `area`", "unknown field \"d\""],
        );
        assert_error(
            r#"{"type": "subscribe", "id": 2, "area": {}}"#,
            ErrorCode::BadRequest,
            &["field `area`", "needs"],
        );
        assert_error(
            r#"{"type": "move_to", "id": 4, "x": 1, "y": 2, "location": "Market"}"#,
            ErrorCode::BadRequest,
            &["not both"],
        );
        assert_error(
            r#"{"type": "move_to", "id": 4}"#,
            ErrorCode::BadRequest,
            &["missing field `x` and `y`, or `location`"],
        );
        assert_error(
            r#"{"type": "move_to", "id": 4, "x": 1}"#,
            ErrorCode::BadRequest,
            &["missing field `y`"],
        );
        assert_error(
            r#"{"type": "move_to", "id": 4, "x": 1, "y": null}"#,
            ErrorCode::BadRequest,
            &["missing field `y`"],
        );
        assert_error(
            r#"{"type": "set_time_scale", "id": 1, "scale": 2.5}"#,
            ErrorCode::BadRequest,
            &["field `scale`", "an integer", "2.5"],
        );
        assert_error(
            r#"{"type": "set_time_scale", "id": 1, "scale": -1}"#,
            ErrorCode::BadRequest,
            &["field `scale`", "-1"],
        );
        assert_error(
            r#"{"type": "say", "id": 1, "text": "a", "text": "b"}"#,
            ErrorCode::BadRequest,
            &["duplicate field \"text\"", "line 1"],
        );
        let e = err(r#"{"type": "say", "id": 1, "text": "a", "text": "b"}"#);
        assert_eq!(e.id, Some(RequestId::Number(1)));
        assert_error(
            r#"{"type": "hello", "id": 1, "world": "valley", "token": 7}"#,
            ErrorCode::BadRequest,
            &["field `token`", "expected a string"],
        );
    }

    #[test]
    fn invalid_ids_are_bad_requests_without_id() {
        let long = format!(r#"{{"type": "pause", "id": "{}"}}"#, "x".repeat(65));
        for text in [
            r#"{"type": "pause", "id": -1}"#,
            r#"{"type": "pause", "id": 1.5}"#,
            r#"{"type": "pause", "id": ""}"#,
            r#"{"type": "pause", "id": null}"#,
            r#"{"type": "pause", "id": {"n": 1}}"#,
            r#"{"type": "pause", "id": 18446744073709551616}"#,
            &long,
        ] {
            let e = assert_error(text, ErrorCode::BadRequest, &["field `id`", "request id"]);
            assert_eq!(e.id, None, "{text}");
        }
        let at_limit = format!(r#"{{"type": "pause", "id": "{}"}}"#, "é".repeat(64));
        assert_eq!(ok(&at_limit).id(), &RequestId::Text("é".repeat(64)));
    }

    #[test]
    fn ranges_are_checked_after_parsing() {
        let cases: &[(&str, &[&str])] = &[
            (
                r#"{"type": "say", "id": 1, "text": "   "}"#,
                &["field `text`", "1 to 500", "found 0"],
            ),
            (
                r#"{"type": "agent_memories", "id": 1, "agent": "a:mei", "query": "Bo", "k": 0}"#,
                &["field `k`", "from 1 to 50", "found 0"],
            ),
            (
                r#"{"type": "agent_memories", "id": 1, "agent": "a:mei", "query": "Bo", "k": 51}"#,
                &["field `k`", "found 51"],
            ),
            (
                r#"{"type": "set_time_scale", "id": 1, "scale": 0}"#,
                &["field `scale`", "from 1 to 60"],
            ),
            (
                r#"{"type": "set_time_scale", "id": 1, "scale": 61}"#,
                &["field `scale`", "found 61"],
            ),
            (
                r#"{"type": "set_time_scale", "id": 1, "scale": 5000000000}"#,
                &["field `scale`"],
            ),
            (
                r#"{"type": "subscribe", "id": 1, "area": {"x": 0, "y": 0, "w": -1, "h": 3}}"#,
                &["field `area.w`", "from 0 to 4096", "found -1"],
            ),
            (
                r#"{"type": "subscribe", "id": 1, "area": {"x": 0, "y": 0, "w": 5000, "h": 3}}"#,
                &["field `area.w`"],
            ),
            (
                r#"{"type": "subscribe", "id": 1, "area": {"cx": 0, "cy": 0, "r": 3000}}"#,
                &["field `area.r`", "from 0 to 2048"],
            ),
            (
                r#"{"type": "subscribe", "id": 1, "area": {"cx": 1e39, "cy": 0, "r": 3}}"#,
                &["field `area.cx`", "inf"],
            ),
            (
                r#"{"type": "move_to", "id": 1, "x": -1, "y": 2}"#,
                &["field `x`", "from 0 to 65536"],
            ),
            (
                r#"{"type": "move_to", "id": 1, "location": " "}"#,
                &["field `location`", "blank"],
            ),
            (
                r#"{"type": "interact", "id": 1, "object": ""}"#,
                &["field `object`", "blank"],
            ),
            (
                r#"{"type": "hello", "id": 1, "world": ""}"#,
                &["field `world`"],
            ),
            (
                r#"{"type": "hello", "id": 1, "world": "valley", "token": ""}"#,
                &["field `token`", "1 to 4096 bytes"],
            ),
        ];
        for (text, words) in cases {
            let e = assert_error(text, ErrorCode::BadRequest, words);
            assert_eq!(e.id, Some(RequestId::Number(1)), "{text}");
        }
        let long_say = json!({"type": "say", "id": 1, "text": "é".repeat(501)}).to_string();
        assert_error(&long_say, ErrorCode::BadRequest, &["found 501"]);
        let long_query =
            json!({"type": "agent_prompt", "id": 1, "agent": "a:mei", "query": "q".repeat(501)})
                .to_string();
        assert_error(
            &long_query,
            ErrorCode::BadRequest,
            &["field `query`", "0 to 500"],
        );
        let ok_say =
            json!({"type": "say", "id": 1, "text": format!("  {}\n", "é".repeat(500))}).to_string();
        let ClientMessage::Say(say) = ok(&ok_say) else {
            panic!()
        };
        assert_eq!(say.text, "é".repeat(500), "trimmed");
    }

    #[test]
    fn messages_decode_to_their_fields() {
        assert_eq!(
            ok(r#"{"type": "move_to", "id": "m", "x": 20, "y": 11.5}"#),
            ClientMessage::MoveTo(MoveTo {
                id: RequestId::Text("m".into()),
                target: Destination::Tile { x: 20.0, y: 11.5 },
            })
        );
        assert_eq!(
            ok(r#"{"type": "say", "id": 5, "text": "  Hello Mei! ", "to": "a:mei"}"#),
            ClientMessage::Say(Say {
                id: RequestId::Number(5),
                text: "Hello Mei!".into(),
                to: Some(EntityRef::Agent("mei".into())),
            })
        );
        assert_eq!(
            ok(r#"{"type": "start_conversation", "id": 6, "with": "c:Ada.B-1"}"#),
            ClientMessage::StartConversation(StartConversation {
                id: RequestId::Number(6),
                with: EntityRef::Character("Ada.B-1".into()),
            })
        );
        let ClientMessage::AgentMemories(q) =
            ok(r#"{"type": "agent_memories", "id": 1, "agent": "a:mei", "query": ""}"#)
        else {
            panic!()
        };
        assert_eq!(
            (q.k, q.query.as_str(), q.agent.slug()),
            (DEFAULT_MEMORIES_K, "", "mei")
        );
        let ClientMessage::Subscribe(s) = ok(r#"{"type": "subscribe", "id": 2, "area": null}"#)
        else {
            panic!()
        };
        assert_eq!(s.area, None);
        let ClientMessage::Hello(h) =
            ok(r#"{"type": "hello", "id": 0, "world": "valley", "token": null}"#)
        else {
            panic!()
        };
        assert_eq!((h.id, h.token), (RequestId::Number(0), None));
    }

    #[test]
    fn ids_are_echoed_exactly() {
        for id in [
            json!(0),
            json!(u64::MAX),
            json!("r-1"),
            json!("0"),
            json!(" spaced "),
        ] {
            let text = json!({"type": "pause", "id": id}).to_string();
            let msg = ok(&text);
            let answer = encode(&ServerMessage::Ok {
                id: msg.id().clone(),
            });
            let answer: Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(answer, json!({"type": "ok", "id": id}));
            let bad = json!({"type": "pause", "id": id, "extra": 1}).to_string();
            let error: ServerMessage = err(&bad).into();
            let error: Value = serde_json::from_str(&encode(&error)).unwrap();
            assert_eq!(error["id"], id);
            assert_eq!(error["code"], "bad_request");
        }
        let error = encode(&ProtocolError::new(ErrorCode::BadJson, "x").into());
        assert_eq!(error, r#"{"type":"error","code":"bad_json","message":"x"}"#);
    }

    #[test]
    fn entity_refs_parse_and_print() {
        for (text, parsed) in [
            ("a:mei", Some(EntityRef::Agent("mei".into()))),
            ("a:0-bo_2", Some(EntityRef::Agent("0-bo_2".into()))),
            ("c:Ada", Some(EntityRef::Character("Ada".into()))),
            ("a:Mei", None),
            ("a:-mei", None),
            ("a:", None),
            ("c:", None),
            ("c:a b", None),
            ("x:mei", None),
            ("mei", None),
        ] {
            assert_eq!(text.parse::<EntityRef>().ok(), parsed, "{text}");
            if let Some(p) = parsed {
                assert_eq!(p.to_string(), text);
            }
        }
        assert!(format!("a:{}", "m".repeat(63)).parse::<EntityRef>().is_ok());
        assert!(
            format!("a:{}", "m".repeat(64))
                .parse::<EntityRef>()
                .is_err()
        );
        assert_eq!("a:mei".parse::<AgentRef>().unwrap().slug(), "mei");
        assert!("c:ada".parse::<AgentRef>().is_err());
    }

    #[test]
    fn deltas_carry_what_changed_and_nulls() {
        let before = Entity {
            id: EntityRef::Character("ada".into()),
            name: "Ada".into(),
            x: 14.0,
            y: 8.0,
            facing: Facing::W,
            activity: None,
            location: Some("Bakery".into()),
            mood: None,
            speech: Some("Good morning!".into()),
        };
        assert_eq!(before.changes_since(&before), None);
        let mut after = before.clone();
        after.x = 14.5;
        after.speech = None;
        let change = after.changes_since(&before).unwrap();
        assert_eq!(
            serde_json::to_value(&change).unwrap(),
            json!({"id": "c:ada", "x": 14.5, "speech": null})
        );
        let back: EntityState =
            serde_json::from_value(json!({"id": "c:ada", "x": 14.5, "speech": null})).unwrap();
        assert_eq!(back, change);
        let full = serde_json::to_value(EntityState::from(before)).unwrap();
        assert_eq!(
            full,
            json!({"id": "c:ada", "kind": "character", "name": "Ada", "x": 14.0, "y": 8.0,
                   "facing": "w", "activity": null, "location": "Bakery", "mood": null,
                   "speech": "Good morning!"})
        );
    }

    #[test]
    fn areas_contain_and_tell_far_from_near() {
        let rect = Area::Rect {
            x: 0.0,
            y: 0.0,
            w: 40.0,
            h: 30.0,
        };
        assert_eq!((rect.centre(), rect.radius()), ((20.0, 15.0), 25.0));
        assert!(rect.contains(40.0, 30.0) && !rect.contains(40.1, 0.0));
        assert!(!rect.is_far(20.0, 20.0) && rect.is_far(35.0, 15.0));
        let circle = Area::Circle {
            cx: 20.0,
            cy: 15.0,
            r: 12.0,
        };
        assert!(circle.contains(20.0, 27.0) && !circle.contains(30.0, 25.0));
        assert!(!circle.is_far(25.0, 15.0) && circle.is_far(27.0, 15.0));
    }

    #[test]
    fn suggestions_are_close_or_nothing() {
        assert_eq!(closest("sya", &CLIENT_TYPES), Some("say"));
        assert_eq!(
            closest("agent_memory", &CLIENT_TYPES),
            Some("agent_memories")
        );
        assert_eq!(closest("reload", &CLIENT_TYPES), None);
        assert_eq!(closest("zzz", &CLIENT_TYPES), None);
        assert_eq!(closest("", &CLIENT_TYPES), None);
        assert_eq!(snake_case("startConversation"), "start_conversation");
        assert_eq!(snake_case("MOVE-TO"), "move_to");
    }

    // -- Property tests ---------------------------------------------------

    /// Every field name of the client messages, and a few of the server's.
    const KEYS: &[&str] = &[
        "type", "id", "world", "token", "area", "x", "y", "w", "h", "cx", "cy", "r", "location",
        "text", "to", "with", "object", "agent", "query", "k", "scale", "tick",
    ];

    /// Strings worth trying as values.
    const WORDS: &[&str] = &[
        "hello",
        "say",
        "move_to",
        "subscribe",
        "agent_memories",
        "welcome",
        "sya",
        "a:mei",
        "c:ada",
        "a:",
        "c:a b",
        "Bakery",
        "",
        " ",
        "\u{0}",
        "é",
        "1",
        "-1",
    ];

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            // Failures print their minimal input; nothing is written next
            // to the source.
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    fn arb_key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(KEYS).prop_map(str::to_owned),
            1 => "[a-zA-Z_]{0,8}",
        ]
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-100i64..100).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "\\PC{0,12}".prop_map(Value::String),
            prop::sample::select(WORDS).prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((arb_key(), inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// An object with a `type` (known or not), maybe an `id`, and fields.
    fn arb_message_like() -> impl Strategy<Value = Value> {
        let kind = prop_oneof![
            prop::sample::select(&CLIENT_TYPES[..]).prop_map(Value::from),
            prop::sample::select(&SERVER_TYPES[..]).prop_map(Value::from),
            arb_json(),
        ];
        let id = prop_oneof![
            any::<u32>().prop_map(Value::from),
            "\\PC{0,70}".prop_map(Value::String),
            arb_json()
        ];
        (
            kind,
            prop::option::of(id),
            prop::collection::vec((arb_key(), arb_json()), 0..5),
        )
            .prop_map(|(kind, id, fields)| {
                let mut m = serde_json::Map::new();
                m.insert("type".into(), kind);
                if let Some(id) = id {
                    m.insert("id".into(), id);
                }
                m.extend(fields);
                Value::Object(m)
            })
    }

    fn arb_id() -> impl Strategy<Value = RequestId> {
        prop_oneof![
            any::<u64>().prop_map(RequestId::Number),
            "\\PC{1,64}".prop_map(RequestId::Text),
        ]
    }

    fn arb_entity() -> impl Strategy<Value = EntityRef> {
        prop_oneof![
            "[a-z0-9][a-z0-9_-]{0,20}".prop_map(EntityRef::Agent),
            "[A-Za-z0-9_.-]{1,20}".prop_map(EntityRef::Character),
        ]
    }

    fn arb_agent() -> impl Strategy<Value = AgentRef> {
        "[a-z0-9][a-z0-9_-]{0,20}".prop_map(|s| AgentRef::new(&s).unwrap())
    }

    /// Quarter tiles in `min..=max`: exact in f32 and in JSON.
    fn tiles(min: i32, max: i32) -> impl Strategy<Value = f32> {
        (min * 4..=max * 4).prop_map(|q| q as f32 / 4.0)
    }

    fn arb_name() -> impl Strategy<Value = String> {
        "[A-Za-z][A-Za-z0-9 '-]{0,30}"
    }

    /// Trimmed text of 1.. characters.
    fn arb_text() -> impl Strategy<Value = String> {
        "\\PC{1,60}"
            .prop_map(|s| s.trim().to_owned())
            .prop_filter("not blank", |s| !s.is_empty())
    }

    fn arb_client_message() -> impl Strategy<Value = ClientMessage> {
        let area = prop_oneof![
            (
                tiles(-500, 500),
                tiles(-500, 500),
                tiles(0, 4096),
                tiles(0, 4096)
            )
                .prop_map(|(x, y, w, h)| Area::Rect { x, y, w, h }),
            (tiles(-500, 500), tiles(-500, 500), tiles(0, 2048))
                .prop_map(|(cx, cy, r)| Area::Circle { cx, cy, r }),
        ];
        let target = prop_oneof![
            (tiles(0, 1000), tiles(0, 1000)).prop_map(|(x, y)| Destination::Tile { x, y }),
            arb_name().prop_map(Destination::Location),
        ];
        let request = || arb_id().prop_map(|id| Request { id });
        use ClientMessage as M;
        prop_oneof![
            (
                arb_id(),
                arb_name(),
                prop::option::of("[A-Za-z0-9._-]{1,80}")
            )
                .prop_map(|(id, world, token)| M::Hello(Hello { id, world, token })),
            (arb_id(), prop::option::of(area))
                .prop_map(|(id, area)| M::Subscribe(Subscribe { id, area })),
            request().prop_map(M::Unsubscribe),
            (arb_id(), target).prop_map(|(id, target)| M::MoveTo(MoveTo { id, target })),
            (arb_id(), arb_text(), prop::option::of(arb_entity()))
                .prop_map(|(id, text, to)| M::Say(Say { id, text, to })),
            (arb_id(), arb_entity())
                .prop_map(|(id, with)| M::StartConversation(StartConversation { id, with })),
            request().prop_map(M::EndConversation),
            (arb_id(), arb_name()).prop_map(|(id, object)| M::Interact(Interact { id, object })),
            (arb_id(), arb_agent())
                .prop_map(|(id, agent)| M::AgentDetail(AgentQuery { id, agent })),
            (arb_id(), arb_agent(), "\\PC{0,40}", 1..=MAX_MEMORIES_K).prop_map(
                |(id, agent, query, k)| M::AgentMemories(MemoriesQuery {
                    id,
                    agent,
                    query,
                    k
                })
            ),
            (arb_id(), arb_agent(), "\\PC{0,40}")
                .prop_map(|(id, agent, query)| M::AgentPrompt(PromptQuery { id, agent, query })),
            request().prop_map(M::Pause),
            request().prop_map(M::Resume),
            (arb_id(), TIME_SCALES)
                .prop_map(|(id, scale)| M::SetTimeScale(SetTimeScale { id, scale })),
            request().prop_map(M::ReloadContent),
        ]
    }

    /// A change to a frame's text.
    #[derive(Debug, Clone)]
    enum Mutation {
        Truncate(Index),
        Delete(Index, Index),
        Insert(Index, char),
        Replace(Index, char),
        Duplicate(Index, Index),
    }

    fn arb_char() -> impl Strategy<Value = char> {
        prop_oneof![
            3 => prop::sample::select(vec!['{', '}', '[', ']', '"', ':', ',', '\\', '0', '9', '-', '.', 'e', 'E', ' ', 'n', 't', 'u', '\u{0}', 'é']),
            1 => any::<char>(),
        ]
    }

    fn arb_mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            any::<Index>().prop_map(Mutation::Truncate),
            (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Delete(a, b)),
            (any::<Index>(), arb_char()).prop_map(|(a, c)| Mutation::Insert(a, c)),
            (any::<Index>(), arb_char()).prop_map(|(a, c)| Mutation::Replace(a, c)),
            (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
        ]
    }

    fn mutate(text: &str, mutation: &Mutation) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        let len = chars.len();
        let at = |i: &Index, n: usize| if n == 0 { 0 } else { i.index(n) };
        match mutation {
            Mutation::Truncate(i) => chars.truncate(at(i, len + 1)),
            Mutation::Delete(a, b) => {
                let start = at(a, len + 1);
                let end = (start + at(b, 8)).min(len);
                chars.drain(start..end);
            }
            Mutation::Insert(i, c) => chars.insert(at(i, len + 1), *c),
            Mutation::Replace(i, c) => {
                if len > 0 {
                    chars[i.index(len)] = *c;
                }
            }
            Mutation::Duplicate(a, b) => {
                let start = at(a, len + 1);
                let end = (start + at(b, 16)).min(len);
                let copy: Vec<char> = chars[start..end].to_vec();
                chars.splice(end..end, copy);
            }
        }
        chars.into_iter().collect()
    }

    /// A change to a frame's fields.
    #[derive(Debug, Clone)]
    enum Edit {
        Remove(Index),
        Set(String, Value),
    }

    fn arb_edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            any::<Index>().prop_map(Edit::Remove),
            (arb_key(), arb_json()).prop_map(|(k, v)| Edit::Set(k, v)),
        ]
    }

    fn edit(value: &mut Value, edit: &Edit) {
        let Value::Object(members) = value else {
            return;
        };
        match edit {
            Edit::Remove(i) => {
                if let Some(key) = (!members.is_empty())
                    .then(|| members.keys().nth(i.index(members.len())).cloned())
                    .flatten()
                {
                    members.remove(&key);
                }
            }
            Edit::Set(key, v) => {
                members.insert(key.clone(), v.clone());
            }
        }
    }

    /// Valid messages (the spec's and generated ones), edited and mutated.
    fn arb_mutated() -> impl Strategy<Value = String> {
        let examples: Vec<Value> = client_examples()
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect();
        let base = prop_oneof![
            prop::sample::select(examples),
            arb_client_message().prop_map(|m| serde_json::to_value(m).unwrap()),
        ];
        (
            base,
            prop::collection::vec(arb_edit(), 0..3),
            prop::collection::vec(arb_mutation(), 0..3),
        )
            .prop_map(|(mut value, edits, mutations)| {
                for e in &edits {
                    edit(&mut value, e);
                }
                mutations
                    .iter()
                    .fold(value.to_string(), |text, m| mutate(&text, m))
            })
    }

    fn arb_frame() -> impl Strategy<Value = String> {
        prop_oneof![
            1 => any::<String>(),
            1 => "[{}\\[\\]\":,0-9a-z_ .\\\\-]{0,80}",
            2 => arb_json().prop_map(|v| v.to_string()),
            2 => arb_message_like().prop_map(|v| v.to_string()),
            4 => arb_mutated(),
            1 => arb_client_message().prop_map(|m| serde_json::to_string(&m).unwrap()),
        ]
    }

    /// The request id `serde_json` sees in a frame, if valid.
    fn id_in(text: &str) -> Option<RequestId> {
        let Ok(Value::Object(members)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        match members.get("id")? {
            Value::Number(n) => n.as_u64().map(RequestId::Number),
            Value::String(s) => RequestId::text(s),
            _ => None,
        }
    }

    /// What `decode` promises for any frame.
    fn check_frame(text: &str) -> Result<(), TestCaseError> {
        let id = id_in(text);
        match decode(text, MAX) {
            Ok(msg) => {
                prop_assert_eq!(Some(msg.id()), id.as_ref());
                let again = serde_json::to_string(&msg).unwrap();
                prop_assert_eq!(
                    decode(&again, MAX),
                    Ok(msg.clone()),
                    "re-encoded: {}",
                    again
                );
                let derived: ClientMessage = serde_json::from_str(&again).unwrap();
                prop_assert_eq!(derived, msg);
            }
            Err(e) => {
                prop_assert!(
                    matches!(
                        e.code,
                        ErrorCode::BadJson | ErrorCode::BadRequest | ErrorCode::UnknownType
                    ),
                    "{e}"
                );
                prop_assert!(!e.message.is_empty());
                prop_assert!(
                    e.message.chars().count() <= 700,
                    "long message: {}",
                    e.message
                );
                if serde_json::from_str::<Value>(text).is_ok() {
                    prop_assert_eq!(&e.id, &id, "{}", e);
                }
                let frame = encode(&e.clone().into());
                prop_assert_eq!(
                    serde_json::from_str::<ServerMessage>(&frame).unwrap(),
                    ServerMessage::Error(e)
                );
            }
        }
        Ok(())
    }

    /// The fuzzer is not vacuous: its frames reach every outcome of `decode`.
    #[test]
    fn frames_reach_every_outcome() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let strategy = arb_frame();
        let mut outcomes = std::collections::BTreeMap::new();
        for _ in 0..2000 {
            let frame = strategy.new_tree(&mut runner).unwrap().current();
            let outcome = match decode(&frame, MAX) {
                Ok(msg) => msg.type_name(),
                Err(e) => e.code.as_str(),
            };
            *outcomes.entry(outcome).or_insert(0) += 1;
        }
        for outcome in CLIENT_TYPES
            .iter()
            .chain(&["bad_json", "bad_request", "unknown_type"])
        {
            assert!(
                outcomes.contains_key(outcome),
                "{outcome} never reached: {outcomes:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(config(300))]

        #[test]
        fn decode_never_panics(frame in arb_frame()) {
            check_frame(&frame)?;
        }

        #[test]
        fn valid_messages_round_trip(msg in arb_client_message()) {
            let text = serde_json::to_string(&msg).unwrap();
            prop_assert_eq!(decode(&text, MAX), Ok(msg));
        }
    }

    proptest! {
        #![proptest_config(config(1_000_000))]

        /// The long run (see the module docs for the command).
        #[test]
        #[ignore = "one million cases: run in release, on demand"]
        fn fuzz_decoder_one_million(frame in arb_frame()) {
            check_frame(&frame)?;
        }
    }
}
