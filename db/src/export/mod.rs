//! A whole world in and out of the database, for `hearth export` and `hearth
//! import`: read in one consistent snapshot, section by section (one per
//! table) in a deterministic order and page by page; written back from such
//! sections in one transaction. Records refer to each other by natural key
//! (agent slug, character name, group name, username, lore path) and never by
//! database id; memory, conversation and plan ids are the world's own keys and
//! are kept. Touches every world-scoped table, and `users` (reads the world's
//! players; an import creates those missing, locked).
//!
//! # Export
//! [`Snapshot::begin`] opens a `REPEATABLE READ READ ONLY` transaction, so a
//! world that a server is writing meanwhile is read as of one moment.
//! [`Snapshot::open`] binds a portal for a section and
//! [`Snapshot::next_page`] fetches [`PAGE_ROWS`] rows at a time: memory
//! holds one page, whatever the size of the world. Memories are read agent by
//! agent through their primary key, so no sort of the whole table is needed.
//!
//! # Import
//! [`Importer::begin`] refuses a slug that exists, creates the world and
//! keeps the transaction open; [`Importer::write`] takes pages in
//! [`Section::ALL`] order (what a row refers to must come first) and loads
//! each by binary COPY; [`Importer::commit`] makes it all visible at once.
//! Dropping the importer instead rolls everything back.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use crate::DbError;

mod read;
mod write;

pub use read::*;
pub use write::*;

/// A time on the world's own clock (`timestamp` columns; see [`crate::game_time`]).
pub type GameTime = NaiveDateTime;
/// A wall-clock time (`timestamptz` columns).
pub type WallTime = DateTime<Utc>;

/// Rows fetched per round trip when exporting.
pub const PAGE_ROWS: i32 = 1000;

/// What an account created by an import gets for a password hash: a PHC-like
/// string no password verifies against (the schema wants a leading `$`).
/// Export files carry no password hashes.
pub const LOCKED_PASSWORD_HASH: &str = "$hearth-import$locked";

/// Plan parents set per statement at the end of an import.
const PARENT_BATCH: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("no world '{0}' in the database")]
    NoWorld(String),
    #[error("a world '{0}' already exists in the database")]
    WorldExists(String),
    /// A record names something the document does not hold.
    #[error("{section}: {context} names {what} '{key}', which the document does not define")]
    UnknownReference {
        section: &'static str,
        context: String,
        what: &'static str,
        key: String,
    },
    /// A vector whose length is not the world's `embedding_dim`.
    #[error(
        "{section}: {context} has an embedding of {got} dimensions, but the world's \
         embedding_dim is {expected}"
    )]
    Dimension {
        section: &'static str,
        context: String,
        got: usize,
        expected: i32,
    },
    /// A value the database could store but that would not survive the trip
    /// (e.g. a position that is not a finite number), or pages out of order.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for TransferError {
    fn from(e: tokio_postgres::Error) -> Self {
        TransferError::Db(e.into())
    }
}

/// The world row.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldRecord {
    pub slug: String,
    pub name: String,
    pub embedding_model: String,
    pub embedding_dim: i32,
    pub settings: Value,
    pub created_at: WallTime,
    pub updated_at: WallTime,
    pub archived_at: Option<WallTime>,
}

/// The newest `world_checkpoints` row.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRecord {
    pub tick: i64,
    pub game_time: GameTime,
    pub committed_at: WallTime,
    pub state: Option<Vec<u8>>,
}

/// An account the world refers to (owner of a character, member, actor of a
/// logged event). No email, no password hash.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub username: String,
    pub created_at: WallTime,
}

/// `world_members`.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRecord {
    pub username: String,
    pub role: String,
    pub created_at: WallTime,
}

/// `characters`, by name; `owner` is a username.
#[derive(Debug, Clone, PartialEq)]
pub struct CharacterRecord {
    pub name: String,
    pub owner: String,
    pub x: f32,
    pub y: f32,
    pub location_name: Option<String>,
    pub created_at: WallTime,
    pub updated_at: WallTime,
}

/// `agents`, by slug.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub slug: String,
    pub name: String,
    pub definition: Value,
    pub age: Option<i32>,
    pub constitution: String,
    pub background: String,
    pub traits: Value,
    pub likes: Vec<String>,
    pub dislikes: Vec<String>,
    pub primary_goal: Option<String>,
    pub secondary_goals: Vec<String>,
    pub home_location: Option<String>,
    pub created_at: WallTime,
    pub updated_at: WallTime,
    pub archived_at: Option<WallTime>,
}

