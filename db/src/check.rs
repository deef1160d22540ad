//! `hearth db check`: is the database usable by this binary? Reports the
//! server version, pgvector version and migration state, and tells each
//! failure mode apart with its own message, fix and exit code. Read-only.

use std::fmt;

use tokio_postgres::Config;
use tokio_postgres::error::SqlState;

use crate::connect::{self, DatabaseTarget};
use crate::migrate::{self, MigrationError, StatusRow};
use crate::{ClusterError, DbError, Migrations};

/// pgvector gained HNSW indexes in 0.5.0.
pub const PGVECTOR_MIN: (u32, u32, u32) = (0, 5, 0);

/// What a healthy database looks like.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub target: String,
    pub server_version: String,
    pub pgvector_version: String,
    pub migration_version: i64,
    pub latest_version: i64,
    /// `(version, name)` of migrations not yet applied.
    pub pending: Vec<(i64, String)>,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "database:   {}", self.target)?;
        writeln!(f, "server:     PostgreSQL {}", self.server_version)?;
        writeln!(f, "pgvector:   {} (HNSW available)", self.pgvector_version)?;
        writeln!(
            f,
            "migrations: at version {} of {}",
            self.migration_version, self.latest_version
        )?;
        if self.pending.is_empty() {
            write!(f, "pending:    none")
        } else {
            write!(
                f,
                "pending:    {} (run `hearth db migrate`)",
                self.pending.len()
            )?;
            for (v, name) in &self.pending {
                write!(f, "\n  {v:04} {name}")?;
            }
            Ok(())
        }
    }
}

/// One variant per way the database can be unusable.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    #[error(
        "cannot reach PostgreSQL at {target}: {reason}. Is the server running and is the \
         address right? (DATABASE_URL; unset it to use the embedded cluster)"
    )]
    Unreachable { target: String, reason: String },
    #[error(
        "PostgreSQL at {target} refused the credentials: {reason}. Check the user and password \
         in DATABASE_URL"
    )]
    Auth { target: String, reason: String },
    #[error(
        "database does not exist at {target}: {reason}. Create it (`createdb`) or fix DATABASE_URL"
    )]
    NoDatabase { target: String, reason: String },
    #[error(
        "pgvector is not installed on the server at {target} (PostgreSQL {server_version}). \
         Fix: `bash docker/provision.sh` on that machine, or use a server image with pgvector \
         (e.g. pgvector/pgvector:pg16)"
    )]
    PgvectorMissing {
        target: String,
        server_version: String,
    },
    #[error(
        "pgvector {available} is available on the server but not created in this database \
         ({target}). Fix: `hearth db migrate` (it runs CREATE EXTENSION vector, which needs a \
         superuser the first time)"
    )]
    PgvectorNotCreated { target: String, available: String },
    #[error(
        "pgvector {version} at {target} is too old: Hearth needs >= {}.{}.{} for HNSW indexes. \
         Fix: install a newer pgvector, then `ALTER EXTENSION vector UPDATE`",
        PGVECTOR_MIN.0, PGVECTOR_MIN.1, PGVECTOR_MIN.2
    )]
    PgvectorTooOld { target: String, version: String },
    #[error("{0}")]
    Migration(MigrationError),
    #[error("{0}")]
    Other(DbError),
}

impl CheckError {
    /// The process exit code for this failure (documented in docs/database.md).
    pub fn exit_code(&self) -> u8 {
        match self {
            CheckError::Cluster(ClusterError::PostgresNotFound { .. }) => 10,
            CheckError::Cluster(ClusterError::PgvectorNotInstalled { .. }) => 13,
            CheckError::Cluster(_) => 11,
            CheckError::Unreachable { .. } => 11,
            CheckError::Auth { .. } => 12,
            CheckError::NoDatabase { .. } => 12,
            CheckError::PgvectorMissing { .. } | CheckError::PgvectorNotCreated { .. } => 13,
            CheckError::PgvectorTooOld { .. } => 14,
            CheckError::Migration(MigrationError::Dirty { .. }) => 15,
            CheckError::Migration(MigrationError::ChecksumMismatch { .. }) => 16,
            CheckError::Migration(_) => 17,
            CheckError::Other(_) => 1,
        }
    }
}

impl From<DbError> for CheckError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Cluster(c) => CheckError::Cluster(c),
            DbError::Migration(m) => CheckError::Migration(m),
            other => CheckError::Other(other),
        }
    }
}

/// Classifies a failure to connect.
pub fn connect_error(target: &str, err: &tokio_postgres::Error) -> CheckError {
    let target = target.to_owned();
    match err.as_db_error() {
        None => CheckError::Unreachable {
            target,
            reason: crate::error::describe_postgres(err),
        },
        Some(db) => {
            let reason = db.message().to_owned();
            let code = db.code();
            if *code == SqlState::INVALID_CATALOG_NAME {
                CheckError::NoDatabase { target, reason }
            } else if code.code().starts_with("28") {
                // class 28: invalid authorization (bad password, unknown role, pg_hba)
                CheckError::Auth { target, reason }
            } else {
                CheckError::Unreachable { target, reason }
            }
        }
    }
}

