//! `hearth export` and `hearth import` against a real PostgreSQL: a world
//! with a row in every table goes out and back in (under another name, or
//! into another database) and comes out again byte for byte; every bad
//! document is refused with its own message and leaves the database as it
//! was; the real binary exits 0 on success and 1 on a refused import.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::PathBuf;
use std::process::Command;

use hearth::export::{self, ExportError};
use hearth_db::agents::{self, AgentRow};
use hearth_db::export::{LOCKED_PASSWORD_HASH, Section, TransferError};
use hearth_db::lore::{self, LoreChunkRow, LoreDocumentRow};
use hearth_db::memories::MemoryRow;
use hearth_db::writer::{
    self, AgentStateRow, Batch, Checkpoint, ConversationRow, MessageRow, RelationshipRow,
};
use hearth_db::{game_time, worlds};
use hearth_tests::TestDb;
use indicatif::ProgressBar;
use serde_json::json;
use tokio_postgres::Client;

/// Small vectors keep the document readable in a failure message.
const DIM: i32 = 4;

/// The agent state's `sim` bytes, and how the document spells them.
const SIM: [u8; 5] = [0, 1, 2, 254, 255];
const SIM_BASE64: &str = "AAEC/v8=";

/// Every table that holds a world's rows, with `world_id`.
const WORLD_TABLES: &[&str] = &[
    "world_checkpoints",
    "world_members",
    "characters",
    "agents",
    "agent_states",
    "agent_memories",
    "agent_relationships",
    "agent_character_relationships",
    "conversations",
    "conversation_participants",
    "messages",
    "agent_schedules",
    "agent_plans",
    "groups",
    "group_members",
    "knowledge",
    "lore_documents",
    "lore_chunks",
    "llm_calls",
    "sim_metrics",
    "event_log",
];

fn agent(slug: &str, name: &str) -> AgentRow {
    AgentRow {
        slug: slug.into(),
        name: name.into(),
        definition: json!({"id": slug, "name": name, "traits": {"warmth": 0.7}}),
        age: Some(34),
        constitution: format!("{name} is kind."),
        background: "Grew up by the river.".into(),
        traits: json!({"warmth": 0.7, "wit": 0.25}),
        likes: vec!["bread".into(), "rain".into()],
        dislikes: vec!["noise".into()],
        primary_goal: Some("open a bakery".into()),
        secondary_goals: vec!["learn the lute".into()],
        home_location: Some("Mill House".into()),
    }
}

fn state(world_id: i64, agent_id: i64, x: f32, sim: Option<Vec<u8>>) -> AgentStateRow {
    AgentStateRow {
        agent_id,
        world_id,
        x,
        y: -2.5,
        facing: "ne".into(),
        action: "knead dough".into(),
        action_started_at: Some(game_time::to_timestamp(3_600)),
        action_target: Some("oven".into()),
        target: Some((4.0, 5.5)),
        location_name: Some("Bakery".into()),
        energy: 0.8,
        mood: -0.125,
        emotional_state: json!({"joy": 0.4}),
        physical_state: json!({"hunger": 0.1}),
        cognitive_load: 0.3,
        updated_tick: 20,
        sim,
    }
}

#[expect(clippy::too_many_arguments, reason = "a test fixture's columns")]
fn memory(
    world_id: i64,
    agent_id: i64,
    id: i64,
    kind: &str,
    related_agents: Vec<i64>,
    related_characters: Vec<i64>,
    evidence: Vec<i64>,
    embedding: Option<Vec<f32>>,
) -> MemoryRow {
    MemoryRow {
        world_id,
        agent_id,
        id,
        kind: kind.into(),
        content: format!("{kind} {id} of {agent_id}: the \"bread\" was warm\n"),
        importance: 7,
        emotional_valence: 0.5,
        emotional_intensity: 0.25,
        tags: vec!["bread".into(), "morning".into()],
        related_agent_ids: related_agents,
        related_character_ids: related_characters,
        location: Some("Bakery".into()),
        created_game_time: game_time::to_timestamp(3_600 + id as u64 * 60),
        last_accessed_game_time: game_time::to_timestamp(7_200 + id as u64 * 60),
        depth: if kind == "reflection" { 1 } else { 0 },
        evidence_ids: evidence,
        embedding,
    }
}

