//! Migrations against a real PostgreSQL: round trips, checksums, dirty
//! marks, failed scripts and concurrent runners.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use hearth_db::migrate::{self, MigrationError, MigrationState};
use hearth_db::{DbError, Migrations};
use hearth_tests::TestDb;
use tokio_postgres::Client;

/// Every column, constraint and index of the public schema, as text.
async fn schema(client: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for row in client
        .query(
            "SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '') \
             FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "column {}.{} {} null={} default={}",
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2),
            row.get::<_, String>(3),
            row.get::<_, String>(4)
        ));
    }
    for row in client
        .query(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "constraint {}.{} {}",
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ));
    }
    for row in client
        .query(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname",
            &[],
        )
        .await
        .unwrap()
    {
        out.push(format!("index {}", row.get::<_, String>(0)));
    }
    out
}

async fn tables(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn rollback_to_zero_then_migrate_round_trips() {
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    let migrations = Migrations::embedded().unwrap();
    let before = schema(&client).await;
    assert!(
        before
            .iter()
            .any(|l| l.starts_with("column agent_memories.embedding "))
    );

    let undone = migrate::rollback(&mut client, &migrations, 0)
        .await
        .unwrap();
    assert_eq!(undone, (1..=migrations.latest()).rev().collect::<Vec<_>>());
    assert_eq!(
        tables(&client).await,
        Vec::<String>::new(),
        "rollback to 0 leaves no table"
    );

    let applied = migrate::migrate(&mut client, &migrations, None)
        .await
        .unwrap();
    assert_eq!(applied, (1..=migrations.latest()).collect::<Vec<_>>());
    assert_eq!(
        schema(&client).await,
        before,
        "schema after the round trip differs"
    );
}

#[tokio::test]
async fn each_step_rolls_back_and_reapplies() {
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    let migrations = Migrations::embedded().unwrap();
    let full = schema(&client).await;
    for to in (0..migrations.latest()).rev() {
        migrate::rollback(&mut client, &migrations, to)
            .await
            .unwrap();
        let rows = migrate::status(&client, &migrations).await.unwrap();
        assert_eq!(migrate::current_version(&rows), to);
    }
    for to in 1..=migrations.latest() {
        assert_eq!(
            migrate::migrate(&mut client, &migrations, Some(to))
                .await
                .unwrap(),
            vec![to]
        );
    }
    assert_eq!(schema(&client).await, full);
    // once at the latest version, migrate has nothing to do
    assert!(
        migrate::migrate(&mut client, &migrations, None)
            .await
            .unwrap()
            .is_empty()
    );
}

fn edited(version: i64, extra: &str) -> Migrations {
    let embedded = Migrations::embedded().unwrap();
    Migrations::from_sources(embedded.iter().flat_map(|m| {
        let up = if m.version == version {
            format!("{}\n{extra}", m.up)
        } else {
            m.up.clone()
        };
        [
            (format!("{:04}_{}.up.sql", m.version, m.name), up),
            (
                format!("{:04}_{}.down.sql", m.version, m.name),
                m.down.clone(),
            ),
        ]
    }))
    .unwrap()
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused() {
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    let changed = edited(3, "-- a harmless-looking edit");

    let err = migrate::migrate(&mut client, &changed, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DbError::Migration(MigrationError::ChecksumMismatch { version: 3, .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("migration 3 (agents) was changed after it was applied"),
        "{err}"
    );
    let rows = migrate::status(&client, &changed).await.unwrap();
    assert_eq!(rows[2].state, MigrationState::ChecksumMismatch);
    // rolling back with the edited file is refused too
    assert!(migrate::rollback(&mut client, &changed, 0).await.is_err());
}

#[tokio::test]
async fn a_failing_migration_leaves_nothing_behind() {
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    let embedded = Migrations::embedded().unwrap();
    let next = embedded.latest() + 1;
    let broken = Migrations::from_sources(
        embedded
            .iter()
            .flat_map(|m| {
                [
                    (format!("{:04}_{}.up.sql", m.version, m.name), m.up.clone()),
                    (
                        format!("{:04}_{}.down.sql", m.version, m.name),
                        m.down.clone(),
                    ),
                ]
            })
            .chain([
                (
                    format!("{next:04}_broken.up.sql"),
                    "CREATE TABLE half_done (id int); SELECT no_such_function();".to_owned(),
                ),
                (
                    format!("{next:04}_broken.down.sql"),
                    "DROP TABLE half_done;".to_owned(),
                ),
            ]),
    )
    .unwrap();
    let err = migrate::migrate(&mut client, &broken, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no_such_function"), "{err}");
    assert!(!tables(&client).await.contains(&"half_done".to_owned()));
    let rows = migrate::status(&client, &broken).await.unwrap();
    assert_eq!(migrate::current_version(&rows), embedded.latest());
    assert_eq!(rows.last().unwrap().state, MigrationState::Pending);
}

#[tokio::test]
async fn a_dirty_migration_blocks_migrate_until_repaired() {
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    let migrations = Migrations::embedded().unwrap();
    client
        .execute(
            "UPDATE hearth_migrations SET dirty = true WHERE version = 4",
            &[],
        )
        .await
        .unwrap();
    let err = migrate::migrate(&mut client, &migrations, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DbError::Migration(MigrationError::Dirty { version: 4, .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("hearth db repair --version 4"),
        "{err}"
    );
    assert!(migrate::mark_clean(&client, 4).await.unwrap());
    assert!(
        !migrate::mark_clean(&client, 4).await.unwrap(),
        "already clean"
    );
    migrate::migrate(&mut client, &migrations, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn concurrent_migrations_apply_each_script_once() {
    let db = TestDb::empty().await;
    db.client()
        .await
        .batch_execute("CREATE EXTENSION vector")
        .await
        .unwrap();
    let migrations = Migrations::embedded().unwrap();
    let run = || {
        let config = db.config.clone();
        let migrations = migrations.clone();
        tokio::spawn(async move {
            let mut client = hearth_db::connect::connect(&config).await.unwrap();
            migrate::migrate(&mut client, &migrations, None)
                .await
                .unwrap()
        })
    };
    let (a, b, c) = tokio::join!(run(), run(), run());
    let mut all: Vec<i64> = [a.unwrap(), b.unwrap(), c.unwrap()].concat();
    all.sort();
    assert_eq!(
        all,
        (1..=migrations.latest()).collect::<Vec<_>>(),
        "each migration applied exactly once"
    );
}
