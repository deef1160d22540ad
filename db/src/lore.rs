//! World lore in the database: documents and their chunks kept in step with
//! the files by content hash, embedded after the fact, and found by hybrid
//! search — full-text rank and vector similarity fused by reciprocal rank
//! fusion. Touches `lore_documents` and `lore_chunks` only.
//!
//! # Hybrid search
//! Two candidate lists are ranked separately, each up to
//! `max(4·k, 40)` chunks of the world:
//! - **full text**: chunks whose `tsv` matches *any* word of the query
//!   (the query's English lexemes joined by `|`, so a sentence taken from
//!   a conversation still matches), ranked by `ts_rank_cd` (cover density:
//!   more and closer matches rank higher);
//! - **vector**: chunks embedded at the world's dimension, ranked by cosine
//!   distance through the partial HNSW index of that dimension
//!   (`ORDER BY embedding::vector(384) <=> $q::vector(384)`), with pgvector's
//!   iterative scan (≥ 0.8) so that the world filter does not starve the
//!   index's candidate list.
//!
//! A chunk's fused score is `Σ 1 / (RRF_K + position)` over the lists it
//! appears in (positions from 1; Cormack, Clarke & Büttcher, 2009). Fusion by
//! ranks needs no calibration between `ts_rank_cd` values and distances,
//! which are on unrelated scales.

use std::collections::HashMap;

use pgvector::Vector;
use tokio_postgres::Client;
use tracing::{debug, instrument};

use crate::DbError;
use crate::worlds::index_cast;

/// The constant of reciprocal rank fusion: larger values flatten the
/// advantage of the first positions. 60 is the value of the original paper.
pub const RRF_K: f64 = 60.0;

/// A lore file as stored: `lore_documents` without its bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoreDocumentRow {
    /// Path under the lore directory, `/`-separated; unique in a world.
    pub path: String,
    pub title: String,
    /// 32 bytes (SHA-256); a document whose hash is unchanged is not rewritten.
    pub content_hash: Vec<u8>,
}

/// One chunk of a document: its position and the text that is embedded and
/// searched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoreChunkRow {
    pub ordinal: i32,
    pub text: String,
}

/// What [`sync_document`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// A new document with this many chunks.
    Created { document_id: i64, chunks: usize },
    /// The stored hash is the file's: nothing was written.
    Unchanged { document_id: i64 },
    /// The document changed: its chunks were replaced. Chunks whose text is
    /// unchanged kept their embeddings (`kept_embeddings` of them).
    Replaced {
        document_id: i64,
        chunks: usize,
        kept_embeddings: usize,
    },
}

/// A chunk waiting for its embedding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingChunk {
    pub id: i64,
    pub text: String,
}

/// One result of [`search_hybrid`], with what each ranking said about it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoreHit {
    pub chunk_id: i64,
    pub document_path: String,
    pub document_title: String,
    pub ordinal: i32,
    /// The chunk's stored text.
    pub text: String,
    /// `ts_rank_cd` of the chunk, when the full text matched.
    pub text_rank: Option<f32>,
    /// 1-based position in the full-text list.
    pub text_position: Option<i64>,
    /// Cosine distance (0 = same direction … 2 = opposite), when the chunk
    /// was among the nearest.
    pub vector_distance: Option<f64>,
    /// 1-based position in the vector list.
    pub vector_position: Option<i64>,
    /// The fused score, `Σ 1 / (RRF_K + position)`.
    pub score: f64,
}

