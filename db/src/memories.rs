//! Agents' memories in PostgreSQL: bulk ingestion by binary COPY, embeddings
//! set in batches, exact per-agent scored retrieval and world-wide nearest
//! reflections through HNSW. Touches only `agent_memories`; plain row
//! structs in and out, nothing of the ECS.
//!
//! # Two ways to search, on purpose
//! - [`retrieve_exact`] scores **every** memory of one agent (recency,
//!   importance, relevance, emotion; each min-max normalised over the agent's
//!   memories) in one statement. It never goes through an HNSW index: with an
//!   agent filter, pgvector's HNSW search filters *after* the index scan and
//!   returns almost nothing (measured recall 0.04), and the score is not a
//!   distance an index can order by anyway. The ordering is a computed
//!   column, so the planner cannot pick a vector index for it.
//! - [`nearest_reflections`] is the world-wide question "which reflections,
//!   of anyone, are closest to this?", answered by the partial HNSW index on
//!   reflections of the world's dimension (approximate, fast).
//!
//! Scores follow exactly the in-process definition of the server's
//! `mind::retrieval` (the tests check that both rank the same data alike).

use chrono::NaiveDateTime;
use pgvector::Vector;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row};
use tracing::{debug, instrument};

use crate::DbError;
use crate::worlds::index_cast;

/// pgvector's `vector` holds at most 16,000 dimensions.
const MAX_DIM: usize = 16_000;

/// Rows per statement when setting embeddings (keeps each message a few MB).
const EMBEDDING_BATCH: usize = 2_000;

/// The columns [`MemoryRow`] maps to, in its field order.
const COLUMNS: &str = "world_id, agent_id, id, kind, content, importance, emotional_valence, \
     emotional_intensity, tags, related_agent_ids, related_character_ids, location, \
     created_game_time, last_accessed_game_time, depth, evidence_ids, embedding";

/// One row of `agent_memories`. The `embedding_dim` column is derived from
/// `embedding`. Game times are timestamps from [`crate::game_time`].
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryRow {
    pub world_id: i64,
    pub agent_id: i64,
    /// Assigned by the agent's memory stream, from 1; unique per agent.
    pub id: i64,
    /// `observation`, `conversation`, `reflection`, `plan` or `metacognition`.
    pub kind: String,
    pub content: String,
    /// 1 ..= 10.
    pub importance: i16,
    /// -1 ..= 1.
    pub emotional_valence: f32,
    /// 0 ..= 1.
    pub emotional_intensity: f32,
    pub tags: Vec<String>,
    pub related_agent_ids: Vec<i64>,
    pub related_character_ids: Vec<i64>,
    pub location: Option<String>,
    pub created_game_time: NaiveDateTime,
    pub last_accessed_game_time: NaiveDateTime,
    /// 0 for what was perceived; 1 + the deepest evidence for reflections.
    pub depth: i16,
    pub evidence_ids: Vec<i64>,
    /// `None` until the embedder has run.
    pub embedding: Option<Vec<f32>>,
}

/// How [`retrieve_exact`] scores: the weights of the four normalised terms,
/// the recency decay per game hour and the valence the emotion term favours.
/// The server builds it from its `RetrievalParams` and query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scoring {
    pub recency: f64,
    pub importance: f64,
    pub relevance: f64,
    pub emotion: f64,
    /// Recency = `decay_per_hour ^ game hours since last access`; in (0, 1].
    pub decay_per_hour: f64,
    /// -1 ..= 1: memories whose valence is near this (and intense) score
    /// high on the emotion term.
    pub target_valence: f64,
}

/// One memory as [`retrieve_exact`] ranked it: what to show, and each
/// normalised term (0 ..= 1) with the weighted total, for `--explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredRow {
    pub id: i64,
    pub kind: String,
    pub content: String,
    pub created_game_time: NaiveDateTime,
    pub last_accessed_game_time: NaiveDateTime,
    /// The stored importance, 1 ..= 10.
    pub raw_importance: i16,
    /// Cosine similarity to the query; `None` without an embedding (or query).
    pub similarity: Option<f64>,
    pub recency: f64,
    pub importance: f64,
    pub relevance: f64,
    pub emotion: f64,
    pub total: f64,
}

/// A reflection found by [`nearest_reflections`].
#[derive(Debug, Clone, PartialEq)]
pub struct NearReflection {
    pub agent_id: i64,
    pub id: i64,
    pub content: String,
    /// Cosine similarity to the query.
    pub similarity: f64,
}

