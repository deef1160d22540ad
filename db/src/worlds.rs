//! Worlds, the unit of tenancy, and the vector indexes their embedding
//! dimension needs. Touches `worlds`, and creates per-dimension partial HNSW
//! indexes on `agent_memories` (reflections only) and `lore_chunks`.

use tokio_postgres::Client;
use tracing::{debug, instrument, warn};

use crate::DbError;

/// pgvector's HNSW indexes take `vector` up to 2,000 dimensions and
/// `halfvec` up to 4,000; larger vectors are searched exactly.
const HNSW_MAX_VECTOR: i32 = 2000;
const HNSW_MAX_HALFVEC: i32 = 4000;

/// A row of `worlds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub embedding_model: String,
    pub embedding_dim: i32,
}

/// The typed expression a similarity query must order by to use the HNSW
/// index of this dimension, e.g. `vector(384)`; `None` when no index fits.
///
/// ```
/// use hearth_db::worlds::index_cast;
/// assert_eq!(index_cast(384).as_deref(), Some("vector(384)"));
/// assert_eq!(index_cast(3072).as_deref(), Some("halfvec(3072)"));
/// assert_eq!(index_cast(8192), None);
/// ```
pub fn index_cast(dim: i32) -> Option<String> {
    match dim {
        1..=HNSW_MAX_VECTOR => Some(format!("vector({dim})")),
        _ if (1..=HNSW_MAX_HALFVEC).contains(&dim) => Some(format!("halfvec({dim})")),
        _ => None,
    }
}

/// Returns the world `slug`, creating it with this embedding model if it does
/// not exist. A world created with another model or dimension is refused:
/// its stored vectors would not compare with new ones.
#[instrument(skip_all, fields(slug))]
pub async fn ensure(
    client: &Client,
    slug: &str,
    name: &str,
    embedding_model: &str,
    embedding_dim: i32,
) -> Result<World, DbError> {
    if !(1..=16000).contains(&embedding_dim) {
        return Err(DbError::InvalidValue(format!(
            "embedding dimension {embedding_dim} is out of range 1..=16000"
        )));
    }
    client
        .execute(
            "INSERT INTO worlds (slug, name, embedding_model, embedding_dim) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (slug) DO NOTHING",
            &[&slug, &name, &embedding_model, &embedding_dim],
        )
        .await?;
    let world = get(client, slug).await?.ok_or_else(|| {
        DbError::InvalidValue(format!("world '{slug}' vanished while being created"))
    })?;
    if world.embedding_model != embedding_model || world.embedding_dim != embedding_dim {
        return Err(DbError::EmbeddingModelMismatch {
            world: world.slug,
            stored_model: world.embedding_model,
            stored_dim: world.embedding_dim,
            configured_model: embedding_model.to_owned(),
            configured_dim: embedding_dim,
        });
    }
    ensure_vector_indexes(client, embedding_dim).await?;
    Ok(world)
}

pub async fn get(client: &Client, slug: &str) -> Result<Option<World>, DbError> {
    let row = client
        .query_opt(
            "SELECT id, slug, name, embedding_model, embedding_dim FROM worlds WHERE slug = $1",
            &[&slug],
        )
        .await?;
    Ok(row.map(|r| World {
        id: r.get(0),
        slug: r.get(1),
        name: r.get(2),
        embedding_model: r.get(3),
        embedding_dim: r.get(4),
    }))
}

/// Deletes world `slug` with everything in it (agents, memories,
/// characters and roles go with it by cascade); false when there was none.
#[instrument(skip_all, fields(slug))]
pub async fn delete(client: &Client, slug: &str) -> Result<bool, DbError> {
    // A world filled from (near) empty moments ago, before autovacuum's
    // analyze, has stale statistics: the cascade's per-row lookups are then
    // planned as sequential scans, and deleting a 10k-agent world took over
    // ten minutes instead of about three seconds.
    client
        .batch_execute(
            "ANALYZE agents, agent_states, agent_memories, agent_relationships, \
             agent_plans, agent_schedules, conversations, conversation_participants, messages",
        )
        .await?;
    let n = client
        .execute("DELETE FROM worlds WHERE slug = $1", &[&slug])
        .await?;
    Ok(n == 1)
}

