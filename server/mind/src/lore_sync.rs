//! A world's lore in the database: brought in line with the lore
//! directory (unchanged documents are left alone), then embedded in the
//! background. Touches the lore files (read), the database's lore tables
//! and the embedder.

use std::path::Path;
use std::sync::Arc;

use hearth_db::{DbError, Pool, lore as lore_db};
use tracing::{info, warn};

use crate::embed::{EmbedError, Embedder};
use crate::lore::LoreError;

/// Why lore could not be brought into the database.
#[derive(Debug, thiserror::Error)]
pub enum LoreSyncError {
    #[error(transparent)]
    Files(#[from] LoreError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("embedder: {0}")]
    Embed(#[from] EmbedError),
}

/// Brings the world's lore in the database in line with the lore directory
/// (unchanged documents are left alone), then embeds the chunks that have no
/// vector yet in the background.
pub async fn sync(
    pool: &Pool,
    world_id: i64,
    dir: &Path,
    embedder: Arc<dyn Embedder>,
) -> Result<(), LoreSyncError> {
    if !dir.is_dir() {
        info!(dir = %dir.display(), "no lore directory; the world has no lore");
        return Ok(());
    }
    let documents = crate::lore::load_dir(dir)?;
    let mut client = pool.get().await.map_err(DbError::from)?;
    let mut paths = Vec::with_capacity(documents.len());
    for doc in &documents {
        let (row, chunks) = doc.rows();
        paths.push(row.path.clone());
        lore_db::sync_document(&mut client, world_id, &row, &chunks).await?;
    }
    let removed = lore_db::remove_missing(&client, world_id, &paths).await?;
    info!(
        documents = documents.len(),
        removed = removed.len(),
        "lore synced"
    );
    let pool = pool.clone();
    tokio::spawn(async move {
        if let Err(e) = embed_pending(&pool, world_id, embedder.as_ref()).await {
            warn!(error = %e, "embedding lore failed; lore is searched by full text until it works");
        }
    });
    Ok(())
}

/// Embeds every lore chunk of the world without a vector, in batches.
pub async fn embed_pending(
    pool: &Pool,
    world_id: i64,
    embedder: &dyn Embedder,
) -> Result<u64, LoreSyncError> {
    let client = pool.get().await.map_err(DbError::from)?;
    let mut done = 0;
    loop {
        let pending = lore_db::chunks_without_embedding(&client, world_id, 64).await?;
        if pending.is_empty() {
            return Ok(done);
        }
        let texts: Vec<String> = pending.iter().map(|c| c.text.clone()).collect();
        let vectors = embedder.embed(&texts).await?;
        let rows: Vec<(i64, Vec<f32>)> = pending.iter().map(|c| c.id).zip(vectors).collect();
        done += lore_db::set_chunk_embeddings(&client, world_id, &rows).await?;
    }
}