/// Stores a document and its chunks in one transaction: nothing happens when
/// the stored hash equals `doc.content_hash`; a new path is inserted; a
/// changed document gets its title and hash updated and its chunks replaced,
/// keeping the embeddings of chunks whose text did not change.
#[instrument(skip_all, fields(world_id, path = %doc.path))]
pub async fn sync_document(
    client: &mut Client,
    world_id: i64,
    doc: &LoreDocumentRow,
    chunks: &[LoreChunkRow],
) -> Result<SyncOutcome, DbError> {
    if doc.content_hash.len() != 32 {
        return Err(DbError::InvalidValue(format!(
            "lore document '{}': content hash has {} bytes, expected 32 (SHA-256)",
            doc.path,
            doc.content_hash.len()
        )));
    }
    let tx = client.transaction().await?;
    let existing = tx
        .query_opt(
            "SELECT id, content_hash FROM lore_documents WHERE world_id = $1 AND path = $2 FOR UPDATE",
            &[&world_id, &doc.path],
        )
        .await?;
    let ordinals: Vec<i32> = chunks.iter().map(|c| c.ordinal).collect();
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    let outcome = match existing {
        Some(row) if row.get::<_, Vec<u8>>(1) == doc.content_hash => {
            return Ok(SyncOutcome::Unchanged {
                document_id: row.get(0),
            });
        }
        Some(row) => {
            let document_id: i64 = row.get(0);
            tx.execute(
                "UPDATE lore_documents SET title = $2, content_hash = $3, updated_at = now() WHERE id = $1",
                &[&document_id, &doc.title, &doc.content_hash],
            )
            .await?;
            let old: HashMap<String, (Vector, i32)> = tx
                .query(
                    "DELETE FROM lore_chunks WHERE document_id = $1 \
                     RETURNING text, embedding, embedding_dim",
                    &[&document_id],
                )
                .await?
                .into_iter()
                .filter_map(|r| {
                    let e: Option<Vector> = r.get(1);
                    let d: Option<i32> = r.get(2);
                    Some((r.get(0), (e?, d?)))
                })
                .collect();
            let embeddings: Vec<Option<Vector>> = chunks
                .iter()
                .map(|c| old.get(&c.text).map(|(e, _)| e.clone()))
                .collect();
            let dims: Vec<Option<i32>> = chunks
                .iter()
                .map(|c| old.get(&c.text).map(|(_, d)| *d))
                .collect();
            let kept_embeddings = dims.iter().flatten().count();
            tx.execute(
                "INSERT INTO lore_chunks (world_id, document_id, ordinal, text, embedding, embedding_dim) \
                 SELECT $1, $2, o, t, e, d \
                 FROM unnest($3::int4[], $4::text[], $5::vector[], $6::int4[]) AS c(o, t, e, d)",
                &[
                    &world_id,
                    &document_id,
                    &ordinals,
                    &texts,
                    &embeddings,
                    &dims,
                ],
            )
            .await?;
            SyncOutcome::Replaced {
                document_id,
                chunks: chunks.len(),
                kept_embeddings,
            }
        }
        None => {
            let document_id: i64 = tx
                .query_one(
                    "INSERT INTO lore_documents (world_id, path, title, content_hash) \
                     VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&world_id, &doc.path, &doc.title, &doc.content_hash],
                )
                .await?
                .get(0);
            tx.execute(
                "INSERT INTO lore_chunks (world_id, document_id, ordinal, text) \
                 SELECT $1, $2, o, t FROM unnest($3::int4[], $4::text[]) AS c(o, t)",
                &[&world_id, &document_id, &ordinals, &texts],
            )
            .await?;
            SyncOutcome::Created {
                document_id,
                chunks: chunks.len(),
            }
        }
    };
    tx.commit().await?;
    debug!(?outcome, "lore document synced");
    Ok(outcome)
}

