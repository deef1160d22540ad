//! pgvector: the HNSW index answers nearest-neighbour queries over
//! reflections, and worlds of other dimensions get indexes of their own.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use hearth_db::worlds;
use hearth_tests::TestDb;
use pgvector::Vector;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn random_unit(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

#[tokio::test]
async fn hnsw_returns_the_nearest_reflection() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let world = worlds::ensure(&client, "w", "W", "all-MiniLM-L6-v2", 384)
        .await
        .unwrap();
    let agent: i64 = client
        .query_one(
            "INSERT INTO agents (world_id, slug, name, definition) VALUES ($1, 'mei', 'Mei', '{}') RETURNING id",
            &[&world.id],
        )
        .await
        .unwrap()
        .get(0);

    let mut rng = StdRng::seed_from_u64(7);
    let vectors: Vec<Vec<f32>> = (0..500).map(|_| random_unit(&mut rng, 384)).collect();
    let ids: Vec<i64> = (1..=vectors.len() as i64).collect();
    let embeddings: Vec<Vector> = vectors.iter().cloned().map(Vector::from).collect();
    // half reflections (indexed), half observations (not)
    let kinds: Vec<&str> = ids
        .iter()
        .map(|i| {
            if i % 2 == 0 {
                "reflection"
            } else {
                "observation"
            }
        })
        .collect();
    client
        .execute(
            "INSERT INTO agent_memories (agent_id, id, world_id, kind, content, importance, depth, \
               created_game_time, last_accessed_game_time, embedding, embedding_dim) \
             SELECT $1, id, $2, kind, 'memory ' || id, 5, CASE WHEN kind = 'reflection' THEN 1 ELSE 0 END, \
               '2026-01-01', '2026-01-01', e, 384 \
             FROM unnest($3::bigint[], $4::text[], $5::vector[]) AS t(id, kind, e)",
            &[&agent, &world.id, &ids, &kinds, &embeddings],
        )
        .await
        .unwrap();

    // a query close to reflection 42
    let target = 42usize;
    let query: Vec<f32> = vectors[target - 1]
        .iter()
        .map(|x| x + rng.random_range(-0.01f32..0.01))
        .collect();
    let query = Vector::from(query);
    let sql = "SELECT id FROM agent_memories WHERE kind = 'reflection' AND embedding_dim = 384 \
               ORDER BY embedding::vector(384) <=> $1::vector(384) LIMIT 3";

    client
        .batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query(
            &format!(
                "EXPLAIN {}",
                sql.replace("$1", &format!("'{}'", text(&query)))
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter()
            .any(|l| l.contains("agent_memories_reflection_hnsw_384")),
        "the query does not use the HNSW index:\n{}",
        plan.join("\n")
    );
    let nearest: Vec<i64> = client
        .query(sql, &[&query])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(nearest[0], target as i64, "nearest reflection");
    assert!(
        nearest.iter().all(|id| id % 2 == 0),
        "only reflections are in the index"
    );
}

fn text(v: &Vector) -> String {
    let parts: Vec<String> = v.as_slice().iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(","))
}

#[tokio::test]
async fn a_world_of_another_dimension_gets_its_own_indexes() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    worlds::ensure(&client, "big", "Big", "text-embedding-3-small", 1536)
        .await
        .unwrap();
    worlds::ensure(&client, "huge", "Huge", "text-embedding-3-large", 3072)
        .await
        .unwrap();
    let names: Vec<String> = client
        .query(
            "SELECT indexname FROM pg_indexes WHERE indexname LIKE '%hnsw%' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for expected in [
        "agent_memories_reflection_hnsw_1536",
        "agent_memories_reflection_hnsw_3072",
        "lore_chunks_hnsw_1536",
        "lore_chunks_hnsw_3072",
    ] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected} missing from {names:?}"
        );
    }
    let def: String = client
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'lore_chunks_hnsw_3072'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(def.contains("halfvec(3072)"), "{def}");
}
