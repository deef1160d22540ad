//! What the server sends: welcome, snapshots, deltas, events and answers;
//! plain data the hub fills. Pure data; touches nothing.

use chrono::NaiveDateTime;
use serde::de::Deserializer;
use serde::{Deserialize, Serialize};

use crate::*;

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
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
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
