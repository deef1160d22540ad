//! The embedded cluster's whole life on a real PostgreSQL: created on first
//! use, found running, stopped, restarted with its data, in a directory the
//! server user cannot enter (as a fresh checkout under `mktemp -d` would be).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use hearth_db::{EmbeddedCluster, connect};

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn create_find_stop_restart_keeps_data() {
    // no other cluster of a test's own starts or stops meanwhile
    let _alone = crate::OWN_CLUSTER.lock().await;
    let dir = TempDir(
        std::env::temp_dir().join(format!("hearth-cluster-test-{}", rand::random::<u32>())),
    );
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o700)).unwrap();
    let cluster = EmbeddedCluster::new(&dir.0.join(".hearth"));

    let config = cluster.ensure_running("hearth").await.unwrap();
    let client = connect::connect(&config).await.unwrap();
    let version: String = client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        hearth_db::check::pgvector_supports_hnsw(&version),
        "{version}"
    );
    client
        .batch_execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        .await
        .unwrap();
    drop(client);

    // password authentication is on: a wrong password is refused
    let mut wrong = config.clone();
    wrong.password("not-the-password");
    assert!(connect::connect(&wrong).await.is_err());

    // already running: same port, nothing restarted
    let again = cluster.ensure_running("hearth").await.unwrap();
    assert_eq!(again.get_ports(), config.get_ports());

    assert!(cluster.stop().await.unwrap(), "was running");
    assert!(!cluster.stop().await.unwrap(), "already stopped");
    assert!(
        connect::connect(&config).await.is_err(),
        "stopped means stopped"
    );

    let restarted = cluster.ensure_running("hearth").await.unwrap();
    let client = connect::connect(&restarted).await.unwrap();
    let x: i32 = client
        .query_one("SELECT x FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(x, 42, "data survives a restart");
    drop(client);
    assert!(cluster.stop().await.unwrap());

    let server_dir = cluster.server_dir();
    if nix::unistd::geteuid().is_root() {
        // root runs the server as `postgres`, which cannot enter a 0700 dir of root's
        assert!(
            server_dir.starts_with("/var/tmp"),
            "{}",
            server_dir.display()
        );
    }
    if server_dir.starts_with("/var/tmp") {
        let _ = std::fs::remove_dir_all(&server_dir);
    }
}