/// The PostgreSQL type of `vector` in this database (an extension type, so
/// its OID differs between databases).
async fn vector_type(client: &Client) -> Result<Type, DbError> {
    let stmt = client.prepare("SELECT $1::vector").await?;
    stmt.params()
        .first()
        .cloned()
        .ok_or_else(|| DbError::InvalidValue("the vector type has no parameter type".into()))
}

/// Checks what PostgreSQL would reject without naming a constraint.
fn check_embedding(agent_id: i64, id: i64, embedding: &[f32]) -> Result<(), DbError> {
    if embedding.is_empty() || embedding.len() > MAX_DIM {
        return Err(DbError::InvalidValue(format!(
            "memory {id} of agent {agent_id}: embedding has {} dimensions, expected 1..={MAX_DIM}",
            embedding.len()
        )));
    }
    if let Some(pos) = embedding.iter().position(|x| !x.is_finite()) {
        return Err(DbError::InvalidValue(format!(
            "memory {id} of agent {agent_id}: embedding component {pos} is not a finite number"
        )));
    }
    Ok(())
}

fn check_text(row: &MemoryRow) -> Result<(), DbError> {
    let nul = row.content.contains('\0')
        || row.location.as_deref().is_some_and(|l| l.contains('\0'))
        || row.tags.iter().any(|t| t.contains('\0'));
    if nul {
        return Err(DbError::InvalidValue(format!(
            "memory {} of agent {}: text contains a NUL character, which PostgreSQL cannot store",
            row.id, row.agent_id
        )));
    }
    Ok(())
}

