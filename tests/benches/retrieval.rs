//! Retrieval of one agent's top 10 memories over 1k, 10k and 100k memories
//! of 384 dimensions, three ways on the same data in the same run: in process
//! (`HotMemories`), pgvector exact (`memories::retrieve_exact`) and pgvector
//! HNSW (`memories::nearest_reflections`, with its recall@10 against the
//! exact nearest neighbours). Also: the lane dot product against a naive
//! loop, and COPY ingestion against an UNNEST INSERT of the same rows.
//!
//! `cargo bench -p hearth-tests --bench retrieval -- --noplot` (criterion;
//! uses the test harness's database: the embedded cluster, or
//! `HEARTH_TEST_DATABASE_URL`). Besides criterion's times it prints, per
//! size, p50/p99 over individually timed calls and the HNSW recall; those
//! and the ratios are what BENCHMARKS.md records.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hearth_db::game_time::to_timestamp;
use hearth_db::memories::{self, MemoryRow};
use hearth_db::worlds;
use hearth_mind::memory::{Memory, MemoryKind};
use hearth_mind::retrieval::{HotMemories, Query, RetrievalParams, dot};
use hearth_tests::TestDb;
use pgvector::Vector;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::runtime::Runtime;
use tokio_postgres::Client;

const DIM: usize = 384;
const K: usize = 10;
const NOW: u64 = 60 * 86_400;
/// Topics the synthetic memories cluster around (real embeddings cluster;
/// uniform random vectors would make HNSW look worse than it is).
const TOPICS: usize = 200;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn normalised(v: Vec<f32>) -> Vec<f32> {
    let n = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.into_iter().map(|x| x / n).collect()
}

