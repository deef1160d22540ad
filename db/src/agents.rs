//! The agents of a world as rows: registered (or updated) from the designers'
//! files when a world opens, so every per-agent table can refer to them by
//! id, and archived when they leave it. Touches `agents`, and reads the time of an agent's latest memory.

use std::collections::HashMap;

use serde_json::Value;
use tokio_postgres::Client;
use tracing::instrument;

use crate::DbError;

/// One agent as the designer's file describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    pub slug: String,
    pub name: String,
    /// The whole file as loaded.
    pub definition: Value,
    pub age: Option<i32>,
    pub constitution: String,
    pub background: String,
    pub traits: Value,
    pub likes: Vec<String>,
    pub dislikes: Vec<String>,
    pub primary_goal: Option<String>,
    pub secondary_goals: Vec<String>,
    pub home_location: Option<String>,
}

/// Archives the agents `slugs` of world `world_id` (they left the world;
/// their rows, memories and relationships stay); returns how many were
/// not archived already.
#[instrument(skip_all, fields(world_id, agents = slugs.len()))]
pub async fn archive(client: &Client, world_id: i64, slugs: &[String]) -> Result<u64, DbError> {
    Ok(client
        .execute(
            "UPDATE agents SET archived_at = now(), updated_at = now() \
             WHERE world_id = $1 AND slug = ANY($2) AND archived_at IS NULL",
            &[&world_id, &slugs],
        )
        .await?)
}

/// Archives every agent of world `world_id` whose slug is not in `keep`
/// (its file is gone); returns how many were archived now.
#[instrument(skip_all, fields(world_id, keep = keep.len()))]
pub async fn archive_missing(
    client: &Client,
    world_id: i64,
    keep: &[String],
) -> Result<u64, DbError> {
    Ok(client
        .execute(
            "UPDATE agents SET archived_at = now(), updated_at = now() \
             WHERE world_id = $1 AND NOT (slug = ANY($2)) AND archived_at IS NULL",
            &[&world_id, &keep],
        )
        .await?)
}

/// Inserts the agents of world `world_id`, or updates those already there
/// (by slug; an archived agent that is back is un-archived), in one
/// statement; returns each slug's id.
#[instrument(skip_all, fields(world_id, agents = agents.len()))]
pub async fn upsert(
    client: &Client,
    world_id: i64,
    agents: &[AgentRow],
) -> Result<HashMap<String, i64>, DbError> {
    let mut ids = HashMap::with_capacity(agents.len());
    // one statement per 5,000 agents keeps each parameter array moderate
    for batch in agents.chunks(5000) {
        let col = |f: fn(&AgentRow) -> Value| batch.iter().map(f).collect::<Vec<Value>>();
        let slugs: Vec<&str> = batch.iter().map(|a| a.slug.as_str()).collect();
        let names: Vec<&str> = batch.iter().map(|a| a.name.as_str()).collect();
        let ages: Vec<Option<i32>> = batch.iter().map(|a| a.age).collect();
        let constitutions: Vec<&str> = batch.iter().map(|a| a.constitution.as_str()).collect();
        let backgrounds: Vec<&str> = batch.iter().map(|a| a.background.as_str()).collect();
        let goals: Vec<Option<&str>> = batch.iter().map(|a| a.primary_goal.as_deref()).collect();
        let homes: Vec<Option<&str>> = batch.iter().map(|a| a.home_location.as_deref()).collect();
        let definitions = col(|a| a.definition.clone());
        let traits = col(|a| a.traits.clone());
        // text[] per row cannot ride in UNNEST (it would flatten): JSON arrays
        let likes = col(|a| Value::from(a.likes.clone()));
        let dislikes = col(|a| Value::from(a.dislikes.clone()));
        let secondary = col(|a| Value::from(a.secondary_goals.clone()));
        let rows = client
            .query(
                "INSERT INTO agents (world_id, slug, name, definition, age, constitution, background, \
                     traits, likes, dislikes, primary_goal, secondary_goals, home_location) \
                 SELECT $1, t.slug, t.name, t.definition, t.age, t.constitution, t.background, t.traits, \
                     ARRAY(SELECT jsonb_array_elements_text(t.likes)), \
                     ARRAY(SELECT jsonb_array_elements_text(t.dislikes)), \
                     t.primary_goal, \
                     ARRAY(SELECT jsonb_array_elements_text(t.secondary)), \
                     t.home \
                 FROM unnest($2::text[], $3::text[], $4::jsonb[], $5::int[], $6::text[], $7::text[], \
                     $8::jsonb[], $9::jsonb[], $10::jsonb[], $11::text[], $12::jsonb[], $13::text[]) \
                     AS t(slug, name, definition, age, constitution, background, traits, likes, \
                          dislikes, primary_goal, secondary, home) \
                 ON CONFLICT (world_id, slug) DO UPDATE SET \
                     name = EXCLUDED.name, definition = EXCLUDED.definition, age = EXCLUDED.age, \
                     constitution = EXCLUDED.constitution, background = EXCLUDED.background, \
                     traits = EXCLUDED.traits, likes = EXCLUDED.likes, dislikes = EXCLUDED.dislikes, \
                     primary_goal = EXCLUDED.primary_goal, secondary_goals = EXCLUDED.secondary_goals, \
                     home_location = EXCLUDED.home_location, updated_at = now(), archived_at = NULL \
                 RETURNING slug, id",
                &[
                    &world_id,
                    &slugs,
                    &names,
                    &definitions,
                    &ages,
                    &constitutions,
                    &backgrounds,
                    &traits,
                    &likes,
                    &dislikes,
                    &goals,
                    &secondary,
                    &homes,
                ],
            )
            .await?;
        for r in rows {
            ids.insert(r.try_get(0)?, r.try_get(1)?);
        }
    }
    Ok(ids)
}

/// The id of agent `slug` of world `world_id`, if registered.
#[instrument(skip_all, fields(world_id, slug))]
pub async fn id_of(client: &Client, world_id: i64, slug: &str) -> Result<Option<i64>, DbError> {
    let row = client
        .query_opt(
            "SELECT id FROM agents WHERE world_id = $1 AND slug = $2",
            &[&world_id, &slug],
        )
        .await?;
    Ok(match row {
        Some(r) => Some(r.try_get(0)?),
        None => None,
    })
}

/// The game time of agent `agent_id`'s latest memory (made or recalled), if
/// it has any: the moment a query about it is asked at.
#[instrument(skip_all, fields(agent_id))]
pub async fn last_memory_time(
    client: &Client,
    agent_id: i64,
) -> Result<Option<chrono::NaiveDateTime>, DbError> {
    let row = client
        .query_one(
            "SELECT max(last_accessed_game_time) FROM agent_memories WHERE agent_id = $1",
            &[&agent_id],
        )
        .await?;
    Ok(row.try_get(0)?)
}
