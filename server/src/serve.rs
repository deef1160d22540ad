//! `hearth serve`: bring the database to the binary's schema, open the world,
//! run the simulation on its own thread, and stop on shutdown. Later parts
//! (the WebSocket hub, the write-behind writer) start here. Touches the
//! database through `hearth-db` and the world through its runner.

use std::future::Future;
use std::time::Duration;

use hearth_db::check::{self, CheckError};
use hearth_db::connect::{self, DatabaseTarget};
use hearth_db::migrate::{self, MigrationState};
use hearth_db::{DbError, Migrations, worlds};
use tracing::info;

use crate::content::Content;
use crate::simulate::Timing;
use crate::world::runner::{self, TickOutput};
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
    /// The embedding model the world's vectors are made with, and its size.
    pub embedding_model: String,
    pub embedding_dim: i32,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            world: "valley".into(),
            world_name: "The Valley".into(),
            migrate: true,
            pool_size: 16,
            embedding_model: "all-MiniLM-L6-v2".into(),
            embedding_dim: 384,
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
    let pool = match db {
        Some((target, migrations)) => Some(open_database(target, migrations, &options).await?),
        None => {
            info!("running without a database (--no-db): nothing will be persisted");
            None
        }
    };

    let sim = Sim::new(content, sim_config);
    info!(
        agents = sim.agent_count(),
        locations = sim.map().locations.len(),
        "world loaded"
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<TickOutput>(1024);
    let world = runner::spawn(sim, move |out| {
        // never block the world: a slow consumer loses summaries, not ticks
        let _ = tx.try_send(out);
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
    if let Some(pool) = pool {
        pool.close();
    }
    info!("stopped");
    Ok(())
}

/// Logs a summary of the world's ticks every ten seconds.
async fn report_ticks(mut rx: tokio::sync::mpsc::Receiver<TickOutput>) {
    let mut durations: Vec<u64> = Vec::new();
    let mut events = 0usize;
    let mut last = tokio::time::Instant::now();
    while let Some(out) = rx.recv().await {
        durations.push(out.duration.as_micros() as u64);
        events += out.events.len();
        if last.elapsed() >= Duration::from_secs(10) {
            let t = Timing::of(&mut durations);
            info!(
                tick = out.tick,
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
) -> Result<hearth_db::Pool, ServeError> {
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
            &options.embedding_model,
            options.embedding_dim,
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
    Ok(pool)
}
