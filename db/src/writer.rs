//! The write-behind commit: one batch of a world's changes in one
//! transaction — state rows coalesced per entity (the latest wins), appended
//! rows (memories, messages) never dropped, and the checkpoint saying which
//! tick the database now holds, so it never holds half a tick. State rows go
//! through binary COPY into a per-connection staging table and one
//! `INSERT … ON CONFLICT` each. Knows nothing of the ECS: it takes plain
//! rows. Touches `agent_states`, `agent_relationships`, `agent_plans`,
//! `conversations`, `messages`, `agent_memories` and `world_checkpoints`.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use serde_json::Value;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tracing::instrument;

use crate::DbError;
use crate::memories::{self, MemoryRow};

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
    pub conversations: BTreeMap<i64, ConversationRow>,
    pub messages: Vec<MessageRow>,
    pub memories: Vec<MemoryRow>,
    pub checkpoint: Option<Checkpoint>,
}

impl Batch {
    /// Folds `newer` into this batch (see the type's documentation).
    pub fn merge(&mut self, newer: Batch) {
        self.agent_states.extend(newer.agent_states);
        self.relationships.extend(newer.relationships);
        self.conversations.extend(newer.conversations);
        self.messages.extend(newer.messages);
        self.memories.extend(newer.memories);
        if newer.checkpoint.is_some() {
            self.checkpoint = newer.checkpoint;
        }
    }

    /// Rows that coalesce (bounded by the number of entities).
    pub fn state_rows(&self) -> usize {
        self.agent_states.len() + self.relationships.len() + self.conversations.len()
    }

    /// Rows that only grow until committed.
    pub fn appended_rows(&self) -> usize {
        self.messages.len() + self.memories.len()
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

const STATE_COLUMNS: &str = "agent_id, world_id, x, y, facing, action, action_started_at, \
    action_target, target_x, target_y, location_name, energy, mood, emotional_state, \
    physical_state, cognitive_load, updated_tick, sim";

const STATE_TYPES: [Type; 18] = [
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
#[instrument(skip_all, fields(states = batch.agent_states.len(), appended = batch.appended_rows()))]
pub async fn commit(client: &Client, batch: &Batch) -> Result<Committed, DbError> {
    client.batch_execute("BEGIN").await?;
    match commit_in(client, batch).await {
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

async fn commit_in(client: &Client, batch: &Batch) -> Result<Committed, DbError> {
    let mut rows = 0u64;
    if !batch.agent_states.is_empty() {
        rows += upsert_states(client, batch.agent_states.values()).await?;
    }
    if !batch.relationships.is_empty() {
        rows += upsert_relationships(client, batch.relationships.values()).await?;
    }
    if !batch.conversations.is_empty() {
        rows += upsert_conversations(client, batch.conversations.values()).await?;
    }
    if !batch.messages.is_empty() {
        rows += insert_messages(client, &batch.messages).await?;
    }
    if !batch.memories.is_empty() {
        rows += memories::copy_in(client, &batch.memories).await?;
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
            Some(c.tick)
        }
        None => None,
    };
    Ok(Committed { rows, tick })
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
             ON CONFLICT (world_id, id) DO UPDATE SET location = EXCLUDED.location, \
                 topic = EXCLUDED.topic, ended_game_time = EXCLUDED.ended_game_time",
            &[&worlds, &ids, &kinds, &locations, &topics, &started, &ended],
        )
        .await?)
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
