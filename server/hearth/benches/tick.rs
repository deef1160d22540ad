//! One tick of the world at 1k, 10k and 100k synthetic agents, against a
//! baseline measured in the same run: a bare `bevy_ecs` loop that only adds
//! velocity to position for the same number of entities.
//!
//! `world_one_thread` is the same world with perception kept on one thread.
//!
//! The `snapshot` group prices persistence on the world's thread: a tick
//! that also snapshots its changed agents for the write-behind writer (as
//! every flush-interval tick does) against the same tick without, and a
//! full snapshot of every agent (the first and the final checkpoint).
//!
//! The `reload` group prices hot reload on the world's thread: a tick that
//! also takes reloaded content (1 % of the agents with a changed schedule,
//! taken up at once), and one that takes a map saved again (every agent's
//! plan and path looked over), against the same tick without.
//!
//! `cargo bench -p hearth --bench tick` (criterion). The ratios are what
//! BENCHMARKS.md records.

use bevy_ecs::prelude::*;
use bevy_ecs::schedule::SingleThreadedExecutor;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hearth_content::synthetic;
use hearth_world::{Sim, SimConfig};

#[derive(Component)]
struct Pos(f32, f32);

#[derive(Component)]
struct Vel(f32, f32);

fn integrate(mut q: Query<(&mut Pos, &Vel)>) {
    for (mut p, v) in &mut q {
        p.0 += v.0;
        p.1 += v.1;
    }
}

fn bare_loop(n: usize) -> (World, Schedule) {
    let mut world = World::new();
    world.spawn_batch((0..n).map(|i| (Pos(i as f32, 0.0), Vel(0.1, -0.1))));
    let mut schedule = Schedule::default();
    schedule.set_executor(SingleThreadedExecutor::new());
    schedule.add_systems(integrate);
    (world, schedule)
}

/// A world warmed up for a game hour, so agents are spread over the map,
/// walking, talking and working as they do in steady state.
fn warm_world(n: usize, parallel: bool) -> Sim {
    let mut sim = Sim::new(
        synthetic::world(n, 42),
        SimConfig {
            seed: 42,
            parallel,
            start_minute: 7 * 60 + 30,
            // a load test's world: events are counted, not formatted for clients
            emit_activity_events: false,
            emit_perception_events: false,
            ..SimConfig::default()
        },
    );
    // start at 07:30, in the morning rush, and let it settle for ten game minutes
    for _ in 0..100 {
        sim.step();
        sim.drain_events();
    }
    sim
}

fn tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("tick");
    for n in [1_000usize, 10_000, 100_000] {
        if n >= 100_000 {
            group.sample_size(20);
        } else {
            group.sample_size(50);
        }
        let (mut world, mut schedule) = bare_loop(n);
        group.bench_with_input(BenchmarkId::new("bare_loop", n), &n, |b, _| {
            b.iter(|| schedule.run(&mut world));
        });
        for (name, parallel) in [("world", true), ("world_one_thread", false)] {
            let mut sim = warm_world(n, parallel);
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    sim.step();
                    sim.drain_events();
                });
            });
        }
    }
    group.finish();
}

