//! `hearth serve`: bring the database to the binary's schema, open the world
//! (registering its agents and syncing its lore), run the simulation on its
//! own thread with the memory service beside it, and stop on shutdown. Later
//! parts (the WebSocket hub, the write-behind writer) start here. Touches the
//! database through `hearth-db`, the world through its runner, memories
//! through the memory service.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hearth_db::agents::{self, AgentRow};
use hearth_db::check::{self, CheckError};
use hearth_db::connect::{self, DatabaseTarget};
use hearth_db::migrate::{self, MigrationState};
use hearth_db::{DbError, Migrations, Pool, lore as lore_db, worlds};
use tracing::{info, warn};

use crate::content::{AgentDef, Content};
use crate::mind::embed::{self, EmbedConfig, EmbedError, Embedder};
use crate::mind::lore;
use crate::mind::service::{MemoryService, ServiceError, Store};
use crate::mind::stream::{MemoryStream, StreamConfig};
use crate::simulate::Timing;
use crate::world::mind::RuleMind;
use crate::world::runner;
use crate::world::{Sim, SimConfig};

/// What `serve` runs, with the defaults of the demo world.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Slug of the world to open (created on first start).
    pub world: String,
    /// Display name used when the world is created.
    pub world_name: String,
    /// Apply pending migrations at start (else refuse to start with any).
    pub migrate: bool,
    pub pool_size: usize,
    /// Which embedder makes the world's vectors (its model and dimension are
    /// stored with the world).
    pub embed: EmbedConfig,
    /// Hearth's local state directory (the embedding model lives under it).
    pub home: PathBuf,
    /// World lore (Markdown and text), synced into the database at start.
    pub lore: PathBuf,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            world: "valley".into(),
            world_name: "The Valley".into(),
            migrate: true,
            pool_size: 16,
            embed: EmbedConfig::default(),
            home: PathBuf::from(".hearth"),
            lore: PathBuf::from("assets/lore"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error("{0} migration(s) pending and --no-migrate was given: run `hearth db migrate` first")]
    PendingMigrations(usize),
    #[error("cannot start the world thread: {0}")]
    WorldThread(std::io::Error),
    #[error("embedder: {0}")]
    Embed(#[from] EmbedError),
    #[error("memories: {0}")]
    Memories(#[from] ServiceError),
    #[error("lore: {0}")]
    Lore(#[from] lore::LoreError),
}

impl From<DbError> for ServeError {
    fn from(e: DbError) -> Self {
        ServeError::Check(CheckError::from(e))
    }
}

/// Runs the server until `shutdown` resolves. Without a database (`db` is
/// `None`, `--no-db`) the world runs and nothing is persisted.
pub async fn run(
    db: Option<(&DatabaseTarget, &Migrations)>,
    content: Content,
    sim_config: SimConfig,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let embedder = embed::from_config(&options.embed, &options.home)?;
    let dim = embed::resolve_dim(embedder.as_ref()).await?;
    let store = match db {
        Some((target, migrations)) => {
            let (pool, world) =
                open_database(target, migrations, &options, embedder.model(), dim).await?;
            let agent_ids = register_agents(&pool, world.id, &content.agents).await?;
            sync_lore(&pool, world.id, &options.lore, embedder.clone()).await?;
            Some(Store {
                pool,
                world_id: world.id,
                dim: world.embedding_dim,
                agent_ids,
            })
        }
        None => {
            info!("running without a database (--no-db): nothing will be persisted");
            None
        }
    };
    let pool = store.as_ref().map(|s| s.pool.clone());

    let stream = MemoryStream::new(
        StreamConfig {
            dim,
            ..StreamConfig::default()
        },
        &content.agents,
        &content.map,
    );
    let defs = content.agents.clone();
    let sim = Sim::new(content, sim_config);
    info!(
        agents = sim.agent_count(),
        locations = sim.map().locations.len(),
        "world loaded"
    );
    let (memories, remembering) = MemoryService::start(
        stream,
        &defs,
        Arc::new(RuleMind),
        embedder,
        store,
        sim.clock().seconds,
    )
    .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<(u64, Duration, usize)>(1024);
    let feed = memories.clone();
    let world = runner::spawn(sim, move |mut out| {
        let events = std::mem::take(&mut out.events);
        let count = events.len();
        // unbounded and never blocking: the world never waits for memory
        feed.tick(out.game_seconds, events);
        // a slow consumer loses summaries, not ticks
        let _ = tx.try_send((out.tick, out.duration, count));
    })
    .map_err(ServeError::WorldThread)?;
    let reporter = tokio::spawn(report_ticks(rx));

    shutdown.await;
    let sim = tokio::task::spawn_blocking(move || world.stop())
        .await
        .ok()
        .flatten();
    reporter.abort();
    if let Some(sim) = sim {
        info!(tick = sim.clock().tick, game_time = %sim.clock().label(), "world stopped");
    }
    // the world's feed is gone with its thread; the last handle ends the service
    drop(memories);
    match tokio::time::timeout(Duration::from_secs(10), remembering).await {
        Ok(Ok(stats)) => info!(
            observations = stats.stream.observations,
            conversations = stats.stream.conversations,
            reflections = stats.stream.reflections,
            embedded = stats.embedded,
            written = stats.written,
            "memories saved"
        ),
        Ok(Err(e)) => warn!(error = %e, "the memory service failed"),
        Err(_) => warn!("memories still being written after 10 s; stopping anyway"),
    }
    if let Some(pool) = pool {
        pool.close();
    }
    info!("stopped");
    Ok(())
}

/// Registers the world's agents (inserted or updated from their files) and
/// returns their database ids in world order.
async fn register_agents(
    pool: &Pool,
    world_id: i64,
    defs: &[AgentDef],
) -> Result<Vec<i64>, ServeError> {
    let rows: Vec<AgentRow> = defs.iter().map(agent_row).collect();
    let client = pool.get().await.map_err(DbError::from)?;
    let ids = agents::upsert(&client, world_id, &rows).await?;
    defs.iter()
        .map(|d| {
            ids.get(&d.file.id).copied().ok_or_else(|| {
                DbError::InvalidValue(format!("agent '{}' was not registered", d.file.id)).into()
            })
        })
        .collect()
}

/// An agent file as the `agents` row it is registered as.
pub fn agent_row(def: &AgentDef) -> AgentRow {
    let f = &def.file;
    AgentRow {
        slug: f.id.clone(),
        name: f.name.clone(),
        definition: serde_json::to_value(f).unwrap_or_default(),
        age: i32::try_from(f.age).ok(),
        constitution: f.constitution.clone(),
        background: f.background.clone(),
        traits: serde_json::to_value(&f.traits).unwrap_or_default(),
        likes: f.likes.clone(),
        dislikes: f.dislikes.clone(),
        primary_goal: Some(f.goals.primary.clone()),
        secondary_goals: f.goals.secondary.clone(),
        home_location: Some(f.home.clone()),
    }
}

/// Brings the world's lore in the database in line with the lore directory
/// (unchanged documents are left alone), then embeds the chunks that have no
/// vector yet in the background.
async fn sync_lore(
    pool: &Pool,
    world_id: i64,
    dir: &std::path::Path,
    embedder: Arc<dyn Embedder>,
) -> Result<(), ServeError> {
    if !dir.is_dir() {
        info!(dir = %dir.display(), "no lore directory; the world has no lore");
        return Ok(());
    }
    let documents = lore::load_dir(dir)?;
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
        if let Err(e) = embed_lore(&pool, world_id, embedder.as_ref()).await {
            warn!(error = %e, "embedding lore failed; lore is searched by full text until it works");
        }
    });
    Ok(())
}

