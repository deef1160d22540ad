//! Memories beside a live world, end to end: `hearth serve` stores what the
//! agents remember and loads it back on the next start (seeding only once);
//! an embedder that hangs never stalls the world or the service; and
//! `hearth memories reembed` switches a world to a model of another
//! dimension over real HTTP.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use clap::Parser;
use hearth::cli::{self, Cli};
use hearth::memories::{self, MemoriesError, QueryArgs};
use hearth_content::validate;
use hearth_db::agents::{self, AgentRow};
use hearth_db::memories::MemoryRow;
use hearth_db::{connect, game_time, worlds};
use hearth_mind::embed::{EmbedConfig, Embedder, HashedEmbedder, HttpEmbedder};
use hearth_mind::service::MemoryService;
use hearth_mind::stream::{MemoryStream, StreamConfig};
use hearth_tests::{TestDb, workspace_root};
use hearth_world::mind::RuleMind;
use hearth_world::{Sim, SimConfig, runner};
use serde_json::{Value, json};

fn pool(db: &TestDb) -> hearth_db::Pool {
    connect::pool(tokio_postgres::Config::from_str(&db.url()).unwrap(), 4).unwrap()
}

/// `hearth serve` on the demo world against `url`, ten game minutes per
/// second, stopped after `secs` seconds.
async fn serve_for(url: &str, home: &std::path::Path, secs: u64) {
    let root = workspace_root();
    let cli = Cli::try_parse_from([
        "hearth".to_owned(),
        "--database-url".into(),
        url.to_owned(),
        "--home".into(),
        home.display().to_string(),
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--world".into(),
        "memtest".into(),
        "--agents".into(),
        root.join("agents").display().to_string(),
        "--map".into(),
        root.join("assets/maps/valley.tmj").display().to_string(),
        "--lore".into(),
        root.join("assets/lore").display().to_string(),
        "--time-scale".into(),
        "30".into(),
    ])
    .unwrap();
    cli::run(
        cli,
        &mut Vec::new(),
        tokio::time::sleep(Duration::from_secs(secs)),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stores_memories_and_loads_them_back_seeding_once() {
    let db = TestDb::migrated().await;
    // a home without model files: the hashed embedder, fast in debug builds
    let home = std::env::temp_dir().join(format!("hearth-memtest-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    serve_for(&db.url(), &home, 4).await;

    let client = db.client().await;
    let count = |kind: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT count(*) FROM agent_memories WHERE kind = $1 OR $1 = 'any'",
                    &[&kind],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let seeds: usize = validate::load(
        &workspace_root().join("agents"),
        &workspace_root().join("assets/maps/valley.tmj"),
    )
    .unwrap()
    .agents
    .iter()
    .map(|a| a.file.memories.len())
    .sum();
    let first = count("any").await;
    assert!(
        first > seeds as i64,
        "the world remembered more than its seeds: {first}"
    );
    assert!(count("observation").await > 0);
    let embedded: i64 = client
        .query_one(
            "SELECT count(*) FROM agent_memories WHERE embedding_dim = 384",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(embedded > 0, "vectors were written behind the rows");
    let model: String = client
        .query_one(
            "SELECT embedding_model FROM worlds WHERE slug = 'memtest'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(model, HashedEmbedder::MODEL);
    // the lore was synced
    let chunks: i64 = client
        .query_one("SELECT count(*) FROM lore_chunks", &[])
        .await
        .unwrap()
        .get(0);
    assert!(chunks > 0);

    // a second start loads the memories back: nothing lost, no second seeding,
    // and new ids follow the old ones (the primary key would refuse a reuse)
    serve_for(&db.url(), &home, 3).await;
    let second = count("any").await;
    assert!(second >= first, "{second} < {first}");
    let seeded: i64 = client
        .query_one(
            "SELECT count(*) FROM agent_memories WHERE id <= 10 AND kind = 'observation' \
             AND location IS NULL AND cardinality(related_agent_ids) = 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        seeded <= seeds as i64,
        "seed memories were loaded twice: {seeded} > {seeds}"
    );

    // the stored memories answer a query with every term explained
    let mut out = Vec::new();
    let agent: String = client
        .query_one(
            "SELECT a.slug FROM agents a JOIN agent_memories m ON m.agent_id = a.id \
             GROUP BY a.slug ORDER BY count(*) DESC, a.slug LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    memories::query(
        &pool(&db),
        &HashedEmbedder::new(),
        &QueryArgs {
            world: "memtest".into(),
            agent: agent.clone(),
            text: "bread at the bakery".into(),
            k: 3,
            explain: true,
        },
        &mut out,
    )
    .await
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with(&format!("3 memories of {agent}")),
        "{text}"
    );
    assert_eq!(text.matches("recency ").count(), 3, "{text}");

    // and the prompt the agent would be given holds memories and lore
    let content = validate::load(
        &workspace_root().join("agents"),
        &workspace_root().join("assets/maps/valley.tmj"),
    )
    .unwrap();
    let def = content.agents.iter().find(|a| a.file.id == agent).unwrap();
    let mut out = Vec::new();
    memories::prompt(
        &pool(&db),
        &HashedEmbedder::new(),
        &QueryArgs {
            world: "memtest".into(),
            agent: agent.clone(),
            text: "Have you heard about the drowned bell?".into(),
            k: 4,
            explain: false,
        },
        def,
        &content.agents,
        2048,
        &mut out,
    )
    .await
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(&format!("You are {}", def.file.name)),
        "{text}"
    );
    assert!(text.contains("## What you remember"), "{text}");
    assert!(
        text.contains("drowned bell"),
        "lore found by its words: {text}"
    );
    assert!(text.contains("Memories"), "the breakdown follows: {text}");
    std::fs::remove_dir_all(&home).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_embedder_stalls_neither_the_world_nor_recall() {
    // a real HTTP endpoint that accepts connections and never answers
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let embedder: Arc<dyn Embedder> = Arc::new(
        HttpEmbedder::from_config(&EmbedConfig {
            base_url: Some(format!("http://{addr}")),
            model: Some("never".into()),
            dimensions: Some(384),
            timeout: Duration::from_millis(200),
            max_retries: 0,
            ..EmbedConfig::default()
        })
        .unwrap(),
    );
    let content = validate::load(
        &workspace_root().join("agents"),
        &workspace_root().join("assets/maps/valley.tmj"),
    )
    .unwrap();
    let stream = MemoryStream::new(StreamConfig::default(), &content.agents, &content.map);
    let defs = content.agents.clone();
    let sim = Sim::new(
        content,
        SimConfig {
            tick_rate: 50,
            game_minutes_per_second: 60,
            ..SimConfig::default()
        },
    );
    let start = sim.clock().seconds;
    let (service, done) =
        MemoryService::start(stream, &defs, Arc::new(RuleMind), embedder, None, start)
            .await
            .unwrap();
    let (tick_tx, mut tick_rx) = tokio::sync::mpsc::unbounded_channel();
    let feed = service.clone();
    let world = runner::spawn(sim, move |out| {
        let _ = tick_tx.send((out.tick, out.game_seconds));
        feed.tick(out.game_seconds, out.events);
    })
    .unwrap();
    // the world keeps ticking while every embedding request hangs: wait for
    // 200 ticks (4 s at 50 Hz; the deadline is only a guard against a hang)
    let mut now = start;
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some((tick, seconds)) = tick_rx.recv().await {
            now = seconds;
            if tick >= 200 {
                break;
            }
        }
    })
    .await
    .expect("the world stalled");
    let stats = service.stats().await.unwrap();
    assert!(stats.stream.observations > 0, "{stats:?}");
    assert!(stats.embed_failures > 0, "{stats:?}");
    assert_eq!(stats.embedded, 0);
    assert!(
        stats.embed_queue > 0,
        "what was not embedded waits: {stats:?}"
    );
    // recall still answers, by recency and importance, with relevance out
    let slug = defs[0].file.id.clone();
    let top = tokio::time::timeout(
        Duration::from_secs(60),
        service.retrieve(&slug, "anything", now, 5),
    )
    .await
    .expect("recall stalled")
    .unwrap();
    assert!(!top.is_empty());
    assert!(top.iter().all(|(s, _)| s.relevance == 0.0), "{top:?}");
    assert!(top.windows(2).all(|w| w[0].0.total >= w[1].0.total));
    tokio::task::spawn_blocking(move || world.stop())
        .await
        .unwrap();
    drop(service);
    let stats = tokio::time::timeout(Duration::from_secs(60), done)
        .await
        .expect("the service did not stop")
        .unwrap();
    assert!(stats.stream.observations > 0);
}

/// An OpenAI-style embeddings endpoint answering 64-dimension vectors.
async fn small_model_server() -> String {
    async fn embeddings(Json(body): Json<Value>) -> Json<Value> {
        let input = body["input"].as_array().cloned().unwrap_or_default();
        let data: Vec<Value> = input
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let text = t.as_str().unwrap_or("");
                let mut v = vec![0.1f32; 64];
                for (j, b) in text.bytes().enumerate() {
                    v[j % 64] += f32::from(b) / 255.0;
                }
                json!({"object": "embedding", "index": i, "embedding": v})
            })
            .collect();
        Json(json!({"object": "list", "data": data, "model": body["model"]}))
    }
    let app = Router::new().route("/v1/embeddings", post(embeddings));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn reembed_switches_a_world_to_a_model_of_another_dimension() {
    let db = TestDb::migrated().await;
    let pool = pool(&db);
    let client = db.client().await;
    let hashed = HashedEmbedder::new();
    let world = worlds::ensure(&client, "w", "W", HashedEmbedder::MODEL, 384)
        .await
        .unwrap();
    let ids = agents::upsert(
        &client,
        world.id,
        &[AgentRow {
            slug: "ada".into(),
            name: "Ada".into(),
            definition: json!({}),
            age: Some(40),
            constitution: String::new(),
            background: String::new(),
            traits: json!({}),
            likes: vec!["bread".into()],
            dislikes: vec![],
            primary_goal: Some("Bake".into()),
            secondary_goals: vec![],
            home_location: None,
        }],
    )
    .await
    .unwrap();
    let ada = ids["ada"];
    let texts = [
        "Bo was at Bakery: bake bread",
        "I talked with Cy at the square",
        "I planned to fish from the dock",
    ];
    let vectors = hashed
        .embed(&texts.iter().map(|t| t.to_string()).collect::<Vec<_>>())
        .await
        .unwrap();
    let rows: Vec<MemoryRow> = texts
        .iter()
        .zip(vectors)
        .enumerate()
        .map(|(i, (t, v))| MemoryRow {
            world_id: world.id,
            agent_id: ada,
            id: i as i64 + 1,
            kind: "observation".into(),
            content: (*t).into(),
            importance: 3,
            emotional_valence: 0.0,
            emotional_intensity: 0.0,
            tags: vec![],
            related_agent_ids: vec![],
            related_character_ids: vec![],
            location: None,
            created_game_time: game_time::to_timestamp(3600 * (i as u64 + 1)),
            last_accessed_game_time: game_time::to_timestamp(3600 * (i as u64 + 1)),
            depth: 0,
            evidence_ids: vec![],
            embedding: Some(v),
        })
        .collect();
    hearth_db::memories::copy_in(&client, &rows).await.unwrap();

    let small = HttpEmbedder::from_config(&EmbedConfig {
        base_url: Some(small_model_server().await),
        model: Some("tiny-64".into()),
        ..EmbedConfig::default()
    })
    .unwrap();
    // querying with another model is refused, naming the way out
    let err = memories::query(
        &pool,
        &small,
        &QueryArgs {
            world: "w".into(),
            agent: "ada".into(),
            text: "bread".into(),
            k: 3,
            explain: false,
        },
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MemoriesError::ModelMismatch { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("hearth memories reembed --world w")
    );

    let (done, _) = memories::reembed(&pool, &small, "w", 2).await.unwrap();
    assert_eq!(done, 3);
    let w = worlds::get(&client, "w").await.unwrap().unwrap();
    assert_eq!(
        (w.embedding_model.as_str(), w.embedding_dim),
        ("tiny-64", 64)
    );
    let dims: Vec<Option<i32>> = client
        .query("SELECT embedding_dim FROM agent_memories ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(dims, vec![Some(64); 3]);
    // and the world answers queries with the new model
    let mut out = Vec::new();
    memories::query(
        &pool,
        &small,
        &QueryArgs {
            world: "w".into(),
            agent: "ada".into(),
            text: "fish from the dock".into(),
            k: 3,
            explain: true,
        },
        &mut out,
    )
    .await
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("3 memories of ada"), "{text}");
    assert!(
        !text.contains("cosine none"),
        "every memory has a vector: {text}"
    );

    // the old model is now the stranger
    let err = memories::query(
        &pool,
        &hashed,
        &QueryArgs {
            world: "w".into(),
            agent: "ada".into(),
            text: "bread".into(),
            k: 3,
            explain: false,
        },
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MemoriesError::ModelMismatch { .. }));
}
