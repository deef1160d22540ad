//! The memory stream: turns the world's events into each agent's memories
//! (what it saw, the conversations it had, what it planned), drops repeats and
//! idle states, has the mind rate importance, keeps each agent's hot window,
//! reflects when enough has happened (focal questions, retrieval per question,
//! insights with their evidence) and once per game day writes a
//! metacognition memory that weighs the day against the agent's goals.
//! Deterministic and free of I/O: it is fed events with their game time and
//! returns the new memories; the service around it embeds and persists them.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::memory::{GameSeconds, Memory, MemoryKind};
use crate::retrieval::{Candidate, HotMemories, Query, RetrievalParams, Scored, rank};
use hearth_content::{AgentDef, DAY_MINUTES, LocationId, WorldMap};
use hearth_world::WorldEvent;
use hearth_world::mind::{ImportanceInput, Mind};
use hearth_world::schedule::ActivityLabel;

/// Game seconds in a game day.
const DAY_SECONDS: u64 = DAY_MINUTES as u64 * 60;
/// Activities that are not worth remembering: nothing happens in them.
/// Recent memory keys an agent checks for repeats.
const REPEAT_KEYS: usize = 64;
/// Lines of a conversation kept in its memory.
const LINES_KEPT: usize = 8;

/// How the stream remembers and reflects.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Summed importance of new memories that makes an agent reflect (GA: 150).
    pub reflection_threshold: u32,
    /// The same observation or plan within this many game seconds is a repeat.
    pub repeat_window: GameSeconds,
    /// How many of the latest memories focal questions are drawn from.
    pub reflect_over: usize,
    /// Focal questions per reflection (GA: 3).
    pub focal_questions: usize,
    /// Evidence memories retrieved per question (GA: 30 for reflection).
    pub evidence: usize,
    pub retrieval: RetrievalParams,
    /// Embedding dimension of the hot windows.
    pub dim: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        let retrieval = RetrievalParams::default();
        Self {
            reflection_threshold: 150,
            repeat_window: 3600,
            reflect_over: 100,
            focal_questions: 3,
            evidence: retrieval.k_reflection,
            retrieval,
            dim: 384,
        }
    }
}

/// A memory the stream just made.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMemory {
    /// The agent's index in the world.
    pub agent: u32,
    pub memory: Memory,
}

/// Counts over the stream's life, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamStats {
    pub observations: u64,
    pub conversations: u64,
    pub plans: u64,
    pub reflections: u64,
    pub metacognitions: u64,
    pub seeds: u64,
    /// Observations and plans dropped as repeats.
    pub repeats: u64,
    /// Events about idle states, not remembered.
    pub idle: u64,
}

/// Who an agent is, as the stream needs it.
#[derive(Debug, Clone)]
struct Person {
    slug: String,
    name: String,
    goals: Vec<String>,
}

/// One agent's memories and what the stream tracks for it.
#[derive(Debug)]
struct AgentMemory {
    hot: HotMemories,
    next_id: u64,
    since_reflection: u32,
    /// (hash of kind and content, when) of recent observations and plans.
    recent: VecDeque<(u64, GameSeconds)>,
    /// Ids of today's memories, for metacognition.
    today: Vec<u64>,
    /// Today's memories about each other agent (by slug), for novelty.
    seen_today: HashMap<String, u32>,
}

/// A conversation being heard.
#[derive(Debug, Clone)]
struct OpenTalk {
    participants: Vec<u32>,
    location: Option<LocationId>,
    lines: Vec<(u32, String)>,
    /// Affection change of each participant toward the others, so far.
    affection: HashMap<u32, f32>,
}

/// Every agent's memory stream.
#[derive(Debug)]
pub struct MemoryStream {
    config: StreamConfig,
    people: Vec<Person>,
    places: Vec<String>,
    agents: Vec<AgentMemory>,
    talks: HashMap<u64, OpenTalk>,
    /// (agent, other) → (affection, trust), as last reported.
    bonds: HashMap<(u32, u32), (f32, f32)>,
    /// The game day of the last events, for metacognition at its end.
    day: Option<u64>,
    stats: StreamStats,
    /// By agent: whether its reflections are made by its model (the stream
    /// then only says when one is due).
    by_model: Vec<bool>,
    due_reflections: Vec<u32>,
}