/// Parses "0.8.0" (or "0.5") into a comparable triple.
///
/// ```
/// use hearth_db::check::parse_version;
/// assert_eq!(parse_version("0.8.0"), Some((0, 8, 0)));
/// assert_eq!(parse_version("0.5"), Some((0, 5, 0)));
/// assert_eq!(parse_version("vector"), None);
/// ```
pub fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.trim().split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
    });
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

/// Whether a pgvector version has HNSW indexes.
///
/// ```
/// assert!(hearth_db::check::pgvector_supports_hnsw("0.8.0"));
/// assert!(!hearth_db::check::pgvector_supports_hnsw("0.4.4"));
/// ```
pub fn pgvector_supports_hnsw(version: &str) -> bool {
    parse_version(version).is_some_and(|v| v >= PGVECTOR_MIN)
}

/// Resolves `target` (starting the embedded cluster if needed) and checks it.
pub async fn check_target(
    target: &DatabaseTarget,
    migrations: &Migrations,
) -> Result<CheckReport, CheckError> {
    let config = target.config().await?;
    check(&config, migrations).await
}

/// Checks the database at `config`.
pub async fn check(config: &Config, migrations: &Migrations) -> Result<CheckReport, CheckError> {
    let target = connect::describe(config);
    let client = connect::connect(config)
        .await
        .map_err(|e| connect_error(&target, &e))?;

    let server_version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(DbError::from)?
        .get(0);
    let installed: Option<String> = client
        .query_opt(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
            &[],
        )
        .await
        .map_err(DbError::from)?
        .map(|r| r.get(0));
    let available: Option<String> = client
        .query_opt(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'",
            &[],
        )
        .await
        .map_err(DbError::from)?
        .map(|r| r.get(0));
    let pgvector_version = match (installed, available) {
        (Some(v), _) => v,
        (None, Some(available)) => {
            return Err(CheckError::PgvectorNotCreated { target, available });
        }
        (None, None) => {
            return Err(CheckError::PgvectorMissing {
                target,
                server_version,
            });
        }
    };
    if !pgvector_supports_hnsw(&pgvector_version) {
        return Err(CheckError::PgvectorTooOld {
            target,
            version: pgvector_version,
        });
    }

    let rows: Vec<StatusRow> = migrate::status(&client, migrations).await?;
    if let Some(problem) = migrate::problem(&rows, migrations.latest()) {
        return Err(CheckError::Migration(problem));
    }
    let pending = rows
        .iter()
        .filter(|r| r.state == migrate::MigrationState::Pending)
        .map(|r| (r.version, r.name.clone()))
        .collect();
    Ok(CheckReport {
        target,
        server_version,
        pgvector_version,
        migration_version: migrate::current_version(&rows),
        latest_version: migrations.latest(),
        pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_compare() {
        assert_eq!(parse_version("0.8.0"), Some((0, 8, 0)));
        assert_eq!(parse_version("0.5"), Some((0, 5, 0)));
        assert_eq!(parse_version("0.7.4-dev"), Some((0, 7, 4)));
        assert_eq!(parse_version("garbage"), None);
        assert!(pgvector_supports_hnsw("0.5.0"));
        assert!(pgvector_supports_hnsw("0.8.0"));
        assert!(pgvector_supports_hnsw("1.0"));
        assert!(!pgvector_supports_hnsw("0.4.4"));
        assert!(!pgvector_supports_hnsw("?"));
    }

    #[test]
    fn every_failure_mode_has_its_own_exit_code() {
        let t = || "postgres://u@h:1/d".to_owned();
        let errors = [
            CheckError::Cluster(ClusterError::PostgresNotFound {
                searched: "x".into(),
            }),
            CheckError::Unreachable {
                target: t(),
                reason: "refused".into(),
            },
            CheckError::Auth {
                target: t(),
                reason: "password".into(),
            },
            CheckError::PgvectorMissing {
                target: t(),
                server_version: "15".into(),
            },
            CheckError::PgvectorTooOld {
                target: t(),
                version: "0.4.4".into(),
            },
            CheckError::Migration(MigrationError::Dirty {
                version: 3,
                name: "x".into(),
            }),
            CheckError::Migration(MigrationError::ChecksumMismatch {
                version: 3,
                name: "x".into(),
            }),
        ];
        let mut codes: Vec<u8> = errors.iter().map(CheckError::exit_code).collect();
        assert!(codes.iter().all(|c| *c != 0));
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), errors.len(), "exit codes must differ");
    }

    #[test]
    fn old_pgvector_message_names_the_minimum() {
        let e = CheckError::PgvectorTooOld {
            target: "db".into(),
            version: "0.4.4".into(),
        };
        assert!(e.to_string().contains(">= 0.5.0"), "{e}");
    }
}