fn random_unit(rng: &mut StdRng) -> Vec<f32> {
    normalised((0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect())
}

/// A vector near one of the topics.
fn near_topic(rng: &mut StdRng, topics: &[Vec<f32>]) -> Vec<f32> {
    let topic = &topics[rng.random_range(0..topics.len())];
    let noise = random_unit(rng);
    normalised(topic.iter().zip(&noise).map(|(t, n)| t + 0.8 * n).collect())
}

/// `n` memories of one agent, all reflections (so the HNSW index covers the
/// same data the exact paths search), embedded, spread over 60 game days.
fn rows(
    rng: &mut StdRng,
    topics: &[Vec<f32>],
    world_id: i64,
    agent_id: i64,
    n: usize,
) -> Vec<MemoryRow> {
    (1..=n as i64)
        .map(|id| {
            let created = rng.random_range(0..NOW);
            let last = rng.random_range(created..=NOW);
            MemoryRow {
                world_id,
                agent_id,
                id,
                kind: "reflection".into(),
                content: format!(
                    "memory {id}: something the agent concluded about the day and the people in it"
                ),
                importance: rng.random_range(1..=10),
                emotional_valence: rng.random_range(-1.0f32..=1.0),
                emotional_intensity: rng.random_range(0.0f32..=1.0),
                tags: Vec::new(),
                related_agent_ids: Vec::new(),
                related_character_ids: Vec::new(),
                location: None,
                created_game_time: to_timestamp(created),
                last_accessed_game_time: to_timestamp(last),
                depth: 1,
                evidence_ids: Vec::new(),
                embedding: Some(near_topic(rng, topics)),
            }
        })
        .collect()
}

async fn world_and_agent(client: &Client, agents: usize) -> (i64, Vec<i64>) {
    let world = worlds::ensure(client, "bench", "Bench", "all-MiniLM-L6-v2", DIM as i32)
        .await
        .expect("world");
    let mut ids = Vec::new();
    for i in 0..agents {
        let id: i64 = client
            .query_one(
                "INSERT INTO agents (world_id, slug, name, definition) VALUES ($1, $2, 'A', '{}') RETURNING id",
                &[&world.id, &format!("a{i}")],
            )
            .await
            .expect("agent")
            .get(0);
        ids.push(id);
    }
    (world.id, ids)
}

/// One size's data loaded three ways.
struct Loaded {
    _db: TestDb,
    client: Client,
    world: i64,
    agent: i64,
    hot: HotMemories,
    vectors: Vec<Vec<f32>>,
}

/// Loads `n` memories: COPY with the HNSW index dropped, then the index built
/// (pgvector's advice for bulk loads), and the same memories in process.
fn load(rt: &Runtime, topics: &[Vec<f32>], n: usize) -> Loaded {
    let mut rng = StdRng::seed_from_u64(n as u64);
    rt.block_on(async {
        let db = TestDb::migrated().await;
        let client = db.client().await;
        let (world, agents) = world_and_agent(&client, 1).await;
        let agent = agents[0];
        let data = rows(&mut rng, topics, world, agent, n);
        let def: String = client
            .query_one(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'agent_memories_reflection_hnsw_384'",
                &[],
            )
            .await
            .expect("the HNSW index")
            .get(0);
        client
            .batch_execute("DROP INDEX agent_memories_reflection_hnsw_384")
            .await
            .expect("drop index");
        let started = Instant::now();
        for chunk in data.chunks(20_000) {
            memories::copy_in(&client, chunk).await.expect("copy");
        }
        let copied = started.elapsed();
        let started = Instant::now();
        client
            .batch_execute(&format!("SET maintenance_work_mem = '1GB'; {def}; ANALYZE agent_memories"))
            .await
            .expect("build the index");
        eprintln!(
            "retrieval/{n}: COPY {:.2} s ({:.0} memories/s), HNSW build {:.2} s",
            copied.as_secs_f64(),
            n as f64 / copied.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        let mut hot = HotMemories::new(DIM, n);
        for r in &data {
            hot.push(&Memory {
                valence: r.emotional_valence,
                intensity: r.emotional_intensity,
                last_accessed: hearth_db::game_time::from_timestamp(r.last_accessed_game_time),
                ..Memory::new(
                    r.id as u64,
                    MemoryKind::Reflection,
                    r.content.clone(),
                    r.importance as u8,
                    hearth_db::game_time::from_timestamp(r.created_game_time),
                )
            });
            if let Some(e) = &r.embedding {
                hot.set_embedding(r.id as u64, e);
            }
        }
        let vectors = data.into_iter().filter_map(|r| r.embedding).collect();
        Loaded {
            _db: db,
            client,
            world,
            agent,
            hot,
            vectors,
        }
    })
}

/// Median and 99th percentile of individually timed calls.
fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn time_calls(calls: usize, mut f: impl FnMut(usize)) -> (Duration, Duration) {
    let samples = (0..calls)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed()
        })
        .collect();
    percentiles(samples)
}

/// The exact top-10 by cosine similarity (the vectors are unit length).
fn exact_nearest(vectors: &[Vec<f32>], q: &[f32]) -> Vec<i64> {
    let mut scored: Vec<(f32, i64)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (dot(v, q), i as i64 + 1))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(K).map(|(_, id)| id).collect()
}

