//! The schema rejects bad values with the constraint named in the error, and
//! keeps every world's rows to itself.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use hearth_db::{DbError, worlds};
use hearth_tests::TestDb;
use pgvector::Vector;
use tokio_postgres::Client;

struct Fixture {
    world: i64,
    alice: i64,
    bob: i64,
}

async fn fixture(client: &Client, slug: &str) -> Fixture {
    let world = worlds::ensure(client, slug, "Test", "all-MiniLM-L6-v2", 384)
        .await
        .unwrap()
        .id;
    let mut ids = Vec::new();
    for name in ["alice", "bob"] {
        let row = client
            .query_one(
                "INSERT INTO agents (world_id, slug, name, definition) VALUES ($1, $2, $2, '{}') RETURNING id",
                &[&world, &name],
            )
            .await
            .unwrap();
        ids.push(row.get::<_, i64>(0));
    }
    Fixture {
        world,
        alice: ids[0],
        bob: ids[1],
    }
}

const INSERT_MEMORY: &str = "INSERT INTO agent_memories \
    (agent_id, id, world_id, kind, content, importance, created_game_time, last_accessed_game_time, embedding, embedding_dim) \
    VALUES ($1, $2, $3, 'observation', 'saw the forge', $4, '2026-01-01 08:00', '2026-01-01 08:00', $5, $6)";

fn vector(dim: usize, seed: f32) -> Vector {
    Vector::from(
        (0..dim)
            .map(|i| ((i as f32 + seed) * 0.37).sin())
            .collect::<Vec<f32>>(),
    )
}

#[tokio::test]
async fn importance_out_of_range_names_its_constraint() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let f = fixture(&client, "w").await;
    let v = vector(384, 1.0);
    client
        .execute(
            INSERT_MEMORY,
            &[&f.alice, &1i64, &f.world, &10i16, &v, &384i32],
        )
        .await
        .unwrap();
    for bad in [11i16, 0] {
        let err: DbError = client
            .execute(
                INSERT_MEMORY,
                &[&f.alice, &2i64, &f.world, &bad, &v, &384i32],
            )
            .await
            .unwrap_err()
            .into();
        assert_eq!(
            err.constraint(),
            Some("agent_memories_importance_check"),
            "{err}"
        );
        assert!(err.to_string().contains("agent_memories"), "{err}");
    }
}

#[tokio::test]
async fn affection_and_trust_out_of_range_are_rejected() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let f = fixture(&client, "w").await;
    let insert = "INSERT INTO agent_relationships (world_id, agent_id, target_agent_id, affection, trust) \
                  VALUES ($1, $2, $3, $4, $5)";
    client
        .execute(insert, &[&f.world, &f.alice, &f.bob, &100f32, &0f32])
        .await
        .unwrap();
    let err: DbError = client
        .execute(insert, &[&f.world, &f.bob, &f.alice, &101f32, &50f32])
        .await
        .unwrap_err()
        .into();
    assert_eq!(
        err.constraint(),
        Some("agent_relationships_affection_check"),
        "{err}"
    );
    let err: DbError = client
        .execute(insert, &[&f.world, &f.bob, &f.alice, &0f32, &-1f32])
        .await
        .unwrap_err()
        .into();
    assert_eq!(
        err.constraint(),
        Some("agent_relationships_trust_check"),
        "{err}"
    );
    let err: DbError = client
        .execute(insert, &[&f.world, &f.bob, &f.bob, &0f32, &50f32])
        .await
        .unwrap_err()
        .into();
    assert_eq!(
        err.constraint(),
        Some("agent_relationships_not_self"),
        "{err}"
    );
}

#[tokio::test]
async fn a_vector_of_the_wrong_dimension_is_refused() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let f = fixture(&client, "w").await;
    // claims the world's dimension but is not
    let err: DbError = client
        .execute(
            INSERT_MEMORY,
            &[&f.alice, &1i64, &f.world, &5i16, &vector(3, 0.0), &384i32],
        )
        .await
        .unwrap_err()
        .into();
    assert!(matches!(err, DbError::EmbeddingDimension { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("embedding dimension does not match"),
        "{err}"
    );
    // honest about its dimension, but not the world's
    let err: DbError = client
        .execute(
            INSERT_MEMORY,
            &[&f.alice, &1i64, &f.world, &5i16, &vector(3, 0.0), &3i32],
        )
        .await
        .unwrap_err()
        .into();
    assert!(matches!(err, DbError::EmbeddingDimension { .. }), "{err:?}");
    assert!(err.to_string().contains("world_id, embedding_dim"), "{err}");
    // a memory not yet embedded is fine
    client
        .execute(
            INSERT_MEMORY,
            &[
                &f.alice,
                &1i64,
                &f.world,
                &5i16,
                &None::<Vector>,
                &None::<i32>,
            ],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn rows_cannot_reference_another_worlds_agents() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let a = fixture(&client, "first").await;
    let b = fixture(&client, "second").await;
    let err: DbError = client
        .execute(
            "INSERT INTO agent_relationships (world_id, agent_id, target_agent_id) VALUES ($1, $2, $3)",
            &[&a.world, &a.alice, &b.bob],
        )
        .await
        .unwrap_err()
        .into();
    assert!(
        err.constraint().is_some_and(|c| c.ends_with("_fkey")),
        "{err}"
    );
}

#[tokio::test]
async fn deleting_a_world_cascades_to_what_it_owns() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let f = fixture(&client, "w").await;
    let v = vector(384, 2.0);
    client
        .execute(
            INSERT_MEMORY,
            &[&f.alice, &1i64, &f.world, &3i16, &v, &384i32],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO agent_relationships (world_id, agent_id, target_agent_id) VALUES ($1, $2, $3)",
            &[&f.world, &f.alice, &f.bob],
        )
        .await
        .unwrap();
    client
        .execute("DELETE FROM worlds WHERE id = $1", &[&f.world])
        .await
        .unwrap();
    for table in ["agents", "agent_memories", "agent_relationships"] {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table} kept rows of a deleted world");
    }
}

#[tokio::test]
async fn a_world_refuses_another_embedding_model() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    worlds::ensure(&client, "w", "W", "all-MiniLM-L6-v2", 384)
        .await
        .unwrap();
    let again = worlds::ensure(&client, "w", "W", "all-MiniLM-L6-v2", 384)
        .await
        .unwrap();
    assert_eq!(again.embedding_dim, 384);
    let err = worlds::ensure(&client, "w", "W", "text-embedding-3-small", 1536)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DbError::EmbeddingModelMismatch {
                stored_dim: 384,
                configured_dim: 1536,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("re-embed"), "{err}");
    assert!(worlds::ensure(&client, "x", "X", "m", 0).await.is_err());
}
