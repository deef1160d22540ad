//! Write-behind persistence end to end, on a real PostgreSQL: a graceful
//! stop takes a final checkpoint the next start resumes exactly; one process
//! owns a world at a time; and `hearth serve` killed with SIGKILL twenty
//! times (half of them in the middle of a commit) never leaves half a
//! checkpoint, an orphan row, or a lost memory behind.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hearth::cli::{self, Cli};
use hearth_content::synthetic;
use hearth_tests::TestDb;
use hearth_world::mind::RuleMind;
use hearth_world::{Saved, Sim, SimConfig};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::{RngExt, SeedableRng};
use tokio_postgres::Client;

const AGENTS: &str = "120";
const SEED: &str = "5";

fn serve(url: &str, world: &str, extra: &[&str]) -> Cli {
    let mut argv = vec![
        "hearth",
        "--database-url",
        url,
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--world",
        world,
        "--synthetic-agents",
        AGENTS,
        "--seed",
        SEED,
        "--tick-rate",
        "50",
        "--time-scale",
        "10",
        "--flush-interval",
        "100ms",
        "--lore",
        "no-lore-here",
    ];
    argv.extend_from_slice(extra);
    Cli::try_parse_from(argv).unwrap()
}

async fn last_tick(client: &Client, world: &str) -> Option<i64> {
    client
        .query_one(
            "SELECT max(c.tick) FROM world_checkpoints c JOIN worlds w ON w.id = c.world_id \
             WHERE w.slug = $1",
            &[&world],
        )
        .await
        .unwrap()
        .get(0)
}

