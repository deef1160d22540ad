//! Export: a world read in one `REPEATABLE READ READ ONLY` snapshot,
//! section by section and page by page ([`Snapshot`]). Touches every
//! world-scoped table and `users`, read-only.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use pgvector::Vector;
use tokio_postgres::{Client, IsolationLevel, Portal, Row, Statement, Transaction};
use tracing::{debug, instrument, warn};

use super::*;

/// The accounts a world refers to: owners of its characters, its members and
/// the users of its logged events. `$1` is the world id.
pub(super) const USERS_SQL: &str = "SELECT u.id, u.username, u.created_at FROM users u WHERE u.id IN ( \
         SELECT user_id FROM characters WHERE world_id = $1 \
         UNION SELECT user_id FROM world_members WHERE world_id = $1 \
         UNION SELECT user_id FROM event_log WHERE world_id = $1 AND user_id IS NOT NULL) \
     ORDER BY u.username COLLATE \"C\"";

/// Memories of one agent (`$1` its id), by the primary key.
pub(super) const MEMORIES_SQL: &str = "SELECT id, kind, content, importance, emotional_valence, \
     emotional_intensity, tags, related_agent_ids, related_character_ids, location, \
     created_game_time, last_accessed_game_time, depth, evidence_ids, embedding \
     FROM agent_memories WHERE agent_id = $1 ORDER BY id";