/// `agent_states`; `agent` is a slug.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentStateRecord {
    pub agent: String,
    pub x: f32,
    pub y: f32,
    pub facing: String,
    pub action: String,
    pub action_started_at: Option<GameTime>,
    pub action_target: Option<String>,
    pub target_x: Option<f32>,
    pub target_y: Option<f32>,
    pub location_name: Option<String>,
    pub energy: f32,
    pub mood: f32,
    pub emotional_state: Value,
    pub physical_state: Value,
    pub cognitive_load: f32,
    pub updated_tick: i64,
    pub sim: Option<Vec<u8>>,
}

/// `agent_relationships`; `agent` and `target` are slugs.
#[derive(Debug, Clone, PartialEq)]
pub struct RelationshipRecord {
    pub agent: String,
    pub target: String,
    pub kind: String,
    pub affection: f32,
    pub trust: f32,
    pub interaction_count: i32,
    pub last_interaction: Option<GameTime>,
    pub summary: String,
    pub updated_tick: i64,
}

/// `agent_character_relationships`; `agent` a slug, `character` a name.
#[derive(Debug, Clone, PartialEq)]
pub struct CharacterRelationshipRecord {
    pub agent: String,
    pub character: String,
    pub kind: String,
    pub affection: f32,
    pub trust: f32,
    pub interaction_count: i32,
    pub last_interaction: Option<GameTime>,
    pub summary: String,
    pub updated_tick: i64,
}

/// `groups`, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    pub name: String,
    pub goal: String,
    pub rules: Value,
    pub status: String,
    pub shared_pool: Value,
    pub created_game_time: GameTime,
    pub updated_tick: i64,
}

/// `group_members`; `group` a name, `agent` a slug.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMemberRecord {
    pub group: String,
    pub agent: String,
    pub role: String,
    pub joined_game_time: GameTime,
}

/// `knowledge`; owners and the access list by slug and group name.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeRecord {
    pub scope: String,
    pub owner_agent: Option<String>,
    pub owner_group: Option<String>,
    pub subject: Option<String>,
    pub predicate: Option<String>,
    pub object: Option<String>,
    pub text: Option<String>,
    pub access_agents: Vec<String>,
    pub confidence: f32,
    pub created_game_time: GameTime,
}

/// `agent_schedules`; `agent` a slug.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRecord {
    pub agent: String,
    pub days_of_week: Vec<i16>,
    pub start_minute: i16,
    pub end_minute: i16,
    pub activity: String,
    pub location: String,
    pub priority: i16,
    pub flexible: bool,
    pub position: i16,
}

/// `agent_plans`; `agent` a slug, `id` and `parent_id` the agent's own keys.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRecord {
    pub agent: String,
    pub id: i64,
    pub parent_id: Option<i64>,
    pub goal: String,
    pub steps: Value,
    pub current_step: i32,
    pub status: String,
    pub priority: i16,
    pub deadline: Option<GameTime>,
    pub created_game_time: GameTime,
    pub updated_tick: i64,
}

/// `conversations`; `id` is the world's own key.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRecord {
    pub id: i64,
    pub kind: String,
    pub location: Option<String>,
    pub topic: Option<String>,
    pub started_game_time: GameTime,
    pub ended_game_time: Option<GameTime>,
}

/// `conversation_participants`: exactly one of `agent` (slug) and
/// `character` (name).
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantRecord {
    pub conversation: i64,
    pub agent: Option<String>,
    pub character: Option<String>,
    pub joined_game_time: GameTime,
    pub left_game_time: Option<GameTime>,
}

/// `messages`: at most one speaker, by slug or character name.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub conversation: i64,
    pub seq: i32,
    pub speaker_agent: Option<String>,
    pub speaker_character: Option<String>,
    pub text: String,
    pub emotional_tone: Option<String>,
    pub game_time: GameTime,
}

/// `agent_memories`; related agents by slug, related characters by name.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryRecord {
    pub agent: String,
    pub id: i64,
    pub kind: String,
    pub content: String,
    pub importance: i16,
    pub emotional_valence: f32,
    pub emotional_intensity: f32,
    pub tags: Vec<String>,
    pub related_agents: Vec<String>,
    pub related_characters: Vec<String>,
    pub location: Option<String>,
    pub created_game_time: GameTime,
    pub last_accessed_game_time: GameTime,
    pub depth: i16,
    pub evidence_ids: Vec<i64>,
    pub embedding: Option<Vec<f32>>,
}

