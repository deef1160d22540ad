//! Relationships change with what agents live through together: each line of
//! a conversation nudges the listener's affection and trust towards the
//! speaker (and its mood), each finished conversation counts as an
//! interaction, and agents sharing an activity in one place warm to each
//! other once per game hour. Values stay within their ranges (affection
//! −100..100, trust 0..100). Touches `Relationships`, `Needs`, stats, outbox.

use bevy_ecs::prelude::*;

use super::clock::GameClock;
use super::components::{AgentIdx, Needs, Position, Relationships};
use super::events::{Outbox, WorldEvent};
use super::perception::SpatialGrid;
use super::{AgentIndex, SimConfig, Stats};

/// A change of how `from` feels about `to`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelationDelta {
    pub from: u32,
    pub to: u32,
    pub affection: f32,
    pub trust: f32,
    /// A finished interaction: counted, dated and announced.
    pub interaction: bool,
}

/// Deltas of this tick, applied in order by [`relate`].
#[derive(Debug, Default, Resource)]
pub struct RelationDeltas(pub Vec<RelationDelta>);

/// Affection and trust gained per game hour of shared activity.
const SHARED_AFFECTION: f32 = 0.4;
const SHARED_TRUST: f32 = 0.2;
const SHARED_MAX_OTHERS: usize = 4;

