//! The database going away under a running world: `hearth serve` runs on a
//! PostgreSQL cluster of this test's own, which is stopped for 30 s and
//! started again. The world must keep ticking at its rate throughout, and
//! every memory and message made during the outage must be in the database
//! afterwards (the writer kept them and caught up), with no holes. The
//! server is a process of its own, and the cluster it stops is this test's
//! alone; no other test starts or stops a cluster of its own meanwhile
//! (`OWN_CLUSTER`), which could take this one's port while it is down.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hearth_db::EmbeddedCluster;
use hearth_db::cluster::DATABASE;
use hearth_db::connect;
use hearth_tests::workspace_root;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncBufReadExt;

const TICK_RATE: u64 = 20;
const TIME_SCALE: i64 = 10;
const OUTAGE: Duration = Duration::from_secs(30);

/// The cluster's directories, removed when the test ends (even failing).
struct Home {
    dir: PathBuf,
    cluster: EmbeddedCluster,
}

impl Drop for Home {
    fn drop(&mut self) {
        let cluster = self.cluster.clone();
        let server_dir = cluster.server_dir();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = rt.block_on(cluster.stop());
            }
        })
        .join();
        let _ = std::fs::remove_dir_all(&server_dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn thirty_seconds_without_the_database_lose_nothing_and_stall_nothing() {
    let _alone = crate::OWN_CLUSTER.lock().await;
    let dir = workspace_root().join(format!("target/outage-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let home = Home {
        cluster: EmbeddedCluster::new(&dir),
        dir: dir.clone(),
    };
    let config = home.cluster.ensure_running(DATABASE).await.unwrap();
    let client = connect::connect(&config).await.unwrap();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth-cli"))
        .env_remove("DATABASE_URL")
        .args(["--home"])
        .arg(&dir)
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--world",
            "outage",
            "--synthetic-agents",
            "200",
            "--tick-rate",
            &TICK_RATE.to_string(),
            "--time-scale",
            &TIME_SCALE.to_string(),
            "--flush-interval",
            "200ms",
            "--lore",
            "no-lore-here",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // the server's log, kept for the tick reports
    let stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let mut all = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push(line);
        }
        all
    });

    // running and committing
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let row = client
            .query_opt(
                "SELECT tick, game_time FROM world_checkpoints ORDER BY tick DESC LIMIT 1",
                &[],
            )
            .await
            .ok()
            .flatten();
        if let Some(r) = row
            && r.get::<_, i64>(0) > 100
        {
            break (r.get::<_, i64>(0), r.get::<_, chrono::NaiveDateTime>(1));
        }
        assert!(Instant::now() < deadline, "the server never checkpointed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(client);

    // the outage
    assert!(
        home.cluster.stop().await.unwrap(),
        "the cluster was running"
    );
    let stopped = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let config = home.cluster.ensure_running(DATABASE).await.unwrap();
    let outage = stopped.elapsed();
    let client = connect::connect(&config).await.unwrap();

    // the writer reconnects and catches up: a checkpoint past the outage
    let game_outage = chrono::Duration::minutes(TIME_SCALE * outage.as_secs() as i64);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tick: i64 = client
            .query_one("SELECT max(tick) FROM world_checkpoints", &[])
            .await
            .unwrap()
            .get(0);
        if tick > before.0 + (TICK_RATE * outage.as_secs()) as i64 {
            break;
        }
        assert!(Instant::now() < deadline, "the writer never caught up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("stopped within 15 s of SIGTERM")
        .unwrap();
    let log = log.await.unwrap();
    assert!(
        status.success(),
        "exit {status:?}; log tail: {:?}",
        tail(&log)
    );

    // what was made while the database was away is there: memories and
    // messages dated inside the outage (game time runs TIME_SCALE minutes a second)
    let (from, to) = (
        before.1 + chrono::Duration::minutes(1),
        before.1 + game_outage - chrono::Duration::minutes(TIME_SCALE * 2),
    );
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM agent_memories \
                     WHERE created_game_time BETWEEN $1 AND $2), \
                    (SELECT count(*) FROM messages WHERE game_time BETWEEN $1 AND $2)",
            &[&from, &to],
        )
        .await
        .unwrap();
    let (memories, messages) = (row.get::<_, i64>(0), row.get::<_, i64>(1));
    eprintln!(
        "outage {:.1} s: {memories} memories and {messages} messages made during it are stored",
        outage.as_secs_f64()
    );
    assert!(memories > 100, "{memories} memories from the outage");
    assert!(messages > 0, "{messages} messages from the outage");
    // none missing: each agent's memory ids and each conversation's lines
    // are gapless
    let mut ids: HashMap<i64, Vec<i64>> = HashMap::new();
    for r in client
        .query("SELECT agent_id, id FROM agent_memories", &[])
        .await
        .unwrap()
    {
        ids.entry(r.get(0)).or_default().push(r.get(1));
    }
    for (agent, mut v) in ids {
        v.sort_unstable();
        assert_eq!(v.len() as i64, v[v.len() - 1] - v[0] + 1, "agent {agent}");
    }
    let holes: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT conversation_id FROM messages \
             GROUP BY conversation_id HAVING max(seq) + 1 <> count(*) OR min(seq) <> 0) x",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(holes, 0, "conversations with missing lines");

    // the world never stalled: every ten-second tick report kept the rate
    let reports: Vec<(u64, u64)> = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "world")
        .map(|v| {
            (
                v["fields"]["ticks"].as_u64().unwrap_or(0),
                v["fields"]["max_us"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    // the server ran about 40 s: at least three reports, which span the outage
    assert!(reports.len() >= 3, "tick reports: {reports:?}");
    eprintln!("tick reports (ticks, max µs) every 10 s: {reports:?}");
    for (ticks, max_us) in &reports {
        assert!(
            *ticks >= TICK_RATE * 10 * 8 / 10,
            "a report of {ticks} ticks: {reports:?}"
        );
        assert!(*max_us < 500_000, "a tick of {max_us} µs: {reports:?}");
    }
    let retried = log
        .iter()
        .filter(|l| l.contains("write-behind commit failed"))
        .count();
    assert!(retried > 0, "the writer never noticed the outage");
}

fn tail(log: &[String]) -> &[String] {
    &log[log.len().saturating_sub(20)..]
}
