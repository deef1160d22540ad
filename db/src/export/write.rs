//! Import: a world written back from an export's sections in one
//! transaction, each page by binary COPY ([`Importer`]). Touches every
//! world-scoped table, and `users` (creates missing players, locked).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use pgvector::Vector;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Transaction};
use tracing::{debug, instrument};

use crate::memories::{self, MemoryRow};
use crate::{DbError, worlds, writer};

use super::*;

/// What an import wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    pub slug: String,
    /// Rows written per section (sections without rows are absent).
    pub rows: BTreeMap<Section, u64>,
    /// Accounts that did not exist in this database and were created locked.
    pub created_users: u64,
}

/// A world being written in one transaction. Dropped without
/// [`Importer::commit`], nothing of it remains.
pub struct Importer<'c> {
    tx: Transaction<'c>,
    world_id: i64,
    dim: i32,
    /// Slug → id of the agents written so far.
    agents: HashMap<String, i64>,
    characters: HashMap<String, i64>,
    /// Lower-cased username → id (usernames are unique regardless of case).
    users: HashMap<String, i64>,
    groups: HashMap<String, i64>,
    lore_documents: HashMap<String, i64>,
    /// `(agent id, plan id, parent id)`: plans are inserted without their
    /// parent, which is set once every plan is in (a parent may come later).
    plan_parents: Vec<(i64, i64, i64)>,
    last_section: Option<Section>,
    imported: Imported,
}

impl fmt::Debug for Importer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Importer")
            .field("world_id", &self.world_id)
            .field("imported", &self.imported)
            .finish_non_exhaustive()
    }
}

