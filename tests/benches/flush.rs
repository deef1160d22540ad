//! The write-behind commit against raw binary COPY of the same rows into the
//! same database, in the same run: `writer::commit` of 1k, 10k and 100k dirty
//! agent states (staged by COPY, then upserted over existing rows, with the
//! checkpoint, in one transaction), and of 10k memories with 384-dimension
//! embeddings. Baselines, in the same run: the same rows by binary COPY into
//! an unindexed table of the same columns (`raw_copy_*`), into a table with
//! the same keys, indexes and checks (`raw_copy_states_indexed`), and, for
//! memories, straight into `agent_memories` itself with no transaction
//! around it (`raw_copy_memories_same_table`).
//!
//! `cargo bench -p hearth-tests --bench flush -- --noplot` (criterion; the
//! test harness's database). BENCHMARKS.md records the medians and ratios.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hearth_db::agents::{self, AgentRow};
use hearth_db::memories::MemoryRow;
use hearth_db::writer::{self, AgentStateRow, Batch, Checkpoint};
use hearth_db::{game_time, worlds};
use hearth_tests::TestDb;
use pgvector::Vector;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tokio::runtime::Runtime;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const MEMORIES: usize = 10_000;
const DIM: usize = 384;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn state(world_id: i64, agent_id: i64, tick: i64, rng: &mut StdRng) -> AgentStateRow {
    AgentStateRow {
        agent_id,
        world_id,
        x: rng.random_range(0.0..500.0),
        y: rng.random_range(0.0..500.0),
        facing: "s".into(),
        action: "bake the day's bread".into(),
        action_started_at: Some(game_time::to_timestamp(3600)),
        action_target: Some("oven".into()),
        target: Some((12.0, 7.0)),
        location_name: Some("Bakery".into()),
        energy: rng.random_range(0.0..1.0),
        mood: rng.random_range(-1.0..1.0),
        emotional_state: json!({}),
        physical_state: json!({}),
        cognitive_load: 0.2,
        updated_tick: tick,
        sim: Some(vec![7; 96]),
    }
}

/// The baseline: the same rows by binary COPY into a table of the same
/// columns with no key, no index and no conflict handling.
async fn raw_copy_states(client: &Client, rows: &[AgentStateRow], indexed: bool) -> u64 {
    let table = if indexed {
        "raw_states_ix"
    } else {
        "raw_states"
    };
    let like = if indexed { "INCLUDING ALL" } else { "" };
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (LIKE agent_states {like}); TRUNCATE {table}"
        ))
        .await
        .expect("raw table");
    let sink = client
        .copy_in(&format!(
            "COPY {table} ({}) FROM STDIN (FORMAT binary)",
            writer::STATE_COLUMNS
        ))
        .await
        .expect("copy");
    let types = writer::STATE_TYPES;
    let mut w = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
    for s in rows {
        let (tx, ty) = s.target.map_or((None, None), |(x, y)| (Some(x), Some(y)));
        let row: [&(dyn ToSql + Sync); 18] = [
            &s.agent_id,
            &s.world_id,
            &s.x,
            &s.y,
            &s.facing,
            &s.action,
            &s.action_started_at,
            &s.action_target,
            &tx,
            &ty,
            &s.location_name,
            &s.energy,
            &s.mood,
            &s.emotional_state,
            &s.physical_state,
            &s.cognitive_load,
            &s.updated_tick,
            &s.sim,
        ];
        w.as_mut().write(&row).await.expect("row");
    }
    w.finish().await.expect("finish")
}

async fn raw_copy_memories(client: &Client, rows: &[MemoryRow]) -> u64 {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS raw_memories (agent_id bigint, id bigint, content text, \
             importance smallint, created timestamp, embedding vector); TRUNCATE raw_memories",
        )
        .await
        .expect("raw table");
    let vector_type = client
        .prepare("SELECT $1::vector")
        .await
        .expect("vector type")
        .params()[0]
        .clone();
    let sink = client
        .copy_in(
            "COPY raw_memories (agent_id, id, content, importance, created, embedding) \
             FROM STDIN (FORMAT binary)",
        )
        .await
        .expect("copy");
    let types = [
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::INT2,
        Type::TIMESTAMP,
        vector_type,
    ];
    let mut w = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
    for m in rows {
        let v = m.embedding.clone().map(Vector::from);
        let row: [&(dyn ToSql + Sync); 6] = [
            &m.agent_id,
            &m.id,
            &m.content,
            &m.importance,
            &m.created_game_time,
            &v,
        ];
        w.as_mut().write(&row).await.expect("row");
    }
    w.finish().await.expect("finish")
}

