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
//! `cargo bench -p hearth --bench tick` (criterion). The ratios are what
//! BENCHMARKS.md records.

use bevy_ecs::prelude::*;
use bevy_ecs::schedule::SingleThreadedExecutor;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hearth::content::synthetic;
use hearth::world::{Sim, SimConfig};

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

fn snapshot(c: &mut Criterion) {
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
        // a snapshot every tick: each measured tick pays for one flush's copy
        // of the agents that changed during it (a flush every ten ticks
        // copies the agents changed in those ten: at most every agent)
        let mut persisted = warm_world(n, true);
        persisted.persist_every(1);
        persisted.step();
        persisted.take_snapshot();
        let mut dirty = 0usize;
        group.bench_with_input(BenchmarkId::new("tick_and_snapshot", n), &n, |b, _| {
            b.iter(|| {
                persisted.step();
                persisted.drain_events();
                dirty = persisted.take_snapshot().map_or(0, |s| s.agents.len());
            });
        });
        eprintln!("snapshot/{n}: {dirty} agents changed in the last measured tick");
        group.bench_with_input(BenchmarkId::new("full_snapshot", n), &n, |b, _| {
            b.iter(|| persisted.full_snapshot());
        });
    }
    group.finish();
}

criterion_group!(benches, tick, snapshot);
criterion_main!(benches);