/// Appends `rows` by binary COPY in one statement: all or none. This is the
/// ingestion path (tens of thousands of rows per second; see BENCHMARKS.md).
/// Inside a transaction pass `transaction.client()` (tokio-postgres'
/// `GenericClient`). Returns the number of rows written.
///
/// A value the schema forbids (importance 0, an unknown kind, a vector of
/// another dimension than the world's, a duplicate id, an unknown agent) comes
/// back as [`DbError::Constraint`] or [`DbError::EmbeddingDimension`] naming
/// the constraint; vectors that are empty or not finite and text with NUL
/// characters as [`DbError::InvalidValue`] before anything is sent.
#[instrument(skip_all, fields(rows = rows.len()))]
pub async fn copy_in(client: &Client, rows: &[MemoryRow]) -> Result<u64, DbError> {
    if rows.is_empty() {
        return Ok(0);
    }
    for row in rows {
        check_text(row)?;
        if let Some(e) = &row.embedding {
            check_embedding(row.agent_id, row.id, e)?;
        }
    }
    let vector = vector_type(client).await?;
    let types = [
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::INT2,
        Type::FLOAT4,
        Type::FLOAT4,
        Type::TEXT_ARRAY,
        Type::INT8_ARRAY,
        Type::INT8_ARRAY,
        Type::TEXT,
        Type::TIMESTAMP,
        Type::TIMESTAMP,
        Type::INT2,
        Type::INT8_ARRAY,
        vector,
        Type::INT4,
    ];
    let sink = client
        .copy_in(&format!(
            "COPY agent_memories ({COLUMNS}, embedding_dim) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for row in rows {
        let embedding = row.embedding.as_ref().map(|e| Vector::from(e.clone()));
        // checked above: at most MAX_DIM
        let dim = row
            .embedding
            .as_ref()
            .map(|e| i32::try_from(e.len()).unwrap_or(i32::MAX));
        let values: [&(dyn ToSql + Sync); 18] = [
            &row.world_id,
            &row.agent_id,
            &row.id,
            &row.kind,
            &row.content,
            &row.importance,
            &row.emotional_valence,
            &row.emotional_intensity,
            &row.tags,
            &row.related_agent_ids,
            &row.related_character_ids,
            &row.location,
            &row.created_game_time,
            &row.last_accessed_game_time,
            &row.depth,
            &row.evidence_ids,
            &embedding,
            &dim,
        ];
        writer.as_mut().write(&values).await?;
    }
    let written = writer.as_mut().finish().await?;
    debug!(written, "memories copied");
    Ok(written)
}

/// Sets the embeddings of memories of world `world_id`, `(agent_id, id,
/// vector)` each, in batched `UPDATE … FROM unnest(…)` statements; returns
/// how many rows were updated (memories not found are skipped). A vector
/// whose length is not `dim`, or a `dim` that is not the world's, is refused
/// by the schema as [`DbError::EmbeddingDimension`].
#[instrument(skip_all, fields(world_id, dim, rows = embeddings.len()))]
pub async fn set_embeddings(
    client: &Client,
    world_id: i64,
    dim: i32,
    embeddings: &[(i64, i64, Vec<f32>)],
) -> Result<u64, DbError> {
    for (agent_id, id, e) in embeddings {
        check_embedding(*agent_id, *id, e)?;
    }
    let stmt = client
        .prepare(
            "UPDATE agent_memories AS m SET embedding = t.e, embedding_dim = $2 \
             FROM unnest($3::bigint[], $4::bigint[], $5::vector[]) AS t(agent_id, id, e) \
             WHERE m.agent_id = t.agent_id AND m.id = t.id AND m.world_id = $1",
        )
        .await?;
    let mut updated = 0;
    for batch in embeddings.chunks(EMBEDDING_BATCH) {
        let agents: Vec<i64> = batch.iter().map(|(a, _, _)| *a).collect();
        let ids: Vec<i64> = batch.iter().map(|(_, i, _)| *i).collect();
        let vectors: Vec<Vector> = batch
            .iter()
            .map(|(_, _, e)| Vector::from(e.clone()))
            .collect();
        updated += client
            .execute(&stmt, &[&world_id, &dim, &agents, &ids, &vectors])
            .await?;
    }
    Ok(updated)
}

/// Removes every embedding of world `world_id` (before the world switches to
/// a model of another dimension and re-embeds); returns the rows changed.
#[instrument(skip_all, fields(world_id))]
pub async fn clear_embeddings(client: &Client, world_id: i64) -> Result<u64, DbError> {
    Ok(client
        .execute(
            "UPDATE agent_memories SET embedding = NULL, embedding_dim = NULL \
             WHERE world_id = $1 AND embedding IS NOT NULL",
            &[&world_id],
        )
        .await?)
}

/// Marks memories `ids` of `agent_id` as accessed at `at` (retrieval does
/// this). Never moves a last access backwards; returns the rows changed.
#[instrument(skip_all, fields(agent_id, ids = ids.len()))]
pub async fn touch(
    client: &Client,
    agent_id: i64,
    ids: &[i64],
    at: NaiveDateTime,
) -> Result<u64, DbError> {
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(client
        .execute(
            "UPDATE agent_memories SET last_accessed_game_time = $3 \
             WHERE agent_id = $1 AND id = ANY($2) AND last_accessed_game_time < $3",
            &[&agent_id, &ids, &at],
        )
        .await?)
}

fn memory_from_row(row: &Row) -> Result<MemoryRow, DbError> {
    let embedding: Option<Vector> = row.try_get(16)?;
    Ok(MemoryRow {
        world_id: row.try_get(0)?,
        agent_id: row.try_get(1)?,
        id: row.try_get(2)?,
        kind: row.try_get(3)?,
        content: row.try_get(4)?,
        importance: row.try_get(5)?,
        emotional_valence: row.try_get(6)?,
        emotional_intensity: row.try_get(7)?,
        tags: row.try_get(8)?,
        related_agent_ids: row.try_get(9)?,
        related_character_ids: row.try_get(10)?,
        location: row.try_get(11)?,
        created_game_time: row.try_get(12)?,
        last_accessed_game_time: row.try_get(13)?,
        depth: row.try_get(14)?,
        evidence_ids: row.try_get(15)?,
        embedding: embedding.map(|v| v.to_vec()),
    })
}

/// The newest `limit` memories of `agent_id` (highest ids first), embeddings
/// included: what warms the agent's in-process hot store.
#[instrument(skip_all, fields(agent_id, limit))]
pub async fn load_recent(
    client: &Client,
    agent_id: i64,
    limit: i64,
) -> Result<Vec<MemoryRow>, DbError> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM agent_memories WHERE agent_id = $1 ORDER BY id DESC LIMIT $2"
            ),
            &[&agent_id, &limit.max(0)],
        )
        .await?;
    rows.iter().map(memory_from_row).collect()
}

