//! Content reloaded into the live world: new agent definitions (same agents,
//! same order) and a new map of the same size take effect between two ticks.
//! Agents keep their state (position, needs, memories, relationships); those
//! whose schedule or home changed take up their new schedule at once; those
//! whose way crossed what the map changed look for a new one; location ids
//! are carried over by name. The outcome is emitted as
//! [`WorldEvent::ContentReloaded`] so every consumer of the world's events
//! (hub, memory service, write-behind pipeline) swaps in the same content at
//! the same tick. No I/O: the files were read and checked off the world's
//! thread. Touches the [`Defs`] and [`MapRes`] resources, agents' activity,
//! plan and movement, and the path queue.

use std::sync::Arc;

use bevy_ecs::prelude::*;
use serde::Serialize;

use super::components::{Activity, AgentIdx, Movement, Plan, Step};
use super::path::PathQueue;
use super::{Defs, GameClock, MapRes, Outbox, WorldEvent};
use crate::content::{AgentDef, LocationId, WorldMap};

/// Content to swap in: definitions of the same agents, in the world's order,
/// and the map (the same size as the world's).
#[derive(Debug, Clone)]
pub struct Reload {
    pub agents: Arc<Vec<AgentDef>>,
    pub map: Arc<WorldMap>,
    /// Lore and prompt templates changed too (the world does not use them;
    /// the flags are carried to [`Reloaded`] for its consumers).
    pub lore: bool,
    pub prompts: bool,
}

/// Agents the schedule looks at on the next tick whatever its cache says
/// (their schedule changed under it).
#[derive(Debug, Default, Resource)]
pub struct Rescheduled(pub std::collections::HashSet<u32>);

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
        "the world has {have} agents and the reload {got}: agents are added or removed only at a restart"
    )]
    AgentCount { have: usize, got: usize },
    #[error("agent {index} is '{have}' in the world and '{got}' in the reload")]
    AgentOrder {
        index: usize,
        have: String,
        got: String,
    },
    #[error(
        "the map is {have_w}x{have_h} in the world and {got_w}x{got_h} in the reload: a map changes size only at a restart"
    )]
    MapSize {
        have_w: u16,
        have_h: u16,
        got_w: u16,
        got_h: u16,
    },
}

/// Checks that `reload` can be applied to a world of `agents` on `map`.
pub fn check(agents: &[AgentDef], map: &WorldMap, reload: &Reload) -> Result<(), ReloadRefused> {
    if agents.len() != reload.agents.len() {
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
    if (map.width, map.height) != (reload.map.width, reload.map.height) {
        return Err(ReloadRefused::MapSize {
            have_w: map.width,
            have_h: map.height,
            got_w: reload.map.width,
            got_h: reload.map.height,
        });
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
    check(&old_agents, &old_map, &reload)?;
    let Reload {
        agents,
        map,
        lore,
        prompts,
    } = reload;
    let map_changed = *old_map != *map;
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
    let to_new = |id: LocationId| moved.get(id as usize).copied().flatten();
    let mut done = Reloaded {
        agents: agents.clone(),
        map: map.clone(),
        changed: Vec::new(),
        rescheduled: Vec::new(),
        repathed: Vec::new(),
        replanned: Vec::new(),
        map_changed,
        lore,
        prompts,
    };
    let mut requeue = Vec::new();
    let mut recheck = Vec::new();
    let mut query = world.query::<(Entity, &AgentIdx, &mut Activity, &mut Plan, &mut Movement)>();
    for (entity, idx, mut activity, mut plan, mut movement) in query.iter_mut(world) {
        let i = idx.0 as usize;
        let (Some(old), Some(new)) = (old_agents.get(i), agents.get(i)) else {
            continue;
        };
        if old != new {
            done.changed.push(idx.0);
        }
        let mut replan = false;
        if map_changed {
            // ids into the old map, carried over by name
            match to_new(activity.location) {
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
                    match to_new(*location) {
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
                done.repathed.push(idx.0);
            }
        }
        let rescheduled = old.schedule != new.schedule || old.home != new.home;
        if rescheduled {
            done.rescheduled.push(idx.0);
        }
        if replan {
            done.replanned.push(idx.0);
            if to_new(activity.location).is_none() {
                activity.location = new.home;
            }
        }
        if rescheduled || replan {
            // looked at again by the schedule at once, and a new plan made
            // for whatever it decides
            activity.block = None;
            activity.override_reason = None;
            activity.until = activity.since;
            recheck.push(idx.0);
        }
    }
    world.resource_mut::<Rescheduled>().0.extend(recheck);
    {
        let mut queue = world.resource_mut::<PathQueue>();
        for e in requeue {
            queue.push(e);
        }
    }
    world.resource_mut::<Defs>().agents = agents;
    world.resource_mut::<MapRes>().0 = map;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{ScheduleBlock, synthetic};
    use crate::world::components::Position;
    use crate::world::{Command, Sim, SimConfig};

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
        sim.send(Command::Reload(Box::new(Reload {
            agents: Arc::new(agents),
            map,
            lore: false,
            prompts: false,
        })));
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
        sim.send(Command::Reload(Box::new(Reload {
            agents: Arc::new(agents),
            map,
            lore: false,
            prompts: false,
        })));
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
        sim.send(Command::Reload(Box::new(Reload {
            agents,
            map: Arc::new(map),
            lore: false,
            prompts: false,
        })));
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
    fn a_reload_of_other_agents_is_refused_and_nothing_changes() {
        let mut sim = sim();
        let mut agents = (**sim.defs()).clone();
        agents.pop();
        let map = sim.map().clone();
        let before = sim.defs().clone();
        assert!(matches!(
            check(
                &before,
                &map,
                &Reload {
                    agents: Arc::new(agents.clone()),
                    map: map.clone(),
                    lore: false,
                    prompts: false,
                }
            ),
            Err(ReloadRefused::AgentCount { .. })
        ));
        sim.drain_events();
        sim.send(Command::Reload(Box::new(Reload {
            agents: Arc::new(agents),
            map,
            lore: false,
            prompts: false,
        })));
        sim.step();
        assert!(reloaded(&mut sim).is_empty());
        assert!(Arc::ptr_eq(sim.defs(), &before));
    }
}