impl<'c> Importer<'c> {
    /// Creates `world` (and its checkpoint) in a new transaction, or refuses
    /// with [`TransferError::WorldExists`] if its slug is taken. The vector
    /// indexes for its dimension are created first, outside the transaction,
    /// as opening a world does.
    #[instrument(skip_all, fields(slug = %world.slug))]
    pub async fn begin(
        client: &'c mut Client,
        world: &WorldRecord,
        checkpoint: Option<&CheckpointRecord>,
    ) -> Result<Importer<'c>, TransferError> {
        if !(1..=16000).contains(&world.embedding_dim) {
            return Err(TransferError::Invalid(format!(
                "world: embedding_dim {} is out of range 1..=16000",
                world.embedding_dim
            )));
        }
        if worlds::get(client, &world.slug).await?.is_some() {
            return Err(TransferError::WorldExists(world.slug.clone()));
        }
        worlds::ensure_vector_indexes(client, world.embedding_dim).await?;
        let tx = client.transaction().await?;
        let inserted = tx
            .query_one(
                "INSERT INTO worlds (slug, name, embedding_model, embedding_dim, settings, \
                 created_at, updated_at, archived_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 RETURNING id",
                &[
                    &world.slug,
                    &world.name,
                    &world.embedding_model,
                    &world.embedding_dim,
                    &world.settings,
                    &world.created_at,
                    &world.updated_at,
                    &world.archived_at,
                ],
            )
            .await;
        let world_id: i64 = match inserted {
            Ok(row) => row.try_get(0)?,
            Err(e) => {
                let e = DbError::from(e);
                // created by someone else since the check above
                if e.constraint() == Some("worlds_slug_key") {
                    return Err(TransferError::WorldExists(world.slug.clone()));
                }
                return Err(e.into());
            }
        };
        if let Some(c) = checkpoint {
            tx.execute(
                "INSERT INTO world_checkpoints (world_id, tick, game_time, committed_at, state) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&world_id, &c.tick, &c.game_time, &c.committed_at, &c.state],
            )
            .await?;
        }
        Ok(Importer {
            tx,
            world_id,
            dim: world.embedding_dim,
            agents: HashMap::new(),
            characters: HashMap::new(),
            users: HashMap::new(),
            groups: HashMap::new(),
            lore_documents: HashMap::new(),
            plan_parents: Vec::new(),
            last_section: None,
            imported: Imported {
                slug: world.slug.clone(),
                ..Imported::default()
            },
        })
    }

    /// Writes one page. Pages must come in [`Section::ALL`] order (several
    /// pages of one section in a row are fine): what a record names must be
    /// written before it.
    pub async fn write(&mut self, page: Page) -> Result<u64, TransferError> {
        let section = page.section();
        if let Some(last) = self.last_section
            && last > section
        {
            return Err(TransferError::Invalid(format!(
                "section '{section}' comes after '{last}'; sections must be in the order of an \
                 export, because a record can only name what came before it"
            )));
        }
        self.last_section = Some(section);
        if page.is_empty() {
            return Ok(0);
        }
        let written = match page {
            Page::Users(rows) => self.users(rows).await?,
            Page::Members(rows) => self.members(rows).await?,
            Page::Characters(rows) => self.characters(rows).await?,
            Page::Agents(rows) => self.agents(rows).await?,
            Page::AgentStates(rows) => self.agent_states(rows).await?,
            Page::Relationships(rows) => self.relationships(rows).await?,
            Page::CharacterRelationships(rows) => self.character_relationships(rows).await?,
            Page::Groups(rows) => self.groups(rows).await?,
            Page::GroupMembers(rows) => self.group_members(rows).await?,
            Page::Knowledge(rows) => self.knowledge(rows).await?,
            Page::Schedules(rows) => self.schedules(rows).await?,
            Page::Plans(rows) => self.plans(rows).await?,
            Page::Conversations(rows) => self.conversations(rows).await?,
            Page::Participants(rows) => self.participants(rows).await?,
            Page::Messages(rows) => self.messages(rows).await?,
            Page::Memories(rows) => self.memories(rows).await?,
            Page::LoreDocuments(rows) => self.lore_documents(rows).await?,
            Page::LoreChunks(rows) => self.lore_chunks(rows).await?,
            Page::LlmCalls(rows) => self.llm_calls(rows).await?,
            Page::SimMetrics(rows) => self.sim_metrics(rows).await?,
            Page::EventLog(rows) => self.event_log(rows).await?,
        };
        *self.imported.rows.entry(section).or_default() += written;
        Ok(written)
    }

    /// Sets the plans' parents and commits: the world appears whole.
    pub async fn commit(self) -> Result<Imported, TransferError> {
        for batch in self.plan_parents.chunks(PARENT_BATCH) {
            let agents: Vec<i64> = batch.iter().map(|p| p.0).collect();
            let ids: Vec<i64> = batch.iter().map(|p| p.1).collect();
            let parents: Vec<i64> = batch.iter().map(|p| p.2).collect();
            self.tx
                .execute(
                    "UPDATE agent_plans p SET parent_id = t.parent \
                     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS t(agent, id, parent) \
                     WHERE p.agent_id = t.agent AND p.id = t.id",
                    &[&agents, &ids, &parents],
                )
                .await?;
        }
        self.tx.commit().await?;
        debug!(imported = ?self.imported, "world imported");
        Ok(self.imported)
    }

    fn agent(
        &self,
        section: Section,
        context: &dyn Fn() -> String,
        slug: &str,
    ) -> Result<i64, TransferError> {
        lookup(&self.agents, section, context, "agent", slug)
    }

    fn character(
        &self,
        section: Section,
        context: &dyn Fn() -> String,
        name: &str,
    ) -> Result<i64, TransferError> {
        lookup(&self.characters, section, context, "character", name)
    }

    fn user(
        &self,
        section: Section,
        context: &dyn Fn() -> String,
        username: &str,
    ) -> Result<i64, TransferError> {
        self.users
            .get(&username.to_lowercase())
            .copied()
            .ok_or_else(|| TransferError::UnknownReference {
                section: section.key(),
                context: context(),
                what: "user",
                key: username.to_owned(),
            })
    }

    fn check_dim(
        &self,
        section: Section,
        context: &dyn Fn() -> String,
        embedding: Option<&Vec<f32>>,
    ) -> Result<Option<i32>, TransferError> {
        let Some(e) = embedding else {
            return Ok(None);
        };
        if usize::try_from(self.dim).ok() != Some(e.len()) {
            return Err(TransferError::Dimension {
                section: section.key(),
                context: context(),
                got: e.len(),
                expected: self.dim,
            });
        }
        Ok(Some(self.dim))
    }

    async fn users(&mut self, rows: Vec<UserRecord>) -> Result<u64, TransferError> {
        let names: Vec<&str> = rows.iter().map(|r| r.username.as_str()).collect();
        let created: Vec<WallTime> = rows.iter().map(|r| r.created_at).collect();
        let added = self
            .tx
            .execute(
                "INSERT INTO users (username, password_hash, created_at) \
                 SELECT t.username, $3, t.created_at \
                 FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS t(username, created_at, n) \
                 WHERE NOT EXISTS (SELECT 1 FROM users u WHERE lower(u.username) = lower(t.username)) \
                 ORDER BY t.n",
                &[&names, &created, &LOCKED_PASSWORD_HASH],
            )
            .await?;
        self.imported.created_users += added;
        let lower: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
        for r in self
            .tx
            .query(
                "SELECT lower(username), id FROM users WHERE lower(username) = ANY($1)",
                &[&lower],
            )
            .await?
        {
            self.users.insert(r.try_get(0)?, r.try_get(1)?);
        }
        // an account is shared by worlds: reused ones count as written too
        Ok(rows.len() as u64)
    }

    async fn members(&mut self, rows: Vec<MemberRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let user = self.user(
                Section::Members,
                &|| format!("member '{}'", r.username),
                &r.username,
            )?;
            resolved.push((self.world_id, user, r));
        }
        copy(
            self.tx.client(),
            "world_members (world_id, user_id, role, created_at)",
            &[Type::INT8, Type::INT8, Type::TEXT, Type::TIMESTAMPTZ],
            &resolved,
            |(w, u, r)| [w, u, &r.role, &r.created_at],
        )
        .await
    }

    async fn characters(&mut self, rows: Vec<CharacterRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let user = self.user(
                Section::Characters,
                &|| format!("character '{}'", r.name),
                &r.owner,
            )?;
            resolved.push((self.world_id, user, r));
        }
        let n = copy(
            self.tx.client(),
            "characters (world_id, user_id, name, x, y, location_name, created_at, updated_at)",
            &[
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::FLOAT4,
                Type::FLOAT4,
                Type::TEXT,
                Type::TIMESTAMPTZ,
                Type::TIMESTAMPTZ,
            ],
            &resolved,
            |(w, u, r)| {
                [
                    w,
                    u,
                    &r.name,
                    &r.x,
                    &r.y,
                    &r.location_name,
                    &r.created_at,
                    &r.updated_at,
                ]
            },
        )
        .await?;
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        self.characters.extend(
            self.ids_of(
                "SELECT name, id FROM characters WHERE world_id = $1 AND name = ANY($2)",
                &names,
            )
            .await?,
        );
        Ok(n)
    }

    async fn agents(&mut self, rows: Vec<AgentRecord>) -> Result<u64, TransferError> {
        let resolved: Vec<(i64, &AgentRecord)> = rows.iter().map(|r| (self.world_id, r)).collect();
        let n = copy(
            self.tx.client(),
            "agents (world_id, slug, name, definition, age, constitution, background, traits, \
             likes, dislikes, primary_goal, secondary_goals, home_location, created_at, \
             updated_at, archived_at)",
            &[
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::JSONB,
                Type::INT4,
                Type::TEXT,
                Type::TEXT,
                Type::JSONB,
                Type::TEXT_ARRAY,
                Type::TEXT_ARRAY,
                Type::TEXT,
                Type::TEXT_ARRAY,
                Type::TEXT,
                Type::TIMESTAMPTZ,
                Type::TIMESTAMPTZ,
                Type::TIMESTAMPTZ,
            ],
            &resolved,
            |(w, r)| {
                [
                    w,
                    &r.slug,
                    &r.name,
                    &r.definition,
                    &r.age,
                    &r.constitution,
                    &r.background,
                    &r.traits,
                    &r.likes,
                    &r.dislikes,
                    &r.primary_goal,
                    &r.secondary_goals,
                    &r.home_location,
                    &r.created_at,
                    &r.updated_at,
                    &r.archived_at,
                ]
            },
        )
        .await?;
        let slugs: Vec<&str> = rows.iter().map(|r| r.slug.as_str()).collect();
        self.agents.extend(
            self.ids_of(
                "SELECT slug, id FROM agents WHERE world_id = $1 AND slug = ANY($2)",
                &slugs,
            )
            .await?,
        );
        Ok(n)
    }

    async fn agent_states(&mut self, rows: Vec<AgentStateRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let agent = self.agent(
                Section::AgentStates,
                &|| format!("the state of '{}'", r.agent),
                &r.agent,
            )?;
            resolved.push((agent, self.world_id, r));
        }
        copy(
            self.tx.client(),
            &format!("agent_states ({})", writer::STATE_COLUMNS),
            &writer::STATE_TYPES,
            &resolved,
            |(a, w, r)| {
                [
                    a,
                    w,
                    &r.x,
                    &r.y,
                    &r.facing,
                    &r.action,
                    &r.action_started_at,
                    &r.action_target,
                    &r.target_x,
                    &r.target_y,
                    &r.location_name,
                    &r.energy,
                    &r.mood,
                    &r.emotional_state,
                    &r.physical_state,
                    &r.cognitive_load,
                    &r.updated_tick,
                    &r.sim,
                ]
            },
        )
        .await
    }

    async fn relationships(&mut self, rows: Vec<RelationshipRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("the relationship of '{}' to '{}'", r.agent, r.target);
            let agent = self.agent(Section::Relationships, &context, &r.agent)?;
            let target = self.agent(Section::Relationships, &context, &r.target)?;
            resolved.push(([self.world_id, agent, target], r));
        }
        copy(
            self.tx.client(),
            "agent_relationships (world_id, agent_id, target_agent_id, type, affection, trust, \
             interaction_count, last_interaction, summary, updated_tick)",
            &RELATIONSHIP_TYPES,
            &resolved,
            |([w, a, t], r)| {
                [
                    w,
                    a,
                    t,
                    &r.kind,
                    &r.affection,
                    &r.trust,
                    &r.interaction_count,
                    &r.last_interaction,
                    &r.summary,
                    &r.updated_tick,
                ]
            },
        )
        .await
    }

    async fn character_relationships(
        &mut self,
        rows: Vec<CharacterRelationshipRecord>,
    ) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("the relationship of '{}' to '{}'", r.agent, r.character);
            let agent = self.agent(Section::CharacterRelationships, &context, &r.agent)?;
            let character =
                self.character(Section::CharacterRelationships, &context, &r.character)?;
            resolved.push(([self.world_id, agent, character], r));
        }
        copy(
            self.tx.client(),
            "agent_character_relationships (world_id, agent_id, character_id, type, affection, \
             trust, interaction_count, last_interaction, summary, updated_tick)",
            &RELATIONSHIP_TYPES,
            &resolved,
            |([w, a, c], r)| {
                [
                    w,
                    a,
                    c,
                    &r.kind,
                    &r.affection,
                    &r.trust,
                    &r.interaction_count,
                    &r.last_interaction,
                    &r.summary,
                    &r.updated_tick,
                ]
            },
        )
        .await
    }

    async fn groups(&mut self, rows: Vec<GroupRecord>) -> Result<u64, TransferError> {
        let resolved: Vec<(i64, &GroupRecord)> = rows.iter().map(|r| (self.world_id, r)).collect();
        let n = copy(
            self.tx.client(),
            "groups (world_id, name, goal, rules, status, shared_pool, created_game_time, \
             updated_tick)",
            &[
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::JSONB,
                Type::TEXT,
                Type::JSONB,
                Type::TIMESTAMP,
                Type::INT8,
            ],
            &resolved,
            |(w, r)| {
                [
                    w,
                    &r.name,
                    &r.goal,
                    &r.rules,
                    &r.status,
                    &r.shared_pool,
                    &r.created_game_time,
                    &r.updated_tick,
                ]
            },
        )
        .await?;
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        self.groups.extend(
            self.ids_of(
                "SELECT name, id FROM groups WHERE world_id = $1 AND name = ANY($2)",
                &names,
            )
            .await?,
        );
        Ok(n)
    }

    async fn group_members(&mut self, rows: Vec<GroupMemberRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("member '{}' of group '{}'", r.agent, r.group);
            let group = lookup(
                &self.groups,
                Section::GroupMembers,
                &context,
                "group",
                &r.group,
            )?;
            let agent = self.agent(Section::GroupMembers, &context, &r.agent)?;
            resolved.push(([self.world_id, group, agent], r));
        }
        copy(
            self.tx.client(),
            "group_members (world_id, group_id, agent_id, role, joined_game_time)",
            &[
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TIMESTAMP,
            ],
            &resolved,
            |([w, g, a], r)| [w, g, a, &r.role, &r.joined_game_time],
        )
        .await
    }

    async fn knowledge(&mut self, rows: Vec<KnowledgeRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let context = || {
                let about = r.text.as_deref().or(r.subject.as_deref()).unwrap_or("?");
                format!("knowledge #{} ('{about}')", i + 1)
            };
            let owner_agent = r
                .owner_agent
                .as_deref()
                .map(|s| self.agent(Section::Knowledge, &context, s))
                .transpose()?;
            let owner_group = r
                .owner_group
                .as_deref()
                .map(|g| lookup(&self.groups, Section::Knowledge, &context, "group", g))
                .transpose()?;
            let access = r
                .access_agents
                .iter()
                .map(|s| self.agent(Section::Knowledge, &context, s))
                .collect::<Result<Vec<i64>, _>>()?;
            resolved.push((self.world_id, owner_agent, owner_group, access, r));
        }
        copy(
            self.tx.client(),
            "knowledge (world_id, scope, owner_agent_id, owner_group_id, subject, predicate, \
             object, text, access_agent_ids, confidence, created_game_time)",
            &[
                Type::INT8,
                Type::TEXT,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::INT8_ARRAY,
                Type::FLOAT4,
                Type::TIMESTAMP,
            ],
            &resolved,
            |(w, oa, og, access, r)| {
                [
                    w,
                    &r.scope,
                    oa,
                    og,
                    &r.subject,
                    &r.predicate,
                    &r.object,
                    &r.text,
                    access,
                    &r.confidence,
                    &r.created_game_time,
                ]
            },
        )
        .await
    }

    async fn schedules(&mut self, rows: Vec<ScheduleRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("the schedule entry '{}' of '{}'", r.activity, r.agent);
            let agent = self.agent(Section::Schedules, &context, &r.agent)?;
            resolved.push(([self.world_id, agent], r));
        }
        copy(
            self.tx.client(),
            "agent_schedules (world_id, agent_id, days_of_week, start_minute, end_minute, \
             activity, location, priority, flexible, position)",
            &[
                Type::INT8,
                Type::INT8,
                Type::INT2_ARRAY,
                Type::INT2,
                Type::INT2,
                Type::TEXT,
                Type::TEXT,
                Type::INT2,
                Type::BOOL,
                Type::INT2,
            ],
            &resolved,
            |([w, a], r)| {
                [
                    w,
                    a,
                    &r.days_of_week,
                    &r.start_minute,
                    &r.end_minute,
                    &r.activity,
                    &r.location,
                    &r.priority,
                    &r.flexible,
                    &r.position,
                ]
            },
        )
        .await
    }

    async fn plans(&mut self, rows: Vec<PlanRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let agent = self.agent(
                Section::Plans,
                &|| format!("plan {} of '{}'", r.id, r.agent),
                &r.agent,
            )?;
            if let Some(parent) = r.parent_id {
                self.plan_parents.push((agent, r.id, parent));
            }
            resolved.push(([agent, r.id, self.world_id], r));
        }
        copy(
            self.tx.client(),
            "agent_plans (agent_id, id, world_id, goal, steps, current_step, status, priority, \
             deadline, created_game_time, updated_tick)",
            &[
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::JSONB,
                Type::INT4,
                Type::TEXT,
                Type::INT2,
                Type::TIMESTAMP,
                Type::TIMESTAMP,
                Type::INT8,
            ],
            &resolved,
            |([a, id, w], r)| {
                [
                    a,
                    id,
                    w,
                    &r.goal,
                    &r.steps,
                    &r.current_step,
                    &r.status,
                    &r.priority,
                    &r.deadline,
                    &r.created_game_time,
                    &r.updated_tick,
                ]
            },
        )
        .await
    }

    async fn conversations(&mut self, rows: Vec<ConversationRecord>) -> Result<u64, TransferError> {
        let resolved: Vec<(i64, &ConversationRecord)> =
            rows.iter().map(|r| (self.world_id, r)).collect();
        copy(
            self.tx.client(),
            "conversations (world_id, id, kind, location, topic, started_game_time, \
             ended_game_time)",
            &[
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TIMESTAMP,
                Type::TIMESTAMP,
            ],
            &resolved,
            |(w, r)| {
                [
                    w,
                    &r.id,
                    &r.kind,
                    &r.location,
                    &r.topic,
                    &r.started_game_time,
                    &r.ended_game_time,
                ]
            },
        )
        .await
    }

    async fn participants(&mut self, rows: Vec<ParticipantRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("a participant of conversation {}", r.conversation);
            let agent = r
                .agent
                .as_deref()
                .map(|s| self.agent(Section::Participants, &context, s))
                .transpose()?;
            let character = r
                .character
                .as_deref()
                .map(|c| self.character(Section::Participants, &context, c))
                .transpose()?;
            resolved.push((self.world_id, agent, character, r));
        }
        copy(
            self.tx.client(),
            "conversation_participants (world_id, conversation_id, agent_id, character_id, \
             joined_game_time, left_game_time)",
            &[
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::TIMESTAMP,
                Type::TIMESTAMP,
            ],
            &resolved,
            |(w, a, c, r)| {
                [
                    w,
                    &r.conversation,
                    a,
                    c,
                    &r.joined_game_time,
                    &r.left_game_time,
                ]
            },
        )
        .await
    }

    async fn messages(&mut self, rows: Vec<MessageRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("message {} of conversation {}", r.seq, r.conversation);
            let agent = r
                .speaker_agent
                .as_deref()
                .map(|s| self.agent(Section::Messages, &context, s))
                .transpose()?;
            let character = r
                .speaker_character
                .as_deref()
                .map(|c| self.character(Section::Messages, &context, c))
                .transpose()?;
            resolved.push((self.world_id, agent, character, r));
        }
        copy(
            self.tx.client(),
            "messages (world_id, conversation_id, seq, speaker_agent_id, speaker_character_id, \
             text, emotional_tone, game_time)",
            &[
                Type::INT8,
                Type::INT8,
                Type::INT4,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TIMESTAMP,
            ],
            &resolved,
            |(w, a, c, r)| {
                [
                    w,
                    &r.conversation,
                    &r.seq,
                    a,
                    c,
                    &r.text,
                    &r.emotional_tone,
                    &r.game_time,
                ]
            },
        )
        .await
    }

    async fn memories(&mut self, rows: Vec<MemoryRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in rows {
            let context = || format!("memory {} of '{}'", r.id, r.agent);
            let agent_id = self.agent(Section::Memories, &context, &r.agent)?;
            self.check_dim(Section::Memories, &context, r.embedding.as_ref())?;
            let related_agent_ids = r
                .related_agents
                .iter()
                .map(|s| self.agent(Section::Memories, &context, s))
                .collect::<Result<Vec<i64>, _>>()?;
            let related_character_ids = r
                .related_characters
                .iter()
                .map(|c| self.character(Section::Memories, &context, c))
                .collect::<Result<Vec<i64>, _>>()?;
            resolved.push(MemoryRow {
                world_id: self.world_id,
                agent_id,
                id: r.id,
                kind: r.kind,
                content: r.content,
                importance: r.importance,
                emotional_valence: r.emotional_valence,
                emotional_intensity: r.emotional_intensity,
                tags: r.tags,
                related_agent_ids,
                related_character_ids,
                location: r.location,
                created_game_time: r.created_game_time,
                last_accessed_game_time: r.last_accessed_game_time,
                depth: r.depth,
                evidence_ids: r.evidence_ids,
                embedding: r.embedding,
            });
        }
        Ok(memories::copy_in(self.tx.client(), &resolved).await?)
    }

    async fn lore_documents(
        &mut self,
        rows: Vec<LoreDocumentRecord>,
    ) -> Result<u64, TransferError> {
        let resolved: Vec<(i64, &LoreDocumentRecord)> =
            rows.iter().map(|r| (self.world_id, r)).collect();
        let n = copy(
            self.tx.client(),
            "lore_documents (world_id, path, title, content_hash, created_at, updated_at)",
            &[
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::BYTEA,
                Type::TIMESTAMPTZ,
                Type::TIMESTAMPTZ,
            ],
            &resolved,
            |(w, r)| {
                [
                    w,
                    &r.path,
                    &r.title,
                    &r.content_hash,
                    &r.created_at,
                    &r.updated_at,
                ]
            },
        )
        .await?;
        let paths: Vec<&str> = rows.iter().map(|r| r.path.as_str()).collect();
        self.lore_documents.extend(
            self.ids_of(
                "SELECT path, id FROM lore_documents WHERE world_id = $1 AND path = ANY($2)",
                &paths,
            )
            .await?,
        );
        Ok(n)
    }

    async fn lore_chunks(&mut self, rows: Vec<LoreChunkRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("chunk {} of '{}'", r.ordinal, r.document);
            let document = lookup(
                &self.lore_documents,
                Section::LoreChunks,
                &context,
                "lore document",
                &r.document,
            )?;
            let dim = self.check_dim(Section::LoreChunks, &context, r.embedding.as_ref())?;
            let embedding = r.embedding.clone().map(Vector::from);
            resolved.push((self.world_id, document, embedding, dim, r));
        }
        let vector = vector_type(self.tx.client()).await?;
        copy(
            self.tx.client(),
            "lore_chunks (world_id, document_id, ordinal, text, embedding, embedding_dim)",
            &[
                Type::INT8,
                Type::INT8,
                Type::INT4,
                Type::TEXT,
                vector,
                Type::INT4,
            ],
            &resolved,
            |(w, d, e, dim, r)| [w, d, &r.ordinal, &r.text, e, dim],
        )
        .await
    }

    async fn llm_calls(&mut self, rows: Vec<LlmCallRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("an LLM call of {}", r.created_at);
            let agent = r
                .agent
                .as_deref()
                .map(|s| self.agent(Section::LlmCalls, &context, s))
                .transpose()?;
            resolved.push((self.world_id, agent, r));
        }
        copy(
            self.tx.client(),
            "llm_calls (world_id, agent_id, kind, model, prompt, response, latency_ms, \
             prompt_tokens, completion_tokens, error, game_time, created_at)",
            &[
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::INT4,
                Type::INT4,
                Type::INT4,
                Type::TEXT,
                Type::TIMESTAMP,
                Type::TIMESTAMPTZ,
            ],
            &resolved,
            |(w, a, r)| {
                [
                    w,
                    a,
                    &r.kind,
                    &r.model,
                    &r.prompt,
                    &r.response,
                    &r.latency_ms,
                    &r.prompt_tokens,
                    &r.completion_tokens,
                    &r.error,
                    &r.game_time,
                    &r.created_at,
                ]
            },
        )
        .await
    }

    async fn sim_metrics(&mut self, rows: Vec<SimMetricRecord>) -> Result<u64, TransferError> {
        let resolved: Vec<(i64, &SimMetricRecord)> =
            rows.iter().map(|r| (self.world_id, r)).collect();
        copy(
            self.tx.client(),
            "sim_metrics (world_id, tick, game_time, recorded_at, agents, tick_ms_p50, \
             tick_ms_p99, tick_ms_max, flush_ms, rows_flushed, queue_depth)",
            &[
                Type::INT8,
                Type::INT8,
                Type::TIMESTAMP,
                Type::TIMESTAMPTZ,
                Type::INT4,
                Type::FLOAT4,
                Type::FLOAT4,
                Type::FLOAT4,
                Type::FLOAT4,
                Type::INT4,
                Type::INT4,
            ],
            &resolved,
            |(w, r)| {
                [
                    w,
                    &r.tick,
                    &r.game_time,
                    &r.recorded_at,
                    &r.agents,
                    &r.tick_ms_p50,
                    &r.tick_ms_p99,
                    &r.tick_ms_max,
                    &r.flush_ms,
                    &r.rows_flushed,
                    &r.queue_depth,
                ]
            },
        )
        .await
    }

    async fn event_log(&mut self, rows: Vec<EventRecord>) -> Result<u64, TransferError> {
        let mut resolved = Vec::with_capacity(rows.len());
        for r in &rows {
            let context = || format!("the event '{}' of {}", r.action, r.created_at);
            let user = r
                .user
                .as_deref()
                .map(|u| self.user(Section::EventLog, &context, u))
                .transpose()?;
            resolved.push((self.world_id, user, r));
        }
        copy(
            self.tx.client(),
            "event_log (world_id, user_id, actor, action, target, details, created_at)",
            &[
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::JSONB,
                Type::TIMESTAMPTZ,
            ],
            &resolved,
            |(w, u, r)| {
                [
                    w,
                    u,
                    &r.actor,
                    &r.action,
                    &r.target,
                    &r.details,
                    &r.created_at,
                ]
            },
        )
        .await
    }

    /// `(key, id)` pairs of the rows just written: `sql` takes the world id
    /// and the keys.
    async fn ids_of(&self, sql: &str, keys: &[&str]) -> Result<Vec<(String, i64)>, TransferError> {
        self.tx
            .query(sql, &[&self.world_id, &keys])
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}

