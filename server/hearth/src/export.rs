//! `hearth export` and `hearth import`: the world document — a versioned
//! JSON object, `{"format": "hearth.world", "version": 1, …}`, with one array
//! per table (docs/export.md) — written from a database snapshot with a
//! progress bar, and read back in one pass into a new world. Touches the
//! database only through `hearth_db::export`, the document (a file, or the
//! command's output writer) and stderr for the progress bar.
//!
//! # Layout of a document
//! The header (`format`, `version`, `hearth`, `exported_at`), then `world`
//! and `checkpoint`, then every section of [`Section::ALL`] in that order,
//! one record per line. Records name each other by natural key (agent slug,
//! character name, group name, username, lore path), never by database id,
//! so a document loads into any database.
//!
//! # Memory
//! Neither direction holds the whole world: export writes page by page
//! ([`hearth_db::export::PAGE_ROWS`] rows), and import parses on a blocking
//! thread that hands pages of [`SectionRecord::CHUNK`] records to the
//! writer through a channel of [`PAGES_IN_FLIGHT`] pages.
//!
//! # Why the record types look unused
//! Each document type below is a serde *remote* mirror of a
//! `hearth_db::export` record: the derive generates (de)serialisation of the
//! database record itself from the mirror's fields and attributes, and the
//! compiler checks that both have the same fields. The mirrors are the
//! format's definition; a change to either side fails to build until the
//! other (and, if the document changes, [`VERSION`]) follows.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use hearth_db::export::{
    self as db, CheckpointRecord, GameTime, Imported, Importer, Page, Section, Snapshot,
    TransferError, WallTime, WorldRecord,
};
use hearth_db::migrate::{self, MigrationState};
use hearth_db::{DbError, Migrations};
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tracing::{info, instrument};

/// The value of a document's `format` field.
pub const FORMAT: &str = "hearth.world";
/// The document version this build writes and reads. Any change to the
/// document (a field added, renamed or given another meaning) is a new
/// version; see docs/export.md for the policy.
pub const VERSION: u64 = 1;
/// Pages parsed ahead of the database writer during an import.
pub const PAGES_IN_FLIGHT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{source_name} is not JSON: {message} (line {line}, column {column})")]
    NotJson {
        source_name: String,
        message: String,
        line: usize,
        column: usize,
    },
    #[error(
        "{source_name} ends early, at line {line}, column {column}: the document is truncated \
         ({message}); nothing was imported"
    )]
    Truncated {
        source_name: String,
        message: String,
        line: usize,
        column: usize,
    },
    #[error("{source_name} is not a Hearth world document: {found}")]
    WrongFormat { source_name: String, found: String },
    #[error(
        "{source_name} is a world document of version {found}, which this hearth cannot read: \
         it reads version {VERSION}"
    )]
    UnsupportedVersion { source_name: String, found: String },
    /// A field missing, of the wrong type or unknown; sections out of order.
    #[error("{source_name}, line {line}, column {column}: {message}; nothing was imported")]
    Invalid {
        source_name: String,
        message: String,
        line: usize,
        column: usize,
    },
    #[error(
        "a world '{0}' already exists in the database: import under another name with \
         `--as NAME`; nothing was imported"
    )]
    WorldExists(String),
    #[error(
        "'{0}' is not a world name: use 1 to 63 of a-z, 0-9, '_' and '-', starting with a letter or digit"
    )]
    BadSlug(String),
    /// The document refers to something it does not define, or a vector of
    /// another dimension than the world's.
    #[error("{source_name}: {error}; nothing was imported")]
    Import {
        source_name: String,
        error: TransferError,
    },
    #[error(
        "the database schema is at version {at}, but this hearth needs version {needs}: run \
         `hearth db migrate` first"
    )]
    Schema { at: i64, needs: i64 },
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error("{}: {error}", path.display())]
    File { path: PathBuf, error: io::Error },
    #[error("writing the document: {0}")]
    Write(#[from] io::Error),
    #[error("reading {source_name}: {message}")]
    Read {
        source_name: String,
        message: String,
    },
    #[error("the import stopped: {0}")]
    Internal(String),
}

impl From<DbError> for ExportError {
    fn from(e: DbError) -> Self {
        ExportError::Transfer(e.into())
    }
}

// ---------------------------------------------------------------------------
// The document, version 1
// ---------------------------------------------------------------------------

/// Bytes as standard base64 (with padding).
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text)
            .map_err(|e| de::Error::custom(format!("not base64: {e}")))
    }
}

/// Optional bytes as standard base64, or `null`.
mod base64_opt {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_some(&STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| {
                STANDARD
                    .decode(text)
                    .map_err(|e| de::Error::custom(format!("not base64: {e}")))
            })
            .transpose()
    }
}

