//! The write-behind writer. [`commit`] puts one batch of a world's changes
//! in one transaction — state rows coalesced per entity (the latest wins),
//! appended rows (memories, embeddings, messages) never dropped, and the
//! checkpoint saying which tick the database now holds, so it never holds
//! half a tick. State rows go through binary COPY into a per-connection
//! staging table and one `INSERT … ON CONFLICT` each; the rest through
//! UNNEST of typed arrays or binary COPY. [`spawn`] runs the task that takes
//! batches over a bounded channel, folds whatever arrives while a commit is
//! in flight into the next one, retries through outages with backoff (never
//! dropping a row), fences every commit with the world's lease, and reports
//! its backlog. Knows nothing of the ECS: it takes plain rows. Touches
//! `agent_states`, `agent_relationships`, `agent_plans`, `conversations`,
//! `conversation_participants`, `messages`, `agent_memories`,
//! `world_checkpoints`, `sim_metrics` and (to check it) `world_leases`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tracing::{debug, info, instrument, warn};

use crate::lease::{self, Lease, LeaseError};
use crate::memories::{self, MemoryRow};
use crate::{DbError, Pool};

/// (agent id, memory id, vector): an embedding for a stored memory.
pub type Embedding = (i64, i64, Vec<f32>);

/// The live state of one agent (`agent_states`).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentStateRow {
    pub agent_id: i64,
    pub world_id: i64,
    pub x: f32,
    pub y: f32,
    /// `n`, `ne`, `e`, `se`, `s`, `sw`, `w` or `nw`.
    pub facing: String,
    pub action: String,
    pub action_started_at: Option<NaiveDateTime>,
    pub action_target: Option<String>,
    pub target: Option<(f32, f32)>,
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
    /// The components the simulation resumes from, serialized by hearth.
    pub sim: Option<Vec<u8>>,
}

/// What one agent thinks of another (`agent_relationships`).
#[derive(Debug, Clone, PartialEq)]
pub struct RelationshipRow {
    pub world_id: i64,
    pub agent_id: i64,
    pub target_agent_id: i64,
    pub kind: String,
    pub affection: f32,
    pub trust: f32,
    pub interaction_count: i32,
    pub last_interaction: Option<NaiveDateTime>,
    pub summary: String,
    pub updated_tick: i64,
}

/// A conversation (`conversations`); `ended` is set when it is over.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRow {
    pub world_id: i64,
    pub id: i64,
    /// `direct`, `group`, `broadcast` or `system`.
    pub kind: String,
    pub location: Option<String>,
    pub topic: Option<String>,
    pub started: NaiveDateTime,
    pub ended: Option<NaiveDateTime>,
}

/// A line of a conversation (`messages`), appended.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub world_id: i64,
    pub conversation_id: i64,
    pub seq: i32,
    pub speaker_agent_id: Option<i64>,
    pub speaker_character_id: Option<i64>,
    pub text: String,
    pub emotional_tone: Option<String>,
    pub game_time: NaiveDateTime,
}

/// A request to a language model (`llm_calls`), appended.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmCallRow {
    pub world_id: i64,
    pub agent_id: Option<i64>,
    /// `importance`, `conversation`, `day_plan`, …
    pub kind: String,
    pub model: String,
    pub prompt: String,
    pub response: Option<String>,
    pub latency_ms: i32,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub error: Option<String>,
    pub game_time: Option<NaiveDateTime>,
}

/// An agent's current plan (`agent_plans`): the writer keeps one row per
/// agent, the plan it follows now.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRow {
    pub world_id: i64,
    pub agent_id: i64,
    pub id: i64,
    pub goal: String,
    pub steps: Value,
    pub current_step: i32,
    /// `pending`, `active`, `done`, `abandoned` or `failed`.
    pub status: String,
    pub priority: i16,
    pub deadline: Option<NaiveDateTime>,
    pub created_game_time: NaiveDateTime,
    pub updated_tick: i64,
}

/// An agent in a conversation (`conversation_participants`); `left` is set
/// when it leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantRow {
    pub world_id: i64,
    pub conversation_id: i64,
    pub agent_id: i64,
    pub joined: NaiveDateTime,
    pub left: Option<NaiveDateTime>,
}

/// How the simulation and its writer performed up to a checkpoint
/// (`sim_metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct SimMetricsRow {
    pub agents: i32,
    pub tick_ms_p50: f32,
    pub tick_ms_p99: f32,
    pub tick_ms_max: f32,
    /// Duration of the previous commit.
    pub flush_ms: Option<f32>,
    pub rows_flushed: i32,
    pub queue_depth: i32,
}

/// Where the world stands once a batch is committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub world_id: i64,
    pub tick: i64,
    pub game_time: NaiveDateTime,
    /// The world's own state, serialized by hearth.
    pub state: Option<Vec<u8>>,
}

/// Changes waiting to be committed. Merging a newer batch into an older one
/// keeps the newest state row per entity and every appended row, in order,
/// and the newer checkpoint: what a writer that fell behind commits at once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub agent_states: BTreeMap<i64, AgentStateRow>,
    pub relationships: BTreeMap<(i64, i64), RelationshipRow>,
    /// By agent id: the plan each agent follows now.
    pub plans: BTreeMap<i64, PlanRow>,
    pub conversations: BTreeMap<i64, ConversationRow>,
    /// By (conversation id, agent id).
    pub participants: BTreeMap<(i64, i64), ParticipantRow>,
    pub messages: Vec<MessageRow>,
    pub memories: Vec<MemoryRow>,
    /// (agent id, memory id, vector), for memories written before or in
    /// this batch.
    pub embeddings: Vec<Embedding>,
    /// Requests to language models, for cost and debugging.
    pub llm_calls: Vec<LlmCallRow>,
    pub checkpoint: Option<Checkpoint>,
    /// Recorded with the checkpoint (ignored without one).
    pub metrics: Option<SimMetricsRow>,
}

