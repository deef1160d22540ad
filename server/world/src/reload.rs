//! Content reloaded into the live world: new agent definitions and a new
//! map (of any size) take effect between two ticks. Agents keep their
//! index and their state (position, needs, memories, relationships); those
//! whose schedule or home changed take up their new schedule at once; those
//! whose way crossed what the map changed look for a new one; location ids
//! are carried over by name. New agents are appended and spawn at their
//! start location; agents whose file is gone leave the world (their
//! definition stays at its index, so indices held elsewhere stay valid)
//! and the conversations they were in go on without them or end. The outcome is emitted as
//! [`WorldEvent::ContentReloaded`] so every consumer of the world's events
//! (hub, memory service, write-behind pipeline) swaps in the same content at
//! the same tick. No I/O: the files were read and checked off the world's
//! thread. Touches the [`Defs`] and [`MapRes`] resources, agents' activity,
//! plan and movement, and the path queue.

use std::sync::Arc;

use bevy_ecs::prelude::*;
use serde::Serialize;

use super::components::{Activity, AgentIdx, Movement, Plan, PlanStatus, Position, Step, Talk};
use super::conversation::Conversations;
use super::path::PathQueue;
use super::rng::WorldRng;
use super::view::View;
use super::{AgentIndex, Defs, GameClock, MapRes, Outbox, WorldEvent, spawn_agent};
use hearth_content::{AgentDef, LocationId, WorldMap};

/// Content to swap in: the world's agents at their indices (new ones after
/// them), and the map.
#[derive(Debug, Clone)]
pub struct Reload {
    pub agents: Arc<Vec<AgentDef>>,
    pub map: Arc<WorldMap>,
    /// Indices of agents whose definition differs from the world's, and
    /// whether the map does: found off the world's thread
    /// ([`Reload::diff`]), so a reload costs the world only what changed.
    pub changed: Vec<u32>,
    pub map_changed: bool,
    /// Indices of agents that leave the world.
    pub removed: Vec<u32>,
    /// Which agents (by index) say their lines and plan through their
    /// models from now on, when the world has any (`None`: as before).
    pub thinking: Option<Vec<bool>>,
    /// Database id of every agent by index, when the world is persisted
    /// (carried to [`Reloaded`] for the memory service and the writer).
    pub agent_ids: Option<Arc<Vec<i64>>>,
    /// Lore and prompt templates changed too (the world does not use them;
    /// the flags are carried to [`Reloaded`] for its consumers).
    pub lore: bool,
    pub prompts: bool,
}

/// Agents the schedule looks at on the next tick whatever its cache says
/// (their schedule changed under it).
#[derive(Debug, Default, Resource)]
pub struct Rescheduled(pub std::collections::HashSet<u32>);

impl Reload {
    /// `agents` and `map` against the world's `old_agents` and `old_map`:
    /// which definitions changed, and whether the map did (nobody leaves).
    pub fn diff(
        old_agents: &[AgentDef],
        old_map: &WorldMap,
        agents: Arc<Vec<AgentDef>>,
        map: Arc<WorldMap>,
    ) -> Self {
        let changed = old_agents
            .iter()
            .zip(agents.iter())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i as u32)
            .collect();
        let map_changed = *old_map != *map;
        Self {
            agents,
            map,
            changed,
            map_changed,
            removed: Vec::new(),
            thinking: None,
            agent_ids: None,
            lore: false,
            prompts: false,
        }
    }
}

/// A reload waiting for the next tick.
#[derive(Debug, Default, Resource)]
pub struct PendingReload(pub Option<Reload>);