/// The statement of [`retrieve_exact`]. Each raw term is computed once per
/// memory (a materialised CTE of narrow rows: no text, no vector, so it
/// stays in memory), min-max normalised over all of the agent's memories (all
/// equal → 0.5), weighted and summed; only the top `k` are joined back for
/// their text. Relevance: a memory without an embedding (or of another
/// dimension than the query, or a zero vector) has no similarity, is left
/// out of the relevance min/max (aggregates skip NULL) and gets a relevance
/// term of 0. The formulas are those of `hearth::mind::retrieval::rank`.
const RETRIEVE_EXACT: &str = "\
WITH raw AS MATERIALIZED (
    SELECT id,
           exp(GREATEST(date_part('epoch', $2::timestamp - last_accessed_game_time), 0)
               / 3600.0 * ln($3::float8)) AS rec,
           importance::float8 AS imp,
           CASE WHEN $4::vector IS NOT NULL AND embedding_dim = $5::int4
                THEN NULLIF(1 - (embedding <=> $4::vector), 'NaN'::float8) END AS sim,
           emotional_intensity::float8 * (1 - abs(emotional_valence::float8 - $6::float8) / 2) AS emo
    FROM agent_memories
    WHERE agent_id = $1
), bounds AS (
    SELECT min(rec) AS rec_min, max(rec) AS rec_max, min(imp) AS imp_min, max(imp) AS imp_max,
           min(sim) AS sim_min, max(sim) AS sim_max, min(emo) AS emo_min, max(emo) AS emo_max
    FROM raw
), terms AS (
    SELECT id, sim,
           CASE WHEN rec_max = rec_min THEN 0.5 ELSE (rec - rec_min) / (rec_max - rec_min) END AS t_rec,
           CASE WHEN imp_max = imp_min THEN 0.5 ELSE (imp - imp_min) / (imp_max - imp_min) END AS t_imp,
           CASE WHEN sim IS NULL THEN 0.0
                WHEN sim_max = sim_min THEN 0.5
                ELSE (sim - sim_min) / (sim_max - sim_min) END AS t_rel,
           CASE WHEN emo_max = emo_min THEN 0.5 ELSE (emo - emo_min) / (emo_max - emo_min) END AS t_emo
    FROM raw CROSS JOIN bounds
), top AS (
    SELECT id, sim, t_rec, t_imp, t_rel, t_emo,
           $7::float8 * t_rec + $8::float8 * t_imp + $9::float8 * t_rel + $10::float8 * t_emo AS total
    FROM terms
    ORDER BY total DESC, id DESC
    LIMIT $11
)
SELECT m.id, m.kind, m.content, m.created_game_time, m.last_accessed_game_time, m.importance,
       top.sim, top.t_rec, top.t_imp, top.t_rel, top.t_emo, top.total
FROM top JOIN agent_memories AS m ON m.agent_id = $1 AND m.id = top.id
ORDER BY top.total DESC, top.id DESC";

/// The top `k` memories of `agent_id` by the retrieval score, computed over
/// **every** memory of the agent, exactly (no index; see the module docs).
/// `query` is the query's embedding (`None`: relevance plays no part). Does
/// not mark the memories accessed: call [`touch`] for that.
#[instrument(skip_all, fields(agent_id, k))]
pub async fn retrieve_exact(
    client: &Client,
    agent_id: i64,
    query: Option<&[f32]>,
    now: NaiveDateTime,
    scoring: &Scoring,
    k: usize,
) -> Result<Vec<ScoredRow>, DbError> {
    if !(scoring.decay_per_hour > 0.0 && scoring.decay_per_hour.is_finite()) {
        return Err(DbError::InvalidValue(format!(
            "recency decay per hour must be a positive number, not {}",
            scoring.decay_per_hour
        )));
    }
    if let Some(q) = query {
        check_embedding(agent_id, 0, q)?;
    }
    let vector = query.map(|q| Vector::from(q.to_vec()));
    let dim = query.map_or(0, |q| i32::try_from(q.len()).unwrap_or(i32::MAX));
    let target = scoring.target_valence.clamp(-1.0, 1.0);
    let limit = i64::try_from(k).unwrap_or(i64::MAX);
    let rows = client
        .query(
            RETRIEVE_EXACT,
            &[
                &agent_id,
                &now,
                &scoring.decay_per_hour,
                &vector,
                &dim,
                &target,
                &scoring.recency,
                &scoring.importance,
                &scoring.relevance,
                &scoring.emotion,
                &limit,
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ScoredRow {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                content: r.try_get(2)?,
                created_game_time: r.try_get(3)?,
                last_accessed_game_time: r.try_get(4)?,
                raw_importance: r.try_get(5)?,
                similarity: r.try_get(6)?,
                recency: r.try_get(7)?,
                importance: r.try_get(8)?,
                relevance: r.try_get(9)?,
                emotion: r.try_get(10)?,
                total: r.try_get(11)?,
            })
        })
        .collect()
}