impl Batch {
    /// Folds `newer` into this batch (see the type's documentation).
    pub fn merge(&mut self, newer: Batch) {
        self.agent_states.extend(newer.agent_states);
        self.relationships.extend(newer.relationships);
        self.plans.extend(newer.plans);
        self.conversations.extend(newer.conversations);
        self.participants.extend(newer.participants);
        if self.messages.is_empty() {
            self.messages = newer.messages;
        } else {
            self.messages.extend(newer.messages);
        }
        if self.memories.is_empty() {
            self.memories = newer.memories;
        } else {
            self.memories.extend(newer.memories);
        }
        if self.embeddings.is_empty() {
            self.embeddings = newer.embeddings;
        } else {
            self.embeddings.extend(newer.embeddings);
        }
        self.llm_calls.extend(newer.llm_calls);
        if newer.checkpoint.is_some() {
            self.checkpoint = newer.checkpoint;
            self.metrics = newer.metrics;
        }
    }

    /// Rows that coalesce (bounded by the number of entities).
    pub fn state_rows(&self) -> usize {
        self.agent_states.len()
            + self.relationships.len()
            + self.plans.len()
            + self.conversations.len()
            + self.participants.len()
    }

    /// Rows that only grow until committed.
    pub fn appended_rows(&self) -> usize {
        self.messages.len() + self.memories.len() + self.embeddings.len() + self.llm_calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.state_rows() == 0 && self.appended_rows() == 0 && self.checkpoint.is_none()
    }
}

/// What a commit wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    pub rows: u64,
    pub tick: Option<i64>,
}

/// The columns of `agent_states` a state row fills, in COPY order.
pub const STATE_COLUMNS: &str = "agent_id, world_id, x, y, facing, action, action_started_at, \
    action_target, target_x, target_y, location_name, energy, mood, emotional_state, \
    physical_state, cognitive_load, updated_tick, sim";

/// The types of [`STATE_COLUMNS`], for binary COPY.
pub const STATE_TYPES: [Type; 18] = [
    Type::INT8,
    Type::INT8,
    Type::FLOAT4,
    Type::FLOAT4,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMP,
    Type::TEXT,
    Type::FLOAT4,
    Type::FLOAT4,
    Type::TEXT,
    Type::FLOAT4,
    Type::FLOAT4,
    Type::JSONB,
    Type::JSONB,
    Type::FLOAT4,
    Type::INT8,
    Type::BYTEA,
];

/// Commits `batch` in one transaction; nothing of it is visible unless all
/// of it is. A failure rolls everything back and leaves the batch to retry.
pub async fn commit(client: &Client, batch: &Batch) -> Result<Committed, DbError> {
    match commit_fenced(client, batch, &CommitOptions::default()).await {
        Ok(done) => Ok(done),
        Err(CommitError::Db(e)) => Err(e),
        // no fence was asked for, so none can fail
        Err(e @ CommitError::LeaseLost(_)) => Err(DbError::InvalidValue(e.to_string())),
    }
}

/// How a commit is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitOptions {
    /// Check the world's lease (world id, token) inside the transaction and
    /// fail with [`CommitError::LeaseLost`] if it is not held.
    pub fence: Option<(i64, i64)>,
    /// Skip appended rows (memories, messages) that are already stored:
    /// for retrying a commit whose outcome is unknown (the connection broke
    /// during `COMMIT`).
    pub idempotent: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("this process no longer owns world {0}: another process took it over")]
    LeaseLost(i64),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for CommitError {
    fn from(e: tokio_postgres::Error) -> Self {
        CommitError::Db(DbError::from(e))
    }
}