/// World `w` with rows in every table, and a world `other` whose rows must
/// never show up in `w`'s export.
async fn populate(client: &mut Client) -> i64 {
    let w = worlds::ensure(client, "w", "Westhollow", "test-model", DIM)
        .await
        .unwrap();
    let other = worlds::ensure(client, "other", "Other", "test-model", DIM)
        .await
        .unwrap();
    client
        .execute(
            "UPDATE worlds SET settings = '{\"weather\": \"rain\", \"seed\": 7}' WHERE id = $1",
            &[&w.id],
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO users (username, email, password_hash) VALUES \
                ('alice', 'alice@example.com', '$argon2id$v=19$secret-a'), \
                ('bob', NULL, '$argon2id$v=19$secret-b'), \
                ('carol', NULL, '$argon2id$v=19$secret-c')",
        )
        .await
        .unwrap();
    let w_id = w.id;
    client
        .execute(
            "INSERT INTO world_members (world_id, user_id, role) \
             SELECT $1, id, CASE username WHEN 'alice' THEN 'admin' ELSE 'player' END \
             FROM users WHERE username IN ('alice', 'bob')",
            &[&w_id],
        )
        .await
        .unwrap();
    let characters = client
        .query(
            "INSERT INTO characters (world_id, user_id, name, x, y, location_name) \
             SELECT $1, id, CASE username WHEN 'alice' THEN 'Rook' ELSE 'Wren' END, 3.5, -2.25, 'Square' \
             FROM users WHERE username IN ('alice', 'bob') RETURNING name, id",
            &[&w_id],
        )
        .await
        .unwrap();
    let character = |name: &str| -> i64 {
        characters
            .iter()
            .find(|r| r.get::<_, String>(0) == name)
            .unwrap()
            .get(1)
    };
    let (rook, wren) = (character("Rook"), character("Wren"));
    // carol plays only in the other world
    client
        .execute(
            "INSERT INTO characters (world_id, user_id, name) \
             SELECT $1, id, 'Stranger' FROM users WHERE username = 'carol'",
            &[&other.id],
        )
        .await
        .unwrap();

    let ids = agents::upsert(
        client,
        w_id,
        &[agent("ada", "Ada"), agent("bo", "Bo"), agent("cy", "Cy")],
    )
    .await
    .unwrap();
    let (ada, bo, cy) = (ids["ada"], ids["bo"], ids["cy"]);
    client
        .execute(
            "UPDATE agents SET archived_at = now() WHERE id = $1",
            &[&cy],
        )
        .await
        .unwrap();
    let other_ids = agents::upsert(client, other.id, &[agent("ada", "Other Ada")])
        .await
        .unwrap();

    // what a running server writes: states, relationships, conversations,
    // messages, memories and a checkpoint, twice
    let mut batch = Batch::default();
    batch
        .agent_states
        .insert(ada, state(w_id, ada, 1.25, Some(SIM.to_vec())));
    let mut bo_state = state(w_id, bo, 7.0, None);
    bo_state.target = None;
    bo_state.action_started_at = None;
    batch.agent_states.insert(bo, bo_state);
    for (from, to, kind, affection) in [(ada, bo, "friend", 42.5), (bo, ada, "rival", -10.0)] {
        batch.relationships.insert(
            (from, to),
            RelationshipRow {
                world_id: w_id,
                agent_id: from,
                target_agent_id: to,
                kind: kind.into(),
                affection,
                trust: 61.0,
                interaction_count: 3,
                last_interaction: Some(game_time::to_timestamp(5_000)),
                summary: format!("{kind}, mostly"),
                updated_tick: 20,
            },
        );
    }
    for (id, ended) in [(1, None), (2, Some(game_time::to_timestamp(9_000)))] {
        batch.conversations.insert(
            id,
            ConversationRow {
                world_id: w_id,
                id,
                kind: "direct".into(),
                location: Some("Bakery".into()),
                topic: (id == 1).then(|| "bread".into()),
                started: game_time::to_timestamp(8_000),
                ended,
            },
        );
    }
    for (seq, agent_speaker, character_speaker, text) in [
        (0, Some(ada), None, "Morning, Rook!"),
        (1, None, Some(rook), "Morning. Is the bread ready?"),
        (2, None, None, "Rook left the bakery."),
    ] {
        batch.messages.push(MessageRow {
            world_id: w_id,
            conversation_id: 1,
            seq,
            speaker_agent_id: agent_speaker,
            speaker_character_id: character_speaker,
            text: text.into(),
            emotional_tone: agent_speaker.map(|_| "cheerful".into()),
            game_time: game_time::to_timestamp(8_000 + seq as u64),
        });
    }
    batch.memories = vec![
        memory(
            w_id,
            ada,
            1,
            "observation",
            vec![bo],
            vec![rook],
            vec![],
            Some(vec![0.1, -0.2, 0.3, 0.4]),
        ),
        memory(
            w_id,
            ada,
            2,
            "reflection",
            vec![bo, ada],
            vec![],
            vec![1],
            None,
        ),
        // 999999 is no agent: a dangling reference is left out of the document
        memory(
            w_id,
            bo,
            1,
            "conversation",
            vec![ada, 999_999],
            vec![wren],
            vec![],
            Some(vec![1.0e-7, 2.5, -3.0, 0.0]),
        ),
        memory(
            other.id,
            other_ids["ada"],
            1,
            "observation",
            vec![],
            vec![],
            vec![],
            None,
        ),
    ];
    batch.checkpoint = Some(Checkpoint {
        world_id: w_id,
        tick: 10,
        game_time: game_time::to_timestamp(9_000),
        state: Some(vec![1, 1]),
    });
    writer::commit(client, &batch).await.unwrap();
    let next = Batch {
        memories: vec![memory(
            w_id,
            bo,
            2,
            "plan",
            vec![],
            vec![],
            vec![],
            Some(vec![0.5, 0.5, 0.5, 0.5]),
        )],
        checkpoint: Some(Checkpoint {
            world_id: w_id,
            tick: 20,
            game_time: game_time::to_timestamp(9_600),
            state: Some(vec![2, 2, 2]),
        }),
        ..Batch::default()
    };
    writer::commit(client, &next).await.unwrap();

    // the tables a server does not write through the writer
    client
        .execute(
            "INSERT INTO agent_character_relationships (world_id, agent_id, character_id, type, \
                 affection, trust, interaction_count, summary) \
             VALUES ($1, $2, $3, 'customer', 12.5, 70, 4, 'buys rye')",
            &[&w_id, &ada, &rook],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO conversation_participants (world_id, conversation_id, agent_id, \
                 character_id, joined_game_time, left_game_time) VALUES \
                 ($1, 1, $2, NULL, '2001-01-01 02:13:20', NULL), \
                 ($1, 1, NULL, $3, '2001-01-01 02:13:21', '2001-01-01 02:20:00'), \
                 ($1, 2, $4, NULL, '2001-01-01 02:13:20', '2001-01-01 02:30:00')",
            &[&w_id, &ada, &rook, &bo],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO agent_schedules (world_id, agent_id, days_of_week, start_minute, \
                 end_minute, activity, location, priority, flexible, position) VALUES \
                 ($1, $2, '{1,2,3,4,5}', 360, 720, 'bake', 'Bakery', 8, false, 0), \
                 ($1, $2, '{}', 1320, 360, 'sleep', 'Mill House', 10, false, 1), \
                 ($1, $3, '{6,7}', 600, 660, 'fish', 'River', 3, true, 0)",
            &[&w_id, &ada, &bo],
        )
        .await
        .unwrap();
    // plan 1's parent is plan 3, which comes after it in the document
    client
        .execute(
            "INSERT INTO agent_plans (agent_id, id, world_id, parent_id, goal, steps, \
                 current_step, status, priority, deadline, created_game_time, updated_tick) VALUES \
                 ($2, 3, $1, NULL, 'run the bakery today', '[\"bake\", \"sell\"]', 1, 'active', 7, \
                  '2001-01-01 20:00:00', '2001-01-01 06:00:00', 20), \
                 ($2, 1, $1, 3, 'bake rye', '[]', 0, 'pending', 5, NULL, '2001-01-01 06:00:01', 20)",
            &[&w_id, &ada],
        )
        .await
        .unwrap();
    let group: i64 = client
        .query_one(
            "INSERT INTO groups (world_id, name, goal, rules, status, shared_pool, \
                 created_game_time, updated_tick) \
             VALUES ($1, 'Bakers'' Guild', 'good bread', '[\"no stale loaves\"]', 'active', \
                 '{\"coins\": 12}', '2001-01-01 05:00:00', 20) RETURNING id",
            &[&w_id],
        )
        .await
        .unwrap()
        .get(0);
    client
        .execute(
            "INSERT INTO group_members (world_id, group_id, agent_id, role, joined_game_time) VALUES \
                 ($1, $2, $3, 'founder', '2001-01-01 05:00:00'), \
                 ($1, $2, $4, 'member', '2001-01-01 05:30:00')",
            &[&w_id, &group, &ada, &bo],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO knowledge (world_id, scope, owner_agent_id, owner_group_id, subject, \
                 predicate, object, text, access_agent_ids, confidence, created_game_time) VALUES \
                 ($1, 'personal', $2, NULL, 'rye', 'needs', 'starter', NULL, '{}', 0.9, '2001-01-01 01:00:00'), \
                 ($1, 'shared', NULL, $3, NULL, NULL, NULL, 'The guild meets on Mondays.', '{}', 1, '2001-01-01 01:00:00'), \
                 ($1, 'shared', NULL, NULL, NULL, NULL, NULL, 'The mill key is under the stone.', $4, 0.5, '2001-01-01 01:00:00'), \
                 ($1, 'global', NULL, NULL, 'river', 'flows', 'east', NULL, '{}', 1, '2001-01-01 00:00:00')",
            &[&w_id, &ada, &group, &vec![bo, ada]],
        )
        .await
        .unwrap();
    lore::sync_document(
        client,
        w_id,
        &LoreDocumentRow {
            path: "history/founding.md".into(),
            title: "The Founding".into(),
            content_hash: vec![7; 32],
        },
        &[
            LoreChunkRow {
                ordinal: 0,
                text: "Westhollow was founded by millers.".into(),
            },
            LoreChunkRow {
                ordinal: 1,
                text: "The river turned the first wheel.".into(),
            },
        ],
    )
    .await
    .unwrap();
    let pending = lore::chunks_without_embedding(client, w_id, 1)
        .await
        .unwrap();
    lore::set_chunk_embeddings(
        client,
        w_id,
        &[(pending[0].id, vec![0.25, 0.25, -0.5, 1.0])],
    )
    .await
    .unwrap();
    client
        .execute(
            "INSERT INTO llm_calls (world_id, agent_id, kind, model, prompt, response, latency_ms, \
                 prompt_tokens, completion_tokens, error, game_time) VALUES \
                 ($1, $2, 'plan', 'llama3', 'Plan the day of Ada.', '6:00 bake', 812, 120, 40, NULL, '2001-01-01 05:59:00'), \
                 ($1, NULL, 'embed', 'minilm', 'bread', NULL, 3, NULL, NULL, 'timeout', NULL)",
            &[&w_id, &ada],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO sim_metrics (world_id, tick, game_time, agents, tick_ms_p50, tick_ms_p99, \
                 tick_ms_max, flush_ms, rows_flushed, queue_depth) VALUES \
                 ($1, 10, '2001-01-01 02:30:00', 3, 0.5, 1.75, 3.25, 12.5, 9, 0), \
                 ($1, 20, '2001-01-01 02:40:00', 3, 0.625, 1.5, 2.0, NULL, 1, 2)",
            &[&w_id],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO event_log (world_id, user_id, actor, action, target, details) \
             SELECT $1, id, 'user:alice', 'world.open', 'w', '{\"reason\": \"test\"}' \
             FROM users WHERE username = 'alice'",
            &[&w_id],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO event_log (world_id, user_id, actor, action, target, details) \
             VALUES ($1, NULL, 'system', 'agents.sync', NULL, '{}')",
            &[&w_id],
        )
        .await
        .unwrap();
    w_id
}

