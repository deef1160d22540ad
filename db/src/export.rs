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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use pgvector::Vector;
use serde_json::Value;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, IsolationLevel, Portal, Row, Statement, Transaction};
use tracing::{debug, instrument, warn};

use crate::memories::{self, MemoryRow};
use crate::{DbError, worlds, writer};

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

// ---------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------

/// The accounts a world refers to: owners of its characters, its members and
/// the users of its logged events. `$1` is the world id.
const USERS_SQL: &str = "SELECT u.id, u.username, u.created_at FROM users u WHERE u.id IN ( \
         SELECT user_id FROM characters WHERE world_id = $1 \
         UNION SELECT user_id FROM world_members WHERE world_id = $1 \
         UNION SELECT user_id FROM event_log WHERE world_id = $1 AND user_id IS NOT NULL) \
     ORDER BY u.username COLLATE \"C\"";

/// Memories of one agent (`$1` its id), by the primary key.
const MEMORIES_SQL: &str = "SELECT id, kind, content, importance, emotional_valence, \
     emotional_intensity, tags, related_agent_ids, related_character_ids, location, \
     created_game_time, last_accessed_game_time, depth, evidence_ids, embedding \
     FROM agent_memories WHERE agent_id = $1 ORDER BY id";

/// The statement reading a section (`$1` the world id), ordered by natural
/// keys — text compared byte-wise (`COLLATE "C"`), so the order does not
/// depend on the database's locale — or, for rows without one (knowledge,
/// schedules, logs), by id, which an import assigns in document order.
/// Memories are read per agent ([`MEMORIES_SQL`]).
fn section_sql(section: Section) -> &'static str {
    match section {
        Section::Users => USERS_SQL,
        Section::Members => {
            "SELECT u.username, m.role, m.created_at FROM world_members m \
             JOIN users u ON u.id = m.user_id WHERE m.world_id = $1 \
             ORDER BY u.username COLLATE \"C\""
        }
        Section::Characters => {
            "SELECT c.name, u.username, c.x, c.y, c.location_name, c.created_at, c.updated_at \
             FROM characters c JOIN users u ON u.id = c.user_id WHERE c.world_id = $1 \
             ORDER BY c.name COLLATE \"C\""
        }
        Section::Agents => {
            "SELECT slug, name, definition, age, constitution, background, traits, likes, \
             dislikes, primary_goal, secondary_goals, home_location, created_at, updated_at, \
             archived_at FROM agents WHERE world_id = $1 ORDER BY slug COLLATE \"C\""
        }
        Section::AgentStates => {
            "SELECT a.slug, s.x, s.y, s.facing, s.action, s.action_started_at, s.action_target, \
             s.target_x, s.target_y, s.location_name, s.energy, s.mood, s.emotional_state, \
             s.physical_state, s.cognitive_load, s.updated_tick, s.sim \
             FROM agent_states s JOIN agents a ON a.id = s.agent_id WHERE s.world_id = $1 \
             ORDER BY a.slug COLLATE \"C\""
        }
        Section::Relationships => {
            "SELECT a.slug, t.slug, r.type, r.affection, r.trust, r.interaction_count, \
             r.last_interaction, r.summary, r.updated_tick FROM agent_relationships r \
             JOIN agents a ON a.id = r.agent_id JOIN agents t ON t.id = r.target_agent_id \
             WHERE r.world_id = $1 ORDER BY a.slug COLLATE \"C\", t.slug COLLATE \"C\""
        }
        Section::CharacterRelationships => {
            "SELECT a.slug, c.name, r.type, r.affection, r.trust, r.interaction_count, \
             r.last_interaction, r.summary, r.updated_tick FROM agent_character_relationships r \
             JOIN agents a ON a.id = r.agent_id JOIN characters c ON c.id = r.character_id \
             WHERE r.world_id = $1 ORDER BY a.slug COLLATE \"C\", c.name COLLATE \"C\""
        }
        Section::Groups => {
            "SELECT name, goal, rules, status, shared_pool, created_game_time, updated_tick \
             FROM groups WHERE world_id = $1 ORDER BY name COLLATE \"C\""
        }
        Section::GroupMembers => {
            "SELECT g.name, a.slug, m.role, m.joined_game_time FROM group_members m \
             JOIN groups g ON g.id = m.group_id JOIN agents a ON a.id = m.agent_id \
             WHERE m.world_id = $1 ORDER BY g.name COLLATE \"C\", a.slug COLLATE \"C\""
        }
        Section::Knowledge => {
            "SELECT k.scope, a.slug, g.name, k.subject, k.predicate, k.object, k.text, \
             k.access_agent_ids, k.confidence, k.created_game_time FROM knowledge k \
             LEFT JOIN agents a ON a.id = k.owner_agent_id \
             LEFT JOIN groups g ON g.id = k.owner_group_id \
             WHERE k.world_id = $1 ORDER BY k.id"
        }
        Section::Schedules => {
            "SELECT a.slug, s.days_of_week, s.start_minute, s.end_minute, s.activity, \
             s.location, s.priority, s.flexible, s.position FROM agent_schedules s \
             JOIN agents a ON a.id = s.agent_id WHERE s.world_id = $1 \
             ORDER BY a.slug COLLATE \"C\", s.position, s.id"
        }
        Section::Plans => {
            "SELECT a.slug, p.id, p.parent_id, p.goal, p.steps, p.current_step, p.status, \
             p.priority, p.deadline, p.created_game_time, p.updated_tick FROM agent_plans p \
             JOIN agents a ON a.id = p.agent_id WHERE p.world_id = $1 \
             ORDER BY a.slug COLLATE \"C\", p.id"
        }
        Section::Conversations => {
            "SELECT id, kind, location, topic, started_game_time, ended_game_time \
             FROM conversations WHERE world_id = $1 ORDER BY id"
        }
        Section::Participants => {
            "SELECT p.conversation_id, a.slug, c.name, p.joined_game_time, p.left_game_time \
             FROM conversation_participants p \
             LEFT JOIN agents a ON a.id = p.agent_id \
             LEFT JOIN characters c ON c.id = p.character_id WHERE p.world_id = $1 \
             ORDER BY p.conversation_id, a.slug COLLATE \"C\" NULLS LAST, \
                 c.name COLLATE \"C\" NULLS LAST"
        }
        Section::Messages => {
            "SELECT conversation_id, seq, speaker_agent_id, speaker_character_id, text, \
             emotional_tone, game_time FROM messages WHERE world_id = $1 \
             ORDER BY conversation_id, seq"
        }
        Section::Memories => MEMORIES_SQL,
        Section::LoreDocuments => {
            "SELECT path, title, content_hash, created_at, updated_at FROM lore_documents \
             WHERE world_id = $1 ORDER BY path COLLATE \"C\""
        }
        Section::LoreChunks => {
            "SELECT d.path, c.ordinal, c.text, c.embedding FROM lore_chunks c \
             JOIN lore_documents d ON d.id = c.document_id WHERE c.world_id = $1 \
             ORDER BY d.path COLLATE \"C\", c.ordinal"
        }
        Section::LlmCalls => {
            "SELECT agent_id, kind, model, prompt, response, latency_ms, prompt_tokens, \
             completion_tokens, error, game_time, created_at FROM llm_calls \
             WHERE world_id = $1 ORDER BY id"
        }
        Section::SimMetrics => {
            "SELECT tick, game_time, recorded_at, agents, tick_ms_p50, tick_ms_p99, tick_ms_max, \
             flush_ms, rows_flushed, queue_depth FROM sim_metrics WHERE world_id = $1 \
             ORDER BY tick"
        }
        Section::EventLog => {
            "SELECT user_id, actor, action, target, details, created_at FROM event_log \
             WHERE world_id = $1 ORDER BY id"
        }
    }
}

