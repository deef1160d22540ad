//! `hearth db check` and the CLI's database commands against real servers:
//! each failure mode has its own message and exit code.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use clap::Parser;
use hearth::cli::{self, Cli};
use hearth_db::check::{self, CheckError};
use hearth_db::migrate::MigrationError;
use hearth_db::{ClusterError, Migrations};
use hearth_tests::TestDb;

async fn run_cli(args: &[&str], url: &str) -> (Result<(), cli::CliError>, String) {
    let mut argv = vec!["hearth", "--database-url", url];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    let result = cli::run(cli, &mut out, std::future::ready(())).await;
    (result, String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn a_migrated_database_passes() {
    let db = TestDb::migrated().await;
    let report = check::check(&db.config, &Migrations::embedded().unwrap())
        .await
        .unwrap();
    assert_eq!(report.migration_version, report.latest_version);
    assert!(report.pending.is_empty());
    assert!(check::pgvector_supports_hnsw(&report.pgvector_version));
    assert!(
        report
            .server_version
            .chars()
            .next()
            .unwrap()
            .is_ascii_digit()
    );

    let (result, out) = run_cli(&["db", "check"], &db.url()).await;
    result.unwrap();
    assert!(
        out.contains("pgvector:") && out.contains("pending:    none") && out.ends_with("ok\n"),
        "{out}"
    );
}

#[tokio::test]
async fn a_database_without_the_extension_says_how_to_fix_it() {
    let db = TestDb::empty().await;
    let err = check::check(&db.config, &Migrations::embedded().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, CheckError::PgvectorNotCreated { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("hearth db migrate"), "{err}");
    assert_eq!(err.exit_code(), 13);

    let (result, _) = run_cli(&["db", "check"], &db.url()).await;
    assert_eq!(result.unwrap_err().exit_code(), 13);

    // and `db migrate` creates it, after which the check passes with nothing pending
    let (result, out) = run_cli(&["db", "migrate"], &db.url()).await;
    result.unwrap();
    assert!(out.contains("applied 0001 worlds"), "{out}");
    let (result, out) = run_cli(&["db", "check"], &db.url()).await;
    result.unwrap();
    assert!(out.contains("pending:    none"), "{out}");
}

#[tokio::test]
async fn pending_migrations_are_listed_but_not_an_error() {
    let db = TestDb::migrated().await;
    let (result, out) = run_cli(&["db", "rollback", "--to", "7"], &db.url()).await;
    result.unwrap();
    assert!(
        out.contains("rolled back 0010 operations") && out.contains("database at version 7"),
        "{out}"
    );
    let latest = hearth_db::Migrations::embedded().unwrap().latest();
    let (result, out) = run_cli(&["db", "check"], &db.url()).await;
    result.unwrap();
    assert!(
        out.contains(&format!("at version 7 of {latest}")) && out.contains("0008 groups_knowledge"),
        "{out}"
    );
    let (result, out) = run_cli(&["db", "status"], &db.url()).await;
    result.unwrap();
    assert!(
        out.contains("0009     lore                   pending"),
        "{out}"
    );
    assert!(
        out.contains(&format!("at version 7 of {latest}; {} pending", latest - 7)),
        "{out}"
    );
    // a rollback "up" is a usage error
    let (result, _) = run_cli(&["db", "rollback", "--to", "9"], &db.url()).await;
    assert_eq!(result.unwrap_err().exit_code(), 2);
}

#[tokio::test]
async fn an_unreachable_server_is_told_apart() {
    let (result, _) = run_cli(
        &["db", "check"],
        "postgres://hearth@127.0.0.1:1/hearth?connect_timeout=2",
    )
    .await;
    let err = result.unwrap_err();
    assert_eq!(err.exit_code(), 11, "{err}");
    assert!(
        err.to_string()
            .contains("cannot reach PostgreSQL at postgres://hearth@127.0.0.1:1/hearth"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_credentials_are_told_apart() {
    let db = TestDb::migrated().await;
    let mut config = db.config.clone();
    config.user("nobody_here").password("wrong");
    let err = check::check(&config, &Migrations::embedded().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, CheckError::Auth { .. }), "{err}");
    assert_eq!(err.exit_code(), 12);
    assert!(err.to_string().contains("refused the credentials"), "{err}");
}

#[tokio::test]
async fn a_dirty_or_edited_migration_fails_the_check() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    client
        .execute(
            "UPDATE hearth_migrations SET dirty = true WHERE version = 2",
            &[],
        )
        .await
        .unwrap();
    let (result, _) = run_cli(&["db", "check"], &db.url()).await;
    let err = result.unwrap_err();
    assert_eq!(err.exit_code(), 15, "{err}");
    assert!(
        err.to_string().contains("migration 2 (accounts) is dirty"),
        "{err}"
    );

    let (result, out) = run_cli(&["db", "repair", "--version", "2"], &db.url()).await;
    result.unwrap();
    assert!(out.contains("marked clean"), "{out}");

    client
        .execute(
            "UPDATE hearth_migrations SET checksum = '\\x00' WHERE version = 5",
            &[],
        )
        .await
        .unwrap();
    let (result, _) = run_cli(&["db", "check"], &db.url()).await;
    let err = result.unwrap_err();
    assert_eq!(err.exit_code(), 16, "{err}");
    assert!(matches!(
        err,
        cli::CliError::Check(CheckError::Migration(MigrationError::ChecksumMismatch {
            version: 5,
            ..
        }))
    ));
}

#[tokio::test]
async fn a_database_newer_than_the_binary_is_refused() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    client
        .execute("INSERT INTO hearth_migrations (version, name, checksum) VALUES (999, 'future', '\\x00')", &[])
        .await
        .unwrap();
    let err = check::check(&db.config, &Migrations::embedded().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CheckError::Migration(MigrationError::DatabaseNewer { applied: 999, .. })
        ),
        "{err}"
    );
    let (result, _) = run_cli(&["db", "migrate"], &db.url()).await;
    assert!(
        result
            .unwrap_err()
            .to_string()
            .contains("newer than this binary")
    );
}

#[test]
fn missing_server_programs_and_extension_files_have_their_own_codes() {
    // A server without pgvector cannot be made here (the provisioned one has it),
    // so the classification is checked on the values the cluster code returns.
    let not_found = CheckError::Cluster(ClusterError::PostgresNotFound {
        searched: "/usr/lib/postgresql".into(),
    });
    let no_vector = CheckError::Cluster(ClusterError::PgvectorNotInstalled {
        pg_major: "15".into(),
        control: "/usr/share/postgresql/15/extension/vector.control".into(),
    });
    assert_eq!(not_found.exit_code(), 10);
    assert_eq!(no_vector.exit_code(), 13);
    assert!(no_vector.to_string().contains("bash docker/provision.sh"));
}