#[expect(
    clippy::too_many_arguments,
    reason = "a bevy system takes what it touches as parameters"
)]
pub fn relate(
    clock: Res<GameClock>,
    config: Res<SimConfig>,
    index: Res<AgentIndex>,
    grid: Res<SpatialGrid>,
    mut deltas: ResMut<RelationDeltas>,
    mut stats: ResMut<Stats>,
    mut outbox: ResMut<Outbox>,
    mut agents: Query<(&AgentIdx, &Position, &mut Relationships, &mut Needs)>,
) {
    let now = clock.minutes();
    for d in deltas.0.drain(..) {
        let Ok((_, _, mut rels, mut needs)) = agents.get_mut(index.0[d.from as usize]) else {
            continue;
        };
        let r = rels.entry(d.to);
        r.affection = (r.affection + d.affection).clamp(-100.0, 100.0);
        r.trust = (r.trust + d.trust).clamp(0.0, 100.0);
        if d.interaction {
            r.interactions = r.interactions.saturating_add(1);
            r.last_interaction = Some(now);
            stats.relationship_changes += 1;
            let (affection, trust) = (r.affection, r.trust);
            outbox.push(
                clock.tick,
                WorldEvent::RelationshipChanged {
                    agent: d.from,
                    other: d.to,
                    affection,
                    trust,
                },
            );
        } else {
            needs.mood = (needs.mood + d.affection * 0.02).clamp(-1.0, 1.0);
            needs.arousal = (needs.arousal + d.affection.abs() * 0.02).clamp(0.0, 1.0);
            needs.cognitive_load = (needs.cognitive_load + 0.03).clamp(0.0, 1.0);
        }
    }

    // shared activity: once per game hour per agent, spread over the hour's ticks
    let ticks_per_hour = (3600 / clock.seconds_per_tick).max(1);
    let slot = clock.tick % ticks_per_hour;
    for (idx, position, mut rels, needs) in &mut agents {
        if u64::from(idx.0) % ticks_per_hour != slot || needs.sleeping {
            continue;
        }
        // what this agent is doing, as the grid saw it; talking is not sharing an activity
        let mut mine = None;
        grid.near(position.x, position.y, 0.0, |s, _| {
            if s.idx == idx.0 && s.free {
                mine = Some((s.doing, s.location));
            }
        });
        let Some((doing, location)) = mine else {
            continue;
        };
        let mut others: Vec<u32> = Vec::new();
        grid.near(position.x, position.y, config.vision_radius, |s, _| {
            if s.idx != idx.0 && s.doing == doing && s.location == location && s.free {
                others.push(s.idx);
            }
        });
        others.sort_unstable();
        for other in others.into_iter().take(SHARED_MAX_OTHERS) {
            let r = rels.entry(other);
            r.affection = (r.affection + SHARED_AFFECTION).clamp(-100.0, 100.0);
            r.trust = (r.trust + SHARED_TRUST).clamp(0.0, 100.0);
            stats.shared_activity += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::MapRes;
    use crate::components::{Activity, Relationship, Talk};
    use crate::perception::index_positions;
    use crate::testkit::{self, events};
    use hearth_content::WorldMap;

    /// A world at 07:00 with an agent at each position, all baking (block 0)
    /// at location 2, free, with a neutral mood.
    fn setup(at: &[(f32, f32)]) -> (World, Vec<Entity>) {
        let config = SimConfig::default();
        let mut world = World::new();
        let clock = GameClock::new(config.tick_rate, config.game_minutes_per_second, 7 * 60);
        let now = clock.minutes();
        world.insert_resource(clock);
        world.insert_resource(MapRes(Arc::new(WorldMap::generate(40, 30, 6, 1))));
        world.insert_resource(config);
        world.insert_resource(SpatialGrid::default());
        world.insert_resource(RelationDeltas::default());
        world.insert_resource(Stats::default());
        world.insert_resource(Outbox::default());
        let agents: Vec<Entity> = at
            .iter()
            .enumerate()
            .map(|(i, &(x, y))| {
                world
                    .spawn(testkit::agent(
                        i as u32,
                        x,
                        y,
                        testkit::at_work(now),
                        Needs {
                            mood: 0.0,
                            arousal: 0.2,
                            cognitive_load: 0.0,
                            ..Needs::default()
                        },
                    ))
                    .id()
            })
            .collect();
        world.insert_resource(AgentIndex(agents.clone()));
        (world, agents)
    }

    /// `relate` alone (the grid stays empty: no shared activity).
    fn relating() -> Schedule {
        let mut schedule = Schedule::default();
        schedule.add_systems(relate);
        schedule
    }

    /// `index_positions` then `relate`, for shared activity.
    fn sharing() -> Schedule {
        let mut schedule = Schedule::default();
        schedule.add_systems((index_positions, relate).chain());
        schedule
    }

    fn delta(from: u32, to: u32, affection: f32, trust: f32, interaction: bool) -> RelationDelta {
        RelationDelta {
            from,
            to,
            affection,
            trust,
            interaction,
        }
    }

    fn push(world: &mut World, deltas: &[RelationDelta]) {
        world
            .resource_mut::<RelationDeltas>()
            .0
            .extend_from_slice(deltas);
    }

    fn rel(world: &World, e: Entity, target: u32) -> Option<Relationship> {
        world
            .get::<Relationships>(e)
            .expect("relationships")
            .get(target)
            .cloned()
    }

    fn needs(world: &World, e: Entity) -> Needs {
        *world.get::<Needs>(e).expect("needs")
    }

    #[test]
    fn deltas_apply_in_order_each_clamped() {
        let (mut world, agents) = setup(&[(10.0, 7.0), (20.0, 7.0)]);
        {
            let mut rels = world.get_mut::<Relationships>(agents[0]).expect("rels");
            let r = rels.entry(1);
            r.affection = 90.0;
            r.trust = 95.0;
        }
        // clamped at each step: 90 + 50 -> 100, then -30 -> 70 (not 90 + 20 = 110 -> 100)
        push(
            &mut world,
            &[
                delta(0, 1, 50.0, 50.0, true),
                delta(0, 1, -30.0, -30.0, true),
            ],
        );
        relating().run(&mut world);
        let r = rel(&world, agents[0], 1).expect("a relationship");
        assert_eq!((r.affection, r.trust), (70.0, 70.0));
        assert!(world.resource::<RelationDeltas>().0.is_empty(), "drained");
        // the other side is untouched
        assert_eq!(rel(&world, agents[1], 0), None);

        push(
            &mut world,
            &[delta(0, 1, 1e9, 1e9, true), delta(1, 0, -1e9, -1e9, true)],
        );
        relating().run(&mut world);
        let r = rel(&world, agents[0], 1).expect("a relationship");
        assert_eq!((r.affection, r.trust), (100.0, 100.0));
        let r = rel(&world, agents[1], 0).expect("a relationship");
        assert_eq!((r.affection, r.trust), (-100.0, 0.0));
        // and from the low end back up, one step at a time
        push(&mut world, &[delta(1, 0, 5.0, 5.0, true)]);
        relating().run(&mut world);
        let r = rel(&world, agents[1], 0).expect("a relationship");
        assert_eq!((r.affection, r.trust), (-95.0, 5.0));
    }

    #[test]
    fn an_interaction_is_counted_dated_and_announced() {
        let (mut world, agents) = setup(&[(10.0, 7.0), (20.0, 7.0), (30.0, 7.0)]);
        let before = needs(&world, agents[0]);
        push(&mut world, &[delta(0, 2, 1.5, 0.5, true)]);
        let mut schedule = relating();
        schedule.run(&mut world);
        let now = 7 * 60;
        let r = rel(&world, agents[0], 2).expect("a new relationship");
        assert_eq!(
            r,
            Relationship {
                target: 2,
                kind: "acquaintance".into(),
                affection: 1.5,
                trust: 30.5,
                interactions: 1,
                last_interaction: Some(now),
            }
        );
        assert_eq!(
            events(&mut world),
            vec![WorldEvent::RelationshipChanged {
                agent: 0,
                other: 2,
                affection: 1.5,
                trust: 30.5,
            }]
        );
        assert_eq!(world.resource::<Stats>().relationship_changes, 1);
        assert_eq!(needs(&world, agents[0]), before, "no mood from the count");

        // an hour later, another
        world.resource_mut::<GameClock>().seconds = (now + 60) * 60;
        push(&mut world, &[delta(0, 2, 0.0, 0.0, true)]);
        schedule.run(&mut world);
        let r = rel(&world, agents[0], 2).expect("the relationship");
        assert_eq!((r.interactions, r.last_interaction), (2, Some(now + 60)));
        assert_eq!(events(&mut world).len(), 1);
        assert_eq!(rel(&world, agents[2], 0), None);
    }

    #[test]
    fn a_line_moves_the_listeners_feelings_quietly() {
        let (mut world, agents) = setup(&[(10.0, 7.0), (20.0, 7.0)]);
        // 1 heard a warm line from 0
        push(&mut world, &[delta(1, 0, 2.0, 0.5, false)]);
        relating().run(&mut world);
        let r = rel(&world, agents[1], 0).expect("a relationship");
        assert_eq!((r.affection, r.trust, r.interactions), (2.0, 30.5, 0));
        assert_eq!(r.last_interaction, None);
        let n = needs(&world, agents[1]);
        assert!((n.mood - 0.04).abs() < 1e-6, "{n:?}");
        assert!((n.arousal - 0.24).abs() < 1e-6, "{n:?}");
        assert!((n.cognitive_load - 0.03).abs() < 1e-6, "{n:?}");
        // the speaker is not the one moved
        assert_eq!(needs(&world, agents[0]).mood, 0.0);
        assert!(events(&mut world).is_empty());
        assert_eq!(world.resource::<Stats>().relationship_changes, 0);

        // a cold line lowers the mood but still stirs
        push(&mut world, &[delta(1, 0, -3.0, 0.0, false)]);
        relating().run(&mut world);
        let n = needs(&world, agents[1]);
        assert!((n.mood - (0.04 - 0.06)).abs() < 1e-6, "{n:?}");
        assert!((n.arousal - 0.30).abs() < 1e-6, "{n:?}");
        // and many lines keep everything in range
        push(&mut world, &vec![delta(1, 0, 3.0, 1.5, false); 200]);
        relating().run(&mut world);
        let n = needs(&world, agents[1]);
        assert_eq!((n.mood, n.arousal, n.cognitive_load), (1.0, 1.0, 1.0));
        let r = rel(&world, agents[1], 0).expect("a relationship");
        assert_eq!((r.affection, r.trust), (100.0, 100.0));
    }

    #[test]
    fn sharing_an_activity_warms_once_a_game_hour() {
        let (mut world, agents) = setup(&[
            (10.0, 7.0),
            (11.0, 7.0),
            (12.0, 7.0), // 2: another block
            (10.0, 8.0), // 3: the same block elsewhere
            (11.0, 8.0), // 4: asleep
            (9.0, 7.0),  // 5: in a conversation
            (20.0, 7.0), // 6: the same, out of sight
        ]);
        world
            .get_mut::<Activity>(agents[2])
            .expect("activity")
            .block = Some(1);
        world
            .get_mut::<Activity>(agents[3])
            .expect("activity")
            .location = 3;
        world.get_mut::<Needs>(agents[4]).expect("needs").sleeping = true;
        world.get_mut::<Talk>(agents[5]).expect("talk").conversation = Some(1);
        let mut schedule = sharing();
        // 600 ticks a game hour; tick 0 is agent 0's slot
        schedule.run(&mut world);
        let r = rel(&world, agents[0], 1).expect("warmed to 1");
        assert!((r.affection - SHARED_AFFECTION).abs() < 1e-6);
        assert!((r.trust - (30.0 + SHARED_TRUST)).abs() < 1e-6);
        assert_eq!(r.interactions, 0, "not an interaction");
        let rels = world.get::<Relationships>(agents[0]).expect("rels");
        assert_eq!(rels.0.len(), 1, "only 1: {rels:?}");
        assert_eq!(rel(&world, agents[1], 0), None, "1 waits for its slot");
        assert_eq!(world.resource::<Stats>().shared_activity, 1);
        assert!(events(&mut world).is_empty());

        for tick in 1..600 {
            world.resource_mut::<GameClock>().tick = tick;
            schedule.run(&mut world);
        }
        let r = rel(&world, agents[0], 1).expect("warmed to 1");
        assert!(
            (r.affection - SHARED_AFFECTION).abs() < 1e-6,
            "once an hour"
        );
        let r = rel(&world, agents[1], 0).expect("1 warmed to 0");
        assert!((r.affection - SHARED_AFFECTION).abs() < 1e-6);
        let rels = world.get::<Relationships>(agents[1]).expect("rels");
        assert_eq!(rels.0.len(), 1, "only 0: {rels:?}");
        // another block, another place, asleep, out of sight: no warming
        for i in [2, 3, 4, 6] {
            assert!(
                world
                    .get::<Relationships>(agents[i])
                    .expect("rels")
                    .0
                    .is_empty(),
                "agent {i}"
            );
        }

        world.resource_mut::<GameClock>().tick = 600;
        schedule.run(&mut world);
        let r = rel(&world, agents[0], 1).expect("warmed to 1");
        assert!(
            (r.affection - 2.0 * SHARED_AFFECTION).abs() < 1e-6,
            "the next hour"
        );
    }

    #[test]
    fn shared_activity_warms_to_at_most_four_others() {
        let at: Vec<(f32, f32)> = (0..7).map(|i| (10.0 + 0.5 * i as f32, 7.0)).collect();
        let (mut world, agents) = setup(&at);
        sharing().run(&mut world);
        let targets: Vec<u32> = world
            .get::<Relationships>(agents[0])
            .expect("rels")
            .0
            .iter()
            .map(|r| r.target)
            .collect();
        assert_eq!(targets, vec![1, 2, 3, 4]);
    }
}
