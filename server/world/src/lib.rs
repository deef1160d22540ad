//! The living world: a `bevy_ecs` World of agents ticked at a fixed step by
//! one [`Schedule`] whose systems run in named sets, in this order:
//! inbound → clock → schedule → plan → path → move → perceive → converse →
//! relate → needs → outbound. Systems never do I/O and never block; the
//! world talks to the outside only through its [`Inbox`] and [`Outbox`].
//!
//! ```
//! use hearth_content::synthetic;
//! use hearth_world::{Sim, SimConfig};
//!
//! let content = synthetic::world(50, 7);
//! let mut sim = Sim::new(content, SimConfig { seed: 7, ..SimConfig::default() });
//! for _ in 0..100 {
//!     sim.step();
//! }
//! assert_eq!(sim.clock().tick, 100);
//! let hash = sim.state_hash();
//! assert_eq!(hash.len(), 64);
//! ```
//!
//! # Layout
//! - [`components`]: what an agent is made of; [`clock`]: game time;
//!   [`rng`]: the one seeded source of randomness.
//! - [`schedule`], [`plan`], [`path`], [`movement`], [`perception`],
//!   [`conversation`], [`relationship`], [`needs`]: one system each (or two).
//! - [`mind`]: the [`Mind`](mind::Mind) trait and the rule-based mind.
//! - [`events`]: inbound commands and outbound events.
//! - [`persist`]: the snapshots handed to the write-behind writer, and the
//!   saved state a world resumes from.
//! - [`view`]: what clients see, published each tick for the hub.
//! - [`players`]: player characters, their commands, and agents' ties
//!   with them.
//! - [`runner`]: the world on its own thread at a fixed tick rate.
//! - [`reload`]: changed content swapped into the live world between ticks.

pub mod clock;
pub mod components;
pub mod conversation;
pub mod events;
pub mod mind;
pub mod movement;
pub mod needs;
pub mod path;
pub mod perception;
pub mod persist;
pub mod plan;
pub mod players;
pub mod relationship;
pub mod reload;
pub mod rng;
pub mod runner;
pub mod schedule;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod view;

use std::sync::Arc;

use bevy_ecs::prelude::*;
use bevy_ecs::schedule::SingleThreadedExecutor;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use self::clock::GameClock;
use self::components::*;
use self::conversation::Conversations;
pub use self::events::{Command, Inbox, Outbox, Reply, WorldEvent};
use self::mind::{Mind, RuleMind};
use self::path::PathQueue;
use self::perception::{SpatialGrid, TalkCandidates};
use self::relationship::RelationDeltas;
use self::rng::{Purpose, WorldRng};
use hearth_content::{AgentDef, Content, WorldMap};

/// The stages of a tick, run in this order.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimSet {
    Inbound,
    Clock,
    Schedule,
    Plan,
    Path,
    Move,
    Perceive,
    Converse,
    Relate,
    Needs,
    Outbound,
}