/// Deletes the world's documents (and their chunks) whose path is not in
/// `keep_paths`, e.g. files removed from `assets/lore/`. Returns the removed
/// paths, sorted.
#[instrument(skip_all, fields(world_id))]
pub async fn remove_missing(
    client: &Client,
    world_id: i64,
    keep_paths: &[String],
) -> Result<Vec<String>, DbError> {
    let mut removed: Vec<String> = client
        .query(
            "DELETE FROM lore_documents WHERE world_id = $1 AND NOT (path = ANY($2)) RETURNING path",
            &[&world_id, &keep_paths],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    removed.sort();
    Ok(removed)
}

/// Up to `limit` of the world's chunks that have no embedding yet, oldest
/// first: feed their text to the embedder, then [`set_chunk_embeddings`].
#[instrument(skip_all, fields(world_id, limit))]
pub async fn chunks_without_embedding(
    client: &Client,
    world_id: i64,
    limit: i64,
) -> Result<Vec<PendingChunk>, DbError> {
    Ok(client
        .query(
            "SELECT id, text FROM lore_chunks WHERE world_id = $1 AND embedding IS NULL \
             ORDER BY id LIMIT $2",
            &[&world_id, &limit.max(0)],
        )
        .await?
        .iter()
        .map(|r| PendingChunk {
            id: r.get(0),
            text: r.get(1),
        })
        .collect())
}

/// Stores embeddings by chunk id, in one statement. All vectors must have the
/// world's dimension (the database refuses others with
/// [`DbError::EmbeddingDimension`]). Ids that no longer exist (the document
/// changed meanwhile) are skipped; returns how many chunks were updated.
#[instrument(skip_all, fields(world_id, n = embeddings.len()))]
pub async fn set_chunk_embeddings(
    client: &Client,
    world_id: i64,
    embeddings: &[(i64, Vec<f32>)],
) -> Result<u64, DbError> {
    let Some((_, first)) = embeddings.first() else {
        return Ok(0);
    };
    let dim = first.len();
    if let Some((id, v)) = embeddings
        .iter()
        .find(|(_, v)| v.len() != dim || v.is_empty())
    {
        return Err(DbError::InvalidValue(format!(
            "lore chunk {id}: embedding has {} dimensions, the others {dim}",
            v.len()
        )));
    }
    let dim = i32::try_from(dim)
        .map_err(|_| DbError::InvalidValue(format!("embedding dimension {dim} is too large")))?;
    let ids: Vec<i64> = embeddings.iter().map(|(id, _)| *id).collect();
    let vectors: Vec<Vector> = embeddings
        .iter()
        .map(|(_, v)| Vector::from(v.clone()))
        .collect();
    Ok(client
        .execute(
            "UPDATE lore_chunks c SET embedding = u.e, embedding_dim = $2 \
             FROM unnest($3::int8[], $4::vector[]) AS u(id, e) \
             WHERE c.id = u.id AND c.world_id = $1",
            &[&world_id, &dim, &ids, &vectors],
        )
        .await?)
}

/// Forgets every embedding of the world's lore (before re-embedding with
/// another model). Returns how many chunks were cleared.
#[instrument(skip_all, fields(world_id))]
pub async fn clear_embeddings(client: &Client, world_id: i64) -> Result<u64, DbError> {
    Ok(client
        .execute(
            "UPDATE lore_chunks SET embedding = NULL, embedding_dim = NULL \
             WHERE world_id = $1 AND embedding IS NOT NULL",
            &[&world_id],
        )
        .await?)
}

/// The statement [`search_hybrid`] runs, for `EXPLAIN` and debugging.
/// Parameters: `$1` world id, `$2` query text, `$3` candidates per list,
/// `$4` k, and with a vector `$5` the query embedding (`vector`). `dim` must
/// be positive.
pub fn search_sql(dim: i32, with_vector: bool) -> String {
    let vec = if with_vector {
        let (column, query) = match index_cast(dim) {
            Some(cast) => (
                format!("c.embedding::{cast}"),
                format!("$5::vector::{cast}"),
            ),
            None => ("c.embedding".to_owned(), "$5::vector".to_owned()),
        };
        format!(
            "vec AS (
    SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS position
    FROM (SELECT c.id, {column} <=> {query} AS distance
          FROM lore_chunks c
          WHERE c.embedding_dim = {dim} AND c.world_id = $1
          ORDER BY {column} <=> {query}
          LIMIT $3) AS nearest)"
        )
    } else {
        "vec AS (SELECT NULL::bigint AS id, NULL::float8 AS distance, NULL::bigint AS position WHERE false)"
            .to_owned()
    };
    format!(
        "WITH q AS (
    SELECT (SELECT string_agg('''' || replace(replace(lexeme, '\\', '\\\\'), '''', '''''') || '''', ' | ')
            FROM unnest(tsvector_to_array(to_tsvector('english', $2))) AS lexeme)::tsquery AS query),
fts AS (
    SELECT c.id, ts_rank_cd(c.tsv, q.query) AS rank,
           row_number() OVER (ORDER BY ts_rank_cd(c.tsv, q.query) DESC, c.id) AS position
    FROM lore_chunks c, q
    WHERE c.world_id = $1 AND c.tsv @@ q.query
    ORDER BY position
    LIMIT $3),
{vec}
SELECT c.id, d.path, d.title, c.ordinal, c.text, fts.rank, fts.position, vec.distance, vec.position,
       COALESCE(1.0::float8 / ({RRF_K}::float8 + fts.position), 0)
         + COALESCE(1.0::float8 / ({RRF_K}::float8 + vec.position), 0) AS score
FROM fts FULL OUTER JOIN vec ON vec.id = fts.id
JOIN lore_chunks c ON c.id = COALESCE(fts.id, vec.id)
JOIN lore_documents d ON d.id = c.document_id
ORDER BY score DESC, c.id
LIMIT $4"
    )
}