/// `world`: the world itself. Wall-clock times (`*_at`) are RFC 3339 in UTC
/// and are restored as they were; game times are ISO 8601 without a zone
/// (the world's own calendar, game second 0 = 2001-01-01T00:00:00).
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::WorldRecord", deny_unknown_fields)]
pub struct World {
    /// The world's unique name, `^[a-z0-9][a-z0-9_-]{0,62}$`; `hearth import
    /// --as NAME` replaces it.
    pub slug: String,
    /// Its display name.
    pub name: String,
    /// The model every vector of the world was made with.
    pub embedding_model: String,
    /// The length of every `embedding` in the document (1 ..= 16000).
    pub embedding_dim: i32,
    /// The world's settings object.
    pub settings: Value,
    pub created_at: WallTime,
    pub updated_at: WallTime,
    pub archived_at: Option<WallTime>,
}

/// `checkpoint`: the newest checkpoint, where a server resumes the world
/// (older ones are not exported), or `null`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::CheckpointRecord", deny_unknown_fields)]
pub struct Checkpoint {
    /// The tick the stored state is at.
    pub tick: i64,
    /// The world clock at that tick.
    pub game_time: GameTime,
    pub committed_at: WallTime,
    /// The world's own resume state (clock, conversations under way,
    /// counters), opaque bytes serialised by hearth, in base64.
    #[serde(default, with = "base64_opt")]
    pub state: Option<Vec<u8>>,
}

/// `users`: the accounts the world refers to — owners of its characters,
/// its members, users of its logged events. Neither emails nor password
/// hashes are exported: an import reuses the account of the same username
/// (case-insensitive), or creates it locked (no password works until an
/// administrator sets one).
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::UserRecord", deny_unknown_fields)]
pub struct User {
    pub username: String,
    pub created_at: WallTime,
}

/// `members`: who may do what in the world.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::MemberRecord", deny_unknown_fields)]
pub struct Member {
    /// A username of `users`.
    pub username: String,
    /// `admin`, `designer`, `player` or `spectator`.
    pub role: String,
    pub created_at: WallTime,
}

/// `characters`: players' bodies in the world, by name.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::CharacterRecord", deny_unknown_fields)]
pub struct Character {
    /// Unique in the world; how other records name the character.
    pub name: String,
    /// The username (of `users`) that plays it.
    pub owner: String,
    pub x: f32,
    pub y: f32,
    pub location_name: Option<String>,
    pub created_at: WallTime,
    pub updated_at: WallTime,
}

/// `agents`: the agents as their designers' files defined them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::AgentRecord", deny_unknown_fields)]
pub struct Agent {
    /// Unique in the world; how other records name the agent.
    pub slug: String,
    pub name: String,
    /// The designer's file as it was loaded.
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
    /// Set when the agent's file was removed: kept with its history.
    pub archived_at: Option<WallTime>,
}

/// `agent_states`: each agent's live state at the checkpoint.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::AgentStateRecord", deny_unknown_fields)]
pub struct AgentState {
    /// The agent's slug.
    pub agent: String,
    pub x: f32,
    pub y: f32,
    /// `n`, `ne`, `e`, `se`, `s`, `sw`, `w` or `nw`.
    pub facing: String,
    pub action: String,
    pub action_started_at: Option<GameTime>,
    pub action_target: Option<String>,
    /// Where the agent is walking to: both or neither.
    pub target_x: Option<f32>,
    pub target_y: Option<f32>,
    pub location_name: Option<String>,
    /// 0 ..= 1.
    pub energy: f32,
    /// -1 ..= 1.
    pub mood: f32,
    pub emotional_state: Value,
    pub physical_state: Value,
    /// 0 ..= 1.
    pub cognitive_load: f32,
    pub updated_tick: i64,
    /// The agent's simulation components, opaque bytes serialised by hearth,
    /// in base64.
    #[serde(default, with = "base64_opt")]
    pub sim: Option<Vec<u8>>,
}

/// `relationships`: what one agent thinks of another.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::RelationshipRecord", deny_unknown_fields)]
pub struct Relationship {
    /// The slug of the agent who holds the opinion.
    pub agent: String,
    /// The slug of the agent it is about.
    pub target: String,
    /// `acquaintance`, `friend`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// -100 ..= 100.
    pub affection: f32,
    /// 0 ..= 100.
    pub trust: f32,
    pub interaction_count: i32,
    pub last_interaction: Option<GameTime>,
    /// What the agent keeps in mind about the other, for prompts.
    pub summary: String,
    pub updated_tick: i64,
}

/// `character_relationships`: what an agent thinks of a player's character.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::CharacterRelationshipRecord", deny_unknown_fields)]
pub struct CharacterRelationship {
    /// The agent's slug.
    pub agent: String,
    /// The character's name.
    pub character: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub affection: f32,
    pub trust: f32,
    pub interaction_count: i32,
    pub last_interaction: Option<GameTime>,
    pub summary: String,
    pub updated_tick: i64,
}

/// `groups`: coalitions of agents, by name.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::GroupRecord", deny_unknown_fields)]
pub struct Group {
    /// Unique in the world; how other records name the group.
    pub name: String,
    pub goal: String,
    /// An array.
    pub rules: Value,
    /// `forming`, `active` or `dissolved`.
    pub status: String,
    /// Resources held in common, by name: `{"coins": 12}`.
    pub shared_pool: Value,
    pub created_game_time: GameTime,
    pub updated_tick: i64,
}