/// [`commit`] with a lease fence and idempotent retries.
#[instrument(skip_all, fields(states = batch.agent_states.len(), appended = batch.appended_rows()))]
pub async fn commit_fenced(
    client: &Client,
    batch: &Batch,
    options: &CommitOptions,
) -> Result<Committed, CommitError> {
    client.batch_execute("BEGIN").await?;
    match commit_in(client, batch, options).await {
        Ok(done) => {
            client.batch_execute("COMMIT").await?;
            Ok(done)
        }
        Err(e) => {
            // the connection may be gone; the server aborts the transaction then
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

async fn commit_in(
    client: &Client,
    batch: &Batch,
    options: &CommitOptions,
) -> Result<Committed, CommitError> {
    if let Some((world_id, token)) = options.fence
        && !lease::check_in(client, world_id, token).await?
    {
        return Err(CommitError::LeaseLost(world_id));
    }
    let mut rows = 0u64;
    if !batch.agent_states.is_empty() {
        rows += upsert_states(client, batch.agent_states.values()).await?;
    }
    if !batch.relationships.is_empty() {
        rows += upsert_relationships(client, batch.relationships.values()).await?;
    }
    if !batch.plans.is_empty() {
        rows += upsert_plans(client, batch.plans.values()).await?;
    }
    if !batch.conversations.is_empty() {
        rows += upsert_conversations(client, batch.conversations.values()).await?;
    }
    if !batch.participants.is_empty() {
        rows += upsert_participants(client, batch.participants.values()).await?;
    }
    if !batch.messages.is_empty() {
        if options.idempotent {
            let fresh = unstored_messages(client, &batch.messages).await?;
            rows += insert_messages(client, &fresh).await?;
        } else {
            rows += insert_messages(client, &batch.messages).await?;
        }
    }
    if !batch.llm_calls.is_empty() {
        // a log: on a retry whose first outcome is unknown a call may be
        // logged twice, never lost
        rows += insert_llm_calls(client, &batch.llm_calls).await?;
    }
    if !batch.memories.is_empty() {
        if options.idempotent {
            let fresh = unstored_memories(client, &batch.memories).await?;
            rows += memories::copy_in(client, &fresh).await?;
        } else {
            rows += memories::copy_in(client, &batch.memories).await?;
        }
    }
    if !batch.embeddings.is_empty() {
        rows += set_embeddings(client, &batch.embeddings).await?;
    }
    let tick = match &batch.checkpoint {
        Some(c) => {
            client
                .execute(
                    "INSERT INTO world_checkpoints (world_id, tick, game_time, state) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (world_id, tick) DO UPDATE SET game_time = EXCLUDED.game_time, \
                     state = EXCLUDED.state, committed_at = now()",
                    &[&c.world_id, &c.tick, &c.game_time, &c.state],
                )
                .await?;
            // only the newest checkpoint's state is ever read: drop the
            // older ones' (their rows stay, as the history of commits)
            client
                .execute(
                    "UPDATE world_checkpoints SET state = NULL \
                     WHERE world_id = $1 AND tick < $2 AND state IS NOT NULL",
                    &[&c.world_id, &c.tick],
                )
                .await?;
            if let Some(m) = &batch.metrics {
                client
                    .execute(
                        "INSERT INTO sim_metrics (world_id, tick, game_time, agents, tick_ms_p50, \
                         tick_ms_p99, tick_ms_max, flush_ms, rows_flushed, queue_depth) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                         ON CONFLICT (world_id, tick) DO NOTHING",
                        &[
                            &c.world_id,
                            &c.tick,
                            &c.game_time,
                            &m.agents.max(0),
                            &m.tick_ms_p50.max(0.0),
                            &m.tick_ms_p99.max(0.0),
                            &m.tick_ms_max.max(0.0),
                            &m.flush_ms.map(|f| f.max(0.0)),
                            &m.rows_flushed.max(0),
                            &m.queue_depth.max(0),
                        ],
                    )
                    .await?;
            }
            Some(c.tick)
        }
        None => None,
    };
    Ok(Committed { rows, tick })
}

/// Sets embeddings, grouped by world (the dimension is the world's).
async fn set_embeddings(client: &Client, embeddings: &[Embedding]) -> Result<u64, DbError> {
    // the agents' worlds and their dimensions, in one query
    let agents: Vec<i64> = {
        let mut a: Vec<i64> = embeddings.iter().map(|e| e.0).collect();
        a.sort_unstable();
        a.dedup();
        a
    };
    let rows = client
        .query(
            "SELECT a.id, w.id, w.embedding_dim FROM agents a JOIN worlds w ON w.id = a.world_id \
             WHERE a.id = ANY($1)",
            &[&agents],
        )
        .await?;
    let mut world_of: BTreeMap<i64, (i64, i32)> = BTreeMap::new();
    for r in rows {
        world_of.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
    }
    let mut by_world: BTreeMap<(i64, i32), Vec<Embedding>> = BTreeMap::new();
    for e in embeddings {
        let Some(&w) = world_of.get(&e.0) else {
            return Err(DbError::InvalidValue(format!(
                "embedding for memory {} of unknown agent {}",
                e.1, e.0
            )));
        };
        by_world.entry(w).or_default().push(e.clone());
    }
    let mut n = 0;
    for ((world_id, dim), list) in by_world {
        n += memories::set_embeddings(client, world_id, dim, &list).await?;
    }
    Ok(n)
}

/// The memories of `rows` not stored yet.
async fn unstored_memories(client: &Client, rows: &[MemoryRow]) -> Result<Vec<MemoryRow>, DbError> {
    let agents: Vec<i64> = rows.iter().map(|r| r.agent_id).collect();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let stored = client
        .query(
            "SELECT m.agent_id, m.id FROM agent_memories m \
             JOIN unnest($1::bigint[], $2::bigint[]) AS k(agent_id, id) \
             ON m.agent_id = k.agent_id AND m.id = k.id",
            &[&agents, &ids],
        )
        .await?;
    let mut have = std::collections::HashSet::with_capacity(stored.len());
    for r in stored {
        have.insert((r.try_get::<_, i64>(0)?, r.try_get::<_, i64>(1)?));
    }
    Ok(rows
        .iter()
        .filter(|r| !have.contains(&(r.agent_id, r.id)))
        .cloned()
        .collect())
}

/// The messages of `rows` not stored yet.
async fn unstored_messages(
    client: &Client,
    rows: &[MessageRow],
) -> Result<Vec<MessageRow>, DbError> {
    let worlds: Vec<i64> = rows.iter().map(|r| r.world_id).collect();
    let conversations: Vec<i64> = rows.iter().map(|r| r.conversation_id).collect();
    let seqs: Vec<i32> = rows.iter().map(|r| r.seq).collect();
    let stored = client
        .query(
            "SELECT m.world_id, m.conversation_id, m.seq FROM messages m \
             JOIN unnest($1::bigint[], $2::bigint[], $3::int[]) AS k(w, c, s) \
             ON m.world_id = k.w AND m.conversation_id = k.c AND m.seq = k.s",
            &[&worlds, &conversations, &seqs],
        )
        .await?;
    let mut have = std::collections::HashSet::with_capacity(stored.len());
    for r in stored {
        have.insert((
            r.try_get::<_, i64>(0)?,
            r.try_get::<_, i64>(1)?,
            r.try_get::<_, i32>(2)?,
        ));
    }
    Ok(rows
        .iter()
        .filter(|r| !have.contains(&(r.world_id, r.conversation_id, r.seq)))
        .cloned()
        .collect())
}

async fn upsert_plans<'a>(
    client: &Client,
    rows: impl Iterator<Item = &'a PlanRow>,
) -> Result<u64, DbError> {
    let rows: Vec<&PlanRow> = rows.collect();
    let worlds: Vec<i64> = rows.iter().map(|r| r.world_id).collect();
    let agents: Vec<i64> = rows.iter().map(|r| r.agent_id).collect();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let goals: Vec<&str> = rows.iter().map(|r| r.goal.as_str()).collect();
    let steps: Vec<&Value> = rows.iter().map(|r| &r.steps).collect();
    let current: Vec<i32> = rows.iter().map(|r| r.current_step).collect();
    let status: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    let priority: Vec<i16> = rows.iter().map(|r| r.priority).collect();
    let deadline: Vec<Option<NaiveDateTime>> = rows.iter().map(|r| r.deadline).collect();
    let created: Vec<NaiveDateTime> = rows.iter().map(|r| r.created_game_time).collect();
    let ticks: Vec<i64> = rows.iter().map(|r| r.updated_tick).collect();
    // one row per agent: the plan it follows now replaces the ones before
    client
        .execute(
            "DELETE FROM agent_plans p USING unnest($1::bigint[], $2::bigint[]) AS c(agent_id, id) \
             WHERE p.agent_id = c.agent_id AND p.id <> c.id",
            &[&agents, &ids],
        )
        .await?;
    Ok(client
        .execute(
            "INSERT INTO agent_plans (world_id, agent_id, id, goal, steps, current_step, status, \
                 priority, deadline, created_game_time, updated_tick) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], \
                 $5::jsonb[], $6::int[], $7::text[], $8::smallint[], $9::timestamp[], \
                 $10::timestamp[], $11::bigint[]) \
             ON CONFLICT (agent_id, id) DO UPDATE SET goal = EXCLUDED.goal, steps = EXCLUDED.steps, \
                 current_step = EXCLUDED.current_step, status = EXCLUDED.status, \
                 priority = EXCLUDED.priority, deadline = EXCLUDED.deadline, \
                 updated_tick = EXCLUDED.updated_tick",
            &[
                &worlds, &agents, &ids, &goals, &steps, &current, &status, &priority, &deadline,
                &created, &ticks,
            ],
        )
        .await?)
}

async fn upsert_participants<'a>(
    client: &Client,
    rows: impl Iterator<Item = &'a ParticipantRow>,
) -> Result<u64, DbError> {
    let rows: Vec<&ParticipantRow> = rows.collect();
    let worlds: Vec<i64> = rows.iter().map(|r| r.world_id).collect();
    let conversations: Vec<i64> = rows.iter().map(|r| r.conversation_id).collect();
    let agents: Vec<i64> = rows.iter().map(|r| r.agent_id).collect();
    let joined: Vec<NaiveDateTime> = rows.iter().map(|r| r.joined).collect();
    let left: Vec<Option<NaiveDateTime>> = rows.iter().map(|r| r.left).collect();
    Ok(client
        .execute(
            "INSERT INTO conversation_participants (world_id, conversation_id, agent_id, \
                 joined_game_time, left_game_time) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamp[], \
                 $5::timestamp[]) \
             ON CONFLICT (world_id, conversation_id, agent_id) WHERE agent_id IS NOT NULL \
             DO UPDATE SET left_game_time = EXCLUDED.left_game_time",
            &[&worlds, &conversations, &agents, &joined, &left],
        )
        .await?)
}

/// Binary-COPYs agent states into this connection's staging table and
/// upserts them from there.
async fn upsert_states<'a>(
    client: &Client,
    states: impl Iterator<Item = &'a AgentStateRow>,
) -> Result<u64, DbError> {
    client
        .batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS hearth_stage_agent_states \
             (LIKE agent_states INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        )
        .await?;
    let sink = client
        .copy_in(&format!(
            "COPY hearth_stage_agent_states ({STATE_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &STATE_TYPES));
    for s in states {
        let (tx, ty) = match s.target {
            Some((x, y)) => (Some(x), Some(y)),
            None => (None, None),
        };
        let row: [&(dyn ToSql + Sync); 18] = [
            &s.agent_id,
            &s.world_id,
            &s.x,
            &s.y,
            &s.facing,
            &s.action,
            &s.action_started_at,
            &s.action_target,
            &tx,
            &ty,
            &s.location_name,
            &s.energy,
            &s.mood,
            &s.emotional_state,
            &s.physical_state,
            &s.cognitive_load,
            &s.updated_tick,
            &s.sim,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    let set: Vec<String> = STATE_COLUMNS
        .split(", ")
        .filter(|c| *c != "agent_id")
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    Ok(client
        .execute(
            &format!(
                "INSERT INTO agent_states ({STATE_COLUMNS}) \
                 SELECT {STATE_COLUMNS} FROM hearth_stage_agent_states \
                 ON CONFLICT (agent_id) DO UPDATE SET {}",
                set.join(", ")
            ),
            &[],
        )
        .await?)
}

async fn upsert_relationships<'a>(
    client: &Client,
    rows: impl Iterator<Item = &'a RelationshipRow>,
) -> Result<u64, DbError> {
    let rows: Vec<&RelationshipRow> = rows.collect();
    let col = |f: fn(&RelationshipRow) -> i64| rows.iter().map(|r| f(r)).collect::<Vec<i64>>();
    let worlds = col(|r| r.world_id);
    let agents = col(|r| r.agent_id);
    let targets = col(|r| r.target_agent_id);
    let ticks = col(|r| r.updated_tick);
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    let affection: Vec<f32> = rows.iter().map(|r| r.affection).collect();
    let trust: Vec<f32> = rows.iter().map(|r| r.trust).collect();
    let counts: Vec<i32> = rows.iter().map(|r| r.interaction_count).collect();
    let last: Vec<Option<NaiveDateTime>> = rows.iter().map(|r| r.last_interaction).collect();
    let summaries: Vec<&str> = rows.iter().map(|r| r.summary.as_str()).collect();
    Ok(client
        .execute(
            "INSERT INTO agent_relationships (world_id, agent_id, target_agent_id, type, affection, \
                 trust, interaction_count, last_interaction, summary, updated_tick) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::real[], \
                 $6::real[], $7::int[], $8::timestamp[], $9::text[], $10::bigint[]) \
             ON CONFLICT (agent_id, target_agent_id) DO UPDATE SET type = EXCLUDED.type, \
                 affection = EXCLUDED.affection, trust = EXCLUDED.trust, \
                 interaction_count = EXCLUDED.interaction_count, \
                 last_interaction = EXCLUDED.last_interaction, summary = EXCLUDED.summary, \
                 updated_tick = EXCLUDED.updated_tick",
            &[
                &worlds, &agents, &targets, &kinds, &affection, &trust, &counts, &last,
                &summaries, &ticks,
            ],
        )
        .await?)
}

async fn upsert_conversations<'a>(
    client: &Client,
    rows: impl Iterator<Item = &'a ConversationRow>,
) -> Result<u64, DbError> {
    let rows: Vec<&ConversationRow> = rows.collect();
    let worlds: Vec<i64> = rows.iter().map(|r| r.world_id).collect();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    let locations: Vec<Option<&str>> = rows.iter().map(|r| r.location.as_deref()).collect();
    let topics: Vec<Option<&str>> = rows.iter().map(|r| r.topic.as_deref()).collect();
    let started: Vec<NaiveDateTime> = rows.iter().map(|r| r.started).collect();
    let ended: Vec<Option<NaiveDateTime>> = rows.iter().map(|r| r.ended).collect();
    Ok(client
        .execute(
            "INSERT INTO conversations (world_id, id, kind, location, topic, started_game_time, \
                 ended_game_time) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
                 $6::timestamp[], $7::timestamp[]) \
             ON CONFLICT (world_id, id) DO UPDATE SET \
                 location = COALESCE(EXCLUDED.location, conversations.location), \
                 topic = COALESCE(EXCLUDED.topic, conversations.topic), \
                 ended_game_time = COALESCE(EXCLUDED.ended_game_time, conversations.ended_game_time)",
            &[&worlds, &ids, &kinds, &locations, &topics, &started, &ended],
        )
        .await?)
}

async fn insert_llm_calls(client: &Client, rows: &[LlmCallRow]) -> Result<u64, DbError> {
    let sink = client
        .copy_in(
            "COPY llm_calls (world_id, agent_id, kind, model, prompt, response, latency_ms, \
             prompt_tokens, completion_tokens, error, game_time) FROM STDIN (FORMAT binary)",
        )
        .await?;
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(
        sink,
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
        ],
    ));
    for c in rows {
        // the table requires a response or an error
        let error = match (&c.response, &c.error) {
            (None, None) => Some("no response".to_owned()),
            _ => c.error.clone(),
        };
        let row: [&(dyn ToSql + Sync); 11] = [
            &c.world_id,
            &c.agent_id,
            &c.kind,
            &c.model,
            &c.prompt,
            &c.response,
            &c.latency_ms,
            &c.prompt_tokens,
            &c.completion_tokens,
            &error,
            &c.game_time,
        ];
        writer.as_mut().write(&row).await?;
    }
    Ok(writer.finish().await?)
}