/// `lore_documents`, by path.
#[derive(Debug, Clone, PartialEq)]
pub struct LoreDocumentRecord {
    pub path: String,
    pub title: String,
    pub content_hash: Vec<u8>,
    pub created_at: WallTime,
    pub updated_at: WallTime,
}

/// `lore_chunks`; `document` is the document's path.
#[derive(Debug, Clone, PartialEq)]
pub struct LoreChunkRecord {
    pub document: String,
    pub ordinal: i32,
    pub text: String,
    pub embedding: Option<Vec<f32>>,
}

/// `llm_calls`; `agent` a slug.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmCallRecord {
    pub agent: Option<String>,
    pub kind: String,
    pub model: String,
    pub prompt: String,
    pub response: Option<String>,
    pub latency_ms: i32,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub error: Option<String>,
    pub game_time: Option<GameTime>,
    pub created_at: WallTime,
}

/// `sim_metrics`, by tick.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMetricRecord {
    pub tick: i64,
    pub game_time: GameTime,
    pub recorded_at: WallTime,
    pub agents: i32,
    pub tick_ms_p50: f32,
    pub tick_ms_p99: f32,
    pub tick_ms_max: f32,
    pub flush_ms: Option<f32>,
    pub rows_flushed: i32,
    pub queue_depth: i32,
}

/// `event_log` rows of the world; `user` a username.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub user: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub details: Value,
    pub created_at: WallTime,
}

/// The world's tables after the world row and its checkpoint, in the order
/// they are exported and must be imported: whatever a row refers to comes
/// before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    Users,
    Members,
    Characters,
    Agents,
    AgentStates,
    Relationships,
    CharacterRelationships,
    Groups,
    GroupMembers,
    Knowledge,
    Schedules,
    Plans,
    Conversations,
    Participants,
    Messages,
    Memories,
    LoreDocuments,
    LoreChunks,
    LlmCalls,
    SimMetrics,
    EventLog,
}

impl Section {
    pub const ALL: [Section; 21] = [
        Section::Users,
        Section::Members,
        Section::Characters,
        Section::Agents,
        Section::AgentStates,
        Section::Relationships,
        Section::CharacterRelationships,
        Section::Groups,
        Section::GroupMembers,
        Section::Knowledge,
        Section::Schedules,
        Section::Plans,
        Section::Conversations,
        Section::Participants,
        Section::Messages,
        Section::Memories,
        Section::LoreDocuments,
        Section::LoreChunks,
        Section::LlmCalls,
        Section::SimMetrics,
        Section::EventLog,
    ];