/// `group_members`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::GroupMemberRecord", deny_unknown_fields)]
pub struct GroupMember {
    /// The group's name.
    pub group: String,
    /// The agent's slug.
    pub agent: String,
    pub role: String,
    pub joined_game_time: GameTime,
}

/// `knowledge`: facts agents can know, in the order they were recorded.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::KnowledgeRecord", deny_unknown_fields)]
pub struct Knowledge {
    /// `personal` (owned by an agent), `shared` (a group or an access list)
    /// or `global`.
    pub scope: String,
    /// The owning agent's slug.
    pub owner_agent: Option<String>,
    /// The owning group's name.
    pub owner_group: Option<String>,
    /// A triple (all three), or `text`, or both.
    pub subject: Option<String>,
    pub predicate: Option<String>,
    pub object: Option<String>,
    pub text: Option<String>,
    /// Slugs of the agents a shared fact is open to.
    pub access_agents: Vec<String>,
    /// 0 ..= 1.
    pub confidence: f32,
    pub created_game_time: GameTime,
}

/// `schedules`: the agents' routines, by agent and position.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::ScheduleRecord", deny_unknown_fields)]
pub struct ScheduleEntry {
    /// The agent's slug.
    pub agent: String,
    /// ISO days, 1 (Monday) ..= 7; empty means every day.
    pub days_of_week: Vec<i16>,
    /// Minutes after midnight; an entry may cross midnight.
    pub start_minute: i16,
    pub end_minute: i16,
    pub activity: String,
    pub location: String,
    /// 1 ..= 10.
    pub priority: i16,
    pub flexible: bool,
    pub position: i16,
}

/// `plans`: the agents' plans, decomposed (day → hour block → step).
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::PlanRecord", deny_unknown_fields)]
pub struct Plan {
    /// The agent's slug.
    pub agent: String,
    /// The plan's id among the agent's plans (kept as is).
    pub id: i64,
    /// The id of the plan this one decomposes, among the same agent's.
    pub parent_id: Option<i64>,
    pub goal: String,
    /// An array.
    pub steps: Value,
    pub current_step: i32,
    /// `pending`, `active`, `done`, `abandoned` or `failed`.
    pub status: String,
    pub priority: i16,
    pub deadline: Option<GameTime>,
    pub created_game_time: GameTime,
    pub updated_tick: i64,
}

/// `conversations`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::ConversationRecord", deny_unknown_fields)]
pub struct Conversation {
    /// The conversation's id in the world (kept as is).
    pub id: i64,
    /// `direct`, `group`, `broadcast` or `system`.
    pub kind: String,
    pub location: Option<String>,
    pub topic: Option<String>,
    pub started_game_time: GameTime,
    /// `null` while it goes on.
    pub ended_game_time: Option<GameTime>,
}

/// `conversation_participants`: exactly one of `agent` and `character`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::ParticipantRecord", deny_unknown_fields)]
pub struct Participant {
    /// The conversation's id.
    pub conversation: i64,
    /// An agent's slug.
    pub agent: Option<String>,
    /// A character's name.
    pub character: Option<String>,
    pub joined_game_time: GameTime,
    pub left_game_time: Option<GameTime>,
}

/// `messages`: the lines of conversations, in order.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::MessageRecord", deny_unknown_fields)]
pub struct Message {
    /// The conversation's id.
    pub conversation: i64,
    /// The line's position in it, from 0.
    pub seq: i32,
    /// At most one speaker: an agent's slug, or a character's name; neither
    /// for system lines.
    pub speaker_agent: Option<String>,
    pub speaker_character: Option<String>,
    pub text: String,
    pub emotional_tone: Option<String>,
    pub game_time: GameTime,
}

/// `memories`: every agent's memory stream, with embeddings.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::MemoryRecord", deny_unknown_fields)]
pub struct Memory {
    /// The agent's slug.
    pub agent: String,
    /// The memory's id in the agent's stream (kept as is), from 1.
    pub id: i64,
    /// `observation`, `conversation`, `reflection`, `plan` or
    /// `metacognition`.
    pub kind: String,
    pub content: String,
    /// 1 ..= 10.
    pub importance: i16,
    /// -1 ..= 1.
    pub emotional_valence: f32,
    /// 0 ..= 1.
    pub emotional_intensity: f32,
    pub tags: Vec<String>,
    /// Slugs of the agents the memory is about.
    pub related_agents: Vec<String>,
    /// Names of the characters the memory is about.
    pub related_characters: Vec<String>,
    pub location: Option<String>,
    pub created_game_time: GameTime,
    pub last_accessed_game_time: GameTime,
    /// 0 for what was perceived; 1 + the deepest evidence for reflections.
    pub depth: i16,
    /// Ids of the same agent's memories a reflection rests on.
    pub evidence_ids: Vec<i64>,
    /// `embedding_dim` numbers, or `null` before the embedder ran.
    pub embedding: Option<Vec<f32>>,
}

/// `lore_documents`: the world's lore files, by path.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::LoreDocumentRecord", deny_unknown_fields)]
pub struct LoreDocument {
    /// The file's path under `assets/lore/`; how chunks name it.
    pub path: String,
    pub title: String,
    /// SHA-256 of the file, in base64.
    #[serde(with = "base64_bytes")]
    pub content_hash: Vec<u8>,
    pub created_at: WallTime,
    pub updated_at: WallTime,
}