/// Where reading one section has got to: a portal (for memories, the
/// current agent's) and, for memories, the agents still to read.
pub struct Cursor {
    section: Section,
    portal: Option<Portal>,
    /// Memories only: the statement, and agent ids left, in slug order.
    memories: Option<(Statement, VecDeque<(i64, String)>)>,
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cursor")
            .field("section", &self.section)
            .field("open", &self.portal.is_some())
            .finish_non_exhaustive()
    }
}

/// One world as of one moment: an open read-only transaction and the ids of
/// the world's agents, characters and users, to name them in records.
pub struct Snapshot<'c> {
    tx: Transaction<'c>,
    world_id: i64,
    world: WorldRecord,
    agents: HashMap<i64, String>,
    characters: HashMap<i64, String>,
    users: HashMap<i64, String>,
    /// References to rows that no longer exist (no foreign key guards them:
    /// related agents and characters of memories, knowledge access lists,
    /// the agent of an LLM call), left out of the records.
    dangling: u64,
}

impl fmt::Debug for Snapshot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("world", &self.world.slug)
            .field("agents", &self.agents.len())
            .finish_non_exhaustive()
    }
}

impl<'c> Snapshot<'c> {
    /// Opens a `REPEATABLE READ READ ONLY` transaction on `client` and reads
    /// world `slug`'s row and the names of its agents, characters and users.
    #[instrument(skip_all, fields(slug))]
    pub async fn begin(client: &'c mut Client, slug: &str) -> Result<Snapshot<'c>, TransferError> {
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let row = tx
            .query_opt(
                "SELECT id, slug, name, embedding_model, embedding_dim, settings, created_at, \
                 updated_at, archived_at FROM worlds WHERE slug = $1",
                &[&slug],
            )
            .await?
            .ok_or_else(|| TransferError::NoWorld(slug.to_owned()))?;
        let world_id: i64 = row.try_get(0)?;
        let world = WorldRecord {
            slug: row.try_get(1)?,
            name: row.try_get(2)?,
            embedding_model: row.try_get(3)?,
            embedding_dim: row.try_get(4)?,
            settings: row.try_get(5)?,
            created_at: row.try_get(6)?,
            updated_at: row.try_get(7)?,
            archived_at: row.try_get(8)?,
        };
        let names = |rows: Vec<Row>| -> Result<HashMap<i64, String>, TransferError> {
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        };
        let agents = names(
            tx.query(
                "SELECT id, slug FROM agents WHERE world_id = $1",
                &[&world_id],
            )
            .await?,
        )?;
        let characters = names(
            tx.query(
                "SELECT id, name FROM characters WHERE world_id = $1",
                &[&world_id],
            )
            .await?,
        )?;
        let users = names(tx.query(USERS_SQL, &[&world_id]).await?)?;
        debug!(world_id, agents = agents.len(), "snapshot open");
        Ok(Snapshot {
            tx,
            world_id,
            world,
            agents,
            characters,
            users,
            dangling: 0,
        })
    }

    pub fn world(&self) -> &WorldRecord {
        &self.world
    }

    /// The newest checkpoint: where a server resumes the world.
    pub async fn checkpoint(&self) -> Result<Option<CheckpointRecord>, TransferError> {
        let row = self
            .tx
            .query_opt(
                "SELECT tick, game_time, committed_at, state FROM world_checkpoints \
                 WHERE world_id = $1 ORDER BY tick DESC LIMIT 1",
                &[&self.world_id],
            )
            .await?;
        Ok(match row {
            Some(r) => Some(CheckpointRecord {
                tick: r.try_get(0)?,
                game_time: r.try_get(1)?,
                committed_at: r.try_get(2)?,
                state: r.try_get(3)?,
            }),
            None => None,
        })
    }

    /// How many rows `section` has (for a progress bar).
    pub async fn count(&self, section: Section) -> Result<u64, TransferError> {
        let sql = match section {
            Section::Users => format!("SELECT count(*) FROM ({USERS_SQL}) AS q"),
            _ => format!(
                "SELECT count(*) FROM {} WHERE world_id = $1",
                section.table()
            ),
        };
        let n: i64 = self
            .tx
            .query_one(&sql, &[&self.world_id])
            .await?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Starts reading `section`.
    pub async fn open(&self, section: Section) -> Result<Cursor, TransferError> {
        if section == Section::Memories {
            let statement = self.tx.prepare(MEMORIES_SQL).await?;
            let mut agents: Vec<(i64, String)> = self
                .agents
                .iter()
                .map(|(id, slug)| (*id, slug.clone()))
                .collect();
            agents.sort_by(|a, b| a.1.cmp(&b.1));
            return Ok(Cursor {
                section,
                portal: None,
                memories: Some((statement, agents.into())),
            });
        }
        let portal = self
            .tx
            .bind(section_sql(section), &[&self.world_id])
            .await?;
        Ok(Cursor {
            section,
            portal: Some(portal),
            memories: None,
        })
    }

    /// The next page of the cursor's section, `None` at its end. Pages are
    /// never empty.
    pub async fn next_page(&mut self, cursor: &mut Cursor) -> Result<Option<Page>, TransferError> {
        if cursor.section == Section::Memories {
            return self.next_memories(cursor).await;
        }
        let Some(portal) = &cursor.portal else {
            return Ok(None);
        };
        let rows = self.tx.query_portal(portal, PAGE_ROWS).await?;
        if rows.len() < usize::try_from(PAGE_ROWS).unwrap_or(usize::MAX) {
            cursor.portal = None;
        }
        if rows.is_empty() {
            return Ok(None);
        }
        self.page(cursor.section, &rows).map(Some)
    }

    async fn next_memories(&mut self, cursor: &mut Cursor) -> Result<Option<Page>, TransferError> {
        let Some((statement, agents)) = &mut cursor.memories else {
            return Ok(None);
        };
        loop {
            let portal = match &cursor.portal {
                Some(p) => p.clone(),
                None => {
                    let Some((id, _)) = agents.front() else {
                        return Ok(None);
                    };
                    let portal = self.tx.bind(&*statement, &[id]).await?;
                    cursor.portal = Some(portal.clone());
                    portal
                }
            };
            let rows = self.tx.query_portal(&portal, PAGE_ROWS).await?;
            let slug = match agents.front() {
                Some((_, slug)) => slug.clone(),
                None => return Ok(None),
            };
            if rows.len() < usize::try_from(PAGE_ROWS).unwrap_or(usize::MAX) {
                cursor.portal = None;
                agents.pop_front();
            }
            if !rows.is_empty() {
                let records = rows
                    .iter()
                    .map(|r| self.memory(&slug, r))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(Some(Page::Memories(records)));
            }
        }
    }

    /// Ends the snapshot; returns how many dangling references were left
    /// out of the records (see the field's documentation).
    pub async fn finish(self) -> Result<u64, TransferError> {
        if self.dangling > 0 {
            warn!(
                world = %self.world.slug,
                references = self.dangling,
                "references to agents or characters that no longer exist were left out"
            );
        }
        self.tx.commit().await?;
        Ok(self.dangling)
    }

    fn agent_name(&self, id: i64) -> Result<String, TransferError> {
        self.agents
            .get(&id)
            .cloned()
            .ok_or_else(|| TransferError::Invalid(format!("agent id {id} is not of this world")))
    }

    fn character_name(&self, id: i64) -> Result<String, TransferError> {
        self.characters.get(&id).cloned().ok_or_else(|| {
            TransferError::Invalid(format!("character id {id} is not of this world"))
        })
    }

    /// Names for ids that no foreign key guards; those gone are counted and
    /// left out.
    fn names_of(&mut self, ids: &[i64], characters: bool) -> Vec<String> {
        let map = if characters {
            &self.characters
        } else {
            &self.agents
        };
        let names: Vec<String> = ids.iter().filter_map(|id| map.get(id).cloned()).collect();
        self.dangling += (ids.len() - names.len()) as u64;
        names
    }

    fn memory(&mut self, agent: &str, r: &Row) -> Result<MemoryRecord, TransferError> {
        let related_agents: Vec<i64> = r.try_get(7)?;
        let related_characters: Vec<i64> = r.try_get(8)?;
        let embedding: Option<Vector> = r.try_get(14)?;
        Ok(MemoryRecord {
            agent: agent.to_owned(),
            id: r.try_get(0)?,
            kind: r.try_get(1)?,
            content: r.try_get(2)?,
            importance: r.try_get(3)?,
            emotional_valence: r.try_get(4)?,
            emotional_intensity: r.try_get(5)?,
            tags: r.try_get(6)?,
            related_agents: self.names_of(&related_agents, false),
            related_characters: self.names_of(&related_characters, true),
            location: r.try_get(9)?,
            created_game_time: r.try_get(10)?,
            last_accessed_game_time: r.try_get(11)?,
            depth: r.try_get(12)?,
            evidence_ids: r.try_get(13)?,
            embedding: embedding.map(|v| v.to_vec()),
        })
    }

    /// The records of `rows`, read with [`section_sql`].
    fn page(&mut self, section: Section, rows: &[Row]) -> Result<Page, TransferError> {
        macro_rules! records {
            ($variant:ident, |$r:ident| $record:expr) => {
                Page::$variant(
                    rows.iter()
                        .map(|$r| Ok($record))
                        .collect::<Result<Vec<_>, TransferError>>()?,
                )
            };
        }
        Ok(match section {
            Section::Users => records!(Users, |r| UserRecord {
                username: r.try_get(1)?,
                created_at: r.try_get(2)?,
            }),
            Section::Members => records!(Members, |r| MemberRecord {
                username: r.try_get(0)?,
                role: r.try_get(1)?,
                created_at: r.try_get(2)?,
            }),
            Section::Characters => records!(Characters, |r| CharacterRecord {
                name: r.try_get(0)?,
                owner: r.try_get(1)?,
                x: finite(r.try_get(2)?, "character x")?,
                y: finite(r.try_get(3)?, "character y")?,
                location_name: r.try_get(4)?,
                created_at: r.try_get(5)?,
                updated_at: r.try_get(6)?,
            }),
            Section::Agents => records!(Agents, |r| AgentRecord {
                slug: r.try_get(0)?,
                name: r.try_get(1)?,
                definition: r.try_get(2)?,
                age: r.try_get(3)?,
                constitution: r.try_get(4)?,
                background: r.try_get(5)?,
                traits: r.try_get(6)?,
                likes: r.try_get(7)?,
                dislikes: r.try_get(8)?,
                primary_goal: r.try_get(9)?,
                secondary_goals: r.try_get(10)?,
                home_location: r.try_get(11)?,
                created_at: r.try_get(12)?,
                updated_at: r.try_get(13)?,
                archived_at: r.try_get(14)?,
            }),
            Section::AgentStates => records!(AgentStates, |r| AgentStateRecord {
                agent: r.try_get(0)?,
                x: finite(r.try_get(1)?, "agent state x")?,
                y: finite(r.try_get(2)?, "agent state y")?,
                facing: r.try_get(3)?,
                action: r.try_get(4)?,
                action_started_at: r.try_get(5)?,
                action_target: r.try_get(6)?,
                target_x: finite_opt(r.try_get(7)?, "agent state target_x")?,
                target_y: finite_opt(r.try_get(8)?, "agent state target_y")?,
                location_name: r.try_get(9)?,
                energy: r.try_get(10)?,
                mood: r.try_get(11)?,
                emotional_state: r.try_get(12)?,
                physical_state: r.try_get(13)?,
                cognitive_load: r.try_get(14)?,
                updated_tick: r.try_get(15)?,
                sim: r.try_get(16)?,
            }),
            Section::Relationships => records!(Relationships, |r| RelationshipRecord {
                agent: r.try_get(0)?,
                target: r.try_get(1)?,
                kind: r.try_get(2)?,
                affection: r.try_get(3)?,
                trust: r.try_get(4)?,
                interaction_count: r.try_get(5)?,
                last_interaction: r.try_get(6)?,
                summary: r.try_get(7)?,
                updated_tick: r.try_get(8)?,
            }),
            Section::CharacterRelationships => {
                records!(CharacterRelationships, |r| CharacterRelationshipRecord {
                    agent: r.try_get(0)?,
                    character: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    affection: r.try_get(3)?,
                    trust: r.try_get(4)?,
                    interaction_count: r.try_get(5)?,
                    last_interaction: r.try_get(6)?,
                    summary: r.try_get(7)?,
                    updated_tick: r.try_get(8)?,
                })
            }
            Section::Groups => records!(Groups, |r| GroupRecord {
                name: r.try_get(0)?,
                goal: r.try_get(1)?,
                rules: r.try_get(2)?,
                status: r.try_get(3)?,
                shared_pool: r.try_get(4)?,
                created_game_time: r.try_get(5)?,
                updated_tick: r.try_get(6)?,
            }),
            Section::GroupMembers => records!(GroupMembers, |r| GroupMemberRecord {
                group: r.try_get(0)?,
                agent: r.try_get(1)?,
                role: r.try_get(2)?,
                joined_game_time: r.try_get(3)?,
            }),
            Section::Knowledge => {
                let mut records = Vec::with_capacity(rows.len());
                for r in rows {
                    let access: Vec<i64> = r.try_get(7)?;
                    records.push(KnowledgeRecord {
                        scope: r.try_get(0)?,
                        owner_agent: r.try_get(1)?,
                        owner_group: r.try_get(2)?,
                        subject: r.try_get(3)?,
                        predicate: r.try_get(4)?,
                        object: r.try_get(5)?,
                        text: r.try_get(6)?,
                        access_agents: self.names_of(&access, false),
                        confidence: r.try_get(8)?,
                        created_game_time: r.try_get(9)?,
                    });
                }
                Page::Knowledge(records)
            }
            Section::Schedules => records!(Schedules, |r| ScheduleRecord {
                agent: r.try_get(0)?,
                days_of_week: r.try_get(1)?,
                start_minute: r.try_get(2)?,
                end_minute: r.try_get(3)?,
                activity: r.try_get(4)?,
                location: r.try_get(5)?,
                priority: r.try_get(6)?,
                flexible: r.try_get(7)?,
                position: r.try_get(8)?,
            }),
            Section::Plans => records!(Plans, |r| PlanRecord {
                agent: r.try_get(0)?,
                id: r.try_get(1)?,
                parent_id: r.try_get(2)?,
                goal: r.try_get(3)?,
                steps: r.try_get(4)?,
                current_step: r.try_get(5)?,
                status: r.try_get(6)?,
                priority: r.try_get(7)?,
                deadline: r.try_get(8)?,
                created_game_time: r.try_get(9)?,
                updated_tick: r.try_get(10)?,
            }),
            Section::Conversations => records!(Conversations, |r| ConversationRecord {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                location: r.try_get(2)?,
                topic: r.try_get(3)?,
                started_game_time: r.try_get(4)?,
                ended_game_time: r.try_get(5)?,
            }),
            Section::Participants => records!(Participants, |r| ParticipantRecord {
                conversation: r.try_get(0)?,
                agent: r.try_get(1)?,
                character: r.try_get(2)?,
                joined_game_time: r.try_get(3)?,
                left_game_time: r.try_get(4)?,
            }),
            Section::Messages => records!(Messages, |r| MessageRecord {
                conversation: r.try_get(0)?,
                seq: r.try_get(1)?,
                speaker_agent: r
                    .try_get::<_, Option<i64>>(2)?
                    .map(|id| self.agent_name(id))
                    .transpose()?,
                speaker_character: r
                    .try_get::<_, Option<i64>>(3)?
                    .map(|id| self.character_name(id))
                    .transpose()?,
                text: r.try_get(4)?,
                emotional_tone: r.try_get(5)?,
                game_time: r.try_get(6)?,
            }),
            Section::Memories => {
                return Err(TransferError::Invalid(
                    "memories are read agent by agent".into(),
                ));
            }
            Section::LoreDocuments => records!(LoreDocuments, |r| LoreDocumentRecord {
                path: r.try_get(0)?,
                title: r.try_get(1)?,
                content_hash: r.try_get(2)?,
                created_at: r.try_get(3)?,
                updated_at: r.try_get(4)?,
            }),
            Section::LoreChunks => records!(LoreChunks, |r| LoreChunkRecord {
                document: r.try_get(0)?,
                ordinal: r.try_get(1)?,
                text: r.try_get(2)?,
                embedding: r.try_get::<_, Option<Vector>>(3)?.map(|v| v.to_vec()),
            }),
            Section::LlmCalls => {
                let mut records = Vec::with_capacity(rows.len());
                for r in rows {
                    let agent_id: Option<i64> = r.try_get(0)?;
                    let agent = agent_id.and_then(|id| self.agents.get(&id).cloned());
                    // an agent of another world, which no foreign key prevents
                    if agent_id.is_some() && agent.is_none() {
                        self.dangling += 1;
                    }
                    records.push(LlmCallRecord {
                        agent,
                        kind: r.try_get(1)?,
                        model: r.try_get(2)?,
                        prompt: r.try_get(3)?,
                        response: r.try_get(4)?,
                        latency_ms: r.try_get(5)?,
                        prompt_tokens: r.try_get(6)?,
                        completion_tokens: r.try_get(7)?,
                        error: r.try_get(8)?,
                        game_time: r.try_get(9)?,
                        created_at: r.try_get(10)?,
                    });
                }
                Page::LlmCalls(records)
            }
            Section::SimMetrics => records!(SimMetrics, |r| SimMetricRecord {
                tick: r.try_get(0)?,
                game_time: r.try_get(1)?,
                recorded_at: r.try_get(2)?,
                agents: r.try_get(3)?,
                tick_ms_p50: finite(r.try_get(4)?, "sim_metrics tick_ms_p50")?,
                tick_ms_p99: finite(r.try_get(5)?, "sim_metrics tick_ms_p99")?,
                tick_ms_max: finite(r.try_get(6)?, "sim_metrics tick_ms_max")?,
                flush_ms: finite_opt(r.try_get(7)?, "sim_metrics flush_ms")?,
                rows_flushed: r.try_get(8)?,
                queue_depth: r.try_get(9)?,
            }),
            Section::EventLog => records!(EventLog, |r| EventRecord {
                user: r
                    .try_get::<_, Option<i64>>(0)?
                    .and_then(|id| self.users.get(&id).cloned()),
                actor: r.try_get(1)?,
                action: r.try_get(2)?,
                target: r.try_get(3)?,
                details: r.try_get(4)?,
                created_at: r.try_get(5)?,
            }),
        })
    }
}

/// `value`, unless it is NaN or infinite: JSON has no such numbers, and the
/// columns read through this have no CHECK that keeps them out.
fn finite(value: f32, what: &str) -> Result<f32, TransferError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(TransferError::Invalid(format!(
            "{what} is {value}, which a JSON document cannot hold"
        )))
    }
}