pub(super) const RELATIONSHIP_TYPES: [Type; 10] = [
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::FLOAT4,
    Type::FLOAT4,
    Type::INT4,
    Type::TIMESTAMP,
    Type::TEXT,
    Type::INT8,
];

pub(super) fn lookup(
    map: &HashMap<String, i64>,
    section: Section,
    context: &dyn Fn() -> String,
    what: &'static str,
    key: &str,
) -> Result<i64, TransferError> {
    map.get(key)
        .copied()
        .ok_or_else(|| TransferError::UnknownReference {
            section: section.key(),
            context: context(),
            what,
            key: key.to_owned(),
        })
}

/// The `vector` type of this database (an extension type: its OID varies).
pub(super) async fn vector_type(client: &Client) -> Result<Type, TransferError> {
    let statement = client.prepare("SELECT $1::vector").await?;
    statement
        .params()
        .first()
        .cloned()
        .ok_or_else(|| TransferError::Invalid("the vector type has no parameter type".into()))
}

/// Binary-COPYs `rows` into `target` (`table (columns)`), each row's values
/// given by `values` in the order of `types`. Returns the rows written.
pub(super) async fn copy<R, const N: usize>(
    client: &Client,
    target: &str,
    types: &[Type; N],
    rows: &[R],
    values: fn(&R) -> [&(dyn ToSql + Sync); N],
) -> Result<u64, TransferError> {
    let sink = client
        .copy_in(&format!("COPY {target} FROM STDIN (FORMAT binary)"))
        .await?;
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, types));
    for row in rows {
        writer.as_mut().write(&values(row)).await?;
    }
    Ok(writer.finish().await?)
}
