//! Hearth's database crate: everything that speaks SQL lives here, and nothing
//! here knows of the ECS world. It takes and returns plain row structs.
//!
//! # Layout
//! - [`cluster`]: the project-local PostgreSQL cluster used when no
//!   `DATABASE_URL` is set (created with `initdb`, started with `pg_ctl`).
//! - [`connect`]: resolving where the database is, connections and the
//!   `deadpool-postgres` pool.
//! - [`migrate`]: the embedded, checksummed migrations and their runner.
//! - [`check`]: `hearth db check`, one message and exit code per failure mode.
//! - [`worlds`]: the tenancy rows and the per-dimension vector indexes.
//! - [`accounts`]: users, their roles per world, sessions, characters.
//! - [`agents`]: a world's agents, registered from the designers' files.
//! - [`memories`]: agents' memories: COPY ingestion, embeddings, exact
//!   scored retrieval per agent, nearest reflections through HNSW.
//! - [`game_time`]: game seconds ↔ the `timestamp` columns of game time.
//! - [`lore`]: world lore documents and chunks, synced by content hash;
//!   hybrid (full text + vector, reciprocal rank fusion) search.
//! - [`writer`]: the write-behind writer: batches of coalesced state rows,
//!   appended rows and their checkpoint, each in one transaction, committed
//!   by a task that survives outages and never drops an appended row.
//! - [`lease`]: world ownership (an advisory lock and a fencing token).
//! - [`export`]: a whole world out (one consistent snapshot, paged) and back
//!   in (one transaction), as plain records that refer to each other by
//!   natural key, for `hearth export` and `hearth import`.
//! - [`error`]: the crate's error type, which names violated constraints.

pub mod accounts;
pub mod agents;
pub mod check;
pub mod cluster;
pub mod connect;
pub mod error;
pub mod export;
pub mod game_time;
pub mod lease;
pub mod lore;
pub mod memories;
pub mod migrate;
pub mod worlds;
pub mod writer;

pub use check::{CheckError, CheckReport};
pub use cluster::{ClusterError, EmbeddedCluster};
pub use connect::{DatabaseTarget, Pool};
pub use error::DbError;
pub use memories::{MemoryRow, ScoredRow, Scoring};
pub use migrate::{MigrationError, Migrations};