/// What a reload changed, by agent index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reloaded {
    #[serde(skip)]
    pub agents: Arc<Vec<AgentDef>>,
    #[serde(skip)]
    pub map: Arc<WorldMap>,
    /// Agents whose definition changed in any way.
    pub changed: Vec<u32>,
    /// Agents whose schedule or home changed: they take up the new schedule.
    pub rescheduled: Vec<u32>,
    /// Agents whose path crossed a tile that is no longer walkable: they
    /// look for another way to the same place.
    pub repathed: Vec<u32>,
    /// Agents whose destination or location is gone from the map: they plan
    /// afresh.
    pub replanned: Vec<u32>,
    /// Agents that joined the world (new, or back).
    pub added: Vec<u32>,
    /// Agents that left it.
    pub removed: Vec<u32>,
    #[serde(skip)]
    pub agent_ids: Option<Arc<Vec<i64>>>,
    /// The map changed.
    pub map_changed: bool,
    /// Carried from [`Reload`].
    pub lore: bool,
    pub prompts: bool,
}

/// Why a reload was refused by the world (the caller checks these first;
/// the world refuses rather than corrupt its indices).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadRefused {
    #[error(
        "the world has {have} agents and the reload only {got}: an agent that leaves keeps its place"
    )]
    AgentCount { have: usize, got: usize },
    #[error("agent index {0} is not in the world")]
    NoSuchAgent(u32),
    #[error("agent {index} is '{have}' in the world and '{got}' in the reload")]
    AgentOrder {
        index: usize,
        have: String,
        got: String,
    },
}

/// Checks that `reload` can be applied to a world of `agents`.
pub fn check(agents: &[AgentDef], reload: &Reload) -> Result<(), ReloadRefused> {
    if reload.agents.len() < agents.len() {
        return Err(ReloadRefused::AgentCount {
            have: agents.len(),
            got: reload.agents.len(),
        });
    }
    if let Some((index, (a, b))) = agents
        .iter()
        .zip(reload.agents.iter())
        .enumerate()
        .find(|(_, (a, b))| a.file.id != b.file.id)
    {
        return Err(ReloadRefused::AgentOrder {
            index,
            have: a.file.id.clone(),
            got: b.file.id.clone(),
        });
    }
    if let Some(&bad) = reload.removed.iter().find(|&&i| i as usize >= agents.len()) {
        return Err(ReloadRefused::NoSuchAgent(bad));
    }
    Ok(())
}

/// Applies a pending reload (exclusive: it swaps resources and touches
/// every agent). Runs after the inbox, before the clock.
pub fn apply(world: &mut World) {
    let Some(reload) = world.resource_mut::<PendingReload>().0.take() else {
        return;
    };
    let tick = world.resource::<GameClock>().tick;
    match swap(world, reload) {
        Ok(done) => {
            tracing::info!(
                changed = done.changed.len(),
                rescheduled = done.rescheduled.len(),
                repathed = done.repathed.len(),
                replanned = done.replanned.len(),
                map_changed = done.map_changed,
                "content reloaded into the world"
            );
            world
                .resource_mut::<Outbox>()
                .push(tick, WorldEvent::ContentReloaded(Arc::new(done)));
        }
        Err(e) => tracing::error!(error = %e, "content reload refused by the world"),
    }
}