async fn insert_messages(client: &Client, rows: &[MessageRow]) -> Result<u64, DbError> {
    let sink = client
        .copy_in(
            "COPY messages (world_id, conversation_id, seq, speaker_agent_id, \
             speaker_character_id, text, emotional_tone, game_time) FROM STDIN (FORMAT binary)",
        )
        .await?;
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(
        sink,
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
    ));
    for m in rows {
        let row: [&(dyn ToSql + Sync); 8] = [
            &m.world_id,
            &m.conversation_id,
            &m.seq,
            &m.speaker_agent_id,
            &m.speaker_character_id,
            &m.text,
            &m.emotional_tone,
            &m.game_time,
        ];
        writer.as_mut().write(&row).await?;
    }
    Ok(writer.finish().await?)
}

/// How the writer task runs.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Batches that may wait in the channel (the world's feed holds and
    /// merges its frames while it is full).
    pub channel: usize,
    /// Appended rows waiting beyond which the writer reports itself
    /// backlogged (producers then slow down; nothing is dropped).
    pub max_backlog: usize,
    /// A batch without a checkpoint waits at most this long for one before
    /// it is committed alone.
    pub max_wait: Duration,
    /// First and longest wait between attempts while the database is away.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            channel: 8,
            max_backlog: 1_000_000,
            max_wait: Duration::from_secs(2),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
        }
    }
}