fn agent_row(i: usize) -> AgentRow {
    AgentRow {
        slug: format!("a{i}"),
        name: format!("Agent {i}"),
        definition: json!({}),
        age: None,
        constitution: String::new(),
        background: String::new(),
        traits: json!({}),
        likes: vec![],
        dislikes: vec![],
        primary_goal: None,
        secondary_goals: vec![],
        home_location: None,
    }
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let db = rt.block_on(TestDb::migrated());
    let client = rt.block_on(db.client());
    let world = rt
        .block_on(worlds::ensure(&client, "bench", "Bench", "m", DIM as i32))
        .expect("world");
    let agents: Vec<AgentRow> = (0..SIZES[2]).map(agent_row).collect();
    let ids = rt
        .block_on(agents::upsert(&client, world.id, &agents))
        .expect("agents");
    let mut ids: Vec<i64> = ids.into_values().collect();
    ids.sort_unstable();
    let mut rng = StdRng::seed_from_u64(7);

    let mut group = c.benchmark_group("flush");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let mut tick = 0i64;
    for n in SIZES {
        let rows: Vec<AgentStateRow> = ids[..n]
            .iter()
            .map(|&id| state(world.id, id, 1, &mut rng))
            .collect();
        // the rows exist already: a flush updates agents that changed
        let batch = Batch {
            agent_states: rows.iter().map(|r| (r.agent_id, r.clone())).collect(),
            ..Batch::default()
        };
        rt.block_on(writer::commit(&client, &batch)).expect("warm");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("raw_copy_states", n), &rows, |b, rows| {
            b.iter(|| rt.block_on(raw_copy_states(&client, black_box(rows), false)));
        });
        group.bench_with_input(
            BenchmarkId::new("raw_copy_states_indexed", n),
            &rows,
            |b, rows| {
                b.iter(|| rt.block_on(raw_copy_states(&client, black_box(rows), true)));
            },
        );
        group.bench_with_input(BenchmarkId::new("commit_states", n), &batch, |b, batch| {
            b.iter_batched(
                || {
                    tick += 1;
                    let mut batch = batch.clone();
                    batch.checkpoint = Some(Checkpoint {
                        world_id: world.id,
                        tick,
                        game_time: game_time::to_timestamp(tick as u64),
                        state: None,
                    });
                    batch
                },
                |batch| {
                    rt.block_on(writer::commit(&client, black_box(&batch)))
                        .expect("commit")
                },
                criterion::BatchSize::PerIteration,
            );
        });
    }

    // memories: appended, so each iteration writes fresh ids
    let memories = |first: i64| -> Vec<MemoryRow> {
        let mut rng = StdRng::seed_from_u64(first as u64);
        (0..MEMORIES as i64)
            .map(|i| {
                let v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                MemoryRow {
                    world_id: world.id,
                    agent_id: ids[(i as usize) % 1000],
                    id: first + i,
                    kind: "observation".into(),
                    content: format!("Bo was at Bakery: bake the day's bread ({i})"),
                    importance: 3,
                    emotional_valence: 0.0,
                    emotional_intensity: 0.0,
                    tags: vec!["bake the day's bread".into()],
                    related_agent_ids: vec![],
                    related_character_ids: vec![],
                    location: Some("Bakery".into()),
                    created_game_time: game_time::to_timestamp(60),
                    last_accessed_game_time: game_time::to_timestamp(60),
                    depth: 0,
                    evidence_ids: vec![],
                    embedding: Some(v),
                }
            })
            .collect()
    };
    let sample = memories(1);
    group.throughput(Throughput::Elements(MEMORIES as u64));
    group.bench_function(BenchmarkId::new("raw_copy_memories", MEMORIES), |b| {
        b.iter(|| rt.block_on(raw_copy_memories(&client, black_box(&sample))));
    });
    let mut next = 1i64;
    // the writer's own statement, alone: the same rows by binary COPY into
    // agent_memories itself (its keys, indexes and foreign keys), no
    // transaction around it
    group.bench_function(
        BenchmarkId::new("raw_copy_memories_same_table", MEMORIES),
        |b| {
            b.iter_batched(
                || {
                    let rows = memories(next);
                    next += MEMORIES as i64;
                    rows
                },
                |rows| {
                    rt.block_on(hearth_db::memories::copy_in(&client, &rows))
                        .expect("copy")
                },
                criterion::BatchSize::PerIteration,
            );
        },
    );
    group.bench_function(BenchmarkId::new("commit_memories", MEMORIES), |b| {
        b.iter_batched(
            || {
                let rows = memories(next);
                next += MEMORIES as i64;
                Batch {
                    memories: rows,
                    ..Batch::default()
                }
            },
            |batch| {
                rt.block_on(writer::commit(&client, &batch))
                    .expect("commit")
            },
            criterion::BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
