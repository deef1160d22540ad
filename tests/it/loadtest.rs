//! `hearth loadtest` end to end: the real binary starts its own server on
//! synthetic agents, connects real WebSocket clients, and reports; an SLO
//! that cannot be met fails the run with exit code 1 and names its lines;
//! with a database, players in two worker processes (`--procs`) log in with
//! accounts made for the run, the report has the writer's checkpoints, and
//! the world and accounts are removed afterwards.

use std::path::PathBuf;
use std::process::Command;

use hearth_tests::TestDb;
use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hearth-loadtest-{}-{name}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn loadtest(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hearth-cli"))
        .arg("--home")
        .arg(home)
        .arg("loadtest")
        .arg("--no-db")
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("the binary runs")
}

#[test]
fn a_short_load_test_reports_and_an_impossible_slo_fails_it() {
    let home = scratch("run");
    let out = loadtest(
        &home,
        &[
            "--agents",
            "1000",
            "--clients",
            "50",
            "--duration",
            "8s",
            "--ramp",
            "2s",
            "--report",
            "json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    for key in [
        "target",
        "clients",
        "connected_at_end",
        "duration_s",
        "tick_ms",
        "delivery_ms",
        "messages_in",
        "bytes_in",
        "messages_per_s",
        "bytes_per_s",
        "snapshots",
        "deltas",
        "events",
        "resyncs",
        "disconnects",
        "errors",
        "server",
        "procs",
        "bytes_out",
        "process",
        "rss_mb_over_time",
        "rss_growth_percent",
        "violations",
    ] {
        assert!(report.get(key).is_some(), "no {key} in {report:#}");
    }
    assert_eq!(report["agents"], 1000);
    assert_eq!(report["clients"], 50);
    assert_eq!(report["connected_at_end"], 50, "{report:#}");
    assert!(
        report["snapshots"].as_u64().unwrap_or(0) >= 50,
        "{report:#}"
    );
    assert!(report["deltas"].as_u64().unwrap_or(0) > 50, "{report:#}");
    for part in ["tick_ms", "delivery_ms"] {
        let p = &report[part];
        let (p50, p99, max) = (
            p["p50"].as_f64().unwrap_or(-1.0),
            p["p99"].as_f64().unwrap_or(-1.0),
            p["max"].as_f64().unwrap_or(-1.0),
        );
        assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{part}: {p}");
    }
    assert_eq!(report["errors"], serde_json::json!({}), "{report:#}");
    assert!(report["process"]["rss_mb"].as_f64().unwrap_or(0.0) > 1.0);
    assert_eq!(report["procs"], 1);
    // the server's side: what it sent, and no writer without a database
    let server = &report["server"];
    assert!(
        server["messages_out_per_s"].as_f64().unwrap_or(0.0) > 50.0,
        "{report:#}"
    );
    assert!(server["bytes_in_per_s"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(report["bytes_out"].as_u64().unwrap_or(0) > 0);
    assert_eq!(server["checkpoints"], Value::Null, "{report:#}");
    assert_eq!(server["flush_lag_max_ms"], Value::Null, "{report:#}");
    assert!(
        report["rss_mb_over_time"]
            .as_array()
            .is_some_and(|a| a.len() >= 2),
        "{report:#}"
    );
    assert!(report["rss_growth_percent"].is_number(), "{report:#}");
    assert_eq!(report["violations"], serde_json::json!([]));

    // thresholds no server can meet: exit 1, the report still printed, and
    // each missed line named
    let slo = home.join("slo.toml");
    std::fs::write(
        &slo,
        "tick_p99_ms = 0.000001\ndelivery_p99_ms = 0.000001\nmax_errors = 0\n",
    )
    .expect("slo file");
    let out = loadtest(
        &home,
        &[
            "--agents",
            "300",
            "--clients",
            "5",
            "--duration",
            "3s",
            "--ramp",
            "0s",
            "--slo",
            slo.to_str().expect("utf-8 path"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("MISSED"), "{stdout}");
    for line in ["tick_p99_ms = 0.000001", "delivery_p99_ms = 0.000001"] {
        assert!(
            stderr.contains(line) && stdout.contains(line),
            "{line}: {stdout}\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("max_errors"),
        "no error happened: {stderr}"
    );

    // a bad SLO file is a usage error naming the key
    std::fs::write(&slo, "delivery_p99 = 50\n").expect("slo file");
    let out = loadtest(
        &home,
        &["--clients", "1", "--slo", slo.to_str().expect("utf-8 path")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("delivery_p99"));
    let _ = std::fs::remove_dir_all(&home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_log_in_walk_and_talk_and_the_world_is_removed_afterwards() {
    let db = TestDb::migrated().await;
    let home = scratch("players");
    let url = db.url();
    let out = tokio::task::spawn_blocking({
        let home = home.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_hearth-cli"))
                .arg("--home")
                .arg(&home)
                .args(["--database-url", &url])
                .args([
                    "loadtest",
                    "--agents",
                    "300",
                    "--clients",
                    "8",
                    "--players",
                    "3",
                    "--player-actions-per-minute",
                    "60",
                    "--procs",
                    "2",
                    "--duration",
                    "6s",
                    "--ramp",
                    "1s",
                    "--report",
                    "json",
                ])
                .env_remove("DATABASE_URL")
                .output()
                .expect("the binary runs")
        }
    })
    .await
    .expect("joined");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(
        (report["clients"].as_u64(), report["players"].as_u64()),
        (Some(8), Some(3))
    );
    assert_eq!(report["connected_at_end"], 8, "{report:#}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report:#}");
    // hello and subscribe from each, then the players' walks and lines
    let sent = report["messages_out"].as_u64().unwrap_or(0);
    assert!(sent >= 16 + 3 * 3, "{report:#}");
    assert!(report["deltas"].as_u64().unwrap_or(0) > 0, "{report:#}");
    assert_eq!(report["procs"], 2);
    // the writer kept up with the world: checkpoints committed, rows and
    // memories flushed, its lag read
    let server = &report["server"];
    assert_eq!(
        server["flush_interval_ms"].as_f64(),
        Some(1000.0),
        "{report:#}"
    );
    assert!(
        server["checkpoints"].as_u64().unwrap_or(0) >= 3,
        "{report:#}"
    );
    assert!(
        server["rows_per_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{report:#}"
    );
    assert!(
        server["memories_per_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{report:#}"
    );
    assert!(server["flush_lag_max_ms"].is_number(), "{report:#}");
    let checkpoint = &server["checkpoint_ms"];
    assert!(
        checkpoint["p50"].as_f64().unwrap_or(-1.0) <= checkpoint["max"].as_f64().unwrap_or(-2.0),
        "{report:#}"
    );
    // the world and the accounts are gone
    let client = db.client().await;
    let worlds: i64 = client
        .query_one(
            "SELECT count(*) FROM worlds WHERE slug LIKE 'loadtest-%'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    let users: i64 = client
        .query_one("SELECT count(*) FROM users WHERE username LIKE 'lt%'", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!((worlds, users), (0, 0));
    let _ = std::fs::remove_dir_all(&home);
}