    /// The section's name in an export document.
    pub fn key(self) -> &'static str {
        match self {
            Section::Users => "users",
            Section::Members => "members",
            Section::Characters => "characters",
            Section::Agents => "agents",
            Section::AgentStates => "agent_states",
            Section::Relationships => "relationships",
            Section::CharacterRelationships => "character_relationships",
            Section::Groups => "groups",
            Section::GroupMembers => "group_members",
            Section::Knowledge => "knowledge",
            Section::Schedules => "schedules",
            Section::Plans => "plans",
            Section::Conversations => "conversations",
            Section::Participants => "conversation_participants",
            Section::Messages => "messages",
            Section::Memories => "memories",
            Section::LoreDocuments => "lore_documents",
            Section::LoreChunks => "lore_chunks",
            Section::LlmCalls => "llm_calls",
            Section::SimMetrics => "sim_metrics",
            Section::EventLog => "event_log",
        }
    }

    pub fn from_key(key: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.key() == key)
    }

    /// The table the section's rows live in (every one has `world_id`,
    /// except `users`, which are shared by worlds).
    pub fn table(self) -> &'static str {
        match self {
            Section::Users => "users",
            Section::Members => "world_members",
            Section::Characters => "characters",
            Section::Agents => "agents",
            Section::AgentStates => "agent_states",
            Section::Relationships => "agent_relationships",
            Section::CharacterRelationships => "agent_character_relationships",
            Section::Groups => "groups",
            Section::GroupMembers => "group_members",
            Section::Knowledge => "knowledge",
            Section::Schedules => "agent_schedules",
            Section::Plans => "agent_plans",
            Section::Conversations => "conversations",
            Section::Participants => "conversation_participants",
            Section::Messages => "messages",
            Section::Memories => "agent_memories",
            Section::LoreDocuments => "lore_documents",
            Section::LoreChunks => "lore_chunks",
            Section::LlmCalls => "llm_calls",
            Section::SimMetrics => "sim_metrics",
            Section::EventLog => "event_log",
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Some rows of one section: what an export yields and an import takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Page {
    Users(Vec<UserRecord>),
    Members(Vec<MemberRecord>),
    Characters(Vec<CharacterRecord>),
    Agents(Vec<AgentRecord>),
    AgentStates(Vec<AgentStateRecord>),
    Relationships(Vec<RelationshipRecord>),
    CharacterRelationships(Vec<CharacterRelationshipRecord>),
    Groups(Vec<GroupRecord>),
    GroupMembers(Vec<GroupMemberRecord>),
    Knowledge(Vec<KnowledgeRecord>),
    Schedules(Vec<ScheduleRecord>),
    Plans(Vec<PlanRecord>),
    Conversations(Vec<ConversationRecord>),
    Participants(Vec<ParticipantRecord>),
    Messages(Vec<MessageRecord>),
    Memories(Vec<MemoryRecord>),
    LoreDocuments(Vec<LoreDocumentRecord>),
    LoreChunks(Vec<LoreChunkRecord>),
    LlmCalls(Vec<LlmCallRecord>),
    SimMetrics(Vec<SimMetricRecord>),
    EventLog(Vec<EventRecord>),
}

impl Page {
    pub fn section(&self) -> Section {
        match self {
            Page::Users(_) => Section::Users,
            Page::Members(_) => Section::Members,
            Page::Characters(_) => Section::Characters,
            Page::Agents(_) => Section::Agents,
            Page::AgentStates(_) => Section::AgentStates,
            Page::Relationships(_) => Section::Relationships,
            Page::CharacterRelationships(_) => Section::CharacterRelationships,
            Page::Groups(_) => Section::Groups,
            Page::GroupMembers(_) => Section::GroupMembers,
            Page::Knowledge(_) => Section::Knowledge,
            Page::Schedules(_) => Section::Schedules,
            Page::Plans(_) => Section::Plans,
            Page::Conversations(_) => Section::Conversations,
            Page::Participants(_) => Section::Participants,
            Page::Messages(_) => Section::Messages,
            Page::Memories(_) => Section::Memories,
            Page::LoreDocuments(_) => Section::LoreDocuments,
            Page::LoreChunks(_) => Section::LoreChunks,
            Page::LlmCalls(_) => Section::LlmCalls,
            Page::SimMetrics(_) => Section::SimMetrics,
            Page::EventLog(_) => Section::EventLog,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Page::Users(r) => r.len(),
            Page::Members(r) => r.len(),
            Page::Characters(r) => r.len(),
            Page::Agents(r) => r.len(),
            Page::AgentStates(r) => r.len(),
            Page::Relationships(r) => r.len(),
            Page::CharacterRelationships(r) => r.len(),
            Page::Groups(r) => r.len(),
            Page::GroupMembers(r) => r.len(),
            Page::Knowledge(r) => r.len(),
            Page::Schedules(r) => r.len(),
            Page::Plans(r) => r.len(),
            Page::Conversations(r) => r.len(),
            Page::Participants(r) => r.len(),
            Page::Messages(r) => r.len(),
            Page::Memories(r) => r.len(),
            Page::LoreDocuments(r) => r.len(),
            Page::LoreChunks(r) => r.len(),
            Page::LlmCalls(r) => r.len(),
            Page::SimMetrics(r) => r.len(),
            Page::EventLog(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_have_distinct_keys_in_dependency_order() {
        let keys: std::collections::HashSet<&str> = Section::ALL.iter().map(|s| s.key()).collect();
        assert_eq!(keys.len(), Section::ALL.len());
        for s in Section::ALL {
            assert_eq!(Section::from_key(s.key()), Some(s));
        }
        assert_eq!(Section::from_key("worlds"), None);
        // the array's order is the enum's order, which `Importer::write` relies on
        assert!(Section::ALL.windows(2).all(|w| w[0] < w[1]));
        assert!(Section::Agents < Section::Memories);
        assert!(Section::Characters < Section::Memories);
        assert!(Section::Conversations < Section::Messages);
        assert!(Section::Groups < Section::Knowledge);
    }

    #[test]
    fn non_finite_numbers_are_refused() {
        assert_eq!(finite(1.5, "x").ok(), Some(1.5));
        let err = finite(f32::NAN, "agent state x").unwrap_err().to_string();
        assert!(err.contains("agent state x is NaN"), "{err}");
        assert!(finite_opt(Some(f32::INFINITY), "y").is_err());
        assert_eq!(finite_opt(None, "y").ok(), Some(None));
    }
}