/// Embeds every lore chunk of the world without a vector, in batches.
pub async fn embed_lore(
    pool: &Pool,
    world_id: i64,
    embedder: &dyn Embedder,
) -> Result<u64, ServeError> {
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

/// Logs a summary of the world's ticks every ten seconds.
async fn report_ticks(mut rx: tokio::sync::mpsc::Receiver<(u64, Duration, usize)>) {
    let mut durations: Vec<u64> = Vec::new();
    let mut events = 0usize;
    let mut last = tokio::time::Instant::now();
    while let Some((tick, duration, count)) = rx.recv().await {
        durations.push(duration.as_micros() as u64);
        events += count;
        if last.elapsed() >= Duration::from_secs(10) {
            let t = Timing::of(&mut durations);
            info!(
                tick,
                ticks = durations.len(),
                p50_us = t.p50,
                p99_us = t.p99,
                max_us = t.max,
                events,
                "world"
            );
            durations.clear();
            events = 0;
            last = tokio::time::Instant::now();
        }
    }
}

/// Connects, migrates (or checks that nothing is pending) and opens the
/// world's row.
async fn open_database(
    target: &DatabaseTarget,
    migrations: &Migrations,
    options: &ServeOptions,
    embedding_model: &str,
    embedding_dim: usize,
) -> Result<(Pool, worlds::World), ServeError> {
    let config = target.config().await?;
    let description = connect::describe(&config);
    info!(database = %description, "connecting");
    let mut client = connect::connect(&config)
        .await
        .map_err(|e| check::connect_error(&description, &e))?;

    if options.migrate {
        let applied = migrate::migrate(&mut client, migrations, None).await?;
        info!(
            applied = applied.len(),
            version = migrations.latest(),
            "database schema up to date"
        );
    } else {
        let rows = migrate::status(&client, migrations).await?;
        if let Some(problem) = migrate::problem(&rows, migrations.latest()) {
            return Err(DbError::from(problem).into());
        }
        let pending = rows
            .iter()
            .filter(|r| r.state == MigrationState::Pending)
            .count();
        if pending > 0 {
            return Err(ServeError::PendingMigrations(pending));
        }
    }
    drop(client);

    let pool = connect::pool(config, options.pool_size)?;
    let world = {
        let client = pool.get().await.map_err(DbError::from)?;
        worlds::ensure(
            &client,
            &options.world,
            &options.world_name,
            embedding_model,
            i32::try_from(embedding_dim).unwrap_or(i32::MAX),
        )
        .await?
    };
    info!(
        world = %world.slug,
        id = world.id,
        embedding_model = %world.embedding_model,
        embedding_dim = world.embedding_dim,
        "world open; serving until SIGINT or SIGTERM"
    );
    Ok((pool, world))
}