fn retrieval(c: &mut Criterion) {
    let rt = runtime();
    let mut rng = StdRng::seed_from_u64(42);
    let topics: Vec<Vec<f32>> = (0..TOPICS).map(|_| random_unit(&mut rng)).collect();
    let queries: Vec<Vec<f32>> = (0..64).map(|_| near_topic(&mut rng, &topics)).collect();
    let params = RetrievalParams::default();
    let scoring = Query::new(&params, None, NOW, K).db_scoring();
    let now = to_timestamp(NOW);

    let mut group = c.benchmark_group("retrieval");
    for n in [1_000usize, 10_000, 100_000] {
        let mut data = load(&rt, &topics, n);
        group.sample_size(if n >= 100_000 { 10 } else { 30 });
        group.measurement_time(Duration::from_secs(if n >= 100_000 { 20 } else { 8 }));

        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("in_process", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                black_box(
                    data.hot
                        .retrieve(&Query::new(&params, Some(&queries[i]), NOW, K)),
                )
            });
        });
        group.bench_with_input(BenchmarkId::new("pgvector_exact", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                rt.block_on(memories::retrieve_exact(
                    &data.client,
                    data.agent,
                    Some(&queries[i]),
                    now,
                    &scoring,
                    K,
                ))
                .expect("exact retrieval")
            });
        });
        group.bench_with_input(BenchmarkId::new("pgvector_hnsw", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                rt.block_on(memories::nearest_reflections(
                    &data.client,
                    data.world,
                    DIM as i32,
                    &queries[i],
                    K,
                ))
                .expect("hnsw")
            });
        });

        // p50/p99 of single calls, and the HNSW recall@10
        let calls = |base: usize| if n >= 100_000 { base / 10 } else { base };
        let hot = time_calls(calls(2_000), |i| {
            black_box(data.hot.retrieve(&Query::new(
                &params,
                Some(&queries[i % queries.len()]),
                NOW,
                K,
            )));
        });
        let exact = time_calls(calls(300), |i| {
            black_box(
                rt.block_on(memories::retrieve_exact(
                    &data.client,
                    data.agent,
                    Some(&queries[i % queries.len()]),
                    now,
                    &scoring,
                    K,
                ))
                .expect("exact retrieval"),
            );
        });
        let hnsw = time_calls(calls(1_000), |i| {
            black_box(
                rt.block_on(memories::nearest_reflections(
                    &data.client,
                    data.world,
                    DIM as i32,
                    &queries[i % queries.len()],
                    K,
                ))
                .expect("hnsw"),
            );
        });
        let mut hits = 0;
        for q in &queries {
            let truth = exact_nearest(&data.vectors, q);
            let got = rt
                .block_on(memories::nearest_reflections(
                    &data.client,
                    data.world,
                    DIM as i32,
                    q,
                    K,
                ))
                .expect("hnsw");
            hits += got.iter().filter(|r| truth.contains(&r.id)).count();
        }
        let recall = hits as f64 / (queries.len() * K) as f64;
        let plan: Vec<String> = rt
            .block_on(data.client.query(
                &format!("EXPLAIN {}", memories::nearest_reflections_sql(DIM as i32)),
                &[&data.world, &Vector::from(queries[0].clone()), &(K as i64)],
            ))
            .expect("explain")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let uses_index = plan.iter().any(|l| l.contains("hnsw"));
        eprintln!(
            "retrieval/{n}: p50/p99 in process {:?}/{:?}, pgvector exact {:?}/{:?} ({:.0}× p50), \
             pgvector HNSW {:?}/{:?} (recall@10 {recall:.3}, index used: {uses_index})",
            hot.0,
            hot.1,
            exact.0,
            exact.1,
            exact.0.as_secs_f64() / hot.0.as_secs_f64(),
            hnsw.0,
            hnsw.1,
        );
    }
    group.finish();
}

/// A top-10 scan of 1k × 384 vectors: a naive dot product (one running sum,
/// which rustc may not reorder, so it does not vectorise) against the
/// lane-accumulator [`dot`] that `HotMemories` uses.
fn dot_scan(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(3);
    let n = 1_000;
    let matrix: Vec<f32> = (0..n).flat_map(|_| random_unit(&mut rng)).collect();
    let q = random_unit(&mut rng);
    let top = |score: &dyn Fn(&[f32]) -> f32| {
        let mut s: Vec<(f32, usize)> = matrix
            .chunks_exact(DIM)
            .enumerate()
            .map(|(i, row)| (score(row), i))
            .collect();
        s.select_nth_unstable_by(K - 1, |a, b| b.0.total_cmp(&a.0));
        s.truncate(K);
        s
    };
    let mut group = c.benchmark_group("scan_1k_x_384");
    group.bench_function("naive", |b| {
        b.iter(|| {
            black_box(top(&|row| {
                let mut sum = 0.0f32;
                for (x, y) in row.iter().zip(&q) {
                    sum += x * y;
                }
                sum
            }))
        });
    });
    group.bench_function("lanes", |b| b.iter(|| black_box(top(&|row| dot(row, &q)))));
    group.finish();
}