/// Waits until the world has a checkpoint past `after`.
async fn wait_for_checkpoint(client: &Client, world: &str, after: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = last_tick(client, world).await
            && t > after
        {
            return t;
        }
        assert!(Instant::now() < deadline, "no checkpoint past {after}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The world as the database holds it, put back into a simulation.
async fn restore(client: &Client, world: &str) -> (Sim, Saved) {
    let id: i64 = client
        .query_one("SELECT id FROM worlds WHERE slug = $1", &[&world])
        .await
        .unwrap()
        .get(0);
    let stored = hearth_db::writer::load_saved(client, id)
        .await
        .unwrap()
        .expect("a checkpoint with state");
    let saved = hearth::persist::saved_from_db(stored);
    let content = synthetic::world(AGENTS.parse().unwrap(), SEED.parse().unwrap());
    let (sim, report) =
        Sim::restore(content, SimConfig::default(), Arc::new(RuleMind), &saved).unwrap();
    assert_eq!(report.restored, AGENTS.parse::<usize>().unwrap());
    (sim, saved)
}

#[tokio::test]
async fn a_graceful_stop_checkpoints_and_the_next_start_resumes_it() {
    let db = TestDb::migrated().await;
    let url = db.url();
    let client = db.client().await;
    cli::run(
        serve(&url, "resume", &[]),
        &mut Vec::new(),
        tokio::time::sleep(Duration::from_millis(1500)),
    )
    .await
    .unwrap();
    let first = last_tick(&client, "resume").await.expect("a checkpoint");
    assert!(first > 20, "ran for 1.5 s at 50 Hz: tick {first}");

    // one checkpoint holds the world's state: the newest, and it is complete
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE state IS NOT NULL), \
                    (SELECT count(*) FROM agent_states WHERE sim IS NOT NULL), \
                    (SELECT max(updated_tick) FROM agent_states), \
                    (SELECT count(*) FROM sim_metrics), \
                    (SELECT count(*) FROM agent_plans) \
             FROM world_checkpoints",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, i64>(1), 120);
    // the final checkpoint is of every agent at the last tick
    assert_eq!(row.get::<_, Option<i64>>(2), Some(first));
    assert!(row.get::<_, i64>(3) > 0, "a sim_metrics row per checkpoint");
    assert_eq!(row.get::<_, i64>(4), 120, "one current plan per agent");

    // what is stored puts the world back exactly: saving the restored world
    // gives the stored bytes again
    let (mut sim, saved) = restore(&client, "resume").await;
    assert_eq!(sim.clock().tick as i64, first);
    let again = sim.full_snapshot().expect("snapshot");
    assert_eq!(again.world, saved.world);
    let mut relationships = 0;
    for a in &again.agents {
        let slug = &sim.defs()[a.idx as usize].file.id;
        assert_eq!(&a.sim, &saved.agents[slug], "agent {slug}");
        let rels = a.relationships.as_ref().expect("a full snapshot has them");
        let stored = saved.relationships.get(slug).map_or(0, Vec::len);
        assert_eq!(rels.len(), stored, "agent {slug}'s relationships");
        relationships += rels.len();
    }
    assert!(relationships > 0, "the synthetic agents know each other");

    // the next start goes on from there, it does not start over
    cli::run(
        serve(&url, "resume", &[]),
        &mut Vec::new(),
        tokio::time::sleep(Duration::from_millis(800)),
    )
    .await
    .unwrap();
    let second = last_tick(&client, "resume").await.unwrap();
    assert!(second > first, "resumed at {first}, stopped at {second}");
    let memories: i64 = client
        .query_one("SELECT count(*) FROM agent_memories", &[])
        .await
        .unwrap()
        .get(0);
    assert!(memories > 0);
}

#[tokio::test]
async fn a_second_server_for_a_world_is_refused_and_names_the_owner() {
    let db = TestDb::migrated().await;
    let url = db.url();
    let client = db.client().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let first = {
        let url = url.clone();
        tokio::spawn(async move {
            cli::run(serve(&url, "owned", &[]), &mut Vec::new(), async {
                let _ = stopped.await;
            })
            .await
        })
    };
    wait_for_checkpoint(&client, "owned", 0).await;
    let err = cli::run(
        serve(&url, "owned", &[]),
        &mut Vec::new(),
        std::future::ready(()),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("already being served by hearth pid") && text.contains("on host"),
        "{text}"
    );
    assert_ne!(err.exit_code(), 0);
    // another world is free
    cli::run(
        serve(&url, "other", &[]),
        &mut Vec::new(),
        std::future::ready(()),
    )
    .await
    .unwrap();
    stop.send(()).unwrap();
    first.await.unwrap().unwrap();
    // once the owner has stopped, the world is free again
    cli::run(
        serve(&url, "owned", &[]),
        &mut Vec::new(),
        std::future::ready(()),
    )
    .await
    .unwrap();
}

/// A snapshot of what the database holds.
#[derive(Debug)]
struct Held {
    tick: i64,
    memories: BTreeSet<(i64, i64)>,
}

async fn check_consistent(client: &Client) -> Held {
    let tick: i64 = client
        .query_one("SELECT coalesce(max(tick), -1) FROM world_checkpoints", &[])
        .await
        .unwrap()
        .get(0);
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM world_checkpoints WHERE state IS NOT NULL), \
                    (SELECT max(updated_tick) FROM agent_states), \
                    (SELECT count(*) FROM agent_states WHERE updated_tick > $1), \
                    (SELECT count(*) FROM agent_plans WHERE updated_tick > $1), \
                    (SELECT count(*) FROM agent_relationships WHERE updated_tick > $1), \
                    (SELECT count(*) FROM conversations c WHERE NOT EXISTS \
                        (SELECT 1 FROM conversation_participants p \
                         WHERE p.world_id = c.world_id AND p.conversation_id = c.id)), \
                    (SELECT count(*) FROM (SELECT agent_id FROM agent_plans GROUP BY agent_id \
                        HAVING count(*) > 1) x)",
            &[&tick],
        )
        .await
        .unwrap();
    if tick >= 0 {
        assert_eq!(
            row.get::<_, i64>(0),
            1,
            "the newest checkpoint has the state"
        );
        // states and their checkpoint commit together: never one without the other
        assert_eq!(
            row.get::<_, Option<i64>>(1),
            Some(tick),
            "states at the checkpoint"
        );
    }
    assert_eq!(row.get::<_, i64>(2), 0, "no state ahead of the checkpoint");
    assert_eq!(row.get::<_, i64>(3), 0, "no plan ahead of the checkpoint");
    assert_eq!(
        row.get::<_, i64>(4),
        0,
        "no relationship ahead of the checkpoint"
    );
    assert_eq!(
        row.get::<_, i64>(5),
        0,
        "no conversation without participants"
    );
    assert_eq!(row.get::<_, i64>(6), 0, "one plan per agent");
    let memories = client
        .query("SELECT agent_id, id FROM agent_memories", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Held { tick, memories }
}

