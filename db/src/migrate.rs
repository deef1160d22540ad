//! Schema migrations: the `db/migrations/NNNN_name.{up,down}.sql` files
//! embedded in the binary, and the runner that applies and rolls them back.
//! Touches only the `hearth_migrations` table and what the scripts change.
//!
//! - Every applied migration is recorded with the SHA-256 of its up script; a
//!   migration edited after it was applied is refused, not re-run.
//! - A session-level advisory lock keeps two processes from migrating at once.
//! - Each migration runs in its own transaction with its bookkeeping row, so a
//!   failed migration leaves nothing behind. A script whose first line is
//!   `-- hearth:no-transaction` (e.g. `CREATE INDEX CONCURRENTLY`) runs outside
//!   a transaction; it is marked dirty first and clean after, so an interrupted
//!   run is seen by `hearth db check` and refused by `migrate`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use chrono::{DateTime, Utc};
use include_dir::{Dir, include_dir};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;
use tracing::{info, instrument, warn};

use crate::DbError;

static EMBEDDED: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/migrations");

/// Key of the advisory lock taken while migrating ("hearthmg" in ASCII).
const LOCK_KEY: i64 = 0x6865_6172_7468_6d67;
const NO_TRANSACTION_MARKER: &str = "-- hearth:no-transaction";

/// The table that records applied migrations.
pub const MIGRATIONS_TABLE: &str = "hearth_migrations";

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("migration file '{file}': {problem}")]
    BadFile { file: String, problem: String },
    #[error(
        "migration {version} ({name}) was changed after it was applied (checksum differs): \
         restore the original file and add a new migration for the change"
    )]
    ChecksumMismatch { version: i64, name: String },
    #[error(
        "migration {version} ({name}) is dirty: a non-transactional migration was interrupted. \
         Inspect the schema, finish or undo the script by hand, then run \
         `hearth db repair --version {version}` (or delete its row from hearth_migrations)"
    )]
    Dirty { version: i64, name: String },
    #[error(
        "the database is at migration {applied}, newer than this binary knows ({known}): \
         run a newer hearth, or roll back with the binary that applied it"
    )]
    DatabaseNewer { applied: i64, known: i64 },
    #[error("no migration {0}: versions run from 0 to {1}")]
    UnknownTarget(i64, i64),
}

/// One migration: a version, a name and its two scripts.
#[derive(Clone)]
pub struct Migration {
    pub version: i64,
    pub name: String,
    pub up: String,
    pub down: String,
    /// SHA-256 of the up script.
    pub checksum: [u8; 32],
}

impl Migration {
    fn transactional(&self) -> bool {
        !self.up.trim_start().starts_with(NO_TRANSACTION_MARKER)
    }
}

impl fmt::Debug for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migration")
            .field("version", &self.version)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// An ordered, validated set of migrations numbered 1..=N without gaps.
#[derive(Debug, Clone)]
pub struct Migrations {
    list: Vec<Migration>,
}

impl Migrations {
    /// The migrations compiled into this binary.
    pub fn embedded() -> Result<Self, MigrationError> {
        let files = EMBEDDED.files().map(|f| {
            let name = f.path().to_string_lossy().into_owned();
            let text = f.contents_utf8().map(str::to_owned);
            (name, text)
        });
        let mut owned = Vec::new();
        for (name, text) in files {
            let text = text.ok_or_else(|| MigrationError::BadFile {
                file: name.clone(),
                problem: "not UTF-8".into(),
            })?;
            owned.push((name, text));
        }
        Self::from_sources(owned)
    }