fn swap(world: &mut World, reload: Reload) -> Result<Reloaded, ReloadRefused> {
    let old_agents = world.resource::<Defs>().agents.clone();
    let old_map = world.resource::<MapRes>().0.clone();
    check(&old_agents, &reload)?;
    let Reload {
        agents,
        map,
        changed,
        map_changed,
        removed,
        thinking,
        agent_ids,
        lore,
        prompts,
    } = reload;
    if let Some(thinking) = thinking {
        // only in a world whose agents think with models at all
        let mut lines = world.resource_mut::<super::conversation::ModelLines>();
        if !lines.thinking.is_empty() {
            lines.thinking = thinking.clone();
        }
        let mut plans = world.resource_mut::<super::plan::ModelPlans>();
        if !plans.thinking.is_empty() {
            plans.thinking = thinking;
        }
    }
    // location ids of the old map on the new one, by name
    let moved: Vec<Option<LocationId>> = old_map
        .locations
        .iter()
        .map(|l| {
            map.locations
                .iter()
                .position(|n| n.name == l.name)
                .map(|i| i as LocationId)
        })
        .collect();
    let changed: std::collections::HashSet<u32> = changed
        .into_iter()
        .filter(|i| !removed.contains(i))
        .collect();
    let mut done = Reloaded {
        agents: agents.clone(),
        map: map.clone(),
        changed: Vec::new(),
        rescheduled: Vec::new(),
        repathed: Vec::new(),
        replanned: Vec::new(),
        added: Vec::new(),
        removed: Vec::new(),
        agent_ids,
        map_changed,
        lore,
        prompts,
    };
    let ctx = Ctx {
        old_agents: &old_agents,
        agents: &agents,
        map: &map,
        map_changed,
        moved: &moved,
        changed: &changed,
        removed: &removed,
    };
    let mut requeue = Vec::new();
    let mut recheck = Vec::new();
    if (map.width, map.height) != (old_map.width, old_map.height) {
        // a smaller map may leave agents outside it: they are back home
        let mut outside = world.query::<(&AgentIdx, &mut Position, &mut Movement)>();
        for (idx, mut position, mut movement) in outside.iter_mut(world) {
            let t = position.tile();
            if t.x < map.width && t.y < map.height {
                continue;
            }
            let Some(def) = agents.get(idx.0 as usize) else {
                continue;
            };
            let home = map.location(def.home);
            let tile = home.walkable.first().copied().unwrap_or(home.rect.center());
            *position = Position::of(tile);
            movement.path.clear();
            movement.goal = None;
        }
    }
    if map_changed {
        // conversations' places too, by name
        for c in &mut world.resource_mut::<Conversations>().active {
            c.location = c
                .location
                .and_then(|l| moved.get(l as usize).copied().flatten());
        }
    }
    let mut query = world.query::<(Entity, &AgentIdx, &mut Activity, &mut Plan, &mut Movement)>();
    if map_changed {
        // every agent's plan and path may cross what changed
        for (e, idx, activity, plan, movement) in query.iter_mut(world) {
            ctx.fix(
                e,
                idx.0,
                activity,
                plan,
                movement,
                &mut done,
                &mut requeue,
                &mut recheck,
            );
        }
    } else {
        // only the changed agents: a reload costs what it changes
        let mut targets: Vec<u32> = changed.iter().copied().collect();
        targets.sort_unstable();
        let index = &world.resource::<AgentIndex>().0;
        let targets: Vec<Entity> = targets
            .iter()
            .filter_map(|&i| index.get(i as usize).copied())
            .collect();
        for e in targets {
            if let Ok((e, idx, activity, plan, movement)) = query.get_mut(world, e) {
                ctx.fix(
                    e,
                    idx.0,
                    activity,
                    plan,
                    movement,
                    &mut done,
                    &mut requeue,
                    &mut recheck,
                );
            }
        }
    }
    world.resource_mut::<Rescheduled>().0.extend(recheck);
    {
        let mut queue = world.resource_mut::<PathQueue>();
        for e in requeue {
            queue.push(e);
        }
    }
    leave(world, &removed, &mut done);
    join(world, &agents, &map, &mut done);
    done.changed
        .retain(|i| !done.added.contains(i) && !done.removed.contains(i));
    world.resource_mut::<Defs>().agents = agents;
    world.resource_mut::<MapRes>().0 = map;
    Ok(done)
}

/// What every agent touched by a reload is looked at with.
struct Ctx<'a> {
    old_agents: &'a [AgentDef],
    agents: &'a [AgentDef],
    map: &'a WorldMap,
    map_changed: bool,
    /// Old location id → new one, by name.
    moved: &'a [Option<LocationId>],
    changed: &'a std::collections::HashSet<u32>,
    removed: &'a [u32],
}

