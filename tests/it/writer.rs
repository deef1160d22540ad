//! The write-behind commit against a real PostgreSQL: a batch lands whole
//! (states upserted, appended rows added, the checkpoint recorded) or not at
//! all, and a later batch updates the same entities in place.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use hearth_db::agents::{self, AgentRow};
use hearth_db::memories::MemoryRow;
use hearth_db::writer::{
    self, AgentStateRow, Batch, Checkpoint, ConversationRow, MessageRow, RelationshipRow,
};
use hearth_db::{DbError, game_time, worlds};
use hearth_tests::TestDb;
use serde_json::json;

fn agent(slug: &str) -> AgentRow {
    AgentRow {
        slug: slug.into(),
        name: slug.into(),
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

fn state(world_id: i64, agent_id: i64, x: f32, tick: i64) -> AgentStateRow {
    AgentStateRow {
        agent_id,
        world_id,
        x,
        y: 2.0,
        facing: "e".into(),
        action: "bake bread".into(),
        action_started_at: Some(game_time::to_timestamp(60)),
        action_target: Some("oven".into()),
        target: Some((4.0, 5.0)),
        location_name: Some("Bakery".into()),
        energy: 0.8,
        mood: 0.2,
        emotional_state: json!({"joy": 0.4}),
        physical_state: json!({}),
        cognitive_load: 0.1,
        updated_tick: tick,
        sim: Some(vec![1, 2, 3]),
    }
}

fn memory(world_id: i64, agent_id: i64, id: i64) -> MemoryRow {
    MemoryRow {
        world_id,
        agent_id,
        id,
        kind: "observation".into(),
        content: format!("memory {id}"),
        importance: 3,
        emotional_valence: 0.0,
        emotional_intensity: 0.0,
        tags: vec![],
        related_agent_ids: vec![],
        related_character_ids: vec![],
        location: None,
        created_game_time: game_time::to_timestamp(60),
        last_accessed_game_time: game_time::to_timestamp(60),
        depth: 0,
        evidence_ids: vec![],
        embedding: None,
    }
}

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_batch_lands_whole_and_later_batches_update_in_place() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let w = worlds::ensure(&client, "w", "W", "m", 384).await.unwrap();
    let ids = agents::upsert(&client, w.id, &[agent("ada"), agent("bo")])
        .await
        .unwrap();
    let (ada, bo) = (ids["ada"], ids["bo"]);

    let mut batch = Batch::default();
    batch.agent_states.insert(ada, state(w.id, ada, 1.0, 10));
    batch.agent_states.insert(bo, state(w.id, bo, 3.0, 10));
    batch.relationships.insert(
        (ada, bo),
        RelationshipRow {
            world_id: w.id,
            agent_id: ada,
            target_agent_id: bo,
            kind: "friend".into(),
            affection: 40.0,
            trust: 60.0,
            interaction_count: 1,
            last_interaction: Some(game_time::to_timestamp(60)),
            summary: "kind to me".into(),
            updated_tick: 10,
        },
    );
    batch.conversations.insert(
        1,
        ConversationRow {
            world_id: w.id,
            id: 1,
            kind: "direct".into(),
            location: Some("Bakery".into()),
            topic: None,
            started: game_time::to_timestamp(60),
            ended: None,
        },
    );
    batch.messages.push(MessageRow {
        world_id: w.id,
        conversation_id: 1,
        seq: 0,
        speaker_agent_id: Some(ada),
        speaker_character_id: None,
        text: "Morning!".into(),
        emotional_tone: None,
        game_time: game_time::to_timestamp(60),
    });
    batch.memories.push(memory(w.id, ada, 1));
    batch.checkpoint = Some(Checkpoint {
        world_id: w.id,
        tick: 10,
        game_time: game_time::to_timestamp(60),
        state: Some(vec![9]),
    });
    let done = writer::commit(&client, &batch).await.unwrap();
    assert_eq!(done.tick, Some(10));
    assert_eq!(done.rows, 2 + 1 + 1 + 1 + 1);

    // the next flush moves ada, ends the conversation, appends more
    let mut next = Batch::default();
    next.agent_states.insert(ada, state(w.id, ada, 7.5, 20));
    let mut ended = batch.conversations[&1].clone();
    ended.ended = Some(game_time::to_timestamp(120));
    next.conversations.insert(1, ended);
    next.memories.push(memory(w.id, ada, 2));
    next.checkpoint = Some(Checkpoint {
        world_id: w.id,
        tick: 20,
        game_time: game_time::to_timestamp(120),
        state: None,
    });
    writer::commit(&client, &next).await.unwrap();

    let row = client
        .query_one(
            "SELECT x, updated_tick, sim, target_x FROM agent_states WHERE agent_id = $1",
            &[&ada],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, f32>(0), 7.5);
    assert_eq!(row.get::<_, i64>(1), 20);
    assert_eq!(row.get::<_, Option<Vec<u8>>>(2), Some(vec![1, 2, 3]));
    assert_eq!(row.get::<_, Option<f32>>(3), Some(4.0));
    assert_eq!(count(&client, "agent_states").await, 2);
    assert_eq!(count(&client, "agent_memories").await, 2);
    assert_eq!(count(&client, "messages").await, 1);
    let ended: Option<chrono::NaiveDateTime> = client
        .query_one("SELECT ended_game_time FROM conversations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ended, Some(game_time::to_timestamp(120)));
    let last = writer::last_checkpoint(&client, w.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((last.tick, last.state), (20, None));
}

#[tokio::test]
async fn a_rejected_batch_leaves_nothing_behind() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let w = worlds::ensure(&client, "w", "W", "m", 384).await.unwrap();
    let ids = agents::upsert(&client, w.id, &[agent("ada")])
        .await
        .unwrap();
    let ada = ids["ada"];
    let mut batch = Batch::default();
    batch.memories.push(memory(w.id, ada, 1));
    let mut bad = state(w.id, ada, 1.0, 10);
    bad.energy = 2.0;
    batch.agent_states.insert(ada, bad);
    batch.checkpoint = Some(Checkpoint {
        world_id: w.id,
        tick: 10,
        game_time: game_time::to_timestamp(60),
        state: None,
    });
    let err = writer::commit(&client, &batch).await.unwrap_err();
    assert!(
        matches!(&err, DbError::Constraint { constraint, .. } if constraint.contains("energy")),
        "{err}"
    );
    // all or nothing: not the memory, not the checkpoint
    assert_eq!(count(&client, "agent_memories").await, 0);
    assert_eq!(count(&client, "world_checkpoints").await, 0);
    // and the connection is usable for the retry
    batch.agent_states.get_mut(&ada).unwrap().energy = 0.5;
    writer::commit(&client, &batch).await.unwrap();
    assert_eq!(count(&client, "agent_memories").await, 1);
    assert_eq!(count(&client, "world_checkpoints").await, 1);
}

fn checkpoint(world_id: i64, tick: i64) -> Checkpoint {
    Checkpoint {
        world_id,
        tick,
        game_time: game_time::to_timestamp(tick as u64 * 6),
        state: Some(vec![1, tick as u8]),
    }
}

#[tokio::test]
async fn the_writer_task_coalesces_states_keeps_every_append_and_commits_on_close() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let w = worlds::ensure(&client, "w", "W", "m", 384).await.unwrap();
    let ids = agents::upsert(&client, w.id, &[agent("ada"), agent("bo")])
        .await
        .unwrap();
    let (ada, bo) = (ids["ada"], ids["bo"]);
    let pool = hearth_db::connect::pool(db.config.clone(), 2).unwrap();
    let (writer, task) = writer::spawn(pool, None, writer::WriterOptions::default());
    // a hundred ticks' batches as fast as they come: states for the same two
    // agents over and over, a memory per batch
    for tick in 1..=100i64 {
        let mut batch = Batch::default();
        batch
            .agent_states
            .insert(ada, state(w.id, ada, tick as f32, tick));
        batch
            .agent_states
            .insert(bo, state(w.id, bo, -(tick as f32), tick));
        batch.memories.push(memory(w.id, ada, tick));
        batch.embeddings.push((ada, tick, vec![0.5; 384]));
        batch.checkpoint = Some(checkpoint(w.id, tick));
        writer.send(batch).await.unwrap();
    }
    let status = writer.status();
    assert!(!status.backlogged);
    drop(writer);
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.last_tick, Some(100));
    assert_eq!(report.memories, 100);
    // fewer commits than batches when it fell behind; never more
    assert!(report.commits <= 100, "{report:?}");
    assert_eq!(count(&client, "agent_memories").await, 100);
    let embedded: i64 = client
        .query_one(
            "SELECT count(*) FROM agent_memories WHERE embedding IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(embedded, 100, "every embedding after its memory");
    let x: f32 = client
        .query_one("SELECT x FROM agent_states WHERE agent_id = $1", &[&ada])
        .await
        .unwrap()
        .get(0);
    assert_eq!(x, 100.0, "the latest state won");
    let newest: Option<Vec<u8>> = client
        .query_one(
            "SELECT state FROM world_checkpoints ORDER BY tick DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(newest, Some(vec![1, 100]));
}

#[tokio::test]
async fn a_writer_that_lost_its_world_writes_nothing_more() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let w = worlds::ensure(&client, "w", "W", "m", 384).await.unwrap();
    let ids = agents::upsert(&client, w.id, &[agent("ada")])
        .await
        .unwrap();
    let ada = ids["ada"];
    let lease = hearth_db::lease::Lease::acquire(&db.config, w.id, "w", "test owner")
        .await
        .unwrap();
    // the lock is held: another owner is refused, and told who has it
    let err = hearth_db::lease::Lease::acquire(&db.config, w.id, "w", "second")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("already being served by test owner"),
        "{err}"
    );

    let pool = hearth_db::connect::pool(db.config.clone(), 2).unwrap();
    let (writer, task) = writer::spawn(pool, Some(lease), writer::WriterOptions::default());
    let mut first = Batch::default();
    first.agent_states.insert(ada, state(w.id, ada, 1.0, 1));
    first.checkpoint = Some(checkpoint(w.id, 1));
    writer.send(first).await.unwrap();
    // wait for it to land
    for _ in 0..200 {
        if writer.status().last_tick == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(writer.status().last_tick, 1);
    // another process took the world over (its token replaced ours)
    client
        .execute(
            "UPDATE world_leases SET token = token + 1, owner = 'usurper'",
            &[],
        )
        .await
        .unwrap();
    let mut second = Batch::default();
    second.agent_states.insert(ada, state(w.id, ada, 2.0, 2));
    second.memories.push(memory(w.id, ada, 1));
    second.checkpoint = Some(checkpoint(w.id, 2));
    writer.send(second).await.unwrap();
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, writer::WriterError::LeaseLost(_)), "{err}");
    assert_eq!(count(&client, "agent_memories").await, 0);
    let tick: i64 = client
        .query_one("SELECT max(tick) FROM world_checkpoints", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tick, 1);
    // the writer has stopped: sending fails and hands the batch back
    assert!(writer.send(Batch::default()).await.is_err());
}