/// The statement reading a section (`$1` the world id), ordered by natural
/// keys — text compared byte-wise (`COLLATE "C"`), so the order does not
/// depend on the database's locale — or, for rows without one (knowledge,
/// schedules, logs), by id, which an import assigns in document order.
/// Memories are read per agent ([`MEMORIES_SQL`]).
pub(super) fn section_sql(section: Section) -> &'static str {
    match section {
        Section::Users => USERS_SQL,
        Section::Members => {
            "SELECT u.username, m.role, m.created_at FROM world_members m \
             JOIN users u ON u.id = m.user_id WHERE m.world_id = $1 \
             ORDER BY u.username COLLATE \"C\""
        }
        Section::Characters => {
            "SELECT c.name, u.username, c.x, c.y, c.location_name, c.created_at, c.updated_at \
             FROM characters c JOIN users u ON u.id = c.user_id WHERE c.world_id = $1 \
             ORDER BY c.name COLLATE \"C\""
        }
        Section::Agents => {
            "SELECT slug, name, definition, age, constitution, background, traits, likes, \
             dislikes, primary_goal, secondary_goals, home_location, created_at, updated_at, \
             archived_at FROM agents WHERE world_id = $1 ORDER BY slug COLLATE \"C\""
        }
        Section::AgentStates => {
            "SELECT a.slug, s.x, s.y, s.facing, s.action, s.action_started_at, s.action_target, \
             s.target_x, s.target_y, s.location_name, s.energy, s.mood, s.emotional_state, \
             s.physical_state, s.cognitive_load, s.updated_tick, s.sim \
             FROM agent_states s JOIN agents a ON a.id = s.agent_id WHERE s.world_id = $1 \
             ORDER BY a.slug COLLATE \"C\""
        }
        Section::Relationships => {
            "SELECT a.slug, t.slug, r.type, r.affection, r.trust, r.interaction_count, \
             r.last_interaction, r.summary, r.updated_tick FROM agent_relationships r \
             JOIN agents a ON a.id = r.agent_id JOIN agents t ON t.id = r.target_agent_id \
             WHERE r.world_id = $1 ORDER BY a.slug COLLATE \"C\", t.slug COLLATE \"C\""
        }
        Section::CharacterRelationships => {
            "SELECT a.slug, c.name, r.type, r.affection, r.trust, r.interaction_count, \
             r.last_interaction, r.summary, r.updated_tick FROM agent_character_relationships r \
             JOIN agents a ON a.id = r.agent_id JOIN characters c ON c.id = r.character_id \
             WHERE r.world_id = $1 ORDER BY a.slug COLLATE \"C\", c.name COLLATE \"C\""
        }
        Section::Groups => {
            "SELECT name, goal, rules, status, shared_pool, created_game_time, updated_tick \
             FROM groups WHERE world_id = $1 ORDER BY name COLLATE \"C\""
        }
        Section::GroupMembers => {
            "SELECT g.name, a.slug, m.role, m.joined_game_time FROM group_members m \
             JOIN groups g ON g.id = m.group_id JOIN agents a ON a.id = m.agent_id \
             WHERE m.world_id = $1 ORDER BY g.name COLLATE \"C\", a.slug COLLATE \"C\""
        }
        Section::Knowledge => {
            "SELECT k.scope, a.slug, g.name, k.subject, k.predicate, k.object, k.text, \
             k.access_agent_ids, k.confidence, k.created_game_time FROM knowledge k \
             LEFT JOIN agents a ON a.id = k.owner_agent_id \
             LEFT JOIN groups g ON g.id = k.owner_group_id \
             WHERE k.world_id = $1 ORDER BY k.id"
        }
        Section::Schedules => {
            "SELECT a.slug, s.days_of_week, s.start_minute, s.end_minute, s.activity, \
             s.location, s.priority, s.flexible, s.position FROM agent_schedules s \
             JOIN agents a ON a.id = s.agent_id WHERE s.world_id = $1 \
             ORDER BY a.slug COLLATE \"C\", s.position, s.id"
        }
        Section::Plans => {
            "SELECT a.slug, p.id, p.parent_id, p.goal, p.steps, p.current_step, p.status, \
             p.priority, p.deadline, p.created_game_time, p.updated_tick FROM agent_plans p \
             JOIN agents a ON a.id = p.agent_id WHERE p.world_id = $1 \
             ORDER BY a.slug COLLATE \"C\", p.id"
        }
        Section::Conversations => {
            "SELECT id, kind, location, topic, started_game_time, ended_game_time \
             FROM conversations WHERE world_id = $1 ORDER BY id"
        }
        Section::Participants => {
            "SELECT p.conversation_id, a.slug, c.name, p.joined_game_time, p.left_game_time \
             FROM conversation_participants p \
             LEFT JOIN agents a ON a.id = p.agent_id \
             LEFT JOIN characters c ON c.id = p.character_id WHERE p.world_id = $1 \
             ORDER BY p.conversation_id, a.slug COLLATE \"C\" NULLS LAST, \
                 c.name COLLATE \"C\" NULLS LAST"
        }
        Section::Messages => {
            "SELECT conversation_id, seq, speaker_agent_id, speaker_character_id, text, \
             emotional_tone, game_time FROM messages WHERE world_id = $1 \
             ORDER BY conversation_id, seq"
        }
        Section::Memories => MEMORIES_SQL,
        Section::LoreDocuments => {
            "SELECT path, title, content_hash, created_at, updated_at FROM lore_documents \
             WHERE world_id = $1 ORDER BY path COLLATE \"C\""
        }
        Section::LoreChunks => {
            "SELECT d.path, c.ordinal, c.text, c.embedding FROM lore_chunks c \
             JOIN lore_documents d ON d.id = c.document_id WHERE c.world_id = $1 \
             ORDER BY d.path COLLATE \"C\", c.ordinal"
        }
        Section::LlmCalls => {
            "SELECT agent_id, kind, model, prompt, response, latency_ms, prompt_tokens, \
             completion_tokens, error, game_time, created_at FROM llm_calls \
             WHERE world_id = $1 ORDER BY id"
        }
        Section::SimMetrics => {
            "SELECT tick, game_time, recorded_at, agents, tick_ms_p50, tick_ms_p99, tick_ms_max, \
             flush_ms, rows_flushed, queue_depth FROM sim_metrics WHERE world_id = $1 \
             ORDER BY tick"
        }
        Section::EventLog => {
            "SELECT user_id, actor, action, target, details, created_at FROM event_log \
             WHERE world_id = $1 ORDER BY id"
        }
    }
}

