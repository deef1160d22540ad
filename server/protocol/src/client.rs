//! What clients send: one body struct per `type`, each checked for ranges
//! serde cannot express. Pure data; touches nothing.

use serde::{Deserialize, Serialize};

use crate::*;

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
        pub(crate) fn decode_body(kind: &str, body: Json) -> Option<Result<ClientMessage, FieldError>> {
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
    pub(crate) fn checked(mut self) -> Result<Self, String> {
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

pub(crate) fn check_chars(field: &str, value: &str, min: usize, max: usize) -> Result<(), String> {
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
pub(crate) fn check_name(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("field `{field}` must not be blank"));
    }
    check_chars(field, value, 1, MAX_NAME_CHARS)
}

pub(crate) fn check_number(field: &str, value: f32, min: f32, max: f32) -> Result<(), String> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "field `{field}` must be a number from {min} to {max}, found {value}"
        ))
    }
}

pub(crate) fn check_integer(field: &str, value: u32, min: u32, max: u32) -> Result<(), String> {
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
pub(crate) struct RawMoveTo {
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

pub(crate) fn default_k() -> u32 {
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
pub(crate) struct RawArea {
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