/// Switches world `world_id` to another embedding model: in one transaction
/// every stored vector of the world (memories and lore) is cleared — vectors
/// of two models never mix — and the world records the new model and
/// dimension. Re-embedding then fills the vectors back in (`hearth memories
/// reembed`); until then memories are retrieved by recency and importance.
#[instrument(skip_all, fields(world_id, model, dim))]
pub async fn switch_model(
    client: &mut Client,
    world_id: i64,
    model: &str,
    dim: i32,
) -> Result<(), DbError> {
    if !(1..=16000).contains(&dim) {
        return Err(DbError::InvalidValue(format!(
            "embedding dimension {dim} is out of range 1..=16000"
        )));
    }
    let tx = client.transaction().await?;
    tx.execute(
        "UPDATE agent_memories SET embedding = NULL, embedding_dim = NULL \
         WHERE world_id = $1 AND embedding IS NOT NULL",
        &[&world_id],
    )
    .await?;
    tx.execute(
        "UPDATE lore_chunks SET embedding = NULL, embedding_dim = NULL \
         WHERE world_id = $1 AND embedding IS NOT NULL",
        &[&world_id],
    )
    .await?;
    let changed = tx
        .execute(
            "UPDATE worlds SET embedding_model = $2, embedding_dim = $3, updated_at = now() \
             WHERE id = $1",
            &[&world_id, &model, &dim],
        )
        .await?;
    if changed == 0 {
        return Err(DbError::InvalidValue(format!(
            "no world with id {world_id}"
        )));
    }
    tx.commit().await?;
    ensure_vector_indexes(client, dim).await
}

/// Creates the partial HNSW indexes for `dim` if missing (the migrations
/// create those of the default 384). Cheap when the world is new: the index
/// covers only rows of that dimension.
pub async fn ensure_vector_indexes(client: &Client, dim: i32) -> Result<(), DbError> {
    let Some(cast) = index_cast(dim) else {
        warn!(
            dim,
            "no HNSW index for vectors over {HNSW_MAX_HALFVEC} dimensions; similarity search will scan"
        );
        return Ok(());
    };
    let ops = if cast.starts_with("halfvec") {
        "halfvec_cosine_ops"
    } else {
        "vector_cosine_ops"
    };
    let wanted = [
        (
            format!("agent_memories_reflection_hnsw_{dim}"),
            format!(
                "CREATE INDEX IF NOT EXISTS agent_memories_reflection_hnsw_{dim} ON agent_memories \
                 USING hnsw ((embedding::{cast}) {ops}) WITH (m = 16, ef_construction = 64) \
                 WHERE kind = 'reflection' AND embedding_dim = {dim}"
            ),
        ),
        (
            format!("lore_chunks_hnsw_{dim}"),
            format!(
                "CREATE INDEX IF NOT EXISTS lore_chunks_hnsw_{dim} ON lore_chunks \
                 USING hnsw ((embedding::{cast}) {ops}) WITH (m = 16, ef_construction = 64) \
                 WHERE embedding_dim = {dim}"
            ),
        ),
    ];
    let names: Vec<&str> = wanted.iter().map(|(n, _)| n.as_str()).collect();
    let existing: Vec<String> = client
        .query(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND indexname = ANY($1)",
            &[&names],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (name, sql) in &wanted {
        if existing.contains(name) {
            continue;
        }
        if let Err(e) = client.batch_execute(sql).await {
            // two processes creating the same index: the loser sees a duplicate
            if e.code() != Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                return Err(e.into());
            }
        }
    }
    debug!(dim, cast, "vector indexes ready");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_follow_pgvector_hnsw_limits() {
        assert_eq!(index_cast(384).as_deref(), Some("vector(384)"));
        assert_eq!(index_cast(2000).as_deref(), Some("vector(2000)"));
        assert_eq!(index_cast(3072).as_deref(), Some("halfvec(3072)"));
        assert_eq!(index_cast(4001), None);
        assert_eq!(index_cast(0), None);
    }
}