    /// Builds a set from `(file name, contents)` pairs named
    /// `NNNN_name.up.sql` / `NNNN_name.down.sql`; other files are ignored.
    ///
    /// ```
    /// use hearth_db::Migrations;
    /// let files = [
    ///     ("0001_start.up.sql", "CREATE TABLE t (id int);"),
    ///     ("0001_start.down.sql", "DROP TABLE t;"),
    /// ];
    /// let set = Migrations::from_sources(files.map(|(n, t)| (n.to_owned(), t.to_owned())))?;
    /// assert_eq!(set.latest(), 1);
    /// # Ok::<(), hearth_db::MigrationError>(())
    /// ```
    pub fn from_sources(
        files: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, MigrationError> {
        let mut ups: BTreeMap<i64, (String, String)> = BTreeMap::new();
        let mut downs: BTreeMap<i64, (String, String)> = BTreeMap::new();
        for (file, text) in files {
            let base = file.rsplit('/').next().unwrap_or(&file).to_owned();
            let (stem, is_up) = if let Some(s) = base.strip_suffix(".up.sql") {
                (s, true)
            } else if let Some(s) = base.strip_suffix(".down.sql") {
                (s, false)
            } else {
                continue;
            };
            let bad = |problem: &str| MigrationError::BadFile {
                file: file.clone(),
                problem: problem.to_owned(),
            };
            let (num, name) = stem
                .split_once('_')
                .ok_or_else(|| bad("expected NNNN_name.up.sql or NNNN_name.down.sql"))?;
            let version: i64 = num
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| bad("the version before '_' must be a positive number"))?;
            let map = if is_up { &mut ups } else { &mut downs };
            if map.insert(version, (name.to_owned(), text)).is_some() {
                return Err(bad("two files have this version"));
            }
        }
        let mut list = Vec::with_capacity(ups.len());
        for (i, (version, (name, up))) in ups.into_iter().enumerate() {
            let expected = i as i64 + 1;
            let file = format!("{version:04}_{name}.up.sql");
            if version != expected {
                return Err(MigrationError::BadFile {
                    file,
                    problem: format!(
                        "versions must run 1, 2, 3… without gaps; expected {expected}"
                    ),
                });
            }
            let down = match downs.remove(&version) {
                Some((down_name, down)) if down_name == name => down,
                _ => {
                    return Err(MigrationError::BadFile {
                        file,
                        problem: format!("no matching {version:04}_{name}.down.sql"),
                    });
                }
            };
            let checksum = Sha256::digest(up.as_bytes()).into();
            list.push(Migration {
                version,
                name,
                up,
                down,
                checksum,
            });
        }
        if let Some((version, (name, _))) = downs.into_iter().next() {
            return Err(MigrationError::BadFile {
                file: format!("{version:04}_{name}.down.sql"),
                problem: "no matching up script".into(),
            });
        }
        Ok(Self { list })
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Migration> {
        self.list.iter()
    }

    /// The newest version, 0 when there are none.
    pub fn latest(&self) -> i64 {
        self.list.last().map_or(0, |m| m.version)
    }

    pub fn get(&self, version: i64) -> Option<&Migration> {
        usize::try_from(version - 1)
            .ok()
            .and_then(|i| self.list.get(i))
    }

    /// A digest of every migration's checksum: equal digests, equal schemas.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        for m in &self.list {
            hasher.update(m.checksum);
        }
        hasher
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// A row of `hearth_migrations`.
#[derive(Debug, Clone)]
pub struct AppliedMigration {
    pub version: i64,
    pub name: String,
    pub checksum: Vec<u8>,
    pub applied_at: DateTime<Utc>,
    pub dirty: bool,
}

/// Where one migration stands in a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationState {
    Applied,
    Pending,
    Dirty,
    /// Applied, but the file has changed since.
    ChecksumMismatch,
    /// Applied by a newer binary: this one has no such file.
    Unknown,
}

impl fmt::Display for MigrationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MigrationState::Applied => "applied",
            MigrationState::Pending => "pending",
            MigrationState::Dirty => "DIRTY",
            MigrationState::ChecksumMismatch => "CHANGED AFTER APPLY",
            MigrationState::Unknown => "unknown to this binary",
        })
    }
}

#[derive(Debug, Clone)]
pub struct StatusRow {
    pub version: i64,
    pub name: String,
    pub state: MigrationState,
    pub applied_at: Option<DateTime<Utc>>,
}