/// The writer's gauges and counters, shared with its handles.
#[derive(Debug, Default)]
struct Shared {
    queue_depth: AtomicI64,
    pending_states: AtomicI64,
    pending_appends: AtomicI64,
    backlogged: AtomicBool,
    connected: AtomicBool,
    commits: AtomicU64,
    failures: AtomicU64,
    rows: AtomicU64,
    memories: AtomicU64,
    last_tick: AtomicI64,
    last_flush_us: AtomicU64,
    /// Microseconds since the writer started at which the oldest pending
    /// change arrived, or -1 with nothing pending.
    oldest_pending_us: AtomicI64,
}

/// What the writer is doing, as of now.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct WriterStatus {
    /// Batches in the channel.
    pub queue_depth: i64,
    /// Rows waiting: coalescing state rows and appended rows.
    pub pending_states: i64,
    pub pending_appends: i64,
    /// More appended rows wait than `max_backlog`.
    pub backlogged: bool,
    /// The last attempt reached the database.
    pub connected: bool,
    pub commits: u64,
    /// Attempts that failed (and were retried).
    pub failures: u64,
    pub rows: u64,
    pub memories: u64,
    /// Tick of the newest committed checkpoint (-1 before the first).
    pub last_tick: i64,
    pub last_flush_ms: f64,
    /// Age of the oldest change not yet committed (0 with none).
    pub lag_ms: f64,
}

