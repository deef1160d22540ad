//! Needs: energy drains while awake (faster in conversation) and recovers in
//! sleep; mood drifts back to the agent's temperament and sinks when tired;
//! arousal and cognitive load settle with quiet. An agent sleeps when its
//! activity is sleep and it has reached its spot. Low energy biases the
//! schedule (see `schedule`: an exhausted agent goes home). Each agent is
//! updated once per game minute, spread over the minute's ticks. Touches
//! `Needs` and the outbox.

use bevy_ecs::prelude::*;

use super::SimConfig;
use super::clock::GameClock;
use super::components::{Activity, AgentIdx, Needs, Plan, Step, Talk};
use super::events::{Outbox, WorldEvent};

/// Energy per game minute.
const DRAIN_AWAKE: f32 = 0.0008;
const DRAIN_TALKING: f32 = 0.0004;
const RECOVER_ASLEEP: f32 = 0.0017;

pub fn update_needs(
    clock: Res<GameClock>,
    config: Res<SimConfig>,
    mut outbox: ResMut<Outbox>,
    mut agents: Query<(&AgentIdx, &Activity, &Plan, &Talk, &mut Needs)>,
) {
    let ticks_per_minute = (60 / clock.seconds_per_tick).max(1);
    let slot = clock.tick % ticks_per_minute;
    // each agent's share of the minute, whatever the tick rate
    let dt = clock.minutes_per_tick() * ticks_per_minute as f32;
    for (idx, activity, plan, talk, mut needs) in &mut agents {
        if u64::from(idx.0) % ticks_per_minute != slot {
            continue;
        }
        let performing = matches!(plan.step(), Some(Step::Perform { .. } | Step::Do { .. }));
        let asleep = performing && talk.conversation.is_none() && activity.sleep;
        let n = &mut *needs;
        if asleep != n.sleeping {
            n.sleeping = asleep;
            if config.emit_activity_events {
                let event = if asleep {
                    WorldEvent::FellAsleep { agent: idx.0 }
                } else {
                    WorldEvent::Woke { agent: idx.0 }
                };
                outbox.push(clock.tick, event);
            }
        }
        if asleep {
            n.energy += RECOVER_ASLEEP * dt;
        } else {
            n.energy -= (DRAIN_AWAKE
                + if talk.conversation.is_some() {
                    DRAIN_TALKING
                } else {
                    0.0
                })
                * dt;
        }
        n.mood += (n.baseline - n.mood) * 0.01 * dt;
        if n.energy < 0.25 {
            n.mood -= 0.002 * dt;
        }
        n.arousal += (0.2 - n.arousal) * 0.02 * dt;
        if talk.conversation.is_none() {
            n.cognitive_load -= 0.01 * dt;
        }
        n.energy = n.energy.clamp(0.0, 1.0);
        n.mood = n.mood.clamp(-1.0, 1.0);
        n.arousal = n.arousal.clamp(0.0, 1.0);
        n.cognitive_load = n.cognitive_load.clamp(0.0, 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::{
        Facing, Movement, Override, Perception, PlanStatus, Position, Relationships,
    };
    use crate::testkit::{events, tick};
    use hearth_content::Tile;

    fn setup(tick_rate: u32, game_minutes_per_second: u32) -> World {
        let config = SimConfig {
            tick_rate,
            game_minutes_per_second,
            ..SimConfig::default()
        };
        let mut world = World::new();
        world.insert_resource(GameClock::new(tick_rate, game_minutes_per_second, 22 * 60));
        world.insert_resource(config);
        world.insert_resource(Outbox::default());
        world
    }

    /// An agent whose activity is sleep (or not), standing at its spot
    /// (`Perform`) or still walking there (`GoTo`).
    fn spawn(world: &mut World, idx: u32, sleep: bool, performing: bool, needs: Needs) -> Entity {
        let now = world.resource::<GameClock>().minutes();
        world
            .spawn((
                AgentIdx(idx),
                Position { x: 3.0, y: 3.0 },
                Facing::default(),
                Activity {
                    block: Some(0),
                    override_reason: None::<Override>,
                    location: 0,
                    since: now,
                    until: now + 480,
                    sleep,
                },
                Plan {
                    id: 1,
                    goal: "sleep".into(),
                    steps: vec![
                        Step::GoTo {
                            location: 0,
                            tile: Tile::new(3, 3),
                        },
                        Step::Perform { until: now + 480 },
                    ],
                    current: usize::from(performing),
                    status: PlanStatus::Active,
                    priority: 5,
                    deadline: now + 480,
                },
                Movement::default(),
                needs,
                Perception::default(),
                Talk::default(),
                Relationships::default(),
            ))
            .id()
    }

    fn updating() -> Schedule {
        let mut schedule = Schedule::default();
        schedule.add_systems(update_needs);
        schedule
    }

    /// Runs one game minute of ticks.
    fn minute(world: &mut World, schedule: &mut Schedule) {
        let per_minute = 60 / world.resource::<GameClock>().seconds_per_tick;
        for _ in 0..per_minute {
            tick(world, schedule);
        }
    }

    fn needs(world: &World, e: Entity) -> Needs {
        *world.get::<Needs>(e).expect("needs")
    }

    fn half() -> Needs {
        Needs {
            energy: 0.5,
            ..Needs::default()
        }
    }

    #[test]
    fn energy_falls_awake_and_rises_asleep() {
        let mut world = setup(10, 1);
        let awake = spawn(&mut world, 0, false, true, half());
        let asleep = spawn(&mut world, 1, true, true, half());
        let walking_to_bed = spawn(&mut world, 2, true, false, half());
        let talking_in_bed = spawn(&mut world, 3, true, true, half());
        world
            .get_mut::<Talk>(talking_in_bed)
            .expect("talk")
            .conversation = Some(1);
        let mut schedule = updating();
        minute(&mut world, &mut schedule);

        let close = |a: f32, b: f32| (a - b).abs() < 1e-6;
        assert!(close(needs(&world, awake).energy, 0.5 - DRAIN_AWAKE));
        assert!(close(needs(&world, asleep).energy, 0.5 + RECOVER_ASLEEP));
        assert!(close(
            needs(&world, walking_to_bed).energy,
            0.5 - DRAIN_AWAKE
        ));
        assert!(close(
            needs(&world, talking_in_bed).energy,
            0.5 - DRAIN_AWAKE - DRAIN_TALKING
        ));
        let sleeping: Vec<bool> = [awake, asleep, walking_to_bed, talking_in_bed]
            .iter()
            .map(|e| needs(&world, *e).sleeping)
            .collect();
        assert_eq!(sleeping, vec![false, true, false, false]);
        assert_eq!(
            events(&mut world),
            vec![WorldEvent::FellAsleep { agent: 1 }]
        );

        // an hour on: the same rates, and no more events
        for _ in 0..60 {
            minute(&mut world, &mut schedule);
        }
        assert!((needs(&world, awake).energy - (0.5 - 61.0 * DRAIN_AWAKE)).abs() < 1e-4);
        assert!((needs(&world, asleep).energy - (0.5 + 61.0 * RECOVER_ASLEEP)).abs() < 1e-4);
        assert!(events(&mut world).is_empty());
    }

    #[test]
    fn falling_asleep_and_waking_are_announced_once_each() {
        let mut world = setup(10, 1);
        let ada = spawn(&mut world, 4, true, false, half());
        let mut schedule = updating();
        minute(&mut world, &mut schedule);
        assert!(events(&mut world).is_empty(), "still walking to bed");
        // reaches the bed
        world.get_mut::<Plan>(ada).expect("plan").current = 1;
        minute(&mut world, &mut schedule);
        assert_eq!(
            events(&mut world),
            vec![WorldEvent::FellAsleep { agent: 4 }]
        );
        minute(&mut world, &mut schedule);
        assert!(events(&mut world).is_empty());
        // woken for a chat, then back to sleep
        world.get_mut::<Talk>(ada).expect("talk").conversation = Some(2);
        minute(&mut world, &mut schedule);
        assert_eq!(events(&mut world), vec![WorldEvent::Woke { agent: 4 }]);
        assert!(!needs(&world, ada).sleeping);
        world.get_mut::<Talk>(ada).expect("talk").conversation = None;
        minute(&mut world, &mut schedule);
        assert_eq!(
            events(&mut world),
            vec![WorldEvent::FellAsleep { agent: 4 }]
        );
        // the night is over: the plan is done, the activity is not sleep
        world.get_mut::<Plan>(ada).expect("plan").current = 2;
        minute(&mut world, &mut schedule);
        assert_eq!(events(&mut world), vec![WorldEvent::Woke { agent: 4 }]);
        for _ in 0..5 {
            minute(&mut world, &mut schedule);
        }
        assert!(events(&mut world).is_empty());
        // without activity events the state still changes, silently
        world.resource_mut::<SimConfig>().emit_activity_events = false;
        world.get_mut::<Plan>(ada).expect("plan").current = 1;
        minute(&mut world, &mut schedule);
        assert!(needs(&world, ada).sleeping);
        assert!(events(&mut world).is_empty());
    }

    #[test]
    fn values_stay_in_range_from_any_start() {
        let mut world = setup(10, 1);
        let low = Needs {
            energy: 0.0,
            mood: -1.0,
            arousal: 0.0,
            cognitive_load: 0.0,
            sleeping: false,
            baseline: -1.0,
        };
        let high = Needs {
            energy: 1.0,
            mood: 1.0,
            arousal: 1.0,
            cognitive_load: 1.0,
            sleeping: false,
            baseline: 1.0,
        };
        let wild = Needs {
            energy: 3.0,
            mood: -7.0,
            arousal: -2.0,
            cognitive_load: 9.0,
            sleeping: false,
            baseline: 0.2,
        };
        let agents = [
            spawn(&mut world, 0, false, true, low),
            spawn(&mut world, 1, true, true, low),
            spawn(&mut world, 2, false, true, high),
            spawn(&mut world, 3, true, true, high),
            spawn(&mut world, 4, false, true, wild),
            spawn(&mut world, 5, true, false, wild),
        ];
        world.get_mut::<Talk>(agents[0]).expect("talk").conversation = Some(1);
        world.get_mut::<Talk>(agents[2]).expect("talk").conversation = Some(1);
        let mut schedule = updating();
        for m in 0..600 {
            minute(&mut world, &mut schedule);
            for (i, e) in agents.iter().enumerate() {
                let n = needs(&world, *e);
                let ok = (0.0..=1.0).contains(&n.energy)
                    && (-1.0..=1.0).contains(&n.mood)
                    && (0.0..=1.0).contains(&n.arousal)
                    && (0.0..=1.0).contains(&n.cognitive_load);
                assert!(ok, "agent {i} after {} minutes: {n:?}", m + 1);
            }
        }
        // ten hours: the sleeper is rested, the one talking all along is tired
        assert_eq!(needs(&world, agents[1]).energy, 1.0);
        let talked = 1.0 - 600.0 * (DRAIN_AWAKE + DRAIN_TALKING);
        assert!((needs(&world, agents[2]).energy - talked).abs() < 1e-3);
        assert_eq!(needs(&world, agents[0]).energy, 0.0);
    }

    #[test]
    fn mood_drifts_towards_the_baseline_without_overshooting() {
        let mut world = setup(10, 1);
        let above = spawn(
            &mut world,
            0,
            false,
            true,
            Needs {
                mood: 0.8,
                baseline: 0.1,
                ..Needs::default()
            },
        );
        let below = spawn(
            &mut world,
            1,
            false,
            true,
            Needs {
                mood: -0.6,
                baseline: 0.1,
                ..Needs::default()
            },
        );
        let tired = spawn(
            &mut world,
            2,
            false,
            true,
            Needs {
                energy: 0.2,
                mood: 0.1,
                baseline: 0.1,
                ..Needs::default()
            },
        );
        let mut schedule = updating();
        minute(&mut world, &mut schedule);
        assert!((needs(&world, above).mood - (0.8 - 0.7 * 0.01)).abs() < 1e-6);
        assert!((needs(&world, below).mood - (-0.6 + 0.7 * 0.01)).abs() < 1e-6);
        // tiredness sours the mood even at its baseline
        assert!((needs(&world, tired).mood - (0.1 - 0.002)).abs() < 1e-6);
        let (mut last_above, mut last_below) =
            (needs(&world, above).mood, needs(&world, below).mood);
        for _ in 0..300 {
            minute(&mut world, &mut schedule);
            let (a, b) = (needs(&world, above).mood, needs(&world, below).mood);
            assert!(a < last_above && a > 0.1, "{a}");
            assert!(b > last_below && b < 0.1, "{b}");
            (last_above, last_below) = (a, b);
        }
        assert!((last_above - 0.1).abs() < 0.05);
        assert!((last_below - 0.1).abs() < 0.05);
    }

    #[test]
    fn each_agent_is_updated_once_a_game_minute_on_its_slot() {
        let mut world = setup(10, 1);
        let ada = spawn(&mut world, 3, false, true, half());
        let mut schedule = updating();
        let mut changes = Vec::new();
        let mut last = needs(&world, ada).energy;
        for _ in 0..30 {
            tick(&mut world, &mut schedule);
            let energy = needs(&world, ada).energy;
            if energy != last {
                changes.push(world.resource::<GameClock>().tick);
            }
            last = energy;
        }
        assert_eq!(changes, vec![3, 13, 23]);
    }

    #[test]
    fn a_game_minute_drains_the_same_at_any_tick_rate() {
        // (ticks a second, game minutes a second, tolerance in game minutes)
        let clocks = [
            (10, 1, 0.0),
            (20, 1, 0.0),
            (30, 1, 0.0),
            (1, 1, 0.0),
            (10, 2, 0.0),
            (5, 3, 0.0),
            (2, 6, 0.0),
            // 8 game seconds a tick: a slot every 56 seconds, not quite a minute
            (7, 1, 1.5),
        ];
        for (rate, scale, slack) in clocks {
            let mut world = setup(rate, scale);
            let agents: Vec<Entity> = (0..12)
                .map(|i| spawn(&mut world, i, false, true, half()))
                .collect();
            let mut schedule = updating();
            // half an hour of game time, in whole ticks for every clock above
            let end = world.resource::<GameClock>().seconds + 30 * 60;
            while world.resource::<GameClock>().seconds < end {
                tick(&mut world, &mut schedule);
            }
            assert_eq!(world.resource::<GameClock>().seconds, end);
            for e in agents {
                let drained = (0.5 - needs(&world, e).energy) / DRAIN_AWAKE;
                assert!(
                    (drained - 30.0).abs() <= slack + 1e-2,
                    "{rate} Hz at {scale} game minutes a second: {drained} minutes"
                );
            }
        }
    }
}