fn finite_opt(value: Option<f32>, what: &str) -> Result<Option<f32>, TransferError> {
    value.map(|v| finite(v, what)).transpose()
}

// ---------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------

/// What an import wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    pub slug: String,
    /// Rows written per section (sections without rows are absent).
    pub rows: BTreeMap<Section, u64>,
    /// Accounts that did not exist in this database and were created locked.
    pub created_users: u64,
}

/// A world being written in one transaction. Dropped without
/// [`Importer::commit`], nothing of it remains.
pub struct Importer<'c> {
    tx: Transaction<'c>,
    world_id: i64,
    dim: i32,
    /// Slug → id of the agents written so far.
    agents: HashMap<String, i64>,
    characters: HashMap<String, i64>,
    /// Lower-cased username → id (usernames are unique regardless of case).
    users: HashMap<String, i64>,
    groups: HashMap<String, i64>,
    lore_documents: HashMap<String, i64>,
    /// `(agent id, plan id, parent id)`: plans are inserted without their
    /// parent, which is set once every plan is in (a parent may come later).
    plan_parents: Vec<(i64, i64, i64)>,
    last_section: Option<Section>,
    imported: Imported,
}

impl fmt::Debug for Importer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Importer")
            .field("world_id", &self.world_id)
            .field("imported", &self.imported)
            .finish_non_exhaustive()
    }
}