impl Ctx<'_> {
    fn to_new(&self, id: LocationId) -> Option<LocationId> {
        self.moved.get(id as usize).copied().flatten()
    }

    /// Carries agent `idx` over to the new content: locations by name, a
    /// path around newly blocked tiles, a changed schedule taken up now.
    #[allow(
        clippy::too_many_arguments,
        reason = "one agent's parts and the outcome lists"
    )]
    fn fix(
        &self,
        entity: Entity,
        idx: u32,
        mut activity: Mut<Activity>,
        mut plan: Mut<Plan>,
        mut movement: Mut<Movement>,
        done: &mut Reloaded,
        requeue: &mut Vec<Entity>,
        recheck: &mut Vec<u32>,
    ) {
        let i = idx as usize;
        let (Some(old), Some(new)) = (self.old_agents.get(i), self.agents.get(i)) else {
            return;
        };
        if self.removed.contains(&idx) {
            return;
        }
        let changed = self.changed.contains(&idx);
        if changed {
            done.changed.push(idx);
        }
        let map = self.map;
        let mut replan = false;
        if self.map_changed {
            // ids into the old map, carried over by name
            match self.to_new(activity.location) {
                Some(l) => {
                    if l != activity.location {
                        activity.bypass_change_detection().location = l;
                    }
                }
                None => replan = true,
            }
            let mut steps = plan.steps.clone();
            for step in &mut steps {
                if let Step::GoTo { location, tile } = step {
                    match self.to_new(*location) {
                        Some(l) if map.is_walkable(*tile) => *location = l,
                        _ => replan = true,
                    }
                }
            }
            if steps != plan.steps {
                plan.bypass_change_detection().steps = steps;
            }
            if let Some(goal) = movement.goal
                && !map.is_walkable(goal)
            {
                replan = true;
            } else if movement.path.iter().any(|t| !map.is_walkable(*t)) {
                movement.path.clear();
                movement.waiting = true;
                movement.unreachable = false;
                requeue.push(entity);
                done.repathed.push(idx);
            }
        }
        let rescheduled = changed && (old.schedule != new.schedule || old.home != new.home);
        if rescheduled {
            done.rescheduled.push(idx);
        }
        if replan {
            done.replanned.push(idx);
            if self.to_new(activity.location).is_none() {
                activity.location = new.home;
            }
            // steps may name places of the old map: none are kept
            plan.steps.clear();
            plan.current = 0;
            plan.status = PlanStatus::Done;
            movement.goal = None;
            movement.path.clear();
        }
        if rescheduled || replan {
            // looked at again by the schedule at once, and a new plan made
            // for whatever it decides
            activity.block = None;
            activity.override_reason = None;
            activity.until = activity.since;
            recheck.push(idx);
        }
    }
}

/// Agents `removed` leave the world: their entities are despawned, their
/// conversations go on without them (or end with fewer than two left),
/// and clients are told.
fn leave(world: &mut World, removed: &[u32], done: &mut Reloaded) {
    let tick = world.resource::<GameClock>().tick;
    let entities = world.resource::<AgentIndex>().0.clone();
    for &idx in removed {
        let Some(&e) = entities.get(idx as usize) else {
            continue;
        };
        if world.despawn(e) {
            done.removed.push(idx);
        }
    }
    if done.removed.is_empty() {
        return;
    }
    let gone = done.removed.clone();
    let mut ended = Vec::new();
    {
        let mut conversations = world.resource_mut::<Conversations>();
        conversations.active.retain_mut(|c| {
            c.participants.retain(|p| !gone.contains(p));
            if c.participants.len() >= 2 {
                true
            } else {
                ended.push((c.id, c.participants.clone(), c.turns));
                false
            }
        });
    }
    for (conversation, participants, turns) in ended {
        for &p in &participants {
            if let Some(&e) = entities.get(p as usize)
                && let Some(mut talk) = world.get_mut::<Talk>(e)
                && talk.conversation == Some(conversation)
            {
                talk.conversation = None;
            }
        }
        world.resource_mut::<Outbox>().push(
            tick,
            WorldEvent::ConversationEnded {
                conversation,
                participants,
                turns,
            },
        );
    }
    world.resource_mut::<View>().agents_gone.extend(gone);
}

