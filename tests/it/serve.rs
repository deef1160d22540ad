//! `hearth serve` end to end: migrates, opens the world, runs the simulation
//! thread, and stops when told to — with a real database or without one.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use clap::Parser;
use hearth::cli::{self, Cli};
use hearth_tests::{TestDb, workspace_root};

/// `hearth <global…> serve <rest…>` on the demo content (tests run from
/// `tests/`), unless `rest` names other content.
fn serve(global: &[&str], rest: &[&str]) -> Cli {
    let root = workspace_root();
    let mut argv: Vec<String> = vec!["hearth".into()];
    argv.extend(global.iter().map(|s| s.to_string()));
    argv.push("serve".into());
    // any free port: tests run side by side
    argv.extend(["--listen".into(), "127.0.0.1:0".into()]);
    if !rest.contains(&"--agents") {
        argv.extend(["--agents".into(), root.join("agents").display().to_string()]);
    }
    argv.extend([
        "--map".into(),
        root.join("assets/maps/valley.tmj").display().to_string(),
    ]);
    argv.extend(rest.iter().map(|s| s.to_string()));
    Cli::try_parse_from(argv).unwrap()
}

#[tokio::test]
async fn serve_migrates_opens_the_world_and_stops_on_shutdown() {
    let db = TestDb::empty().await;
    db.client()
        .await
        .batch_execute("CREATE EXTENSION vector")
        .await
        .unwrap();
    let url = db.url();
    let cli = serve(&["--database-url", &url], &["--world", "testland"]);
    // a shutdown that has already happened: serve starts, opens the world, then stops
    cli::run(cli, &mut Vec::new(), std::future::ready(()))
        .await
        .unwrap();

    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT embedding_model, embedding_dim FROM worlds WHERE slug = 'testland'",
            &[],
        )
        .await
        .unwrap();
    // no model files under the tests' home: the hashed fallback embedder
    assert_eq!(row.get::<_, String>(0), "hearth-hashed-v1");
    assert_eq!(row.get::<_, i32>(1), 384);
    let version: i64 = client
        .query_one("SELECT max(version) FROM hearth_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, hearth_db::Migrations::embedded().unwrap().latest());
}

#[tokio::test]
async fn serve_with_no_migrate_refuses_a_stale_schema() {
    let db = TestDb::migrated().await;
    let url = db.url();
    let rollback =
        Cli::try_parse_from(["hearth", "--database-url", &url, "db", "rollback"]).unwrap();
    cli::run(rollback, &mut Vec::new(), std::future::ready(()))
        .await
        .unwrap();
    let cli = serve(&["--database-url", &url], &["--no-migrate"]);
    let err = cli::run(cli, &mut Vec::new(), std::future::ready(()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1 migration(s) pending"), "{err}");
}

#[tokio::test]
async fn serve_without_a_database_runs_the_world_and_stops() {
    // a database URL that could never work proves --no-db does not touch it
    let cli = serve(
        &["--database-url", "postgres://nobody@127.0.0.1:1/none"],
        &["--no-db", "--tick-rate", "50"],
    );
    let shutdown = tokio::time::sleep(std::time::Duration::from_millis(300));
    cli::run(cli, &mut Vec::new(), shutdown).await.unwrap();
}

#[tokio::test]
async fn serve_refuses_invalid_content_with_the_problems() {
    let broken = workspace_root()
        .join("tests/fixtures/content/broken")
        .display()
        .to_string();
    let cli = serve(&[], &["--no-db", "--agents", &broken]);
    let err = cli::run(cli, &mut Vec::new(), std::future::ready(()))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("problems in"), "{err}");
}