/// `lore_chunks`: the searched pieces of the lore documents.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::LoreChunkRecord", deny_unknown_fields)]
pub struct LoreChunk {
    /// The document's path.
    pub document: String,
    /// The chunk's position in it, from 0.
    pub ordinal: i32,
    pub text: String,
    /// `embedding_dim` numbers, or `null`.
    pub embedding: Option<Vec<f32>>,
}

/// `llm_calls`: every call made to a language or embedding model.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::LlmCallRecord", deny_unknown_fields)]
pub struct LlmCall {
    /// The slug of the agent it was for.
    pub agent: Option<String>,
    /// What it was for: `plan`, `converse`, `embed`, …
    pub kind: String,
    pub model: String,
    pub prompt: String,
    /// The answer, or `null` with `error` set.
    pub response: Option<String>,
    pub latency_ms: i32,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub error: Option<String>,
    pub game_time: Option<GameTime>,
    pub created_at: WallTime,
}

/// `sim_metrics`: how the simulation and its writer performed, per
/// checkpoint.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::SimMetricRecord", deny_unknown_fields)]
pub struct SimMetric {
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

/// `event_log`: the world's audit trail.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "db::EventRecord", deny_unknown_fields)]
pub struct Event {
    /// The username of the user who acted, if one did.
    pub user: Option<String>,
    /// `user:alice`, `system`, `cli`, …
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub details: Value,
    pub created_at: WallTime,
}

/// A database record with a document mirror.
trait Mirrored: Sized {
    fn serialize_doc<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
    fn deserialize_doc<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

/// The record of one section.
trait SectionRecord: Mirrored + Send + 'static {
    /// Records per page handed from the parser to the database writer.
    const CHUNK: usize;
    fn into_page(rows: Vec<Self>) -> Page;
}

/// Serialises a record as its mirror.
struct Doc<'a, T>(&'a T);

impl<T: Mirrored> Serialize for Doc<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_doc(s)
    }
}

/// Deserialises a record from its mirror.
struct Owned<T>(T);

impl<'de, T: Mirrored> Deserialize<'de> for Owned<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize_doc(d).map(Owned)
    }
}

macro_rules! mirrored {
    ($($record:ty => $doc:ident),* $(,)?) => {$(
        impl Mirrored for $record {
            fn serialize_doc<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $doc::serialize(self, s)
            }
            fn deserialize_doc<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $doc::deserialize(d)
            }
        }
    )*};
}

/// Every section: its page variant, record, mirror and chunk size (smaller
/// for records that carry a vector). Generates the record traits and the
/// two dispatches on the section.
macro_rules! sections {
    ($($variant:ident: $record:ty => $doc:ident, $chunk:expr;)*) => {
        mirrored!($($record => $doc),*);
        $(
            impl SectionRecord for $record {
                const CHUNK: usize = $chunk;
                fn into_page(rows: Vec<Self>) -> Page {
                    Page::$variant(rows)
                }
            }
        )*

        fn write_page<W: Write + ?Sized>(out: &mut W, page: &Page, first: &mut bool) -> io::Result<()> {
            match page {
                $(Page::$variant(rows) => write_records(out, rows, first),)*
            }
        }

        fn read_section<'de, A: MapAccess<'de>>(
            map: &mut A,
            section: Section,
            parser: &Parser,
        ) -> Result<(), A::Error> {
            match section {
                $(Section::$variant => map.next_value_seed(SectionSeed::<$record>::new(parser)),)*
            }
        }
    };
}

mirrored!(db::WorldRecord => World, db::CheckpointRecord => Checkpoint);

sections! {
    Users: db::UserRecord => User, 1000;
    Members: db::MemberRecord => Member, 1000;
    Characters: db::CharacterRecord => Character, 1000;
    Agents: db::AgentRecord => Agent, 500;
    AgentStates: db::AgentStateRecord => AgentState, 1000;
    Relationships: db::RelationshipRecord => Relationship, 1000;
    CharacterRelationships: db::CharacterRelationshipRecord => CharacterRelationship, 1000;
    Groups: db::GroupRecord => Group, 1000;
    GroupMembers: db::GroupMemberRecord => GroupMember, 1000;
    Knowledge: db::KnowledgeRecord => Knowledge, 1000;
    Schedules: db::ScheduleRecord => ScheduleEntry, 1000;
    Plans: db::PlanRecord => Plan, 1000;
    Conversations: db::ConversationRecord => Conversation, 1000;
    Participants: db::ParticipantRecord => Participant, 1000;
    Messages: db::MessageRecord => Message, 1000;
    Memories: db::MemoryRecord => Memory, 256;
    LoreDocuments: db::LoreDocumentRecord => LoreDocument, 1000;
    LoreChunks: db::LoreChunkRecord => LoreChunk, 256;
    LlmCalls: db::LlmCallRecord => LlmCall, 256;
    SimMetrics: db::SimMetricRecord => SimMetric, 1000;
    EventLog: db::EventRecord => Event, 1000;
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub world: String,
    /// Rows per section (sections without rows are absent).
    pub rows: BTreeMap<Section, u64>,
    /// References to agents or characters that no longer exist, left out.
    pub dangling: u64,
}