/// The same world twice from the same state, one persisting, stepped in
/// lockstep so both cover the same game time: what persistence adds per
/// tick, as a ratio (printed; criterion's groups cover different ticks).
fn lockstep(n: usize, ticks: usize) {
    let mut plain = warm_world(n, true);
    let mut persisted = warm_world(n, true);
    if std::env::var_os("HEARTH_LOCKSTEP_CONTROL").is_none() {
        persisted.persist_every(10);
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ticks {
        let t = std::time::Instant::now();
        plain.step();
        plain.drain_events();
        a.push(t.elapsed().as_secs_f64() * 1e3);
        let t = std::time::Instant::now();
        persisted.step();
        persisted.drain_events();
        persisted.take_snapshot();
        b.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (
            mean,
            v[v.len() / 2],
            v[(v.len() * 99) / 100],
            v[v.len() - 1],
        )
    };
    let (pa, pb) = (stats(&mut a), stats(&mut b));
    if let Some(full) = persisted.full_snapshot() {
        let agents: Vec<hearth_world::persist::AgentSim> = full
            .agents
            .iter()
            .filter_map(|a| hearth_world::persist::decode_agent(&a.sim).ok())
            .collect();
        let avg = |f: &dyn Fn(&hearth_world::persist::AgentSim) -> usize| {
            agents.iter().map(f).sum::<usize>() as f64 / agents.len().max(1) as f64
        };
        eprintln!(
            "lockstep/{n}: blob {:.0} B; recent {:.1}, fresh {:.1}, steps {:.1}, path {:.1}, cooldowns {:.1}",
            full.agents.iter().map(|a| a.sim.len()).sum::<usize>() as f64 / n as f64,
            avg(&|a| a.perception.recent.len()),
            avg(&|a| a.perception.fresh.len()),
            avg(&|a| a.plan.steps.len()),
            avg(&|a| a.movement.path.len()),
            avg(&|a| a.talk.cooldowns.len()),
        );
    }
    eprintln!(
        "lockstep/{n} over {ticks} ticks (ms, mean/p50/p99/max): plain {:.2}/{:.2}/{:.2}/{:.2}, \
         persisting {:.2}/{:.2}/{:.2}/{:.2}; mean ratio {:.2}, p99 ratio {:.2}",
        pa.0,
        pa.1,
        pa.2,
        pa.3,
        pb.0,
        pb.1,
        pb.2,
        pb.3,
        pb.0 / pa.0,
        pb.2 / pa.2
    );
}

fn snapshot(c: &mut Criterion) {
    // HEARTH_LOCKSTEP=10000,100000: the lockstep comparison at those sizes
    if let Ok(sizes) = std::env::var("HEARTH_LOCKSTEP") {
        for n in sizes
            .split(',')
            .filter_map(|s| s.trim().parse::<usize>().ok())
        {
            lockstep(n, if n >= 100_000 { 300 } else { 600 });
        }
    }
    let mut group = c.benchmark_group("snapshot");
    for n in [10_000usize, 100_000] {
        group.sample_size(if n >= 100_000 { 20 } else { 50 });
        let mut plain = warm_world(n, true);
        group.bench_with_input(BenchmarkId::new("tick", n), &n, |b, _| {
            b.iter(|| {
                plain.step();
                plain.drain_events();
            });
        });
        // persisting as `serve` does (a snapshot every ten ticks): each tick
        // encodes the agents that changed during it, and every tenth hands
        // them over with the world's state; criterion's mean is the cost per
        // tick, amortised over the flush interval
        let mut persisted = warm_world(n, true);
        persisted.persist_every(10);
        for _ in 0..10 {
            persisted.step();
            persisted.take_snapshot();
        }
        let mut dirty = 0usize;
        group.bench_with_input(BenchmarkId::new("tick_and_snapshot", n), &n, |b, _| {
            b.iter(|| {
                persisted.step();
                persisted.drain_events();
                if let Some(s) = persisted.take_snapshot() {
                    dirty = s.agents.len();
                }
            });
        });
        eprintln!("snapshot/{n}: {dirty} agents changed in the last flush interval");
        if let Some(full) = persisted.full_snapshot() {
            let bytes: usize = full.agents.iter().map(|a| a.sim.len()).sum();
            let rels: usize = (0..n as u32)
                .filter_map(|i| persisted.get::<hearth_world::components::Relationships>(i))
                .map(|r| r.0.len())
                .sum();
            eprintln!(
                "snapshot/{n}: {} B per agent blob, {} relationships per agent, world state {} B",
                bytes / n.max(1),
                rels / n.max(1),
                full.world.len()
            );
        }
        if n == 10_000 {
            let full = persisted.full_snapshot().expect("snapshot");
            let agents: Vec<hearth_world::persist::AgentSim> = full
                .agents
                .iter()
                .map(|a| hearth_world::persist::decode_agent(&a.sim).expect("decodes"))
                .collect();
            group.bench_function("encode_10k_agents", |b| {
                b.iter(|| {
                    agents
                        .iter()
                        .map(|a| hearth_world::persist::encode_agent(a).len())
                        .sum::<usize>()
                });
            });
        }
        group.bench_with_input(BenchmarkId::new("full_snapshot", n), &n, |b, _| {
            b.iter(|| persisted.full_snapshot());
        });
    }
    group.finish();
}

fn reload(c: &mut Criterion) {
    use hearth_world::Command;
    use hearth_world::reload::Reload;
    use std::sync::Arc;
    let mut group = c.benchmark_group("reload");
    for n in [10_000usize, 100_000] {
        group.sample_size(if n >= 100_000 { 20 } else { 50 });
        let mut plain = warm_world(n, true);
        group.bench_with_input(BenchmarkId::new("tick", n), &n, |b, _| {
            b.iter(|| {
                plain.step();
                plain.drain_events();
            });
        });
        // two versions of the content, 1 % of the agents apart: each tick
        // takes the other one, as if a designer saved every 100 ms
        let mut sim = warm_world(n, true);
        let a = sim.defs().clone();
        let mut edited = (*a).clone();
        for def in edited.iter_mut().step_by(100) {
            if let Some(block) = def.schedule.first_mut() {
                block.activity.push_str(" (revised)");
            }
        }
        let edited_idx: Vec<u32> = (0..n as u32).step_by(100).collect();
        let versions = [Arc::new(edited), a];
        let map = sim.map().clone();
        let mut turn = 0usize;
        group.bench_with_input(BenchmarkId::new("tick_with_reload", n), &n, |b, _| {
            b.iter(|| {
                turn += 1;
                // what the reloader works out off the world's thread
                sim.send(Command::Reload(Box::new(Reload {
                    agents: versions[turn % 2].clone(),
                    map: map.clone(),
                    changed: edited_idx.clone(),
                    map_changed: false,
                    removed: Vec::new(),
                    thinking: None,
                    agent_ids: None,
                    lore: false,
                    prompts: false,
                })));
                sim.step();
                sim.drain_events();
            });
        });
        // a map saved again: every agent's plan and path is looked over
        let mut mapped = warm_world(n, true);
        let agents = mapped.defs().clone();
        group.bench_with_input(BenchmarkId::new("tick_with_map_reload", n), &n, |b, _| {
            b.iter(|| {
                mapped.send(Command::Reload(Box::new(Reload {
                    agents: agents.clone(),
                    map: map.clone(),
                    changed: Vec::new(),
                    map_changed: true,
                    removed: Vec::new(),
                    thinking: None,
                    agent_ids: None,
                    lore: false,
                    prompts: false,
                })));
                mapped.step();
                mapped.drain_events();
            });
        });
    }
    group.finish();
}

criterion_group!(benches, tick, snapshot, reload);
criterion_main!(benches);