async fn export_to_vec(client: &mut Client, slug: &str) -> String {
    let mut out = Vec::new();
    export::export_world(client, slug, &mut out, &ProgressBar::hidden())
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

async fn import_text(
    client: &mut Client,
    text: &str,
    as_name: Option<&str>,
) -> Result<hearth_db::export::Imported, ExportError> {
    export::import_world(
        client,
        Cursor::new(text.as_bytes().to_vec()),
        "world.json",
        as_name,
        &ProgressBar::hidden(),
    )
    .await
}

/// The document with its `exported_at` blanked and, if asked, the world's
/// slug replaced: what must be identical between two exports.
fn normalized(doc: &str, slug: Option<(&str, &str)>) -> String {
    let key = "\"exported_at\":\"";
    let start = doc.find(key).unwrap() + key.len();
    let end = start + doc[start..].find('"').unwrap();
    let mut text = format!("{}{}", &doc[..start], &doc[end..]);
    if let Some((from, to)) = slug {
        let before = format!("\n\"world\":{{\"slug\":\"{from}\",");
        assert_eq!(text.matches(&before).count(), 1, "{text}");
        text = text.replace(&before, &format!("\n\"world\":{{\"slug\":\"{to}\","));
    }
    text
}

/// Rows of each world table for world `world_id`.
async fn world_counts(client: &Client, world_id: i64) -> BTreeMap<&'static str, i64> {
    let mut counts = BTreeMap::new();
    for table in WORLD_TABLES {
        let n: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE world_id = $1"),
                &[&world_id],
            )
            .await
            .unwrap()
            .get(0);
        counts.insert(*table, n);
    }
    counts
}