/// Tunables of the simulation, with the defaults of the demo world.
#[derive(Debug, Clone, Resource, Serialize)]
pub struct SimConfig {
    /// Ticks per real second.
    pub tick_rate: u32,
    /// Game minutes per real second.
    pub game_minutes_per_second: u32,
    /// Minute of day 0 (a Monday) the world starts at.
    pub start_minute: u32,
    pub seed: u64,
    /// Path searches per tick; the rest wait their turn.
    pub path_budget: usize,
    /// Walking speed, tiles per game minute.
    pub walk_speed: f32,
    /// Vision radius in tiles (Generative Agents: 4).
    pub vision_radius: f32,
    /// How many of the nearest agents are attended to (Generative Agents: 3).
    pub attention: usize,
    /// An agent looks around once every this many ticks.
    pub perceive_every: u32,
    /// The same agent doing the same thing is not perceived again within this.
    pub repeat_window_minutes: u32,
    /// Agents this close may start talking.
    pub talk_radius: f32,
    pub max_group: usize,
    pub max_turns: u32,
    /// Ticks between two lines of a conversation.
    pub ticks_per_line: u32,
    /// Game minutes before the same pair talks again.
    pub pair_cooldown_minutes: u32,
    /// Emit activity, plan, arrival and sleep events (off for load tests).
    pub emit_activity_events: bool,
    /// Emit perception events.
    pub emit_perception_events: bool,
    /// Events kept when nobody drains the outbox; the oldest are dropped.
    pub max_outbox: usize,
    /// Spread perception over the compute threads in worlds of at least
    /// `perception::PARALLEL_MIN_AGENTS` agents (the outcome is the same).
    pub parallel: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            tick_rate: 10,
            game_minutes_per_second: 1,
            start_minute: 6 * 60,
            seed: 1,
            path_budget: 64,
            walk_speed: 12.0,
            vision_radius: 4.0,
            attention: 3,
            perceive_every: 10,
            repeat_window_minutes: 30,
            talk_radius: 2.5,
            max_group: 4,
            max_turns: 12,
            ticks_per_line: 10,
            pair_cooldown_minutes: 180,
            emit_activity_events: true,
            emit_perception_events: true,
            max_outbox: 1_000_000,
            parallel: true,
        }
    }
}

/// The agents' static definitions, indexed by [`AgentIdx`].
#[derive(Debug, Clone, Resource)]
pub struct Defs {
    pub agents: Arc<Vec<AgentDef>>,
}

#[derive(Debug, Clone, Resource)]
pub struct MapRes(pub Arc<WorldMap>);

#[derive(Clone, Resource)]
pub struct MindRes(pub Arc<dyn Mind>);

impl std::fmt::Debug for MindRes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MindRes")
    }
}

/// Entity of each agent, by [`AgentIdx`].
#[derive(Debug, Clone, Default, Resource)]
pub struct AgentIndex(pub Vec<Entity>);

/// Counters since the world started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Resource, Serialize, serde::Deserialize)]
pub struct Stats {
    pub activity_changes: u64,
    pub plans_made: u64,
    pub path_searches: u64,
    pub path_failures: u64,
    pub path_blocked: u64,
    pub path_queue_max: u64,
    pub arrivals: u64,
    pub perceptions: u64,
    pub conversations_started: u64,
    pub group_conversations: u64,
    pub conversations_ended: u64,
    pub lines: u64,
    pub relationship_changes: u64,
    pub shared_activity: u64,
    pub events_dropped: u64,
}

/// Keeps the outbox bounded when nobody drains it.
fn bound_outbox(config: Res<SimConfig>, mut outbox: ResMut<Outbox>, mut stats: ResMut<Stats>) {
    let len = outbox.events.len();
    if len > config.max_outbox {
        let excess = len - config.max_outbox;
        outbox.events.drain(..excess);
        stats.events_dropped += excess as u64;
    }
}

/// Spawns agent `idx` of definition `def` at its start location (a tile
/// picked by the world's seed), with the relationships its file seeds
/// toward the agents in `by_slug`; returns its entity.
pub(crate) fn spawn_agent(
    world: &mut World,
    idx: u32,
    def: &AgentDef,
    map: &WorldMap,
    rng: &WorldRng,
    clock: &GameClock,
    by_slug: &std::collections::HashMap<&str, u32>,
) -> Entity {
    let start = map.location(def.start);
    let tile = if start.walkable.is_empty() {
        start.rect.center()
    } else {
        start.walkable[(rng.value(idx, 0, Purpose::Spot) % start.walkable.len() as u64) as usize]
    };
    let mut rels: Vec<Relationship> = def
        .file
        .relationships
        .iter()
        .filter_map(|r| {
            by_slug.get(r.target.as_str()).map(|&t| Relationship {
                target: t,
                kind: r.kind.clone(),
                affection: r.affection.clamp(-100.0, 100.0),
                trust: r.trust.clamp(0.0, 100.0),
                interactions: 0,
                last_interaction: None,
            })
        })
        .collect();
    rels.sort_by_key(|r| r.target);
    rels.dedup_by_key(|r| r.target);
    world
        .spawn((
            AgentIdx(idx),
            Position::of(tile),
            Facing::default(),
            Activity {
                block: None,
                override_reason: Some(Override::FreeTime),
                location: def.start,
                since: clock.minutes(),
                until: clock.minutes(),
                sleep: false,
            },
            Plan {
                id: 0,
                goal: "arrive".into(),
                steps: Vec::new(),
                current: 0,
                status: PlanStatus::Done,
                priority: 1,
                deadline: clock.minutes(),
            },
            Movement::default(),
            Needs::for_personality(&def.file.traits.personality),
            Perception::default(),
            Talk::default(),
            Relationships(rels),
        ))
        .id()
}