/// The state of every migration, known or applied. Read-only.
#[instrument(skip_all)]
pub async fn status(client: &Client, migrations: &Migrations) -> Result<Vec<StatusRow>, DbError> {
    let applied = applied(client).await?;
    Ok(compare(migrations, &applied))
}

fn compare(migrations: &Migrations, applied: &[AppliedMigration]) -> Vec<StatusRow> {
    let by_version: BTreeMap<i64, &AppliedMigration> =
        applied.iter().map(|a| (a.version, a)).collect();
    let mut rows: Vec<StatusRow> = migrations
        .iter()
        .map(|m| {
            let a = by_version.get(&m.version);
            let state = match a {
                None => MigrationState::Pending,
                Some(a) if a.dirty => MigrationState::Dirty,
                Some(a) if a.checksum != m.checksum => MigrationState::ChecksumMismatch,
                Some(_) => MigrationState::Applied,
            };
            StatusRow {
                version: m.version,
                name: m.name.clone(),
                state,
                applied_at: a.map(|a| a.applied_at),
            }
        })
        .collect();
    rows.extend(
        applied
            .iter()
            .filter(|a| migrations.get(a.version).is_none())
            .map(|a| StatusRow {
                version: a.version,
                name: a.name.clone(),
                state: if a.dirty {
                    MigrationState::Dirty
                } else {
                    MigrationState::Unknown
                },
                applied_at: Some(a.applied_at),
            }),
    );
    rows
}

/// The version the database is at: the highest applied migration, 0 if none.
pub fn current_version(rows: &[StatusRow]) -> i64 {
    rows.iter()
        .filter(|r| r.state != MigrationState::Pending)
        .map(|r| r.version)
        .max()
        .unwrap_or(0)
}

/// The first problem that forbids migrating, if any.
pub fn problem(rows: &[StatusRow], known: i64) -> Option<MigrationError> {
    let applied = current_version(rows);
    rows.iter()
        .find_map(|r| match r.state {
            MigrationState::Dirty => Some(MigrationError::Dirty {
                version: r.version,
                name: r.name.clone(),
            }),
            _ => None,
        })
        .or_else(|| {
            rows.iter().find_map(|r| match r.state {
                MigrationState::ChecksumMismatch => Some(MigrationError::ChecksumMismatch {
                    version: r.version,
                    name: r.name.clone(),
                }),
                _ => None,
            })
        })
        .or_else(|| (applied > known).then_some(MigrationError::DatabaseNewer { applied, known }))
}

async fn applied(client: &Client) -> Result<Vec<AppliedMigration>, DbError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('hearth_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT version, name, checksum, applied_at, dirty FROM hearth_migrations ORDER BY version",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AppliedMigration {
            version: r.get(0),
            name: r.get(1),
            checksum: r.get(2),
            applied_at: r.get(3),
            dirty: r.get(4),
        })
        .collect())
}

/// Holds the migration advisory lock for as long as it lives in a session.
async fn lock(client: &Client) -> Result<(), DbError> {
    let got: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
        .await?
        .get(0);
    if !got {
        warn!("another process is migrating this database; waiting for it to finish");
        client
            .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
            .await?;
    }
    Ok(())
}

async fn unlock(client: &Client) -> Result<(), DbError> {
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await?;
    Ok(())
}

/// Runs `f` while holding the migration lock, releasing it afterwards even
/// when `f` fails.
async fn locked<T>(
    client: &mut Client,
    f: impl AsyncFnOnce(&mut Client) -> Result<T, DbError>,
) -> Result<T, DbError> {
    lock(client).await?;
    let result = f(client).await;
    let unlocked = unlock(client).await;
    let value = result?;
    unlocked?;
    Ok(value)
}