/// A handle on the writer task; cheap to clone. The task commits what is
/// left and stops when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<Batch>,
    shared: Arc<Shared>,
    started: Instant,
    max_backlog: usize,
}

/// Why the writer task stopped before its handles were dropped.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("this process no longer owns world {0}: another process took it over")]
    LeaseLost(i64),
}

/// What the writer did, when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterReport {
    pub commits: u64,
    pub failures: u64,
    pub rows: u64,
    pub memories: u64,
    pub last_tick: Option<i64>,
}

impl Writer {
    /// Hands a batch over without waiting; gives it back when the channel is
    /// full (or the writer has stopped).
    pub fn try_send(&self, batch: Batch) -> Result<(), Box<Batch>> {
        match self.tx.try_send(batch) {
            Ok(()) => {
                self.shared.queue_depth.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b)) => {
                Err(Box::new(b))
            }
        }
    }

    /// Hands a batch over, waiting for room; gives it back if the writer has
    /// stopped.
    pub async fn send(&self, batch: Batch) -> Result<(), Box<Batch>> {
        self.shared.queue_depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.send(batch).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(b)) => {
                self.shared.queue_depth.fetch_sub(1, Ordering::Relaxed);
                Err(Box::new(b))
            }
        }
    }

    /// More appended rows wait than the configured backlog: producers of
    /// appends should slow down.
    pub fn backlogged(&self) -> bool {
        self.shared.backlogged.load(Ordering::Relaxed)
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    pub fn status(&self) -> WriterStatus {
        let s = &self.shared;
        let oldest = s.oldest_pending_us.load(Ordering::Relaxed);
        let now_us = self.started.elapsed().as_micros() as i64;
        WriterStatus {
            queue_depth: s.queue_depth.load(Ordering::Relaxed).max(0),
            pending_states: s.pending_states.load(Ordering::Relaxed),
            pending_appends: s.pending_appends.load(Ordering::Relaxed),
            backlogged: s.backlogged.load(Ordering::Relaxed),
            connected: s.connected.load(Ordering::Relaxed),
            commits: s.commits.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            rows: s.rows.load(Ordering::Relaxed),
            memories: s.memories.load(Ordering::Relaxed),
            last_tick: s.last_tick.load(Ordering::Relaxed),
            last_flush_ms: s.last_flush_us.load(Ordering::Relaxed) as f64 / 1000.0,
            lag_ms: if oldest < 0 {
                0.0
            } else {
                (now_us - oldest).max(0) as f64 / 1000.0
            },
        }
    }

    pub fn max_backlog(&self) -> usize {
        self.max_backlog
    }
}

/// Starts the writer task: it commits through `pool`, fenced by `lease`
/// when given (which it owns, keeps alive, and releases when it stops).
pub fn spawn(
    pool: Pool,
    lease: Option<Lease>,
    options: WriterOptions,
) -> (Writer, JoinHandle<Result<WriterReport, WriterError>>) {
    let (tx, rx) = mpsc::channel(options.channel.max(1));
    let shared = Arc::new(Shared {
        last_tick: AtomicI64::new(-1),
        oldest_pending_us: AtomicI64::new(-1),
        connected: AtomicBool::new(true),
        ..Shared::default()
    });
    let started = Instant::now();
    let writer = Writer {
        tx,
        shared: shared.clone(),
        started,
        max_backlog: options.max_backlog,
    };
    let task = Task {
        pool,
        lease,
        options,
        shared,
        started,
        pending: Batch::default(),
        pending_since: None,
        report: WriterReport::default(),
    };
    (writer, tokio::spawn(task.run(rx)))
}