/// The `k` reflections of world `world_id` nearest to `query` (cosine),
/// across all its agents, through the partial HNSW index for reflections of
/// dimension `dim` (approximate: recall ≈ 0.94–0.98, see BENCHMARKS.md). For
/// dimensions without an index (over 4,000) the search is exact.
///
/// Sets `hnsw.ef_search` (at least `k`, so `k` results can come back) and,
/// on pgvector ≥ 0.8, `hnsw.iterative_scan = strict_order` (so the world
/// filter cannot starve the result) on this session.
#[instrument(skip_all, fields(world_id, dim, k))]
pub async fn nearest_reflections(
    client: &Client,
    world_id: i64,
    dim: i32,
    query: &[f32],
    k: usize,
) -> Result<Vec<NearReflection>, DbError> {
    check_embedding(0, 0, query)?;
    if usize::try_from(dim).ok() != Some(query.len()) {
        return Err(DbError::InvalidValue(format!(
            "query embedding has {} dimensions, the world's model {dim}",
            query.len()
        )));
    }
    let limit = i64::try_from(k).unwrap_or(i64::MAX);
    if index_cast(dim).is_some() {
        let ef = k.clamp(40, 1000);
        let settings = format!("SET hnsw.ef_search = {ef}");
        if let Err(e) = client
            .batch_execute(&format!(
                "{settings}; SET hnsw.iterative_scan = strict_order"
            ))
            .await
        {
            // pgvector before 0.8 has no iterative scans
            let old = e.code() == Some(&SqlState::UNDEFINED_OBJECT)
                || e.code() == Some(&SqlState::INVALID_NAME);
            if !old {
                return Err(e.into());
            }
            client.batch_execute(&settings).await?;
        }
    }
    let sql = nearest_reflections_sql(dim);
    let vector = Vector::from(query.to_vec());
    let rows = client.query(&sql, &[&world_id, &vector, &limit]).await?;
    rows.iter()
        .map(|r| {
            Ok(NearReflection {
                agent_id: r.try_get(0)?,
                id: r.try_get(1)?,
                content: r.try_get(2)?,
                similarity: r.try_get(3)?,
            })
        })
        .collect()
}

/// The statement [`nearest_reflections`] runs for dimension `dim` (`$1`
/// world id, `$2` query vector, `$3` limit): ordered by the expression and
/// filtered by the predicate of the partial HNSW index, so the planner can
/// use it. Public so tests and operators can `EXPLAIN` it.
pub fn nearest_reflections_sql(dim: i32) -> String {
    match index_cast(dim) {
        Some(cast) => format!(
            "SELECT agent_id, id, content, 1 - (embedding::{cast} <=> ($2::vector)::{cast}) \
             FROM agent_memories \
             WHERE kind = 'reflection' AND embedding_dim = {dim} AND world_id = $1 \
             ORDER BY embedding::{cast} <=> ($2::vector)::{cast} LIMIT $3"
        ),
        None => format!(
            "SELECT agent_id, id, content, 1 - (embedding <=> $2::vector) \
             FROM agent_memories \
             WHERE kind = 'reflection' AND embedding_dim = {dim} AND world_id = $1 \
             ORDER BY embedding <=> $2::vector LIMIT $3"
        ),
    }
}

/// One page of world `world_id`'s memories for re-embedding: `(agent_id, id,
/// content)` in key order after `after` (`None`: from the start), at most
/// `limit`. Pass the last key of a page as `after` to get the next one; an
/// empty page is the end.
#[instrument(skip_all, fields(world_id, limit))]
pub async fn scan_for_reembed(
    client: &Client,
    world_id: i64,
    after: Option<(i64, i64)>,
    limit: i64,
) -> Result<Vec<(i64, i64, String)>, DbError> {
    let (agent, id) = after.unwrap_or((i64::MIN, i64::MIN));
    let rows = client
        .query(
            "SELECT agent_id, id, content FROM agent_memories \
             WHERE world_id = $1 AND (agent_id, id) > ($2, $3) \
             ORDER BY agent_id, id LIMIT $4",
            &[&world_id, &agent, &id, &limit.max(0)],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// How many memories world `world_id` holds.
#[instrument(skip_all, fields(world_id))]
pub async fn count(client: &Client, world_id: i64) -> Result<i64, DbError> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM agent_memories WHERE world_id = $1",
            &[&world_id],
        )
        .await?
        .try_get(0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_checked_before_sending() {
        assert!(check_embedding(1, 1, &[0.1, 0.2]).is_ok());
        let empty = check_embedding(1, 2, &[]).unwrap_err().to_string();
        assert!(empty.contains("0 dimensions"), "{empty}");
        let nan = check_embedding(1, 3, &[0.0, f32::NAN])
            .unwrap_err()
            .to_string();
        assert!(nan.contains("component 1"), "{nan}");
        assert!(check_embedding(1, 4, &vec![0.0; MAX_DIM + 1]).is_err());
    }

    #[test]
    fn the_column_list_matches_the_row() {
        // 17 columns, and the COPY adds embedding_dim as the 18th value
        assert_eq!(COLUMNS.split(',').count(), 17);
    }
}
