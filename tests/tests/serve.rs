//! `hearth serve` against a real database: migrates, opens the world, stops
//! when told to.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use clap::Parser;
use hearth::cli::{self, Cli};
use hearth_tests::TestDb;

#[tokio::test]
async fn serve_migrates_opens_the_world_and_stops_on_shutdown() {
    let db = TestDb::empty().await;
    db.client()
        .await
        .batch_execute("CREATE EXTENSION vector")
        .await
        .unwrap();
    let url = db.url();
    let cli = Cli::try_parse_from([
        "hearth",
        "--database-url",
        &url,
        "serve",
        "--world",
        "testland",
    ])
    .unwrap();
    let mut out = Vec::new();
    // a shutdown that has already happened: serve starts, opens the world, then stops
    cli::run(cli, &mut out, std::future::ready(()))
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
    assert_eq!(row.get::<_, String>(0), "all-MiniLM-L6-v2");
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
    let cli =
        Cli::try_parse_from(["hearth", "--database-url", &url, "serve", "--no-migrate"]).unwrap();
    let err = cli::run(cli, &mut Vec::new(), std::future::ready(()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1 migration(s) pending"), "{err}");
}