/// A world and the schedule that ticks it.
pub struct Sim {
    world: World,
    schedule: Schedule,
    /// The snapshot system alone, for a final checkpoint between ticks.
    final_snapshot: Schedule,
}

/// What a world resumes from: the checkpoint's world state, each agent's
/// saved components and its relationships (each with its target's slug;
/// the target index inside is ignored), by slug.
#[derive(Debug, Clone, Default)]
pub struct Saved {
    pub world: Vec<u8>,
    pub agents: std::collections::HashMap<String, Vec<u8>>,
    pub relationships: std::collections::HashMap<String, Vec<(String, Relationship)>>,
}

/// How a restore went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Agents put back as saved.
    pub restored: usize,
    /// Agents with nothing saved (new in the files): they start fresh.
    pub fresh: usize,
    /// Saved agents no longer in the files.
    pub dropped: usize,
    /// Agents that plan afresh because the map changed.
    pub replanned: usize,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("tick", &self.clock().tick)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// A world of `content` thinking with the rule-based mind.
    pub fn new(content: Content, config: SimConfig) -> Self {
        Self::with_mind(content, config, Arc::new(RuleMind))
    }

    pub fn with_mind(content: Content, config: SimConfig, mind: Arc<dyn Mind>) -> Self {
        let mut world = World::new();
        let rng = WorldRng::new(config.seed);
        let clock = GameClock::new(
            config.tick_rate,
            config.game_minutes_per_second,
            config.start_minute,
        );
        let agents = Arc::new(content.agents);
        let map = Arc::new(content.map);
        let by_slug: std::collections::HashMap<&str, u32> = agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.file.id.as_str(), i as u32))
            .collect();

        let mut entities = Vec::with_capacity(agents.len());
        for (i, def) in agents.iter().enumerate() {
            entities.push(spawn_agent(
                &mut world, i as u32, def, &map, &rng, &clock, &by_slug,
            ));
        }

        world.insert_resource(rng);
        world.insert_resource(clock);
        world.insert_resource(Defs { agents });
        world.insert_resource(MapRes(map));
        world.insert_resource(MindRes(mind));
        world.insert_resource(AgentIndex(entities));
        world.insert_resource(Stats::default());
        world.insert_resource(conversation::ModelLines::default());
        world.insert_resource(plan::ModelPlans::default());
        world.insert_resource(Outbox::default());
        world.insert_resource(Inbox::default());
        world.insert_resource(events::Paused::default());
        world.insert_resource(events::Throttled::default());
        world.insert_resource(reload::PendingReload::default());
        world.insert_resource(reload::Rescheduled::default());
        world.insert_resource(persist::Persistence::default());
        world.insert_resource(view::View::default());
        world.insert_resource(PathQueue::default());
        world.insert_resource(SpatialGrid::default());
        world.insert_resource(TalkCandidates::default());
        world.insert_resource(Conversations::default());
        world.insert_resource(RelationDeltas::default());
        world.insert_resource(players::Characters::default());
        world.insert_resource(players::PlayerInbox::default());
        world.insert_resource(players::Ties::default());
        world.insert_resource(config);

        let mut schedule = Schedule::default();
        // one thread: the tick's systems form a chain, and determinism is a contract
        schedule.set_executor(SingleThreadedExecutor::new());
        schedule.configure_sets(
            (
                SimSet::Inbound,
                SimSet::Clock,
                SimSet::Schedule,
                SimSet::Plan,
                SimSet::Path,
                SimSet::Move,
                SimSet::Perceive,
                SimSet::Converse,
                SimSet::Relate,
                SimSet::Needs,
                SimSet::Outbound,
            )
                .chain(),
        );
        schedule.add_systems((
            (events::apply_inbox, reload::apply, players::apply)
                .chain()
                .in_set(SimSet::Inbound),
            clock::advance.in_set(SimSet::Clock).run_if(events::running),
            schedule::update_activities
                .in_set(SimSet::Schedule)
                .run_if(events::running),
            (
                plan::make_plans,
                plan::apply_model_plans,
                plan::follow_plans,
            )
                .chain()
                .in_set(SimSet::Plan)
                .run_if(events::running),
            path::search_paths
                .in_set(SimSet::Path)
                .run_if(events::running),
            (movement::walk, players::walk)
                .in_set(SimSet::Move)
                .run_if(events::running),
            (
                perception::index_positions,
                perception::perceive.run_if(events::unthrottled),
            )
                .chain()
                .in_set(SimSet::Perceive)
                .run_if(events::running),
            (
                conversation::advance_conversations,
                conversation::start_conversations.run_if(events::unthrottled),
            )
                .chain()
                .in_set(SimSet::Converse)
                .run_if(events::running),
            relationship::relate
                .in_set(SimSet::Relate)
                .run_if(events::running),
            needs::update_needs
                .in_set(SimSet::Needs)
                .run_if(events::running),
            (
                bound_outbox,
                persist::snapshot.run_if(persist::persisting),
                view::publish.run_if(view::viewing),
            )
                .chain()
                .in_set(SimSet::Outbound),
        ));
        let mut final_snapshot = Schedule::default();
        final_snapshot.set_executor(SingleThreadedExecutor::new());
        final_snapshot.add_systems(persist::snapshot);
        Self {
            world,
            schedule,
            final_snapshot,
        }
    }

    /// A world of `content` put back in the state `saved` holds (agents
    /// matched by slug; see [`persist`]). Agents without saved state start
    /// fresh; saved agents no longer in `content` are left out. The seed is
    /// the saved world's, whatever `config` says.
    pub fn restore(
        content: Content,
        mut config: SimConfig,
        mind: Arc<dyn Mind>,
        saved: &Saved,
    ) -> Result<(Self, RestoreReport), persist::PersistError> {
        let state = persist::decode_world(&saved.world)?;
        if config.seed != state.seed {
            tracing::info!(
                configured = config.seed,
                saved = state.seed,
                "resuming with the saved world's seed"
            );
        }
        config.seed = state.seed;
        let mut sim = Self::with_mind(content, config, mind);
        let mut report = RestoreReport::default();
        let slugs: std::collections::HashMap<String, u32> = sim
            .defs()
            .iter()
            .enumerate()
            .map(|(i, d)| (d.file.id.clone(), i as u32))
            .collect();
        // every saved agent says which index it had: map old indexes to new
        let mut decoded = Vec::with_capacity(saved.agents.len());
        for (slug, blob) in &saved.agents {
            decoded.push((slug.as_str(), persist::decode_agent(blob)?));
        }
        let old_len = decoded
            .iter()
            .map(|(_, a)| a.idx as usize + 1)
            .max()
            .unwrap_or(0);
        let mut map: Vec<Option<u32>> = vec![None; old_len];
        for (slug, a) in &decoded {
            map[a.idx as usize] = slugs.get(*slug).copied();
        }
        let same_agents =
            old_len == slugs.len() && map.iter().enumerate().all(|(i, m)| *m == Some(i as u32));
        let locations: Vec<&str> = sim
            .map()
            .locations
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        let same_map = state.locations.iter().map(String::as_str).eq(locations);
        let entities = sim.world.resource::<AgentIndex>().0.clone();
        for (slug, mut agent) in decoded {
            let Some(&i) = slugs.get(slug) else {
                report.dropped += 1;
                continue;
            };
            if !same_agents {
                persist::remap_agent(&mut agent, &map);
            }
            let mut entity = sim.world.entity_mut(entities[i as usize]);
            if !same_map {
                // locations are ids into the map: plans made on the old map
                // mean nothing on the new one, so the agent plans afresh
                // where it stands
                report.replanned += 1;
            } else {
                entity.insert((agent.activity, agent.plan, agent.movement));
            }
            let mut relationships: Vec<Relationship> = saved
                .relationships
                .get(slug)
                .into_iter()
                .flatten()
                .filter_map(|(target, r)| {
                    let t = *slugs.get(target)?;
                    (t != i).then(|| Relationship {
                        target: t,
                        ..r.clone()
                    })
                })
                .collect();
            relationships.sort_by_key(|r| r.target);
            relationships.dedup_by_key(|r| r.target);
            entity.insert((
                agent.position,
                agent.facing,
                agent.needs,
                agent.perception,
                agent.talk,
                Relationships(relationships),
            ));
            report.restored += 1;
        }
        report.fresh = slugs.len() - report.restored;
        {
            let mut clock = sim.world.resource_mut::<GameClock>();
            clock.tick = state.tick;
            clock.seconds = state.seconds;
        }
        sim.world.resource_mut::<events::Paused>().0 = state.paused;
        *sim.world.resource_mut::<Stats>() = state.stats;
        let to = |i: u32| map.get(i as usize).copied().flatten();
        let mut active = Vec::with_capacity(state.conversations.len());
        for mut c in state.conversations {
            c.participants = c.participants.iter().filter_map(|&p| to(p)).collect();
            if c.participants.len() >= 2 {
                active.push(c);
            }
        }
        // an agent whose conversation did not survive the restore is free
        let live: std::collections::HashSet<u64> = active.iter().map(|c| c.id).collect();
        for &e in &entities {
            if let Some(mut talk) = sim.world.get_mut::<Talk>(e)
                && talk.conversation.is_some_and(|c| !live.contains(&c))
            {
                talk.conversation = None;
            }
        }
        {
            let mut conversations = sim.world.resource_mut::<Conversations>();
            conversations.active = active;
            conversations.next_id = state.next_conversation;
        }
        let queue: Vec<Entity> = state
            .path_queue
            .iter()
            .filter_map(|&i| to(i))
            .filter_map(|i| entities.get(i as usize).copied())
            .collect();
        sim.world.resource_mut::<PathQueue>().replace(queue);
        sim.age_components();
        Ok((sim, report))
    }

    /// Makes every agent's components look unchanged to systems that have
    /// not run yet. A restored world's components were all just inserted,
    /// and systems driven by change detection (planning reacts to a changed
    /// activity) would otherwise act on every agent at the first tick, where
    /// the world that was saved did not: the changes are dated as old as
    /// change detection reaches, which a new system's first run does not see.
    fn age_components(&mut self) {
        use bevy_ecs::change_detection::{DetectChangesMut, MAX_CHANGE_AGE, Tick};
        let old = Tick::new(self.world.change_tick().get().wrapping_sub(MAX_CHANGE_AGE));
        let mut agents = self.world.query::<(
            &mut Position,
            &mut Facing,
            &mut Activity,
            &mut Plan,
            &mut Movement,
            &mut Needs,
            &mut Perception,
            &mut Talk,
            &mut Relationships,
        )>();
        for (mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h, mut i) in
            agents.iter_mut(&mut self.world)
        {
            a.set_last_added(old);
            b.set_last_added(old);
            c.set_last_added(old);
            d.set_last_added(old);
            e.set_last_added(old);
            f.set_last_added(old);
            g.set_last_added(old);
            h.set_last_added(old);
            i.set_last_added(old);
        }
    }

    /// Takes a snapshot every `every` ticks from now on (0: never), the
    /// first one of every agent.
    pub fn persist_every(&mut self, every: u64) {
        let next = self.clock().tick;
        let mut p = self.world.resource_mut::<persist::Persistence>();
        p.every = every;
        p.next_due = next;
        p.full = true;
    }

    /// Publishes what clients see from the next tick on, starting with
    /// every agent.
    pub fn publish_view(&mut self) {
        let mut v = self.world.resource_mut::<view::View>();
        v.on = true;
        v.resync = true;
    }

    /// The next view frame holds every agent.
    pub fn resync_view(&mut self) {
        self.world.resource_mut::<view::View>().resync = true;
    }

    /// The view frame published since the last call, if any.
    pub fn take_view(&mut self) -> Option<view::ViewFrame> {
        self.world.resource_mut::<view::View>().out.take()
    }

    /// The snapshot taken at this tick, if one was.
    pub fn take_snapshot(&mut self) -> Option<persist::WorldSnapshot> {
        self.world.resource_mut::<persist::Persistence>().out.take()
    }

    /// A snapshot of every agent now, merged into one not yet taken (for a
    /// final checkpoint).
    pub fn full_snapshot(&mut self) -> Option<persist::WorldSnapshot> {
        self.world.resource_mut::<persist::Persistence>().full = true;
        self.final_snapshot.run(&mut self.world);
        self.take_snapshot()
    }

    /// Runs one tick.
    pub fn step(&mut self) {
        self.schedule.run(&mut self.world);
    }

    pub fn clock(&self) -> &GameClock {
        self.world.resource::<GameClock>()
    }

    pub fn stats(&self) -> &Stats {
        self.world.resource::<Stats>()
    }

    /// Has the agents marked in `thinking` (by index) say their lines
    /// through their models: each line is asked for with a
    /// [`WorldEvent::LineWanted`] and waited for up to `wait_ticks`, then
    /// said by the rule-based mind.
    pub fn speak_through_models(&mut self, thinking: Vec<bool>, wait_ticks: u64) {
        let mut lines = self.world.resource_mut::<conversation::ModelLines>();
        lines.thinking = thinking;
        lines.wait_ticks = wait_ticks.max(1);
    }

    /// Has the agents marked in `thinking` (by index) ask their models for
    /// their day's plan and the steps of their activities (see
    /// [`plan::ModelPlans`]).
    pub fn plan_through_models(&mut self, thinking: Vec<bool>) {
        self.world.resource_mut::<plan::ModelPlans>().thinking = thinking;
    }

    /// Counts of model planning: (day plans asked, steps asked, steps
    /// applied, reactions applied).
    pub fn model_plans(&self) -> (u64, u64, u64, u64) {
        let p = self.world.resource::<plan::ModelPlans>();
        (p.day_plans, p.steps_asked, p.steps_applied, p.reactions)
    }

    /// Lines asked of models, answered by them, and said by the rule-based
    /// mind instead.
    pub fn model_lines(&self) -> (u64, u64, u64) {
        let l = self.world.resource::<conversation::ModelLines>();
        (l.asked, l.answered, l.fell_back)
    }

    pub fn config(&self) -> &SimConfig {
        self.world.resource::<SimConfig>()
    }

    pub fn agent_count(&self) -> usize {
        self.world.resource::<AgentIndex>().0.len()
    }

    pub fn defs(&self) -> &Arc<Vec<AgentDef>> {
        &self.world.resource::<Defs>().agents
    }

    pub fn map(&self) -> &Arc<WorldMap> {
        &self.world.resource::<MapRes>().0
    }

    /// Takes the events emitted since the last call.
    pub fn drain_events(&mut self) -> Vec<(u64, WorldEvent)> {
        self.world.resource_mut::<Outbox>().drain()
    }

    /// Queues a command for the next tick.
    pub fn send(&mut self, command: Command) {
        self.world.resource_mut::<Inbox>().commands.push(command);
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    pub fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    /// The entity of agent `idx`.
    pub fn entity(&self, idx: u32) -> Option<Entity> {
        self.world
            .resource::<AgentIndex>()
            .0
            .get(idx as usize)
            .copied()
    }

    /// A component of agent `idx`.
    pub fn get<T: Component>(&self, idx: u32) -> Option<&T> {
        self.entity(idx).and_then(|e| self.world.get::<T>(e))
    }

    /// SHA-256 over everything that makes the world's state: the clock, and
    /// per agent (in index order) position, facing, activity, plan, movement
    /// goal, needs, conversation and relationships, and the conversations
    /// under way. Floats are hashed by their bits: equal hashes mean equal
    /// worlds, not merely close ones.
    pub fn state_hash(&mut self) -> String {
        let mut h = Sha256::new();
        let clock = self.world.resource::<GameClock>();
        h.update(clock.tick.to_le_bytes());
        h.update(clock.seconds.to_le_bytes());
        let entities = self.world.resource::<AgentIndex>().0.clone();
        for e in entities {
            let Ok(agent) = self.world.get_entity(e) else {
                continue;
            };
            if let Some(p) = agent.get::<Position>() {
                h.update(p.x.to_bits().to_le_bytes());
                h.update(p.y.to_bits().to_le_bytes());
            }
            if let Some(f) = agent.get::<Facing>() {
                h.update([*f as u8]);
            }
            if let Some(a) = agent.get::<Activity>() {
                h.update(a.block.unwrap_or(u16::MAX).to_le_bytes());
                h.update([a.override_reason.map_or(0, |r| r as u8 + 1)]);
                h.update(a.location.to_le_bytes());
                h.update(a.since.to_le_bytes());
                h.update(a.until.to_le_bytes());
            }
            if let Some(p) = agent.get::<Plan>() {
                h.update(p.id.to_le_bytes());
                h.update((p.current as u64).to_le_bytes());
                h.update([p.status as u8]);
                for s in &p.steps {
                    match s {
                        Step::GoTo { location, tile } => {
                            h.update(location.to_le_bytes());
                            h.update(tile.x.to_le_bytes());
                            h.update(tile.y.to_le_bytes());
                        }
                        Step::Perform { until } => h.update(until.to_le_bytes()),
                        Step::Do { until, action } => {
                            h.update(until.to_le_bytes());
                            h.update(action.as_bytes());
                        }
                    }
                }
            }
            if let Some(m) = agent.get::<Movement>() {
                h.update((m.path.len() as u64).to_le_bytes());
                h.update([u8::from(m.waiting), u8::from(m.unreachable)]);
            }
            if let Some(n) = agent.get::<Needs>() {
                for v in [n.energy, n.mood, n.arousal, n.cognitive_load] {
                    h.update(v.to_bits().to_le_bytes());
                }
                h.update([u8::from(n.sleeping)]);
            }
            if let Some(t) = agent.get::<Talk>() {
                h.update(t.conversation.unwrap_or(0).to_le_bytes());
                h.update(t.count.to_le_bytes());
            }
            if let Some(r) = agent.get::<Relationships>() {
                for rel in &r.0 {
                    h.update(rel.target.to_le_bytes());
                    h.update(rel.affection.to_bits().to_le_bytes());
                    h.update(rel.trust.to_bits().to_le_bytes());
                    h.update(rel.interactions.to_le_bytes());
                }
            }
        }
        for c in &self.world.resource::<Conversations>().active {
            h.update(c.id.to_le_bytes());
            h.update(c.turns.to_le_bytes());
            for p in &c.participants {
                h.update(p.to_le_bytes());
            }
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}