struct Task {
    pool: Pool,
    lease: Option<Lease>,
    options: WriterOptions,
    shared: Arc<Shared>,
    started: Instant,
    pending: Batch,
    pending_since: Option<Instant>,
    report: WriterReport,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Batch>) -> Result<WriterReport, WriterError> {
        let mut open = true;
        let mut retry = self.options.retry_min;
        let mut idempotent = false;
        loop {
            // wait for work: something to commit, or a checkpoint to go with it
            while open && !self.due() {
                let wait = match self.pending_since {
                    Some(since) if !self.pending.is_empty() => {
                        self.options.max_wait.saturating_sub(since.elapsed())
                    }
                    _ => Duration::from_secs(3600),
                };
                tokio::select! {
                    got = rx.recv() => match got {
                        Some(b) => self.take(b),
                        None => open = false,
                    },
                    _ = tokio::time::sleep(wait) => break,
                }
            }
            while let Ok(b) = rx.try_recv() {
                self.take(b);
            }
            if self.pending.is_empty() {
                if open {
                    continue;
                }
                break;
            }
            // commit, taking in (not yet merging) what arrives meanwhile
            let batch = std::mem::take(&mut self.pending);
            let mut incoming = Batch::default();
            let shared = self.shared.clone();
            let outcome = {
                let attempt = self.attempt(&batch, idempotent);
                tokio::pin!(attempt);
                loop {
                    tokio::select! {
                        r = &mut attempt => break r,
                        got = rx.recv(), if open => match got {
                            Some(b) => {
                                shared.queue_depth.fetch_sub(1, Ordering::Relaxed);
                                incoming.merge(b);
                            }
                            None => open = false,
                        },
                    }
                }
            };
            match outcome {
                Ok((committed, took)) => {
                    retry = self.options.retry_min;
                    idempotent = false;
                    self.committed(&batch, committed, took);
                    self.pending = incoming;
                    self.pending_since = (!self.pending.is_empty()).then(Instant::now);
                    self.publish();
                }
                Err(Failure::Fatal(e)) => {
                    // the world is someone else's now: what is pending is theirs to redo
                    warn!(error = %e, dropped_states = batch.state_rows(),
                        dropped_appends = batch.appended_rows(), "writer stopped");
                    return Err(e);
                }
                Err(Failure::Retry(e, unknown)) => {
                    self.report.failures += 1;
                    self.shared.failures.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("hearth_writer_failures_total").increment(1);
                    // an outcome we cannot know: the next try skips what is stored
                    idempotent |= unknown;
                    let mut again = batch;
                    again.merge(incoming);
                    self.pending = again;
                    self.publish();
                    warn!(error = %e, retry_in_ms = retry.as_millis() as u64,
                        pending_states = self.pending.state_rows(),
                        pending_appends = self.pending.appended_rows(),
                        "write-behind commit failed; keeping the batch and retrying");
                    // keep taking batches while waiting, so producers never block
                    let until = tokio::time::Instant::now() + retry;
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep_until(until) => break,
                            got = rx.recv(), if open => match got {
                                Some(b) => self.take(b),
                                None => open = false,
                            },
                        }
                    }
                    retry = (retry * 2).min(self.options.retry_max);
                }
            }
        }
        if let Some(lease) = self.lease.take() {
            lease.release().await;
        }
        info!(
            commits = self.report.commits,
            rows = self.report.rows,
            last_tick = ?self.report.last_tick,
            "writer stopped"
        );
        Ok(self.report)
    }

    /// Whether the pending batch should be committed now.
    fn due(&self) -> bool {
        !self.pending.is_empty()
            && (self.pending.checkpoint.is_some()
                || self
                    .pending_since
                    .is_some_and(|s| s.elapsed() >= self.options.max_wait))
    }

    fn take(&mut self, batch: Batch) {
        self.shared.queue_depth.fetch_sub(1, Ordering::Relaxed);
        if self.pending.is_empty() {
            self.pending_since = Some(Instant::now());
        }
        self.pending.merge(batch);
        self.publish();
    }

    fn publish(&self) {
        let s = &self.shared;
        let states = self.pending.state_rows();
        s.pending_states.store(states as i64, Ordering::Relaxed);
        let appends = self.pending.appended_rows();
        metrics::gauge!("hearth_writer_pending_rows", "kind" => "state").set(states as f64);
        metrics::gauge!("hearth_writer_pending_rows", "kind" => "append").set(appends as f64);
        metrics::gauge!("hearth_writer_queue_depth")
            .set(s.queue_depth.load(Ordering::Relaxed).max(0) as f64);
        s.pending_appends.store(appends as i64, Ordering::Relaxed);
        s.backlogged
            .store(appends > self.options.max_backlog, Ordering::Relaxed);
        s.oldest_pending_us.store(
            match self.pending_since {
                Some(t) if !self.pending.is_empty() => {
                    t.saturating_duration_since(self.started).as_micros() as i64
                }
                _ => -1,
            },
            Ordering::Relaxed,
        );
    }

    async fn attempt(
        &mut self,
        batch: &Batch,
        idempotent: bool,
    ) -> Result<(Committed, Duration), Failure> {
        let fence = match &mut self.lease {
            Some(lease) => {
                match lease.ensure().await {
                    Ok(()) => {}
                    Err(e @ LeaseError::Lost { .. }) => return Err(Failure::Fatal(e.into())),
                    Err(e) => return Err(Failure::Retry(e.to_string(), false)),
                }
                Some((lease.world_id(), lease.token()))
            }
            None => None,
        };
        let client = match self.pool.get().await {
            Ok(c) => c,
            Err(e) => {
                self.shared.connected.store(false, Ordering::Relaxed);
                return Err(Failure::Retry(DbError::from(e).to_string(), false));
            }
        };
        let started = Instant::now();
        let options = CommitOptions { fence, idempotent };
        match commit_fenced(&client, batch, &options).await {
            Ok(done) => {
                self.shared.connected.store(true, Ordering::Relaxed);
                Ok((done, started.elapsed()))
            }
            Err(CommitError::LeaseLost(world)) => {
                Err(Failure::Fatal(WriterError::LeaseLost(world)))
            }
            Err(CommitError::Db(e)) => {
                let transient = e.is_transient();
                self.shared.connected.store(!transient, Ordering::Relaxed);
                if !transient {
                    // a row the database refuses is a bug in hearth, not the
                    // player's: keep it (nothing accepted is dropped) and say so loudly
                    tracing::error!(error = %e, "the database rejected a write-behind batch; \
                        it is kept and retried, and the writer reports itself backlogged \
                        until it is committed");
                    self.shared.backlogged.store(true, Ordering::Relaxed);
                }
                // a broken connection may have lost the COMMIT's answer
                Err(Failure::Retry(e.to_string(), transient))
            }
        }
    }

    fn committed(&mut self, batch: &Batch, done: Committed, took: Duration) {
        let s = &self.shared;
        self.report.commits += 1;
        self.report.rows += done.rows;
        self.report.memories += batch.memories.len() as u64;
        if done.tick.is_some() {
            self.report.last_tick = done.tick;
        }
        s.commits.fetch_add(1, Ordering::Relaxed);
        s.rows.fetch_add(done.rows, Ordering::Relaxed);
        s.memories
            .fetch_add(batch.memories.len() as u64, Ordering::Relaxed);
        if let Some(t) = done.tick {
            s.last_tick.store(t, Ordering::Relaxed);
        }
        s.last_flush_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
        metrics::histogram!("hearth_writer_flush_seconds").record(took.as_secs_f64());
        metrics::counter!("hearth_writer_rows_total").increment(done.rows);
        metrics::counter!("hearth_writer_memories_total").increment(batch.memories.len() as u64);
        metrics::counter!("hearth_writer_commits_total").increment(1);
        debug!(rows = done.rows, tick = ?done.tick, ms = took.as_secs_f64() * 1e3, "committed");
    }
}