impl MemoryStream {
    /// A stream for these agents (in world index order) on this map.
    pub fn new(config: StreamConfig, agents: &[AgentDef], map: &WorldMap) -> Self {
        let slugs: HashMap<&str, u32> = agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.file.id.as_str(), i as u32))
            .collect();
        let mut bonds = HashMap::new();
        for (i, a) in agents.iter().enumerate() {
            for r in &a.file.relationships {
                if let Some(&j) = slugs.get(r.target.as_str()) {
                    bonds.insert((i as u32, j), (r.affection, r.trust));
                }
            }
        }
        Self {
            people: agents
                .iter()
                .map(|a| Person {
                    slug: a.file.id.clone(),
                    name: a.file.name.clone(),
                    goals: std::iter::once(a.file.goals.primary.clone())
                        .chain(a.file.goals.secondary.iter().cloned())
                        .collect(),
                })
                .collect(),
            places: map.locations.iter().map(|l| l.name.clone()).collect(),
            agents: agents
                .iter()
                .map(|_| AgentMemory {
                    hot: HotMemories::new(config.dim, config.retrieval.hot_window),
                    next_id: 1,
                    since_reflection: 0,
                    recent: VecDeque::new(),
                    today: Vec::new(),
                    seen_today: HashMap::new(),
                })
                .collect(),
            config,
            talks: HashMap::new(),
            bonds,
            day: None,
            stats: StreamStats::default(),
            by_model: Vec::new(),
            due_reflections: Vec::new(),
        }
    }

    /// Takes reloaded content (the world's agents at their indices, new ones
    /// after them): names, goals and place names come from it from now on;
    /// memories, windows and bonds are kept, and agents that joined get
    /// empty windows.
    pub fn set_content(&mut self, agents: &[AgentDef], map: &WorldMap) {
        for (person, a) in self.people.iter_mut().zip(agents) {
            if person.slug != a.file.id {
                continue;
            }
            person.name = a.file.name.clone();
            person.goals = std::iter::once(a.file.goals.primary.clone())
                .chain(a.file.goals.secondary.iter().cloned())
                .collect();
        }
        // agents that joined the world: new, empty windows after the others,
        // and the bonds their files seed
        let first_new = self.people.len();
        for a in agents.iter().skip(first_new) {
            self.people.push(Person {
                slug: a.file.id.clone(),
                name: a.file.name.clone(),
                goals: std::iter::once(a.file.goals.primary.clone())
                    .chain(a.file.goals.secondary.iter().cloned())
                    .collect(),
            });
        }
        for (i, a) in agents.iter().enumerate().skip(first_new) {
            for r in &a.file.relationships {
                if let Some(j) = self.people.iter().position(|p| p.slug == r.target) {
                    self.bonds
                        .insert((i as u32, j as u32), (r.affection, r.trust));
                }
            }
        }
        while self.agents.len() < self.people.len() {
            self.agents.push(AgentMemory {
                hot: HotMemories::new(self.config.dim, self.config.retrieval.hot_window),
                next_id: 1,
                since_reflection: 0,
                recent: VecDeque::new(),
                today: Vec::new(),
                seen_today: HashMap::new(),
            });
        }
        self.places = map.locations.iter().map(|l| l.name.clone()).collect();
    }

    /// Has the agents marked in `agents` (by index) reflect through their
    /// model: when a reflection is due, the stream resets the agent's tally
    /// and lists it for [`MemoryStream::take_due_reflections`] instead of
    /// reflecting by rule.
    pub fn reflect_by_model(&mut self, agents: Vec<bool>) {
        self.by_model = agents;
    }

    /// Agents whose reflection became due since the last call.
    pub fn take_due_reflections(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.due_reflections)
    }

    /// The rule-based reflection, for an agent whose model failed.
    pub fn reflect_by_rule(
        &mut self,
        agent: u32,
        now: GameSeconds,
        mind: &dyn Mind,
    ) -> Vec<NewMemory> {
        self.reflect(agent, now, mind)
    }

    /// `agent`'s latest `n` memories, newest first, leaving out looks back.
    pub fn latest(&self, agent: u32, n: usize) -> Vec<Memory> {
        let Some(a) = self.agents.get(agent as usize) else {
            return Vec::new();
        };
        let mut v: Vec<&Memory> = a
            .hot
            .iter()
            .filter(|m| m.kind != MemoryKind::Metacognition)
            .collect();
        v.sort_by_key(|m| std::cmp::Reverse(m.id));
        v.into_iter().take(n).cloned().collect()
    }

    /// Changes memory `id` of `agent` in its window (a rating or wording
    /// from the model) and returns it as changed; `None` when not held.
    pub fn revise(
        &mut self,
        agent: u32,
        id: u64,
        change: impl FnOnce(&mut Memory),
    ) -> Option<Memory> {
        let a = self.agents.get_mut(agent as usize)?;
        let mut m = a.hot.get(id)?.clone();
        change(&mut m);
        a.hot.push(&m);
        Some(m)
    }

    /// A reflection the model drew: `text`, resting on the memories
    /// `evidence` (ids the agent does not hold are left out; `None` when
    /// none is left). Its feeling, depth, people and place come from the
    /// evidence.
    pub fn add_insight(
        &mut self,
        agent: u32,
        text: &str,
        evidence: &[u64],
        now: GameSeconds,
        mind: &dyn Mind,
    ) -> Option<NewMemory> {
        let a = self.agents.get(agent as usize)?;
        let mut ids: Vec<u64> = evidence.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let found: Vec<&Memory> = ids.iter().filter_map(|&id| a.hot.get(id)).collect();
        if found.is_empty() || text.trim().is_empty() {
            return None;
        }
        let valence = found.iter().map(|m| m.valence).sum::<f32>() / found.len() as f32;
        let related = most_common(found.iter().flat_map(|m| m.related_agents.iter()));
        let location = most_common(found.iter().filter_map(|m| m.location.as_ref()));
        let depth = 1 + found.iter().map(|m| m.depth).max().unwrap_or(0);
        let importance = mind.importance(&ImportanceInput {
            kind: MemoryKind::Reflection,
            bond: None,
            novelty: 0.5,
            intensity: valence.abs(),
        });
        let memory = Memory {
            valence,
            intensity: valence.abs(),
            tags: vec!["reflection".to_owned()],
            related_agents: related.into_iter().collect(),
            location,
            depth: depth.min(64),
            evidence: found.iter().map(|m| m.id).collect(),
            ..Memory::new(
                0,
                MemoryKind::Reflection,
                text.trim().chars().take(1000).collect::<String>(),
                importance,
                now,
            )
        };
        self.stats.reflections += 1;
        Some(self.remember(agent, memory))
    }

    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// Agents in the stream.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// The slug of agent `agent`.
    pub fn slug(&self, agent: u32) -> Option<&str> {
        self.people.get(agent as usize).map(|p| p.slug.as_str())
    }

    /// The agent whose slug is `slug`.
    pub fn agent(&self, slug: &str) -> Option<u32> {
        self.people
            .iter()
            .position(|p| p.slug == slug)
            .map(|i| i as u32)
    }

    /// Memory `id` of `agent`, if still in its hot window.
    pub fn memory(&self, agent: u32, id: u64) -> Option<&Memory> {
        self.agents.get(agent as usize)?.hot.get(id)
    }

    /// Every memory in `agent`'s hot window (in no particular order).
    pub fn memories(&self, agent: u32) -> impl Iterator<Item = &Memory> {
        self.agents
            .get(agent as usize)
            .into_iter()
            .flat_map(|a| a.hot.iter())
    }

    /// Stores the embedding of a memory; `false` if it left the window.
    pub fn set_embedding(&mut self, agent: u32, id: u64, embedding: &[f32]) -> bool {
        self.agents
            .get_mut(agent as usize)
            .is_some_and(|a| a.hot.set_embedding(id, embedding))
    }

    /// The top `k` memories of `agent` for a query, scored as configured;
    /// each retrieved memory's last access becomes `now`.
    pub fn retrieve(
        &mut self,
        agent: u32,
        embedding: Option<&[f32]>,
        now: GameSeconds,
        k: usize,
    ) -> Vec<(Scored, Memory)> {
        let params = self.config.retrieval;
        let Some(a) = self.agents.get_mut(agent as usize) else {
            return Vec::new();
        };
        let scored = a.hot.retrieve(&Query::new(&params, embedding, now, k));
        scored
            .into_iter()
            .filter_map(|s| a.hot.get(s.id).map(|m| (s, m.clone())))
            .collect()
    }

    /// Puts back memories loaded from storage (oldest first), e.g. on resume.
    pub fn restore(&mut self, agent: u32, memory: Memory, embedding: Option<&[f32]>) {
        let Some(a) = self.agents.get_mut(agent as usize) else {
            return;
        };
        a.next_id = a.next_id.max(memory.id + 1);
        // what was remembered just before a restart is still a repeat after it
        if matches!(memory.kind, MemoryKind::Observation | MemoryKind::Plan) {
            if a.recent.len() >= REPEAT_KEYS {
                a.recent.pop_front();
            }
            a.recent.push_back((
                fnv1a(memory.kind.as_str().as_bytes(), memory.content.as_bytes()),
                memory.created,
            ));
        }
        let id = memory.id;
        a.hot.push(&memory);
        if let Some(e) = embedding {
            a.hot.set_embedding(id, e);
        }
    }

    /// The seed memories of the agents' files, made at `now`: the mind rates
    /// those the designer did not.
    pub fn seed(&mut self, defs: &[AgentDef], mind: &dyn Mind, now: GameSeconds) -> Vec<NewMemory> {
        let mut out = Vec::new();
        for (i, def) in defs.iter().enumerate().take(self.agents.len()) {
            out.extend(self.seed_agent(i as u32, def, mind, now));
        }
        out
    }

    /// The seed memories of agent `agent`'s file `def`, made at `now`.
    pub fn seed_agent(
        &mut self,
        agent: u32,
        def: &AgentDef,
        mind: &dyn Mind,
        now: GameSeconds,
    ) -> Vec<NewMemory> {
        let mut out = Vec::new();
        if agent as usize >= self.agents.len() {
            return out;
        }
        for seed in &def.file.memories {
            let rated = mind.importance(&ImportanceInput {
                kind: MemoryKind::Observation,
                bond: None,
                novelty: 1.0,
                intensity: 0.0,
            });
            let memory = Memory {
                tags: seed.tags.clone(),
                ..Memory::new(
                    0,
                    MemoryKind::Observation,
                    seed.content.clone(),
                    seed.importance.unwrap_or(rated),
                    now,
                )
            };
            self.stats.seeds += 1;
            out.push(self.remember(agent, memory));
        }
        out
    }

    /// Takes in one tick's events, which happened at game time `now`, and
    /// returns the memories they made (reflections and metacognition
    /// included), in a deterministic order.
    pub fn ingest(
        &mut self,
        now: GameSeconds,
        events: &[(u64, WorldEvent)],
        mind: &dyn Mind,
    ) -> Vec<NewMemory> {
        let mut out = Vec::new();
        let day = now / DAY_SECONDS;
        if let Some(last) = self.day
            && day > last
        {
            // the day just ended: look back on it before today's events
            for agent in 0..self.agents.len() as u32 {
                if let Some(m) = self.metacognition(agent, last, now, mind) {
                    out.push(m);
                }
            }
        }
        self.day = Some(day);
        for (_, event) in events {
            self.event(now, event, mind, &mut out);
        }
        let mut due: Vec<u32> = out
            .iter()
            .map(|m| m.agent)
            .filter(|&a| {
                self.agents[a as usize].since_reflection >= self.config.reflection_threshold
            })
            .collect();
        due.sort_unstable();
        due.dedup();
        for agent in due {
            if self.by_model.get(agent as usize).copied().unwrap_or(false) {
                self.agents[agent as usize].since_reflection = 0;
                self.due_reflections.push(agent);
            } else {
                out.extend(self.reflect(agent, now, mind));
            }
        }
        out
    }

    fn event(
        &mut self,
        now: GameSeconds,
        event: &WorldEvent,
        mind: &dyn Mind,
        out: &mut Vec<NewMemory>,
    ) {
        match event {
            WorldEvent::Perceived {
                agent,
                other,
                activity,
                location,
                ..
            } => {
                if ActivityLabel::parse(activity).is_unoccupied() {
                    self.stats.idle += 1;
                    return;
                }
                if (*agent as usize) >= self.agents.len() {
                    return;
                }
                let Some(them) = self.people.get(*other as usize) else {
                    return;
                };
                let place = location.and_then(|l| self.places.get(usize::from(l)).cloned());
                let content = match &place {
                    Some(p) => format!("{} was at {}: {}", them.name, p, lower(activity)),
                    None => format!("{} was nearby: {}", them.name, lower(activity)),
                };
                let related = them.slug.clone();
                if self.repeat(*agent, MemoryKind::Observation, &content, now) {
                    self.stats.repeats += 1;
                    return;
                }
                let bond = self.bonds.get(&(*agent, *other)).copied();
                let novelty = self.novelty(*agent, &related);
                let importance = mind.importance(&ImportanceInput {
                    kind: MemoryKind::Observation,
                    bond,
                    novelty,
                    intensity: 0.0,
                });
                let mut tags = vec![lower(activity)];
                tags.extend(place.clone());
                let memory = Memory {
                    tags,
                    related_agents: vec![related],
                    location: place,
                    ..Memory::new(0, MemoryKind::Observation, content, importance, now)
                };
                self.stats.observations += 1;
                out.push(self.remember(*agent, memory));
            }
            WorldEvent::PlanChanged { agent, goal, .. } => {
                if ActivityLabel::parse(goal).is_unoccupied()
                    || (*agent as usize) >= self.agents.len()
                {
                    self.stats.idle += 1;
                    return;
                }
                let content = format!("I planned to {}", lower(goal));
                if self.repeat(*agent, MemoryKind::Plan, &content, now) {
                    self.stats.repeats += 1;
                    return;
                }
                let importance = mind.importance(&ImportanceInput {
                    kind: MemoryKind::Plan,
                    bond: None,
                    novelty: 0.5,
                    intensity: 0.0,
                });
                let memory = Memory {
                    tags: vec![lower(goal)],
                    ..Memory::new(0, MemoryKind::Plan, content, importance, now)
                };
                self.stats.plans += 1;
                out.push(self.remember(*agent, memory));
            }
            WorldEvent::DayPlanned {
                agent, wake, items, ..
            } => {
                if (*agent as usize) >= self.agents.len() || items.is_empty() {
                    return;
                }
                let content: String = format!(
                    "My plan for today: wake up at {wake}; {}.",
                    items.join("; ").trim_end_matches('.')
                )
                .chars()
                .take(1500)
                .collect();
                let importance = mind.importance(&ImportanceInput {
                    kind: MemoryKind::Plan,
                    bond: None,
                    novelty: 1.0,
                    intensity: 0.0,
                });
                let memory = Memory {
                    tags: vec!["day plan".to_owned()],
                    ..Memory::new(0, MemoryKind::Plan, content, importance, now)
                };
                self.stats.plans += 1;
                out.push(self.remember(*agent, memory));
            }
            WorldEvent::ConversationStarted {
                conversation,
                participants,
                location,
            } => {
                self.talks.insert(
                    *conversation,
                    OpenTalk {
                        participants: participants.clone(),
                        location: *location,
                        lines: Vec::new(),
                        affection: HashMap::new(),
                    },
                );
            }
            WorldEvent::Line {
                conversation,
                speaker,
                text,
                ..
            } => {
                if let Some(t) = self.talks.get_mut(conversation) {
                    t.lines.push((*speaker, text.clone()));
                }
            }
            WorldEvent::RelationshipChanged {
                agent,
                other,
                affection,
                trust,
            } => {
                let before = self
                    .bonds
                    .insert((*agent, *other), (*affection, *trust))
                    .map_or(0.0, |b| b.0);
                for t in self.talks.values_mut() {
                    if t.participants.contains(agent) && t.participants.contains(other) {
                        *t.affection.entry(*agent).or_default() += affection - before;
                    }
                }
            }
            WorldEvent::ConversationEnded { conversation, .. } => {
                if let Some(talk) = self.talks.remove(conversation) {
                    self.conversation_memories(&talk, now, mind, out);
                }
            }
            WorldEvent::AgentAnswered {
                agent,
                character,
                heard,
                text,
                ..
            } => {
                if (*agent as usize) >= self.agents.len() {
                    return;
                }
                // a player's line and the agent's answer: one exchange
                let content: String =
                    format!("{character} said to me: \"{heard}\" I answered: \"{text}\"")
                        .chars()
                        .take(1500)
                        .collect();
                let related = format!("c:{character}");
                let novelty = self.novelty(*agent, &related);
                let importance = mind.importance(&ImportanceInput {
                    kind: MemoryKind::Conversation,
                    bond: None,
                    novelty,
                    intensity: 0.3,
                });
                let memory = Memory {
                    valence: 0.3,
                    intensity: 0.3,
                    tags: vec!["conversation".to_owned(), character.clone()],
                    related_agents: vec![related],
                    ..Memory::new(0, MemoryKind::Conversation, content, importance, now)
                };
                self.stats.conversations += 1;
                out.push(self.remember(*agent, memory));
            }
            WorldEvent::ActivityChanged { .. }
            | WorldEvent::Arrived { .. }
            | WorldEvent::Woke { .. }
            | WorldEvent::FellAsleep { .. }
            | WorldEvent::PlayerSaid { .. }
            | WorldEvent::PlayerTalkStarted { .. }
            | WorldEvent::PlayerTalkEnded { .. }
            | WorldEvent::CharacterTieChanged { .. }
            | WorldEvent::Interacted { .. }
            | WorldEvent::LineWanted(_)
            | WorldEvent::PlanWanted(_)
            | WorldEvent::ContentReloaded(_) => {}
        }
    }

    /// One memory per participant of a finished conversation: who, where and
    /// what was said, felt as the participant's affection moved.
    fn conversation_memories(
        &mut self,
        talk: &OpenTalk,
        now: GameSeconds,
        mind: &dyn Mind,
        out: &mut Vec<NewMemory>,
    ) {
        if talk.lines.is_empty() {
            return;
        }
        let place = talk
            .location
            .and_then(|l| self.places.get(usize::from(l)).cloned());
        let people = &self.people;
        let name = |i: u32| {
            people
                .get(i as usize)
                .map_or_else(|| format!("agent {i}"), |p| p.name.clone())
        };
        let names_of: HashMap<u32, String> =
            talk.participants.iter().map(|&p| (p, name(p))).collect();
        let mut said = String::new();
        for (speaker, text) in talk.lines.iter().take(LINES_KEPT) {
            said.push_str(&format!(" {}: \"{}\"", name(*speaker), text));
        }
        if talk.lines.len() > LINES_KEPT {
            said.push_str(&format!(
                " (and {} more lines)",
                talk.lines.len() - LINES_KEPT
            ));
        }
        for &me in &talk.participants {
            if (me as usize) >= self.agents.len() {
                continue;
            }
            let others: Vec<u32> = talk
                .participants
                .iter()
                .copied()
                .filter(|&p| p != me)
                .collect();
            let names = join_names(
                &others
                    .iter()
                    .filter_map(|o| names_of.get(o).cloned())
                    .collect::<Vec<_>>(),
            );
            let mut content = match &place {
                Some(p) => format!("I talked with {names} at {p}."),
                None => format!("I talked with {names}."),
            };
            content.push_str(&said);
            let content: String = content.chars().take(1500).collect();
            let change = talk.affection.get(&me).copied().unwrap_or(0.0);
            let valence = (change / 10.0).clamp(-1.0, 1.0);
            let bond = others
                .iter()
                .filter_map(|o| self.bonds.get(&(me, *o)).copied())
                .max_by(|a, b| (a.0.abs() + a.1).total_cmp(&(b.0.abs() + b.1)));
            let related: Vec<String> = others
                .iter()
                .filter_map(|&o| self.people.get(o as usize).map(|p| p.slug.clone()))
                .collect();
            let novelty = related
                .iter()
                .map(|r| self.novelty(me, r))
                .fold(0.0f32, f32::max);
            let importance = mind.importance(&ImportanceInput {
                kind: MemoryKind::Conversation,
                bond,
                novelty,
                intensity: valence.abs(),
            });
            let memory = Memory {
                valence,
                intensity: valence.abs(),
                tags: vec!["conversation".to_owned()],
                related_agents: related,
                location: place.clone(),
                ..Memory::new(0, MemoryKind::Conversation, content, importance, now)
            };
            self.stats.conversations += 1;
            out.push(self.remember(me, memory));
        }
    }

    /// Whether `agent` remembered the same thing within the repeat window
    /// (and if not, notes it).
    fn repeat(&mut self, agent: u32, kind: MemoryKind, content: &str, now: GameSeconds) -> bool {
        let Some(a) = self.agents.get_mut(agent as usize) else {
            return true;
        };
        let key = fnv1a(kind.as_str().as_bytes(), content.as_bytes());
        let window = self.config.repeat_window;
        if a.recent
            .iter()
            .any(|&(k, at)| k == key && now.saturating_sub(at) < window)
        {
            return true;
        }
        if a.recent.len() >= REPEAT_KEYS {
            a.recent.pop_front();
        }
        a.recent.push_back((key, now));
        false
    }

    /// How new `other` is to `agent` today: 1 if no memory of today's is
    /// about them, falling with each one that is (a count kept as memories
    /// are made, so this is O(1) however long the agent's history).
    fn novelty(&self, agent: u32, other: &str) -> f32 {
        let Some(a) = self.agents.get(agent as usize) else {
            return 0.0;
        };
        let seen = a.seen_today.get(other).copied().unwrap_or(0);
        1.0 / (1.0 + seen as f32)
    }

    /// Gives the memory its id, keeps it in the agent's window and counts
    /// its importance toward the next reflection.
    fn remember(&mut self, agent: u32, mut memory: Memory) -> NewMemory {
        if let Some(a) = self.agents.get_mut(agent as usize) {
            memory.id = a.next_id;
            a.next_id += 1;
            a.since_reflection += u32::from(memory.importance);
            a.today.push(memory.id);
            for r in &memory.related_agents {
                *a.seen_today.entry(r.clone()).or_default() += 1;
            }
            a.hot.push(&memory);
        }
        NewMemory { agent, memory }
    }

    /// Reflection: the subjects that fill the agent's latest memories become
    /// focal questions ("What do I make of Bo?", "What happens to me at the
    /// bakery?"); each retrieves its evidence with the retrieval score
    /// (relevance: whether a memory is about the subject) and yields an
    /// insight drawn from that evidence.
    fn reflect(&mut self, agent: u32, now: GameSeconds, mind: &dyn Mind) -> Vec<NewMemory> {
        let Some(a) = self.agents.get_mut(agent as usize) else {
            return Vec::new();
        };
        a.since_reflection = 0;
        let mut latest: Vec<&Memory> = a.hot.iter().collect();
        latest.sort_by_key(|m| std::cmp::Reverse(m.id));
        latest.truncate(self.config.reflect_over);
        // subjects weighted by the importance of the memories about them
        let mut weight: BTreeMap<Subject, u32> = BTreeMap::new();
        for m in &latest {
            for r in &m.related_agents {
                *weight.entry(Subject::Person(r.clone())).or_default() += u32::from(m.importance);
            }
            if let Some(l) = &m.location {
                *weight.entry(Subject::Place(l.clone())).or_default() += u32::from(m.importance);
            }
        }
        let mut subjects: Vec<(Subject, u32)> = weight.into_iter().collect();
        subjects.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
        subjects.truncate(self.config.focal_questions);
        let params = self.config.retrieval;
        let mut out = Vec::new();
        for (subject, _) in subjects {
            let Some(a) = self.agents.get_mut(agent as usize) else {
                break;
            };
            let candidates: Vec<Candidate> = a
                .hot
                .iter()
                .filter(|m| m.kind != MemoryKind::Metacognition)
                .map(|m| Candidate {
                    id: m.id,
                    created: m.created,
                    last_accessed: m.last_accessed,
                    importance: m.importance,
                    similarity: Some(if subject.about(m) { 1.0 } else { 0.0 }),
                    valence: m.valence,
                    intensity: m.intensity,
                })
                .collect();
            let query = Query::new(&params, None, now, self.config.evidence);
            let evidence: Vec<Memory> = rank(&candidates, &query)
                .into_iter()
                .filter_map(|s| a.hot.get(s.id))
                .filter(|m| subject.about(m))
                .cloned()
                .collect();
            if evidence.len() < 2 {
                continue;
            }
            for m in &evidence {
                let mut touched = m.clone();
                touched.last_accessed = touched.last_accessed.max(now);
                a.hot.push(&touched);
            }
            if let Some(insight) = self.insight(agent, &subject, &evidence, now, mind) {
                self.stats.reflections += 1;
                out.push(self.remember(agent, insight));
            }
        }
        out
    }

    /// What the evidence about a subject adds up to, in the agent's words.
    fn insight(
        &self,
        agent: u32,
        subject: &Subject,
        evidence: &[Memory],
        now: GameSeconds,
        mind: &dyn Mind,
    ) -> Option<Memory> {
        let valence = evidence.iter().map(|m| m.valence).sum::<f32>() / evidence.len() as f32;
        let talks = evidence
            .iter()
            .filter(|m| m.kind == MemoryKind::Conversation)
            .count();
        let seen = evidence
            .iter()
            .filter(|m| m.kind == MemoryKind::Observation)
            .count();
        let doing = most_common(
            evidence
                .iter()
                .filter(|m| m.kind == MemoryKind::Observation)
                .filter_map(|m| m.tags.first()),
        );
        let (content, related, location) = match subject {
            Subject::Person(slug) => {
                let name = self.people.iter().find(|p| &p.slug == slug)?.name.clone();
                let place = most_common(evidence.iter().filter_map(|m| m.location.as_ref()));
                let feeling = if valence > 0.15 {
                    "I enjoy their company"
                } else if valence < -0.15 {
                    "our talks tend to leave me on edge"
                } else {
                    "they are becoming a familiar face"
                };
                let content = if talks >= 2 {
                    format!("{name} and I talk often ({talks} conversations lately); {feeling}.")
                } else {
                    let mut s = format!("I keep seeing {name}");
                    if let Some(p) = &place {
                        s.push_str(&format!(" at {p}"));
                    }
                    if let Some(d) = &doing {
                        s.push_str(&format!(", usually {d}"));
                    }
                    s.push_str(&format!(
                        " ({seen} times lately); it seems to be their routine."
                    ));
                    s
                };
                (content, vec![slug.clone()], place)
            }
            Subject::Place(place) => {
                let people = most_common(evidence.iter().flat_map(|m| m.related_agents.iter()))
                    .and_then(|s| self.people.iter().find(|p| p.slug == s))
                    .map(|p| p.name.clone());
                let mut content = format!(
                    "Much of my life lately happens at {place}: {} of my recent memories are from there",
                    evidence.len()
                );
                if let Some(who) = people {
                    content.push_str(&format!(", and {who} is usually there too"));
                }
                if let Some(goal) = self
                    .people
                    .get(agent as usize)
                    .and_then(|p| p.goals.first())
                    && shares_word(goal, place)
                {
                    content.push_str(&format!(
                        "; it is where my aim to {} takes shape",
                        lower(goal)
                    ));
                }
                content.push('.');
                (content, Vec::new(), Some(place.clone()))
            }
        };
        let importance = mind.importance(&ImportanceInput {
            kind: MemoryKind::Reflection,
            bond: None,
            novelty: 0.5,
            intensity: valence.abs(),
        });
        let depth = 1 + evidence.iter().map(|m| m.depth).max().unwrap_or(0);
        Some(Memory {
            valence,
            intensity: valence.abs(),
            tags: vec!["reflection".to_owned()],
            related_agents: related,
            location,
            depth: depth.min(64),
            evidence: evidence.iter().map(|m| m.id).collect(),
            ..Memory::new(0, MemoryKind::Reflection, content, importance, now)
        })
    }

    /// The end-of-day look back: what filled the day, whom the agent talked
    /// to, and whether it served the agent's primary goal.
    fn metacognition(
        &mut self,
        agent: u32,
        day: u64,
        now: GameSeconds,
        mind: &dyn Mind,
    ) -> Option<NewMemory> {
        let a = self.agents.get_mut(agent as usize)?;
        a.seen_today.clear();
        let today = std::mem::take(&mut a.today);
        let memories: Vec<&Memory> = today.iter().filter_map(|id| a.hot.get(*id)).collect();
        if memories.is_empty() {
            return None;
        }
        let goal = self.people.get(agent as usize)?.goals.first()?.clone();
        let plans: Vec<String> = {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for m in memories.iter().filter(|m| m.kind == MemoryKind::Plan) {
                if let Some(t) = m.tags.first() {
                    *counts.entry(t.as_str()).or_default() += 1;
                }
            }
            let mut v: Vec<(&str, usize)> = counts.into_iter().collect();
            v.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
            v.into_iter().take(3).map(|(t, _)| t.to_owned()).collect()
        };
        let mut talked: Vec<String> = memories
            .iter()
            .filter(|m| m.kind == MemoryKind::Conversation)
            .flat_map(|m| m.related_agents.iter())
            .filter_map(|s| {
                self.people
                    .iter()
                    .find(|p| &p.slug == s)
                    .map(|p| p.name.clone())
            })
            .collect();
        talked.sort();
        talked.dedup();
        let mood = memories.iter().map(|m| m.valence).sum::<f32>() / memories.len() as f32;
        let mut content = format!("Looking back on day {}: ", day + 1);
        if plans.is_empty() {
            content.push_str("I drifted through the day without much of a plan");
        } else {
            content.push_str(&format!("I spent it mostly on {}", join_names(&plans)));
        }
        if talked.is_empty() {
            content.push_str(", and I talked with nobody. ");
        } else {
            content.push_str(&format!(", and I talked with {}. ", join_names(&talked)));
        }
        let served = plans.iter().find(|p| shares_word(&goal, p));
        match served {
            Some(p) => content.push_str(&format!(
                "My aim is to {}: {} moved me toward it.",
                lower(&goal),
                p
            )),
            None => content.push_str(&format!(
                "My aim is to {}, and I did little toward it today; tomorrow I should make time for it.",
                lower(&goal)
            )),
        }
        let mut evidence: Vec<&Memory> = memories.clone();
        evidence.sort_by(|x, y| y.importance.cmp(&x.importance).then(x.id.cmp(&y.id)));
        evidence.truncate(20);
        let importance = mind.importance(&ImportanceInput {
            kind: MemoryKind::Metacognition,
            bond: None,
            novelty: 0.5,
            intensity: mood.abs(),
        });
        let memory = Memory {
            valence: mood.clamp(-1.0, 1.0),
            intensity: mood.abs().min(1.0),
            tags: vec!["metacognition".to_owned(), format!("day {}", day + 1)],
            depth: 1 + evidence.iter().map(|m| m.depth).max().unwrap_or(0).min(63),
            evidence: evidence.iter().map(|m| m.id).collect(),
            ..Memory::new(0, MemoryKind::Metacognition, content, importance, now)
        };
        self.stats.metacognitions += 1;
        let made = self.remember(agent, memory);
        // the look back belongs to no day's tally
        if let Some(a) = self.agents.get_mut(agent as usize) {
            a.today.clear();
        }
        Some(made)
    }
}