/// Applies pending migrations up to `target` (all when `None`). Returns the
/// versions applied, in order.
#[instrument(skip_all, fields(target))]
pub async fn migrate(
    client: &mut Client,
    migrations: &Migrations,
    target: Option<i64>,
) -> Result<Vec<i64>, DbError> {
    let target = target.unwrap_or(migrations.latest());
    if !(0..=migrations.latest()).contains(&target) {
        return Err(MigrationError::UnknownTarget(target, migrations.latest()).into());
    }
    locked(client, async |client| {
        // "already exists, skipping" notices from IF NOT EXISTS are noise here
        client.batch_execute("SET client_min_messages TO warning").await?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS hearth_migrations (
                    version      bigint      PRIMARY KEY,
                    name         text        NOT NULL,
                    checksum     bytea       NOT NULL,
                    applied_at   timestamptz NOT NULL DEFAULT now(),
                    execution_ms integer     NOT NULL DEFAULT 0,
                    dirty        boolean     NOT NULL DEFAULT false
                )",
            )
            .await?;
        let rows = status(client, migrations).await?;
        if let Some(p) = problem(&rows, migrations.latest()) {
            return Err(p.into());
        }
        let current = current_version(&rows);
        let mut done = Vec::new();
        for m in migrations.iter().filter(|m| m.version > current && m.version <= target) {
            let started = Instant::now();
            if m.transactional() {
                let tx = client.transaction().await?;
                tx.batch_execute(&m.up).await?;
                tx.execute(
                    "INSERT INTO hearth_migrations (version, name, checksum, execution_ms) \
                     VALUES ($1, $2, $3, $4)",
                    &[&m.version, &m.name, &m.checksum.as_slice(), &elapsed_ms(started)],
                )
                .await?;
                tx.commit().await?;
            } else {
                client
                    .execute(
                        "INSERT INTO hearth_migrations (version, name, checksum, dirty) \
                         VALUES ($1, $2, $3, true)",
                        &[&m.version, &m.name, &m.checksum.as_slice()],
                    )
                    .await?;
                client.batch_execute(&m.up).await?;
                client
                    .execute(
                        "UPDATE hearth_migrations SET dirty = false, execution_ms = $2 WHERE version = $1",
                        &[&m.version, &elapsed_ms(started)],
                    )
                    .await?;
            }
            info!(version = m.version, name = %m.name, ms = started.elapsed().as_millis() as u64, "applied migration");
            done.push(m.version);
        }
        Ok(done)
    })
    .await
}

/// Rolls back applied migrations newer than `to`, newest first. Returns the
/// versions rolled back, in order.
#[instrument(skip_all, fields(to))]
pub async fn rollback(
    client: &mut Client,
    migrations: &Migrations,
    to: i64,
) -> Result<Vec<i64>, DbError> {
    if !(0..=migrations.latest()).contains(&to) {
        return Err(MigrationError::UnknownTarget(to, migrations.latest()).into());
    }
    locked(client, async |client| {
        let rows = status(client, migrations).await?;
        if let Some(p) = problem(&rows, migrations.latest()) {
            return Err(p.into());
        }
        let current = current_version(&rows);
        let mut done = Vec::new();
        for m in migrations
            .iter()
            .rev()
            .filter(|m| m.version > to && m.version <= current)
        {
            if m.transactional() {
                let tx = client.transaction().await?;
                tx.batch_execute(&m.down).await?;
                tx.execute(
                    "DELETE FROM hearth_migrations WHERE version = $1",
                    &[&m.version],
                )
                .await?;
                tx.commit().await?;
            } else {
                client
                    .execute(
                        "UPDATE hearth_migrations SET dirty = true WHERE version = $1",
                        &[&m.version],
                    )
                    .await?;
                client.batch_execute(&m.down).await?;
                client
                    .execute(
                        "DELETE FROM hearth_migrations WHERE version = $1",
                        &[&m.version],
                    )
                    .await?;
            }
            info!(version = m.version, name = %m.name, "rolled back migration");
            done.push(m.version);
        }
        if to == 0 {
            client
                .batch_execute("DROP TABLE IF EXISTS hearth_migrations")
                .await?;
        }
        Ok(done)
    })
    .await
}