/// Agents without a living entity (new ones after the world's, or ones
/// back after leaving) spawn at their start location.
fn join(world: &mut World, agents: &[AgentDef], map: &WorldMap, done: &mut Reloaded) {
    let entities = world.resource::<AgentIndex>().0.clone();
    let missing: Vec<u32> = (0..agents.len())
        .filter(|&i| {
            entities
                .get(i)
                .is_none_or(|&e| world.get_entity(e).is_err())
        })
        .map(|i| i as u32)
        .filter(|i| !done.removed.contains(i))
        .collect();
    if missing.is_empty() {
        return;
    }
    let by_slug: std::collections::HashMap<&str, u32> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| (a.file.id.as_str(), i as u32))
        .collect();
    let rng = *world.resource::<WorldRng>();
    let clock = world.resource::<GameClock>().clone();
    for idx in missing {
        let e = spawn_agent(
            world,
            idx,
            &agents[idx as usize],
            map,
            &rng,
            &clock,
            &by_slug,
        );
        let mut index = world.resource_mut::<AgentIndex>();
        let slot = idx as usize;
        if index.0.len() <= slot {
            index.0.resize(slot + 1, Entity::PLACEHOLDER);
        }
        index.0[slot] = e;
        done.added.push(idx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::Position;
    use crate::{Command, Sim, SimConfig};
    use hearth_content::{ScheduleBlock, synthetic};

    /// The reload of `agents` and `map` into `sim`, `removed` leaving.
    fn reload_of(
        sim: &Sim,
        agents: impl Into<Arc<Vec<AgentDef>>>,
        map: Arc<WorldMap>,
        removed: Vec<u32>,
    ) -> Command {
        let mut r = Reload::diff(sim.defs(), sim.map(), agents.into(), map);
        r.removed = removed;
        Command::Reload(Box::new(r))
    }

    fn sim() -> Sim {
        let mut sim = Sim::new(synthetic::world(20, 3), SimConfig::default());
        for _ in 0..50 {
            sim.step();
        }
        sim
    }

    fn reloaded(sim: &mut Sim) -> Vec<Arc<Reloaded>> {
        sim.drain_events()
            .into_iter()
            .filter_map(|(_, e)| match e {
                WorldEvent::ContentReloaded(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_changed_definition_takes_effect_and_state_stays() {
        let mut sim = sim();
        sim.drain_events();
        let before = *sim.get::<Position>(3).expect("agent 3");
        let mut agents = (**sim.defs()).clone();
        agents[3].file.name = "Renamed".into();
        agents[3].file.goals.primary = "a new goal".into();
        let map = sim.map().clone();
        let command = reload_of(&sim, Arc::new(agents), map, Vec::new());
        sim.send(command);
        sim.step();
        assert_eq!(sim.defs()[3].file.name, "Renamed");
        let done = reloaded(&mut sim);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].changed, vec![3]);
        assert!(done[0].rescheduled.is_empty(), "the schedule is the same");
        assert!(!done[0].map_changed);
        // one tick of walking at most: the agent was not put back anywhere
        let after = *sim.get::<Position>(3).expect("agent 3");
        assert!(before.distance(&after) < 2.0, "{before:?} → {after:?}");
    }

    #[test]
    fn a_changed_schedule_is_taken_up_at_once() {
        let mut sim = sim();
        let now = sim.clock().minute_of_day();
        let mut agents = (**sim.defs()).clone();
        let target = agents[5].home;
        // the whole day is one new activity
        agents[5].schedule = vec![ScheduleBlock {
            activity: "repainting the fence".into(),
            location: target,
            ..agents[5].schedule[0].clone()
        }];
        agents[5].schedule[0].start = 0;
        agents[5].schedule[0].end = 1440;
        agents[5].schedule[0].days = 0x7f;
        let map = sim.map().clone();
        sim.drain_events();
        let command = reload_of(&sim, Arc::new(agents), map, Vec::new());
        sim.send(command);
        for _ in 0..20 {
            sim.step();
        }
        let events = sim.drain_events();
        let changed = events.iter().any(|(_, e)| {
            matches!(e, WorldEvent::ActivityChanged { agent: 5, activity, .. }
                if activity == "repainting the fence")
        });
        assert!(changed, "agent 5 took up the new schedule at minute {now}");
        let activity = sim.get::<Activity>(5).expect("agent 5");
        assert_eq!(activity.block, Some(0));
    }

    #[test]
    fn a_blocked_path_is_searched_again() {
        // mid-morning, when people walk to work
        let mut sim = Sim::new(
            synthetic::world(20, 3),
            SimConfig {
                start_minute: 7 * 60 + 50,
                game_minutes_per_second: 5,
                ..SimConfig::default()
            },
        );
        // find an agent on its way somewhere
        let walking = (0..20u32)
            .find(|&i| {
                sim.get::<Movement>(i)
                    .is_some_and(|m| m.path.len() > 3 && m.goal.is_some())
            })
            .or_else(|| {
                (0..2_000).find_map(|_| {
                    sim.step();
                    (0..20u32).find(|&i| {
                        sim.get::<Movement>(i)
                            .is_some_and(|m| m.path.len() > 3 && m.goal.is_some())
                    })
                })
            })
            .expect("someone walks");
        let movement = sim.get::<Movement>(walking).expect("movement").clone();
        // block a tile in the middle of its way
        let blocked = movement.path[movement.path.len() / 2];
        let mut map = (**sim.map()).clone();
        map.set_walkable(blocked, false);
        let agents = sim.defs().clone();
        sim.drain_events();
        let command = reload_of(&sim, agents, Arc::new(map), Vec::new());
        sim.send(command);
        sim.step();
        let done = reloaded(&mut sim);
        assert!(done[0].map_changed);
        assert!(done[0].repathed.contains(&walking), "{:?}", done[0]);
        for _ in 0..5 {
            sim.step();
        }
        let now = sim.get::<Movement>(walking).expect("movement");
        assert!(
            !now.path.contains(&blocked),
            "the new way avoids the blocked tile"
        );
    }

    #[test]
    fn agents_join_and_leave_and_come_back() {
        let mut sim = sim();
        sim.take_view();
        sim.publish_view();
        sim.step();
        sim.take_view();
        let mut agents = (**sim.defs()).clone();
        let mut newcomer = agents[0].clone();
        newcomer.file.id = "newcomer".into();
        newcomer.file.name = "New Comer".into();
        agents.push(newcomer);
        let map = sim.map().clone();
        // agent 2 is in a conversation with agent 4 when it leaves
        {
            let e4 = sim.entity(4).expect("agent 4");
            let e2 = sim.entity(2).expect("agent 2");
            let mut c = sim.world_mut().resource_mut::<Conversations>();
            c.active.push(crate::conversation::Conversation {
                id: 999,
                participants: vec![2, 4],
                location: None,
                turns: 1,
                max_turns: 4,
                next_line: u64::MAX,
                started: 0,
            });
            sim.world_mut()
                .get_mut::<Talk>(e2)
                .expect("talk")
                .conversation = Some(999);
            sim.world_mut()
                .get_mut::<Talk>(e4)
                .expect("talk")
                .conversation = Some(999);
        }
        sim.drain_events();
        let command = reload_of(&sim, Arc::new(agents.clone()), map.clone(), vec![2]);
        sim.send(command);
        sim.step();
        let events = sim.drain_events();
        let done: Vec<&Arc<Reloaded>> = events
            .iter()
            .filter_map(|(_, e)| match e {
                WorldEvent::ContentReloaded(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(done[0].added, vec![20]);
        assert_eq!(done[0].removed, vec![2]);
        assert!(done[0].changed.is_empty());
        assert!(events.iter().any(|(_, e)| matches!(
            e,
            WorldEvent::ConversationEnded {
                conversation: 999,
                ..
            }
        )));
        assert!(sim.get::<Position>(2).is_none(), "agent 2 left");
        assert!(sim.get::<Position>(20).is_some(), "the newcomer is here");
        assert_eq!(sim.get::<Talk>(4).expect("talk").conversation, None);
        assert_eq!(sim.agent_count(), 21);
        let view = sim.take_view().expect("a frame");
        assert_eq!(view.agents_gone, vec![2]);
        assert!(
            view.agents.iter().any(|a| a.idx == 20),
            "the newcomer is seen"
        );
        // the world goes on, and a state hash is taken over the living
        for _ in 0..30 {
            sim.step();
        }
        assert_eq!(sim.state_hash().len(), 64);
        // agent 2 comes back: a fresh entity at its old index
        let command = reload_of(&sim, Arc::new(agents), map, Vec::new());
        sim.send(command);
        sim.step();
        let back = reloaded(&mut sim);
        assert_eq!(back[0].added, vec![2]);
        assert!(sim.get::<Position>(2).is_some());
    }

    #[test]
    fn a_smaller_map_brings_the_agents_outside_it_home() {
        let mut sim = sim();
        let (w, h) = (sim.map().width, sim.map().height);
        let small = hearth_content::WorldMap::generate(w / 2, h / 2, 3, 9);
        // the agents' homes must be on the new map: definitions resolved on it
        let mut agents = (**sim.defs()).clone();
        for a in &mut agents {
            a.home = 0;
            a.start = 0;
            for b in &mut a.schedule {
                b.location = 0;
            }
        }
        let outside = (0..20u32)
            .filter(|&i| {
                sim.get::<Position>(i)
                    .is_some_and(|p| p.tile().x >= w / 2 || p.tile().y >= h / 2)
            })
            .count();
        assert!(outside > 0, "someone stands where the map is cut");
        let command = reload_of(&sim, Arc::new(agents), Arc::new(small), Vec::new());
        sim.send(command);
        sim.step();
        let done = reloaded(&mut sim);
        assert!(done[0].map_changed);
        for _ in 0..100 {
            sim.step();
        }
        for i in 0..20u32 {
            let p = sim.get::<Position>(i).expect("agent");
            assert!(
                p.tile().x < w / 2 && p.tile().y < h / 2,
                "agent {i} at {p:?}"
            );
        }
    }

    #[test]
    fn who_thinks_with_a_model_follows_the_reload() {
        let mut sim = sim();
        sim.speak_through_models(vec![false; 20], 5);
        sim.plan_through_models(vec![false; 20]);
        let mut agents = (**sim.defs()).clone();
        let mut newcomer = agents[0].clone();
        newcomer.file.id = "newcomer".into();
        agents.push(newcomer);
        let mut r = Reload::diff(sim.defs(), sim.map(), Arc::new(agents), sim.map().clone());
        let mut thinking = vec![false; 21];
        thinking[3] = true;
        thinking[20] = true;
        r.thinking = Some(thinking.clone());
        sim.send(Command::Reload(Box::new(r)));
        sim.step();
        let lines = sim.world().resource::<crate::conversation::ModelLines>();
        assert_eq!(lines.thinking, thinking);
        let plans = sim.world().resource::<crate::plan::ModelPlans>();
        assert_eq!(plans.thinking, thinking);
    }

    #[test]
    fn a_reload_of_other_agents_is_refused_and_nothing_changes() {
        let mut sim = sim();
        let mut agents = (**sim.defs()).clone();
        agents.pop();
        let map = sim.map().clone();
        let before = sim.defs().clone();
        assert!(matches!(
            check(
                &before,
                &Reload::diff(&before, &map, Arc::new(agents.clone()), map.clone())
            ),
            Err(ReloadRefused::AgentCount { .. })
        ));
        sim.drain_events();
        let command = reload_of(&sim, Arc::new(agents), map, Vec::new());
        sim.send(command);
        sim.step();
        assert!(reloaded(&mut sim).is_empty());
        assert!(Arc::ptr_eq(sim.defs(), &before));
    }
}