enum Failure {
    /// Retry later: the message, and whether the commit may have happened.
    Retry(String, bool),
    Fatal(WriterError),
}

/// The newest checkpoint of world `world_id`: (tick, game time, state).
#[instrument(skip_all, fields(world_id))]
pub async fn last_checkpoint(
    client: &Client,
    world_id: i64,
) -> Result<Option<Checkpoint>, DbError> {
    let row = client
        .query_opt(
            "SELECT tick, game_time, state FROM world_checkpoints WHERE world_id = $1 \
             ORDER BY tick DESC LIMIT 1",
            &[&world_id],
        )
        .await?;
    Ok(match row {
        Some(r) => Some(Checkpoint {
            world_id,
            tick: r.try_get(0)?,
            game_time: r.try_get(1)?,
            state: r.try_get(2)?,
        }),
        None => None,
    })
}

/// What a world resumes from: its newest checkpoint (with the world's saved
/// state) and the saved components of each agent, by slug.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedWorld {
    pub checkpoint: Checkpoint,
    pub agents: Vec<(String, Vec<u8>)>,
    /// Every relationship between the world's agents.
    pub relationships: Vec<SavedRelationship>,
}

/// A relationship as saved, its two agents by slug.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedRelationship {
    pub agent: String,
    pub target: String,
    pub kind: String,
    pub affection: f32,
    pub trust: f32,
    pub interaction_count: i32,
    pub last_interaction: Option<NaiveDateTime>,
}

/// The world's [`SavedWorld`]; `None` for a world never checkpointed with
/// state.
#[instrument(skip_all, fields(world_id))]
pub async fn load_saved(client: &Client, world_id: i64) -> Result<Option<SavedWorld>, DbError> {
    let row = client
        .query_opt(
            "SELECT tick, game_time, state FROM world_checkpoints \
             WHERE world_id = $1 AND state IS NOT NULL ORDER BY tick DESC LIMIT 1",
            &[&world_id],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let checkpoint = Checkpoint {
        world_id,
        tick: row.try_get(0)?,
        game_time: row.try_get(1)?,
        state: row.try_get(2)?,
    };
    let rows = client
        .query(
            "SELECT a.slug, s.sim FROM agent_states s JOIN agents a ON a.id = s.agent_id \
             WHERE s.world_id = $1 AND s.sim IS NOT NULL ORDER BY a.id",
            &[&world_id],
        )
        .await?;
    let mut agents = Vec::with_capacity(rows.len());
    for r in rows {
        agents.push((r.try_get(0)?, r.try_get(1)?));
    }
    let rows = client
        .query(
            "SELECT a.slug, t.slug, r.type, r.affection, r.trust, r.interaction_count, \
                    r.last_interaction \
             FROM agent_relationships r JOIN agents a ON a.id = r.agent_id \
             JOIN agents t ON t.id = r.target_agent_id \
             WHERE r.world_id = $1 ORDER BY r.agent_id, r.target_agent_id",
            &[&world_id],
        )
        .await?;
    let mut relationships = Vec::with_capacity(rows.len());
    for r in rows {
        relationships.push(SavedRelationship {
            agent: r.try_get(0)?,
            target: r.try_get(1)?,
            kind: r.try_get(2)?,
            affection: r.try_get(3)?,
            trust: r.try_get(4)?,
            interaction_count: r.try_get(5)?,
            last_interaction: r.try_get(6)?,
        });
    }
    Ok(Some(SavedWorld {
        checkpoint,
        agents,
        relationships,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(agent_id: i64, tick: i64) -> AgentStateRow {
        AgentStateRow {
            agent_id,
            world_id: 1,
            x: 0.0,
            y: 0.0,
            facing: "s".into(),
            action: "idle".into(),
            action_started_at: None,
            action_target: None,
            target: None,
            location_name: None,
            energy: 1.0,
            mood: 0.0,
            emotional_state: Value::Object(Default::default()),
            physical_state: Value::Object(Default::default()),
            cognitive_load: 0.0,
            updated_tick: tick,
            sim: None,
        }
    }

    fn checkpoint(tick: i64) -> Checkpoint {
        Checkpoint {
            world_id: 1,
            tick,
            game_time: crate::game_time::to_timestamp(tick as u64),
            state: None,
        }
    }

    #[test]
    fn merging_keeps_the_newest_state_and_every_appended_row() {
        let mut older = Batch::default();
        older.agent_states.insert(1, state(1, 10));
        older.agent_states.insert(2, state(2, 10));
        older.checkpoint = Some(checkpoint(10));
        let mut newer = Batch::default();
        newer.agent_states.insert(1, state(1, 20));
        newer.checkpoint = Some(checkpoint(20));
        older.merge(newer);
        assert_eq!(older.agent_states.len(), 2);
        assert_eq!(older.agent_states[&1].updated_tick, 20);
        assert_eq!(older.agent_states[&2].updated_tick, 10);
        assert_eq!(older.checkpoint.as_ref().map(|c| c.tick), Some(20));
        // a batch without a checkpoint does not erase the one pending
        older.merge(Batch::default());
        assert_eq!(older.checkpoint.as_ref().map(|c| c.tick), Some(20));
        assert_eq!(older.state_rows(), 2);
    }
}