/// What a focal question is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Subject {
    Person(String),
    Place(String),
}

impl Subject {
    fn about(&self, m: &Memory) -> bool {
        match self {
            Subject::Person(slug) => m.related_agents.iter().any(|r| r == slug),
            Subject::Place(place) => m.location.as_deref() == Some(place.as_str()),
        }
    }
}

/// The most frequent item (ties: the first in order).
fn most_common<'a>(items: impl Iterator<Item = &'a String>) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for i in items {
        *counts.entry(i.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|x, y| x.1.cmp(&y.1).then(y.0.cmp(x.0)))
        .map(|(s, _)| s.to_owned())
}

/// "A", "A and B", "A, B and C".
fn join_names(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {}", rest.join(", "), last),
    }
}

/// Lower-cases the first letter ("Bake bread" → "bake bread").
fn lower(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Whether two phrases share a content word (four letters or more, so "the"
/// and "at" don't count; "bakery" and "bake" share the stem "bake").
fn shares_word(a: &str, b: &str) -> bool {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() >= 4)
            .map(|w| w.to_lowercase())
            .collect()
    };
    let (wa, wb) = (words(a), words(b));
    wa.iter().any(|x| {
        wb.iter()
            .any(|y| x == y || x.chars().take(4).eq(y.chars().take(4)))
    })
}

