//! The living world end to end, headless: the demo cast over one game day,
//! and determinism of the state hash.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::collections::HashMap;

use hearth_content::{Content, synthetic, validate};
use hearth_tests::workspace_root;
use hearth_world::components::{Activity, Position, Talk};
use hearth_world::schedule::due_block;
use hearth_world::{Sim, SimConfig};

fn demo() -> Content {
    let root = workspace_root();
    validate::load(&root.join("agents"), &root.join("assets/maps/valley.tmj"))
        .unwrap_or_else(|r| panic!("demo content invalid:\n{r}"))
}

/// Ticks in one game day at the default 10 Hz and 1 game minute per second.
const DAY_TICKS: u64 = 24 * 60 * 10;

#[test]
fn over_one_game_day_agents_follow_their_schedules_and_talk() {
    let content = demo();
    assert!(
        content.agents.len() >= 12,
        "the demo has {} agents",
        content.agents.len()
    );
    assert!(content.map.locations.len() >= 10);
    let mut sim = Sim::new(
        content,
        SimConfig {
            seed: 11,
            ..SimConfig::default()
        },
    );
    let rng = hearth_world::rng::WorldRng::new(11);
    let defs = sim.defs().clone();
    let map = sim.map().clone();
    // (agent, block, occurrence day) -> (minutes due, minutes at the location)
    let mut presence: HashMap<(u32, usize, u64), (u32, u32)> = HashMap::new();
    for _ in 0..DAY_TICKS {
        sim.step();
        sim.drain_events();
        let clock = sim.clock().clone();
        if !clock.new_minute() {
            continue;
        }
        for (i, def) in defs.iter().enumerate() {
            let idx = i as u32;
            let Some((block, _)) = due_block(
                def,
                &rng,
                idx,
                clock.day(),
                clock.weekday(),
                clock.minute_of_day(),
            ) else {
                continue;
            };
            let b = &def.schedule[block];
            let activity = sim.get::<Activity>(idx).unwrap();
            if activity.block != Some(block as u16) {
                // overridden (exhaustion) or not yet switched this minute: counts as absent
            }
            let pos = sim.get::<Position>(idx).unwrap();
            let at = map.location(b.location).rect.contains(pos.tile());
            // an occurrence is identified by the day its block started
            let start_day = if b.start > b.end && clock.minute_of_day() < b.end {
                clock.day().saturating_sub(1)
            } else {
                clock.day()
            };
            let e = presence.entry((idx, block, start_day)).or_default();
            e.0 += 1;
            e.1 += u32::from(at);
        }
    }
    let mut failures = Vec::new();
    for ((idx, block, day), (due, at)) in &presence {
        // entries cut by the start or end of the run are too short to judge
        if *due < 20 {
            continue;
        }
        let share = f64::from(*at) / f64::from(*due);
        if share < 0.6 {
            let def = &defs[*idx as usize];
            failures.push(format!(
                "{} was at {} for {:.0}% of \"{}\" (day {day}, {due} min)",
                def.file.id,
                map.location(def.schedule[*block].location).name,
                share * 100.0,
                def.schedule[*block].activity
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "schedules not followed:\n{}",
        failures.join("\n")
    );
    assert!(
        presence.len() > defs.len() * 4,
        "too few schedule entries judged: {}",
        presence.len()
    );

    let talkers = (0..defs.len() as u32)
        .filter(|i| sim.get::<Talk>(*i).unwrap().count > 0)
        .count();
    assert!(
        talkers * 2 >= defs.len(),
        "only {talkers} of {} agents talked to someone",
        defs.len()
    );
    let stats = sim.stats();
    assert!(stats.conversations_started > 0 && stats.lines > stats.conversations_started);
    assert!(stats.relationship_changes > 0);
}

#[test]
fn the_same_seed_gives_the_same_world() {
    let run = |seed: u64, ticks: u64| {
        let mut sim = Sim::new(
            demo(),
            SimConfig {
                seed,
                ..SimConfig::default()
            },
        );
        for _ in 0..ticks {
            sim.step();
        }
        sim.state_hash()
    };
    let a = run(5, 3000);
    assert_eq!(a, run(5, 3000), "same content, seed and inputs");
    assert_ne!(a, run(6, 3000), "another seed");
    assert_ne!(a, run(5, 2999), "another tick");
}

#[test]
fn synthetic_worlds_are_deterministic_too() {
    let run = || {
        let mut sim = Sim::new(
            synthetic::world(2_000, 3),
            SimConfig {
                seed: 3,
                ..SimConfig::default()
            },
        );
        for _ in 0..600 {
            sim.step();
        }
        (sim.state_hash(), sim.stats().clone())
    };
    let (h1, s1) = run();
    let (h2, s2) = run();
    assert_eq!(h1, h2);
    assert_eq!(s1, s2);
    assert!(s1.path_searches > 0 && s1.perceptions > 0, "{s1:?}");
}

#[test]
fn parallel_perception_gives_the_same_world_as_one_thread() {
    let run = |parallel: bool| {
        // large enough for the parallel pass (PARALLEL_MIN_AGENTS)
        let n = hearth_world::perception::PARALLEL_MIN_AGENTS;
        let mut sim = Sim::new(
            synthetic::world(n, 8),
            SimConfig {
                seed: 8,
                parallel,
                ..SimConfig::default()
            },
        );
        let mut events = 0;
        for _ in 0..60 {
            sim.step();
            events += sim.drain_events().len();
        }
        (sim.state_hash(), sim.stats().clone(), events)
    };
    let (h_par, s_par, e_par) = run(true);
    let (h_one, s_one, e_one) = run(false);
    assert_eq!(h_par, h_one, "state after 60 ticks");
    assert_eq!(s_par, s_one, "counters");
    assert_eq!(e_par, e_one, "events");
    assert!(s_par.perceptions > 1000, "{s_par:?}");
}