impl<'c> Importer<'c> {
    /// Creates `world` (and its checkpoint) in a new transaction, or refuses
    /// with [`TransferError::WorldExists`] if its slug is taken. The vector
    /// indexes for its dimension are created first, outside the transaction,
    /// as opening a world does.
    #[instrument(skip_all, fields(slug = %world.slug))]
    pub async fn begin(
        client: &'c mut Client,
        world: &WorldRecord,
        checkpoint: Option<&CheckpointRecord>,
    ) -> Result<Importer<'c>, TransferError> {
        if !(1..=16000).contains(&world.embedding_dim) {
            return Err(TransferError::Invalid(format!(
                "world: embedding_dim {} is out of range 1..=16000",
                world.embedding_dim
            )));
        }
        if worlds::get(client, &world.slug).await?.is_some() {
            return Err(TransferError::WorldExists(world.slug.clone()));
        }
        worlds::ensure_vector_indexes(client, world.embedding_dim).await?;
        let tx = client.transaction().await?;
        let inserted = tx
            .query_one(
                "INSERT INTO worlds (slug, name, embedding_model, embedding_dim, settings, \
                 created_at, updated_at, archived_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 RETURNING id",
                &[
                    &world.slug,
                    &world.name,
                    &world.embedding_model,
                    &world.embedding_dim,
                    &world.settings,
                    &world.created_at,
                    &world.updated_at,
                    &world.archived_at,
                ],
            )
            .await;
        let world_id: i64 = match inserted {
            Ok(row) => row.try_get(0)?,
            Err(e) => {
                let e = DbError::from(e);
                // created by someone else since the check above
                if e.constraint() == Some("worlds_slug_key") {
                    return Err(TransferError::WorldExists(world.slug.clone()));
                }
                return Err(e.into());
            }
        };
        if let Some(c) = checkpoint {
            tx.execute(
                "INSERT INTO world_checkpoints (world_id, tick, game_time, committed_at, state) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&world_id, &c.tick, &c.game_time, &c.committed_at, &c.state],
            )
            .await?;
        }
        Ok(Importer {
            tx,
            world_id,
            dim: world.embedding_dim,
            agents: HashMap::new(),
            characters: HashMap::new(),
            users: HashMap::new(),
            groups: HashMap::new(),
            lore_documents: HashMap::new(),
            plan_parents: Vec::new(),
            last_section: None,
            imported: Imported {
                slug: world.slug.clone(),
                ..Imported::default()
            },
        })
    }

    /// Writes one page. Pages must come in [`Section::ALL`] order (several
    /// pages of one section in a row are fine): what a record names must be
    /// written before it.
    pub async fn write(&mut self, page: Page) -> Result<u64, TransferError> {
        let section = page.section();
        if let Some(last) = self.last_section
            && last > section
        {
            return Err(TransferError::Invalid(format!(
                "section '{section}' comes after '{last}'; sections must be in the order of an \
                 export, because a record can only name what came before it"
            )));
        }
        self.last_section = Some(section);
        if page.is_empty() {
            return Ok(0);
        }
        let written = match page {
            Page::Users(rows) => self.users(rows).await?,
            Page::Members(rows) => self.members(rows).await?,
            Page::Characters(rows) => self.characters(rows).await?,
            Page::Agents(rows) => self.agents(rows).await?,
            Page::AgentStates(rows) => self.agent_states(rows).await?,
            Page::Relationships(rows) => self.relationships(rows).await?,
            Page::CharacterRelationships(rows) => self.character_relationships(rows).await?,
            Page::Groups(rows) => self.groups(rows).await?,
            Page::GroupMembers(rows) => self.group_members(rows).await?,
            Page::Knowledge(rows) => self.knowledge(rows).await?,
            Page::Schedules(rows) => self.schedules(rows).await?,
            Page::Plans(rows) => self.plans(rows).await?,
            Page::Conversations(rows) => self.conversations(rows).await?,
            Page::Participants(rows) => self.participants(rows).await?,
            Page::Messages(rows) => self.messages(rows).await?,
            Page::Memories(rows) => self.memories(rows).await?,
            Page::LoreDocuments(rows) => self.lore_documents(rows).await?,
            Page::LoreChunks(rows) => self.lore_chunks(rows).await?,
            Page::LlmCalls(rows) => self.llm_calls(rows).await?,
            Page::SimMetrics(rows) => self.sim_metrics(rows).await?,
            Page::EventLog(rows) => self.event_log(rows).await?,
        };
        *self.imported.rows.entry(section).or_default() += written;
        Ok(written)
    }

    /// Sets the plans' parents and commits: the world appears whole.
    pub async fn commit(self) -> Result<Imported, TransferError> {
        for batch in self.plan_parents.chunks(PARENT_BATCH) {
            let agents: Vec<i64> = batch.iter().map(|p| p.0).collect();
            let ids: Vec<i64> = batch.iter().map(|p| p.1).collect();
            let parents: Vec<i64> = batch.iter().map(|p| p.2).collect();
            self.tx
                .execute(
                    "UPDATE agent_plans p SET parent_id = t.parent \
                     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS t(agent, id, parent) \
                     WHERE p.agent_id = t.agent AND p.id = t.id",
                    &[&agents, &ids, &parents],
                )
                .await?;
        }
        self.tx.commit().await?;
        debug!(imported = ?self.imported, "world imported");
        Ok(self.imported)
    }

    fn agent(
        &self,
        section: Section,
        context: &dyn Fn() -> String,
        slug: &str,
    ) -> Result<i64, TransferError> {
        lookup(&self.agents, section, context, "agent", slug)
    }

    fn character(
        &self,
        section: Section,
        context: &dyn Fn() -> String,
        name: &str,
    ) -> Result<i64, TransferError> {
        lookup(&self.characters, section, context, "character", name)
    }

    fn user(
        &self,
        section: Section,
        context: &dyn Fn() -> String,
        username: &str,
    ) -> Result<i64, TransferError> {
        self.users
            .get(&username.to_lowercase())
            .copied()
            .ok_or_else(|| TransferError::UnknownReference {
                section: section.key(),
                context: context(),
                what: "user",
                key: username.to_owned(),
            })
    }

    fn check_dim(
        &self,
        section: Section,
        context: &dyn Fn() -> String,
        embedding: Option<&Vec<f32>>,
    ) -> Result<Option<i32>, TransferError> {
        let Some(e) = embedding else {
            return Ok(None);
        };
        if usize::try_from(self.dim).ok() != Some(e.len()) {
            return Err(TransferError::Dimension {
                section: section.key(),
                context: context(),
                got: e.len(),
                expected: self.dim,
            });
        }
        Ok(Some(self.dim))
    }

    async fn users(&mut self, rows: Vec<UserRecord>) -> Result<u64, TransferError> {
        let names: Vec<&str> = rows.iter().map(|r| r.username.as_str()).collect();
        let created: Vec<WallTime> = rows.iter().map(|r| r.created_at).collect();
        let added = self
            .tx
            .execute(
                "INSERT INTO users (username, password_hash, created_at) \
                 SELECT t.username, $3, t.created_at \
                 FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS t(username, created_at, n) \
                 WHERE NOT EXISTS (SELECT 1 FROM users u WHERE lower(u.username) = lower(t.username)) \
                 ORDER BY t.n",
                &[&names, &created, &LOCKED_PASSWORD_HASH],
            )
            .await?;
        self.imported.created_users += added;
        let lower: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
        for r in self
            .tx
            .query(
                "SELECT lower(username), id FROM users WHERE lower(username) = ANY($1)",
                &[&lower],
            )
            .await?
        {
            self.users.insert(r.try_get(0)?, r.try_get(1)?);
        }
        // an account is shared by worlds: reused ones count as written too
        Ok(rows.len() as u64)
    }

    async fn members(&mut self, rows: Vec<MemberRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let user = self.user(
                Section::Members,
                &|| format!("member '{}'", r.username),
                &r.username,
            )?;
            resolved.push((self.world_id, user, r));
        }
        copy(
            self.tx.client(),
            "world_members (world_id, user_id, role, created_at)",
            &[Type::INT8, Type::INT8, Type::TEXT, Type::TIMESTAMPTZ],
            &resolved,
            |(w, u, r)| [w, u, &r.role, &r.created_at],
        )
        .await
    }

    async fn characters(&mut self, rows: Vec<CharacterRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let user = self.user(
                Section::Characters,
                &|| format!("character '{}'", r.name),
                &r.owner,
            )?;
            resolved.push((self.world_id, user, r));
        }
        let n = copy(
            self.tx.client(),
            "characters (world_id, user_id, name, x, y, location_name, created_at, updated_at)",
            &[
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::FLOAT4,
                Type::FLOAT4,
                Type::TEXT,
                Type::TIMESTAMPTZ,
                Type::TIMESTAMPTZ,
            ],
            &resolved,
            |(w, u, r)| {
                [
                    w,
                    u,
                    &r.name,
                    &r.x,
                    &r.y,
                    &r.location_name,
                    &r.created_at,
                    &r.updated_at,
                ]
            },
        )
        .await?;
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        self.characters.extend(
            self.ids_of(
                "SELECT name, id FROM characters WHERE world_id = $1 AND name = ANY($2)",
                &names,
            )
            .await?,
        );
        Ok(n)
    }

    async fn agents(&mut self, rows: Vec<AgentRecord>) -> Result<u64, TransferError> {
        let resolved: Vec<(i64, &AgentRecord)> = rows.iter().map(|r| (self.world_id, r)).collect();
        let n = copy(
            self.tx.client(),
            "agents (world_id, slug, name, definition, age, constitution, background, traits, \
             likes, dislikes, primary_goal, secondary_goals, home_location, created_at, \
             updated_at, archived_at)",
            &[
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::JSONB,
                Type::INT4,
                Type::TEXT,
                Type::TEXT,
                Type::JSONB,
                Type::TEXT_ARRAY,
                Type::TEXT_ARRAY,
                Type::TEXT,
                Type::TEXT_ARRAY,
                Type::TEXT,
                Type::TIMESTAMPTZ,
                Type::TIMESTAMPTZ,
                Type::TIMESTAMPTZ,
            ],
            &resolved,
            |(w, r)| {
                [
                    w,
                    &r.slug,
                    &r.name,
                    &r.definition,
                    &r.age,
                    &r.constitution,
                    &r.background,
                    &r.traits,
                    &r.likes,
                    &r.dislikes,
                    &r.primary_goal,
                    &r.secondary_goals,
                    &r.home_location,
                    &r.created_at,
                    &r.updated_at,
                    &r.archived_at,
                ]
            },
        )
        .await?;
        let slugs: Vec<&str> = rows.iter().map(|r| r.slug.as_str()).collect();
        self.agents.extend(
            self.ids_of(
                "SELECT slug, id FROM agents WHERE world_id = $1 AND slug = ANY($2)",
                &slugs,
            )
            .await?,
        );
        Ok(n)
    }

    async fn agent_states(&mut self, rows: Vec<AgentStateRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let agent = self.agent(
                Section::AgentStates,
                &|| format!("the state of '{}'", r.agent),
                &r.agent,
            )?;
            resolved.push((agent, self.world_id, r));
        }
        copy(
            self.tx.client(),
            &format!("agent_states ({})", writer::STATE_COLUMNS),
            &writer::STATE_TYPES,
            &resolved,
            |(a, w, r)| {
                [
                    a,
                    w,
                    &r.x,
                    &r.y,
                    &r.facing,
                    &r.action,
                    &r.action_started_at,
                    &r.action_target,
                    &r.target_x,
                    &r.target_y,
                    &r.location_name,
                    &r.energy,
                    &r.mood,
                    &r.emotional_state,
                    &r.physical_state,
                    &r.cognitive_load,
                    &r.updated_tick,
                    &r.sim,
                ]
            },
        )
        .await
    }

    async fn relationships(&mut self, rows: Vec<RelationshipRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("the relationship of '{}' to '{}'", r.agent, r.target);
            let agent = self.agent(Section::Relationships, &context, &r.agent)?;
            let target = self.agent(Section::Relationships, &context, &r.target)?;
            resolved.push(([self.world_id, agent, target], r));
        }
        copy(
            self.tx.client(),
            "agent_relationships (world_id, agent_id, target_agent_id, type, affection, trust, \
             interaction_count, last_interaction, summary, updated_tick)",
            &RELATIONSHIP_TYPES,
            &resolved,
            |([w, a, t], r)| {
                [
                    w,
                    a,
                    t,
                    &r.kind,
                    &r.affection,
                    &r.trust,
                    &r.interaction_count,
                    &r.last_interaction,
                    &r.summary,
                    &r.updated_tick,
                ]
            },
        )
        .await
    }

    async fn character_relationships(
        &mut self,
        rows: Vec<CharacterRelationshipRecord>,
    ) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("the relationship of '{}' to '{}'", r.agent, r.character);
            let agent = self.agent(Section::CharacterRelationships, &context, &r.agent)?;
            let character =
                self.character(Section::CharacterRelationships, &context, &r.character)?;
            resolved.push(([self.world_id, agent, character], r));
        }
        copy(
            self.tx.client(),
            "agent_character_relationships (world_id, agent_id, character_id, type, affection, \
             trust, interaction_count, last_interaction, summary, updated_tick)",
            &RELATIONSHIP_TYPES,
            &resolved,
            |([w, a, c], r)| {
                [
                    w,
                    a,
                    c,
                    &r.kind,
                    &r.affection,
                    &r.trust,
                    &r.interaction_count,
                    &r.last_interaction,
                    &r.summary,
                    &r.updated_tick,
                ]
            },
        )
        .await
    }

    async fn groups(&mut self, rows: Vec<GroupRecord>) -> Result<u64, TransferError> {
        let resolved: Vec<(i64, &GroupRecord)> = rows.iter().map(|r| (self.world_id, r)).collect();
        let n = copy(
            self.tx.client(),
            "groups (world_id, name, goal, rules, status, shared_pool, created_game_time, \
             updated_tick)",
            &[
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::JSONB,
                Type::TEXT,
                Type::JSONB,
                Type::TIMESTAMP,
                Type::INT8,
            ],
            &resolved,
            |(w, r)| {
                [
                    w,
                    &r.name,
                    &r.goal,
                    &r.rules,
                    &r.status,
                    &r.shared_pool,
                    &r.created_game_time,
                    &r.updated_tick,
                ]
            },
        )
        .await?;
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        self.groups.extend(
            self.ids_of(
                "SELECT name, id FROM groups WHERE world_id = $1 AND name = ANY($2)",
                &names,
            )
            .await?,
        );
        Ok(n)
    }

    async fn group_members(&mut self, rows: Vec<GroupMemberRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("member '{}' of group '{}'", r.agent, r.group);
            let group = lookup(
                &self.groups,
                Section::GroupMembers,
                &context,
                "group",
                &r.group,
            )?;
            let agent = self.agent(Section::GroupMembers, &context, &r.agent)?;
            resolved.push(([self.world_id, group, agent], r));
        }
        copy(
            self.tx.client(),
            "group_members (world_id, group_id, agent_id, role, joined_game_time)",
            &[
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TIMESTAMP,
            ],
            &resolved,
            |([w, g, a], r)| [w, g, a, &r.role, &r.joined_game_time],
        )
        .await
    }

    async fn knowledge(&mut self, rows: Vec<KnowledgeRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let context = || {
                let about = r.text.as_deref().or(r.subject.as_deref()).unwrap_or("?");
                format!("knowledge #{} ('{about}')", i + 1)
            };
            let owner_agent = r
                .owner_agent
                .as_deref()
                .map(|s| self.agent(Section::Knowledge, &context, s))
                .transpose()?;
            let owner_group = r
                .owner_group
                .as_deref()
                .map(|g| lookup(&self.groups, Section::Knowledge, &context, "group", g))
                .transpose()?;
            let access = r
                .access_agents
                .iter()
                .map(|s| self.agent(Section::Knowledge, &context, s))
                .collect::<Result<Vec<i64>, _>>()?;
            resolved.push((self.world_id, owner_agent, owner_group, access, r));
        }
        copy(
            self.tx.client(),
            "knowledge (world_id, scope, owner_agent_id, owner_group_id, subject, predicate, \
             object, text, access_agent_ids, confidence, created_game_time)",
            &[
                Type::INT8,
                Type::TEXT,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::INT8_ARRAY,
                Type::FLOAT4,
                Type::TIMESTAMP,
            ],
            &resolved,
            |(w, oa, og, access, r)| {
                [
                    w,
                    &r.scope,
                    oa,
                    og,
                    &r.subject,
                    &r.predicate,
                    &r.object,
                    &r.text,
                    access,
                    &r.confidence,
                    &r.created_game_time,
                ]
            },
        )
        .await
    }

    async fn schedules(&mut self, rows: Vec<ScheduleRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("the schedule entry '{}' of '{}'", r.activity, r.agent);
            let agent = self.agent(Section::Schedules, &context, &r.agent)?;
            resolved.push(([self.world_id, agent], r));
        }
        copy(
            self.tx.client(),
            "agent_schedules (world_id, agent_id, days_of_week, start_minute, end_minute, \
             activity, location, priority, flexible, position)",
            &[
                Type::INT8,
                Type::INT8,
                Type::INT2_ARRAY,
                Type::INT2,
                Type::INT2,
                Type::TEXT,
                Type::TEXT,
                Type::INT2,
                Type::BOOL,
                Type::INT2,
            ],
            &resolved,
            |([w, a], r)| {
                [
                    w,
                    a,
                    &r.days_of_week,
                    &r.start_minute,
                    &r.end_minute,
                    &r.activity,
                    &r.location,
                    &r.priority,
                    &r.flexible,
                    &r.position,
                ]
            },
        )
        .await
    }

    async fn plans(&mut self, rows: Vec<PlanRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let agent = self.agent(
                Section::Plans,
                &|| format!("plan {} of '{}'", r.id, r.agent),
                &r.agent,
            )?;
            if let Some(parent) = r.parent_id {
                self.plan_parents.push((agent, r.id, parent));
            }
            resolved.push(([agent, r.id, self.world_id], r));
        }
        copy(
            self.tx.client(),
            "agent_plans (agent_id, id, world_id, goal, steps, current_step, status, priority, \
             deadline, created_game_time, updated_tick)",
            &[
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::JSONB,
                Type::INT4,
                Type::TEXT,
                Type::INT2,
                Type::TIMESTAMP,
                Type::TIMESTAMP,
                Type::INT8,
            ],
            &resolved,
            |([a, id, w], r)| {
                [
                    a,
                    id,
                    w,
                    &r.goal,
                    &r.steps,
                    &r.current_step,
                    &r.status,
                    &r.priority,
                    &r.deadline,
                    &r.created_game_time,
                    &r.updated_tick,
                ]
            },
        )
        .await
    }

    async fn conversations(&mut self, rows: Vec<ConversationRecord>) -> Result<u64, TransferError> {
        let resolved: Vec<(i64, &ConversationRecord)> =
            rows.iter().map(|r| (self.world_id, r)).collect();
        copy(
            self.tx.client(),
            "conversations (world_id, id, kind, location, topic, started_game_time, \
             ended_game_time)",
            &[
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TIMESTAMP,
                Type::TIMESTAMP,
            ],
            &resolved,
            |(w, r)| {
                [
                    w,
                    &r.id,
                    &r.kind,
                    &r.location,
                    &r.topic,
                    &r.started_game_time,
                    &r.ended_game_time,
                ]
            },
        )
        .await
    }

    async fn participants(&mut self, rows: Vec<ParticipantRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("a participant of conversation {}", r.conversation);
            let agent = r
                .agent
                .as_deref()
                .map(|s| self.agent(Section::Participants, &context, s))
                .transpose()?;
            let character = r
                .character
                .as_deref()
                .map(|c| self.character(Section::Participants, &context, c))
                .transpose()?;
            resolved.push((self.world_id, agent, character, r));
        }
        copy(
            self.tx.client(),
            "conversation_participants (world_id, conversation_id, agent_id, character_id, \
             joined_game_time, left_game_time)",
            &[
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::TIMESTAMP,
                Type::TIMESTAMP,
            ],
            &resolved,
            |(w, a, c, r)| {
                [
                    w,
                    &r.conversation,
                    a,
                    c,
                    &r.joined_game_time,
                    &r.left_game_time,
                ]
            },
        )
        .await
    }

    async fn messages(&mut self, rows: Vec<MessageRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("message {} of conversation {}", r.seq, r.conversation);
            let agent = r
                .speaker_agent
                .as_deref()
                .map(|s| self.agent(Section::Messages, &context, s))
                .transpose()?;
            let character = r
                .speaker_character
                .as_deref()
                .map(|c| self.character(Section::Messages, &context, c))
                .transpose()?;
            resolved.push((self.world_id, agent, character, r));
        }
        copy(
            self.tx.client(),
            "messages (world_id, conversation_id, seq, speaker_agent_id, speaker_character_id, \
             text, emotional_tone, game_time)",
            &[
                Type::INT8,
                Type::INT8,
                Type::INT4,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TIMESTAMP,
            ],
            &resolved,
            |(w, a, c, r)| {
                [
                    w,
                    &r.conversation,
                    &r.seq,
                    a,
                    c,
                    &r.text,
                    &r.emotional_tone,
                    &r.game_time,
                ]
            },
        )
        .await
    }

    async fn memories(&mut self, rows: Vec<MemoryRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in rows {
            let context = || format!("memory {} of '{}'", r.id, r.agent);
            let agent_id = self.agent(Section::Memories, &context, &r.agent)?;
            self.check_dim(Section::Memories, &context, r.embedding.as_ref())?;
            let related_agent_ids = r
                .related_agents
                .iter()
                .map(|s| self.agent(Section::Memories, &context, s))
                .collect::<Result<Vec<i64>, _>>()?;
            let related_character_ids = r
                .related_characters
                .iter()
                .map(|c| self.character(Section::Memories, &context, c))
                .collect::<Result<Vec<i64>, _>>()?;
            resolved.push(MemoryRow {
                world_id: self.world_id,
                agent_id,
                id: r.id,
                kind: r.kind,
                content: r.content,
                importance: r.importance,
                emotional_valence: r.emotional_valence,
                emotional_intensity: r.emotional_intensity,
                tags: r.tags,
                related_agent_ids,
                related_character_ids,
                location: r.location,
                created_game_time: r.created_game_time,
                last_accessed_game_time: r.last_accessed_game_time,
                depth: r.depth,
                evidence_ids: r.evidence_ids,
                embedding: r.embedding,
            });
        }
        Ok(memories::copy_in(self.tx.client(), &resolved).await?)
    }

    async fn lore_documents(
        &mut self,
        rows: Vec<LoreDocumentRecord>,
    ) -> Result<u64, TransferError> {
        let resolved: Vec<(i64, &LoreDocumentRecord)> =
            rows.iter().map(|r| (self.world_id, r)).collect();
        let n = copy(
            self.tx.client(),
            "lore_documents (world_id, path, title, content_hash, created_at, updated_at)",
            &[
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::BYTEA,
                Type::TIMESTAMPTZ,
                Type::TIMESTAMPTZ,
            ],
            &resolved,
            |(w, r)| {
                [
                    w,
                    &r.path,
                    &r.title,
                    &r.content_hash,
                    &r.created_at,
                    &r.updated_at,
                ]
            },
        )
        .await?;
        let paths: Vec<&str> = rows.iter().map(|r| r.path.as_str()).collect();
        self.lore_documents.extend(
            self.ids_of(
                "SELECT path, id FROM lore_documents WHERE world_id = $1 AND path = ANY($2)",
                &paths,
            )
            .await?,
        );
        Ok(n)
    }

    async fn lore_chunks(&mut self, rows: Vec<LoreChunkRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("chunk {} of '{}'", r.ordinal, r.document);
            let document = lookup(
                &self.lore_documents,
                Section::LoreChunks,
                &context,
                "lore document",
                &r.document,
            )?;
            let dim = self.check_dim(Section::LoreChunks, &context, r.embedding.as_ref())?;
            let embedding = r.embedding.clone().map(Vector::from);
            resolved.push((self.world_id, document, embedding, dim, r));
        }
        let vector = vector_type(self.tx.client()).await?;
        copy(
            self.tx.client(),
            "lore_chunks (world_id, document_id, ordinal, text, embedding, embedding_dim)",
            &[
                Type::INT8,
                Type::INT8,
                Type::INT4,
                Type::TEXT,
                vector,
                Type::INT4,
            ],
            &resolved,
            |(w, d, e, dim, r)| [w, d, &r.ordinal, &r.text, e, dim],
        )
        .await
    }

    async fn llm_calls(&mut self, rows: Vec<LlmCallRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("an LLM call of {}", r.created_at);
            let agent = r
                .agent
                .as_deref()
                .map(|s| self.agent(Section::LlmCalls, &context, s))
                .transpose()?;
            resolved.push((self.world_id, agent, r));
        }
        copy(
            self.tx.client(),
            "llm_calls (world_id, agent_id, kind, model, prompt, response, latency_ms, \
             prompt_tokens, completion_tokens, error, game_time, created_at)",
            &[
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::INT4,
                Type::INT4,
                Type::INT4,
                Type::TEXT,
                Type::TIMESTAMP,
                Type::TIMESTAMPTZ,
            ],
            &resolved,
            |(w, a, r)| {
                [
                    w,
                    a,
                    &r.kind,
                    &r.model,
                    &r.prompt,
                    &r.response,
                    &r.latency_ms,
                    &r.prompt_tokens,
                    &r.completion_tokens,
                    &r.error,
                    &r.game_time,
                    &r.created_at,
                ]
            },
        )
        .await
    }

    async fn sim_metrics(&mut self, rows: Vec<SimMetricRecord>) -> Result<u64, TransferError> {
        let resolved: Vec<(i64, &SimMetricRecord)> =
            rows.iter().map(|r| (self.world_id, r)).collect();
        copy(
            self.tx.client(),
            "sim_metrics (world_id, tick, game_time, recorded_at, agents, tick_ms_p50, \
             tick_ms_p99, tick_ms_max, flush_ms, rows_flushed, queue_depth)",
            &[
                Type::INT8,
                Type::INT8,
                Type::TIMESTAMP,
                Type::TIMESTAMPTZ,
                Type::INT4,
                Type::FLOAT4,
                Type::FLOAT4,
                Type::FLOAT4,
                Type::FLOAT4,
                Type::INT4,
                Type::INT4,
            ],
            &resolved,
            |(w, r)| {
                [
                    w,
                    &r.tick,
                    &r.game_time,
                    &r.recorded_at,
                    &r.agents,
                    &r.tick_ms_p50,
                    &r.tick_ms_p99,
                    &r.tick_ms_max,
                    &r.flush_ms,
                    &r.rows_flushed,
                    &r.queue_depth,
                ]
            },
        )
        .await
    }

    async fn event_log(&mut self, rows: Vec<EventRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("the event '{}' of {}", r.action, r.created_at);
            let user = r
                .user
                .as_deref()
                .map(|u| self.user(Section::EventLog, &context, u))
                .transpose()?;
            resolved.push((self.world_id, user, r));
        }
        copy(
            self.tx.client(),
            "event_log (world_id, user_id, actor, action, target, details, created_at)",
            &[
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::JSONB,
                Type::TIMESTAMPTZ,
            ],
            &resolved,
            |(w, u, r)| {
                [
                    w,
                    u,
                    &r.actor,
                    &r.action,
                    &r.target,
                    &r.details,
                    &r.created_at,
                ]
            },
        )
        .await
    }

    /// `(key, id)` pairs of the rows just written: `sql` takes the world id
    /// and the keys.
    async fn ids_of(&self, sql: &str, keys: &[&str]) -> Result<Vec<(String, i64)>, TransferError> {
        self.tx
            .query(sql, &[&self.world_id, &keys])
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}

