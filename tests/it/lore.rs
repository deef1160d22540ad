//! World lore in PostgreSQL: documents sync by content hash, a changed
//! document replaces its chunks (keeping the embeddings of unchanged text),
//! removed files disappear, and hybrid search finds chunks by a rare word, by
//! vector similarity, and fuses both by reciprocal rank — through the HNSW
//! index, without losing a small world's chunks among a large one's.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use hearth_db::lore::{self, LoreChunkRow, LoreDocumentRow, LoreHit, RRF_K, SyncOutcome};
use hearth_db::worlds;
use hearth_mind::lore::LoreDocument;
use hearth_tests::TestDb;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio_postgres::Client;

const DIM: usize = 384;

const HISTORY: &str = "# Valley history\n\n\
    The valley was settled by river folk who poled their barges up from the city.\n\n\
    ## The flood\n\n\
    In the spring of '71 the river rose in a single night and took the chapel.\n\n\
    ## The forge\n\n\
    The Okafor family has kept the forge for as long as anyone remembers.\n";

/// The unit vector along axis `i`.
fn axis(i: usize) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    v[i] = 1.0;
    v
}

/// `a` tilted towards axis `b` by `t`, normalised.
fn tilt(a: usize, b: usize, t: f32) -> Vec<f32> {
    let mut v = axis(a);
    v[b] = t;
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn random_unit(rng: &mut StdRng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

async fn world(client: &Client, slug: &str) -> i64 {
    worlds::ensure(client, slug, slug, "test-model", 384)
        .await
        .unwrap()
        .id
}

/// (id, ordinal, text, has embedding) of a document's chunks, by ordinal.
async fn chunks_of(client: &Client, world_id: i64, path: &str) -> Vec<(i64, i32, String, bool)> {
    client
        .query(
            "SELECT c.id, c.ordinal, c.text, c.embedding IS NOT NULL FROM lore_chunks c \
             JOIN lore_documents d ON d.id = c.document_id \
             WHERE d.world_id = $1 AND d.path = $2 ORDER BY c.ordinal",
            &[&world_id, &path],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// Stores hand-made chunks `texts` as document `path`, embedded with `vectors`.
async fn store(
    client: &mut Client,
    world_id: i64,
    path: &str,
    texts: &[String],
    vectors: &[Vec<f32>],
) -> Vec<i64> {
    let doc = LoreDocumentRow {
        path: path.into(),
        title: path.into(),
        content_hash: vec![7; 32],
    };
    let rows: Vec<LoreChunkRow> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| LoreChunkRow {
            ordinal: i32::try_from(i).unwrap(),
            text: t.clone(),
        })
        .collect();
    lore::sync_document(client, world_id, &doc, &rows)
        .await
        .unwrap();
    let ids: Vec<i64> = chunks_of(client, world_id, path)
        .await
        .iter()
        .map(|c| c.0)
        .collect();
    let pairs: Vec<(i64, Vec<f32>)> = ids.iter().copied().zip(vectors.iter().cloned()).collect();
    lore::set_chunk_embeddings(client, world_id, &pairs)
        .await
        .unwrap();
    ids
}

async fn updated_at(client: &Client) -> String {
    client
        .query_one(
            "SELECT updated_at::text FROM lore_documents WHERE path = 'history.md'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn rrf(position: Option<i64>) -> f64 {
    position.map_or(0.0, |p| 1.0 / (RRF_K + p as f64))
}

fn assert_fused(hits: &[LoreHit]) {
    for h in hits {
        let expected = rrf(h.text_position) + rrf(h.vector_position);
        assert!((h.score - expected).abs() < 1e-12, "{h:?}");
    }
    assert!(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "hits are not in fused order: {hits:?}"
    );
}

#[tokio::test]
async fn sync_is_idempotent_and_a_changed_document_replaces_its_chunks() {
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    let w = world(&client, "w").await;

    let doc = LoreDocument::parse("history.md", HISTORY);
    let (row, chunks) = doc.rows();
    let created = lore::sync_document(&mut client, w, &row, &chunks)
        .await
        .unwrap();
    assert!(
        matches!(created, SyncOutcome::Created { chunks: 3, .. }),
        "{created:?}"
    );
    let before = chunks_of(&client, w, "history.md").await;
    let stored: Vec<&str> = before.iter().map(|c| c.2.as_str()).collect();
    let expected: Vec<String> = doc.chunks.iter().map(|c| c.stored_text()).collect();
    assert_eq!(stored, expected);
    let stamp = updated_at(&client).await;

    // unchanged: nothing is written
    let again = lore::sync_document(&mut client, w, &row, &chunks)
        .await
        .unwrap();
    assert!(matches!(again, SyncOutcome::Unchanged { .. }), "{again:?}");
    assert_eq!(chunks_of(&client, w, "history.md").await, before);
    assert_eq!(updated_at(&client).await, stamp);

    // embed everything
    let pending = lore::chunks_without_embedding(&client, w, 100)
        .await
        .unwrap();
    assert_eq!(pending.len(), 3);
    let pairs: Vec<(i64, Vec<f32>)> = pending
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id, axis(i)))
        .collect();
    assert_eq!(
        lore::set_chunk_embeddings(&client, w, &pairs)
            .await
            .unwrap(),
        3
    );
    assert!(
        lore::chunks_without_embedding(&client, w, 100)
            .await
            .unwrap()
            .is_empty()
    );

    // one section changes: chunks are replaced, the other two keep their vectors
    let edited = HISTORY.replace("took the chapel", "took the chapel and its bell");
    let doc2 = LoreDocument::parse("history.md", &edited);
    let (row2, chunks2) = doc2.rows();
    let replaced = lore::sync_document(&mut client, w, &row2, &chunks2)
        .await
        .unwrap();
    assert!(
        matches!(
            replaced,
            SyncOutcome::Replaced {
                chunks: 3,
                kept_embeddings: 2,
                ..
            }
        ),
        "{replaced:?}"
    );
    let after = chunks_of(&client, w, "history.md").await;
    let texts: Vec<&str> = after.iter().map(|c| c.2.as_str()).collect();
    let expected: Vec<String> = doc2.chunks.iter().map(|c| c.stored_text()).collect();
    assert_eq!(texts, expected);
    assert!(
        before.iter().all(|b| after.iter().all(|a| a.0 != b.0)),
        "new rows"
    );
    let pending = lore::chunks_without_embedding(&client, w, 100)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].text.contains("and its bell"), "{pending:?}");
    assert_ne!(updated_at(&client).await, stamp);

    // a bad hash is refused before touching anything
    let bad = LoreDocumentRow {
        content_hash: vec![1, 2, 3],
        ..row2.clone()
    };
    let err = lore::sync_document(&mut client, w, &bad, &chunks2)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("32"), "{err}");

    // clearing embeddings queues every chunk again
    assert_eq!(lore::clear_embeddings(&client, w).await.unwrap(), 2);
    assert_eq!(
        lore::chunks_without_embedding(&client, w, 100)
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn documents_missing_from_disk_are_removed_with_their_chunks() {
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    let w = world(&client, "w").await;
    let other = world(&client, "other").await;
    for (world_id, path) in [
        (w, "a.md"),
        (w, "b.md"),
        (w, "places/c.md"),
        (other, "b.md"),
    ] {
        let (row, chunks) = LoreDocument::parse(path, HISTORY).rows();
        lore::sync_document(&mut client, world_id, &row, &chunks)
            .await
            .unwrap();
    }
    let removed = lore::remove_missing(&client, w, &["a.md".to_owned()])
        .await
        .unwrap();
    assert_eq!(removed, ["b.md", "places/c.md"]);
    assert!(chunks_of(&client, w, "b.md").await.is_empty());
    assert_eq!(chunks_of(&client, w, "a.md").await.len(), 3);
    assert_eq!(
        chunks_of(&client, other, "b.md").await.len(),
        3,
        "other worlds are untouched"
    );
    let docs: i64 = client
        .query_one("SELECT count(*) FROM lore_documents", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(docs, 2);
}

#[tokio::test]
async fn full_text_finds_a_rare_word() {
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    let w = world(&client, "w").await;
    let text = format!(
        "{HISTORY}\n## The ferry\n\nBefore the bridge, old Thornwick poled travellers across for a loaf of bread.\n"
    );
    let (row, chunks) = LoreDocument::parse("history.md", &text).rows();
    lore::sync_document(&mut client, w, &row, &chunks)
        .await
        .unwrap();

    // a conversational query: any word may match; stop words never do
    let hits = lore::search_hybrid(&mut client, w, "Who was Thornwick, then?", None, 384, 5)
        .await
        .unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(hits[0].text.starts_with("Valley history > The ferry\n\n"));
    assert!(hits[0].text_rank.unwrap() > 0.0);
    assert_eq!(hits[0].text_position, Some(1));
    assert_eq!(hits[0].vector_distance, None);
    assert_eq!(hits[0].document_path, "history.md");
    assert_eq!(hits[0].document_title, "Valley history");
    assert_fused(&hits);

    // stemming: "floods" finds "flood"; more matching words rank higher
    let hits = lore::search_hybrid(&mut client, w, "floods of the river chapel", None, 384, 5)
        .await
        .unwrap();
    assert!(hits[0].text.contains("The flood"), "{hits:?}");
    assert!(
        hits.len() >= 2,
        "the settlers' chunk mentions the river too"
    );
    assert_fused(&hits);

    for nothing in ["", "the and of", "'\\ quotes \" and backslashes \\' | & !"] {
        let hits = lore::search_hybrid(&mut client, w, nothing, None, 384, 5)
            .await
            .unwrap();
        assert!(hits.is_empty(), "{nothing:?} found {hits:?}");
    }
}

#[tokio::test]
async fn vectors_find_the_nearest_chunk_and_fusion_orders_by_both() {
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    let w = world(&client, "w").await;
    let texts: Vec<String> = [
        "The lantern lantern lantern festival lights the lantern path.", // A: best text, far vector
        "Somewhere a lantern hangs by the forge door.", // B: weaker text, nearest vector
        "The willow leans over the deep pool by the dock.", // C: second nearest, no text
        "Rosa's stew simmers on the stove.",
        "Quentin catalogued every book twice.",
    ]
    .map(String::from)
    .to_vec();
    let vectors = vec![axis(5), axis(0), tilt(0, 1, 0.5), axis(7), axis(9)];
    let ids = store(&mut client, w, "mixed.md", &texts, &vectors).await;

    // vector alone: nearest first, by distance
    let hits = lore::search_hybrid(&mut client, w, "zzzqx", Some(&tilt(0, 2, 0.05)), 384, 3)
        .await
        .unwrap();
    let got: Vec<i64> = hits.iter().map(|h| h.chunk_id).collect();
    assert_eq!(got[..2], [ids[1], ids[2]]);
    assert!(hits[0].vector_distance.unwrap() < 0.01);
    assert!(hits.iter().all(|h| h.text_rank.is_none()));
    assert_fused(&hits);

    // both: B is second by text and first by vector, so first fused;
    // A is first by text only; C is second by vector only
    let hits = lore::search_hybrid(&mut client, w, "lantern", Some(&axis(0)), 384, 5)
        .await
        .unwrap();
    assert_fused(&hits);
    let got: Vec<i64> = hits.iter().map(|h| h.chunk_id).collect();
    assert_eq!(got[..3], [ids[1], ids[0], ids[2]], "{hits:?}");
    assert_eq!(hits[0].text_position, Some(2));
    assert_eq!(hits[0].vector_position, Some(1));
    assert_eq!(hits[1].text_position, Some(1));
    assert_eq!(hits[2].text_position, None);
    assert_eq!(hits[2].vector_position, Some(2));
    assert!((hits[0].score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-12);

    // a query vector of another dimension is refused
    let err = lore::search_hybrid(&mut client, w, "x", Some(&[1.0, 0.0]), 384, 3)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("2 dimensions"), "{err}");
}

#[tokio::test]
async fn the_vector_list_uses_hnsw_and_keeps_a_small_world_visible() {
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    let big = world(&client, "big").await;
    let small = world(&client, "small").await;
    let mut rng = StdRng::seed_from_u64(11);
    let big_texts: Vec<String> = (0..400).map(|i| format!("big world chunk {i}")).collect();
    let big_vectors: Vec<Vec<f32>> = (0..400).map(|_| random_unit(&mut rng)).collect();
    store(&mut client, big, "big.md", &big_texts, &big_vectors).await;
    let small_texts: Vec<String> = (0..5).map(|i| format!("small world chunk {i}")).collect();
    let small_vectors: Vec<Vec<f32>> = (0..5).map(|_| random_unit(&mut rng)).collect();
    let small_ids = store(&mut client, small, "small.md", &small_texts, &small_vectors).await;

    // At 405 rows the planner rightly prefers the world's btree and an exact
    // sort; take both exact paths away, as a world of many thousand chunks
    // would, so that the query must go through HNSW with the world filter.
    client
        .batch_execute(
            "DROP INDEX lore_chunks_world_idx; ANALYZE lore_chunks; SET enable_seqscan = off",
        )
        .await
        .unwrap();
    let query = small_vectors[3].clone();
    let plan: Vec<String> = client
        .query(
            &format!("EXPLAIN {}", lore::search_sql(384, true)),
            &[
                &small,
                &"nothing",
                &40i64,
                &5i64,
                &pgvector::Vector::from(query.clone()),
            ],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter().any(|l| l.contains("lore_chunks_hnsw_384")),
        "the vector list does not use the HNSW index:\n{}",
        plan.join("\n")
    );

    // the small world's 5 chunks among 405 in the index: all found, nearest first
    let hits = lore::search_hybrid(&mut client, small, "", Some(&query), 384, 5)
        .await
        .unwrap();
    let mut got: Vec<i64> = hits.iter().map(|h| h.chunk_id).collect();
    assert_eq!(got[0], small_ids[3]);
    got.sort();
    assert_eq!(got, small_ids);
    assert_fused(&hits);
}

#[tokio::test]
async fn the_demo_lore_loads_syncs_and_answers() {
    let docs =
        hearth_mind::lore::load_dir(&hearth_tests::workspace_root().join("assets/lore")).unwrap();
    assert!(docs.len() >= 3, "{} demo lore files", docs.len());
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    let w = world(&client, "valley").await;
    for doc in &docs {
        assert!(
            doc.chunks.len() >= 3,
            "{} has {} chunks",
            doc.path,
            doc.chunks.len()
        );
        let (row, chunks) = doc.rows();
        let outcome = lore::sync_document(&mut client, w, &row, &chunks)
            .await
            .unwrap();
        assert!(matches!(outcome, SyncOutcome::Created { .. }));
    }
    let hits = lore::search_hybrid(
        &mut client,
        w,
        "Does the drowned bell really ring?",
        None,
        384,
        3,
    )
    .await
    .unwrap();
    assert!(
        hits[0].text.starts_with("Old tales > The drowned bell"),
        "{hits:?}"
    );
}