/// Clears the dirty mark of a migration whose interrupted script an operator
/// has finished by hand (`hearth db repair`).
pub async fn mark_clean(client: &Client, version: i64) -> Result<bool, DbError> {
    let n = client
        .execute(
            "UPDATE hearth_migrations SET dirty = false WHERE version = $1 AND dirty",
            &[&version],
        )
        .await?;
    Ok(n == 1)
}

fn elapsed_ms(started: Instant) -> i32 {
    i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(files: &[(&str, &str)]) -> Result<Migrations, MigrationError> {
        Migrations::from_sources(
            files
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned())),
        )
    }

    #[test]
    fn embedded_migrations_are_complete_and_ordered() {
        let m = Migrations::embedded().expect("embedded migrations parse");
        assert!(m.latest() >= 10);
        for (i, mig) in m.iter().enumerate() {
            assert_eq!(mig.version, i as i64 + 1);
            assert!(!mig.up.trim().is_empty() && !mig.down.trim().is_empty());
        }
    }

    #[test]
    fn a_gap_in_versions_is_refused() {
        let err = set(&[
            ("0001_a.up.sql", "x"),
            ("0001_a.down.sql", "x"),
            ("0003_c.up.sql", "x"),
            ("0003_c.down.sql", "x"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("without gaps"), "{err}");
    }

    #[test]
    fn an_up_without_down_is_refused() {
        let err = set(&[("0001_a.up.sql", "x")]).unwrap_err();
        assert!(err.to_string().contains("0001_a.down.sql"), "{err}");
        let err = set(&[("0001_a.up.sql", "x"), ("0001_b.down.sql", "x")]).unwrap_err();
        assert!(err.to_string().contains("no matching"), "{err}");
    }

    #[test]
    fn bad_names_are_refused_and_other_files_ignored() {
        assert!(set(&[("x_a.up.sql", "x")]).is_err());
        assert!(set(&[("0_a.up.sql", "x")]).is_err());
        let m = set(&[("README.md", "hi")]).expect("ignored");
        assert_eq!(m.latest(), 0);
    }

    #[test]
    fn status_compares_checksums_and_finds_the_first_problem() {
        let m = set(&[
            ("0001_a.up.sql", "one"),
            ("0001_a.down.sql", "x"),
            ("0002_b.up.sql", "two"),
            ("0002_b.down.sql", "x"),
        ])
        .expect("valid");
        let row = |version: i64, checksum: &[u8], dirty| AppliedMigration {
            version,
            name: "a".into(),
            checksum: checksum.to_vec(),
            applied_at: Utc::now(),
            dirty,
        };
        let good = m.get(1).expect("1").checksum;
        let rows = compare(&m, &[row(1, &good, false)]);
        assert_eq!(rows[0].state, MigrationState::Applied);
        assert_eq!(rows[1].state, MigrationState::Pending);
        assert_eq!(current_version(&rows), 1);
        assert!(problem(&rows, 2).is_none());

        let rows = compare(&m, &[row(1, b"other", false)]);
        assert!(matches!(
            problem(&rows, 2),
            Some(MigrationError::ChecksumMismatch { version: 1, .. })
        ));
        let rows = compare(&m, &[row(1, &good, true)]);
        assert!(matches!(
            problem(&rows, 2),
            Some(MigrationError::Dirty { version: 1, .. })
        ));
        let rows = compare(&m, &[row(1, &good, false), row(3, b"?", false)]);
        assert_eq!(rows[2].state, MigrationState::Unknown);
        assert!(matches!(
            problem(&rows, 2),
            Some(MigrationError::DatabaseNewer {
                applied: 3,
                known: 2
            })
        ));
    }

    #[test]
    fn no_transaction_marker_is_detected() {
        let m = set(&[
            (
                "0001_a.up.sql",
                "-- hearth:no-transaction\nCREATE INDEX CONCURRENTLY x ON y (z);",
            ),
            ("0001_a.down.sql", "x"),
        ])
        .expect("valid");
        assert!(!m.get(1).expect("1").transactional());
    }
}