/// Rows of every table, all worlds, and the users: "the database unchanged".
async fn all_counts(client: &Client) -> BTreeMap<&'static str, i64> {
    let mut counts = BTreeMap::new();
    for table in WORLD_TABLES.iter().chain(&["worlds", "users"]) {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        counts.insert(*table, n);
    }
    counts
}

async fn world_id(client: &Client, slug: &str) -> i64 {
    client
        .query_one("SELECT id FROM worlds WHERE slug = $1", &[&slug])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn export_import_export_is_byte_identical() {
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    populate(&mut client).await;
    let first = export_to_vec(&mut client, "w").await;

    // the document holds what was written, by natural key
    assert!(
        first.starts_with("{\"format\":\"hearth.world\",\"version\":1,"),
        "{first}"
    );
    for expected in [
        format!("\"sim\":\"{SIM_BASE64}\""),
        "\"checkpoint\":{\"tick\":20,".into(),
        "\"state\":\"AgIC\"".into(),
        "\"embedding\":[0.1,-0.2,0.3,0.4]".into(),
        "\"embedding\":[1e-7,2.5,-3.0,0.0]".into(),
        "\"related_agents\":[\"ada\"],\"related_characters\":[\"Wren\"]".into(),
        "\"owner\":\"alice\"".into(),
        "\"speaker_character\":\"Rook\"".into(),
        "\"access_agents\":[\"bo\",\"ada\"]".into(),
        "\"parent_id\":3".into(),
    ] {
        assert!(
            first.contains(&expected),
            "{expected} missing from\n{first}"
        );
    }
    // nothing of the other world, no password, no email, no database id
    for absent in ["Other Ada", "Stranger", "carol", "argon2", "example.com"] {
        assert!(!first.contains(absent), "{absent} in\n{first}");
    }

    let imported = import_text(&mut client, &first, Some("w2")).await.unwrap();
    assert_eq!(imported.slug, "w2");
    assert_eq!(imported.rows[&Section::Memories], 4);
    assert_eq!(imported.created_users, 0, "alice and bob exist already");
    let second = export_to_vec(&mut client, "w2").await;
    assert_eq!(
        normalized(&first, Some(("w", "w2"))),
        normalized(&second, None),
        "export → import → export changed the document"
    );

    // and into another database, where the accounts do not exist
    let other_db = TestDb::migrated().await;
    let mut other = other_db.client().await;
    let imported = import_text(&mut other, &first, None).await.unwrap();
    assert_eq!(imported.created_users, 2);
    let third = export_to_vec(&mut other, "w").await;
    assert_eq!(normalized(&first, None), normalized(&third, None));
    let hashes: Vec<String> = other
        .query("SELECT password_hash FROM users ORDER BY username", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(hashes, [LOCKED_PASSWORD_HASH, LOCKED_PASSWORD_HASH]);
}

#[tokio::test]
async fn every_table_survives_the_round_trip() {
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    let w = populate(&mut client).await;
    let users_before: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    let doc = export_to_vec(&mut client, "w").await;
    import_text(&mut client, &doc, Some("w2")).await.unwrap();
    let w2 = world_id(&client, "w2").await;

    let mut source = world_counts(&client, w).await;
    let copy = world_counts(&client, w2).await;
    // only the newest checkpoint travels
    assert_eq!(source.insert("world_checkpoints", 1), Some(2));
    assert_eq!(source, copy);
    assert!(
        copy.values().all(|n| *n > 0),
        "a table without rows: {copy:?}"
    );
    let users_after: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users_before, users_after, "existing accounts are reused");

    // references point into the new world, by its own ids
    let ids = |slug: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT id FROM agents WHERE world_id = $1 AND slug = $2",
                    &[&w2, &slug],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let (ada2, bo2) = (ids("ada").await, ids("bo").await);
    let row = client
        .query_one(
            "SELECT m.related_agent_ids, m.related_character_ids, c.name, m.embedding::text \
             FROM agent_memories m JOIN characters c ON c.id = m.related_character_ids[1] \
             WHERE m.agent_id = $1 AND m.id = 1",
            &[&ada2],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vec<i64>>(0), vec![bo2]);
    assert_eq!(row.get::<_, String>(2), "Rook");
    assert_eq!(row.get::<_, String>(3), "[0.1,-0.2,0.3,0.4]");
    let related: Vec<i64> = client
        .query_one(
            "SELECT related_agent_ids FROM agent_memories WHERE agent_id = $1 AND id = 1",
            &[&bo2],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(related, vec![ada2], "the dangling id was left out");
    let sim: Option<Vec<u8>> = client
        .query_one("SELECT sim FROM agent_states WHERE agent_id = $1", &[&ada2])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sim.as_deref(), Some(&SIM[..]));
    let (tick, state): (i64, Option<Vec<u8>>) = {
        let r = client
            .query_one(
                "SELECT tick, state FROM world_checkpoints WHERE world_id = $1",
                &[&w2],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((tick, state), (20, Some(vec![2, 2, 2])));
    let parent: Option<i64> = client
        .query_one(
            "SELECT parent_id FROM agent_plans WHERE agent_id = $1 AND id = 1",
            &[&ada2],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(parent, Some(3));
    let access: Vec<i64> = client
        .query_one(
            "SELECT access_agent_ids FROM knowledge WHERE world_id = $1 AND cardinality(access_agent_ids) > 0",
            &[&w2],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(access, vec![bo2, ada2]);
    let members: i64 = client
        .query_one(
            "SELECT count(*) FROM group_members m JOIN groups g ON g.id = m.group_id \
             WHERE g.world_id = $1 AND m.world_id = $1",
            &[&w2],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(members, 2);
    // the copy is searchable like the original: its vectors are there
    let similar: i64 = client
        .query_one(
            "SELECT count(*) FROM lore_chunks WHERE world_id = $1 AND embedding_dim = $2",
            &[&w2, &DIM],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(similar, 1);
}

/// Imports `text` and expects it refused, with the database as it was.
async fn refused(client: &mut Client, text: &str, as_name: Option<&str>) -> ExportError {
    let before = all_counts(client).await;
    let err = import_text(client, text, as_name).await.unwrap_err();
    assert_eq!(
        all_counts(client).await,
        before,
        "a refused import wrote: {err}"
    );
    err
}

#[tokio::test]
async fn bad_documents_are_refused_and_nothing_is_written() {
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    populate(&mut client).await;
    let doc = export_to_vec(&mut client, "w").await;

    // truncated, as an interrupted export or copy leaves it
    let mut at = doc.len() * 2 / 3;
    while !doc.is_char_boundary(at) || doc.as_bytes()[at - 1] == b'\n' {
        at -= 1;
    }
    let cut = &doc[..at];
    let err = refused(&mut client, cut, Some("w2")).await;
    let ExportError::Truncated { line, column, .. } = &err else {
        panic!("not reported as truncated: {err}");
    };
    assert_eq!(*line, cut.lines().count(), "{err}");
    assert!(*column > 0, "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(err.to_string().contains(&format!("line {line}")), "{err}");

    // not JSON at all
    let err = refused(&mut client, "<html>oops</html>", Some("w2")).await;
    assert!(
        matches!(
            err,
            ExportError::NotJson {
                line: 1,
                column: 1,
                ..
            }
        ),
        "{err}"
    );

    // some other JSON document
    let other = doc.replacen("\"format\":\"hearth.world\"", "\"format\":\"tiled.map\"", 1);
    let err = refused(&mut client, &other, Some("w2")).await;
    assert!(matches!(err, ExportError::WrongFormat { .. }), "{err}");
    assert!(err.to_string().contains("\"tiled.map\""), "{err}");

    // a version from the future
    let future = doc.replacen("\"version\":1,", "\"version\":2,", 1);
    let err = refused(&mut client, &future, Some("w2")).await;
    assert!(
        matches!(err, ExportError::UnsupportedVersion { ref found, .. } if found == "2"),
        "{err}"
    );
    assert!(err.to_string().contains("reads version 1"), "{err}");

    // a memory of an agent the document does not define
    let line = "{\"agent\":\"ada\",\"id\":1,\"kind\":\"observation\"";
    assert_eq!(doc.matches(line).count(), 1);
    let unknown = doc.replacen(
        line,
        "{\"agent\":\"nobody\",\"id\":1,\"kind\":\"observation\"",
        1,
    );
    let err = refused(&mut client, &unknown, Some("w2")).await;
    assert!(
        matches!(
            &err,
            ExportError::Import {
                error: TransferError::UnknownReference { what: "agent", key, .. },
                ..
            } if key == "nobody"
        ),
        "{err}"
    );
    assert!(err.to_string().contains("'nobody'"), "{err}");

    // a vector of another dimension than the world's
    let short = doc.replacen(
        "\"embedding\":[0.1,-0.2,0.3,0.4]",
        "\"embedding\":[0.1,-0.2,0.3]",
        1,
    );
    assert_ne!(short, doc);
    let err = refused(&mut client, &short, Some("w2")).await;
    assert!(
        matches!(
            err,
            ExportError::Import {
                error: TransferError::Dimension {
                    got: 3,
                    expected: 4,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("memory 1 of 'ada'"), "{err}");

    // a field that is not in the format
    let extra = doc.replacen(
        "\"title\":\"The Founding\"",
        "\"title\":\"The Founding\",\"author\":\"x\"",
        1,
    );
    let err = refused(&mut client, &extra, Some("w2")).await;
    let ExportError::Invalid { message, line, .. } = &err else {
        panic!("not reported as invalid: {err}");
    };
    assert!(message.contains("author"), "{err}");
    assert!(*line > 1, "{err}");

    // the world exists: without --as, the document's own slug
    let err = refused(&mut client, &doc, None).await;
    assert!(
        matches!(err, ExportError::WorldExists(ref slug) if slug == "w"),
        "{err}"
    );
    assert!(err.to_string().contains("--as"), "{err}");

    // a name that cannot be a slug
    let err = refused(&mut client, &doc, Some("Not A Slug")).await;
    assert!(matches!(err, ExportError::BadSlug(_)), "{err}");

    // and the valid document still imports after all that
    import_text(&mut client, &doc, Some("w2")).await.unwrap();
}

#[tokio::test]
async fn exporting_a_missing_world_names_it() {
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    let mut out = Vec::new();
    let err = export::export_world(&mut client, "nowhere", &mut out, &ProgressBar::hidden())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExportError::Transfer(TransferError::NoWorld(ref w)) if w == "nowhere"),
        "{err}"
    );
    assert!(out.is_empty());
}

/// A directory of its own under the system's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hearth-export-{}-{name}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn hearth(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hearth-cli"))
        .args(["--database-url", url])
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_binary_exports_and_imports() {
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    populate(&mut client).await;
    let url = db.url();
    let dir = scratch("binary");
    let file = dir.join("w.json");
    let file_arg = file.to_str().unwrap();

    let out = hearth(&url, &["export", "--world", "w", "-o", file_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("exported world 'w' to "), "{stdout}");
    assert!(stdout.contains("memories 4"), "{stdout}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(!dir.join("w.json.partial").exists());

    // without -o the document goes to stdout, and is the same document
    let out = hearth(&url, &["export", "--world", "w"]);
    assert_eq!(out.status.code(), Some(0));
    let piped = String::from_utf8(out.stdout).unwrap();
    assert_eq!(normalized(&piped, None), normalized(&written, None));

    let out = hearth(&url, &["import", file_arg, "--as", "w2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("imported world 'w2' from "), "{stdout}");
    assert_eq!(
        world_counts(&client, world_id(&client, "w2").await).await["agent_memories"],
        4
    );

    // again: the world exists now, exit code 1 and the reason on stderr
    let out = hearth(&url, &["import", file_arg, "--as", "w2"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a world 'w2' already exists"), "{stderr}");

    let out = hearth(&url, &["export", "--world", "nowhere", "-o", file_arg]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no world 'nowhere'"), "{stderr}");
    // a failed export leaves the previous file alone, and no partial one
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);
    assert!(!dir.join("w.json.partial").exists());

    let out = hearth(
        &url,
        &["import", dir.join("missing.json").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    // --world is required
    let out = hearth(&url, &["export"]);
    assert_eq!(out.status.code(), Some(2));

    let _ = std::fs::remove_dir_all(&dir);
}

/// The record on a line of a document: `{…},`, or `{…}],` / `{…}]}` at
/// the end of a section.
fn record(line: &str) -> serde_json::Value {
    let json = line.strip_suffix(',').unwrap_or(line);
    let json = match json.strip_suffix("}]}").or(json.strip_suffix("}]")) {
        Some(inner) => &json[..inner.len() + 1],
        None => json,
    };
    serde_json::from_str(json).unwrap()
}

/// Sections larger than a page (1,000 rows) and than an import chunk (256
/// memories) come out whole, in order, and go back in whole: one agent on a
/// page boundary exactly, one over it, one without memories.
#[tokio::test]
async fn large_sections_are_paged_in_order() {
    let db = TestDb::migrated().await;
    let mut client = db.client().await;
    let w = worlds::ensure(&client, "big", "Big", "test-model", DIM)
        .await
        .unwrap();
    let ids = agents::upsert(
        &client,
        w.id,
        &[
            agent("a", "A"),
            agent("b", "B"),
            agent("c", "C"),
            agent("d", "D"),
        ],
    )
    .await
    .unwrap();
    let mut batch = Batch::default();
    for (slug, n) in [("a", 2_500), ("b", 1_000), ("d", 1)] {
        for id in 1..=n {
            let e = (id % 3 == 0).then(|| vec![id as f32, 0.5, -0.25, 1.0]);
            batch.memories.push(memory(
                w.id,
                ids[slug],
                id,
                "observation",
                vec![],
                vec![],
                vec![],
                e,
            ));
        }
    }
    batch.conversations.insert(
        1,
        ConversationRow {
            world_id: w.id,
            id: 1,
            kind: "group".into(),
            location: None,
            topic: None,
            started: game_time::to_timestamp(0),
            ended: None,
        },
    );
    for seq in 0..2_001 {
        batch.messages.push(MessageRow {
            world_id: w.id,
            conversation_id: 1,
            seq,
            speaker_agent_id: Some(ids["c"]),
            speaker_character_id: None,
            text: format!("line {seq}"),
            emotional_tone: None,
            game_time: game_time::to_timestamp(seq as u64),
        });
    }
    writer::commit(&client, &batch).await.unwrap();

    let doc = export_to_vec(&mut client, "big").await;
    let memories: Vec<(String, i64)> = doc
        .lines()
        .filter(|l| l.starts_with("{\"agent\":") && l.contains("\"kind\":\"observation\""))
        .map(|l| {
            let v = record(l);
            (
                v["agent"].as_str().unwrap().to_owned(),
                v["id"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, i64)> = [("a", 2_500), ("b", 1_000), ("d", 1)]
        .iter()
        .flat_map(|(slug, n)| (1..=*n).map(move |id| (slug.to_string(), id)))
        .collect();
    assert_eq!(memories, expected);
    let seqs: Vec<i64> = doc
        .lines()
        .filter(|l| l.starts_with("{\"conversation\":1,\"seq\":"))
        .map(|l| {
            let v = record(l);
            v["seq"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(seqs, (0..2_001).collect::<Vec<i64>>());

    let imported = import_text(&mut client, &doc, Some("big2")).await.unwrap();
    assert_eq!(imported.rows[&Section::Memories], 3_501);
    assert_eq!(imported.rows[&Section::Messages], 2_001);
    let again = export_to_vec(&mut client, "big2").await;
    assert_eq!(
        normalized(&doc, Some(("big", "big2"))),
        normalized(&again, None)
    );
}

/// What a server commits while an export is reading does not appear in it:
/// the export is one snapshot.
#[tokio::test]
async fn an_export_reads_one_snapshot() {
    let db = TestDb::migrated().await;
    let mut reader = db.client().await;
    let w = populate(&mut reader).await;
    let writer_client = db.client().await;
    let ada: i64 = writer_client
        .query_one(
            "SELECT id FROM agents WHERE world_id = $1 AND slug = 'ada'",
            &[&w],
        )
        .await
        .unwrap()
        .get(0);

    let mut snapshot = hearth_db::export::Snapshot::begin(&mut reader, "w")
        .await
        .unwrap();
    let before = snapshot.count(Section::Memories).await.unwrap();
    // a flush lands while the snapshot is open
    let mut batch = Batch::default();
    batch.memories.push(memory(
        w,
        ada,
        3,
        "observation",
        vec![],
        vec![],
        vec![],
        None,
    ));
    batch.checkpoint = Some(Checkpoint {
        world_id: w,
        tick: 30,
        game_time: game_time::to_timestamp(10_000),
        state: None,
    });
    writer::commit(&writer_client, &batch).await.unwrap();

    assert_eq!(snapshot.count(Section::Memories).await.unwrap(), before);
    assert_eq!(snapshot.checkpoint().await.unwrap().unwrap().tick, 20);
    let mut cursor = snapshot.open(Section::Memories).await.unwrap();
    let mut read = 0;
    while let Some(page) = snapshot.next_page(&mut cursor).await.unwrap() {
        read += page.len() as u64;
    }
    assert_eq!(read, before);
    snapshot.finish().await.unwrap();
    // a new export sees the flush
    let doc = export_to_vec(&mut reader, "w").await;
    assert!(doc.contains("\"checkpoint\":{\"tick\":30,"));
}

/// Every column of the tables an export covers, and the tables with a
/// `world_id` it deliberately leaves out. A migration that adds a world
/// table or a column fails this test until the export carries it (a new
/// document version, docs/export.md) or it is listed here as not exported.
const EXPORTED_COLUMNS: &[(&str, &str)] = &[
    (
        "worlds",
        "id slug name embedding_model embedding_dim settings created_at updated_at archived_at",
    ),
    (
        "world_checkpoints",
        "world_id tick game_time committed_at state",
    ),
    (
        "users",
        "id username email password_hash created_at disabled_at",
    ),
    ("world_members", "world_id user_id role created_at"),
    (
        "characters",
        "id world_id user_id name x y location_name created_at updated_at",
    ),
    (
        "agents",
        "id world_id slug name definition age constitution background traits likes dislikes primary_goal secondary_goals home_location created_at updated_at archived_at",
    ),
    (
        "agent_states",
        "agent_id world_id x y facing action action_started_at action_target target_x target_y location_name energy mood emotional_state physical_state cognitive_load updated_tick sim",
    ),
    (
        "agent_memories",
        "agent_id id world_id kind content importance emotional_valence emotional_intensity tags related_agent_ids related_character_ids location created_game_time last_accessed_game_time depth evidence_ids embedding embedding_dim",
    ),
    (
        "agent_relationships",
        "world_id agent_id target_agent_id type affection trust interaction_count last_interaction summary updated_tick",
    ),
    (
        "agent_character_relationships",
        "world_id agent_id character_id type affection trust interaction_count last_interaction summary updated_tick",
    ),
    (
        "conversations",
        "world_id id kind location topic started_game_time ended_game_time",
    ),
    (
        "conversation_participants",
        "world_id conversation_id agent_id character_id joined_game_time left_game_time",
    ),
    (
        "messages",
        "world_id conversation_id seq speaker_agent_id speaker_character_id text emotional_tone game_time",
    ),
    (
        "agent_schedules",
        "id world_id agent_id days_of_week start_minute end_minute activity location priority flexible position",
    ),
    (
        "agent_plans",
        "agent_id id world_id parent_id goal steps current_step status priority deadline created_game_time updated_tick",
    ),
    (
        "groups",
        "id world_id name goal rules status shared_pool created_game_time updated_tick",
    ),
    (
        "group_members",
        "world_id group_id agent_id role joined_game_time",
    ),
    (
        "knowledge",
        "id world_id scope owner_agent_id owner_group_id subject predicate object text access_agent_ids confidence created_game_time",
    ),
    (
        "lore_documents",
        "id world_id path title content_hash created_at updated_at",
    ),
    (
        "lore_chunks",
        "id world_id document_id ordinal text tsv embedding embedding_dim",
    ),
    (
        "llm_calls",
        "id world_id agent_id kind model prompt response latency_ms prompt_tokens completion_tokens error game_time created_at",
    ),
    (
        "sim_metrics",
        "world_id tick game_time recorded_at agents tick_ms_p50 tick_ms_p99 tick_ms_max flush_ms rows_flushed queue_depth",
    ),
    (
        "event_log",
        "id world_id user_id actor action target details created_at",
    ),
];

/// Tables with a `world_id` that an export leaves out on purpose.
const NOT_EXPORTED: &[&str] = &[
    // who runs the world now: an imported world is nobody's until opened
    "world_leases",
];

#[tokio::test]
async fn the_export_covers_the_schema() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let mut columns: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in client
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() ORDER BY table_name, column_name",
            &[],
        )
        .await
        .unwrap()
    {
        columns.entry(row.get(0)).or_default().push(row.get(1));
    }
    for (table, expected) in EXPORTED_COLUMNS {
        let mut expected: Vec<&str> = expected.split(' ').collect();
        expected.sort_unstable();
        let found = columns
            .get(*table)
            .map(|c| c.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            found.as_deref(),
            Some(&expected[..]),
            "table {table} changed: export the new columns (a new document version) or say here why not"
        );
    }
    let world_tables: Vec<&String> = columns
        .iter()
        .filter(|(_, cols)| cols.iter().any(|c| c == "world_id"))
        .map(|(table, _)| table)
        .collect();
    for table in world_tables {
        let covered = EXPORTED_COLUMNS.iter().any(|(t, _)| t == table)
            || NOT_EXPORTED.contains(&table.as_str());
        assert!(
            covered,
            "table {table} holds world rows that `hearth export` does not carry"
        );
    }
    // and the test's own list of world tables is the export's
    for section in Section::ALL {
        assert!(
            EXPORTED_COLUMNS.iter().any(|(t, _)| *t == section.table()),
            "{}",
            section.table()
        );
    }
}