/// `agents 3, memories 120, …`: the non-empty sections and their rows.
pub fn describe_rows(rows: &BTreeMap<Section, u64>) -> String {
    let parts: Vec<String> = rows
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    if parts.is_empty() {
        "no rows".into()
    } else {
        parts.join(", ")
    }
}

fn write_records<W: Write + ?Sized, T: Mirrored>(
    out: &mut W,
    rows: &[T],
    first: &mut bool,
) -> io::Result<()> {
    for r in rows {
        out.write_all(if *first { b"\n" } else { b",\n" })?;
        *first = false;
        serde_json::to_writer(&mut *out, &Doc(r))?;
    }
    Ok(())
}

/// Writes world `slug` as a document to `out`, reading it in one consistent
/// snapshot; `bar` counts rows. The output is a function of the world's
/// contents alone (plus `exported_at`): sections, records and keys come in a
/// fixed order.
#[instrument(skip_all, fields(world = slug))]
pub async fn export_world<W: Write + Send + ?Sized>(
    client: &mut Client,
    slug: &str,
    out: &mut W,
    bar: &ProgressBar,
) -> Result<ExportSummary, ExportError> {
    let mut snapshot = Snapshot::begin(client, slug).await?;
    let mut total = 0;
    for section in Section::ALL {
        total += snapshot.count(section).await?;
    }
    bar.set_length(total);
    let exported_at = WallTime::from(std::time::SystemTime::now());
    write!(
        out,
        "{{\"format\":{},\"version\":{VERSION},\"hearth\":{},\"exported_at\":{},\n\"world\":",
        serde_json::to_string(FORMAT).map_err(io::Error::from)?,
        serde_json::to_string(env!("CARGO_PKG_VERSION")).map_err(io::Error::from)?,
        serde_json::to_string(&exported_at).map_err(io::Error::from)?,
    )?;
    serde_json::to_writer(&mut *out, &Doc(snapshot.world())).map_err(io::Error::from)?;
    out.write_all(b",\n\"checkpoint\":")?;
    let checkpoint = snapshot.checkpoint().await?;
    serde_json::to_writer(&mut *out, &checkpoint.as_ref().map(Doc)).map_err(io::Error::from)?;
    let mut summary = ExportSummary {
        world: slug.to_owned(),
        ..ExportSummary::default()
    };
    for section in Section::ALL {
        write!(out, ",\n\"{}\":[", section.key())?;
        let mut first = true;
        let mut cursor = snapshot.open(section).await?;
        while let Some(page) = snapshot.next_page(&mut cursor).await? {
            write_page(out, &page, &mut first)?;
            let n = page.len() as u64;
            *summary.rows.entry(section).or_default() += n;
            bar.inc(n);
        }
        out.write_all(b"]")?;
    }
    out.write_all(b"}\n")?;
    out.flush()?;
    summary.dangling = snapshot.finish().await?;
    info!(world = slug, rows = %describe_rows(&summary.rows), "world exported");
    Ok(summary)
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/// What the parser hands the database writer, in document order.
#[derive(Debug)]
enum Part {
    /// The world (renamed if asked) and its checkpoint: create it.
    Begin(Box<WorldRecord>, Option<CheckpointRecord>),
    Rows(Page),
}

/// Why parsing stopped, when serde's error is only a message.
#[derive(Debug)]
enum Stop {
    Error(ExportError),
    /// The writer failed and went away; its error is the one to report.
    WriterGone,
}

/// The parsing side of an import: runs on a blocking thread.
struct Parser {
    sink: mpsc::Sender<Part>,
    /// The typed reason behind a custom serde error.
    stop: RefCell<Option<Stop>>,
    rename: Option<String>,
    source_name: String,
}

impl Parser {
    /// Records `stop` and returns a serde error that unwinds the parse.
    fn fail<E: de::Error>(&self, stop: Stop) -> E {
        let message = match &stop {
            Stop::Error(e) => e.to_string(),
            Stop::WriterGone => "the import stopped".to_owned(),
        };
        *self.stop.borrow_mut() = Some(stop);
        E::custom(message)
    }

    fn send<E: de::Error>(&self, part: Part) -> Result<(), E> {
        self.sink
            .blocking_send(part)
            .map_err(|_| self.fail(Stop::WriterGone))
    }
}

/// The order of a document's keys: the header, `world`, `checkpoint`, then
/// the sections in [`Section::ALL`] order.
fn rank(key: &str) -> Option<usize> {
    Some(match key {
        "format" => 0,
        "version" => 1,
        "hearth" => 2,
        "exported_at" => 3,
        "world" => 4,
        "checkpoint" => 5,
        _ => 6 + Section::ALL.iter().position(|s| s.key() == key)?,
    })
}

struct DocumentSeed<'p>(&'p Parser);

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Hearth world document (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let p = self.0;
        let mut next_rank = 0;
        let mut keys = 0;
        let mut world: Option<WorldRecord> = None;
        let mut begun = false;
        let begin = |world: &mut Option<WorldRecord>, checkpoint| -> Result<(), A::Error> {
            let Some(w) = world.take() else {
                return Err(de::Error::custom(
                    "the document has no \"world\" before its sections",
                ));
            };
            p.send(Part::Begin(Box::new(w), checkpoint))
        };
        while let Some(key) = map.next_key::<String>()? {
            if keys == 0 && key != "format" {
                return Err(p.fail(Stop::Error(ExportError::WrongFormat {
                    source_name: p.source_name.clone(),
                    found: format!("it begins with \"{key}\", not \"format\": \"{FORMAT}\""),
                })));
            }
            if keys == 1 && key != "version" {
                return Err(de::Error::custom(format!(
                    "\"version\" must follow \"format\", found \"{key}\""
                )));
            }
            keys += 1;
            let Some(key_rank) = rank(&key) else {
                return Err(de::Error::custom(format!("unknown field \"{key}\"")));
            };
            if key_rank < next_rank {
                return Err(de::Error::custom(format!(
                    "\"{key}\" is repeated or out of place: a document's fields come in the \
                     order an export writes them (docs/export.md)"
                )));
            }
            next_rank = key_rank + 1;
            match key.as_str() {
                "format" => {
                    let format: Value = map.next_value()?;
                    if format != FORMAT {
                        return Err(p.fail(Stop::Error(ExportError::WrongFormat {
                            source_name: p.source_name.clone(),
                            found: format!("its format is {format}, not \"{FORMAT}\""),
                        })));
                    }
                }
                "version" => {
                    let version: Value = map.next_value()?;
                    if version != VERSION {
                        return Err(p.fail(Stop::Error(ExportError::UnsupportedVersion {
                            source_name: p.source_name.clone(),
                            found: version.to_string(),
                        })));
                    }
                }
                "hearth" | "exported_at" => {
                    map.next_value::<IgnoredAny>()?;
                }
                "world" => {
                    let Owned(mut w) = map.next_value::<Owned<WorldRecord>>()?;
                    if let Some(name) = &p.rename {
                        w.slug = name.clone();
                    }
                    world = Some(w);
                }
                "checkpoint" => {
                    let checkpoint = map
                        .next_value::<Option<Owned<CheckpointRecord>>>()?
                        .map(|c| c.0);
                    begin(&mut world, checkpoint)?;
                    begun = true;
                }
                _ => {
                    if !begun {
                        begin(&mut world, None)?;
                        begun = true;
                    }
                    let section = Section::from_key(&key)
                        .ok_or_else(|| de::Error::custom(format!("unknown field \"{key}\"")))?;
                    read_section(&mut map, section, p)?;
                }
            }
        }
        if keys == 0 {
            return Err(p.fail(Stop::Error(ExportError::WrongFormat {
                source_name: p.source_name.clone(),
                found: "it is an empty object".into(),
            })));
        }
        if keys == 1 {
            return Err(de::Error::custom("the document has no \"version\""));
        }
        if !begun {
            begin(&mut world, None)?;
        }
        Ok(())
    }
}