/// Memories/s into PostgreSQL: binary COPY (`memories::copy_in`) against an
/// INSERT … SELECT FROM unnest(typed arrays) of the same rows (observations
/// with a 384-d vector, over 100 agents), 10k rows per statement, each batch
/// into an emptied table.
fn ingest(c: &mut Criterion) {
    const BATCH: usize = 10_000;
    let rt = runtime();
    let mut rng = StdRng::seed_from_u64(5);
    let topics: Vec<Vec<f32>> = (0..TOPICS).map(|_| random_unit(&mut rng)).collect();
    let (db, client, batch) = rt.block_on(async {
        let db = TestDb::migrated().await;
        let client = db.client().await;
        let (world, agents) = world_and_agent(&client, 100).await;
        let batch: Vec<MemoryRow> = (0..BATCH)
            .map(|i| MemoryRow {
                kind: "observation".into(),
                depth: 0,
                ..rows(&mut rng, &topics, world, agents[i % agents.len()], 1)
                    .pop()
                    .map(|r| MemoryRow {
                        id: (i / agents.len()) as i64 + 1,
                        ..r
                    })
                    .expect("a row")
            })
            .collect();
        (db, client, batch)
    });
    let unnest = |client: &Client, rows: &[MemoryRow]| {
        let world: Vec<i64> = rows.iter().map(|r| r.world_id).collect();
        let agent: Vec<i64> = rows.iter().map(|r| r.agent_id).collect();
        let id: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let kind: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
        let content: Vec<&str> = rows.iter().map(|r| r.content.as_str()).collect();
        let importance: Vec<i16> = rows.iter().map(|r| r.importance).collect();
        let valence: Vec<f32> = rows.iter().map(|r| r.emotional_valence).collect();
        let intensity: Vec<f32> = rows.iter().map(|r| r.emotional_intensity).collect();
        let created: Vec<_> = rows.iter().map(|r| r.created_game_time).collect();
        let accessed: Vec<_> = rows.iter().map(|r| r.last_accessed_game_time).collect();
        let embedding: Vec<Vector> = rows
            .iter()
            .map(|r| Vector::from(r.embedding.clone().unwrap_or_default()))
            .collect();
        rt.block_on(client.execute(
            "INSERT INTO agent_memories (world_id, agent_id, id, kind, content, importance, \
               emotional_valence, emotional_intensity, created_game_time, last_accessed_game_time, \
               embedding, embedding_dim) \
             SELECT w, a, i, k, c, imp, v, n, cr, ac, e, 384 FROM unnest($1::bigint[], $2::bigint[], \
               $3::bigint[], $4::text[], $5::text[], $6::smallint[], $7::real[], $8::real[], \
               $9::timestamp[], $10::timestamp[], $11::vector[]) AS t(w, a, i, k, c, imp, v, n, cr, ac, e)",
            &[
                &world, &agent, &id, &kind, &content, &importance, &valence, &intensity, &created,
                &accessed, &embedding,
            ],
        ))
        .expect("unnest insert")
    };
    let empty = |client: &Client| {
        rt.block_on(client.batch_execute("TRUNCATE agent_memories"))
            .expect("truncate");
    };

    let mut group = c.benchmark_group("ingest_10k_memories");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("copy", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                empty(&client);
                let t = Instant::now();
                rt.block_on(memories::copy_in(&client, &batch))
                    .expect("copy");
                total += t.elapsed();
            }
            total
        });
    });
    group.bench_function("unnest_insert", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                empty(&client);
                let t = Instant::now();
                unnest(&client, &batch);
                total += t.elapsed();
            }
            total
        });
    });
    group.finish();
    drop(client);
    drop(db);
}

criterion_group!(benches, dot_scan, ingest, retrieval);
criterion_main!(benches);
