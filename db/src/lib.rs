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
//! - [`error`]: the crate's error type, which names violated constraints.

pub mod check;
pub mod cluster;
pub mod connect;
pub mod error;
pub mod migrate;
pub mod worlds;

pub use check::{CheckError, CheckReport};
pub use cluster::{ClusterError, EmbeddedCluster};
pub use connect::{DatabaseTarget, Pool};
pub use error::DbError;
pub use migrate::{MigrationError, Migrations};