/// Reads one section's array, handing it to the writer a page at a time.
struct SectionSeed<'p, T> {
    parser: &'p Parser,
    record: PhantomData<T>,
}

impl<'p, T> SectionSeed<'p, T> {
    fn new(parser: &'p Parser) -> Self {
        SectionSeed {
            parser,
            record: PhantomData,
        }
    }
}

impl<'de, T: SectionRecord> DeserializeSeed<'de> for SectionSeed<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: SectionRecord> Visitor<'de> for SectionSeed<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut rows = Vec::new();
        while let Some(Owned(record)) = seq.next_element::<Owned<T>>()? {
            rows.push(record);
            if rows.len() >= T::CHUNK {
                self.parser
                    .send(Part::Rows(T::into_page(std::mem::take(&mut rows))))?;
            }
        }
        if !rows.is_empty() {
            self.parser.send(Part::Rows(T::into_page(rows)))?;
        }
        Ok(())
    }
}

/// A serde_json error as this module's, with its position.
fn classify(e: &serde_json::Error, source_name: &str) -> ExportError {
    let (line, column) = (e.line(), e.column());
    let text = e.to_string();
    let message = text
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&text)
        .to_owned();
    let source_name = source_name.to_owned();
    match e.classify() {
        serde_json::error::Category::Io => ExportError::Read {
            source_name,
            message,
        },
        serde_json::error::Category::Syntax => ExportError::NotJson {
            source_name,
            message,
            line,
            column,
        },
        serde_json::error::Category::Eof => ExportError::Truncated {
            source_name,
            message,
            line,
            column,
        },
        serde_json::error::Category::Data => ExportError::Invalid {
            source_name,
            message,
            line,
            column,
        },
    }
}

/// Parses the whole document from `source`, sending its parts to `parser`'s
/// sink; anything after the document but white space is an error.
fn parse<R: Read>(source: R, parser: &Parser) -> Result<(), ExportError> {
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 16, source));
    let parsed = DocumentSeed(parser)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match parsed {
        Ok(()) => Ok(()),
        Err(e) => Err(match parser.stop.borrow_mut().take() {
            Some(Stop::Error(typed)) => typed,
            Some(Stop::WriterGone) => ExportError::Internal("the database writer stopped".into()),
            None => classify(&e, &parser.source_name),
        }),
    }
}