/// The `k` chunks of the world that best match `text` and, when given,
/// `embedding` (of the world's dimension `dim`), by reciprocal rank fusion of
/// the full-text and vector rankings (see the module documentation). Without
/// an embedding (none computed yet, or the embedder is down) the ranking is
/// full text alone. Takes `&mut` for a transaction that scopes the index
/// settings (`SET LOCAL`) to this query.
#[instrument(skip_all, fields(world_id, k, vector = embedding.is_some()))]
pub async fn search_hybrid(
    client: &mut Client,
    world_id: i64,
    text: &str,
    embedding: Option<&[f32]>,
    dim: i32,
    k: usize,
) -> Result<Vec<LoreHit>, DbError> {
    if dim <= 0 {
        return Err(DbError::InvalidValue(format!(
            "embedding dimension {dim} must be positive"
        )));
    }
    if let Some(e) = embedding
        && usize::try_from(dim).ok() != Some(e.len())
    {
        return Err(DbError::InvalidValue(format!(
            "query embedding has {} dimensions, the world's model has {dim}",
            e.len()
        )));
    }
    if k == 0 {
        return Ok(Vec::new());
    }
    let k = i64::try_from(k).unwrap_or(i64::MAX).min(1000);
    let candidates = (k * 4).max(40);
    let sql = search_sql(dim, embedding.is_some());
    let tx = client.transaction().await?;
    let rows = match embedding {
        Some(e) => {
            // ef_search bounds how many rows one HNSW scan returns; the
            // iterative scan (pgvector >= 0.8) keeps scanning when the world
            // filter removes candidates
            let ef_search = candidates.clamp(40, 1000).to_string();
            tx.query(
                "SELECT set_config('hnsw.ef_search', $1, true), \
                   CASE WHEN string_to_array(extversion, '.')::int[] >= '{0,8}'::int[] \
                        THEN set_config('hnsw.iterative_scan', 'relaxed_order', true) END \
                 FROM pg_extension WHERE extname = 'vector'",
                &[&ef_search],
            )
            .await?;
            let query = Vector::from(e.to_vec());
            tx.query(&sql, &[&world_id, &text, &candidates, &k, &query])
                .await?
        }
        None => tx.query(&sql, &[&world_id, &text, &candidates, &k]).await?,
    };
    tx.commit().await?;
    Ok(rows
        .iter()
        .map(|r| LoreHit {
            chunk_id: r.get(0),
            document_path: r.get(1),
            document_title: r.get(2),
            ordinal: r.get(3),
            text: r.get(4),
            text_rank: r.get(5),
            text_position: r.get(6),
            vector_distance: r.get(7),
            vector_position: r.get(8),
            score: r.get(9),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vector_list_orders_by_the_indexed_expression() {
        let sql = search_sql(384, true);
        assert!(sql.contains("ORDER BY c.embedding::vector(384) <=> $5::vector::vector(384)"));
        assert!(sql.contains("c.embedding_dim = 384"));
        let sql = search_sql(3072, true);
        assert!(sql.contains("c.embedding::halfvec(3072) <=> $5::vector::halfvec(3072)"));
        let sql = search_sql(8192, true);
        assert!(sql.contains("ORDER BY c.embedding <=> $5::vector"));
    }

    #[test]
    fn text_only_search_has_no_vector_parameter() {
        let sql = search_sql(384, false);
        assert!(!sql.contains("$5"));
        assert!(sql.contains("$4"));
    }
}
