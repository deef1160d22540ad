//! `hearth serve`: bring the database to the binary's schema, open the world,
//! and run until shutdown. Later parts (the simulation, the WebSocket hub, the
//! write-behind writer) start here. Touches the database through `hearth-db`.

use std::future::Future;

use hearth_db::check::{self, CheckError};
use hearth_db::connect::{self, DatabaseTarget};
use hearth_db::migrate::{self, MigrationState};
use hearth_db::{DbError, Migrations, worlds};
use tracing::info;

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
}

impl From<DbError> for ServeError {
    fn from(e: DbError) -> Self {
        ServeError::Check(CheckError::from(e))
    }
}

/// Runs the server until `shutdown` resolves.
pub async fn run(
    target: &DatabaseTarget,
    migrations: &Migrations,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
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

    shutdown.await;
    pool.close();
    info!("stopped");
    Ok(())
}