/// Counts the bytes read on a progress bar.
struct Counted<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Whether `slug` is a valid world slug (`^[a-z0-9][a-z0-9_-]{0,62}$`).
pub fn is_slug(slug: &str) -> bool {
    let mut chars = slug.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && slug.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Loads the document read from `source` (named `source_name` in messages)
/// into a new world, renamed to `as_name` if given, in one transaction:
/// either all of it is written, or — on any error: a malformed or truncated
/// document, a reference to something it does not define, an existing world
/// of that name — nothing is. `bar` counts the bytes read.
#[instrument(skip_all, fields(source = source_name))]
pub async fn import_world<R: Read + Send + 'static>(
    client: &mut Client,
    source: R,
    source_name: &str,
    as_name: Option<&str>,
    bar: &ProgressBar,
) -> Result<Imported, ExportError> {
    if let Some(name) = as_name
        && !is_slug(name)
    {
        return Err(ExportError::BadSlug(name.to_owned()));
    }
    let (sink, pages) = mpsc::channel(PAGES_IN_FLIGHT);
    let parser = Parser {
        sink,
        stop: RefCell::new(None),
        rename: as_name.map(str::to_owned),
        source_name: source_name.to_owned(),
    };
    let source = Counted {
        inner: source,
        bar: bar.clone(),
    };
    let parsing = tokio::task::spawn_blocking(move || parse(source, &parser));
    let written = write_parts(client, pages, source_name).await;
    let parsed = parsing
        .await
        .map_err(|e| ExportError::Internal(format!("the parser failed: {e}")))?;
    // the writer's error first: it is about an earlier part of the document
    // than whatever stopped the parser after it
    let importer = written?;
    parsed?;
    match importer {
        Some(importer) => Ok(importer.commit().await?),
        None => Err(ExportError::Internal(
            "the document created no world".into(),
        )),
    }
}

/// Writes the parts as they come; returns the importer, uncommitted, once
/// the parser has finished (or `None` if it sent nothing).
async fn write_parts<'c>(
    client: &'c mut Client,
    mut parts: mpsc::Receiver<Part>,
    source_name: &str,
) -> Result<Option<Importer<'c>>, ExportError> {
    let mut client = Some(client);
    let mut importer: Option<Importer<'c>> = None;
    let wrap = |error: TransferError| match error {
        TransferError::WorldExists(slug) => ExportError::WorldExists(slug),
        error => ExportError::Import {
            source_name: source_name.to_owned(),
            error,
        },
    };
    while let Some(part) = parts.recv().await {
        match part {
            Part::Begin(world, checkpoint) => {
                let Some(client) = client.take() else {
                    return Err(ExportError::Internal(
                        "a second world in one document".into(),
                    ));
                };
                importer = Some(
                    Importer::begin(client, &world, checkpoint.as_ref())
                        .await
                        .map_err(wrap)?,
                );
            }
            Part::Rows(page) => {
                let Some(importer) = importer.as_mut() else {
                    return Err(ExportError::Internal("rows before the world".into()));
                };
                importer.write(page).await.map_err(wrap)?;
            }
        }
    }
    Ok(importer)
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