/// FNV-1a over two byte strings: a fixed, seedless hash, so repeat detection
/// is the same on every run (std's hasher is randomly seeded).
fn fnv1a(a: &[u8], b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in a.iter().chain([0u8].iter()).chain(b) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use hearth_content::validate;
    use hearth_world::mind::RuleMind;
    use hearth_world::testkit;

    const HOUR: u64 = 3600;

    /// Three agents ("ada", "bo", "cy") on a generated map; ada likes bo.
    fn stream() -> (MemoryStream, Vec<AgentDef>, WorldMap) {
        let mut defs: Vec<AgentDef> = ["ada", "bo", "cy"]
            .iter()
            .map(|id| testkit::def(id, "Bake the best bread in the valley", vec![]))
            .collect();
        defs[0]
            .file
            .relationships
            .push(hearth_content::agent::RelationshipSeed {
                target: "bo".into(),
                kind: "friend".into(),
                affection: 60.0,
                trust: 70.0,
            });
        let map = WorldMap::generate(40, 30, 6, 1);
        let s = MemoryStream::new(StreamConfig::default(), &defs, &map);
        (s, defs, map)
    }

    #[test]
    fn reloaded_content_renames_and_makes_room_for_agents_that_join() {
        let (mut s, mut defs, map) = stream();
        let remembered = s.memories(0).count();
        defs[0].file.name = "Ada Renamed".into();
        let mut di = testkit::def("di", "Sail the river", vec![]);
        di.file
            .relationships
            .push(hearth_content::agent::RelationshipSeed {
                target: "ada".into(),
                kind: "friend".into(),
                affection: 40.0,
                trust: 50.0,
            });
        defs.push(di);
        s.set_content(&defs, &map);
        assert_eq!(s.people[0].name, "Ada Renamed");
        assert_eq!(s.memories(0).count(), remembered, "ada's memories stay");
        assert_eq!(s.len(), 4, "a window for di");
        assert_eq!(s.slug(3), Some("di"));
        assert_eq!(
            s.bonds.get(&(3, 0)),
            Some(&(40.0, 50.0)),
            "di's file seeds her bond"
        );
        // di remembers what she perceives like anyone
        let made = s.ingest(HOUR, &[seen(3, 0, "baking bread")], &RuleMind);
        assert!(made.iter().any(|m| m.agent == 3), "{made:?}");
    }

    fn seen(agent: u32, other: u32, activity: &str) -> (u64, WorldEvent) {
        (
            1,
            WorldEvent::Perceived {
                agent,
                other,
                activity: activity.into(),
                location: Some(1),
                distance: 1.0,
            },
        )
    }

    /// A whole conversation between ada and bo in which ada's affection rises.
    fn talk(id: u64, warmth: f32) -> Vec<(u64, WorldEvent)> {
        vec![
            (
                1,
                WorldEvent::ConversationStarted {
                    conversation: id,
                    participants: vec![0, 1],
                    location: Some(1),
                },
            ),
            (
                1,
                WorldEvent::Line {
                    conversation: id,
                    turn: 0,
                    speaker: 0,
                    text: "Morning! The rye came out well.".into(),
                },
            ),
            (
                1,
                WorldEvent::RelationshipChanged {
                    agent: 0,
                    other: 1,
                    affection: 60.0 + warmth,
                    trust: 70.0,
                },
            ),
            (
                1,
                WorldEvent::Line {
                    conversation: id,
                    turn: 1,
                    speaker: 1,
                    text: "It smells wonderful.".into(),
                },
            ),
            (
                1,
                WorldEvent::ConversationEnded {
                    conversation: id,
                    participants: vec![0, 1],
                    turns: 2,
                },
            ),
        ]
    }

    #[test]
    fn observations_are_remembered_once_per_window_and_idle_states_never() {
        let (mut s, _, map) = stream();
        let place = map.locations[1].name.clone();
        let first = s.ingest(8 * HOUR, &[seen(0, 1, "Bake bread")], &RuleMind);
        assert_eq!(first.len(), 1);
        let m = &first[0].memory;
        assert_eq!(
            (first[0].agent, m.id, m.kind),
            (0, 1, MemoryKind::Observation)
        );
        assert_eq!(m.content, format!("bo was at {place}: bake bread"));
        assert_eq!(m.related_agents, vec!["bo".to_owned()]);
        assert_eq!(m.location.as_deref(), Some(place.as_str()));
        // the same sight ten minutes later is a repeat; free time is idle
        let again = s.ingest(
            8 * HOUR + 600,
            &[seen(0, 1, "Bake bread"), seen(0, 2, "free time")],
            &RuleMind,
        );
        assert!(again.is_empty());
        assert_eq!((s.stats().repeats, s.stats().idle), (1, 1));
        // after the window it is news again, with the next id
        let later = s.ingest(9 * HOUR + 1, &[seen(0, 1, "Bake bread")], &RuleMind);
        assert_eq!(later[0].memory.id, 2);
    }

    #[test]
    fn the_mind_rates_a_friend_above_a_stranger() {
        let (mut s, _, _) = stream();
        let made = s.ingest(
            8 * HOUR,
            &[seen(0, 1, "sweep"), seen(0, 2, "sweep")],
            &RuleMind,
        );
        let (friend, stranger) = (made[0].memory.importance, made[1].memory.importance);
        assert!(friend > stranger, "friend {friend} vs stranger {stranger}");
    }

    #[test]
    fn a_conversation_becomes_a_memory_for_each_participant_with_its_feeling() {
        let (mut s, _, _) = stream();
        let made = s.ingest(8 * HOUR, &talk(7, 5.0), &RuleMind);
        assert_eq!(made.len(), 2);
        let ada = &made[0];
        assert_eq!((ada.agent, ada.memory.kind), (0, MemoryKind::Conversation));
        assert!(ada.memory.content.starts_with("I talked with bo at "));
        assert!(
            ada.memory
                .content
                .contains("ada: \"Morning! The rye came out well.\"")
        );
        assert!(
            ada.memory.valence > 0.0,
            "affection rose: {}",
            ada.memory.valence
        );
        assert_eq!(ada.memory.related_agents, vec!["bo".to_owned()]);
        let bo = &made[1];
        assert_eq!(bo.memory.related_agents, vec!["ada".to_owned()]);
        assert_eq!(bo.memory.valence, 0.0, "bo's feelings did not move");
    }

    #[test]
    fn reflection_fires_at_the_threshold_with_evidence_and_depth() {
        let (mut s, _, _) = stream();
        let mut reflections = Vec::new();
        let mut importance = 0u32;
        let mut t = 8 * HOUR;
        for id in 0..60 {
            t += 600;
            let made = s.ingest(t, &talk(id, 2.0), &RuleMind);
            for m in &made {
                if m.agent != 0 {
                    continue;
                }
                if m.memory.kind == MemoryKind::Reflection {
                    reflections.push(m.memory.clone());
                } else if reflections.is_empty() {
                    importance += u32::from(m.memory.importance);
                }
            }
            if !reflections.is_empty() {
                break;
            }
        }
        assert!(
            !reflections.is_empty(),
            "no reflection after 60 conversations"
        );
        assert!(importance >= 150, "reflected early, at {importance}");
        let insight = &reflections[0];
        assert!(insight.content.contains("bo"), "{}", insight.content);
        assert!(insight.evidence.len() >= 2);
        assert_eq!(insight.depth, 1);
        for id in &insight.evidence {
            let m = s.memory(0, *id).expect("evidence is a memory of ada's");
            assert!(m.related_agents.iter().any(|r| r == "bo") || m.location.is_some());
            assert_eq!(m.last_accessed, t, "retrieving evidence touches it");
        }
    }

    #[test]
    fn each_day_ends_with_a_look_back_against_the_goal() {
        let (mut s, _, _) = stream();
        let plan = (
            1,
            WorldEvent::PlanChanged {
                agent: 0,
                plan: 1,
                goal: "Bake bread".into(),
            },
        );
        s.ingest(8 * HOUR, &[plan], &RuleMind);
        s.ingest(9 * HOUR, &talk(1, 1.0), &RuleMind);
        let next_day = s.ingest(24 * HOUR + 60, &[], &RuleMind);
        let looks: Vec<&NewMemory> = next_day
            .iter()
            .filter(|m| m.memory.kind == MemoryKind::Metacognition)
            .collect();
        // ada planned and talked; bo talked; cy did nothing and has no day to judge
        assert_eq!(
            looks.iter().map(|m| m.agent).collect::<Vec<_>>(),
            vec![0, 1]
        );
        let ada = &looks[0].memory;
        assert!(
            ada.content
                .starts_with("Looking back on day 1: I spent it mostly on bake bread")
        );
        assert!(ada.content.contains("I talked with bo"));
        assert!(
            ada.content.contains("bake bread moved me toward it"),
            "{}",
            ada.content
        );
        assert_eq!(ada.evidence.len(), 2);
        assert!(
            looks[1]
                .memory
                .content
                .contains("did little toward it today")
        );
        // only once per day
        assert!(s.ingest(24 * HOUR + 120, &[], &RuleMind).is_empty());
    }

    #[test]
    fn seed_memories_are_loaded_with_their_importance_or_a_rating() {
        let content = validate::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents"),
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/maps/valley.tmj"),
        )
        .expect("the demo world is valid");
        let mut s = MemoryStream::new(StreamConfig::default(), &content.agents, &content.map);
        let made = s.seed(&content.agents, &RuleMind, 0);
        let expected: usize = content.agents.iter().map(|a| a.file.memories.len()).sum();
        assert_eq!(made.len(), expected);
        assert!(expected > 0);
        for m in &made {
            let seed = &content.agents[m.agent as usize].file.memories[m.memory.id as usize - 1];
            assert_eq!(m.memory.content, seed.content);
            assert!((1..=10).contains(&m.memory.importance));
            if let Some(i) = seed.importance {
                assert_eq!(m.memory.importance, i);
            }
        }
    }

    #[test]
    fn retrieval_without_embeddings_ranks_by_recency_and_importance() {
        let (mut s, _, _) = stream();
        s.ingest(8 * HOUR, &[seen(0, 2, "sweep")], &RuleMind);
        s.ingest(20 * HOUR, &[seen(0, 2, "mop")], &RuleMind);
        // the second sight of cy today is less novel, so less important:
        // recency (weight 0.5) loses to importance (weight 2)
        let top = s.retrieve(0, None, 21 * HOUR, 2);
        assert_eq!(top.len(), 2);
        assert!(top[0].1.importance > top[1].1.importance);
        assert!(
            top[0].1.content.contains("sweep"),
            "the more important first"
        );
        assert_eq!((top[0].0.importance, top[0].0.recency), (1.0, 0.0));
        assert_eq!(top[0].1.last_accessed, 21 * HOUR, "retrieval touches");
        // with importance out of the score, the newer wins
        s.config.retrieval.weights.importance = 0.0;
        let top = s.retrieve(0, None, 22 * HOUR, 2);
        assert!(top[0].1.content.contains("mop"), "the newer first");
    }

    #[test]
    fn shared_words_match_stems_and_never_split_a_character() {
        assert!(shares_word("Bake the best bread", "bakery"));
        assert!(!shares_word("Paint the chapel", "fish at the lake"));
        assert!(!shares_word("ééééé", "éèèè"));
    }
}