/// Where reading one section has got to: a portal (for memories, the
/// current agent's) and, for memories, the agents still to read.
pub struct Cursor {
    section: Section,
    portal: Option<Portal>,
    /// Memories only: the statement, and agent ids left, in slug order.
    memories: Option<(Statement, VecDeque<(i64, String)>)>,
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cursor")
            .field("section", &self.section)
            .field("open", &self.portal.is_some())
            .finish_non_exhaustive()
    }
}

/// One world as of one moment: an open read-only transaction and the ids of
/// the world's agents, characters and users, to name them in records.
pub struct Snapshot<'c> {
    tx: Transaction<'c>,
    world_id: i64,
    world: WorldRecord,
    agents: HashMap<i64, String>,
    characters: HashMap<i64, String>,
    users: HashMap<i64, String>,
    /// References to rows that no longer exist (no foreign key guards them:
    /// related agents and characters of memories, knowledge access lists,
    /// the agent of an LLM call), left out of the records.
    dangling: u64,
}

impl fmt::Debug for Snapshot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("world", &self.world.slug)
            .field("agents", &self.agents.len())
            .finish_non_exhaustive()
    }
}

impl<'c> Snapshot<'c> {
    /// Opens a `REPEATABLE READ READ ONLY` transaction on `client` and reads
    /// world `slug`'s row and the names of its agents, characters and users.
    #[instrument(skip_all, fields(slug))]
    pub async fn begin(client: &'c mut Client, slug: &str) -> Result<Snapshot<'c>, TransferError> {
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let row = tx
            .query_opt(
                "SELECT id, slug, name, embedding_model, embedding_dim, settings, created_at, \
                 updated_at, archived_at FROM worlds WHERE slug = $1",
                &[&slug],
            )
            .await?
            .ok_or_else(|| TransferError::NoWorld(slug.to_owned()))?;
        let world_id: i64 = row.try_get(0)?;
        let world = WorldRecord {
            slug: row.try_get(1)?,
            name: row.try_get(2)?,
            embedding_model: row.try_get(3)?,
            embedding_dim: row.try_get(4)?,
            settings: row.try_get(5)?,
            created_at: row.try_get(6)?,
            updated_at: row.try_get(7)?,
            archived_at: row.try_get(8)?,
        };
        let names = |rows: Vec<Row>| -> Result<HashMap<i64, String>, TransferError> {
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        };
        let agents = names(
            tx.query(
                "SELECT id, slug FROM agents WHERE world_id = $1",
                &[&world_id],
            )
            .await?,
        )?;
        let characters = names(
            tx.query(
                "SELECT id, name FROM characters WHERE world_id = $1",
                &[&world_id],
            )
            .await?,
        )?;
        let users = names(tx.query(USERS_SQL, &[&world_id]).await?)?;
        debug!(world_id, agents = agents.len(), "snapshot open");
        Ok(Snapshot {
            tx,
            world_id,
            world,
            agents,
            characters,
            users,
            dangling: 0,
        })
    }

    pub fn world(&self) -> &WorldRecord {
        &self.world
    }

    /// The newest checkpoint: where a server resumes the world.
    pub async fn checkpoint(&self) -> Result<Option<CheckpointRecord>, TransferError> {
        let row = self
            .tx
            .query_opt(
                "SELECT tick, game_time, committed_at, state FROM world_checkpoints \
                 WHERE world_id = $1 ORDER BY tick DESC LIMIT 1",
                &[&self.world_id],
            )
            .await?;
        Ok(match row {
            Some(r) => Some(CheckpointRecord {
                tick: r.try_get(0)?,
                game_time: r.try_get(1)?,
                committed_at: r.try_get(2)?,
                state: r.try_get(3)?,
            }),
            None => None,
        })
    }

    /// How many rows `section` has (for a progress bar).
    pub async fn count(&self, section: Section) -> Result<u64, TransferError> {
        let sql = match section {
            Section::Users => format!("SELECT count(*) FROM ({USERS_SQL}) AS q"),
            _ => format!(
                "SELECT count(*) FROM {} WHERE world_id = $1",
                section.table()
            ),
        };
        let n: i64 = self
            .tx
            .query_one(&sql, &[&self.world_id])
            .await?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Starts reading `section`.
    pub async fn open(&self, section: Section) -> Result<Cursor, TransferError> {
        if section == Section::Memories {
            let statement = self.tx.prepare(MEMORIES_SQL).await?;
            let mut agents: Vec<(i64, String)> = self
                .agents
                .iter()
                .map(|(id, slug)| (*id, slug.clone()))
                .collect();
            agents.sort_by(|a, b| a.1.cmp(&b.1));
            return Ok(Cursor {
                section,
                portal: None,
                memories: Some((statement, agents.into())),
            });
        }
        let portal = self
            .tx
            .bind(section_sql(section), &[&self.world_id])
            .await?;
        Ok(Cursor {
            section,
            portal: Some(portal),
            memories: None,
        })
    }

    /// The next page of the cursor's section, `None` at its end. Pages are
    /// never empty.
    pub async fn next_page(&mut self, cursor: &mut Cursor) -> Result<Option<Page>, TransferError> {
        if cursor.section == Section::Memories {
            return self.next_memories(cursor).await;
        }
        let Some(portal) = &cursor.portal else {
            return Ok(None);
        };
        let rows = self.tx.query_portal(portal, PAGE_ROWS).await?;
        if rows.len() < usize::try_from(PAGE_ROWS).unwrap_or(usize::MAX) {
            cursor.portal = None;
        }
        if rows.is_empty() {
            return Ok(None);
        }
        self.page(cursor.section, &rows).map(Some)
    }

    async fn next_memories(&mut self, cursor: &mut Cursor) -> Result<Option<Page>, TransferError> {
        let Some((statement, agents)) = &mut cursor.memories else {
            return Ok(None);
        };
        loop {
            let portal = match &cursor.portal {
                Some(p) => p.clone(),
                None => {
                    let Some((id, _)) = agents.front() else {
                        return Ok(None);
                    };
                    let portal = self.tx.bind(&*statement, &[id]).await?;
                    cursor.portal = Some(portal.clone());
                    portal
                }
            };
            let rows = self.tx.query_portal(&portal, PAGE_ROWS).await?;
            let slug = match agents.front() {
                Some((_, slug)) => slug.clone(),
                None => return Ok(None),
            };
            if rows.len() < usize::try_from(PAGE_ROWS).unwrap_or(usize::MAX) {
                cursor.portal = None;
                agents.pop_front();
            }
            if !rows.is_empty() {
                let records = rows
                    .iter()
                    .map(|r| self.memory(&slug, r))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(Some(Page::Memories(records)));
            }
        }
    }

    /// Ends the snapshot; returns how many dangling references were left
    /// out of the records (see the field's documentation).
    pub async fn finish(self) -> Result<u64, TransferError> {
        if self.dangling > 0 {
            warn!(
                world = %self.world.slug,
                references = self.dangling,
                "references to agents or characters that no longer exist were left out"
            );
        }
        self.tx.commit().await?;
        Ok(self.dangling)
    }

    fn agent_name(&self, id: i64) -> Result<String, TransferError> {
        self.agents
            .get(&id)
            .cloned()
            .ok_or_else(|| TransferError::Invalid(format!("agent id {id} is not of this world")))
    }

    fn character_name(&self, id: i64) -> Result<String, TransferError> {
        self.characters.get(&id).cloned().ok_or_else(|| {
            TransferError::Invalid(format!("character id {id} is not of this world"))
        })
    }

    /// Names for ids that no foreign key guards; those gone are counted and
    /// left out.
    fn names_of(&mut self, ids: &[i64], characters: bool) -> Vec<String> {
        let map = if characters {
            &self.characters
        } else {
            &self.agents
        };
        let names: Vec<String> = ids.iter().filter_map(|id| map.get(id).cloned()).collect();
        self.dangling += (ids.len() - names.len()) as u64;
        names
    }

    fn memory(&mut self, agent: &str, r: &Row) -> Result<MemoryRecord, TransferError> {
        let related_agents: Vec<i64> = r.try_get(7)?;
        let related_characters: Vec<i64> = r.try_get(8)?;
        let embedding: Option<Vector> = r.try_get(14)?;
        Ok(MemoryRecord {
            agent: agent.to_owned(),
            id: r.try_get(0)?,
            kind: r.try_get(1)?,
            content: r.try_get(2)?,
            importance: r.try_get(3)?,
            emotional_valence: r.try_get(4)?,
            emotional_intensity: r.try_get(5)?,
            tags: r.try_get(6)?,
            related_agents: self.names_of(&related_agents, false),
            related_characters: self.names_of(&related_characters, true),
            location: r.try_get(9)?,
            created_game_time: r.try_get(10)?,
            last_accessed_game_time: r.try_get(11)?,
            depth: r.try_get(12)?,
            evidence_ids: r.try_get(13)?,
            embedding: embedding.map(|v| v.to_vec()),
        })
    }

    /// The records of `rows`, read with [`section_sql`].
    fn page(&mut self, section: Section, rows: &[Row]) -> Result<Page, TransferError> {
        macro_rules! records {
            ($variant:ident, |$r:ident| $record:expr) => {
                Page::$variant(
                    rows.iter()
                        .map(|$r| Ok($record))
                        .collect::<Result<Vec<_>, TransferError>>()?,
                )
            };
        }
        Ok(match section {
            Section::Users => records!(Users, |r| UserRecord {
                username: r.try_get(1)?,
                created_at: r.try_get(2)?,
            }),
            Section::Members => records!(Members, |r| MemberRecord {
                username: r.try_get(0)?,
                role: r.try_get(1)?,
                created_at: r.try_get(2)?,
            }),
            Section::Characters => records!(Characters, |r| CharacterRecord {
                name: r.try_get(0)?,
                owner: r.try_get(1)?,
                x: finite(r.try_get(2)?, "character x")?,
                y: finite(r.try_get(3)?, "character y")?,
                location_name: r.try_get(4)?,
                created_at: r.try_get(5)?,
                updated_at: r.try_get(6)?,
            }),
            Section::Agents => records!(Agents, |r| AgentRecord {
                slug: r.try_get(0)?,
                name: r.try_get(1)?,
                definition: r.try_get(2)?,
                age: r.try_get(3)?,
                constitution: r.try_get(4)?,
                background: r.try_get(5)?,
                traits: r.try_get(6)?,
                likes: r.try_get(7)?,
                dislikes: r.try_get(8)?,
                primary_goal: r.try_get(9)?,
                secondary_goals: r.try_get(10)?,
                home_location: r.try_get(11)?,
                created_at: r.try_get(12)?,
                updated_at: r.try_get(13)?,
                archived_at: r.try_get(14)?,
            }),
            Section::AgentStates => records!(AgentStates, |r| AgentStateRecord {
                agent: r.try_get(0)?,
                x: finite(r.try_get(1)?, "agent state x")?,
                y: finite(r.try_get(2)?, "agent state y")?,
                facing: r.try_get(3)?,
                action: r.try_get(4)?,
                action_started_at: r.try_get(5)?,
                action_target: r.try_get(6)?,
                target_x: finite_opt(r.try_get(7)?, "agent state target_x")?,
                target_y: finite_opt(r.try_get(8)?, "agent state target_y")?,
                location_name: r.try_get(9)?,
                energy: r.try_get(10)?,
                mood: r.try_get(11)?,
                emotional_state: r.try_get(12)?,
                physical_state: r.try_get(13)?,
                cognitive_load: r.try_get(14)?,
                updated_tick: r.try_get(15)?,
                sim: r.try_get(16)?,
            }),
            Section::Relationships => records!(Relationships, |r| RelationshipRecord {
                agent: r.try_get(0)?,
                target: r.try_get(1)?,
                kind: r.try_get(2)?,
                affection: r.try_get(3)?,
                trust: r.try_get(4)?,
                interaction_count: r.try_get(5)?,
                last_interaction: r.try_get(6)?,
                summary: r.try_get(7)?,
                updated_tick: r.try_get(8)?,
            }),
            Section::CharacterRelationships => {
                records!(CharacterRelationships, |r| CharacterRelationshipRecord {
                    agent: r.try_get(0)?,
                    character: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    affection: r.try_get(3)?,
                    trust: r.try_get(4)?,
                    interaction_count: r.try_get(5)?,
                    last_interaction: r.try_get(6)?,
                    summary: r.try_get(7)?,
                    updated_tick: r.try_get(8)?,
                })
            }
            Section::Groups => records!(Groups, |r| GroupRecord {
                name: r.try_get(0)?,
                goal: r.try_get(1)?,
                rules: r.try_get(2)?,
                status: r.try_get(3)?,
                shared_pool: r.try_get(4)?,
                created_game_time: r.try_get(5)?,
                updated_tick: r.try_get(6)?,
            }),
            Section::GroupMembers => records!(GroupMembers, |r| GroupMemberRecord {
                group: r.try_get(0)?,
                agent: r.try_get(1)?,
                role: r.try_get(2)?,
                joined_game_time: r.try_get(3)?,
            }),
            Section::Knowledge => {
                let mut records = Vec::with_capacity(rows.len());
                for r in rows {
                    let access: Vec<i64> = r.try_get(7)?;
                    records.push(KnowledgeRecord {
                        scope: r.try_get(0)?,
                        owner_agent: r.try_get(1)?,
                        owner_group: r.try_get(2)?,
                        subject: r.try_get(3)?,
                        predicate: r.try_get(4)?,
                        object: r.try_get(5)?,
                        text: r.try_get(6)?,
                        access_agents: self.names_of(&access, false),
                        confidence: r.try_get(8)?,
                        created_game_time: r.try_get(9)?,
                    });
                }
                Page::Knowledge(records)
            }
            Section::Schedules => records!(Schedules, |r| ScheduleRecord {
                agent: r.try_get(0)?,
                days_of_week: r.try_get(1)?,
                start_minute: r.try_get(2)?,
                end_minute: r.try_get(3)?,
                activity: r.try_get(4)?,
                location: r.try_get(5)?,
                priority: r.try_get(6)?,
                flexible: r.try_get(7)?,
                position: r.try_get(8)?,
            }),
            Section::Plans => records!(Plans, |r| PlanRecord {
                agent: r.try_get(0)?,
                id: r.try_get(1)?,
                parent_id: r.try_get(2)?,
                goal: r.try_get(3)?,
                steps: r.try_get(4)?,
                current_step: r.try_get(5)?,
                status: r.try_get(6)?,
                priority: r.try_get(7)?,
                deadline: r.try_get(8)?,
                created_game_time: r.try_get(9)?,
                updated_tick: r.try_get(10)?,
            }),
            Section::Conversations => records!(Conversations, |r| ConversationRecord {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                location: r.try_get(2)?,
                topic: r.try_get(3)?,
                started_game_time: r.try_get(4)?,
                ended_game_time: r.try_get(5)?,
            }),
            Section::Participants => records!(Participants, |r| ParticipantRecord {
                conversation: r.try_get(0)?,
                agent: r.try_get(1)?,
                character: r.try_get(2)?,
                joined_game_time: r.try_get(3)?,
                left_game_time: r.try_get(4)?,
            }),
            Section::Messages => records!(Messages, |r| MessageRecord {
                conversation: r.try_get(0)?,
                seq: r.try_get(1)?,
                speaker_agent: r
                    .try_get::<_, Option<i64>>(2)?
                    .map(|id| self.agent_name(id))
                    .transpose()?,
                speaker_character: r
                    .try_get::<_, Option<i64>>(3)?
                    .map(|id| self.character_name(id))
                    .transpose()?,
                text: r.try_get(4)?,
                emotional_tone: r.try_get(5)?,
                game_time: r.try_get(6)?,
            }),
            Section::Memories => {
                return Err(TransferError::Invalid(
                    "memories are read agent by agent".into(),
                ));
            }
            Section::LoreDocuments => records!(LoreDocuments, |r| LoreDocumentRecord {
                path: r.try_get(0)?,
                title: r.try_get(1)?,
                content_hash: r.try_get(2)?,
                created_at: r.try_get(3)?,
                updated_at: r.try_get(4)?,
            }),
            Section::LoreChunks => records!(LoreChunks, |r| LoreChunkRecord {
                document: r.try_get(0)?,
                ordinal: r.try_get(1)?,
                text: r.try_get(2)?,
                embedding: r.try_get::<_, Option<Vector>>(3)?.map(|v| v.to_vec()),
            }),
            Section::LlmCalls => {
                let mut records = Vec::with_capacity(rows.len());
                for r in rows {
                    let agent_id: Option<i64> = r.try_get(0)?;
                    let agent = agent_id.and_then(|id| self.agents.get(&id).cloned());
                    // an agent of another world, which no foreign key prevents
                    if agent_id.is_some() && agent.is_none() {
                        self.dangling += 1;
                    }
                    records.push(LlmCallRecord {
                        agent,
                        kind: r.try_get(1)?,
                        model: r.try_get(2)?,
                        prompt: r.try_get(3)?,
                        response: r.try_get(4)?,
                        latency_ms: r.try_get(5)?,
                        prompt_tokens: r.try_get(6)?,
                        completion_tokens: r.try_get(7)?,
                        error: r.try_get(8)?,
                        game_time: r.try_get(9)?,
                        created_at: r.try_get(10)?,
                    });
                }
                Page::LlmCalls(records)
            }
            Section::SimMetrics => records!(SimMetrics, |r| SimMetricRecord {
                tick: r.try_get(0)?,
                game_time: r.try_get(1)?,
                recorded_at: r.try_get(2)?,
                agents: r.try_get(3)?,
                tick_ms_p50: finite(r.try_get(4)?, "sim_metrics tick_ms_p50")?,
                tick_ms_p99: finite(r.try_get(5)?, "sim_metrics tick_ms_p99")?,
                tick_ms_max: finite(r.try_get(6)?, "sim_metrics tick_ms_max")?,
                flush_ms: finite_opt(r.try_get(7)?, "sim_metrics flush_ms")?,
                rows_flushed: r.try_get(8)?,
                queue_depth: r.try_get(9)?,
            }),
            Section::EventLog => records!(EventLog, |r| EventRecord {
                user: r
                    .try_get::<_, Option<i64>>(0)?
                    .and_then(|id| self.users.get(&id).cloned()),
                actor: r.try_get(1)?,
                action: r.try_get(2)?,
                target: r.try_get(3)?,
                details: r.try_get(4)?,
                created_at: r.try_get(5)?,
            }),
        })
    }
}

/// `value`, unless it is NaN or infinite: JSON has no such numbers, and the
/// columns read through this have no CHECK that keeps them out.
pub(super) fn finite(value: f32, what: &str) -> Result<f32, TransferError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(TransferError::Invalid(format!(
            "{what} is {value}, which a JSON document cannot hold"
        )))
    }
}

pub(super) fn finite_opt(value: Option<f32>, what: &str) -> Result<Option<f32>, TransferError> {
    value.map(|v| finite(v, what)).transpose()
}