/// A progress bar on stderr, hidden when stderr is not a terminal.
fn progress_bar(template: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Refuses a database whose schema is not this build's: the document's
/// tables would not match.
async fn check_schema(client: &Client, migrations: &Migrations) -> Result<(), ExportError> {
    let rows = migrate::status(client, migrations).await?;
    if let Some(problem) = migrate::problem(&rows, migrations.latest()) {
        return Err(DbError::from(problem).into());
    }
    if rows.iter().any(|r| r.state == MigrationState::Pending) {
        return Err(ExportError::Schema {
            at: migrate::current_version(&rows),
            needs: migrations.latest(),
        });
    }
    Ok(())
}

/// `hearth export --world SLUG [-o FILE]`: the document to FILE (written
/// beside it and renamed into place when complete, so FILE is never half a
/// document), or to `out`.
pub async fn export_command(
    client: &mut Client,
    migrations: &Migrations,
    world: &str,
    output: Option<&Path>,
    out: &mut (dyn Write + Send),
) -> Result<(), ExportError> {
    check_schema(client, migrations).await?;
    let bar = progress_bar("{spinner} exporting [{bar:40}] {pos}/{len} rows, {per_sec}, eta {eta}");
    let Some(path) = output else {
        let mut writer = BufWriter::with_capacity(1 << 16, out);
        export_world(client, world, &mut writer, &bar).await?;
        bar.finish_and_clear();
        return Ok(());
    };
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file_error = |path: &Path, error| ExportError::File {
        path: path.to_owned(),
        error,
    };
    let file = File::create(&partial).map_err(|e| file_error(&partial, e))?;
    let mut writer = BufWriter::with_capacity(1 << 16, file);
    let result = export_world(client, world, &mut writer, &bar).await;
    bar.finish_and_clear();
    let summary = match result.and_then(|s| {
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(s)
    }) {
        Ok(summary) => summary,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, path).map_err(|e| file_error(path, e))?;
    writeln!(
        out,
        "exported world '{world}' to {} ({})",
        path.display(),
        describe_rows(&summary.rows)
    )?;
    Ok(())
}

/// `hearth import FILE [--as NAME]`.
pub async fn import_command(
    client: &mut Client,
    migrations: &Migrations,
    file: &Path,
    as_name: Option<&str>,
    out: &mut (dyn Write + Send),
) -> Result<(), ExportError> {
    check_schema(client, migrations).await?;
    let source = File::open(file).map_err(|error| ExportError::File {
        path: file.to_owned(),
        error,
    })?;
    let size = source.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(
        "{spinner} importing [{bar:40}] {bytes}/{total_bytes}, {bytes_per_sec}, eta {eta}",
    );
    bar.set_length(size);
    let name = file.display().to_string();
    let result = import_world(client, source, &name, as_name, &bar).await;
    bar.finish_and_clear();
    let imported = result?;
    info!(world = %imported.slug, users_created = imported.created_users, "world imported");
    writeln!(
        out,
        "imported world '{}' from {name} ({})",
        imported.slug,
        describe_rows(&imported.rows)
    )?;
    if imported.created_users > 0 {
        writeln!(
            out,
            "{} account(s) did not exist in this database and were created without a password",
            imported.created_users
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_schema() {
        for ok in ["w", "valley", "a-b_c", "0x", &"a".repeat(63)] {
            assert!(is_slug(ok), "{ok}");
        }
        for bad in ["", "-a", "_a", "Valley", "a b", "é", &"a".repeat(64)] {
            assert!(!is_slug(bad), "{bad}");
        }
    }

    #[test]
    fn keys_rank_in_document_order() {
        assert_eq!(rank("format"), Some(0));
        assert!(rank("checkpoint") < rank("users"));
        assert!(rank("agents") < rank("memories"));
        assert_eq!(rank("event_log"), Some(6 + Section::ALL.len() - 1));
        assert_eq!(rank("nonsense"), None);
    }

    #[test]
    fn records_serialise_by_their_mirror() {
        let record = db::CheckpointRecord {
            tick: 7,
            game_time: hearth_db::game_time::to_timestamp(90),
            committed_at: WallTime::from(std::time::UNIX_EPOCH),
            state: Some(vec![0, 1, 2, 255]),
        };
        let text = serde_json::to_string(&Doc(&record)).expect("serialises");
        assert_eq!(
            text,
            r#"{"tick":7,"game_time":"2001-01-01T00:01:30","committed_at":"1970-01-01T00:00:00Z","state":"AAEC/w=="}"#
        );
        let Owned(back) =
            serde_json::from_str::<Owned<db::CheckpointRecord>>(&text).expect("parses");
        assert_eq!(back, record);
        let unknown = serde_json::from_str::<Owned<db::CheckpointRecord>>(
            r#"{"tick":7,"game_time":"2001-01-01T00:01:30","committed_at":"1970-01-01T00:00:00Z","extra":1}"#,
        );
        assert!(unknown.is_err());
    }

    #[test]
    fn the_header_is_checked_before_anything_is_sent() {
        let run = |text: &'static str| {
            let (sink, _pages) = mpsc::channel(PAGES_IN_FLIGHT);
            let parser = Parser {
                sink,
                stop: RefCell::new(None),
                rename: None,
                source_name: "doc.json".into(),
            };
            parse(text.as_bytes(), &parser).expect_err("refused")
        };
        let e = run(r#"{"format":"other","version":1}"#);
        assert!(matches!(e, ExportError::WrongFormat { .. }), "{e}");
        let e = run(r#"{"version":1,"format":"hearth.world"}"#);
        assert!(matches!(e, ExportError::WrongFormat { .. }), "{e}");
        let e = run(r#"{"format":"hearth.world","version":2}"#);
        assert!(
            matches!(e, ExportError::UnsupportedVersion { ref found, .. } if found == "2"),
            "{e}"
        );
        assert!(e.to_string().contains("reads version 1"), "{e}");
        let e = run("{\"format\":\"hearth.world\",\n\"version\":1,\n\"agents\":[");
        assert!(matches!(e, ExportError::Invalid { line: 3, .. }), "{e}");
        let e = run("{\"format\":\"hearth.world\",\"version\":1,\"world\":{\"slug\":");
        assert!(matches!(e, ExportError::Truncated { line: 1, .. }), "{e}");
        let e = run("hello");
        assert!(
            matches!(
                e,
                ExportError::NotJson {
                    line: 1,
                    column: 1,
                    ..
                }
            ),
            "{e}"
        );
        let e = run("[]");
        assert!(matches!(e, ExportError::Invalid { .. }), "{e}");
    }

    #[test]
    fn row_counts_read_as_a_list() {
        let mut rows = BTreeMap::new();
        assert_eq!(describe_rows(&rows), "no rows");
        rows.insert(Section::Memories, 12);
        rows.insert(Section::Agents, 2);
        rows.insert(Section::Users, 0);
        assert_eq!(describe_rows(&rows), "agents 2, memories 12");
    }
}