/// Waits until the killed server's lease lock is gone (PostgreSQL ends the
/// dead process's sessions as soon as it notices the closed sockets).
async fn wait_for_release(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                 AND classid = x'68656172'::int",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the dead server's lease lingers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to `limit`) until a transaction that has written something is
/// open in the test database: a commit under way.
async fn wait_for_commit_in_flight(client: &Client, db: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                 AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()",
                &[&db],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn sigkill_twenty_times_loses_nothing_committed() {
    let db = TestDb::migrated().await;
    let url = db.url();
    let client = db.client().await;
    let exe = env!("CARGO_BIN_EXE_hearth-cli");
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let mut held = check_consistent(&client).await;
    let mut during_commit = 0;
    let mut ages = Vec::new();
    for round in 0..20 {
        let mut child = tokio::process::Command::new(exe)
            .args([
                "--database-url",
                &url,
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--world",
                "crash",
                "--synthetic-agents",
                AGENTS,
                "--seed",
                SEED,
                "--tick-rate",
                "50",
                "--time-scale",
                "30",
                "--flush-interval",
                "50ms",
                "--lore",
                "no-lore-here",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // let it commit at least once past where it resumed
        wait_for_checkpoint(&client, "crash", held.tick.max(0)).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1200))).await;
        if round % 2 == 0
            && wait_for_commit_in_flight(&client, &db.name, Duration::from_secs(2)).await
        {
            during_commit += 1;
        }
        let pid = Pid::from_raw(child.id().unwrap() as i32);
        kill(pid, Signal::SIGKILL).unwrap();
        // how old the newest checkpoint was when the server died: the state
        // lost is what changed since
        let age: f64 = client
            .query_one(
                "SELECT extract(epoch FROM now() - max(committed_at))::float8 \
                 FROM world_checkpoints",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        child.wait().await.unwrap();
        wait_for_release(&client).await;

        let now = check_consistent(&client).await;
        assert!(now.tick >= held.tick, "round {round}: went back in time");
        let lost: Vec<_> = held.memories.difference(&now.memories).collect();
        assert!(
            lost.is_empty(),
            "round {round}: committed memories lost: {lost:?}"
        );
        ages.push(age);
        held = now;
    }
    eprintln!(
        "20 kills, {during_commit} during a commit; final tick {}; {} memories; \
         checkpoint age at the kills: max {:.3} s",
        held.tick,
        held.memories.len(),
        ages.iter().copied().fold(0.0, f64::max)
    );
    assert!(
        during_commit >= 5,
        "only {during_commit} kills landed during a commit"
    );
    // every kill lost only what changed since the last commit, which was a
    // flush interval (50 ms) plus a commit ago; 2 s leaves room for a busy
    // CI machine, and is still far below "everything since the start"
    assert!(
        ages.iter().all(|&a| a < 2.0),
        "checkpoint ages at the kills: {ages:?}"
    );
    assert!(
        held.tick > 100,
        "the world went on across restarts: {}",
        held.tick
    );
    assert!(!held.memories.is_empty());
    // and the agents' memory ids have no holes: nothing committed went missing
    let mut by_agent: HashMap<i64, Vec<i64>> = HashMap::new();
    for (a, id) in &held.memories {
        by_agent.entry(*a).or_default().push(*id);
    }
    for (agent, ids) in by_agent {
        let max = *ids.iter().max().unwrap();
        let min = *ids.iter().min().unwrap();
        assert_eq!(ids.len() as i64, max - min + 1, "agent {agent}: {ids:?}");
    }
}