const RELATIONSHIP_TYPES: [Type; 10] = [
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::FLOAT4,
    Type::FLOAT4,
    Type::INT4,
    Type::TIMESTAMP,
    Type::TEXT,
    Type::INT8,
];

fn lookup(
    map: &HashMap<String, i64>,
    section: Section,
    context: &dyn Fn() -> String,
    what: &'static str,
    key: &str,
) -> Result<i64, TransferError> {
    map.get(key)
        .copied()
        .ok_or_else(|| TransferError::UnknownReference {
            section: section.key(),
            context: context(),
            what,
            key: key.to_owned(),
        })
}

/// The `vector` type of this database (an extension type: its OID varies).
async fn vector_type(client: &Client) -> Result<Type, TransferError> {
    let statement = client.prepare("SELECT $1::vector").await?;
    statement
        .params()
        .first()
        .cloned()
        .ok_or_else(|| TransferError::Invalid("the vector type has no parameter type".into()))
}

/// Binary-COPYs `rows` into `target` (`table (columns)`), each row's values
/// given by `values` in the order of `types`. Returns the rows written.
async fn copy<R, const N: usize>(
    client: &Client,
    target: &str,
    types: &[Type; N],
    rows: &[R],
    values: fn(&R) -> [&(dyn ToSql + Sync); N],
) -> Result<u64, TransferError> {
    let sink = client
        .copy_in(&format!("COPY {target} FROM STDIN (FORMAT binary)"))
        .await?;
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, types));
    for row in rows {
        writer.as_mut().write(&values(row)).await?;
    }
    Ok(writer.finish().await?)
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
